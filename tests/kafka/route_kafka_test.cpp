// Routes on the real three-node Apache Kafka cluster this binary shares (shared_cluster.h), with
// real PostgreSQL, real workers and the CLI:
//  - the route lifecycle: a receiver answering 410 Gone suspends its route, whose deliveries are
//    parked in hookrelay.parked while another route of the same events keeps receiving; `hookrelay
//    routes resume` releases them into the retry flow in the order they arrived, each once;
//  - per-key order (ordered: true, key from a JSON pointer) across retries, with the worker
//    SIGKILLed mid-run and another started: every key's first successes arrive in sequence, and
//    every event succeeds once in Postgres (a request out at the kill may reach the receiver a
//    second time, as at-least-once allows; a receiver drops it by its webhook-id).
#include <gtest/gtest.h>

#include <csignal>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "shared/kafka/wire_contract.h"
#include "tests/kafka/shared_cluster.h"
#include "tests/support/cli_run.h"
#include "tests/support/ordered_receiver.h"
#include "tests/support/worker_fixture.h"

namespace hookrelay::test {
namespace {

class RoutesOnKafka : public OnSharedCluster<WorkerTest> {
 protected:
  void create_stack_on_kafka(StackOptions o) {
    auto on_kafka = on_cluster(*kafka_, std::move(o));
    ASSERT_TRUE(on_kafka) << on_kafka.error().message;
    ASSERT_NO_FATAL_FAILURE(create_stack(std::move(*on_kafka)));
  }
  std::vector<std::string> cli(std::vector<std::string> args) {
    for (auto& a : {std::string("--config"), (stack_->dir().path() / "hookrelay.yaml").string(),
                    std::string("--database-url"), stack_->database().url(),
                    std::string("--bootstrap"), stack_->bootstrap()})
      args.push_back(a);
    return args;
  }
};

TEST_F(RoutesOnKafka, A410ParksTheRouteAndAResumeReleasesItInArrivalOrderEachOnce) {
  constexpr int kEvents = 10;
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}, {"acme", "b", rx_.url("/b")}};
  o.partitions = 3;  // the events spread over partitions: the release order is arrival order
  ASSERT_NO_FATAL_FAILURE(create_stack_on_kafka(o));
  rx_.set_default("/a", {410, {}, 0, "gone"});
  start_worker();
  std::vector<std::string> in_order;
  for (int i = 0; i < kEvents; ++i) {
    in_order.push_back("evt-" + std::to_string(i));
    ASSERT_NO_FATAL_FAILURE(produce("acme", in_order.back(), R"({"n":)" + std::to_string(i) + "}"));
    std::this_thread::sleep_for(5ms);  // distinct hr-received-at: the order a release follows
  }

  ASSERT_TRUE(rx_.wait_for_count("/b", kEvents, 30s)) << "route b got " << rx_.count("/b");
  ASSERT_TRUE(deliveries_in_state("parked", kEvents, 30s)) << stack_->describe_deliveries();
  std::this_thread::sleep_for(1500ms);  // a retry or a dead letter would show up here
  const std::size_t gone_calls = rx_.count("/a");
  EXPECT_GE(gone_calls, 1u);
  EXPECT_LT(gone_calls, static_cast<std::size_t>(kEvents)) << "the 410 did not suspend the route";
  EXPECT_EQ(stack_->count_deliveries("dead"), 0);
  EXPECT_EQ(stack_->count_deliveries("parked"), kEvents);
  EXPECT_EQ(stack_->count_deliveries("succeeded"), kEvents);
  // Each parked delivery's message is in hookrelay.parked, keyed by its delivery key.
  auto parked = consume_all(kafka_->bootstrap(), std::string(kParkedTopic), kEvents, 30s);
  ASSERT_TRUE(parked) << parked.error().message;
  std::set<std::string> parked_keys;
  for (const auto& m : *parked) parked_keys.insert(m.header(header::kDeliveryKey).value_or("?"));
  EXPECT_EQ(parked_keys.size(), static_cast<std::size_t>(kEvents));

  auto listed = run_cli_in_process(cli({"routes", "list", "--json"}));
  ASSERT_EQ(listed.code, 0) << listed.err;
  auto routes = nlohmann::json::parse(listed.out)["routes"];
  ASSERT_EQ(routes.size(), 2u) << listed.out;
  EXPECT_EQ(routes[0]["state"], "suspended");
  EXPECT_EQ(routes[0]["reason"], "410 Gone from the receiver");
  EXPECT_EQ(routes[0]["parked"], kEvents);
  EXPECT_EQ(routes[1]["state"], "active");

  rx_.set_default("/a", {200});
  // The release produces in arrival order into the first retry tier's partitions; on a route that
  // is not ordered, the attempts keep that order as long as the release's spacing (200 ms at 5/s)
  // exceeds the skew between partitions (20/s, 50 ms apart, swapped one pair on a loaded machine).
  auto resumed = run_cli_in_process(cli(
      {"routes", "resume", "a", "--source", "acme", "--rate", "5", "--by", "tester", "--json"}));
  ASSERT_EQ(resumed.code, 0) << resumed.out << resumed.err;
  EXPECT_EQ(nlohmann::json::parse(resumed.out)["release"]["released"], kEvents) << resumed.out;

  ASSERT_TRUE(rx_.wait_for_count("/a", gone_calls + kEvents, 30s)) << rx_.count("/a");
  ASSERT_TRUE(deliveries_in_state("succeeded", 2 * kEvents, 20s)) << stack_->describe_deliveries();
  std::this_thread::sleep_for(1500ms);  // a second copy would show up here
  EXPECT_EQ(rx_.count("/a"), gone_calls + kEvents);
  std::vector<std::string> released;
  const auto requests = rx_.requests("/a");
  for (std::size_t i = gone_calls; i < requests.size(); ++i)
    released.push_back(requests[i].header("webhook-id").value_or("?"));
  EXPECT_EQ(released, in_order);
  expect_each_succeeded_once(*stack_, 2 * kEvents);
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM parked_deliveries"), "0");
  EXPECT_EQ(stack_->scalar("SELECT state FROM route_states WHERE source = 'acme' AND route = 'a'"),
            "active");
}

// What the kill leaves (docs/routes.md, ordered): a delivery out at the kill, still leased by
// the dead worker when the new one reads its message again, holds its key until it is attempted
// (KeyOrderTest.ADeliveryLeasedByAStoppedWorker... plays that alone on the devbroker); deliveries
// waiting in Postgres whose messages are read again keep their places.
TEST_F(RoutesOnKafka, PerKeyOrderHoldsAcrossRetriesAndAWorkerSigkilledMidRun) {
  constexpr int kKeys = 20, kPerKey = 15;
  constexpr int kEvents = kKeys * kPerKey;
  OrderedReceiver receiver;
  ASSERT_TRUE(receiver.start());
  receiver.configure(0.2, "", {});
  ASSERT_NO_FATAL_FAILURE(create_stack_on_kafka(ordered_route_stack(receiver.url())));
  const auto started = Clock::now();
  const std::size_t a = start_worker();
  auto produced = stack_->produce_webhooks("acme", keyed_events("k", kKeys, kPerKey));
  ASSERT_TRUE(produced) << produced.error().message;

  // Mid-run: some keys are held behind a failed head, some deliveries wait in Postgres.
  ASSERT_TRUE(eventually([&] { return receiver.successes() >= kEvents / 3; }, 30s))
      << receiver.successes() << " successes";
  const std::size_t before_kill = receiver.successes();
  const std::string held = stack_->scalar("SELECT count(*) FROM ordered_keys");
  const std::string waiting = stack_->scalar("SELECT count(*) FROM ordered_waiting");
  stack_->worker(a).process.kill();
  ASSERT_EQ(stack_->worker(a).process.wait_exit(5s), std::optional<int>(128 + SIGKILL));
  EXPECT_LT(before_kill, static_cast<std::size_t>(kEvents)) << "everything was delivered first";
  start_worker();  // a new member: it gets the partition once the group drops the dead one

  ASSERT_TRUE(eventually(
      [&] {
        return stack_->count_deliveries("succeeded") == kEvents && receiver.successes() >= kEvents;
      },
      50s))
      << receiver.successes() << " successes; " << stack_->count_deliveries("succeeded")
      << " succeeded";
  std::this_thread::sleep_for(1500ms);  // a late copy would arrive by now
  const int repeated = expect_first_successes_in_sequence(receiver.by_key(), kKeys, kPerKey);
  if (HasFailure()) {  // the attempts of two keys, for the failure message
    std::cout << stack_->scalar(
                     "SELECT string_agg(delivery_key || ' a' || attempt || ' ' || outcome || ' ' "
                     "|| worker_id"
                     " || ' ' || to_char(started_at, 'HH24:MI:SS.MS'), E'\\n' ORDER BY started_at)"
                     " FROM delivery_attempts_all WHERE delivery_key LIKE 'wh:acme:k-c0-%' OR "
                     "delivery_key LIKE "
                     "'wh:acme:k-c1-%'")
              << "\n";
  }
  for (const auto& [key, n] : stack_->succeeded_attempts_per_key()) EXPECT_EQ(n, 1) << key;
  EXPECT_EQ(stack_->count_deliveries(), kEvents);
  EXPECT_TRUE(
      eventually([&] { return stack_->scalar("SELECT count(*) FROM ordered_keys") == "0"; }, 10s))
      << "every key is free at the end";
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM ordered_waiting"), "0");
  // Only requests out at the kill may reach the receiver twice.
  EXPECT_LE(repeated, 8);
  std::cout << "[ key order on Kafka ] " << kEvents << " events over " << kKeys
            << " keys, receiver failing 20%: worker SIGKILLed after " << before_kill
            << " successes (" << held << " keys held, " << waiting
            << " deliveries waiting), a new worker finished in "
            << std::chrono::duration<double>(Clock::now() - started).count() << " s, "
            << receiver.failures() << " failed attempts, " << repeated
            << " successes repeated after the kill\n";
}

}  // namespace
}  // namespace hookrelay::test
