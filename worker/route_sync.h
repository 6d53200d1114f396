// RouteSync: this worker's view of which routes are suspended, kept in step with Postgres
// (route_states, migrations/0010) so every worker parks the same routes.
//
// Every `refresh_ms` (and at once after a 410), sync() reports this worker's attempts per route
// since the last round (RouteActivityLog), suspends in Postgres the routes whose streak reached
// their suspend_after bound or that answered 410 Gone, and reads back the set of suspended
// routes, which replaces the local one. A suspension made here is in the local set at once,
// before Postgres has it; a resume by an operator reaches this worker at the next round.
// Postgres unreachable: the last known set stays, the round is retried at the next tick, and
// the activity of the failed round is kept for the next one.
//
// Thread-safety: suspended(), attempt() and generation() from the coordinator thread (or any
// thread); sync() runs on the RouteSync's own thread after start(), or on the caller's in tests.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "shared/config/config.h"
#include "shared/routes/route_states.h"
#include "worker/route_lifecycle.h"
#include "worker/worker_metrics.h"

namespace hookrelay {

struct RouteSyncOptions {
  std::string worker_id;  // names this worker in route_states.suspended_by
  int refresh_ms = 1000;  // how stale another worker's suspension or a resume may be here
};

class RouteSync {
 public:
  RouteSync(RouteStateStore& store, WorkerMetrics& metrics, std::function<int64_t()> now_ms,
            RouteSyncOptions options);
  ~RouteSync();
  RouteSync(const RouteSync&) = delete;
  RouteSync& operator=(const RouteSync&) = delete;

  void start();  // runs sync() every refresh_ms on a thread of its own
  void stop();   // idempotent

  bool suspended(const std::string& source, const std::string& route) const;
  // The suspension this worker goes by: nullopt while the route is active here; otherwise when
  // it was suspended, as read from Postgres (Unix ms), or 0 for a suspension made here and not
  // yet read back. A park recorded under a suspension that a resume has since ended becomes a
  // retry instead (DeliveryStore::record), so no release can miss it.
  std::optional<int64_t> suspension(const std::string& source, const std::string& route) const;
  // Counts an attempt of the route (`success` nullopt: no call reached the receiver) under its
  // current suspend_after `rule`. Returns true when the answer suspends the route (a 410 Gone):
  // it is suspended here at once, and in Postgres at the next round, which starts now.
  bool attempt(const std::string& source, const std::string& route,
               const std::optional<SuspendAfter>& rule, std::optional<bool> success,
               int http_status, int64_t now_ms);
  // Changes whenever a route joins the local suspended set: the worker then parks the queued
  // deliveries of the routes just suspended.
  uint64_t generation() const { return generation_.load(); }

  // One round (see the top of this file). Returns false when Postgres could not be reached.
  bool sync();

 private:
  using RouteKey = std::pair<std::string, std::string>;
  void suspend_locally(const RouteKey& route, const std::string& reason);
  void loop();

  RouteStateStore& store_;
  WorkerMetrics& metrics_;
  std::function<int64_t()> now_ms_;
  RouteSyncOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = false;                                      // under mu_
  RouteActivityLog activity_;                              // under mu_
  std::map<RouteKey, std::optional<SuspendAfter>> rules_;  // under mu_: the latest seen per route
  std::map<RouteKey, std::string> to_suspend_;  // under mu_: suspended here, not yet in Postgres
  // under mu_: the suspended routes, each with its suspended_at as read (0: not read yet)
  std::map<RouteKey, int64_t> suspended_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace hookrelay
