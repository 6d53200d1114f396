// RouteStates: the lifecycle of routes as Postgres keeps it (migrations/0010): whether a route
// is active or suspended (and why, since when, by whom), its failure streak across every
// worker, and the deliveries parked while it is suspended, in the order they arrived.
//
// Besides, each worker's view of the destination hosts its routes call (migrations/0013): circuit
// and adaptive in-flight limit, which live in the worker's memory, published every few seconds.
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

// One worker's view of one destination host ("host:port"), as it published it.
struct HostStateRow {
  std::string host;
  std::string worker_id;
  std::string circuit = "closed";  // closed | open | half_open
  int64_t open_until_ms = 0;       // while open: when it turns half-open; else 0
  int adaptive_limit = 0;          // in-flight limit now (max_limit when not cut)
  int max_limit = 0;               // worker.per_host_max_in_flight (<= 0: no limit)
  int64_t paused_until_ms = 0;     // a Retry-After pause of the whole host; 0 = none
  int64_t updated_at_ms = 0;       // host_states() only
  int64_t age_ms = 0;              // host_states() only: by Postgres' clock
};

// What a worker publishes host states through: its I/O boundary, so the publisher is tested
// with a fake.
class HostStateStore {
 public:
  virtual ~HostStateStore() = default;
  // Replaces this worker's rows by `rows` (one transaction: upserts, then deletes its rows of
  // hosts not in `rows`), and deletes every worker's rows older than forget_after_s.
  virtual Result<void> publish(const std::string& worker_id, const std::vector<HostStateRow>& rows,
                               int forget_after_s) = 0;
  // Deletes this worker's rows (a clean stop).
  virtual Result<void> withdraw(const std::string& worker_id) = 0;
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

class RouteStates final : public RouteStateStore, public HostStateStore {
 public:
  explicit RouteStates(std::string url);

  Result<std::vector<RouteStateRow>> report(const std::vector<RouteActivity>& activity) override;
  Result<bool> suspend(const std::string& source, const std::string& route,
                       const std::string& reason, const std::string& by) override;
  Result<std::vector<RouteStateRow>> suspended() override;
  Result<void> publish(const std::string& worker_id, const std::vector<HostStateRow>& rows,
                       int forget_after_s) override;
  Result<void> withdraw(const std::string& worker_id) override;
  // Every published host state, by host then worker, with its age.
  Result<std::vector<HostStateRow>> host_states();
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
