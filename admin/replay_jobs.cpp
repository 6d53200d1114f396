#include "admin/replay_jobs.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "shared/json_writer.h"
#include "shared/log.h"
#include "shared/signing/crypto.h"
#include "shared/store/key_hash_sql.h"
#include "shared/store/pg_array.h"
#include "shared/utf8.h"

namespace hookrelay::admin {
namespace {

#define HR_MS(col) "coalesce((extract(epoch from " col ") * 1000)::bigint, 0)"

// Dead letters through their own table (migrations/0004); succeeded deliveries through the
// first-seen index, newest first. Either way at most $5 + 1 matches are read, so a filter that
// matches too much is refused without reading the rest. A bound of 0 is no bound: a given
// `until` is after the epoch (parse_replay_request), and `since` at the epoch bounds nothing
// that exists. The first-seen index is the only one
// (migrations/0014): a route's succeeded deliveries are checked on the rows walked, so a route
// with few of them reads back to `since` (or through the whole table without it).
constexpr const char* kMatchDeadSql = R"SQL(
SELECT d.delivery_key FROM dead_letters dl
  JOIN deliveries d
    ON )SQL" HR_KEY_IS("d.delivery_key", "dl.delivery_key") R"SQL(
WHERE d.state = 'dead' AND ($1::text = '' OR dl.destination = $1::text)
  AND ($2::bigint = 0 OR d.first_seen_at >= to_timestamp($2::bigint / 1000.0))
  AND ($3::bigint = 0 OR d.first_seen_at < to_timestamp($3::bigint / 1000.0))
  AND $4::text = 'dead'
LIMIT $5::int + 1
)SQL";

ReplayProgress progress_from(const pqxx::row& r) {
  ReplayProgress p;
  p.id = r[0].as<int64_t>();
  p.state = r[1].as<std::string>();
  p.dry_run = r[2].as<bool>();
  p.rate = r[3].as<double>();
  p.requested_by = r[4].as<std::string>();
  p.request_json = r[5].as<std::string>();
  p.created_ms = r[6].as<int64_t>();
  p.finished_ms = r[7].as<int64_t>();
  return p;
}

// What a replay was asked to do with its keys (replay_items.resend, migrations/0017).
enum class Intent {
  kReplay,  // a filter on dead deliveries, or a release: never resend
  kResend,  // a filter on succeeded deliveries
  // Keys listed by hand, by their state in this transaction: the dead ones are replayed; the
  // succeeded ones resent with resend_succeeded (kByStateResend), else stored skipped.
  kByState,
  kByStateResend,
};

// The detail of a key listed by hand that is succeeded when the replay is requested without
// resend_succeeded: stored skipped, never worked. A client whose POST of dead keys timed out and
// that sends it again finds them delivered by the first replay: the second resends nothing.
constexpr const char* kNotResentDetail =
    "succeeded when the replay was requested: not resent (resend_succeeded was not set)";

struct InsertedItems {
  int64_t matched = 0;
  int64_t skipped = 0;  // stored skipped (kByState)
};

// The items of a replay, in the order given: the order they are worked through. Each one's intent
// is fixed here, when the replay is requested: a key listed by hand that is dead now and has been
// delivered by the time the runner reaches it (another replay of it, a retried POST, `hookrelay
// dlq replay`) is skipped then, not resent.
InsertedItems insert_items(pqxx::work& tx, int64_t id, const std::vector<std::string>& keys,
                           Intent intent) {
  PgArrayLiteral array;
  for (const auto& k : keys) array.add(k);
  InsertedItems out;
  if (intent == Intent::kByState || intent == Intent::kByStateResend) {
    const auto row = tx.exec_params1(
        "WITH items AS ("
        "  INSERT INTO replay_items (replay_id, delivery_key, position, resend, status, detail)"
        "  SELECT $1, u.k, u.n, s.succeeded AND $3::boolean,"
        "         CASE WHEN s.succeeded AND NOT $3::boolean THEN 'skipped' ELSE 'pending' END,"
        "         CASE WHEN s.succeeded AND NOT $3::boolean THEN $4::text ELSE '' END"
        "  FROM unnest($2::text[]) WITH ORDINALITY AS u(k, n)"
        "  CROSS JOIN LATERAL (SELECT coalesce((SELECT d.state = 'succeeded' FROM deliveries d"
        "                      WHERE " HR_KEY_IS("d.delivery_key", "u.k") "), false) AS succeeded) s"
        "  ON CONFLICT DO NOTHING RETURNING status)"
        " SELECT count(*), count(*) FILTER (WHERE status = 'skipped') FROM items",
        id, std::move(array).take(), intent == Intent::kByStateResend, kNotResentDetail);
    out.matched = row[0].as<int64_t>();
    out.skipped = row[1].as<int64_t>();
    return out;
  }
  out.matched = static_cast<int64_t>(
      tx.exec_params(
            "INSERT INTO replay_items (replay_id, delivery_key, position, resend)"
            " SELECT $1, k, n, $3::boolean FROM unnest($2::text[]) WITH ORDINALITY AS u(k, n)"
            " ON CONFLICT DO NOTHING",
            id, std::move(array).take(), intent == Intent::kResend)
          .affected_rows());
  return out;
}

// An item's detail as text PostgreSQL stores (replay_items.detail): cut to
// kMaxItemDetailBytes without splitting a UTF-8 character (a byte cut made the UPDATE fail,
// 22021, and the replay stop at that item), and with each NUL or byte of invalid UTF-8 as '?'.
std::string storable_detail(const std::string& detail) {
  const std::string_view cut = utf8_prefix(detail, ReplayJobs::kMaxItemDetailBytes);
  std::string out;
  out.reserve(cut.size());
  for (std::size_t i = 0; i < cut.size();) {
    const std::size_t n = cut[i] == '\0' ? 0 : utf8_sequence_length(cut, i);
    if (n == 0) {
      out += '?';
      ++i;
    } else {
      out.append(cut.substr(i, n));
      i += n;
    }
  }
  return out;
}

}  // namespace

ReplayJobs::ReplayJobs(std::string url) : pg_(std::move(url)) {}

Result<CreatedReplay> ReplayJobs::create(const ReplayRequest& req, const std::string& request_json,
                                         const std::string& who, int max_keys,
                                         const IdempotencyKey& idempotency) {
  bool existing = false;
  // The new replay as stored, for the answer when reading it back fails (below).
  ReplayProgress as_stored;
  auto created = pg_.run("create replay", [&](pqxx::connection& c) -> Result<int64_t> {
    pqxx::work tx(c);
    const auto id =
        tx.exec1("SELECT nextval(pg_get_serial_sequence('replays', 'id'))")[0].as<int64_t>();
    if (!idempotency.key.empty()) {
      // The key first: a concurrent request with the same key waits here until this transaction
      // ends, then finds the key taken (or, after a rollback, takes it). The replay row comes
      // below; the foreign key is checked at commit (migrations/0018).
      const std::string sha = hex_encode(idempotency.request_sha256);
      // The key taken, or the row that holds it. A row that conflicts and is gone by the time
      // it is read (each statement sees what was committed when it began): its replay was
      // deleted in between, and the key with it, so the key is free and taken again. Bounded:
      // only a key whose replays are deleted as fast as they are created keeps going round.
      pqxx::result stored;
      for (int attempt = 1;; ++attempt) {
        auto inserted = tx.exec_params(
            "INSERT INTO replay_idempotency_keys (idempotency_key, request_sha256, requested_by,"
            "   replay_id) VALUES ($1, decode($2, 'hex'), $3, $4)"
            " ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1",
            idempotency.key, sha, who, id);
        if (!inserted.empty()) break;
        stored = tx.exec_params(
            "SELECT encode(request_sha256, 'hex'), replay_id, requested_by"
            " FROM replay_idempotency_keys WHERE idempotency_key = $1",
            idempotency.key);
        if (!stored.empty()) break;
        if (attempt == 3) {
          return fail("idempotency_key_contended",
                      "Idempotency-Key: the replay it named was deleted while this request was "
                      "answered, three times in a row; retry");
        }
      }
      if (!stored.empty()) {
        const auto stored_id = stored[0][1].as<int64_t>();
        if (stored[0][0].as<std::string>() != sha) {
          const bool other_caller = stored[0][2].as<std::string>() != who;
          return fail(
              "idempotency_key_reused",
              "Idempotency-Key: '" + idempotency.key + "' was used for replay " +
                  std::to_string(stored_id) +
                  (other_caller ? " by another admin token" : " with a different request body") +
                  "; a key names one request: send a new key for a new replay");
        }
        existing = true;
        return stored_id;  // nothing written: the transaction is rolled back
      }
    }
    std::vector<std::string> keys = req.keys;
    if (req.filter) {
      const ReplayFilter& f = *req.filter;
      std::string sql;
      if (f.state == "dead") {
        sql = kMatchDeadSql;
      } else {
        // Only the conditions given, so the planner sees plain equalities (see list_deliveries).
        sql = "SELECT delivery_key FROM deliveries WHERE state = 'succeeded'";
        if (!f.route.empty())
          sql += " AND destination = $1::text";
        else
          sql += " AND $1::text = ''";
        sql += f.since_ms ? " AND first_seen_at >= to_timestamp($2::bigint / 1000.0)"
                          : " AND $2::bigint = 0";
        sql += f.until_ms ? " AND first_seen_at < to_timestamp($3::bigint / 1000.0)"
                          : " AND $3::bigint = 0";
        sql += " AND $4::text = 'succeeded' ORDER BY first_seen_at DESC LIMIT $5::int + 1";
      }
      for (const auto& r :
           tx.exec_params(sql, f.route, f.since_ms, f.until_ms, f.state, max_keys)) {
        keys.push_back(r[0].as<std::string>());
      }
      if (static_cast<int64_t>(keys.size()) > max_keys) {
        return fail(
            "bad_request",
            "filter: matches more than " + std::to_string(max_keys) +
                " deliveries (admin.max_replay_keys); narrow it with route, since or until");
      }
    } else if (static_cast<int64_t>(keys.size()) > max_keys) {
      return fail("bad_request",
                  "keys: more than " + std::to_string(max_keys) + " (admin.max_replay_keys)");
    }
    const auto row = tx.exec_params1(
        "INSERT INTO replays (id, request, requested_by, dry_run, rate, state, finished_at)"
        " VALUES ($6, $1::jsonb, $2, $3, $4, CASE WHEN $5 THEN 'finished' ELSE 'running' END,"
        "         CASE WHEN $5 THEN now() END)"
        " RETURNING id, state, dry_run, rate, requested_by, request::text, " HR_MS(
            "created_at") ", " HR_MS("finished_at"),
        request_json, who, req.dry_run, req.rate, keys.empty(), id);
    as_stored = progress_from(row);
    const Intent intent = req.filter
                              ? (req.filter->state == "dead" ? Intent::kReplay : Intent::kResend)
                          : req.resend_succeeded ? Intent::kByStateResend
                                                 : Intent::kByState;
    const InsertedItems items = insert_items(tx, id, keys, intent);
    as_stored.matched = items.matched;
    as_stored.skipped = items.skipped;
    as_stored.pending = items.matched - items.skipped;
    if (as_stored.state == "running" && as_stored.pending == 0) {
      // Every key stored skipped: nothing for the runner to do.
      const auto done = tx.exec_params1(
          "UPDATE replays SET state = 'finished', finished_at = now() WHERE id = $1"
          " RETURNING " HR_MS("finished_at"),
          id);
      as_stored.state = "finished";
      as_stored.finished_ms = done[0].as<int64_t>();
    }
    tx.commit();
    return id;
  });
  if (!created) return Unexpected{created.error()};
  auto progress = get(*created);
  if (!progress) {
    // A repeat stored nothing: the client retries with its key and gets this replay then.
    if (existing) return Unexpected{progress.error()};
    // Committed: the replay exists and runs. A 503 now would have a client without an
    // Idempotency-Key retry and create a second one; it gets this replay as stored instead.
    spdlog::warn("msg=replay_read_back_failed id={} error={}", *created,
                 log_quote(progress.error().message));
    return CreatedReplay{std::move(as_stored), false};
  }
  return CreatedReplay{std::move(*progress), existing};
}

Result<std::optional<ReplayProgress>> ReplayJobs::create_release(const std::string& source,
                                                                 const std::string& route,
                                                                 const std::string& who,
                                                                 double rate) {
  ReplayProgress as_stored;  // as create() keeps it
  auto created = pg_.run("create release", [&](pqxx::connection& c) -> std::optional<int64_t> {
    pqxx::work tx(c);
    // However many the route parked: not bounded by the request's statement_timeout.
    tx.exec("SET LOCAL statement_timeout = 0");
    const std::string request = json_text(
        nlohmann::json{{"release", {{"source", source}, {"route", route}}},
                       {"rate", rate},
                       {"reason", "release of route " + source + "/" + route + " (resumed)"}});
    as_stored = progress_from(
        tx.exec_params1("INSERT INTO replays (request, requested_by, dry_run, rate, from_state,"
                        "   state) VALUES ($1::jsonb, $2, false, $3, 'parked', 'running')"
                        " RETURNING id, state, dry_run, rate, requested_by, request::text, " HR_MS(
                            "created_at") ", " HR_MS("finished_at"),
                        request, who, rate));
    const int64_t id = as_stored.id;
    // The items straight from parked_deliveries, in arrival order (its route index): however
    // many the route parked, no list of them passes through this process or a statement.
    const auto items = tx.exec_params(
        "INSERT INTO replay_items (replay_id, delivery_key, position, resend)"
        " SELECT $1, delivery_key,"
        "        row_number() OVER (ORDER BY first_seen_at, delivery_key), false"
        " FROM parked_deliveries WHERE source = $2 AND destination = $3",
        id, source, route);
    if (items.affected_rows() == 0) return std::nullopt;  // nothing parked: nothing stored
    as_stored.matched = as_stored.pending = static_cast<int64_t>(items.affected_rows());
    tx.commit();
    return id;
  });
  if (!created) return Unexpected{created.error()};
  if (!*created) return std::optional<ReplayProgress>{};
  auto progress = get(**created);
  if (!progress) {
    // Committed, as in create(): a resume asked again would store a second release.
    spdlog::warn("msg=replay_read_back_failed id={} error={}", **created,
                 log_quote(progress.error().message));
    return std::optional<ReplayProgress>{std::move(as_stored)};
  }
  return std::optional<ReplayProgress>{std::move(*progress)};
}

Result<ReplayProgress> ReplayJobs::get(int64_t id) {
  return pg_.run("get replay", [&](pqxx::connection& c) -> Result<ReplayProgress> {
    pqxx::read_transaction tx(c);
    auto rows =
        tx.exec_params("SELECT id, state, dry_run, rate, requested_by, request::text, " HR_MS(
                           "created_at") ", " HR_MS("finished_at") " FROM replays WHERE id = $1",
                       id);
    if (rows.empty()) return fail("not_found", "no replay with id " + std::to_string(id));
    ReplayProgress p = progress_from(rows[0]);
    for (const auto& r : tx.exec_params(
             "SELECT status, count(*) FROM replay_items WHERE replay_id = $1 GROUP BY status",
             id)) {
      const auto status = r[0].as<std::string>();
      const auto n = r[1].as<int64_t>();
      p.matched += n;
      if (status == "replayed" || status == "resent")
        p.produced += n;
      else if (status == "would_replay" || status == "would_resend")
        p.would_produce += n;
      else if (status == "skipped")
        p.skipped += n;
      else if (status == "missing")
        p.missing += n;
      else if (status == "failed")
        p.failed += n;
      else
        p.pending += n;
    }
    tx.commit();
    return p;
  });
}

Result<std::optional<ClaimedReplay>> ReplayJobs::claim_next(const std::string& runner,
                                                            int lease_seconds,
                                                            const std::vector<int64_t>& skip,
                                                            const ClaimLimit* limit) {
  PgArrayLiteral skipped;
  for (const auto id : skip) skipped.add(id);
  PgArrayLiteral held;
  if (limit) {
    for (const auto id : limit->held) held.add(id);
  }
  return pg_.run("claim replay", [&](pqxx::connection& c) -> std::optional<ClaimedReplay> {
    pqxx::nontransaction tx(c);
    // Running replays are few (replays_running_idx): sorted releases first.
    auto rows = tx.exec_params(
        "UPDATE replays SET runner = $1, runner_until = now() + make_interval(secs => $2)"
        " WHERE id = (SELECT id FROM replays WHERE state = 'running'"
        "             AND (runner_until IS NULL OR runner_until < now() OR runner = $1)"
        "             AND id <> ALL($3::bigint[])"
        "             AND (NOT $4::boolean OR id = ANY($5::bigint[])"
        "                  OR ($6::boolean AND from_state = 'parked'))"
        "             ORDER BY from_state = 'parked' DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, dry_run, rate, requested_by, coalesce(request->>'reason', ''),"
        "           coalesce(request->'filter'->>'state', ''), from_state",
        runner, lease_seconds, std::move(skipped).take(), limit != nullptr, std::move(held).take(),
        limit && limit->new_releases);
    if (rows.empty()) return std::nullopt;
    const auto& r = rows[0];
    ClaimedReplay out;
    out.id = r[0].as<int64_t>();
    out.dry_run = r[1].as<bool>();
    out.rate = r[2].as<double>();
    out.requested_by = r[3].as<std::string>();
    out.reason = r[4].as<std::string>();
    // Whether a key is resent is its item's (unfinished_items); a filter on succeeded
    // deliveries resends every key, so it needs no message from the DLQ.
    out.needs_dlq = r[5].as<std::string>() != "succeeded";
    out.from_state = r[6].as<std::string>();
    return out;
  });
}

Result<bool> ReplayJobs::renew(int64_t id, const std::string& runner, int lease_seconds) {
  return pg_.run("renew replay", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return !tx.exec_params(
                  "UPDATE replays SET runner_until = now() + make_interval(secs => $3)"
                  " WHERE id = $1 AND runner = $2 AND state = 'running' RETURNING 1",
                  id, runner, lease_seconds)
                .empty();
  });
}

Result<void> ReplayJobs::release(int64_t id, const std::string& runner) {
  return pg_.run("release replay", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec_params(
        "UPDATE replays SET runner_until = NULL WHERE id = $1 AND runner = $2 AND state = "
        "'running'",
        id, runner);
  });
}

Result<std::vector<ReplayItemRow>> ReplayJobs::unfinished_items(int64_t id, int limit) {
  return pg_.run("replay items", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    std::vector<ReplayItemRow> out;
    for (const auto& r : tx.exec_params(kUnfinishedItemsSql, id, limit)) {
      out.push_back({r[0].as<std::string>(), r[1].as<bool>(), r[2].as<bool>()});
    }
    return out;
  });
}

Result<bool> ReplayJobs::finish_item(int64_t id, const std::string& key, const std::string& status,
                                     const std::string& detail, const std::string& runner) {
  return pg_.run("finish replay item", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return !tx.exec_params(
                  "UPDATE replay_items SET status = $3, detail = $4, updated_at = now()"
                  " WHERE replay_id = $1 AND delivery_key = $2"
                  " AND EXISTS (SELECT 1 FROM replays WHERE id = $1 AND runner = $5)"
                  " RETURNING 1",
                  id, key, status, storable_detail(detail), runner)
                .empty();
  });
}

Result<bool> ReplayJobs::finish_if_done(int64_t id) {
  return pg_.run("finish replay", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return !tx.exec_params(
                  "UPDATE replays SET state = 'finished', finished_at = now(), runner_until = NULL"
                  " WHERE id = $1 AND state = 'running' AND NOT EXISTS ("
                  "   SELECT 1 FROM replay_items WHERE replay_id = $1 AND status IN ('pending', "
                  "'marked'))"
                  " RETURNING 1",
                  id)
                .empty();
  });
}

}  // namespace hookrelay::admin
