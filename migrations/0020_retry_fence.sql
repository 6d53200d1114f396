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
-- and by every claim (to its copy's hr-attempt: that copy is in Kafka). A copy whose retry was not
-- acknowledged (its worker stopped before) raised nothing, so it is attempted again when read
-- again, as before: no delivery depends on a fence write.
--
-- An operator's replay starts a new count (its copy carries hr-attempt 0) and clears the fence
-- (shared/store/delivery_queries.cpp); the claim of a resend of a succeeded delivery sets it to
-- its own copy's count.
--
-- NULL (no copy with an attempt counted) costs no room in the row.
ALTER TABLE delivery_rows ADD COLUMN retry_fence integer;

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
