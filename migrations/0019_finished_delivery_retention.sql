-- 0019_finished_delivery_retention: delivery_rows gains a row per delivery (about 420 bytes with
-- its indexes) and nothing removed them; a manual DELETE moved every folded first success (0015)
-- into delivery_attempts, whose day partition is long dropped by then, so into its default
-- partition. hookrelay_delete_finished_deliveries deletes deliveries that finished (succeeded or
-- dead) more than `older_than` ago, with what belongs to them:
--   - the first success kept in the row goes with it (not moved to delivery_attempts);
--   - a dead delivery's dead_letters row goes too.
-- It keeps a delivery that is not finished, that holds a lease, that has a resend pending, or that
-- heads an ordered key (ordered_keys): someone still acts on those.
--
-- Deleting a row forgets its idempotency key: a copy of its message consumed after that (a
-- consumer group reset, a replay of the DLQ) is a new delivery. So `older_than` must exceed the
-- retention of every hookrelay topic a copy can come from (hookrelay.dlq: topics.dlq_retention_ms,
-- 30 days by default) and the replay window an operator needs (a dead delivery deleted cannot be
-- replayed: `dlq replay` reports it missing).
--
-- At most `max_rows` rows per call, oldest first (deliveries_first_seen_idx), so one call is a
-- bounded transaction: call it until it returns 0 (or less than max_rows). Returns the rows
-- deleted.
CREATE OR REPLACE FUNCTION hookrelay_unfold_first_attempt() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- A delivery deleted by retention takes its first success with it.
  IF TG_OP = 'DELETE' AND current_setting('hookrelay.deleting_finished', true) = 'on' THEN
    RETURN NULL;
  END IF;
  INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms, http_status,
                                 outcome, error, worker_id)
  VALUES (OLD.delivery_key, 1, OLD.first_attempt_at, OLD.first_duration_ms, OLD.last_status,
          'succeeded', coalesce(OLD.last_error, ''), coalesce(OLD.first_worker_id, ''));
  IF TG_OP = 'UPDATE' THEN
    UPDATE delivery_rows SET first_duration_ms = NULL, first_worker_id = NULL
    WHERE encode(substr(digest(delivery_key, 'sha256'), 1, 16), 'hex')::uuid
            = encode(substr(digest(NEW.delivery_key, 'sha256'), 1, 16), 'hex')::uuid
      AND delivery_key = NEW.delivery_key;
  END IF;
  RETURN NULL;
END;
$$;

CREATE FUNCTION hookrelay_delete_finished_deliveries(older_than interval,
                                                     max_rows int DEFAULT 100000)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  deleted bigint;
BEGIN
  IF older_than IS NULL OR older_than < interval '1 day' THEN
    RAISE EXCEPTION 'older_than must be at least 1 day (it is %): deleting a delivery forgets its idempotency key', older_than;
  END IF;
  IF max_rows IS NULL OR max_rows < 1 THEN
    RAISE EXCEPTION 'max_rows must be at least 1 (it is %)', max_rows;
  END IF;
  PERFORM set_config('hookrelay.deleting_finished', 'on', true);
  -- The conditions stand on the DELETE itself too: a row a worker changes while this waits for
  -- its lock (a resend claimed, a lease taken) is checked again in its new version, and kept.
  WITH gone AS (
    DELETE FROM delivery_rows d
    WHERE d.ctid IN (
        SELECT r.ctid FROM delivery_rows r
        WHERE r.first_seen_at < now() - older_than
          AND r.state IN ('succeeded', 'dead')
          AND r.completed_at < now() - older_than
          AND r.lease_owner IS NULL
          AND r.resend_id IS NULL
        ORDER BY r.first_seen_at
        LIMIT max_rows)
      AND d.state IN ('succeeded', 'dead')
      AND d.completed_at < now() - older_than
      AND d.lease_owner IS NULL
      AND d.resend_id IS NULL
      AND NOT EXISTS (SELECT 1 FROM ordered_keys k WHERE k.head_key = d.delivery_key)
    RETURNING d.delivery_key, d.state
  ), dead AS (
    DELETE FROM dead_letters d USING gone g
    WHERE g.state = 'dead' AND d.delivery_key = g.delivery_key
    RETURNING 1
  )
  SELECT count(*) INTO deleted FROM gone;
  PERFORM set_config('hookrelay.deleting_finished', 'off', true);
  RETURN deleted;
END;
$$;
