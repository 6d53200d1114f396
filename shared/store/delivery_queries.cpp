#include "shared/store/delivery_queries.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <pqxx/pqxx>
#include <thread>
#include <utility>

#include "shared/log.h"
#include "shared/signing/crypto.h"
#include "shared/store/key_hash_sql.h"
#include "shared/store/ordered_waiting_sql.h"

namespace hookrelay {
namespace {

#define HR_MS(col) "coalesce((extract(epoch from " col ") * 1000)::bigint, 0)"

// Column order matches delivery_from_row().
constexpr const char* kDeliveryColumns =
    "delivery_key, kind, source, event_id, destination, url, state, attempts, "
    "coalesce(lease_owner, ''), " HR_MS("lease_until") ", " HR_MS("first_seen_at") ", "
    HR_MS("first_attempt_at") ", " HR_MS("last_attempt_at") ", " HR_MS("completed_at") ", "
    "coalesce(last_status, 0), coalesce(last_error, ''), origin_topic";

// One delivery's attempts, by start, in AttemptRow's order. The view holds a first success kept
// in the deliveries row too (migrations/0015); the key's hash finds that row through deliveries'
// unique index (a condition on delivery_key alone would read deliveries whole).
constexpr const char* kAttemptsSql =
    "SELECT attempt, " HR_MS("started_at") ", duration_ms, coalesce(http_status, 0), outcome,"
    " error, worker_id FROM delivery_attempts_all"
    " WHERE " HR_KEY_IS("delivery_key", "$1::text") " ORDER BY started_at, attempt";

DeliveryRow delivery_from_row(const pqxx::row& r) {
  DeliveryRow d;
  d.key = r[0].as<std::string>();
  d.kind = r[1].as<std::string>();
  d.source = r[2].as<std::string>();
  d.event_id = r[3].as<std::string>();
  d.destination = r[4].as<std::string>();
  d.url = r[5].as<std::string>();
  d.state = r[6].as<std::string>();
  d.attempts = r[7].as<int>();
  d.lease_owner = r[8].as<std::string>();
  d.lease_until_ms = r[9].as<int64_t>();
  d.first_seen_ms = r[10].as<int64_t>();
  d.first_attempt_ms = r[11].as<int64_t>();
  d.last_attempt_ms = r[12].as<int64_t>();
  d.completed_ms = r[13].as<int64_t>();
  d.last_status = r[14].as<int>();
  d.last_error = r[15].as<std::string>();
  d.origin_topic = r[16].as<std::string>();
  return d;
}

std::vector<DeliveryRow> deliveries_from(const pqxx::result& rows) {
  std::vector<DeliveryRow> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back(delivery_from_row(r));
  return out;
}

bool is_state(const std::string& s) {
  static const std::array<const char*, 5> kStates = {"in_flight", "retrying", "succeeded", "dead",
                                                     "parked"};
  for (const char* k : kStates) {
    if (s == k) return true;
  }
  return false;
}

// A replay's audit: who put the delivery back in the retry flow and why, and a 'replayed' row
// among its attempts (numbered as its last attempt).
void audit_replay(pqxx::transaction_base& tx, const std::string& key, const std::string& who,
                  const std::string& reason, int attempt) {
  tx.exec_params("INSERT INTO dlq_replays (delivery_key, replayed_by, reason) VALUES ($1, $2, $3)",
                 key, who, reason);
  tx.exec_params(
      "INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms,"
      " outcome, error, worker_id) VALUES ($1, $2, now(), 0, 'replayed', $3, $4)",
      key, attempt, reason, "operator:" + who);
}

// The replay item of an admin API replay: its delivery is being changed in the same transaction,
// the message not yet produced. Only a pending item is marked, and, with a runner, only while
// that runner still holds the replay: an admin whose lease expired (another took the replay over)
// must not mark, so one key is never put back in the retry flow by two runs of one replay. The
// replay's row is share-locked first, so a runner taking the replay over waits for this
// transaction and then finds the item marked.
Result<void> mark_item(pqxx::transaction_base& tx, int64_t replay_id, const std::string& key,
                       const std::string& runner) {
  if (!runner.empty() &&
      tx.exec_params("SELECT 1 FROM replays WHERE id = $1 AND runner = $2 AND state = 'running'"
                     " FOR SHARE",
                     replay_id, runner)
          .empty()) {
    return fail("replay_lease_lost", "replay " + std::to_string(replay_id) +
                                         " is no longer run by this admin process (its lease "
                                         "expired and another took it over, or it ended)");
  }
  if (tx.exec_params("UPDATE replay_items SET status = 'marked', updated_at = now()"
                     " WHERE replay_id = $1 AND delivery_key = $2 AND status = 'pending'"
                     " RETURNING 1",
                     replay_id, key)
          .empty()) {
    return fail("replay_item_taken", key + " is no longer pending in replay " +
                                         std::to_string(replay_id) + ": another run took it");
  }
  return {};
}

}  // namespace

DeliveryQueries::DeliveryQueries(std::string url) : pg_(std::move(url)) {}

Result<std::vector<DeliveryRow>> DeliveryQueries::dlq_list(const DlqFilter& f) {
  if (!f.status.empty() && !is_state(f.status)) {
    return fail("bad_filter", "status: must be in_flight, retrying, succeeded, dead or parked");
  }
  if (f.limit < 1 || f.limit > 10000) return fail("bad_filter", "limit: must be 1..10000");
  // $1 is the status; the rest filter and order either table the same way.
  const std::string order = " ORDER BY last_attempt_at DESC NULLS LAST, delivery_key";
  const std::string filters =
      " AND ($2::text = '' OR source = $2::text)"
      " AND ($3::text = '' OR destination = $3::text)"
      " AND ($4::bigint = 0 OR last_attempt_at >= to_timestamp($4 / 1000.0))"
      " AND ($5::bigint = 0 OR last_attempt_at < to_timestamp($5 / 1000.0))" +
      order;
  // Dead letters are found through their own table and its index (migrations/0004); other
  // states, which the hot path keeps unindexed, scan deliveries.
  const std::string sql = f.status == "dead"
                              ? std::string("SELECT ") + kDeliveryColumns +
                                    " FROM deliveries WHERE state = $1::text"
                                    " AND " HR_KEY_HASH("delivery_key") " IN (SELECT " HR_KEY_HASH(
                                        "delivery_key") " FROM dead_letters WHERE true" +
                                    filters + " LIMIT $6::int)" + order
                              : std::string("SELECT ") + kDeliveryColumns +
                                    " FROM deliveries WHERE ($1::text = '' OR state = $1::text)" +
                                    filters + " LIMIT $6::int";
  return pg_.run("dlq_list", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return deliveries_from(
        tx.exec_params(sql, f.status, f.source, f.destination, f.since_ms, f.until_ms, f.limit));
  });
}

Result<DeliveryDetail> DeliveryQueries::delivery_show(const std::string& key) {
  return pg_.run("delivery_show", [&](pqxx::connection& c) -> Result<DeliveryDetail> {
    pqxx::read_transaction tx(c);  // one snapshot for the delivery and its history
    auto rows = tx.exec_params(std::string("SELECT ") + kDeliveryColumns +
                                   " FROM deliveries WHERE " HR_KEY_IS("delivery_key", "$1::text"),
                               key);
    if (rows.empty()) return fail("not_found", "no delivery with key " + key);
    DeliveryDetail out;
    out.delivery = delivery_from_row(rows[0]);
    for (const auto& r : tx.exec_params(kAttemptsSql, key)) {
      out.attempts.push_back(AttemptRow{r[0].as<int>(), r[1].as<int64_t>(), r[2].as<int>(),
                                        r[3].as<int>(), r[4].as<std::string>(),
                                        r[5].as<std::string>(), r[6].as<std::string>()});
    }
    for (const auto& r : tx.exec_params(
             "SELECT id, replayed_by, " HR_MS("replayed_at") ", reason FROM dlq_replays"
                                                             " WHERE delivery_key = $1 ORDER BY id",
             key)) {
      out.replays.push_back(ReplayRow{r[0].as<int64_t>(), r[1].as<std::string>(),
                                      r[2].as<int64_t>(), r[3].as<std::string>()});
    }
    tx.commit();
    return out;
  });
}

Result<EventDetail> DeliveryQueries::event_show(const std::string& source,
                                                const std::string& event_id) {
  return pg_.run("event_show", [&](pqxx::connection& c) -> Result<EventDetail> {
    pqxx::read_transaction tx(c);
    EventDetail out;
    auto inbound = tx.exec_params(
        "SELECT source, event_id, topic, \"partition\", \"offset\", " HR_MS("received_at") ", "
        HR_MS("first_seen_at") ", encode(body_sha256, 'hex') FROM inbound_events"
        " WHERE " HR_EVENT_HASH("source", "event_id") " = " HR_EVENT_HASH("$1::text", "$2::text")
        " AND source = $1 AND event_id = $2",
        source, event_id);
    if (!inbound.empty()) {
      const auto& r = inbound[0];
      out.inbound =
          InboundEventRow{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(),
                          r[3].as<int>(),         r[4].as<int64_t>(),     r[5].as<int64_t>(),
                          r[6].as<int64_t>(),     r[7].as<std::string>()};
    }
    out.deliveries = deliveries_from(tx.exec_params(
        std::string("SELECT ") + kDeliveryColumns +
            " FROM deliveries WHERE source = $1 AND event_id = $2 ORDER BY destination",
        source, event_id));
    tx.commit();
    if (!out.inbound && out.deliveries.empty()) {
      return fail("not_found", "no event " + source + "/" + event_id);
    }
    return out;
  });
}

namespace {

// The state change, audit and replay item of mark_replayed, in `tx`.
Result<DeliveryRow> mark_replayed_in(pqxx::work& tx, const std::string& key, const std::string& who,
                                     const std::string& reason, int64_t replay_id,
                                     const std::string& from_state, const std::string& runner) {
  // The state condition makes concurrent replays of one delivery succeed exactly once. The
  // replay's copy counts its attempts anew (hr-attempt 0): the row loses its fence as it leaves
  // 'dead' or 'parked' (migrations/0020). The mark is its latest "attempt" (the 'replayed' audit
  // row): last_attempt_at takes the database's now(), the same instant as the mark's replayed_at
  // and its item's updated_at (one transaction). Whether a worker attempted it since is then
  // whether last_attempt_at still equals them, not a comparison of a worker's clock with the
  // database's (kUnfinishedReplaySql, needs_produce_again, undo_unfinished_replay).
  auto rows = tx.exec_params(
      std::string("UPDATE deliveries SET state = 'retrying', lease_owner = NULL,"
                  " lease_until = NULL, lease_token = NULL, completed_at = NULL,"
                  " last_attempt_at = now()"
                  " WHERE " HR_KEY_IS("delivery_key", "$1::text") " AND state = $2 RETURNING ") +
          kDeliveryColumns,
      key, from_state);
  if (rows.empty()) {
    auto state = tx.exec_params(
        "SELECT state FROM deliveries WHERE " HR_KEY_IS("delivery_key", "$1::text"), key);
    if (state.empty()) return fail("not_found", "no delivery with key " + key);
    return fail("not_replayable", key + " is " + state[0][0].as<std::string>() + ", only " +
                                      from_state + " deliveries replay here");
  }
  DeliveryRow d = delivery_from_row(rows[0]);
  if (replay_id != 0) {
    // Not committed on failure: the delivery stays as it was.
    if (auto item = mark_item(tx, replay_id, key, runner); !item) return Unexpected{item.error()};
  }
  audit_replay(tx, key, who, reason, d.attempts);
  return d;
}

}  // namespace

Result<DeliveryRow> DeliveryQueries::mark_replayed(const std::string& key, const std::string& who,
                                                   const std::string& reason, int64_t replay_id,
                                                   const std::string& from_state,
                                                   const std::string& runner) {
  return pg_.run("mark_replayed", [&](pqxx::connection& c) -> Result<DeliveryRow> {
    pqxx::work tx(c);
    auto d = mark_replayed_in(tx, key, who, reason, replay_id, from_state, runner);
    if (d) tx.commit();
    return d;
  });
}

Result<bool> DeliveryQueries::mark_replayed_behind_key(
    const std::string& key, const std::string& who, const std::string& reason, const KeyWait& wait,
    int64_t replay_id, const std::string& from_state, const std::string& runner) {
  const std::string header_array = sql::waiting_headers(wait.headers);
  const std::string header_bytes = sql::waiting_header_bytes(wait.headers);
  return pg_.run("mark_replayed", [&](pqxx::connection& c) -> Result<bool> {
    pqxx::work tx(c);
    // The key's row first, held with no head if it was free, and locked either way: a worker
    // advancing the key (worker/key_order_store.cpp) waits for this transaction, then finds the
    // new waiting row. One statement: a row a worker deletes meanwhile (its head done, nothing
    // waiting) is inserted again, not missed.
    const auto head = tx.exec_params1(
                            "INSERT INTO ordered_keys (source, route, ordering_key, head_key)"
                            " VALUES ($1, $2, $3, '') ON CONFLICT (source, route, ordering_key)"
                            " DO UPDATE SET head_key = ordered_keys.head_key RETURNING head_key",
                            wait.source, wait.route, wait.ordering_key)[0]
                          .as<std::string>();
    // A head that is itself parked moves only when a release takes it (it comes first in
    // arrival order, so it is normally released before this one). One that is still parked now
    // was not released (its message past retention, its release failed), and nothing else moves
    // it: behind it this delivery, and every later one of the key, would wait for good (released
    // at once instead, this one was set to wait behind it by the first worker that read it). So
    // the key lets it go, in this transaction: it is held with no head, as a free key is, and
    // this delivery waits behind the ones already waiting; a worker's look releases the first of
    // them at once (KeyOrderStore::held). The parked head is released behind them should it be
    // released later. Its own waiting row, left by a release whose publish was not confirmed, is
    // stale (it was read, or it would not be parked): it goes, as advance() drops a head's row.
    const bool head_parked =
        !head.empty() && head != key &&
        !tx.exec_params("SELECT 1 FROM deliveries WHERE " HR_KEY_IS(
                            "delivery_key", "$1::text") " AND state = 'parked'",
                        head)
             .empty();
    if (auto d = mark_replayed_in(tx, key, who, reason, replay_id, from_state, runner); !d)
      return Unexpected{d.error()};
    if (head == key) {
      tx.commit();
      return false;
    }
    if (head_parked) {
      tx.exec_params(
          "UPDATE ordered_keys SET head_key = '', updated_at = now() WHERE source = $1"
          " AND route = $2 AND ordering_key = $3 AND head_key = $4",
          wait.source, wait.route, wait.ordering_key, head);
      tx.exec_params(
          "DELETE FROM ordered_waiting WHERE source = $1 AND route = $2 AND ordering_key = $3"
          " AND delivery_key = $4",
          wait.source, wait.route, wait.ordering_key, head);
    }
    tx.exec_params(sql::kAppendWaiting, wait.source, wait.route, wait.ordering_key, key, wait.topic,
                   header_array, hex_encode(wait.body), header_bytes);
    tx.commit();
    return true;
  });
}

namespace {
// The latest replay mark of each key, with the delivery still where that mark left it.
constexpr const char* kUnfinishedReplaySql =
    "SELECT r.delivery_key, r.replayed_by, " HR_MS("r.replayed_at") ","
    " (extract(epoch from now() - r.replayed_at) * 1000)::bigint"
    " FROM (SELECT DISTINCT ON (delivery_key) delivery_key, replayed_by, replayed_at, reason"
    "       FROM dlq_replays WHERE %s ORDER BY delivery_key, id DESC) r"
    " JOIN deliveries d ON " HR_KEY_IS("d.delivery_key", "r.delivery_key")
    " WHERE d.state = 'retrying' AND d.lease_owner IS NULL"
    // No attempt since the mark (mark_replayed_in stamps last_attempt_at with the mark's instant).
    "   AND d.last_attempt_at = r.replayed_at"
    // Waiting behind its ordering key: a worker publishes it when its turn comes.
    "   AND NOT EXISTS (SELECT 1 FROM ordered_waiting w WHERE w.delivery_key = d.delivery_key)";

std::string unfinished_sql(const char* where) {
  std::string sql = kUnfinishedReplaySql;
  sql.replace(sql.find("%s"), 2, where);
  return sql;
}

UnfinishedReplay unfinished_from_row(const pqxx::row& r) {
  return UnfinishedReplay{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<int64_t>(),
                          r[3].as<int64_t>()};
}
}  // namespace

Result<std::optional<UnfinishedReplay>> DeliveryQueries::unfinished_replay(const std::string& key) {
  return pg_.run("unfinished_replay", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto rows = tx.exec_params(unfinished_sql("delivery_key = $1"), key);
    std::optional<UnfinishedReplay> out;
    if (!rows.empty()) out = unfinished_from_row(rows[0]);
    return out;
  });
}

Result<void> DeliveryQueries::retake_replay(const std::string& key, const std::string& who,
                                            const std::string& reason) {
  return pg_.run("retake_replay", [&](pqxx::connection& c) -> Result<void> {
    pqxx::work tx(c);
    // Not locked: a worker taking it up between this check and the commit only leaves one more
    // audit row, and its message a second copy, which the claim makes harmless.
    auto rows = tx.exec_params(unfinished_sql("delivery_key = $1"), key);
    if (rows.empty())
      return fail("not_replayable", key + " has no unfinished replay: a worker took it up");
    auto attempts = tx.exec_params1(
        "SELECT attempts FROM deliveries WHERE " HR_KEY_IS("delivery_key", "$1::text"), key);
    audit_replay(tx, key, who, reason, attempts[0].as<int>());
    // Stamped as a mark is (mark_replayed_in): the retake is the newest mark now, and a run that
    // stops before its produce leaves it found unfinished again.
    tx.exec_params("UPDATE deliveries SET last_attempt_at = now()"
                   " WHERE " HR_KEY_IS("delivery_key", "$1::text") " AND state = 'retrying'"
                   " AND lease_owner IS NULL",
                   key);
    tx.commit();
    return {};
  });
}

Result<std::vector<UnfinishedReplay>> DeliveryQueries::unfinished_replays(int64_t min_age_ms,
                                                                          int limit) {
  return pg_.run("unfinished_replays", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    // dlq_replays holds operators' actions, not traffic: read whole.
    auto rows = tx.exec_params(unfinished_sql("true") +
                                   " AND r.replayed_at <= now() - $1 * interval '1 millisecond'"
                                   " ORDER BY r.replayed_at LIMIT $2",
                               min_age_ms, limit);
    std::vector<UnfinishedReplay> out;
    for (const auto& r : rows) out.push_back(unfinished_from_row(r));
    return out;
  });
}

Result<std::vector<UnfinishedReplay>> DeliveryQueries::unfinished_route_replays(
    const std::string& source, const std::string& route, const std::string& reason,
    int64_t min_age_ms, int limit) {
  return pg_.run("unfinished_route_replays", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto rows = tx.exec_params(unfinished_sql("true") +
                                   " AND d.source = $3 AND d.destination = $4 AND r.reason = $5"
                                   " AND r.replayed_at <= now() - $1 * interval '1 millisecond'"
                                   " ORDER BY r.replayed_at LIMIT $2",
                               min_age_ms, limit, source, route, reason);
    std::vector<UnfinishedReplay> out;
    for (const auto& r : rows) out.push_back(unfinished_from_row(r));
    return out;
  });
}

Result<DeliveryPage> DeliveryQueries::list_deliveries(const DeliveryPageFilter& f) {
  if (!f.state.empty() && !is_state(f.state)) {
    return fail("bad_filter", "state: must be in_flight, retrying, succeeded, dead or parked");
  }
  if (f.limit < 1 || f.limit > kMaxDeliveryPage) {
    return fail("bad_filter", "limit: must be 1.." + std::to_string(kMaxDeliveryPage));
  }
  const int cap_budget = f.scan_budget > 0 ? f.scan_budget : kDeliveryScanBudget;
  std::vector<std::string> params;
  auto param = [&params](std::string v) {
    params.push_back(std::move(v));
    return "$" + std::to_string(params.size());
  };
  // The walk: one table and one index, newest first. Dead and parked deliveries have tables of
  // their own, kept by triggers (migrations/0009, 0010), with first_seen_at and indexes in this
  // order; every other state is checked on the rows of deliveries (an index naming `state` would
  // make the worker's record updates non-HOT, migrations/0004).
  const bool own_table = (f.state == "dead" || f.state == "parked") && f.event_id.empty();
  const std::string table = !own_table          ? "deliveries"
                            : f.state == "dead" ? "dead_letters"
                                                : "parked_deliveries";
  // `inner` narrows the walk along its index (an event id; a source or a route of dead_letters or
  // parked_deliveries; the first-seen bounds and the cursor); `outer` is checked on the rows
  // walked, so a condition that matches nothing costs at most the scan budget instead of the whole
  // source or table. deliveries has one first-seen index (migrations/0014): without an event id,
  // its walk checks the source and the route on the rows walked. dead_letters has one per source
  // and one per route, parked_deliveries one per (source, route).
  std::string inner;
  std::string outer;
  if (!f.event_id.empty()) {
    inner += " AND event_id = " + param(f.event_id);
    if (!f.source.empty()) inner += " AND source = " + param(f.source);
  } else if (!f.source.empty()) {
    (own_table ? inner : outer) += " AND source = " + param(f.source);
  }
  if (!f.route.empty()) {
    const bool lead = own_table && (f.source.empty() || table == "parked_deliveries");
    (lead ? inner : outer) += " AND destination = " + param(f.route);
  }
  if (!own_table && !f.state.empty()) outer += " AND state = " + param(f.state);
  if (f.since_ms > 0)
    inner += " AND first_seen_at >= to_timestamp(" + param(std::to_string(f.since_ms)) +
             "::bigint / 1000.0)";
  if (f.until_ms > 0)
    inner += " AND first_seen_at < to_timestamp(" + param(std::to_string(f.until_ms)) +
             "::bigint / 1000.0)";
  if (f.after) {
    std::string at = param(std::to_string(f.after->first_seen_us));
    inner += " AND (first_seen_at, delivery_key) < (timestamptz 'epoch' + " + at +
             "::bigint * interval '1 microsecond', " + param(f.after->key) + "::text)";
  }
  // With nothing to check on the rows walked, every row is a match: read one past the page.
  const int cap = outer.empty() ? f.limit + 1 : std::max(cap_budget, f.limit + 1);
  const std::string newest = " ORDER BY first_seen_at DESC, delivery_key DESC";
  const std::string us = "(extract(epoch from first_seen_at) * 1000000)::bigint";
  // Columns: the delivery (0-16), its position (17, 18); how many rows were walked (19) and the
  // position of the last one (20, 21). One row of NULL deliveries when nothing matched.
  const std::string sql =
      "WITH scanned AS MATERIALIZED (SELECT delivery_key, first_seen_at, source, destination" +
      std::string(own_table ? "" : ", state") + " FROM " + table + " WHERE true" + inner + newest +
      " LIMIT " + std::to_string(cap) + "), hits AS (SELECT " + kDeliveryColumns + ", " + us +
      ", first_seen_at AS page_at FROM deliveries"
      " WHERE " HR_KEY_HASH("delivery_key") " IN (SELECT " HR_KEY_HASH(
          "delivery_key") " FROM scanned WHERE true" +
      outer + newest + " LIMIT " + std::to_string(f.limit + 1) + ")" +
      (own_table ? " AND state = " + param(f.state) : std::string()) +
      "), edge AS (SELECT (SELECT count(*) FROM scanned) AS n, last.delivery_key AS k, " + us +
      " AS us FROM (SELECT 1) one LEFT JOIN (SELECT delivery_key, first_seen_at FROM scanned"
      " ORDER BY first_seen_at, delivery_key LIMIT 1) last ON true)"
      " SELECT hits.*, edge.n, edge.us, edge.k FROM edge LEFT JOIN hits ON true"
      " ORDER BY hits.page_at DESC, hits.delivery_key DESC";
  return pg_.run("list_deliveries", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto rows = tx.exec_params(sql, pqxx::prepare::make_dynamic_params(params));
    DeliveryPage page;
    for (const auto& r : rows) {
      if (r[0].is_null()) break;
      if (static_cast<int>(page.rows.size()) == f.limit) {
        const auto& last = rows[static_cast<pqxx::result::size_type>(f.limit - 1)];
        page.next = DeliveryPagePosition{last[17].as<int64_t>(), last[0].as<std::string>()};
        return page;
      }
      page.rows.push_back(delivery_from_row(r));
    }
    // Fewer than a page past the last match: more may lie below the last row walked.
    if (!rows.empty() && rows[0][19].as<int64_t>() == cap) {
      page.next = DeliveryPagePosition{rows[0][20].as<int64_t>(), rows[0][21].as<std::string>()};
      page.scan_bounded = static_cast<int>(page.rows.size()) < f.limit;
    }
    return page;
  });
}

Result<DeliveryDetail> DeliveryQueries::call_show(const std::string& call_id) {
  auto key = pg_.run("call_show", [&](pqxx::connection& c) -> Result<std::string> {
    pqxx::nontransaction tx(c);
    auto rows = tx.exec_params(
        "SELECT delivery_key FROM deliveries WHERE event_id = $1 AND kind = 'call' LIMIT 1",
        call_id);
    if (rows.empty()) return fail("not_found", "no call with id " + call_id);
    return rows[0][0].as<std::string>();
  });
  if (!key) return Unexpected{key.error()};
  return delivery_show(*key);
}

Result<ResendSourceRow> DeliveryQueries::resend_source(const std::string& key) {
  return pg_.run("resend_source", [&](pqxx::connection& c) -> Result<ResendSourceRow> {
    pqxx::nontransaction tx(c);
    auto rows = tx.exec_params(
        "SELECT d.kind, d.destination, i.topic, i.\"partition\", i.\"offset\" FROM deliveries d"
        " LEFT JOIN inbound_events i ON " HR_EVENT_HASH("i.source", "i.event_id") " = "
        HR_EVENT_HASH("d.source", "d.event_id") " AND i.source = d.source"
        " AND i.event_id = d.event_id"
        " WHERE " HR_KEY_IS("d.delivery_key", "$1::text"),
        key);
    if (rows.empty()) return fail("not_found", "no delivery with key " + key);
    const auto& r = rows[0];
    const bool call = r[0].as<std::string>() == "call";
    if (r[2].is_null()) {
      return fail("not_resendable",
                  key + (call ? ": its call's request" : ": its event's first message") +
                      " is no longer recorded (inbound event retention)");
    }
    // A call's message names its own destination; a webhook's copy is bound to its route.
    return ResendSourceRow{r[2].as<std::string>(), r[3].as<int32_t>(), r[4].as<int64_t>(),
                           call ? std::string() : r[1].as<std::string>()};
  });
}

Result<void> DeliveryQueries::mark_resend(const std::string& key, const std::string& who,
                                          const std::string& reason, int64_t replay_id,
                                          const std::string& runner) {
  return pg_.run("mark_resend", [&](pqxx::connection& c) -> Result<void> {
    pqxx::work tx(c);
    auto rows = tx.exec_params(
        "UPDATE deliveries SET resend_id = $2"
        " WHERE " HR_KEY_IS(
            "delivery_key",
            "$1::text") " AND state = 'succeeded' AND resend_id IS NULL RETURNING attempts",
        key, replay_id);
    if (rows.empty()) {
      auto state = tx.exec_params(
          "SELECT state, resend_id IS NOT NULL FROM deliveries"
          " WHERE " HR_KEY_IS("delivery_key", "$1::text"),
          key);
      if (state.empty()) return fail("not_found", "no delivery with key " + key);
      return fail("not_resendable", state[0][1].as<bool>()
                                        ? key + " has a resend pending already"
                                        : key + " is " + state[0][0].as<std::string>() +
                                              ", only succeeded deliveries are resent");
    }
    // Not committed on failure: the marker is not set.
    if (auto item = mark_item(tx, replay_id, key, runner); !item) return Unexpected{item.error()};
    tx.exec_params(
        "INSERT INTO dlq_replays (delivery_key, replayed_by, reason) VALUES ($1, $2, $3)", key, who,
        "resend: " + reason);
    tx.exec_params(
        "INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms,"
        " outcome, error, worker_id) VALUES ($1, $2, now(), 0, 'resent', $3, $4)",
        key, rows[0][0].as<int>(), reason, "operator:" + who);
    tx.commit();
    return {};
  });
}

Result<void> DeliveryQueries::undo_resend(const std::string& key, int64_t replay_id) {
  return pg_.run("undo_resend", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec_params(
        "UPDATE deliveries SET resend_id = NULL"
        " WHERE " HR_KEY_IS("delivery_key", "$1::text") " AND resend_id = $2",
        key, replay_id);
  });
}

Result<bool> DeliveryQueries::needs_produce_again(const std::string& key, int64_t replay_id) {
  return pg_.run("needs_produce_again", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    // A resend: its marker is still there. A replay of a dead delivery: still 'retrying', no
    // lease, no attempt since the mark.
    auto rows = tx.exec_params(
        "SELECT (d.state = 'succeeded' AND d.resend_id = $2)"
        "    OR (d.state = 'retrying' AND d.lease_owner IS NULL"
        "        AND d.last_attempt_at = i.updated_at"
        // Waiting behind its ordering key (a release): a worker publishes it in its turn.
        "        AND NOT EXISTS (SELECT 1 FROM ordered_waiting w"
        "                        WHERE w.delivery_key = d.delivery_key))"
        " FROM deliveries d JOIN replay_items i ON i.replay_id = $2 AND i.delivery_key = "
        "d.delivery_key"
        " WHERE " HR_KEY_IS("d.delivery_key", "$1::text"),
        key, replay_id);
    return !rows.empty() && !rows[0][0].is_null() && rows[0][0].as<bool>();
  });
}

// The maintenance functions from the migrations: one int argument, one number back.
template <class T>
Result<T> DeliveryQueries::call_maintenance(const char* what, const char* sql, int arg) {
  return pg_.run(what, [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx.exec_params1(sql, arg)[0].as<T>();
  });
}

// The partition functions give up a lock wait after their lock_timeout (SQLSTATE 55P03, saying
// "lock_timeout"; PostgreSQL's own message says "lock timeout"), having changed nothing.
Result<int> DeliveryQueries::call_locking_maintenance(const char* what, const char* sql, int arg,
                                                      const AttemptMaintenanceRetry& retry) {
  const auto lock_wait_ran_out = [](const Error& e) {
    return e.code == "db_conflict" && (e.message.find("lock_timeout") != std::string::npos ||
                                       e.message.find("lock timeout") != std::string::npos);
  };
  const int attempts = std::max(retry.attempts, 1);
  auto r = call_maintenance<int>(what, sql, arg);
  for (int attempt = 1; !r && r.error().code == "db_conflict"; ++attempt) {
    if (attempt >= attempts) {
      if (!lock_wait_ran_out(r.error())) break;
      return fail("maintenance_locked",
                  std::string(what) + ": delivery_attempts stayed locked by another transaction, " +
                      std::to_string(attempt) + " tries " + std::to_string(retry.retry_delay_ms) +
                      " ms apart; nothing changed. Run it again once that transaction ends (" +
                      r.error().message + ")",
                  true);
    }
    spdlog::warn(
        "msg=attempt_maintenance_conflict call={} attempt={} error={} action=\"trying "
        "again in {} ms\"",
        what, attempt, log_quote(r.error().message), retry.retry_delay_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(std::max(retry.retry_delay_ms, 0)));
    r = call_maintenance<int>(what, sql, arg);
  }
  return r;
}

Result<int> DeliveryQueries::ensure_attempt_partitions(int days_ahead,
                                                       const AttemptMaintenanceRetry& retry) {
  return call_locking_maintenance("ensure_attempt_partitions",
                                  "SELECT hookrelay_ensure_attempt_partitions($1)", days_ahead,
                                  retry);
}

Result<int> DeliveryQueries::drop_attempt_partitions(int older_than_days,
                                                     const AttemptMaintenanceRetry& retry) {
  return call_locking_maintenance(
      "drop_attempt_partitions",
      "SELECT hookrelay_drop_attempt_partitions(make_interval(days => $1))", older_than_days,
      retry);
}

Result<int64_t> DeliveryQueries::delete_inbound_events(int older_than_days) {
  return call_maintenance<int64_t>(
      "delete_inbound_events", "SELECT hookrelay_delete_inbound_events(make_interval(days => $1))",
      older_than_days);
}

Result<int64_t> DeliveryQueries::delete_finished_deliveries(int older_than_days, int max_rows) {
  return pg_.run("delete_finished_deliveries", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx
        .exec_params1("SELECT hookrelay_delete_finished_deliveries(make_interval(days => $1), $2)",
                      older_than_days, max_rows)[0]
        .as<int64_t>();
  });
}

}  // namespace hookrelay
