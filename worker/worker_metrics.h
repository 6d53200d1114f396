// WorkerMetrics: every metric hookrelay-worker exports (docs/metrics.md). Labels are bounded:
// topics, source and route names from config (or "call"), outcome labels from delivery_outcome,
// tiers.
//
// Thread-safety: all methods from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <string>

#include "shared/config/config.h"
#include "shared/metrics.h"

namespace hookrelay {

class WorkerMetrics {
 public:
  // retry_tiers: how many tier series to create at zero.
  WorkerMetrics(prometheus::Registry& registry, int retry_tiers);

  void consumed(std::string_view topic);
  void delivery(std::string_view outcome);  // succeeded | retried | dead | skipped | parked
  void attempt(std::string_view destination, std::string_view result, double seconds);
  void retry(int tier);
  void dlq(std::string_view reason);
  void idempotent_skip(std::string_view reason);
  // One Postgres round trip of `op`; `error_code` is its Error's code ("db_unavailable",
  // "db_misconfigured", ...), empty when it succeeded.
  void postgres(std::string_view op, double seconds, std::string_view error_code);
  void store_rejected(std::string_view op);  // claim | record | inbound
  void bad_header(std::string_view name);    // an hr-* header name (bounded: wire_contract.h)
  void offset_reset(std::string_view topic);
  void kafka_error(std::string_view code);  // the producer's
  void consumer_error(std::string_view code);
  void lag(std::string_view topic, double value);
  void circuits(double closed, double open, double half_open);
  // Where a delivery's time goes in the worker, one turn at a time (docs/metrics.md).
  enum class Stage { kBroker, kClaimWait, kClaim, kDispatchWait, kHttp, kRecord };
  void stage(Stage s, double seconds) { stages_[static_cast<std::size_t>(s)]->Observe(seconds); }
  // A delivery sent to wait in a retry tier because its host's circuit is open.
  void circuit_deferral() { circuit_deferrals_->Increment(); }
  // A delivery sent to wait in a retry tier because a Retry-After paused its host for long.
  void pause_deferral() { pause_deferrals_->Increment(); }
  void lease_requeue() { lease_requeues_->Increment(); }
  // Assigned partitions taken before the look at the keys their previous owner held came back.
  void ordered_look_late() { ordered_looks_late_->Increment(); }
  // A copy leased elsewhere whose retry Kafka refused for good, kept to be claimed again once the
  // holder's lease has ended.
  void lease_wait() { lease_waits_->Increment(); }
  // Adaptive flow control (worker/flow_control.h): a host's in-flight limit; a cut of it by
  // reason (429, 503, timeout), or a Retry-After pause of the whole host (what = "pause").
  void host_inflight_limit(std::string_view host, int limit);
  void host_flow_event(std::string_view host, std::string_view what);
  // HTTP calls sent and not yet answered, per sender event loop (worker.http_threads).
  void http_in_flight(int thread, int calls);
  // An event of `source` that a route's filter kept from `route` (no delivery was made).
  void filtered(std::string_view source, std::string_view route);
  // Creates the filtered series of every route with a filter at zero.
  void filtered_routes(const Config& config);
  // Route lifecycle (worker/route_sync.h): 1 while the route is suspended, as this worker sees
  // it; and suspensions this worker made, by cause (gone, consecutive_failures, failing_for).
  void route_suspended(std::string_view source, std::string_view route, bool suspended);
  void route_suspension(std::string_view source, std::string_view route, std::string_view cause);

  prometheus::Gauge& in_flight() { return *in_flight_; }
  prometheus::Gauge& postgres_up() { return *postgres_up_; }
  prometheus::Gauge& paused_partitions() { return *paused_; }
  prometheus::Gauge& backlog() { return *backlog_; }
  prometheus::Gauge& retries_waiting() { return *retries_waiting_; }
  prometheus::Gauge& ready() { return *ready_; }

 private:
  prometheus::Family<prometheus::Gauge>* host_limit_;
  prometheus::Family<prometheus::Gauge>* http_in_flight_;
  prometheus::Family<prometheus::Counter>* host_limit_cuts_;
  prometheus::Family<prometheus::Counter>* host_pauses_;
  prometheus::Family<prometheus::Counter>* consumed_;
  prometheus::Family<prometheus::Counter>* deliveries_;
  prometheus::Family<prometheus::Counter>* attempts_;
  prometheus::Family<prometheus::Histogram>* http_duration_;
  prometheus::Family<prometheus::Counter>* retries_;
  prometheus::Family<prometheus::Counter>* dlq_;
  prometheus::Family<prometheus::Counter>* skips_;
  prometheus::Family<prometheus::Histogram>* pg_duration_;
  prometheus::Family<prometheus::Counter>* pg_errors_;
  prometheus::Family<prometheus::Counter>* offset_resets_;
  prometheus::Family<prometheus::Counter>* store_rejected_;
  prometheus::Family<prometheus::Counter>* bad_headers_;
  prometheus::Family<prometheus::Counter>* kafka_errors_;
  prometheus::Family<prometheus::Counter>* consumer_errors_;
  prometheus::Family<prometheus::Gauge>* lag_;
  prometheus::Family<prometheus::Gauge>* circuits_;
  prometheus::Counter* circuit_deferrals_;
  prometheus::Counter* pause_deferrals_;
  prometheus::Counter* ordered_looks_late_;
  prometheus::Counter* lease_requeues_;
  prometheus::Counter* lease_waits_;
  prometheus::Family<prometheus::Counter>* filtered_;
  prometheus::Family<prometheus::Gauge>* route_suspended_;
  prometheus::Family<prometheus::Counter>* route_suspensions_;
  std::array<prometheus::Histogram*, 6> stages_{};
  prometheus::Gauge* in_flight_;
  prometheus::Gauge* postgres_up_;
  prometheus::Gauge* paused_;
  prometheus::Gauge* backlog_;
  prometheus::Gauge* retries_waiting_;
  prometheus::Gauge* ready_;
  SeriesCache series_;
};

}  // namespace hookrelay
