#include "ingest/ingest_metrics.h"

#include <cstdio>

#include "shared/kafka/wire_contract.h"
#include "shared/metrics.h"

namespace hookrelay {

IngestMetrics::IngestMetrics(prometheus::Registry& registry,
                             const std::vector<std::string>& source_names) {
  requests_ = &prometheus::BuildCounter()
                   .Name("hookrelay_ingest_requests_total")
                   .Help("HTTP requests answered by ingest, by endpoint, source and status")
                   .Register(registry);
  errors_ = &prometheus::BuildCounter()
                 .Name("hookrelay_ingest_errors_total")
                 .Help("Error answers by error code (the code in the JSON body)")
                 .Register(registry);
  verification_failures_ =
      &prometheus::BuildCounter()
           .Name("hookrelay_ingest_verification_failures_total")
           .Help("Webhook signature verification failures by source and reason")
           .Register(registry);
  kafka_errors_ = &prometheus::BuildCounter()
                       .Name("hookrelay_kafka_producer_errors_total")
                       .Help("Kafka producer errors by code (client errors and failed deliveries)")
                       .Register(registry);
  accept_errors_ =
      &prometheus::BuildCounter()
           .Name("hookrelay_ingest_accept_errors_total")
           .Help("Failed accept() calls by reason (emfile: the process is out of file descriptors)")
           .Register(registry);
  open_connections_ =
      &prometheus::BuildGauge()
           .Name("hookrelay_ingest_open_connections")
           .Help("Client connections open at the last scrape (ingest.max_connections is the cap)")
           .Register(registry)
           .Add({});
  buffered_body_bytes_ = &prometheus::BuildGauge()
                              .Name("hookrelay_ingest_buffered_body_bytes")
                              .Help(
                                  "Bytes of request bodies held at the last scrape "
                                  "(ingest.max_buffered_body_bytes is the cap)")
                              .Register(registry)
                              .Add({});
  produce_latency_ = &prometheus::BuildHistogram()
                          .Name("hookrelay_ingest_produce_latency_seconds")
                          .Help("Time from produce to the broker's acknowledgement, by topic")
                          .Register(registry);
  webhooks_latency_ =
      &produce_latency_->Add({{"topic", std::string(kWebhooksTopic)}}, latency_buckets());
  calls_latency_ = &produce_latency_->Add({{"topic", std::string(kCallsTopic)}}, latency_buckets());
  in_flight_ = &prometheus::BuildGauge()
                    .Name("hookrelay_ingest_in_flight_requests")
                    .Help("Requests accepted for processing and not yet answered")
                    .Register(registry)
                    .Add({});
  ready_ = &prometheus::BuildGauge()
                .Name("hookrelay_ingest_ready")
                .Help("1 while ingest is ready (Kafka reachable, not shutting down)")
                .Register(registry)
                .Add({});
  kafka_outstanding_ = &prometheus::BuildGauge()
                            .Name("hookrelay_kafka_producer_outstanding_messages")
                            .Help("Messages handed to the Kafka producer and not yet acknowledged")
                            .Register(registry)
                            .Add({});
  partition_outstanding_ =
      &prometheus::BuildGauge()
           .Name("hookrelay_kafka_producer_partition_outstanding_messages")
           .Help(
               "Messages ingest placed on a partition and the broker has not yet acknowledged, "
               "by topic and partition, at the last scrape (one that stays high is a slow or "
               "leaderless partition)")
           .Register(registry);
  // Pre-create the common series so dashboards see zeros, not gaps.
  for (const auto& s : source_names) {
    for (const char* status : {"202", "401"})
      series_.get(*requests_, {{"endpoint", "webhook"}, {"source", s}, {"status", status}});
    for (const char* reason : {"missing_signature", "malformed_signature", "bad_signature",
                               "missing_timestamp", "stale_timestamp"}) {
      series_.get(*verification_failures_, {{"source", s}, {"reason", reason}});
    }
  }
  // The error answers of a Kafka that does not take the request.
  for (const char* code : {"kafka_unavailable", "delivery_timeout", "delivery_outcome_unknown",
                           "queue_full", "broker_down"}) {
    series_.get(*errors_, {{"code", code}});
  }
  // Every producer class, producer_fatal included: the process stops right after it, and its
  // one increment must be seen as an increase, not as the series' birth.
  for (const char* code : kKafkaProducerErrorCodes) series_.get(*kafka_errors_, {{"code", code}});
  series_.get(*requests_, {{"endpoint", "call"}, {"source", "-"}, {"status", "202"}});
  for (const char* reason : {"emfile", "enfile", "enobufs", "enomem", "other"})
    series_.get(*accept_errors_, {{"reason", reason}});
}

void IngestMetrics::partition_outstanding(std::string_view topic, int32_t partition, int messages) {
  const std::string p = std::to_string(partition);
  series_.get(*partition_outstanding_, {{"topic", topic}, {"partition", p}}).Set(messages);
}

namespace {
// Status codes as label values without allocating.
std::string_view status_label(int status, char (&buf)[8]) {
  int n = std::snprintf(buf, sizeof buf, "%d", status);
  return {buf, static_cast<std::size_t>(n)};
}
}  // namespace

void IngestMetrics::request(std::string_view endpoint, std::string_view source, int status) {
  char buf[8];
  series_
      .get(*requests_,
           {{"endpoint", endpoint}, {"source", source}, {"status", status_label(status, buf)}})
      .Increment();
}

void IngestMetrics::accept_error(std::string_view reason) {
  series_.get(*accept_errors_, {{"reason", reason}}).Increment();
}

void IngestMetrics::error(std::string_view code) {
  series_.get(*errors_, {{"code", code}}).Increment();
}

void IngestMetrics::verification_failure(std::string_view source, std::string_view reason) {
  series_.get(*verification_failures_, {{"source", source}, {"reason", reason}}).Increment();
}

void IngestMetrics::kafka_error(std::string_view code) {
  series_.get(*kafka_errors_, {{"code", code}}).Increment();
}

void IngestMetrics::produce_latency(std::string_view topic, double seconds) {
  (topic == kCallsTopic ? calls_latency_ : webhooks_latency_)->Observe(seconds);
}

}  // namespace hookrelay
