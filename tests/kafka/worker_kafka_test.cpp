// hookrelay-worker on the real three-node Apache Kafka cluster this binary shares
// (shared_cluster.h; RF 3, min.insync.replicas 2), with real PostgreSQL (a scratch database per
// test) and a scripted receiver: workers joining and leaving on the real group coordinator, a
// worker SIGKILLed together with a partition leader, retry tiers and the DLQ on real topics, and
// the whole cluster and every process stopped and started again. Every test makes its topics
// anew (empty, no committed offsets) and uses a consumer group of its own.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <thread>

#include "shared/kafka/wire_contract.h"
#include "tests/kafka/shared_cluster.h"
#include "tests/support/worker_fixture.h"

namespace hookrelay::test {
namespace {

class WorkerOnKafka : public OnSharedCluster<WorkerTest> {
 protected:
  // A Stack on the shared cluster (on_cluster). Call with ASSERT_NO_FATAL_FAILURE.
  void create_stack_on_kafka(StackOptions o) {
    auto on_kafka = on_cluster(*kafka_, std::move(o));
    ASSERT_TRUE(on_kafka) << on_kafka.error().message;
    ASSERT_NO_FATAL_FAILURE(create_stack(std::move(*on_kafka)));
  }

  // One route (acme -> /a), six partitions, claims of 20, `per_host` deliveries in flight per
  // worker.
  StackOptions six_partitions_to_a(int per_host) {
    StackOptions o;
    o.routes = {{"acme", "a", rx_.url("/a")}};
    o.partitions = 6;
    o.batch_size = 20;
    o.per_host_max_in_flight = per_host;
    return o;
  }

  // The worker_id a worker records in delivery_attempts (its default: hostname-pid).
  std::string worker_id(std::size_t worker) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    return std::string(host) + "-" + std::to_string(stack_->worker(worker).process.pid());
  }

  // "dead=1,succeeded=299": deliveries per state, for messages.
  std::string states() const {
    return stack_->scalar(
        "SELECT string_agg(state || '=' || n, ',' ORDER BY state) FROM "
        "(SELECT state, count(*) AS n FROM deliveries GROUP BY state) s");
  }

  // True once the group has committed every partition of hookrelay.webhooks up to its end.
  bool webhooks_committed_to_end(std::chrono::milliseconds timeout) {
    return eventually(
        [&] {
          auto progress = group_progress(kafka_->bootstrap(), stack_->options().group_id,
                                         std::string(kWebhooksTopic));
          if (!progress) return false;
          for (const auto& [partition, p] : *progress) {
            if (p.committed != p.end) return false;
          }
          return true;
        },
        timeout);
  }

  std::string describe_progress() {
    auto progress = group_progress(kafka_->bootstrap(), stack_->options().group_id,
                                   std::string(kWebhooksTopic));
    if (!progress) return progress.error().message;
    std::string out;
    for (const auto& [partition, p] : *progress) {
      out += std::to_string(partition) + ": committed " + std::to_string(p.committed) + " of " +
             std::to_string(p.end) + "\n";
    }
    return out;
  }
};

TEST_F(WorkerOnKafka, ThreeWorkersJoiningAndLeavingWhileEventsFlowDeliverEveryEventOnce) {
  constexpr int kEvents = 400;
  constexpr int kPartitions = 6;
  ASSERT_NO_FATAL_FAILURE(create_stack_on_kafka(six_partitions_to_a(4)));
  rx_.set_default({200, {}, 20});

  const std::size_t a = start_worker();
  // Events flow the whole time (10 every 300 ms, 12 s), produced from a thread of its own; the
  // test thread does not touch the stack's producer meanwhile.
  std::atomic<bool> produce_failed{false};
  std::atomic<bool> producing{true};
  std::thread producer([&] {
    auto events = numbered_events("evt-members-", kEvents);
    for (std::size_t i = 0; i < events.size(); i += 10) {
      std::vector<std::pair<std::string, std::string>> wave(
          events.begin() + static_cast<std::ptrdiff_t>(i),
          events.begin() + static_cast<std::ptrdiff_t>(i + 10));
      if (!stack_->produce_webhooks("acme", wave)) produce_failed = true;
      std::this_thread::sleep_for(300ms);
    }
    producing = false;
  });
  struct Join {
    std::thread& t;
    ~Join() {
      if (t.joinable()) t.join();
    }
  } join{producer};

  std::this_thread::sleep_for(1500ms);
  const std::size_t b = start_worker();  // joins: the coordinator rebalances A's partitions
  std::this_thread::sleep_for(1000ms);
  const std::size_t c = start_worker();
  std::this_thread::sleep_for(1000ms);
  stack_->worker(a).process.terminate();  // leaves with a clean shutdown
  EXPECT_EQ(stack_->worker(a).process.wait_exit(8s), std::optional<int>(0));
  std::this_thread::sleep_for(1000ms);
  const bool flowing_when_b_left = producing.load();
  stack_->worker(b).process.terminate();
  EXPECT_EQ(stack_->worker(b).process.wait_exit(8s), std::optional<int>(0));
  producer.join();
  ASSERT_FALSE(produce_failed.load()) << "producing to hookrelay.webhooks failed";

  ASSERT_TRUE(deliveries_in_state("succeeded", kEvents, 60s)) << states();
  EXPECT_EQ(stack_->count_deliveries(), kEvents);
  // At most (here: exactly) one succeeded attempt row per delivery key.
  expect_each_succeeded_once(*stack_, kEvents);
  auto ids = rx_.webhook_id_counts("/a");
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kEvents)) << "events the receiver never saw";
  // Every partition was consumed: each holds events first seen by a worker, and the group's
  // committed offsets reach every partition's end.
  EXPECT_EQ(stack_->scalar("SELECT count(DISTINCT \"partition\") FROM inbound_events WHERE topic = "
                           "'hookrelay.webhooks'"),
            std::to_string(kPartitions));
  EXPECT_TRUE(webhooks_committed_to_end(20s)) << describe_progress();
  // Each of the three members delivered while it was in the group.
  std::string ab_c = "'" + worker_id(a) + "', '" + worker_id(b) + "', '" + worker_id(c) + "'";
  EXPECT_EQ(
      stack_->scalar(
          "SELECT count(DISTINCT worker_id) FROM delivery_attempts_all WHERE outcome = 'succeeded' "
          "AND worker_id IN (" +
          ab_c + ")"),
      "3")
      << stack_->scalar(
             "SELECT string_agg(worker_id || '=' || n, ', ') FROM (SELECT worker_id, count(*) AS n "
             "FROM "
             "delivery_attempts_all GROUP BY worker_id) s");
  std::size_t repeats = rx_.count("/a") - ids.size();
  std::cout << "[ members  ] " << kEvents
            << " events over 3 joins/2 leaves (events still flowing when B left: "
            << (flowing_when_b_left ? "yes" : "no") << "), " << repeats << " repeated requests\n";
}

TEST_F(WorkerOnKafka, WorkerSigkilledAndPartitionLeaderKilledMidDeliveryLoseNothingAndSucceedOnce) {
  constexpr int kEvents = 300;
  // ~20 deliveries/s per worker against a 100 ms receiver; the stack's claim lease is 5 s.
  ASSERT_NO_FATAL_FAILURE(create_stack_on_kafka(six_partitions_to_a(2)));
  rx_.set_default({200, {}, 100});

  const std::size_t a = start_worker();
  const std::size_t b = start_worker();
  const std::size_t c = start_worker();
  auto produced = stack_->produce_webhooks("acme", numbered_events("evt-kill-", kEvents));
  ASSERT_TRUE(produced) << produced.error().message;
  auto leader = kafka_->leader(std::string(kWebhooksTopic), 0);
  ASSERT_TRUE(leader) << leader.error().message;

  ASSERT_TRUE(rx_.wait_for_count("/a", 60, 30s)) << "deliveries did not start";
  const std::string killed_id = worker_id(a);
  stack_->worker(a).process.kill();
  auto killed = kafka_->kill_node(*leader);
  ASSERT_TRUE(killed) << killed.error().message;
  ASSERT_EQ(stack_->worker(a).process.wait_exit(5s), std::optional<int>(128 + SIGKILL));
  const std::size_t before_restart = rx_.count("/a");
  EXPECT_LT(before_restart, static_cast<std::size_t>(kEvents))
      << "everything was delivered before the kills";
  // The broker comes back (its log kept) while B and C carry on.
  std::this_thread::sleep_for(2s);
  auto back = kafka_->start_stopped();
  ASSERT_TRUE(back) << back.error().message;

  ASSERT_TRUE(eventually(
      [&] {
        return stack_->count_deliveries() == kEvents &&
               stack_->count_deliveries("succeeded") + stack_->count_deliveries("dead") == kEvents;
      },
      90s))
      << states() << "\n"
      << describe_progress();
  for (const auto& [key, n] : stack_->succeeded_attempts_per_key()) EXPECT_LE(n, 1) << key;
  // A duplicate_success comes from a worker whose claim overlapped another's: only the killed
  // worker, whose lease expired while its request was out, may have one.
  EXPECT_EQ(
      stack_->scalar(
          "SELECT count(*) FROM delivery_attempts_all WHERE outcome = 'duplicate_success' AND "
          "worker_id <> '" +
          killed_id + "'"),
      "0")
      << stack_->scalar(
             "SELECT string_agg(delivery_key || ' by ' || worker_id, E'\\n') FROM "
             "delivery_attempts_all "
             "WHERE outcome = 'duplicate_success'");
  auto ids = rx_.webhook_id_counts("/a");
  EXPECT_EQ(static_cast<int64_t>(ids.size()), stack_->count_deliveries("succeeded"));
  EXPECT_TRUE(webhooks_committed_to_end(20s)) << describe_progress();
  std::cout << "[ kills    ] worker A (" << killed_id << ") SIGKILLed and node " << *leader
            << " kill -9ed after " << before_restart << " requests; states " << states() << "; "
            << rx_.count("/a") - ids.size()
            << " repeated requests (at-least-once after a crash; allowed); survivors "
            << worker_id(b) << ", " << worker_id(c) << "\n";
}

TEST_F(WorkerOnKafka, RetryTierThenSuccessAndA400ToTheDlqOnRealTopics) {
  StackOptions o;
  o.routes = {{"acme", "flaky", rx_.url("/flaky")}, {"github", "gone", rx_.url("/gone")}};
  o.schedule_seconds = {1, 2};
  o.max_attempts = 5;
  ASSERT_NO_FATAL_FAILURE(create_stack_on_kafka(o));
  rx_.script("/flaky", {{503}, {503}});  // then 200
  rx_.set_default("/gone", {400});
  start_worker();
  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-flaky", R"({"flaky":true})"));
  ASSERT_NO_FATAL_FAILURE(produce("github", "evt-gone", R"({"gone":true})"));

  ASSERT_TRUE(eventually(
      [&] {
        return stack_->count_deliveries("succeeded") == 1 && stack_->count_deliveries("dead") == 1;
      },
      30s))
      << stack_->describe_deliveries();
  const std::string flaky = "wh:acme:evt-flaky:flaky";
  const std::string gone = "wh:github:evt-gone:gone";
  EXPECT_EQ(stack_->scalar("SELECT state || ' ' || attempts || ' ' || last_status FROM deliveries "
                           "WHERE delivery_key = '" +
                           flaky + "'"),
            "succeeded 3 200");
  EXPECT_EQ(stack_->scalar("SELECT state || ' ' || attempts || ' ' || last_status FROM deliveries "
                           "WHERE delivery_key = '" +
                           gone + "'"),
            "dead 1 400");
  EXPECT_EQ(rx_.count("/flaky"), 3u);
  EXPECT_EQ(rx_.distinct_webhook_ids("/flaky"), 1u);
  EXPECT_EQ(rx_.count("/gone"), 1u) << "a 400 is permanent: no retry";

  // The first retry went through hookrelay.retry.0 (the smallest tier covering a delay of at most
  // 1 s), with its attempt count and due time.
  auto tier = consume_to_end(kafka_->bootstrap(), retry_topic(0), 30s);
  ASSERT_TRUE(tier) << tier.error().message;
  bool first_retry_seen = false;
  for (const auto& m : *tier) {
    if (m.header(header::kDeliveryKey) != flaky) continue;
    EXPECT_EQ(m.value, R"({"flaky":true})");
    EXPECT_EQ(m.header(header::kOriginTopic), std::string(kWebhooksTopic));
    EXPECT_TRUE(m.header(header::kDueAt).has_value());
    first_retry_seen = first_retry_seen || m.header(header::kAttempt) == "1";
  }
  EXPECT_TRUE(first_retry_seen) << tier->size() << " messages in " << retry_topic(0)
                                << ", none the first retry of " << flaky;

  // The dead letter is in hookrelay.dlq with the reason and the last status.
  auto dlq = consume_all(kafka_->bootstrap(), std::string(kDlqTopic), 1, 30s);
  ASSERT_TRUE(dlq) << dlq.error().message;
  ASSERT_EQ(dlq->size(), 1u);
  const auto& letter = dlq->front();
  EXPECT_EQ(letter.header(header::kDeliveryKey), gone);
  EXPECT_EQ(letter.header("hr-dlq-reason"), "permanent");
  EXPECT_EQ(letter.header(header::kLastStatus), "400");
  EXPECT_EQ(letter.header(header::kAttempt), "1");
  EXPECT_EQ(letter.header(header::kOriginTopic), std::string(kWebhooksTopic));
  EXPECT_EQ(letter.value, R"({"gone":true})");
}

// SIGTERM while no broker answers: the worker's final commit and its consumer's close each give
// up after their limits (5 s, 10 s; KafkaConsumer) instead of waiting for a coordinator, so the
// worker ends well inside its pod's grace period, and what it had delivered is not sent again.
TEST_F(WorkerOnKafka, AWorkerStopsWithinItsLimitsWhenEveryBrokerIsDown) {
  ASSERT_NO_FATAL_FAILURE(create_stack_on_kafka(six_partitions_to_a(8)));
  const std::size_t w = start_worker();
  ASSERT_TRUE(stack_->produce_webhooks("acme", numbered_events("evt-down-", 20)));
  ASSERT_TRUE(deliveries_in_state("succeeded", 20, 30s)) << states();
  for (int node = 1; node <= kafka_->nodes(); ++node) ASSERT_TRUE(kafka_->kill_node(node));

  const auto stopping = std::chrono::steady_clock::now();
  stack_->worker(w).process.terminate();
  EXPECT_EQ(stack_->worker(w).process.wait_exit(25s), std::optional<int>(0));
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 20s);
  EXPECT_EQ(rx_.count("/a"), 20u);
}

TEST_F(WorkerOnKafka, WholeClusterAndEveryProcessRestartedRepeatNothingAndLoseNothing) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  o.partitions = 4;
  o.per_host_max_in_flight = 2;
  o.shutdown_grace_ms = 3000;
  ASSERT_NO_FATAL_FAILURE(create_stack_on_kafka(o));
  auto started = stack_->start_ingest(30s);
  ASSERT_TRUE(started) << started.error().message;
  std::vector<std::size_t> workers = {start_worker(), start_worker()};

  int posted = 0;
  auto post = [&](const std::string& prefix, int n) {
    for (int i = 0; i < n; ++i) {
      auto r = stack_->post_webhook("acme", prefix + std::to_string(i),
                                    R"({"n":)" + std::to_string(i) + "}");
      ASSERT_TRUE(r) << r.error().message;
      ASSERT_EQ(r->status, 202) << r->body;
      ++posted;
    }
  };
  // Delivered before the stop.
  ASSERT_NO_FATAL_FAILURE(post("evt-before-", 60));
  ASSERT_TRUE(deliveries_in_state("succeeded", 60, 30s)) << states();
  // Accepted just before the stop, delivered slowly: some finish in the workers' grace period,
  // the rest wait in Kafka.
  rx_.set_default({200, {}, 200});
  ASSERT_NO_FATAL_FAILURE(post("evt-pending-", 40));
  ASSERT_TRUE(rx_.wait_for_count("/a", 64, 20s));

  for (auto w : workers) stack_->worker(w).process.terminate();
  for (auto w : workers) EXPECT_EQ(stack_->worker(w).process.wait_exit(10s), std::optional<int>(0));
  // Accepted while no worker runs.
  ASSERT_NO_FATAL_FAILURE(post("evt-stopped-", 20));
  EXPECT_EQ(stack_->ingest().process.stop(), 0);
  auto committed =
      group_progress(kafka_->bootstrap(), stack_->options().group_id, std::string(kWebhooksTopic));
  ASSERT_TRUE(committed) << committed.error().message;
  const std::size_t delivered_before = rx_.count("/a");

  auto stopped = kafka_->stop_all();  // SIGTERM every node; the data directories stay
  ASSERT_TRUE(stopped) << stopped.error().message;
  auto back = kafka_->start_stopped();
  ASSERT_TRUE(back) << back.error().message;

  // The committed offsets survived the restart.
  auto after = group_progress(kafka_->bootstrap(), stack_->options().group_id,
                              std::string(kWebhooksTopic), 30s);
  ASSERT_TRUE(after) << after.error().message;
  for (const auto& [partition, p] : *committed) {
    EXPECT_EQ(after->at(partition).committed, p.committed) << "partition " << partition;
    EXPECT_EQ(after->at(partition).end, p.end) << "partition " << partition;
  }

  rx_.set_default({200});
  started = stack_->start_ingest(30s);
  ASSERT_TRUE(started) << started.error().message;
  start_worker();
  start_worker();
  ASSERT_NO_FATAL_FAILURE(post("evt-after-", 20));

  ASSERT_TRUE(deliveries_in_state("succeeded", posted, 60s)) << states() << "\n"
                                                             << describe_progress();
  EXPECT_EQ(stack_->count_deliveries(), posted);
  expect_each_succeeded_once(*stack_, static_cast<std::size_t>(posted));
  // Nothing delivered before the stop was delivered again, and nothing accepted was lost.
  auto ids = rx_.webhook_id_counts("/a");
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(posted));
  for (const auto& [id, n] : ids) EXPECT_EQ(n, 1) << id << " delivered " << n << " times";
  EXPECT_EQ(rx_.count("/a"), static_cast<std::size_t>(posted));
  EXPECT_TRUE(webhooks_committed_to_end(20s)) << describe_progress();
  std::cout << "[ restart  ] " << posted << " events, " << delivered_before
            << " delivered before the stop, " << rx_.count("/a") - delivered_before << " after\n";
}

}  // namespace
}  // namespace hookrelay::test
