// Nothing done twice in effect: duplicate events, replayed offsets and repeated call requests
// are skipped by the Postgres delivery keys. Real worker, ingest, devbroker and Postgres.
#include <gtest/gtest.h>

#include "shared/ascii.h"
#include "shared/kafka/wire_contract.h"
#include "tests/support/worker_fixture.h"

namespace hookrelay::test {
namespace {

constexpr const char* kSkips = "hookrelay_worker_idempotent_skips_total";

TEST_F(WorkerTest, DuplicateEventIdsAreDeliveredOnce) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}, {"github", "g", rx_.url("/g")}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  // Slower than the first retry tier: the second copy comes back from its bounce while the
  // first is still in flight, and must be bounced again, not sent.
  rx_.set_default({200, {}, 2500});
  auto ingest = stack_->start_ingest();
  ASSERT_TRUE(ingest) << ingest.error().message;
  std::size_t w = start_worker();

  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-dup", R"({"n":1})"));
  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-dup", R"({"n":1})"));
  for (int i = 0; i < 2; ++i) {
    auto r = stack_->post_webhook("github", "gh-delivery-1", R"({"action":"opened"})");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 202) << r->body;
  }

  ASSERT_TRUE(deliveries_in_state("succeeded", 2, 30s));
  // The second copy of each is either skipped at claim time or bounced through a retry tier
  // (while the first was in flight) and skipped there.
  ASSERT_TRUE(eventually([&] { return worker_metric(w, kSkips) >= 2; }, 20s))
      << "skips: " << worker_metric(w, kSkips) << ", requests: /a " << rx_.count("/a") << ", /g "
      << rx_.count("/g");
  EXPECT_EQ(rx_.count("/a"), 1u);
  EXPECT_EQ(rx_.count("/g"), 1u);
  EXPECT_EQ(rx_.requests("/g").at(0).header("webhook-id"), "gh-delivery-1");
  // The provider's Content-Type reaches the receiver once (ingest keeps it twice in the message).
  std::vector<std::string> types;
  const auto delivered = rx_.requests("/g");
  for (const auto& [name, value] : delivered.at(0).headers) {
    if (ascii_iequals(name, "content-type")) types.push_back(value);
  }
  EXPECT_EQ(types, std::vector<std::string>{"application/json"});
  EXPECT_EQ(
      stack_->succeeded_attempts_per_key(),
      (std::map<std::string, int64_t>{{"wh:acme:evt-dup:a", 1}, {"wh:github:gh-delivery-1:g", 1}}));
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM inbound_events"), "2");
}

// Several retry copies of one delivery in one tier (a replay after failed offset commits) reach
// one live worker together. Each copy's claim is exclusive: one attempt at a time, and none
// after the success. The receiver is slow, so copies are claimed while an attempt is in flight
// and while its success is being recorded.
TEST_F(WorkerTest, RetryCopiesOfOneDeliveryInOneWorkerSucceedOnce) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.set_default({200, {}, 150});
  std::size_t w = start_worker();
  constexpr int kKeys = 20, kCopies = 4;
  for (int i = 0; i < kKeys; ++i) {
    auto r = stack_->produce_retry_copies("acme", "evt-copies-" + std::to_string(i), "a",
                                          R"({"n":1})", kCopies);
    ASSERT_TRUE(r) << r.error().message;
  }
  ASSERT_TRUE(deliveries_in_state("succeeded", kKeys, 60s));
  // Every surplus copy ends skipped as already succeeded (after bounces while an attempt held).
  ASSERT_TRUE(eventually([&] { return worker_metric(w, kSkips) >= kKeys * (kCopies - 1); }, 60s))
      << "skips: " << worker_metric(w, kSkips) << ", requests: " << rx_.count("/a");
  EXPECT_EQ(rx_.count("/a"), static_cast<std::size_t>(kKeys)) << stack_->describe_deliveries();
  for (const auto& [key, n] : stack_->succeeded_attempts_per_key()) EXPECT_EQ(n, 1) << key;
  EXPECT_EQ(duplicate_successes(), 0);
}

TEST_F(WorkerTest, ReplayedOffsetsAreSkipped) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  std::size_t first = start_worker();
  std::vector<std::pair<std::string, std::string>> events;
  for (int i = 0; i < 20; ++i) events.emplace_back("evt-replay-" + std::to_string(i), "{}");
  auto produced = stack_->produce_webhooks("acme", events);
  ASSERT_TRUE(produced) << produced.error().message;
  ASSERT_TRUE(deliveries_in_state("succeeded", 20, 30s));
  EXPECT_EQ(stack_->worker(first).process.stop(10s), 0);
  ASSERT_EQ(rx_.count("/a"), 20u);

  // A worker in a fresh group starts from the earliest offsets: every message is replayed.
  // (Rewinding the old group with a throwaway member works too, but the devbroker's mock group
  // coordinator then stalls a JoinGroup that arrives during the leave-rebalance.)
  auto second = start_worker_in_group("hookrelay-workers-replay");
  ASSERT_TRUE(second);
  ASSERT_TRUE(eventually([&] { return worker_metric(*second, kSkips) >= 20; }, 30s))
      << "skips: " << worker_metric(*second, kSkips);
  EXPECT_EQ(worker_metric(*second, kSkips, {R"(reason="already_succeeded")"}), 20);
  EXPECT_EQ(rx_.count("/a"), 20u);
  EXPECT_EQ(stack_->count_deliveries("succeeded"), 20);
  for (const auto& [key, n] : stack_->succeeded_attempts_per_key()) EXPECT_EQ(n, 1) << key;
}

// A partition read again (here by a fresh group, from the earliest offset; a rebalance or a
// restart reads again from the committed offset) gives back a delivery's first copy after its
// attempt failed and its retry was published. That copy is skipped as superseded, not attempted
// ahead of the retry's backoff as a second retry chain. (The retry itself, due 100 s later, is
// not waited for: WorkerCoordinator.ACopyReadAgainAfterItsRetryWasPublishedIsNotAttemptedAgain
// follows it to its success.)
TEST_F(WorkerTest, ACopyReadAgainAfterItsRetryWasPublishedIsSkipped) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  o.schedule_seconds = {120};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.script("/a", {{503, {{"Retry-After", "100"}}}});
  std::size_t first = start_worker();
  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-stale", R"({"n":1})"));
  ASSERT_TRUE(
      eventually([&] { return stack_->scalar("SELECT retry_fence FROM deliveries") == "1"; }, 20s))
      << stack_->describe_deliveries();
  EXPECT_EQ(stack_->worker(first).process.stop(10s), 0);
  ASSERT_EQ(rx_.count("/a"), 1u);

  auto second = start_worker_in_group("hookrelay-workers-again");
  ASSERT_TRUE(second);
  ASSERT_TRUE(eventually(
      [&] { return worker_metric(*second, kSkips, {R"(reason="superseded")"}) >= 1; }, 30s))
      << "skips: " << worker_metric(*second, kSkips) << ", requests: " << rx_.count("/a");
  EXPECT_EQ(rx_.count("/a"), 1u) << "attempted again ahead of its retry";
  EXPECT_EQ(stack_->scalar("SELECT state || ' ' || attempts FROM deliveries"), "retrying 1");
}

TEST_F(WorkerTest, CallsCarryTheIdempotencyKeyAndAreMadeOnce) {
  ASSERT_NO_FATAL_FAILURE(create_stack({}));
  auto ingest = stack_->start_ingest();
  ASSERT_TRUE(ingest) << ingest.error().message;
  std::size_t w = start_worker();
  const std::string request =
      R"({"url": ")" + rx_.url("/call") +
      R"(", "method": "PUT", "headers": {"X-Custom": "yes", "Content-Type": "text/plain"},
                                  "body": "hello call", "idempotency_key": "idem-1"})";
  for (int i = 0; i < 2; ++i) {
    auto r = stack_->post_call(request);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 202) << r->body;
  }

  ASSERT_TRUE(rx_.wait_for_count("/call", 1, 20s));
  ASSERT_TRUE(deliveries_in_state("succeeded", 1, 10s));
  ASSERT_TRUE(eventually([&] { return worker_metric(w, kSkips) >= 1; }, 15s));
  auto reqs = rx_.requests("/call");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "PUT");
  EXPECT_EQ(reqs[0].body, "hello call");
  EXPECT_EQ(reqs[0].header("Idempotency-Key"), "idem-1");
  EXPECT_EQ(reqs[0].header("X-Custom"), "yes");
  EXPECT_EQ(reqs[0].header("Content-Type"), "text/plain");
  EXPECT_FALSE(reqs[0].header("webhook-signature"));
  EXPECT_EQ(stack_->succeeded_attempts_per_key(),
            (std::map<std::string, int64_t>{{"call:idem-1", 1}}));
}

}  // namespace
}  // namespace hookrelay::test
