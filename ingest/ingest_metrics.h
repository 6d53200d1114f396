// IngestMetrics: every metric hookrelay-ingest exports. Label values are bounded: configured
// source names (or "-"), a fixed set of statuses, error codes and topics. Hot-path lookups go
// through tables built at start, never through the registry's locked maps.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shared/metrics.h"

namespace hookrelay {

class IngestMetrics {
 public:
  IngestMetrics(prometheus::Registry& registry, const std::vector<std::string>& source_names);

  // endpoint: "webhook" | "call" | "other"; source: a configured name or "-".
  void request(std::string_view endpoint, std::string_view source, int status);
  void error(std::string_view code);  // every error answer, by code
  void verification_failure(std::string_view source, std::string_view reason);
  void produce_latency(std::string_view topic, double seconds);
  void kafka_error(std::string_view code);
  // accept() failed (reason: "emfile", "enfile", "enobufs", "enomem", "other").
  void accept_error(std::string_view reason);
  prometheus::Gauge& open_connections() { return *open_connections_; }
  prometheus::Gauge& buffered_body_bytes() { return *buffered_body_bytes_; }
  prometheus::Gauge& in_flight() { return *in_flight_; }
  prometheus::Gauge& ready() { return *ready_; }
  prometheus::Gauge& kafka_outstanding() { return *kafka_outstanding_; }
  // One partition's messages not yet acknowledged (set at each scrape).
  void partition_outstanding(std::string_view topic, int32_t partition, int messages);

 private:
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* errors_;
  prometheus::Family<prometheus::Counter>* verification_failures_;
  prometheus::Family<prometheus::Counter>* kafka_errors_;
  prometheus::Family<prometheus::Counter>* accept_errors_;
  prometheus::Gauge* open_connections_;
  prometheus::Gauge* buffered_body_bytes_;
  prometheus::Family<prometheus::Histogram>* produce_latency_;
  prometheus::Gauge* in_flight_;
  prometheus::Gauge* ready_;
  prometheus::Gauge* kafka_outstanding_;
  prometheus::Family<prometheus::Gauge>* partition_outstanding_;
  prometheus::Histogram* webhooks_latency_;
  prometheus::Histogram* calls_latency_;
  SeriesCache series_;
};

}  // namespace hookrelay
