#include "worker/postgres_delivery_store.h"

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "shared/store/key_hash_sql.h"
#include "shared/store/pg_array.h"

namespace hookrelay {
namespace {

// Every statement here is driven by its batch, row by row, through the primary key or a unique
// index: INSERT ... ON CONFLICT probes the arbiter index per row, and the record UPDATE joins the
// batch to deliveries. None of them reads a row the batch does not name, so a batch costs the
// same on a table of a thousand rows or of a hundred million.
//
// The planner does not know that. Costing pages as if read from disk, it joins a batch of 800
// against a table of 40,000 with a sequential scan and a hash: 13-22 ms per record batch instead
// of 8 ms through the index (EXPLAIN ANALYZE, PostgreSQL 15), and a plan cached while the table
// was small keeps scanning it whole as it grows. So the store's connections turn sequential
// scans off (prepare_connection), which leaves the index path as the only one, and then a plan
// made once per connection is as good as any: no statement is planned again per batch.

// Claim: insert new deliveries, or take over ones whose lease is free, expired, or held under
// this worker id by an earlier run of the process (the token's high 32 bits differ). A lease held
// by this run is not taken again: each claim is one attempt's, so a second copy of a message
// waits for the first attempt instead of racing it. A row that cannot be claimed is still
// "updated" to itself, which is what makes RETURNING report it, with the state and lease that
// decided; the caller reads its own token back from the claims it won. A succeeded delivery with
// a pending resend (resend_id, set by an operator's replay) is claimed once, whichever copy of its
// message comes first, and the claim clears the marker: one resend, one more attempt. ON CONFLICT
// waits for a concurrent inserter of the same key to commit and then sees its row, so two claims
// never both hold one delivery.
//
// A copy of a message older than the delivery's newest copy in Kafka (its hr-attempt, $12, below
// the row's retry_fence; migrations/0020) is not claimable, and the caller reads it as stale from
// the fence returned; a claim raises the fence to its own copy's count (a resend's sets it).
//
// Rows are inserted (and their rows and index entries locked) in the order of the arrays (new keys
// first, then the keys that have rows), which
// the caller sorts bytewise, the same order in every worker, so two claims of overlapping batches
// do not lock in opposite orders. An ORDER BY here sorted them again, under the column's collation
// (strcoll per comparison), once for the delivery keys and once for the inbound audit's (source,
// event_id): 3-4 ms of the statement's 86 ms at 2,900 rows (bench/storage --explain, best of 8).
//
// New keys are inserted WHERE NOT EXISTS, keys with a row through INSERT ... ON CONFLICT: a
// speculative insertion writes a second WAL record per row (its confirmation), about 95 bytes of
// 1,310 per delivered event with the inbound audit's (bench/storage). The unique index on the
// key's hash (migrations/0014) still decides: a key that a concurrent claim inserted after this
// statement's snapshot passes NOT EXISTS, waits for that claim and fails on the index, the whole
// statement is undone, and run_past_insert_races sends it again, when the row is seen and takes the
// ON CONFLICT path. The probe compares the hash only, so a key whose hash a row of another key has
// (a collision) takes that path too, whose DO UPDATE compares the text and leaves the other key's
// row alone: it is not returned, and the caller reports the batch as failed rather than take that
// delivery's state for its own.
//
// The rows go to delivery_rows in their compact form (migrations/0016; readers see them through
// the deliveries view): a webhook whose key is its source, event id and route keeps only the key
// (kind, source, event_id and destination NULL), and a webhook's url and origin topic are a row of
// delivery_targets, found once per distinct pair in the batch by hookrelay_delivery_target
// (migrations/0016), the same function the deliveries view's INSERT uses: it looks the pair up by
// its hash, inserts a pair it does not find, and takes one a concurrent claim inserted meanwhile
// through ON CONFLICT (whose DO UPDATE changes nothing but locks and returns the row; only the
// first claims of a new route's URL take that path). A pair whose hash another pair's row holds
// matches no text, and its rows keep their url and topic themselves. A call keeps its own url.
// Common table expressions, after WITH (or an audit's in front).
constexpr const char* kClaimSql = R"SQL(
input AS (
  SELECT key, kind, source, event_id, destination, url, coalesce(origin_topic, '') AS origin_topic,
         $9::text AS lease_owner, now() + make_interval(secs => $10::int) AS lease_until, token,
         CASE WHEN first_seen_ms > 0 THEN to_timestamp(first_seen_ms / 1000.0) ELSE now() END
           AS first_seen_at,
         hookrelay_delivery_keyed(key, kind, source, event_id, destination) AS keyed,
         nullif(copy_attempts, 0) AS fence,
         EXISTS (SELECT 1 FROM delivery_rows x
                 WHERE )SQL" HR_KEY_HASH("x.delivery_key") " = " HR_KEY_HASH(
    "r.key") R"SQL() AS known
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
              $8::bigint[], $11::bigint[], $12::int[])
       AS r(key, kind, source, event_id, destination, url, origin_topic, first_seen_ms, token,
            copy_attempts)
),
pair AS (
  SELECT url, origin_topic, hookrelay_delivery_target(url, origin_topic) AS id
  FROM (SELECT DISTINCT url, origin_topic FROM input WHERE kind = 'webhook') p
),
placed AS (
  SELECT i.*,
         CASE WHEN i.kind = 'webhook' THEN
           (SELECT p.id FROM pair p WHERE p.url = i.url AND p.origin_topic = i.origin_topic)
         END AS target_id
  FROM input i
),
fresh AS (
  INSERT INTO delivery_rows (first_seen_at, target_id, delivery_key, kind, source, event_id,
                             destination, url, origin_topic, lease_until, lease_token, attempts,
                             state, lease_owner, retry_fence)
  SELECT first_seen_at, target_id, key, CASE WHEN NOT keyed THEN kind END,
         CASE WHEN NOT keyed THEN source END, CASE WHEN NOT keyed THEN event_id END,
         CASE WHEN NOT keyed THEN destination END, CASE WHEN target_id IS NULL THEN url END,
         CASE WHEN target_id IS NULL THEN origin_topic END, lease_until, token, 0, 'in_flight',
         lease_owner, fence
  FROM placed WHERE NOT known
  RETURNING delivery_key, state, lease_token, retry_fence
),
known AS (
  INSERT INTO delivery_rows AS d (first_seen_at, target_id, delivery_key, kind, source, event_id,
                                  destination, url, origin_topic, lease_until, lease_token,
                                  attempts, state, lease_owner, retry_fence)
  SELECT first_seen_at, target_id, key, CASE WHEN NOT keyed THEN kind END,
         CASE WHEN NOT keyed THEN source END, CASE WHEN NOT keyed THEN event_id END,
         CASE WHEN NOT keyed THEN destination END, CASE WHEN target_id IS NULL THEN url END,
         CASE WHEN target_id IS NULL THEN origin_topic END, lease_until, token, 0, 'in_flight',
         lease_owner, fence
  FROM placed WHERE known
  ON CONFLICT (()SQL" HR_KEY_HASH("delivery_key") R"SQL()) DO UPDATE SET
    (state, lease_owner, lease_until, lease_token, resend_id, retry_fence) = (
      SELECT CASE WHEN claimable THEN 'in_flight' ELSE d.state END,
             CASE WHEN claimable THEN EXCLUDED.lease_owner ELSE d.lease_owner END,
             CASE WHEN claimable THEN EXCLUDED.lease_until ELSE d.lease_until END,
             CASE WHEN claimable THEN EXCLUDED.lease_token ELSE d.lease_token END,
             CASE WHEN claimable THEN NULL ELSE d.resend_id END,
             CASE WHEN NOT claimable THEN d.retry_fence
                  WHEN d.state = 'succeeded' THEN EXCLUDED.retry_fence  -- a resend counts anew
                  ELSE greatest(d.retry_fence, EXCLUDED.retry_fence) END
      FROM (SELECT (d.state NOT IN ('succeeded', 'dead')
                    AND (d.lease_until IS NULL OR d.lease_until < now()
                         OR (d.lease_owner = EXCLUDED.lease_owner
                             AND (d.lease_token >> 32) IS DISTINCT FROM (EXCLUDED.lease_token >> 32)))
                    -- A copy older than one in Kafka (migrations/0020) is stale.
                    AND coalesce(EXCLUDED.retry_fence, 0) >= coalesce(d.retry_fence, 0))
                   OR (d.state = 'succeeded' AND d.resend_id IS NOT NULL)
                   AS claimable) c)
    WHERE d.delivery_key = EXCLUDED.delivery_key
  RETURNING d.delivery_key, d.state, d.lease_token, d.retry_fence
)
SELECT * FROM fresh UNION ALL SELECT * FROM known
)SQL";

// Record: one row per key (the caller splits batches that repeat a key). An attempt moves the
// delivery only while its claim's token holds the lease: an attempt that outlived its lease and
// was taken over is audited, and the new holder decides the state. 'succeeded' is the exception
// both ways: the first success moves the row whoever holds the lease (the call did succeed), and
// the UPDATE skips rows already succeeded. Under READ COMMITTED a concurrent recorder of the same
// key waits for the first to commit and then re-checks, so of two successes for one key exactly
// one changes the row; the other attempt is stored as 'duplicate_success'.
//
// A success of attempt 1 that moves a row no attempt was recorded on (first_attempt_at is NULL) is
// kept in the row, not in delivery_attempts (migrations/0015): the row's first_attempt_at,
// last_status and last_error are that attempt's, first_duration_ms and first_worker_id hold the
// rest, and delivery_attempts_all reads it back as the row it replaces.
//
// A park carries the suspension it was decided under (AttemptRecord::park_suspended_at_ms): when
// route_states shows that suspension ended by a resume, the delivery is recorded 'retrying'
// instead, and the statement returns its key. The route is looked up only for such parks (a
// sub-SELECT under CASE), FOR SHARE: a resume that commits after the statement's snapshot is
// seen (the lock reads the row's latest version), and one that comes later waits for this
// record's commit, so the park it leaves is committed before the resume, and so before the
// release lists the route's parks.
constexpr const char* kRecordSql = R"SQL(
WITH input AS (
  SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::int[], $5::int[], $6::text[],
                       $7::text[], $8::text[], $10::bigint[], $11::text[], $12::text[],
                       $13::bigint[])
       AS r(key, attempt, started_ms, duration_ms, http_status, outcome, error, next_state, token,
            park_source, park_route, park_since_ms)
),
upd AS (
  UPDATE delivery_rows d SET
    state = CASE WHEN r.next_state = 'parked' AND r.park_since_ms > 0 AND EXISTS (
                        -- Locked whatever its state, then judged on the version the lock read:
                        -- FOR SHARE locks only the rows a query returns, and OFFSET 0 keeps the
                        -- planner from pushing the judgement down below the lock.
                        SELECT 1 FROM (SELECT rs.state, rs.resumed_at FROM route_states rs
                                       WHERE rs.source = r.park_source
                                         AND rs.route = r.park_route OFFSET 0 FOR SHARE) rs
                        WHERE rs.state = 'active'
                          AND rs.resumed_at > to_timestamp(r.park_since_ms / 1000.0))
                 THEN 'retrying' ELSE r.next_state END,
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
    -- Both NULL unless this is the fold (a sub-SELECT without a row assigns NULLs).
    (first_duration_ms, first_worker_id) = (
      SELECT r.duration_ms, $9::text
      WHERE d.first_attempt_at IS NULL AND r.attempt = 1 AND r.outcome = 'succeeded'
        AND r.next_state = 'succeeded')
  FROM input r
  WHERE )SQL" HR_KEY_IS("d.delivery_key", "r.key") R"SQL(
    AND d.state <> 'succeeded'
    AND (d.lease_token IS NOT DISTINCT FROM r.token OR r.next_state = 'succeeded'
         -- A delivery dead-lettered without a claim (its route is no longer configured): token
         -- 0, and only while no worker holds a lease on it.
         OR (r.token = 0 AND r.next_state = 'dead' AND d.lease_token IS NULL))
  RETURNING d.delivery_key, d.first_duration_ms IS NOT NULL AS folded,
            r.next_state = 'parked' AND d.state = 'retrying' AS unparked
),
audit AS (
INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms, http_status,
                               outcome, error, worker_id)
SELECT i.key, i.attempt, to_timestamp(i.started_ms / 1000.0), i.duration_ms,
       nullif(i.http_status, 0),
       CASE WHEN i.outcome = 'succeeded' AND u.delivery_key IS NULL
            THEN 'duplicate_success' ELSE i.outcome END,
       coalesce(i.error, ''), $9::text
FROM input i LEFT JOIN upd u ON u.delivery_key = i.key
WHERE u.folded IS NOT TRUE
  -- An attempt that moved no row may be this very attempt, stored by an earlier send of the
  -- batch whose commit went unanswered (the connection dropped with the commit done): it is not
  -- stored twice, as a second attempt or a duplicate_success. Looked up only for such rows (a
  -- sub-SELECT under CASE is not turned into a join over the whole batch).
  AND CASE WHEN u.delivery_key IS NOT NULL THEN true
           ELSE NOT EXISTS (
                  SELECT 1 FROM delivery_attempts a
                  WHERE a.delivery_key = i.key AND a.attempt = i.attempt
                    AND a.started_at = to_timestamp(i.started_ms / 1000.0) AND a.worker_id = $9::text)
                AND NOT EXISTS (
                  SELECT 1 FROM delivery_rows d
                  WHERE )SQL" HR_KEY_IS("d.delivery_key", "i.key") R"SQL(
                    AND d.first_duration_ms IS NOT NULL AND i.attempt = 1
                    AND d.first_attempt_at = to_timestamp(i.started_ms / 1000.0)
                    AND d.first_worker_id = $9::text) END
)
SELECT delivery_key FROM upd WHERE unparked
UNION ALL
-- A park this very statement made a retry in an earlier send whose commit went unanswered: the
-- row, moved then, is not moved again (its lease is gone), but the retry is still this batch's
-- to publish. Found by its audit row, as above, and the row's state.
SELECT i.key FROM input i LEFT JOIN upd u ON u.delivery_key = i.key
WHERE u.delivery_key IS NULL AND i.next_state = 'parked' AND i.park_since_ms > 0
  AND EXISTS (SELECT 1 FROM delivery_attempts a
              WHERE a.delivery_key = i.key AND a.attempt = i.attempt
                AND a.started_at = to_timestamp(i.started_ms / 1000.0) AND a.worker_id = $9::text)
  AND EXISTS (SELECT 1 FROM delivery_rows d
              WHERE )SQL" HR_KEY_IS("d.delivery_key", "i.key") R"SQL(
                AND d.state = 'retrying' AND d.lease_token IS NULL)
)SQL";

// The inbound audit's INSERT, its seven arrays numbered from $<first>: on its own
// (hr_record_inbound) or riding in front of a claim (hr_claim_audit). Events already stored are
// left out by NOT EXISTS; one a concurrent statement stored since fails the statement on the
// unique index, and run_past_insert_races sends it again (see kClaimSql).
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

std::string record_inbound_sql() {
  return "WITH ins AS (" + inbound_insert_sql(1) + "  RETURNING 1\n)\nSELECT count(*) FROM ins";
}

// A claim with the inbound audit of its events: one statement, so one round trip and one commit
// for both. The audit's INSERT runs as a data-modifying CTE whether or not it is referenced.
std::string claim_audit_sql() {
  return "WITH audit AS (" + inbound_insert_sql(13) + ")," + kClaimSql;
}

// Runs a statement that inserts new rows WHERE NOT EXISTS until it does not fail on a unique
// index. Each failure is owed to a row that a concurrent statement committed after this one's
// snapshot and that the next run sees, so `rows` (the keys and events the statement names) bounds
// the runs; one more failure is passed on.
template <typename F>
auto run_past_insert_races(std::size_t rows, F&& statement) {
  for (std::size_t run = 0;; ++run) {
    try {
      return statement();
    } catch (const pqxx::unique_violation&) {
      if (run >= rows) throw;
    }
  }
}

bool is_hex(std::string_view s) {
  return s.size() % 2 == 0 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

// The seven arrays of an inbound audit batch, in inbound_insert_sql's order.
// Sorted by (source, event_id), bytewise: the insert takes them in array order (see kClaimSql).
// An event the batch holds twice is sent once, its first sighting: NOT EXISTS does not see rows
// its own statement inserts, so a second copy would fail the statement on the unique index.
std::array<std::string, 7> inbound_params(const std::vector<InboundEventRecord>& events) {
  std::vector<const InboundEventRecord*> sorted;
  sorted.reserve(events.size());
  for (const InboundEventRecord& e : events) sorted.push_back(&e);
  const auto same_event = [](const InboundEventRecord* a, const InboundEventRecord* b) {
    return a->source == b->source && a->event_id == b->event_id;
  };
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const InboundEventRecord* a, const InboundEventRecord* b) {
                     return std::tie(a->source, a->event_id) < std::tie(b->source, b->event_id);
                   });
  sorted.erase(std::unique(sorted.begin(), sorted.end(), same_event), sorted.end());
  PgArrayLiteral sources, event_ids, topics, partitions, offsets, received, hashes;
  for (const InboundEventRecord* p : sorted) {
    const InboundEventRecord& e = *p;
    sources.add(e.source);
    event_ids.add(e.event_id);
    topics.add(e.topic);
    partitions.add(int64_t{e.partition});
    offsets.add(e.offset);
    received.add(e.received_ms);
    // Stored as bytes (decoded from hex by the statement): a value that is not hex, which the
    // worker never computes, is stored empty rather than fail the whole batch.
    hashes.add(is_hex(e.body_sha256) ? std::string_view(e.body_sha256) : std::string_view());
  }
  return {std::move(sources).take(),    std::move(event_ids).take(), std::move(topics).take(),
          std::move(partitions).take(), std::move(offsets).take(),   std::move(received).take(),
          std::move(hashes).take()};
}

// Release: a lease goes back only while the claim that took it holds it (its token, under this
// worker's id); a later claim of the same delivery keeps its own.
constexpr const char* kReleaseSql = R"SQL(
UPDATE delivery_rows d SET lease_owner = NULL, lease_until = NULL, lease_token = NULL
FROM unnest($1::text[], $3::bigint[]) AS r(key, token)
WHERE )SQL" HR_KEY_IS("d.delivery_key", "r.key") R"SQL(
  AND d.lease_token = r.token AND d.lease_owner = $2::text
)SQL";

// Fence: a delivery's newest copy in Kafka (migrations/0020), raised only, and not on a finished
// delivery (a resend's claim counts anew from its own copy). Nor on a row whose last attempt is
// not the one this retry follows: a fence that arrives late, after the retry was taken up
// elsewhere (its claim raised the fence itself) and the delivery went on, perhaps to die or be
// parked and be replayed or released (which start a new count: the replay's copy must not be
// held back). Every such turn records an attempt, which moves last_attempt_at.
constexpr const char* kFenceSql = R"SQL(
UPDATE delivery_rows d SET retry_fence = r.attempts
FROM unnest($1::text[], $2::int[], $3::bigint[]) AS r(key, attempts, started_ms)
WHERE )SQL" HR_KEY_IS("d.delivery_key", "r.key") R"SQL(
  AND d.state NOT IN ('succeeded', 'dead')
  AND (d.retry_fence IS NULL OR d.retry_fence < r.attempts)
  AND d.last_attempt_at = to_timestamp(r.started_ms / 1000.0)
)SQL";

// Runs one record statement; the keys it recorded 'retrying' instead of 'parked' join `unparked`.
void exec_record(pqxx::transaction_base& tx, const std::array<std::string, 12>& p,
                 const std::string& worker_id, std::vector<std::string>& unparked) {
  for (const auto& row : tx.exec_prepared("hr_record", p[0], p[1], p[2], p[3], p[4], p[5], p[6],
                                          p[7], worker_id, p[8], p[9], p[10], p[11])) {
    unparked.push_back(row[0].as<std::string>());
  }
}

ClaimStatus status_from_state(const pqxx::field& state) {
  if (state.is_null()) return ClaimStatus::kLeasedElsewhere;
  auto s = state.as<std::string>();
  if (s == "succeeded") return ClaimStatus::kAlreadySucceeded;
  if (s == "dead") return ClaimStatus::kAlreadyDead;
  return ClaimStatus::kLeasedElsewhere;
}

}  // namespace

PostgresDeliveryStore::PostgresDeliveryStore(std::string url)
    : pg_(std::move(url), &PostgresDeliveryStore::prepare_connection) {}

void PostgresDeliveryStore::prepare_connection(pqxx::connection& c) {
  // See the note above kClaimSql: a batch must never be planned as a scan of the table.
  c.set_variable("enable_seqscan", "off");
  c.set_variable("plan_cache_mode", "force_generic_plan");
  c.prepare("hr_claim", std::string("WITH") + kClaimSql);
  c.prepare("hr_record", kRecordSql);
  c.prepare("hr_record_inbound", record_inbound_sql());
  c.prepare("hr_claim_audit", claim_audit_sql());
  c.prepare("hr_release", kReleaseSql);
  c.prepare("hr_fence", kFenceSql);
}

Result<std::vector<ClaimStatus>> PostgresDeliveryStore::claim(
    const std::vector<DeliveryRef>& deliveries, const std::string& worker_id, int lease_seconds) {
  return claim_and_audit(deliveries, {}, worker_id, lease_seconds);
}

Result<std::vector<ClaimStatus>> PostgresDeliveryStore::claim_and_audit(
    const std::vector<DeliveryRef>& deliveries, const std::vector<InboundEventRecord>& audit,
    const std::string& worker_id, int lease_seconds) {
  if (deliveries.empty()) {
    if (auto r = record_inbound(audit); !r) return Unexpected{r.error()};
    return std::vector<ClaimStatus>{};
  }
  // ON CONFLICT DO UPDATE may not touch a row twice in one statement: send each key once, in
  // the map's bytewise key order (the order rows are locked in; see kClaimSql), through its ref
  // with the most attempts (an older copy's claim would be refused as stale).
  std::map<std::string, const DeliveryRef*> unique;
  for (const DeliveryRef& d : deliveries) {
    auto [it, added] = unique.emplace(d.key, &d);
    if (!added && d.attempts_made > it->second->attempts_made) it->second = &d;
  }
  PgArrayLiteral keys, kinds, sources, event_ids, destinations, urls, origin_topics, first_seen,
      tokens, copy_attempts;
  for (const auto& [key, d] : unique) {
    keys.add(key);
    kinds.add(d->kind);
    sources.add(d->source);
    event_ids.add(d->event_id);
    destinations.add(d->destination);
    urls.add(d->url);
    origin_topics.add(d->origin_topic);
    first_seen.add(d->first_seen_ms);
    tokens.add(d->lease_token);
    copy_attempts.add(int64_t{d->attempts_made});
  }
  const std::array<std::string, 10> params = {
      std::move(keys).take(),          std::move(kinds).take(),        std::move(sources).take(),
      std::move(event_ids).take(),     std::move(destinations).take(), std::move(urls).take(),
      std::move(origin_topics).take(), std::move(first_seen).take(),   std::move(tokens).take(),
      std::move(copy_attempts).take()};
  const auto a = audit.empty() ? std::array<std::string, 7>{} : inbound_params(audit);
  return pg_.run("claim", [&](pqxx::connection& c) {
    const pqxx::result rows = run_past_insert_races(unique.size() + audit.size(), [&] {
      pqxx::nontransaction tx(c);
      if (audit.empty()) {
        return tx.exec_prepared("hr_claim", params[0], params[1], params[2], params[3], params[4],
                                params[5], params[6], params[7], worker_id, lease_seconds,
                                params[8], params[9]);
      }
      return tx.exec_prepared("hr_claim_audit", params[0], params[1], params[2], params[3],
                              params[4], params[5], params[6], params[7], worker_id, lease_seconds,
                              params[8], params[9], a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
    });
    // Each key's state, lease token and fence after the statement.
    struct After {
      ClaimStatus status;
      std::optional<int64_t> token;
      int fence = 0;
    };
    std::map<std::string, After> by_key;
    for (const auto& row : rows) {
      by_key[row[0].as<std::string>()] = {
          status_from_state(row[1]),
          row[2].is_null() ? std::nullopt : std::optional<int64_t>(row[2].as<int64_t>()),
          row[3].is_null() ? 0 : row[3].as<int>()};
    }
    std::vector<ClaimStatus> out;
    out.reserve(deliveries.size());
    for (const DeliveryRef& d : deliveries) {
      auto it = by_key.find(d.key);
      if (it == by_key.end()) {
        throw std::runtime_error(
            "delivery key " + d.key +
            " has the hash of another delivery's key (deliveries_key_hash_idx)");
      }
      // Won: the row is not final and holds this ref's own token. A key repeated in the batch
      // was sent with one ref's token, so its other refs find the lease held by another claim, as
      // they would in separate batches, or find their copy stale.
      const auto& [status, token, fence] = it->second;
      if (status == ClaimStatus::kLeasedElsewhere && token == d.lease_token) {
        out.push_back(ClaimStatus::kClaimed);
      } else if (status == ClaimStatus::kLeasedElsewhere && d.attempts_made < fence) {
        out.push_back(ClaimStatus::kSuperseded);
      } else {
        out.push_back(status);
      }
    }
    return out;
  });
}

Result<std::vector<std::string>> PostgresDeliveryStore::record(
    const std::vector<AttemptRecord>& attempts, const std::string& worker_id) {
  if (attempts.empty()) return std::vector<std::string>{};
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
  std::vector<std::array<std::string, 12>> params;
  for (auto& round : rounds) {
    // Key order: the plan walks the batch (a nested loop over it: sequential scans are off), so
    // two workers recording overlapping batches lock rows in the same order. A lock-order
    // deadlock that still happens fails the round trip: the batch is put back and retried, as
    // in an outage.
    std::sort(round.begin(), round.end(),
              [](const AttemptRecord* a, const AttemptRecord* b) { return a->key < b->key; });
    PgArrayLiteral keys, attempt, started, duration, status, outcome, error, next_state, tokens,
        park_source, park_route, park_since;
    for (const AttemptRecord* a : round) {
      keys.add(a->key);
      attempt.add(int64_t{a->attempt});
      started.add(a->started_ms);
      duration.add(int64_t{a->duration_ms});
      status.add(int64_t{a->http_status});
      outcome.add(a->outcome);
      error.add(a->error);
      next_state.add(a->next_state);
      tokens.add(a->lease_token);
      park_source.add(a->park_source);
      park_route.add(a->park_route);
      park_since.add(a->park_suspended_at_ms);
    }
    params.push_back({std::move(keys).take(), std::move(attempt).take(), std::move(started).take(),
                      std::move(duration).take(), std::move(status).take(),
                      std::move(outcome).take(), std::move(error).take(),
                      std::move(next_state).take(), std::move(tokens).take(),
                      std::move(park_source).take(), std::move(park_route).take(),
                      std::move(park_since).take()});
  }
  return pg_.run("record", [&](pqxx::connection& c) {
    std::vector<std::string> unparked;
    if (params.size() == 1) {
      pqxx::nontransaction tx(c);
      exec_record(tx, params.front(), worker_id, unparked);
      return unparked;
    }
    // Several statements: all or none, so a retried batch never records an attempt twice.
    pqxx::work tx(c);
    for (const auto& p : params) exec_record(tx, p, worker_id, unparked);
    tx.commit();
    return unparked;
  });
}

Result<int> PostgresDeliveryStore::record_inbound(const std::vector<InboundEventRecord>& events) {
  if (events.empty()) return 0;
  const auto p = inbound_params(events);
  return pg_.run("record_inbound", [&](pqxx::connection& c) {
    return run_past_insert_races(events.size(), [&] {
      pqxx::nontransaction tx(c);
      return tx.exec_prepared1("hr_record_inbound", p[0], p[1], p[2], p[3], p[4], p[5], p[6])[0]
          .as<int>();
    });
  });
}

Result<void> PostgresDeliveryStore::release(const std::vector<LeaseRef>& leases,
                                            const std::string& worker_id) {
  if (leases.empty()) return {};
  PgArrayLiteral keys;
  PgArrayLiteral tokens;
  for (const LeaseRef& l : leases) {
    keys.add(l.key);
    tokens.add(l.lease_token);
  }
  std::string key_param = std::move(keys).take();
  std::string token_param = std::move(tokens).take();
  return pg_.run("release", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec_prepared("hr_release", key_param, worker_id, token_param);
  });
}

Result<void> PostgresDeliveryStore::fence(const std::vector<CopyFence>& fences) {
  if (fences.empty()) return {};
  // Each key once (UPDATE ... FROM changes a row once, with any one of its matches): its highest.
  std::map<std::string_view, const CopyFence*> highest;
  for (const CopyFence& f : fences) {
    auto [it, added] = highest.emplace(f.key, &f);
    if (!added && f.attempts_made > it->second->attempts_made) it->second = &f;
  }
  PgArrayLiteral keys;
  PgArrayLiteral attempts;
  PgArrayLiteral started;
  for (const auto& [key, f] : highest) {
    keys.add(key);
    attempts.add(int64_t{f->attempts_made});
    started.add(f->attempt_started_ms);
  }
  std::string key_param = std::move(keys).take();
  std::string attempts_param = std::move(attempts).take();
  std::string started_param = std::move(started).take();
  return pg_.run("fence", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec_prepared("hr_fence", key_param, attempts_param, started_param);
  });
}

}  // namespace hookrelay
