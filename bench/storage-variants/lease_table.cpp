// bench/storage variant: the claim's lease in a narrow table of its own (delivery_leases), the
// deliveries row inserted once by the record with its outcome, in pages filled whole
// The statements it changes: --store bench/storage-variants/lease_table.cpp --sql "$(cat
// bench/storage-variants/lease_table.sql)"

constexpr const char* kClaimSql = R"SQL(
input AS (
  SELECT key, )SQL" HR_KEY_HASH("r.key") R"SQL( AS key_hash, $9::text AS lease_owner,
         now() + make_interval(secs => $10::int) AS lease_until, token
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
              $8::bigint[], $11::bigint[])
       AS r(key, kind, source, event_id, destination, url, origin_topic, first_seen_ms, token)
  WHERE NOT EXISTS (SELECT 1 FROM deliveries x
                    WHERE )SQL" HR_KEY_HASH("x.delivery_key") " = " HR_KEY_HASH("r.key") R"SQL()
),
fresh AS (
  INSERT INTO delivery_leases (key_hash, lease_owner, lease_until, lease_token)
  SELECT key_hash, lease_owner, lease_until, token FROM input i
  WHERE NOT EXISTS (SELECT 1 FROM delivery_leases l WHERE l.key_hash = i.key_hash)
  RETURNING key_hash, lease_token
)
SELECT i.key, 'in_flight', f.lease_token FROM input i JOIN fresh f ON f.key_hash = i.key_hash
)SQL";

constexpr const char* kRecordSql = R"SQL(
WITH input AS (
  SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::int[], $5::int[], $6::text[],
                       $7::text[], $8::text[], $10::bigint[])
       AS r(key, attempt, started_ms, duration_ms, http_status, outcome, error, next_state, token)
),
gone AS (
  DELETE FROM delivery_leases l USING input r
  WHERE l.key_hash = )SQL" HR_KEY_HASH("r.key") R"SQL( AND l.lease_token = r.token
  RETURNING r.key
)
-- bench only: the columns the claim had, as bench/storage sends them (the product would carry
-- them in the attempt record)
INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, origin_topic,
    state, attempts, first_seen_at, first_attempt_at, last_attempt_at, last_status, completed_at,
    first_duration_ms, first_status, first_worker_id)
SELECT r.key, 'webhook', 'github', split_part(r.key, ':', 3), 'e2e',
       'http://127.0.0.1:41234/deliveries', 'hookrelay.webhooks', r.next_state, r.attempt,
       to_timestamp(r.started_ms / 1000.0), to_timestamp(r.started_ms / 1000.0),
       to_timestamp(r.started_ms / 1000.0), nullif(r.http_status, 0), now(), r.duration_ms,
       nullif(r.http_status, 0), $9::text
FROM input r JOIN gone g ON g.key = r.key
)SQL";
