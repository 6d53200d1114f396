-- 0020_retry_fence: a delivery's retry_fence is the attempt count of its newest copy known to be
-- in Kafka. A copy of a delivery's message that carries fewer attempts (hr-attempt) is stale: a
-- later copy carries the delivery on, and attempting the stale one would start a second retry
-- chain, ahead of the first one's backoff, with its own attempt count (past max_attempts, a
-- second dead letter).
--
-- Stale copies are read when a partition is consumed again from its committed offset (after a
-- rebalance or a restart): the offset stays at the partition's lowest unfinished message, so the
-- messages after it are read again, among them failures whose next retry was already published.
--
-- Raised by the worker once Kafka acknowledged a retry it published (to that retry's hr-attempt),
-- and by every claim that takes the delivery (to its copy's hr-attempt: that copy is in Kafka). A copy whose retry was not
-- acknowledged (its worker stopped before) raised nothing, so it is attempted again when read
-- again, as before: no delivery depends on a fence write.
--
-- An operator's replay or a resumed route's release starts a new count (its copy carries
-- hr-attempt 0): a row moved from 'dead' or 'parked' to 'retrying' loses its fence, whoever moves
-- it (the trigger below: the tools of any version, SQL by hand). The claim of a resend of a
-- succeeded delivery sets the fence to its own copy's count.
--
-- NULL (no copy with an attempt counted) costs no room in the row.
ALTER TABLE delivery_rows ADD COLUMN retry_fence integer;

-- An AFTER trigger, whose condition is judged on the row as updated: a BEFORE trigger's locks and
-- fetches the old row again for every update of delivery_rows (each claim and record), at a cost
-- bench/worker measured; this one acts only on the rare update that leaves dead or parked.
CREATE FUNCTION hookrelay_clear_retry_fence() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE delivery_rows SET retry_fence = NULL
  WHERE encode(substr(digest(delivery_key, 'sha256'), 1, 16), 'hex')::uuid
          = encode(substr(digest(NEW.delivery_key, 'sha256'), 1, 16), 'hex')::uuid
    AND delivery_key = NEW.delivery_key;
  RETURN NULL;
END;
$$;
CREATE TRIGGER deliveries_retry_fence_reset
  AFTER UPDATE ON delivery_rows FOR EACH ROW
  WHEN (OLD.state IN ('dead', 'parked') AND NEW.state = 'retrying'
        AND NEW.retry_fence IS NOT NULL)
  EXECUTE FUNCTION hookrelay_clear_retry_fence();

-- The attempts a waiting delivery's message carries (ordered_waiting.headers: name, value, ...;
-- its hr-attempt, shared/kafka/wire_contract.h), 0 without one. A delivery waits behind its
-- ordering key as one row, and a copy of it set to wait later with more attempts replaces the
-- row's message (shared/store/ordered_waiting_sql.h): released, the older message would be
-- below the delivery's fence, skipped, and the delivery lost.
CREATE FUNCTION hookrelay_waiting_attempts(headers text[]) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce((SELECT CASE WHEN headers[i + 1] ~ '^[0-9]{1,9}$' THEN headers[i + 1]::int END
                   FROM generate_subscripts(headers, 1) AS i
                   WHERE i % 2 = 1 AND headers[i] = 'hr-attempt'
                   LIMIT 1), 0)
$$;

CREATE OR REPLACE VIEW deliveries AS
SELECT r.delivery_key,
       coalesce(r.kind, 'webhook') AS kind,
       hookrelay_delivery_source(r.delivery_key, r.kind, r.source) AS source,
       hookrelay_delivery_event_id(r.delivery_key, r.kind, r.event_id) AS event_id,
       hookrelay_delivery_destination(r.delivery_key, r.kind, r.destination) AS destination,
       coalesce(r.url, (SELECT t.url FROM delivery_targets t WHERE t.id = r.target_id)) AS url,
       r.state, r.attempts, r.lease_owner, r.lease_until, r.first_seen_at, r.first_attempt_at,
       r.last_attempt_at, r.completed_at, r.last_status, r.last_error,
       coalesce(r.origin_topic,
                (SELECT t.origin_topic FROM delivery_targets t WHERE t.id = r.target_id))
         AS origin_topic,
       r.lease_token, r.resend_id, r.first_duration_ms, r.first_worker_id, r.retry_fence
FROM delivery_rows r;
