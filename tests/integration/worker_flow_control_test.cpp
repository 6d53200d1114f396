// Flow control and per-route policy with real processes: a worker on the devbroker and Postgres
// against a receiver with limited room. The adaptive per-host limit settles near what the
// receiver takes; a Retry-After pauses the whole host; a route's max_in_flight holds it alone;
// a route's retry policy overrides the global one.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <sstream>
#include <thread>

#include "tests/support/worker_fixture.h"

namespace hookrelay::test {
namespace {

// The worker's adaptive limit for host `host` ("127.0.0.1:port"): the gauge, or `max` when the
// host has no series (never cut, or back at the maximum).
double host_limit(const std::string& metrics, const std::string& host, double max) {
  const std::string label = "host=\"" + host + "\"";
  std::istringstream lines(metrics);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("hookrelay_host_inflight_limit{", 0) == 0 &&
        line.find(label) != std::string::npos) {
      return std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return max;
}

TEST_F(WorkerTest, AdaptiveLimitSettlesNearWhatTheReceiverTakes) {
  constexpr int kEvents = 2400;
  constexpr int kRoom = 8;  // the receiver answers 429 to a request beyond 8 at once
  constexpr int kMax = 64;
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  o.per_host_max_in_flight = kMax;
  o.max_attempts = 30;  // every 429 spends an attempt; none may run out
  o.schedule_seconds = {1, 2};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.set_default("/a", {200, {}, 50});
  rx_.limit_concurrency("/a", kRoom, {429, {}, 0, "too many"});
  auto produced = stack_->produce_webhooks("acme", numbered_events("evt-aimd-", kEvents));
  ASSERT_TRUE(produced) << produced.error().message;

  const std::string host = "127.0.0.1:" + std::to_string(rx_.port());
  std::size_t w = start_worker();
  ASSERT_TRUE(rx_.wait_for_count("/a", 1, 30s));
  const auto start = rx_.requests("/a").front().at;  // times count from the first request
  std::vector<std::pair<double, double>> timeline;   // (seconds, limit)
  while (stack_->count_deliveries("succeeded") < kEvents &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(120)) {
    std::this_thread::sleep_for(500ms);
    const double t =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    timeline.emplace_back(t, host_limit(stack_->worker_metrics(w), host, kMax));
  }
  ASSERT_TRUE(deliveries_in_state("succeeded", kEvents, 10s))
      << "succeeded: " << stack_->count_deliveries("succeeded");
  const double final_limit = host_limit(stack_->worker_metrics(w), host, kMax);

  // Every event delivered once: one 2xx per webhook-id, one succeeded attempt per delivery.
  expect_each_succeeded_once(*stack_, kEvents);
  const auto refused = rx_.refused("/a");
  const std::size_t requests = rx_.count("/a");
  EXPECT_EQ(requests - refused.size(), static_cast<std::size_t>(kEvents))
      << "an event was accepted twice";
  EXPECT_EQ(rx_.distinct_webhook_ids("/a"), static_cast<std::size_t>(kEvents));

  // After the first seconds, few 429s.
  const auto settled = start + 3s;
  std::size_t late_requests = 0;
  for (const auto& r : rx_.requests("/a")) late_requests += r.at >= settled ? 1 : 0;
  const auto late_refused = static_cast<std::size_t>(
      std::count_if(refused.begin(), refused.end(), [&](auto at) { return at >= settled; }));
  const double late_share =
      late_requests ? static_cast<double>(late_refused) / static_cast<double>(late_requests) : 0;

  std::ostringstream line;
  for (const auto& [t, l] : timeline) line << " " << static_cast<int>(t * 10) / 10.0 << "s:" << l;
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "[ aimd     ] receiver room " << kRoom << ", max " << kMax
            << "; limit over time:" << line.str() << "\n"
            << "[ aimd     ] final limit " << final_limit << ", peak at the receiver "
            << rx_.peak_concurrency("/a") << "; " << requests << " requests, " << refused.size()
            << " answered 429 (" << late_refused << " of " << late_requests
            << " after the first 3 s = " << 100.0 * late_share << "%); " << kEvents
            << " events delivered once in " << took << " s\n";
  RecordProperty("final_limit", std::to_string(final_limit));
  RecordProperty("late_429_share", std::to_string(late_share));

  // Settled near the receiver's room: below the 64 it started at, around 8.
  EXPECT_GE(final_limit, kRoom / 2.0);
  EXPECT_LE(final_limit, kRoom * 1.5);
  double late_max = 0;
  for (const auto& [t, l] : timeline) late_max = t >= 3 ? std::max(late_max, l) : late_max;
  EXPECT_LE(late_max, kRoom * 2) << "the limit kept climbing past the receiver's room";
  EXPECT_LT(late_share, 0.10);
  EXPECT_GT(worker_metric(w, "hookrelay_host_inflight_limit_cuts_total", {"reason=\"429\""}), 0);
}

TEST_F(WorkerTest, RetryAfterPausesEveryCallToTheHost) {
  constexpr int kEvents = 10;
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}, {"acme", "b", rx_.url("/b")}};
  o.per_host_max_in_flight = 1;  // one call at a time: the pause is the only gap
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.script("/a", {{503, {{"Retry-After", "3"}}}});
  auto produced = stack_->produce_webhooks("acme", numbered_events("evt-pause-", kEvents));
  ASSERT_TRUE(produced) << produced.error().message;
  std::size_t w = start_worker();
  ASSERT_TRUE(deliveries_in_state("succeeded", 2 * kEvents, 40s))
      << stack_->count_deliveries("succeeded");

  auto all = rx_.all_requests();
  std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) { return x.at < y.at; });
  auto first = std::find_if(all.begin(), all.end(), [](const auto& r) { return r.path == "/a"; });
  ASSERT_NE(first, all.end());
  ASSERT_NE(std::next(first), all.end());
  const auto gap =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::next(first)->at - first->at);
  std::cout << "[ pause    ] after the 503 with Retry-After: 3, the next request (to "
            << std::next(first)->path << ") came " << gap.count() << " ms later\n";
  EXPECT_GE(gap, 2900ms) << "a call to the paused host (any route) started before Retry-After";
  EXPECT_EQ(worker_metric(w, "hookrelay_host_pauses_total"), 1);
  expect_each_succeeded_once(*stack_, 2 * kEvents);
}

TEST_F(WorkerTest, ARoutesMaxInFlightHoldsItAloneAndNothingBounces) {
  constexpr int kEvents = 60;
  StackOptions o;
  o.routes = {{"acme", "slow", rx_.url("/slow"), 5000, "max_in_flight: 2"},
              {"acme", "free", rx_.url("/free")}};
  o.per_host_max_in_flight = 16;
  // 30 rounds of 100 ms queue behind the slow route: the lease must cover that wait, or what
  // waits longest goes back to a retry tier instead of being sent (the next test).
  o.claim_lease_seconds = 30;
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  for (const char* path : {"/slow", "/free"}) {
    rx_.set_default(path, {200, {}, 100});
    rx_.limit_concurrency(path, 1000, {429});  // only to measure the peak
  }
  auto produced = stack_->produce_webhooks("acme", numbered_events("evt-route-", kEvents));
  ASSERT_TRUE(produced) << produced.error().message;
  std::size_t w = start_worker();
  ASSERT_TRUE(deliveries_in_state("succeeded", 2 * kEvents, 60s))
      << stack_->count_deliveries("succeeded");
  std::cout << "[ route    ] peak in flight: route with max_in_flight 2: "
            << rx_.peak_concurrency("/slow")
            << ", unlimited route on the same host: " << rx_.peak_concurrency("/free") << "\n";
  EXPECT_LE(rx_.peak_concurrency("/slow"), 2);
  EXPECT_EQ(rx_.peak_concurrency("/slow"), 2);
  EXPECT_GT(rx_.peak_concurrency("/free"), 2) << "the other route of the host was held too";
  // Waiting at the limit is not a failure: one request per delivery, no retry, no dead letter.
  EXPECT_EQ(rx_.count("/slow"), static_cast<std::size_t>(kEvents));
  EXPECT_EQ(worker_metric(w, "hookrelay_worker_retries_total"), 0);
  EXPECT_EQ(stack_->count_deliveries("dead"), 0);
  expect_each_succeeded_once(*stack_, 2 * kEvents);
}

// A claimed delivery waits in its worker behind its route's rate while its lease runs. A second
// worker that reads the same messages claims each one whose lease has ended and sends it; here it
// is in another consumer group, which gives it a copy of every message, as a rebalance's replay or
// a provider's resend to another partition gives one. The first worker must not send those too:
// one call per event, one success each, and what waited too long went back to a retry tier.
TEST_F(WorkerTest, ADeliveryThatWaitedPastItsLeaseIsNotSentAgainByItsFirstWorker) {
  constexpr int kEvents = 12;
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a"), 2000, "rate_per_second: 1"}};
  o.claim_lease_seconds = 4;
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  auto produced = stack_->produce_webhooks("acme", numbered_events("evt-lease-", kEvents));
  ASSERT_TRUE(produced) << produced.error().message;
  std::size_t first = start_worker();
  ASSERT_TRUE(eventually([&] { return stack_->count_deliveries() == kEvents; }, 20s))
      << stack_->describe_deliveries();
  auto second = start_worker_in_group("hookrelay-workers-copy");
  ASSERT_TRUE(second);
  ASSERT_TRUE(deliveries_in_state("succeeded", kEvents, 90s)) << stack_->describe_deliveries();
  // Room for a late second call: the first worker's queue held every event for 12 s at 1/s.
  std::this_thread::sleep_for(4s);
  EXPECT_EQ(rx_.count("/a"), static_cast<std::size_t>(kEvents));
  EXPECT_EQ(duplicate_successes(), 0);
  expect_each_succeeded_once(*stack_, kEvents);
  EXPECT_GT(worker_metric(first, "hookrelay_worker_lease_requeues_total") +
                worker_metric(*second, "hookrelay_worker_lease_requeues_total"),
            0);
}

TEST_F(WorkerTest, ARoutesRetryPolicyOverridesTheGlobalOne) {
  StackOptions o;
  o.schedule_seconds = {1, 2};
  o.max_attempts = 4;
  o.routes = {
      {"acme", "own", rx_.url("/own"), 5000, "retry: { schedule_seconds: [1], max_attempts: 2 }"},
      {"acme", "global", rx_.url("/global")}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.set_default({500});
  produce("acme", "evt-policy", "{}");
  start_worker();
  ASSERT_TRUE(deliveries_in_state("dead", 2, 40s)) << "dead: " << stack_->count_deliveries("dead");
  std::cout << "[ policy   ] attempts before the dead letter: route with max_attempts 2: "
            << rx_.count("/own") << ", route on the global policy (4): " << rx_.count("/global")
            << "\n";
  EXPECT_EQ(rx_.count("/own"), 2u);
  EXPECT_EQ(rx_.count("/global"), 4u);
}

}  // namespace
}  // namespace hookrelay::test
