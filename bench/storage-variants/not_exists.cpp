// bench/storage variant: new keys and events inserted without ON CONFLICT (NOT EXISTS, the unique
// index still the guard; a unique_violation runs the statement again)
// The statements it changes (bench/storage takes the others from the worker's store):
// --store bench/storage-variants/not_exists.cpp

constexpr const char* kClaimSql = R"SQL(
input AS (
  SELECT key, kind, source, event_id, destination, url, coalesce(origin_topic, '') AS origin_topic,
         $9::text AS lease_owner, now() + make_interval(secs => $10::int) AS lease_until, token,
         CASE WHEN first_seen_ms > 0 THEN to_timestamp(first_seen_ms / 1000.0) ELSE now() END
           AS first_seen_at,
         EXISTS (SELECT 1 FROM deliveries x
                 WHERE )SQL" HR_KEY_HASH("x.delivery_key") " = " HR_KEY_HASH(
    "r.key") R"SQL() AS known
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
              $8::bigint[], $11::bigint[])
       AS r(key, kind, source, event_id, destination, url, origin_topic, first_seen_ms, token)
),
fresh AS (
  INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, origin_topic,
                          state, attempts, lease_owner, lease_until, lease_token, first_seen_at)
  SELECT key, kind, source, event_id, destination, url, origin_topic, 'in_flight', 0,
         lease_owner, lease_until, token, first_seen_at
  FROM input WHERE NOT known
  RETURNING delivery_key, state, lease_token
),
known AS (
  INSERT INTO deliveries AS d (delivery_key, kind, source, event_id, destination, url,
      origin_topic, state, attempts, lease_owner, lease_until, lease_token, first_seen_at)
  SELECT key, kind, source, event_id, destination, url, origin_topic, 'in_flight', 0,
         lease_owner, lease_until, token, first_seen_at
  FROM input WHERE known
  ON CONFLICT (()SQL" HR_KEY_HASH("delivery_key") R"SQL()) DO UPDATE SET
    (state, lease_owner, lease_until, lease_token, resend_id) = (
      SELECT CASE WHEN claimable THEN 'in_flight' ELSE d.state END,
             CASE WHEN claimable THEN EXCLUDED.lease_owner ELSE d.lease_owner END,
             CASE WHEN claimable THEN EXCLUDED.lease_until ELSE d.lease_until END,
             CASE WHEN claimable THEN EXCLUDED.lease_token ELSE d.lease_token END,
             CASE WHEN claimable THEN NULL ELSE d.resend_id END
      FROM (SELECT (d.state NOT IN ('succeeded', 'dead')
                    AND (d.lease_until IS NULL OR d.lease_until < now()
                         OR (d.lease_owner = EXCLUDED.lease_owner
                             AND (d.lease_token >> 32) IS DISTINCT FROM (EXCLUDED.lease_token >> 32))))
                   OR (d.state = 'succeeded' AND d.resend_id IS NOT NULL)
                   AS claimable) c)
    WHERE d.delivery_key = EXCLUDED.delivery_key
  RETURNING d.delivery_key, d.state, d.lease_token
)
SELECT * FROM fresh UNION ALL SELECT * FROM known
)SQL";

std::string inbound_insert_sql(int first) {
  const auto p = [first](int i, const char* type) {
    return "$" + std::to_string(first + i) + "::" + type + "[]";
  };
  return R"SQL(
  INSERT INTO inbound_events (source, event_id, received_at, topic, "partition", "offset",
                              body_sha256)
  SELECT source, event_id,
         CASE WHEN received_ms > 0 THEN to_timestamp(received_ms / 1000.0) ELSE now() END,
         topic, "partition", "offset", decode(coalesce(body_sha256, ''), 'hex')
  FROM unnest()SQL" +
         p(0, "text") + ", " + p(1, "text") + ", " + p(2, "text") + ", " + p(3, "int") + ", " +
         p(4, "bigint") + ", " + p(5, "bigint") + ", " + p(6, "text") +
         R"SQL()
       AS r(source, event_id, topic, "partition", "offset", received_ms, body_sha256)
  WHERE NOT EXISTS (SELECT 1 FROM inbound_events i
                    WHERE )SQL" HR_EVENT_HASH("i.source", "i.event_id") " = " HR_EVENT_HASH(
             "r.source", "r.event_id") R"SQL()
)SQL";
}
