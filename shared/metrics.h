// Prometheus helpers shared by the services: text exposition of a registry and bucket layouts.
#pragma once

#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>

namespace hookrelay {

// The registry in Prometheus text format 0.0.4.
std::string serialize_metrics(prometheus::Registry& registry);

// 0.5 ms .. 10 s, roughly doubling: latency of local calls (Kafka acks, Postgres, HTTP).
prometheus::Histogram::BucketBoundaries latency_buckets();

}  // namespace hookrelay
