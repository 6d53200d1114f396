#include "shared/postgres_delivery_store.h"

#include "shared/json_writer.h"

#include <map>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <utility>

namespace hookrelay {
namespace {

// Claim: insert new deliveries or take over ones whose lease is free, expired or our own. The
// final SELECT reads the snapshot taken before the INSERT ran, which is what tells why a row
// was not claimed. A row inserted concurrently by another worker is invisible to that
// snapshot (state NULL) and is reported as leased elsewhere, which is what it is.
constexpr const char* kClaimSql = R"SQL(
WITH input AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(
    key text, kind text, source text, event_id text, destination text, url text,
    origin_topic text, first_seen_ms bigint)
),
claimed AS (
  INSERT INTO deliveries AS d (delivery_key, kind, source, event_id, destination, url,
      origin_topic, state, attempts, lease_owner, lease_until, first_seen_at)
  SELECT key, kind, source, event_id, destination, url, coalesce(origin_topic, ''), 'in_flight',
         0, $2::text, now() + make_interval(secs => $3::int),
         CASE WHEN first_seen_ms > 0 THEN to_timestamp(first_seen_ms / 1000.0) ELSE now() END
  FROM input ORDER BY key
  ON CONFLICT (delivery_key) DO UPDATE
    SET state = 'in_flight', lease_owner = EXCLUDED.lease_owner,
        lease_until = EXCLUDED.lease_until, updated_at = now()
    WHERE d.state NOT IN ('succeeded', 'dead')
      AND (d.lease_until IS NULL OR d.lease_until < now()
           OR d.lease_owner = EXCLUDED.lease_owner)
  RETURNING d.delivery_key
)
SELECT i.key, c.delivery_key IS NOT NULL AS claimed, d.state
FROM input i
LEFT JOIN claimed c ON c.delivery_key = i.key
LEFT JOIN deliveries d ON d.delivery_key = i.key
)SQL";

// Record: `locked` takes the row locks in key order and, under READ COMMITTED, yields the
// latest committed state, so two workers recording a success for one key concurrently store
// one 'succeeded' and one 'duplicate_success'. Per key, a success in the batch wins, else the
// highest attempt decides the delivery's columns. 'succeeded' never changes once reached.
constexpr const char* kRecordSql = R"SQL(
WITH input AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(
    ord int, key text, attempt int, started_ms bigint, duration_ms int, http_status int,
    outcome text, error text, next_state text)
),
decisive AS (
  SELECT DISTINCT ON (key) key, started_ms, http_status, error, next_state
  FROM input ORDER BY key, (next_state = 'succeeded') DESC, attempt DESC, ord DESC
),
per_key AS (
  SELECT key, max(attempt) AS max_attempt, min(started_ms) AS first_started_ms
  FROM input GROUP BY key
),
locked AS MATERIALIZED (
  SELECT delivery_key, state FROM deliveries
  WHERE delivery_key IN (SELECT key FROM input)
  ORDER BY delivery_key FOR UPDATE
),
upd AS (
  UPDATE deliveries d SET
    state = CASE WHEN l.state = 'succeeded' THEN 'succeeded' ELSE r.next_state END,
    attempts = greatest(d.attempts, k.max_attempt),
    first_attempt_at = coalesce(d.first_attempt_at, to_timestamp(k.first_started_ms / 1000.0)),
    last_attempt_at = CASE WHEN l.state = 'succeeded' THEN d.last_attempt_at
                           ELSE to_timestamp(r.started_ms / 1000.0) END,
    last_status = CASE WHEN l.state = 'succeeded' THEN d.last_status
                       ELSE nullif(r.http_status, 0) END,
    last_error = CASE WHEN l.state = 'succeeded' THEN d.last_error
                      ELSE nullif(r.error, '') END,
    completed_at = CASE WHEN l.state = 'succeeded' THEN d.completed_at
                        WHEN r.next_state IN ('succeeded', 'dead') THEN now() END,
    lease_owner = CASE WHEN d.lease_owner = $2::text OR l.state = 'succeeded'
                            OR r.next_state IN ('succeeded', 'dead') THEN NULL
                       ELSE d.lease_owner END,
    lease_until = CASE WHEN d.lease_owner = $2::text OR l.state = 'succeeded'
                            OR r.next_state IN ('succeeded', 'dead') THEN NULL
                       ELSE d.lease_until END,
    updated_at = now()
  FROM locked l, decisive r, per_key k
  WHERE d.delivery_key = l.delivery_key AND r.key = l.delivery_key AND k.key = l.delivery_key
  RETURNING d.delivery_key, l.state AS old_state
)
INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms, http_status,
                               outcome, error, worker_id)
SELECT i.key, i.attempt, to_timestamp(i.started_ms / 1000.0), i.duration_ms,
       nullif(i.http_status, 0),
       CASE WHEN i.outcome = 'succeeded'
                 AND (u.old_state = 'succeeded'
                      OR row_number() OVER (PARTITION BY i.key, i.outcome = 'succeeded'
                                            ORDER BY i.ord) > 1)
            THEN 'duplicate_success' ELSE i.outcome END,
       coalesce(i.error, ''), $2::text
FROM input i LEFT JOIN upd u ON u.delivery_key = i.key
)SQL";

constexpr const char* kRecordInboundSql = R"SQL(
WITH ins AS (
  INSERT INTO inbound_events (source, event_id, received_at, topic, "partition", "offset",
                              body_sha256)
  SELECT source, event_id,
         CASE WHEN received_ms > 0 THEN to_timestamp(received_ms / 1000.0) ELSE now() END,
         topic, "partition", "offset", coalesce(body_sha256, '')
  FROM jsonb_to_recordset($1::jsonb) AS r(source text, event_id text, topic text,
                                          "partition" int, "offset" bigint, received_ms bigint,
                                          body_sha256 text)
  ORDER BY source, event_id
  ON CONFLICT (source, event_id) DO NOTHING
  RETURNING 1
)
SELECT count(*) FROM ins
)SQL";

constexpr const char* kReleaseSql = R"SQL(
UPDATE deliveries SET lease_owner = NULL, lease_until = NULL, updated_at = now()
WHERE delivery_key IN (SELECT jsonb_array_elements_text($1::jsonb))
  AND lease_owner = $2::text
)SQL";

// Invalid UTF-8 (from a header, say) is replaced rather than thrown: PostgreSQL text could not
// hold it anyway.
std::string to_param(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

ClaimStatus status_from_state(const pqxx::field& state) {
  if (state.is_null()) return ClaimStatus::kLeasedElsewhere;
  std::string s = state.as<std::string>();
  if (s == "succeeded") return ClaimStatus::kAlreadySucceeded;
  if (s == "dead") return ClaimStatus::kAlreadyDead;
  return ClaimStatus::kLeasedElsewhere;
}

}  // namespace

PostgresDeliveryStore::PostgresDeliveryStore(std::string url)
    : pg_(std::move(url), [](pqxx::connection& c) {
        c.prepare("hr_claim", kClaimSql);
        c.prepare("hr_record", kRecordSql);
        c.prepare("hr_record_inbound", kRecordInboundSql);
        c.prepare("hr_release", kReleaseSql);
      }) {}

Result<std::vector<ClaimStatus>> PostgresDeliveryStore::claim(
    const std::vector<DeliveryRef>& deliveries, const std::string& worker_id, int lease_seconds) {
  if (deliveries.empty()) return std::vector<ClaimStatus>{};
  // ON CONFLICT DO UPDATE may not touch a row twice in one statement: send each key once.
  std::map<std::string, const DeliveryRef*> unique;
  for (const DeliveryRef& d : deliveries) unique.emplace(d.key, &d);
  JsonArrayWriter batch;
  for (const auto& [key, d] : unique) {
    batch.begin_object();
    batch.field("key", key);
    batch.field("kind", d->kind);
    batch.field("source", d->source);
    batch.field("event_id", d->event_id);
    batch.field("destination", d->destination);
    batch.field("url", d->url);
    batch.field("origin_topic", d->origin_topic);
    batch.field("first_seen_ms", d->first_seen_ms);
    batch.end_object();
  }
  std::string param = std::move(batch).take();
  return pg_.run("claim", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    pqxx::result rows = tx.exec_prepared("hr_claim", param, worker_id, lease_seconds);
    std::map<std::string, ClaimStatus> by_key;
    for (const auto& row : rows) {
      by_key[row[0].as<std::string>()] =
          row[1].as<bool>() ? ClaimStatus::kClaimed : status_from_state(row[2]);
    }
    std::vector<ClaimStatus> out;
    out.reserve(deliveries.size());
    for (const DeliveryRef& d : deliveries) out.push_back(by_key.at(d.key));
    return out;
  });
}

Result<void> PostgresDeliveryStore::record(const std::vector<AttemptRecord>& attempts,
                                           const std::string& worker_id) {
  if (attempts.empty()) return {};
  JsonArrayWriter batch;
  int64_t ord = 0;
  for (const AttemptRecord& a : attempts) {
    batch.begin_object();
    batch.field("ord", ord++);
    batch.field("key", a.key);
    batch.field("attempt", int64_t{a.attempt});
    batch.field("started_ms", a.started_ms);
    batch.field("duration_ms", int64_t{a.duration_ms});
    batch.field("http_status", int64_t{a.http_status});
    batch.field("outcome", a.outcome);
    batch.field("error", a.error);
    batch.field("next_state", a.next_state);
    batch.end_object();
  }
  std::string param = std::move(batch).take();
  return pg_.run("record", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec_prepared("hr_record", param, worker_id);
  });
}

Result<int> PostgresDeliveryStore::record_inbound(const std::vector<InboundEventRecord>& events) {
  if (events.empty()) return 0;
  JsonArrayWriter batch;
  for (const InboundEventRecord& e : events) {
    batch.begin_object();
    batch.field("source", e.source);
    batch.field("event_id", e.event_id);
    batch.field("topic", e.topic);
    batch.field("partition", int64_t{e.partition});
    batch.field("offset", e.offset);
    batch.field("received_ms", e.received_ms);
    batch.field("body_sha256", e.body_sha256);
    batch.end_object();
  }
  std::string param = std::move(batch).take();
  return pg_.run("record_inbound", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx.exec_prepared1("hr_record_inbound", param)[0].as<int>();
  });
}

Result<void> PostgresDeliveryStore::release(const std::vector<std::string>& keys,
                                            const std::string& worker_id) {
  if (keys.empty()) return {};
  nlohmann::json batch = keys;
  return pg_.run("release", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec_prepared("hr_release", to_param(batch), worker_id);
  });
}

}  // namespace hookrelay
