#include "shared/routes/route_states.h"

#include <pqxx/pqxx>
#include <utility>

#include "shared/store/pg_array.h"

namespace hookrelay {
namespace {

#define HR_MS(col) "coalesce((extract(epoch from " col ") * 1000)::bigint, 0)"

// Column order matches row_from().
constexpr const char* kColumns = "s.source, s.route, s.state, s.reason, s.failure_streak, " HR_MS(
    "s.failing_since") ", " HR_MS("s.suspended_at") ", s.suspended_by, " HR_MS("s.resumed_at");

RouteStateRow row_from(const pqxx::row& r) {
  RouteStateRow s;
  s.source = r[0].as<std::string>();
  s.route = r[1].as<std::string>();
  s.state = r[2].as<std::string>();
  s.reason = r[3].as<std::string>();
  s.failure_streak = r[4].as<int>();
  s.failing_since_ms = r[5].as<int64_t>();
  s.suspended_at_ms = r[6].as<int64_t>();
  s.suspended_by = r[7].as<std::string>();
  s.resumed_at_ms = r[8].as<int64_t>();
  return s;
}

std::vector<RouteStateRow> rows_from(const pqxx::result& rows) {
  std::vector<RouteStateRow> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back(row_from(r));
  return out;
}

}  // namespace

RouteStates::RouteStates(std::string url) : pg_(std::move(url)) {}

Result<std::vector<RouteStateRow>> RouteStates::report(const std::vector<RouteActivity>& activity) {
  if (activity.empty()) return std::vector<RouteStateRow>{};
  return pg_.run("route report", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    // One statement per route: a report names the few routes that had attempts in the last
    // second. A success in the interval restarts the streak from the failures after it;
    // otherwise the failures add to it, and failing_since is the first failure it counts.
    std::vector<RouteStateRow> out;
    for (const auto& a : activity) {
      auto rows = tx.exec_params(
          std::string("INSERT INTO route_states AS s (source, route, failure_streak, failing_since)"
                      " VALUES ($1, $2, $4, CASE WHEN $4 > 0 THEN to_timestamp($5 / 1000.0) END)"
                      " ON CONFLICT (source, route) DO UPDATE SET"
                      "  failure_streak = CASE WHEN $3 THEN $4 ELSE s.failure_streak + $4 END,"
                      "  failing_since = CASE WHEN $4 = 0 AND $3 THEN NULL"
                      "                       WHEN $3 THEN to_timestamp($5 / 1000.0)"
                      "                       ELSE coalesce(s.failing_since, to_timestamp($5 / "
                      "1000.0)) END,"
                      "  updated_at = now()"
                      " RETURNING ") +
              kColumns,
          a.source, a.route, a.succeeded, a.failures, a.first_failure_ms);
      for (auto& row : rows_from(rows)) out.push_back(std::move(row));
    }
    tx.commit();
    return out;
  });
}

Result<bool> RouteStates::suspend(const std::string& source, const std::string& route,
                                  const std::string& reason, const std::string& by) {
  return pg_.run("route suspend", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto rows = tx.exec_params(
        "INSERT INTO route_states AS s (source, route, state, reason, suspended_at, suspended_by)"
        " VALUES ($1, $2, 'suspended', $3, now(), $4)"
        " ON CONFLICT (source, route) DO UPDATE SET state = 'suspended', reason = $3,"
        "   suspended_at = now(), suspended_by = $4, updated_at = now()"
        " WHERE s.state = 'active'"
        " RETURNING 1",
        source, route, reason, by);
    return !rows.empty();
  });
}

Result<bool> RouteStates::resume(const std::string& source, const std::string& route,
                                 const std::string& by) {
  return pg_.run("route resume", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto rows = tx.exec_params(
        "UPDATE route_states SET state = 'active', failure_streak = 0, failing_since = NULL,"
        "   resumed_at = now(), resumed_by = $3, updated_at = now()"
        " WHERE source = $1 AND route = $2 AND state = 'suspended' RETURNING 1",
        source, route, by);
    return !rows.empty();
  });
}

Result<std::vector<RouteStateRow>> RouteStates::suspended() {
  return pg_.run("suspended routes", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return rows_from(tx.exec(std::string("SELECT ") + kColumns +
                             " FROM route_states s WHERE s.state = 'suspended'"));
  });
}

Result<std::vector<RouteStateRow>> RouteStates::all() {
  return pg_.run("route states", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto rows = tx.exec(std::string("SELECT ") + kColumns +
                        ", (SELECT count(*) FROM parked_deliveries p"
                        "    WHERE p.source = s.source AND p.destination = s.route)"
                        " FROM route_states s ORDER BY s.source, s.route");
    std::vector<RouteStateRow> out;
    for (const auto& r : rows) {
      out.push_back(row_from(r));
      out.back().parked = r[9].as<int64_t>();
    }
    return out;
  });
}

Result<RouteStateRow> RouteStates::get(const std::string& source, const std::string& route) {
  return pg_.run("route state", [&](pqxx::connection& c) -> Result<RouteStateRow> {
    pqxx::nontransaction tx(c);
    auto rows = tx.exec_params(std::string("SELECT ") + kColumns +
                                   ", (SELECT count(*) FROM parked_deliveries p"
                                   "    WHERE p.source = s.source AND p.destination = s.route)"
                                   " FROM route_states s WHERE s.source = $1 AND s.route = $2",
                               source, route);
    if (rows.empty())
      return fail("not_found", "route " + source + "/" + route + " has no state yet");
    RouteStateRow row = row_from(rows[0]);
    row.parked = rows[0][9].as<int64_t>();
    return row;
  });
}

Result<std::vector<std::string>> RouteStates::parked_keys(const std::string& source,
                                                          const std::string& route) {
  return pg_.run("parked keys", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto rows = tx.exec_params(
        "SELECT delivery_key FROM parked_deliveries WHERE source = $1 AND destination = $2"
        " ORDER BY first_seen_at, delivery_key",
        source, route);
    std::vector<std::string> keys;
    keys.reserve(rows.size());
    for (const auto& r : rows) keys.push_back(r[0].as<std::string>());
    return keys;
  });
}

Result<void> RouteStates::publish(const std::string& worker_id,
                                  const std::vector<HostStateRow>& rows, int forget_after_s) {
  return pg_.run("host states publish", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    // A worker's routes call a handful of hosts: one small upsert each.
    PgArrayLiteral hosts;
    for (const auto& h : rows) {
      hosts.add(h.host);
      tx.exec_params(
          "INSERT INTO route_host_states AS s (host, worker_id, circuit, open_until,"
          "   adaptive_limit, max_limit, paused_until, updated_at)"
          " VALUES ($1, $2, $3,"
          "         CASE WHEN $4::bigint > 0 THEN to_timestamp($4::bigint / 1000.0) END, $5, $6,"
          "         CASE WHEN $7::bigint > 0 THEN to_timestamp($7::bigint / 1000.0) END, now())"
          " ON CONFLICT (host, worker_id) DO UPDATE SET circuit = EXCLUDED.circuit,"
          "   open_until = EXCLUDED.open_until, adaptive_limit = EXCLUDED.adaptive_limit,"
          "   max_limit = EXCLUDED.max_limit, paused_until = EXCLUDED.paused_until,"
          "   updated_at = now()",
          h.host, worker_id, h.circuit, h.open_until_ms, h.adaptive_limit, h.max_limit,
          h.paused_until_ms);
    }
    tx.exec_params(
        "DELETE FROM route_host_states WHERE worker_id = $1 AND NOT (host = ANY($2::text[]))",
        worker_id, std::move(hosts).take());
    tx.exec_params(
        "DELETE FROM route_host_states WHERE updated_at < now() - make_interval(secs => $1)",
        forget_after_s);
    tx.commit();
  });
}

Result<void> RouteStates::withdraw(const std::string& worker_id) {
  return pg_.run("host states withdraw", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec_params("DELETE FROM route_host_states WHERE worker_id = $1", worker_id);
  });
}

Result<std::vector<HostStateRow>> RouteStates::host_states() {
  return pg_.run("host states", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto rows = tx.exec(
        "SELECT host, worker_id, circuit, " HR_MS("open_until") ", adaptive_limit, max_limit, " HR_MS(
            "paused_until") ", " HR_MS("updated_at") ","
        " (extract(epoch from now() - updated_at) * 1000)::bigint"
        " FROM route_host_states ORDER BY host, worker_id");
    std::vector<HostStateRow> out;
    out.reserve(rows.size());
    for (const auto& r : rows) {
      HostStateRow h;
      h.host = r[0].as<std::string>();
      h.worker_id = r[1].as<std::string>();
      h.circuit = r[2].as<std::string>();
      h.open_until_ms = r[3].as<int64_t>();
      h.adaptive_limit = r[4].as<int>();
      h.max_limit = r[5].as<int>();
      h.paused_until_ms = r[6].as<int64_t>();
      h.updated_at_ms = r[7].as<int64_t>();
      h.age_ms = r[8].as<int64_t>();
      out.push_back(std::move(h));
    }
    return out;
  });
}

}  // namespace hookrelay
