#include "shared/metrics.h"

#include <gtest/gtest.h>
#include <prometheus/counter.h>

#include <algorithm>

#include "ingest/ingest_metrics.h"
#include "worker/worker_metrics.h"

namespace hookrelay {
namespace {

TEST(SeriesCache, FamiliesWithTheSameLabelValuesGetTheirOwnSeries) {
  prometheus::Registry registry;
  auto& a = prometheus::BuildCounter().Name("a_total").Help("a").Register(registry);
  auto& b = prometheus::BuildCounter().Name("b_total").Help("b").Register(registry);
  SeriesCache cache;
  cache.get(a, {{"code", "x"}}).Increment();
  cache.get(b, {{"code", "x"}}).Increment(2);
  cache.get(a, {{"code", "x"}}).Increment();
  auto text = serialize_metrics(registry);
  EXPECT_NE(text.find("a_total{code=\"x\"} 2"), std::string::npos) << text;
  EXPECT_NE(text.find("b_total{code=\"x\"} 2"), std::string::npos) << text;
}

TEST(SeriesCache, HistogramsGetLatencyBuckets) {
  prometheus::Registry registry;
  auto& h = prometheus::BuildHistogram().Name("d_seconds").Help("d").Register(registry);
  SeriesCache cache;
  cache.get(h, {{"op", "claim"}}).Observe(0.003);
  auto text = serialize_metrics(registry);
  EXPECT_NE(text.find("d_seconds_bucket{op=\"claim\",le=\"0.005\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("d_seconds_bucket{op=\"claim\",le=\"0.0025\"} 0"), std::string::npos) << text;
}

// Route timeouts go to 600 s and statements to 30 s: the buckets reach that far, so a slow
// attempt lands in its own bucket instead of only in +Inf.
TEST(LatencyBuckets, ReachTheLongestTimeouts) {
  const auto buckets = latency_buckets();
  ASSERT_FALSE(buckets.empty());
  EXPECT_TRUE(std::is_sorted(buckets.begin(), buckets.end()));
  EXPECT_EQ(buckets.front(), 0.0005);
  EXPECT_EQ(buckets.back(), 600);
  for (double le : {10.0, 30.0, 60.0, 120.0, 300.0, 600.0})
    EXPECT_NE(std::find(buckets.begin(), buckets.end(), le), buckets.end()) << le;
  prometheus::Registry registry;
  auto& h = prometheus::BuildHistogram().Name("d_seconds").Help("d").Register(registry);
  SeriesCache cache;
  cache.get(h, {{"op", "http"}}).Observe(45);
  auto text = serialize_metrics(registry);
  EXPECT_NE(text.find("d_seconds_bucket{op=\"http\",le=\"30\"} 0"), std::string::npos) << text;
  EXPECT_NE(text.find("d_seconds_bucket{op=\"http\",le=\"60\"} 1"), std::string::npos) << text;
}

bool has_series(const std::string& text, const std::string& series) {
  return text.find("\n" + series + " 0\n") != std::string::npos;
}

// A counter created on its first increment shows that increment as its birth, which increase()
// cannot see: what alerts and dashboards watch exists from the start, at zero.
TEST(IngestMetrics, ProducerErrorsAndAcceptErrorsStartAtZero) {
  prometheus::Registry registry;
  IngestMetrics metrics(registry, {"github"});
  const auto text = serialize_metrics(registry);
  for (const char* code : {"queue_full", "delivery_timeout", "broker_down", "unknown_topic",
                           "delivery_outcome_unknown", "message_too_large", "not_authorized",
                           "producer_fatal", "kafka_error"}) {
    EXPECT_TRUE(has_series(
        text, std::string("hookrelay_kafka_producer_errors_total{code=\"") + code + "\"}"))
        << code << "\n"
        << text;
  }
  // kafka_unavailable is an error answer's code, not a producer error class.
  EXPECT_EQ(text.find("hookrelay_kafka_producer_errors_total{code=\"kafka_unavailable\"}"),
            std::string::npos);
  EXPECT_TRUE(has_series(text, "hookrelay_ingest_errors_total{code=\"kafka_unavailable\"}"));
  for (const char* reason : {"emfile", "enfile", "enobufs", "enomem", "other"}) {
    EXPECT_TRUE(has_series(
        text, std::string("hookrelay_ingest_accept_errors_total{reason=\"") + reason + "\"}"))
        << reason;
  }
}

TEST(WorkerMetrics, OffsetResetsStartAtZeroForEveryTopicTheWorkerConsumes) {
  prometheus::Registry registry;
  WorkerMetrics metrics(registry, 3);
  const auto text = serialize_metrics(registry);
  for (const char* topic : {"hookrelay.webhooks", "hookrelay.calls", "hookrelay.retry.0",
                            "hookrelay.retry.1", "hookrelay.retry.2"}) {
    EXPECT_TRUE(has_series(
        text, std::string("hookrelay_worker_offset_resets_total{topic=\"") + topic + "\"}"))
        << topic << "\n"
        << text;
  }
  // Tiers beyond the schedule, the DLQ and parked routes are not pre-created.
  EXPECT_EQ(text.find("hookrelay_worker_offset_resets_total{topic=\"hookrelay.retry.3\"}"),
            std::string::npos);
  EXPECT_EQ(text.find("hookrelay_worker_offset_resets_total{topic=\"hookrelay.dlq\"}"),
            std::string::npos);
  EXPECT_EQ(text.find("hookrelay_worker_offset_resets_total{topic=\"hookrelay.parked\"}"),
            std::string::npos);
}

TEST(WorkerMetrics, ProducerErrorsDeadLettersAndPostgresOutagesStartAtZero) {
  prometheus::Registry registry;
  WorkerMetrics metrics(registry, 1);
  const auto text = serialize_metrics(registry);
  for (const char* code : {"queue_full", "delivery_timeout", "broker_down", "unknown_topic",
                           "delivery_outcome_unknown", "message_too_large", "not_authorized",
                           "producer_fatal", "kafka_error"}) {
    EXPECT_TRUE(has_series(
        text, std::string("hookrelay_kafka_producer_errors_total{code=\"") + code + "\"}"))
        << code << "\n"
        << text;
  }
  for (const char* reason :
       {"max_attempts", "max_age", "no_schedule", "permanent", "malformed", "unknown_route",
        "unknown_source", "republished", "store_rejected", "produce_rejected"}) {
    EXPECT_TRUE(
        has_series(text, std::string("hookrelay_worker_dlq_total{reason=\"") + reason + "\"}"))
        << reason;
  }
  // The host states are written every few seconds whether or not deliveries flow: their
  // failures are what shows a Postgres outage on an idle worker.
  for (const char* op : {"claim", "record", "inbound", "host_states", "fence", "release"}) {
    for (const char* code : {"db_unavailable", "db_misconfigured"}) {
      EXPECT_TRUE(has_series(text, std::string("hookrelay_worker_postgres_errors_total{code=\"") +
                                       code + "\",op=\"" + op + "\"}"))
          << op << " " << code;
    }
  }
}

}  // namespace
}  // namespace hookrelay
