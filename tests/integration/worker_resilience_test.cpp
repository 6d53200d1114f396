// Nothing lost, nothing done twice in effect, when workers crash, are stopped, or lose
// Postgres. Real worker processes, devbroker, Postgres and a scripted receiver.
#include <gtest/gtest.h>

#include <functional>
#include <iostream>
#include <string>
#include <thread>

#include "tests/support/worker_fixture.h"

namespace hookrelay::test {
namespace {

// A fetch whose offset is no longer in the log (retention, a topic recreated, a log truncated
// by an unclean election) resets the partition's position: messages were lost, and the worker
// must say so (the HookrelayOffsetReset alarm).
TEST_F(WorkerTest, AnOffsetOutOfRangeIsCountedAsAReset) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  o.partitions = 1;
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  std::size_t w = start_worker();
  produce("acme", "evt-reset-1", "{}");
  ASSERT_TRUE(rx_.wait_for_count("/a", 1, 30s));
  // A group's first start (no committed offset) takes the earliest offsets without a reset.
  EXPECT_EQ(worker_metric(w, "hookrelay_worker_offset_resets_total"), 0);
  auto pushed = stack_->broker().control("errors Fetch 3 OFFSET_OUT_OF_RANGE");
  ASSERT_TRUE(pushed) << pushed.error().message;
  produce("acme", "evt-reset-2", "{}");
  EXPECT_TRUE(
      eventually([&] { return worker_metric(w, "hookrelay_worker_offset_resets_total") > 0; }, 20s))
      << stack_->worker(w).process.log_tail();
  ASSERT_TRUE(rx_.wait_for_count("/a", 2, 30s));
  // The reset read the partition again from its start: what it holds there is taken again (it
  // could be new), and the delivery key keeps the webhook delivered before from a second call.
  EXPECT_TRUE(eventually(
      [&] {
        return worker_metric(w, "hookrelay_kafka_consumer_errors_total",
                             {"code=\"partition_rewound\""}) > 0;
      },
      20s))
      << stack_->worker(w).process.log_tail();
  produce("acme", "evt-reset-3", "{}");
  ASSERT_TRUE(rx_.wait_for_count("/a", 3, 30s));
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(rx_.count("/a"), 3u) << "a webhook was delivered twice after the reset";
}

// A restarted worker whose partitions stay quiet is where its group committed, with no lag: the
// old worker counted each such partition's lag from the log's start until a message came.
TEST_F(WorkerTest, AQuietPartitionAfterARestartShowsNoLag) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  o.partitions = 1;
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  std::size_t w = start_worker();
  for (int i = 0; i < 5; ++i) produce("acme", "evt-lag-" + std::to_string(i), "{}");
  ASSERT_TRUE(rx_.wait_for_count("/a", 5, 30s));
  const auto lag = [&](std::size_t worker) {
    return worker_metric(worker, "hookrelay_worker_consumer_lag", {"topic=\"hookrelay.webhooks\""});
  };
  ASSERT_TRUE(eventually([&] { return lag(w) == 0; }, 10s)) << lag(w);
  stack_->worker(w).process.terminate();
  ASSERT_TRUE(stack_->worker(w).process.wait_exit(30s).has_value());
  std::size_t again = start_worker();
  std::this_thread::sleep_for(3s);  // the gauges are set each second
  EXPECT_NE(stack_->worker_metrics(again).find("hookrelay_worker_consumer_lag{"),
            std::string::npos);
  EXPECT_EQ(lag(again), 0) << "a quiet partition's lag counted from the log's start";
  EXPECT_EQ(rx_.count("/a"), 5u);
}

// An offset commit the group coordinator refuses (an ACL, a coordinator moving) leaves offsets
// where they were: a restart reads everything since again. It is logged and counted.
TEST_F(WorkerTest, AFailedOffsetCommitIsCounted) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  o.partitions = 1;
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  std::size_t w = start_worker();
  produce("acme", "evt-commit-1", "{}");
  ASSERT_TRUE(rx_.wait_for_count("/a", 1, 30s));
  auto pushed = stack_->broker().control("errors OffsetCommit 20 GROUP_AUTHORIZATION_FAILED");
  ASSERT_TRUE(pushed) << pushed.error().message;
  produce("acme", "evt-commit-2", "{}");
  ASSERT_TRUE(rx_.wait_for_count("/a", 2, 30s));
  EXPECT_TRUE(eventually(
      [&] { return worker_metric(w, "hookrelay_kafka_consumer_errors_total") > 0; }, 20s))
      << stack_->worker(w).process.log_tail();
  EXPECT_NE(stack_->worker(w).process.read_log().find("msg=offset_commit_failed"),
            std::string::npos);
}

TEST_F(WorkerTest, CrashAndRebalanceLoseNothing) {
  constexpr int kEvents = 300;
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  o.partitions = 6;
  o.batch_size = 20;
  o.per_host_max_in_flight =
      4;  // ~80 deliveries/s against a 50 ms receiver: the kill lands mid-way
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.set_default({200, {}, 50});
  auto produced = stack_->produce_webhooks("acme", numbered_events("evt-crash-", kEvents));
  ASSERT_TRUE(produced) << produced.error().message;

  std::size_t a = start_worker();
  ASSERT_TRUE(rx_.wait_for_count("/a", 60, 30s));
  stack_->worker(a).process.kill();
  ASSERT_EQ(stack_->worker(a).process.wait_exit(5s), 128 + SIGKILL);
  std::size_t delivered_by_a = rx_.count("/a");
  ASSERT_LT(delivered_by_a, static_cast<std::size_t>(kEvents))
      << "worker A finished before the kill";

  start_worker();
  ASSERT_TRUE(rx_.wait_for_count("/a", delivered_by_a + 20, 30s));
  start_worker();  // joins mid-stream: another rebalance
  ASSERT_TRUE(deliveries_in_state("succeeded", kEvents, 90s))
      << "succeeded: " << stack_->count_deliveries("succeeded")
      << ", all: " << stack_->count_deliveries();

  EXPECT_EQ(stack_->count_deliveries(), kEvents);
  expect_each_succeeded_once(*stack_, kEvents);
  auto ids = rx_.webhook_id_counts("/a");
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kEvents));
  std::size_t duplicates = rx_.count("/a") - ids.size();
  std::cout << "[ crash    ] " << kEvents << " events, " << delivered_by_a
            << " requests before SIGKILL, " << duplicates
            << " duplicate requests after it (at-least-once; allowed)\n";
  RecordProperty("duplicate_requests", static_cast<int>(duplicates));
}

TEST_F(WorkerTest, SigtermDrainsInFlightAndTheNextWorkerFinishes) {
  constexpr int kEvents = 20;
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  o.per_host_max_in_flight = 5;  // 5 in flight, the rest claimed and queued behind them
  o.shutdown_grace_ms = 4000;
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.set_default({200, {}, 1000});
  auto produced = stack_->produce_webhooks("acme", numbered_events("evt-term-", kEvents));
  ASSERT_TRUE(produced) << produced.error().message;

  std::size_t a = start_worker();
  ASSERT_TRUE(rx_.wait_for_count("/a", 5, 20s));
  auto stopping = std::chrono::steady_clock::now();
  stack_->worker(a).process.terminate();
  auto status =
      stack_->worker(a).process.wait_exit(std::chrono::milliseconds(o.shutdown_grace_ms) + 3s);
  ASSERT_TRUE(status) << "worker did not exit within its grace period";
  EXPECT_EQ(*status, 0);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - stopping);
  std::size_t sent_by_a = rx_.count("/a");
  // What A had sent was answered (1 s) and recorded within the grace period.
  EXPECT_EQ(stack_->count_deliveries("succeeded"), static_cast<int64_t>(sent_by_a))
      << "drain took " << took.count() << " ms";

  start_worker();
  ASSERT_TRUE(deliveries_in_state("succeeded", kEvents, 40s))
      << "succeeded: " << stack_->count_deliveries("succeeded");
  expect_each_succeeded_once(*stack_, kEvents);
  EXPECT_EQ(rx_.count("/a"), static_cast<std::size_t>(kEvents))
      << "a drained delivery was made again";
  EXPECT_EQ(rx_.distinct_webhook_ids("/a"), static_cast<std::size_t>(kEvents));
}

// Postgres in trouble: the worker holds its partitions (not ready, postgres_up 0), delivers and
// dead-letters nothing while `trouble` lasts, then resumes on its own once `mend` has run and
// delivers every event once.
class WorkerPostgresTest : public WorkerTest {
 protected:
  // `code`: the Postgres error code the worker counts meanwhile.
  void holds_then_delivers_once(const std::function<void()>& trouble,
                                const std::function<void()>& mend, const std::string& code) {
    StackOptions o;
    o.routes = {{"acme", "a", rx_.url("/a")}};
    ASSERT_NO_FATAL_FAILURE(create_stack(o));
    std::size_t w = start_worker();
    ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-before", "{}"));
    ASSERT_TRUE(deliveries_in_state("succeeded", 1, 20s));

    trouble();
    struct Mend {
      const std::function<void()>& mend;
      bool done = false;
      ~Mend() {
        if (!done) mend();
      }
    } guard{mend};
    auto produced = stack_->produce_webhooks("acme", numbered_events("evt-held-", 5));
    ASSERT_TRUE(produced) << produced.error().message;

    EXPECT_TRUE(wait_for_status(stack_->worker(w).url("/readyz"), 503, 15s));
    EXPECT_TRUE(
        eventually([&] { return worker_metric(w, "hookrelay_worker_postgres_up") == 0; }, 5s));
    std::this_thread::sleep_for(2s);
    EXPECT_EQ(rx_.count("/a"), 1u) << "delivered without a claim in Postgres";
    EXPECT_GT(worker_metric(w, "hookrelay_worker_postgres_errors_total", {"code=\"" + code + "\""}),
              0);
    EXPECT_EQ(worker_metric(w, "hookrelay_worker_store_rejected_total"), 0);
    EXPECT_EQ(worker_metric(w, "hookrelay_worker_dlq_total"), 0);

    mend();
    guard.done = true;
    ASSERT_TRUE(deliveries_in_state("succeeded", 6, 30s))
        << "succeeded: " << stack_->count_deliveries("succeeded") << "\n"
        << stack_->describe_deliveries();
    EXPECT_TRUE(wait_for_status(stack_->worker(w).url("/readyz"), 200, 10s));
    EXPECT_TRUE(
        eventually([&] { return worker_metric(w, "hookrelay_worker_postgres_up") == 1; }, 5s));
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(rx_.count("/a"), 6u);
    EXPECT_EQ(rx_.distinct_webhook_ids("/a"), 6u);
    EXPECT_EQ(worker_metric(w, "hookrelay_worker_dlq_total"), 0);
    expect_each_succeeded_once(*stack_, 6);
  }
};

TEST_F(WorkerPostgresTest, AnOutagePausesDeliveryAndResumesWithoutDuplicates) {
  holds_then_delivers_once([&] { stack_->set_database_accepting(false); },
                           [&] { stack_->set_database_accepting(true); }, "db_unavailable");
}

// A database that answers but refuses the worker's statements (here its table is gone, as when a
// worker of a new release starts before its migration) is an outage too, not a refusal of each
// delivery: a worker that took it for one dead-lettered every delivery it claimed.
TEST_F(WorkerPostgresTest, ADatabaseRefusingTheStatementsHoldsDeliveryInsteadOfDeadLettering) {
  holds_then_delivers_once(
      [&] { stack_->scalar("ALTER TABLE delivery_rows RENAME TO delivery_rows_away"); },
      [&] { stack_->scalar("ALTER TABLE delivery_rows_away RENAME TO delivery_rows"); },
      "db_misconfigured");
}

// A worker started on a schema older than its build says so at start, naming both versions.
TEST_F(WorkerTest, AWorkerOnAnOlderSchemaNamesTheMissingMigrationAtStart) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  const std::string newest = stack_->scalar("SELECT max(version) FROM schema_migrations");
  const std::string before =
      stack_->scalar("SELECT max(version) FROM schema_migrations WHERE version < '" + newest + "'");
  stack_->scalar("DELETE FROM schema_migrations WHERE version = '" + newest + "'");
  std::size_t w = start_worker();
  EXPECT_TRUE(eventually(
      [&] {
        return stack_->worker(w).process.read_log().find("msg=schema_behind applied=" + before +
                                                         " needed=" + newest) != std::string::npos;
      },
      5s))
      << stack_->worker(w).process.log_tail();
}

TEST_F(WorkerTest, RetriesWaitingDuringARebalanceAreNotStranded) {
  constexpr int kEvents = 10;  // fewer failures than the circuit breaker's threshold (20)
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  o.schedule_seconds = {1, 2, 10};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  // Every first attempt asks for 10 s: the retries wait on tier 2 with their partitions paused
  // (long enough for every first attempt to be recorded on a loaded machine).
  rx_.script(
      "/a", std::vector<ScriptedResponse>(kEvents, ScriptedResponse{503, {{"Retry-After", "10"}}}));
  auto produced = stack_->produce_webhooks("acme", numbered_events("evt-wait-", kEvents));
  ASSERT_TRUE(produced) << produced.error().message;

  start_worker();
  // Every first attempt made: on a loaded machine the later ones can wait two of the host's 10 s
  // Retry-After pauses (below), so 20 s was too short (a sanitized run missed it).
  ASSERT_TRUE(rx_.wait_for_count("/a", kEvents, 35s));
  // Every first attempt recorded. On a loaded machine the first claims can be split: the host's
  // Retry-After then holds the later ones for 10 s, and the earlier ones' retries come due and
  // are claimed (in flight, held for the host) before every delivery reads 'retrying'. Their
  // 503s pause the host for 10 s more, so the later first attempts can wait two pauses.
  ASSERT_TRUE(eventually(
      [&] {
        return stack_->scalar(
                   "SELECT count(*) FROM deliveries WHERE attempts >= 1 AND state IN "
                   "('retrying', 'in_flight')") == std::to_string(kEvents);
      },
      30s))
      << stack_->describe_deliveries();
  std::this_thread::sleep_for(1s);  // the first worker has fetched the tier and paused it
  start_worker();                   // revokes and reassigns every partition
  ASSERT_TRUE(deliveries_in_state("succeeded", kEvents, 40s))
      << "succeeded: " << stack_->count_deliveries("succeeded") << "\n"
      << stack_->describe_deliveries();
  expect_each_succeeded_once(*stack_, kEvents);
  // 503 then 200; a replay after the rebalance may add one more (the devbroker refuses commits
  // during a rebalance, so the new owner can re-read a few messages).
  EXPECT_EQ(rx_.distinct_webhook_ids("/a"), static_cast<std::size_t>(kEvents));
  for (const auto& [id, n] : rx_.webhook_id_counts("/a")) EXPECT_GE(n, 2) << id;
}

TEST_F(WorkerTest, SigtermAbandonsWhatOutlastsTheGraceAndItIsReplayed) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a"), 10000}};
  o.shutdown_grace_ms = 500;
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.script("/a", {{200, {}, 4000}});  // the first attempt outlives the grace period
  std::size_t a = start_worker();
  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-abandoned", "{}"));
  ASSERT_TRUE(rx_.wait_for_count("/a", 1, 20s));

  stack_->worker(a).process.terminate();
  auto status = stack_->worker(a).process.wait_exit(5s);
  ASSERT_TRUE(status) << "worker did not exit";
  EXPECT_EQ(*status, 0) << "a worker stopped mid-delivery must still exit cleanly";
  EXPECT_EQ(stack_->count_deliveries("succeeded"), 0);

  start_worker();  // the lease was given back and the offset not committed: it is replayed
  ASSERT_TRUE(deliveries_in_state("succeeded", 1, 30s));
  EXPECT_EQ(rx_.count("/a"), 2u);
  expect_each_succeeded_once(*stack_, 1);
}

}  // namespace
}  // namespace hookrelay::test
