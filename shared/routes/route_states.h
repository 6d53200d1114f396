// RouteStates: the lifecycle of routes as Postgres keeps it (migrations/0010): whether a route
// is active or suspended (and why, since when, by whom), its failure streak across every
// worker, and the deliveries parked while it is suspended, in the order they arrived.
//
// A route is (source, route name): names are unique within one source only. A route with no
// row is active with no failures.
//
// Errors: the database errors of PgConnection; "not_found" where a method says so.
//
// Thread-safety: one connection, not thread-safe; one instance per thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shared/result.h"
#include "shared/store/pg_connection.h"

namespace hookrelay {

struct RouteStateRow {
  std::string source;
  std::string route;
  std::string state = "active";  // active | suspended
  std::string reason;            // why it was suspended (kept after a resume)
  int failure_streak = 0;        // failed attempts since the last success, all workers
  int64_t failing_since_ms = 0;  // first failure of the streak; 0 when the streak is 0
  int64_t suspended_at_ms = 0;   // 0 = never
  std::string suspended_by;      // a worker id, or "operator:<who>"
  int64_t resumed_at_ms = 0;     // 0 = never
  int64_t parked = 0;            // deliveries parked now (list() only)
};

// One worker's attempts of one route since its last report.
struct RouteActivity {
  std::string source;
  std::string route;
  bool succeeded = false;        // some attempt succeeded: the streak restarts from `failures`
  int failures = 0;              // failed attempts after the last success (all of them, if none)
  int64_t first_failure_ms = 0;  // the first of those `failures`
};

// What a worker needs: its I/O boundary, so the worker's side is tested with a fake.
class RouteStateStore {
 public:
  virtual ~RouteStateStore() = default;
  // Adds the workers' activity to the streaks (one transaction) and returns the rows it touched.
  virtual Result<std::vector<RouteStateRow>> report(const std::vector<RouteActivity>& activity) = 0;
  // active -> suspended with `reason`; false when it was suspended already (the first reason
  // stays).
  virtual Result<bool> suspend(const std::string& source, const std::string& route,
                               const std::string& reason, const std::string& by) = 0;
  // The suspended routes.
  virtual Result<std::vector<RouteStateRow>> suspended() = 0;
};

class RouteStates final : public RouteStateStore {
 public:
  explicit RouteStates(std::string url);

  Result<std::vector<RouteStateRow>> report(const std::vector<RouteActivity>& activity) override;
  Result<bool> suspend(const std::string& source, const std::string& route,
                       const std::string& reason, const std::string& by) override;
  Result<std::vector<RouteStateRow>> suspended() override;
  // suspended -> active, streak cleared; false when it was active already.
  Result<bool> resume(const std::string& source, const std::string& route, const std::string& by);
  // Every route with a row, with its count of parked deliveries.
  Result<std::vector<RouteStateRow>> all();
  // "not_found" when the route has no row.
  Result<RouteStateRow> get(const std::string& source, const std::string& route);
  // The keys of the route's parked deliveries, oldest arrival first.
  Result<std::vector<std::string>> parked_keys(const std::string& source, const std::string& route);

 private:
  PgConnection pg_;
};

}  // namespace hookrelay
