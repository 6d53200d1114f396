#include "worker/worker_metrics.h"

#include "shared/kafka/wire_contract.h"
#include "shared/metrics.h"

namespace hookrelay {
namespace {

template <class B>
auto& reg(B&& builder, prometheus::Registry& r, const char* name, const char* help) {
  return builder.Name(name).Help(help).Register(r);
}

}  // namespace

WorkerMetrics::WorkerMetrics(prometheus::Registry& r, int retry_tiers) {
  consumed_ = &reg(prometheus::BuildCounter(), r, "hookrelay_worker_messages_consumed_total",
                   "Kafka messages consumed, by topic");
  deliveries_ = &reg(prometheus::BuildCounter(), r, "hookrelay_worker_deliveries_total",
                     "Deliveries finished, by outcome (succeeded, retried, dead, skipped, parked)");
  attempts_ = &reg(prometheus::BuildCounter(), r, "hookrelay_worker_attempts_total",
                   "HTTP attempts by destination and result");
  http_duration_ =
      &reg(prometheus::BuildHistogram(), r, "hookrelay_worker_http_request_duration_seconds",
           "HTTP attempt latency by destination");
  retries_ = &reg(prometheus::BuildCounter(), r, "hookrelay_worker_retries_total",
                  "Deliveries sent to a retry tier, by tier");
  dlq_ = &reg(prometheus::BuildCounter(), r, "hookrelay_worker_dlq_total",
              "Deliveries dead-lettered, by reason");
  skips_ = &reg(prometheus::BuildCounter(), r, "hookrelay_worker_idempotent_skips_total",
                "Deliveries not made again because Postgres says they are finished, by reason");
  pg_duration_ =
      &reg(prometheus::BuildHistogram(), r, "hookrelay_worker_postgres_batch_duration_seconds",
           "Duration of one batched Postgres round trip, by operation");
  pg_errors_ = &reg(prometheus::BuildCounter(), r, "hookrelay_worker_postgres_errors_total",
                    "Failed Postgres round trips, by operation and error code");
  offset_resets_ =
      &reg(prometheus::BuildCounter(), r, "hookrelay_worker_offset_resets_total",
           "Consumer offsets that vanished before consumption (data-loss alarm), by topic");
  kafka_errors_ = &reg(prometheus::BuildCounter(), r, "hookrelay_kafka_producer_errors_total",
                       "Kafka producer errors (retry and DLQ topics) by code");
  consumer_errors_ = &reg(prometheus::BuildCounter(), r, "hookrelay_kafka_consumer_errors_total",
                          "Kafka consumer errors (fetch, commit, pause and resume) by code");
  lag_ = &reg(prometheus::BuildGauge(), r, "hookrelay_worker_consumer_lag",
              "Messages behind the log end, summed over this worker's partitions, by topic");
  circuits_ = &reg(prometheus::BuildGauge(), r, "hookrelay_worker_circuit_hosts",
                   "Destination hosts per circuit state");
  circuit_deferrals_ =
      &reg(prometheus::BuildCounter(), r, "hookrelay_worker_circuit_deferrals_total",
           "Deliveries sent to wait in a retry tier until their host's open circuit turns "
           "half-open")
           .Add({});
  pause_deferrals_ =
      &reg(prometheus::BuildCounter(), r, "hookrelay_worker_pause_deferrals_total",
           "Deliveries sent to wait in a retry tier until their host's Retry-After pause ends")
           .Add({});
  ordered_looks_late_ =
      &reg(prometheus::BuildCounter(), r, "hookrelay_ordered_looks_late_total",
           "Assignments whose partitions were taken before the look at the keys other workers "
           "held came back (Postgres failing or slow): keys held elsewhere are learned at the "
           "next look, and a delivery of one may be sent ahead of its key's head meanwhile")
           .Add({});
  lease_requeues_ =
      &reg(prometheus::BuildCounter(), r, "hookrelay_worker_lease_requeues_total",
           "Claimed deliveries not sent because they waited for their host, route or rate until "
           "their lease no longer covered the call; each went back to a retry tier unattempted")
           .Add({});
  lease_waits_ =
      &reg(prometheus::BuildCounter(), r, "hookrelay_worker_lease_waits_total",
           "Copies of deliveries another worker held whose retry Kafka refused for good; each was "
           "kept, its offset not stored, and claimed again once the holder's lease had ended")
           .Add({});
  filtered_ =
      &reg(prometheus::BuildCounter(), r, "hookrelay_deliveries_filtered_total",
           "Events a route's filter kept from the route (no delivery made), by source and route");
  route_suspended_ =
      &reg(prometheus::BuildGauge(), r, "hookrelay_route_suspended",
           "1 while the route is suspended (its deliveries parked), by source and route");
  route_suspensions_ = &reg(prometheus::BuildCounter(), r, "hookrelay_route_suspensions_total",
                            "Routes this worker suspended, by source, route and cause");
  in_flight_ = &reg(prometheus::BuildGauge(), r, "hookrelay_worker_in_flight_deliveries",
                    "Deliveries claimed and not finished")
                    .Add({});
  postgres_up_ =
      &reg(prometheus::BuildGauge(), r, "hookrelay_worker_postgres_up", "1 while Postgres answers")
           .Add({});
  paused_ = &reg(prometheus::BuildGauge(), r, "hookrelay_worker_paused_partitions",
                 "Partitions paused (retry tier not due, or Postgres down)")
                 .Add({});
  backlog_ = &reg(prometheus::BuildGauge(), r, "hookrelay_worker_backlog_messages",
                  "Messages fetched and waiting for room under worker.max_in_flight")
                  .Add({});
  retries_waiting_ =
      &reg(prometheus::BuildGauge(), r, "hookrelay_worker_retries_waiting",
           "Retry-tier messages read ahead of their due time, waiting for it in the worker")
           .Add({});
  ready_ = &reg(prometheus::BuildGauge(), r, "hookrelay_worker_ready", "1 while consuming normally")
                .Add({});
  store_rejected_ = &reg(prometheus::BuildCounter(), r, "hookrelay_worker_store_rejected_total",
                         "Deliveries (or inbound events) Postgres refused for good, by operation");
  bad_headers_ =
      &reg(prometheus::BuildCounter(), r, "hookrelay_worker_bad_headers_total",
           "Consumed messages with a numeric hr-* header that is not a valid number, by header");
  host_limit_ = &reg(prometheus::BuildGauge(), r, "hookrelay_host_inflight_limit",
                     "Adaptive in-flight limit of a destination host, from its first cut on (the "
                     "maximum once it has grown back)");
  http_in_flight_ =
      &reg(prometheus::BuildGauge(), r, "hookrelay_worker_http_calls_in_flight",
           "HTTP calls sent and not yet answered, by sender thread (worker.http_threads)");
  host_limit_cuts_ = &reg(prometheus::BuildCounter(), r, "hookrelay_host_inflight_limit_cuts_total",
                          "Cuts of a destination host's adaptive in-flight limit, by host and "
                          "reason (429, 503, timeout)");
  host_pauses_ = &reg(
      prometheus::BuildCounter(), r, "hookrelay_host_pauses_total",
      "Retry-After answers (429 or 503) that paused every call to a destination host, by host");
  auto& stages = reg(prometheus::BuildHistogram(), r, "hookrelay_worker_stage_seconds",
                     "Time one turn of a delivery spends in each stage of the worker");
  const char* stage_names[] = {"broker", "claim_wait", "claim", "dispatch_wait", "http", "record"};
  static_assert(std::size(stage_names) == std::tuple_size_v<decltype(stages_)>);
  for (std::size_t i = 0; i < stages_.size(); ++i)
    stages_[i] = &series_.get(stages, {{"stage", stage_names[i]}});
  // Series dashboards read exist from the start, at zero.
  for (const char* o : {"succeeded", "retried", "dead", "skipped", "parked"})
    series_.get(*deliveries_, {{"outcome", o}});
  // Every reason (worker/attempt_decision.cpp): one dead letter is an increase, not a birth.
  for (const char* reason :
       {"max_attempts", "max_age", "no_schedule", "permanent", "malformed", "unknown_route",
        "unknown_source", "republished", "store_rejected", "produce_rejected"}) {
    series_.get(*dlq_, {{"reason", reason}});
  }
  for (const char* reason : {"already_succeeded", "already_dead", "superseded"})
    series_.get(*skips_, {{"reason", reason}});
  for (int tier = 0; tier < retry_tiers; ++tier) {
    std::string label = std::to_string(tier);
    series_.get(*retries_, {{"tier", label}});
  }
  // An outage, and a database that refuses the statements (which waits for an operator), from
  // every op: host_states runs every few seconds even while no deliveries flow, so its errors
  // show an outage on an idle worker (alert HookrelayWorkerPostgresDown).
  for (const char* op : {"claim", "record", "inbound", "host_states", "fence", "release"}) {
    for (const char* code : {"db_unavailable", "db_misconfigured"})
      series_.get(*pg_errors_, {{"op", op}, {"code", code}});
    series_.get(*pg_duration_, {{"op", op}});
  }
  for (const char* op : {"claim", "record", "inbound"}) series_.get(*store_rejected_, {{"op", op}});
  for (const char* code :
       {"broker_down", "delivery_timeout", "unknown_topic", "kafka_error", "seek_failed"}) {
    series_.get(*consumer_errors_, {{"code", code}});
  }
  for (const char* topic : {"hookrelay.webhooks", "hookrelay.calls"}) {
    series_.get(*offset_resets_, {{"topic", topic}});
    series_.get(*lag_, {{"topic", topic}});
  }
  // Every topic the worker consumes (the DLQ and hookrelay.parked it does not): a reset is an
  // increase, not the birth of a series at 1. Tiers beyond the schedule, still read until they
  // empty, get theirs on a first reset, which HookrelayOffsetReset also catches.
  for (int tier = 0; tier < retry_tiers; ++tier)
    series_.get(*offset_resets_, {{"topic", retry_topic(tier)}});
  for (const char* code : kKafkaProducerErrorCodes) series_.get(*kafka_errors_, {{"code", code}});
  circuits(0, 0, 0);
}

void WorkerMetrics::filtered(std::string_view source, std::string_view route) {
  series_.get(*filtered_, {{"source", source}, {"route", route}}).Increment();
}
void WorkerMetrics::filtered_routes(const Config& config) {
  for (const auto& [source, routes] : config.routes) {
    for (const auto& route : routes) {
      if (!route.filter.empty())
        series_.get(*filtered_, {{"source", source}, {"route", route.name}});
      // Every configured route has its suspended gauge from the start (0 until suspended).
      series_.get(*route_suspended_, {{"source", source}, {"route", route.name}});
    }
  }
}
void WorkerMetrics::route_suspended(std::string_view source, std::string_view route,
                                    bool suspended) {
  series_.get(*route_suspended_, {{"source", source}, {"route", route}}).Set(suspended ? 1 : 0);
}
void WorkerMetrics::route_suspension(std::string_view source, std::string_view route,
                                     std::string_view cause) {
  series_.get(*route_suspensions_, {{"source", source}, {"route", route}, {"cause", cause}})
      .Increment();
}
void WorkerMetrics::consumed(std::string_view topic) {
  series_.get(*consumed_, {{"topic", topic}}).Increment();
}
void WorkerMetrics::delivery(std::string_view outcome) {
  series_.get(*deliveries_, {{"outcome", outcome}}).Increment();
}
void WorkerMetrics::attempt(std::string_view destination, std::string_view result, double seconds) {
  series_.get(*attempts_, {{"destination", destination}, {"result", result}}).Increment();
  series_.get(*http_duration_, {{"destination", destination}}).Observe(seconds);
}
void WorkerMetrics::retry(int tier) {
  std::string label = std::to_string(tier);
  series_.get(*retries_, {{"tier", label}}).Increment();
}
void WorkerMetrics::dlq(std::string_view reason) {
  series_.get(*dlq_, {{"reason", reason}}).Increment();
}
void WorkerMetrics::idempotent_skip(std::string_view reason) {
  series_.get(*skips_, {{"reason", reason}}).Increment();
}
void WorkerMetrics::postgres(std::string_view op, double seconds, std::string_view error_code) {
  series_.get(*pg_duration_, {{"op", op}}).Observe(seconds);
  if (!error_code.empty()) series_.get(*pg_errors_, {{"op", op}, {"code", error_code}}).Increment();
}
void WorkerMetrics::store_rejected(std::string_view op) {
  series_.get(*store_rejected_, {{"op", op}}).Increment();
}
void WorkerMetrics::bad_header(std::string_view name) {
  series_.get(*bad_headers_, {{"header", name}}).Increment();
}
void WorkerMetrics::offset_reset(std::string_view topic) {
  series_.get(*offset_resets_, {{"topic", topic}}).Increment();
}
void WorkerMetrics::kafka_error(std::string_view code) {
  series_.get(*kafka_errors_, {{"code", code}}).Increment();
}
void WorkerMetrics::consumer_error(std::string_view code) {
  series_.get(*consumer_errors_, {{"code", code}}).Increment();
}
void WorkerMetrics::lag(std::string_view topic, double value) {
  series_.get(*lag_, {{"topic", topic}}).Set(value);
}
void WorkerMetrics::circuits(double closed, double open, double half_open) {
  series_.get(*circuits_, {{"state", "closed"}}).Set(closed);
  series_.get(*circuits_, {{"state", "open"}}).Set(open);
  series_.get(*circuits_, {{"state", "half_open"}}).Set(half_open);
}

void WorkerMetrics::host_inflight_limit(std::string_view host, int limit) {
  series_.get(*host_limit_, {{"host", host}}).Set(limit);
}

void WorkerMetrics::http_in_flight(int thread, int calls) {
  const std::string label = std::to_string(thread);
  series_.get(*http_in_flight_, {{"thread", label}}).Set(calls);
}

void WorkerMetrics::host_flow_event(std::string_view host, std::string_view what) {
  if (what == "pause") {
    series_.get(*host_pauses_, {{"host", host}}).Increment();
  } else {
    series_.get(*host_limit_cuts_, {{"host", host}, {"reason", what}}).Increment();
  }
}

}  // namespace hookrelay
