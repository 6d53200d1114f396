#include "shared/postgres_delivery_store.h"

#include "shared/json_writer.h"

#include <algorithm>
#include <map>
#include <string_view>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <utility>

namespace hookrelay {
namespace {

// Every statement here is driven by its batch, row by row, through the primary key or a unique
// index: INSERT ... ON CONFLICT probes the arbiter index per row, and the record UPDATE joins the
// batch to deliveries. None of them reads a row the batch does not name, so a batch costs the
// same on a table of a thousand rows or of a hundred million. The connections plan each
// execution afresh (plan_cache_mode, below): a plan cached while the table was small would keep
// scanning it whole as it grows, and the batch's own size is invisible to a generic plan.

// Claim: insert new deliveries, or take over ones whose lease is free, expired or already ours.
// A row that cannot be claimed is still "updated" to itself, which is what makes RETURNING report
// it, with the state and lease that decided. ON CONFLICT waits for a concurrent inserter of the
// same key to commit and then sees its row, so two workers never both claim one delivery.
constexpr const char* kClaimSql = R"SQL(
INSERT INTO deliveries AS d (delivery_key, kind, source, event_id, destination, url,
    origin_topic, state, attempts, lease_owner, lease_until, first_seen_at)
SELECT key, kind, source, event_id, destination, url, coalesce(origin_topic, ''), 'in_flight',
       0, $2::text, now() + make_interval(secs => $3::int),
       CASE WHEN first_seen_ms > 0 THEN to_timestamp(first_seen_ms / 1000.0) ELSE now() END
FROM jsonb_to_recordset($1::jsonb) AS r(
  key text, kind text, source text, event_id text, destination text, url text,
  origin_topic text, first_seen_ms bigint)
ORDER BY key
ON CONFLICT (delivery_key) DO UPDATE SET
  (state, lease_owner, lease_until, updated_at) = (
    SELECT CASE WHEN claimable THEN 'in_flight' ELSE d.state END,
           CASE WHEN claimable THEN EXCLUDED.lease_owner ELSE d.lease_owner END,
           CASE WHEN claimable THEN EXCLUDED.lease_until ELSE d.lease_until END,
           CASE WHEN claimable THEN now() ELSE d.updated_at END
    FROM (SELECT d.state NOT IN ('succeeded', 'dead')
                 AND (d.lease_until IS NULL OR d.lease_until < now()
                      OR d.lease_owner = EXCLUDED.lease_owner) AS claimable) c)
RETURNING d.delivery_key,
          d.state NOT IN ('succeeded', 'dead') AND d.lease_owner IS NOT DISTINCT FROM $2::text,
          d.state
)SQL";

// Record: one row per key (the caller splits batches that repeat a key). 'succeeded' is final:
// the UPDATE skips such rows, and under READ COMMITTED a concurrent recorder of the same key
// waits for the first to commit and then re-checks, so of two successes for one key exactly one
// changes the row; the other attempt is stored as 'duplicate_success'.
constexpr const char* kRecordSql = R"SQL(
WITH input AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(
    key text, attempt int, started_ms bigint, duration_ms int, http_status int,
    outcome text, error text, next_state text)
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
    lease_owner = CASE WHEN d.lease_owner = $2::text OR r.next_state IN ('succeeded', 'dead')
                       THEN NULL ELSE d.lease_owner END,
    lease_until = CASE WHEN d.lease_owner = $2::text OR r.next_state IN ('succeeded', 'dead')
                       THEN NULL ELSE d.lease_until END,
    updated_at = now()
  FROM input r
  WHERE d.delivery_key = r.key AND d.state <> 'succeeded'
  RETURNING d.delivery_key
)
INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms, http_status,
                               outcome, error, worker_id)
SELECT i.key, i.attempt, to_timestamp(i.started_ms / 1000.0), i.duration_ms,
       nullif(i.http_status, 0),
       CASE WHEN i.outcome = 'succeeded' AND u.delivery_key IS NULL
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
        // See the note above kClaimSql: a batch must never be planned as a scan of the table.
        c.set_variable("plan_cache_mode", "force_custom_plan");
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
  // The statement takes each key once; a key repeated in the batch (several attempts of one
  // delivery finishing between two flushes) goes to a later statement, in batch order, so its
  // attempts are applied in the order they happened.
  std::vector<std::vector<const AttemptRecord*>> rounds;
  std::map<std::string_view, std::size_t> seen;
  for (const AttemptRecord& a : attempts) {
    std::size_t round = seen[a.key]++;
    if (round == rounds.size()) rounds.emplace_back();
    rounds[round].push_back(&a);
  }
  std::vector<std::string> params;
  for (auto& round : rounds) {
    // Key order: when the plan walks the batch (a nested loop over it, chosen once deliveries is
    // large), two workers recording overlapping batches lock rows in the same order. A lock-order
    // deadlock that still happens fails the round trip: the batch is put back and retried, as
    // in an outage.
    std::sort(round.begin(), round.end(),
              [](const AttemptRecord* a, const AttemptRecord* b) { return a->key < b->key; });
    JsonArrayWriter batch;
    for (const AttemptRecord* a : round) {
      batch.begin_object();
      batch.field("key", a->key);
      batch.field("attempt", int64_t{a->attempt});
      batch.field("started_ms", a->started_ms);
      batch.field("duration_ms", int64_t{a->duration_ms});
      batch.field("http_status", int64_t{a->http_status});
      batch.field("outcome", a->outcome);
      batch.field("error", a->error);
      batch.field("next_state", a->next_state);
      batch.end_object();
    }
    params.push_back(std::move(batch).take());
  }
  return pg_.run("record", [&](pqxx::connection& c) {
    if (params.size() == 1) {
      pqxx::nontransaction tx(c);
      tx.exec_prepared("hr_record", params.front(), worker_id);
      return;
    }
    // Several statements: all or none, so a retried batch never records an attempt twice.
    pqxx::work tx(c);
    for (const std::string& p : params) tx.exec_prepared("hr_record", p, worker_id);
    tx.commit();
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
