// bench/storage variant: a first attempt that succeeds kept in the deliveries row
// (first_duration_ms, first_status, first_worker_id) instead of a delivery_attempts row
// The statement it changes: --store bench/storage-variants/fold_first_success.cpp --sql "$(cat
// bench/storage-variants/fold_first_success.sql)"

constexpr const char* kRecordSql = R"SQL(
WITH input AS (
  SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::int[], $5::int[], $6::text[],
                       $7::text[], $8::text[], $10::bigint[])
       AS r(key, attempt, started_ms, duration_ms, http_status, outcome, error, next_state, token)
),
upd AS (
  UPDATE deliveries d SET
    state = r.next_state,
    attempts = greatest(d.attempts, r.attempt),
    first_attempt_at = coalesce(d.first_attempt_at, to_timestamp(r.started_ms / 1000.0)),
    last_attempt_at = to_timestamp(r.started_ms / 1000.0),
    last_status = nullif(r.http_status, 0),
    last_error = nullif(r.error, ''),
    completed_at = CASE WHEN r.next_state IN ('succeeded', 'dead') THEN now() END,
    lease_owner = CASE WHEN d.lease_token = r.token OR r.next_state IN ('succeeded', 'dead')
                       THEN NULL ELSE d.lease_owner END,
    lease_until = CASE WHEN d.lease_token = r.token OR r.next_state IN ('succeeded', 'dead')
                       THEN NULL ELSE d.lease_until END,
    lease_token = CASE WHEN d.lease_token = r.token OR r.next_state IN ('succeeded', 'dead')
                       THEN NULL ELSE d.lease_token END,
    -- a first attempt that succeeded is kept in the row itself, not in delivery_attempts
    first_duration_ms = CASE WHEN d.attempts = 0 AND r.attempt = 1 AND r.outcome = 'succeeded'
                             THEN r.duration_ms END,
    first_worker_id = CASE WHEN d.attempts = 0 AND r.attempt = 1 AND r.outcome = 'succeeded'
                           THEN $9::text END,
    first_status = CASE WHEN d.attempts = 0 AND r.attempt = 1 AND r.outcome = 'succeeded'
                        THEN nullif(r.http_status, 0) END
  FROM input r
  WHERE )SQL" HR_KEY_IS("d.delivery_key", "r.key") R"SQL(
    AND d.state <> 'succeeded'
    AND (d.lease_token IS NOT DISTINCT FROM r.token OR r.next_state = 'succeeded')
  RETURNING d.delivery_key, d.first_duration_ms IS NOT NULL AS folded
)
INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms, http_status,
                               outcome, error, worker_id)
SELECT i.key, i.attempt, to_timestamp(i.started_ms / 1000.0), i.duration_ms,
       nullif(i.http_status, 0),
       CASE WHEN i.outcome = 'succeeded' AND u.delivery_key IS NULL
            THEN 'duplicate_success' ELSE i.outcome END,
       coalesce(i.error, ''), $9::text
FROM input i LEFT JOIN upd u ON u.delivery_key = i.key
WHERE u.folded IS NOT TRUE
)SQL";
