#include "shared/metrics.h"

#include <gtest/gtest.h>
#include <prometheus/counter.h>

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

}  // namespace
}  // namespace hookrelay
