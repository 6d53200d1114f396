// Prometheus helpers shared by the services: text exposition of a registry and bucket layouts.
#pragma once

#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <initializer_list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace hookrelay {

// The registry in Prometheus text format 0.0.4.
std::string serialize_metrics(prometheus::Registry& registry);

// 0.5 ms .. 600 s, roughly doubling: latency of Kafka acks, Postgres round trips (statement
// timeouts up to 30 s) and HTTP attempts (route timeouts up to 600 s).
prometheus::Histogram::BucketBoundaries latency_buckets();

// The classes of hookrelay_kafka_producer_errors_total (shared/kafka/kafka_handles.h, and
// delivery_outcome_unknown from the producer): ingest and worker export each from the start, at 0.
inline constexpr std::array<const char*, 9> kKafkaProducerErrorCodes = {
    "queue_full",     "delivery_timeout",  "broker_down",
    "unknown_topic",  "message_too_large", "not_authorized",
    "producer_fatal", "kafka_error",       "delivery_outcome_unknown"};

// SeriesCache: the child of a labelled family for some label values, created on first use.
// A hit allocates nothing (the registry's own Add() builds a label map each call), which
// matters on per-request paths. Label values must be given in the same order at every call
// for a family. Histograms get latency_buckets().
//
// Thread-safety: get() from any thread.
class SeriesCache {
 public:
  using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

  template <class T>
  T& get(prometheus::Family<T>& family, Labels labels) {
    std::lock_guard lock(mu_);
    const void* identity = &family;  // the family's address is part of the key
    scratch_.assign(reinterpret_cast<const char*>(&identity), sizeof identity);
    for (const auto& [name, value] : labels) (scratch_ += '\x1f') += value;
    auto it = cache_.find(scratch_);
    if (it != cache_.end()) return *static_cast<T*>(it->second);
    std::map<std::string, std::string> named;
    for (const auto& [name, value] : labels) named.emplace(std::string(name), std::string(value));
    T* child = nullptr;
    if constexpr (std::is_same_v<T, prometheus::Histogram>) {
      child = &family.Add(named, latency_buckets());
    } else {
      child = &family.Add(named);
    }
    cache_.emplace(scratch_, child);
    return *child;
  }

 private:
  std::mutex mu_;
  std::string scratch_;  // key buffer, reused under mu_
  std::map<std::string, void*, std::less<>> cache_;
};

}  // namespace hookrelay
