// FakeRouteStore: route_states in memory, for the worker's route lifecycle tests. Streaks add up
// across reports as Postgres adds them (shared/routes/route_states.cpp); `down` fails every call as
// an unreachable database does.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "shared/routes/route_states.h"

namespace hookrelay {

class FakeRouteStore : public RouteStateStore {
 public:
  Result<std::vector<RouteStateRow>> report(const std::vector<RouteActivity>& activity) override {
    if (down) return fail("db_unavailable", "down", true);
    std::vector<RouteStateRow> out;
    for (const auto& a : activity) {
      auto& row = rows[{a.source, a.route}];
      row.source = a.source;
      row.route = a.route;
      if (a.succeeded) {
        row.failure_streak = a.failures;
        row.failing_since_ms = a.failures > 0 ? a.first_failure_ms : 0;
      } else {
        if (row.failure_streak == 0) row.failing_since_ms = a.first_failure_ms;
        row.failure_streak += a.failures;
      }
      out.push_back(row);
    }
    return out;
  }
  Result<bool> suspend(const std::string& source, const std::string& route,
                       const std::string& reason, const std::string& by) override {
    if (down) return fail("db_unavailable", "down", true);
    auto& row = rows[{source, route}];
    row.source = source;
    row.route = route;
    if (row.state == "suspended") return false;
    row.state = "suspended";
    row.reason = reason;
    row.suspended_by = by;
    return true;
  }
  Result<std::vector<RouteStateRow>> suspended() override {
    if (down) return fail("db_unavailable", "down", true);
    std::vector<RouteStateRow> out;
    for (const auto& [key, row] : rows) {
      if (row.state == "suspended") out.push_back(row);
    }
    return out;
  }
  RouteStateRow& row(const std::string& source, const std::string& route) {
    RouteStateRow& r = rows[{source, route}];
    r.source = source;
    r.route = route;
    return r;
  }
  bool down = false;
  std::map<std::pair<std::string, std::string>, RouteStateRow> rows;
};

}  // namespace hookrelay
