// HostStatePublisher: makes this worker's view of its routes' destination hosts visible to
// operators. The circuit breaker and the adaptive in-flight limit live in the delivery loop's
// memory (dispatcher.h); the loop offers a snapshot of them about once a second, and every
// `interval_ms` this publisher writes the latest one to Postgres (route_host_states,
// migrations/0013) as this worker's rows, which `hookrelay routes list` and GET /v1/routes join
// by the route's host (shared/routes/route_control.h). Rows of hosts no longer in the snapshot
// are deleted with the same write; a clean stop deletes this worker's rows; rows of workers
// that stopped without it are deleted after `forget_after_s` by whichever worker publishes.
//
// Postgres unreachable: the round is logged and counted (hookrelay_worker_postgres_errors_total,
// op "host_states") and the next round writes the snapshot of its time. Delivery never waits
// for it.
//
// Thread-safety: offer() from any thread; publish() on the publisher's own thread after
// start(), or on the caller's in tests.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "shared/routes/route_states.h"
#include "worker/worker_metrics.h"

namespace hookrelay {

struct HostStatePublisherOptions {
  std::string worker_id;
  int interval_ms = 5000;
  int forget_after_s = 3600;
};

class HostStatePublisher {
 public:
  // metrics may be null (tests).
  HostStatePublisher(HostStateStore& store, WorkerMetrics* metrics,
                     HostStatePublisherOptions options);
  ~HostStatePublisher();
  HostStatePublisher(const HostStatePublisher&) = delete;
  HostStatePublisher& operator=(const HostStatePublisher&) = delete;

  void start();  // publish() every interval_ms on a thread of its own
  void stop();   // idempotent; withdraws this worker's rows (best effort)

  // The latest state of every host this worker's routes call; replaces the previous offer.
  void offer(std::vector<HostStateRow> rows);

  // One round: writes the latest offer (nothing before the first). False when Postgres failed.
  bool publish();

 private:
  void loop();

  HostStateStore& store_;
  WorkerMetrics* metrics_;
  HostStatePublisherOptions options_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::vector<HostStateRow>> latest_;  // under mu_
  std::atomic<bool> stop_{false};
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace hookrelay
