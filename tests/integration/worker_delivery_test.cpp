// Worker delivery outcomes end to end: real worker process, devbroker, Postgres, and a scripted
// receiver on 127.0.0.1. One stack per test.
#include <gtest/gtest.h>

#include "shared/kafka/wire_contract.h"
#include "shared/signing/signature_verifier.h"
#include "tests/support/worker_fixture.h"

namespace hookrelay::test {
namespace {

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST_F(WorkerTest, SuccessIsDeliveredOnceSignedAndRecorded) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  start_worker();
  // Odd bytes on purpose: the receiver must get exactly what the provider sent.
  const std::string body =
      "{\"type\":\"invoice.paid\",  \"amount\": 4200,\n\"note\":\"caf\xc3\xa9 \\u00e9\"}";
  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-200", body));

  ASSERT_TRUE(rx_.wait_for_count("/a", 1, 20s));
  ASSERT_TRUE(deliveries_in_state("succeeded", 1, 10s));
  std::this_thread::sleep_for(500ms);  // a second call would show up here
  auto reqs = rx_.requests("/a");
  ASSERT_EQ(reqs.size(), 1u);
  const auto& r = reqs[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.body, body);
  EXPECT_EQ(r.header("webhook-id"), "evt-200");
  EXPECT_EQ(r.header("content-type"), "application/json");
  ASSERT_TRUE(r.header("webhook-timestamp"));
  EXPECT_NEAR(std::stoll(*r.header("webhook-timestamp")), unix_seconds(), 60);

  SourceConfig route_source;
  route_source.name = "route-a";
  route_source.scheme = SchemeKind::kStandardWebhooks;
  route_source.secrets = {kRouteSecret};
  HeaderLookup lookup = r.lookup();
  auto verified = verify_webhook(route_source, lookup, r.body, unix_seconds());
  EXPECT_TRUE(verified) << verified.error().code << ": " << verified.error().message;

  EXPECT_EQ(stack_->count_deliveries(), 1);
  EXPECT_EQ(stack_->scalar("SELECT state FROM deliveries WHERE delivery_key = 'wh:acme:evt-200:a'"),
            "succeeded");
  EXPECT_EQ(stack_->succeeded_attempts_per_key(),
            (std::map<std::string, int64_t>{{"wh:acme:evt-200:a", 1}}));
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM delivery_attempts_all"), "1");
}

TEST_F(WorkerTest, FanOutRetriesOnlyTheFailingRoute) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}, {"acme", "b", rx_.url("/b")}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.script("/b", {{500}, {500}});
  start_worker();
  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-fan", R"({"fan":"out"})"));

  ASSERT_TRUE(rx_.wait_for_count("/b", 3, 30s)) << "route b got " << rx_.count("/b");
  ASSERT_TRUE(deliveries_in_state("succeeded", 2, 10s));
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(rx_.count("/a"), 1u);
  EXPECT_EQ(rx_.count("/b"), 3u);
  EXPECT_EQ(stack_->succeeded_attempts_per_key(),
            (std::map<std::string, int64_t>{{"wh:acme:evt-fan:a", 1}, {"wh:acme:evt-fan:b", 1}}));
  EXPECT_EQ(
      stack_->scalar("SELECT attempts FROM deliveries WHERE delivery_key = 'wh:acme:evt-fan:b'"),
      "3");
  for (const auto& r : rx_.requests("/b")) EXPECT_EQ(r.header("webhook-id"), "evt-fan");
}

TEST_F(WorkerTest, RetryAfterIsHonoured) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.script("/a", {{429, {{"Retry-After", "2"}}}});
  start_worker();
  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-429", "{}"));

  ASSERT_TRUE(rx_.wait_for_count("/a", 2, 30s));
  auto reqs = rx_.requests("/a");
  auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(reqs[1].at - reqs[0].at);
  EXPECT_GE(gap.count(), 1900) << "retried " << gap.count()
                               << " ms after a 429 with Retry-After: 2";
  ASSERT_TRUE(deliveries_in_state("succeeded", 1, 10s));
  EXPECT_EQ(
      stack_->scalar("SELECT string_agg(coalesce(http_status::text, '-') || ':' || outcome, ',' "
                     "ORDER BY attempt) FROM delivery_attempts_all"),
      "429:retryable,200:succeeded");
}

TEST_F(WorkerTest, PermanentFailureGoesStraightToTheDlq) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.set_default("/a", {400, {}, 0, "bad payload"});
  start_worker();
  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-400", R"({"x":1})"));

  auto dlq = consume_all(stack_->bootstrap(), std::string(kDlqTopic), 1, 30s);
  ASSERT_TRUE(dlq) << dlq.error().message;
  ASSERT_EQ(dlq->size(), 1u);
  const auto& m = dlq->front();
  EXPECT_EQ(m.value, R"({"x":1})");
  EXPECT_EQ(m.header(header::kOriginTopic), std::string(kWebhooksTopic));
  EXPECT_EQ(m.header(header::kAttempt), "1");
  EXPECT_EQ(m.header(header::kLastStatus), "400");
  EXPECT_EQ(m.header(header::kDeliveryKey), "wh:acme:evt-400:a");
  EXPECT_EQ(m.header(header::kRoute), "a");
  EXPECT_EQ(m.header(header::kEventId), "evt-400");
  EXPECT_EQ(m.header("hr-dlq-reason"), "permanent");
  ASSERT_TRUE(m.header(header::kLastError));
  EXPECT_NE(m.header(header::kLastError)->find("400"), std::string::npos)
      << *m.header(header::kLastError);

  ASSERT_TRUE(deliveries_in_state("dead", 1, 10s));
  std::this_thread::sleep_for(2s);  // longer than the first retry tier: a retry would be here
  EXPECT_EQ(rx_.count("/a"), 1u);
  EXPECT_EQ(stack_->scalar("SELECT last_status FROM deliveries"), "400");
  EXPECT_EQ(stack_->scalar("SELECT outcome FROM delivery_attempts_all"), "permanent");
}

TEST_F(WorkerTest, ExhaustedRetriesEndInTheDlq) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  o.max_attempts = 3;
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.set_default("/a", {500});
  start_worker();
  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-500", "{}"));

  auto dlq = consume_all(stack_->bootstrap(), std::string(kDlqTopic), 1, 40s);
  ASSERT_TRUE(dlq) << dlq.error().message;
  ASSERT_EQ(dlq->size(), 1u);
  const auto& m = dlq->front();
  EXPECT_EQ(m.header("hr-dlq-reason"), "max_attempts");
  EXPECT_EQ(m.header(header::kAttempt), "3");
  EXPECT_EQ(m.header(header::kLastStatus), "500");
  EXPECT_EQ(m.header(header::kOriginTopic), std::string(kWebhooksTopic));
  ASSERT_TRUE(deliveries_in_state("dead", 1, 10s));
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(rx_.count("/a"), 3u);
  EXPECT_EQ(stack_->scalar("SELECT attempts FROM deliveries"), "3");
  EXPECT_EQ(
      stack_->scalar("SELECT count(*) FROM delivery_attempts_all WHERE outcome = 'retryable'"),
      "3");
}

// A restart with fewer retry tiers: the retries already waiting in the dropped tier's topic were
// accepted, and the worker still takes them from it (subscribed to every retry tier the cluster
// has) and delivers them.
TEST_F(WorkerTest, RetriesInATierDroppedFromTheScheduleAreStillDelivered) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  o.schedule_seconds = {1, 2, 3};  // the broker has hookrelay.retry.0 .. 2
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  for (int i = 0; i < 3; ++i) {
    auto r = stack_->produce_retry_copies("acme", "evt-tier-" + std::to_string(i), "a",
                                          R"({"n":1})", 1, 2);
    ASSERT_TRUE(r) << r.error().message;
  }
  StackOptions two_tiers = o;
  two_tiers.schedule_seconds = {1, 2};
  auto config = stack_->write_config(two_tiers, "two-tiers.yaml");
  ASSERT_TRUE(config) << config.error().message;
  auto w = stack_->start_worker(true, *config);
  ASSERT_TRUE(w) << w.error().message;

  ASSERT_TRUE(deliveries_in_state("succeeded", 3, 30s)) << stack_->describe_deliveries();
  EXPECT_EQ(rx_.count("/a"), 3u);
  EXPECT_EQ(worker_metric(*w, "hookrelay_worker_messages_consumed_total",
                          {"topic=\"" + retry_topic(2) + "\""}),
            3);
}

TEST_F(WorkerTest, TimeoutIsRetriedAndRecordedAsTimeout) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a"), 300}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.script("/a", {{200, {}, 2000}});
  std::size_t w = start_worker();
  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-slow", "{}"));

  ASSERT_TRUE(rx_.wait_for_count("/a", 2, 30s));
  ASSERT_TRUE(deliveries_in_state("succeeded", 1, 10s));
  EXPECT_EQ(
      stack_->scalar(
          "SELECT coalesce(http_status::text, 'none') || ':' || outcome FROM delivery_attempts_all "
          "WHERE attempt = 1"),
      "none:retryable");
  auto error = stack_->scalar("SELECT error FROM delivery_attempts_all WHERE attempt = 1");
  EXPECT_NE(error.find("imeout"), std::string::npos) << error;
  EXPECT_EQ(worker_metric(w, "hookrelay_worker_attempts_total", {R"(result="timeout")"}), 1);
  EXPECT_EQ(stack_->succeeded_attempts_per_key(),
            (std::map<std::string, int64_t>{{"wh:acme:evt-slow:a", 1}}));
}

TEST_F(WorkerTest, SsrfGuardStopsLoopbackDeliveries) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  o.allow_private_networks = false;
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  start_worker();
  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-ssrf", "{}"));

  ASSERT_TRUE(deliveries_in_state("dead", 1, 20s));
  EXPECT_EQ(rx_.total_count(), 0u);
  auto error = stack_->scalar("SELECT last_error FROM deliveries");
  EXPECT_NE(error.find("SSRF guard"), std::string::npos) << error;
  auto dlq = consume_all(stack_->bootstrap(), std::string(kDlqTopic), 1, 10s);
  ASSERT_TRUE(dlq) << dlq.error().message;
  ASSERT_EQ(dlq->size(), 1u);
  EXPECT_EQ(dlq->front().header("hr-dlq-reason"), "permanent");
}

}  // namespace
}  // namespace hookrelay::test
