// PostgresReplayStore (shared/replay/dlq_replay.h) against a migrated database: the undo of a
// replay mark, and the take-up of an unfinished replay whose message is gone.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "shared/replay/dlq_replay.h"
#include "shared/store/delivery_queries.h"
#include "tests/integration/scratch_database.h"

namespace hookrelay {
namespace {

// Nothing may be produced in these tests.
class RefusingProducer final : public MessageProducer {
 public:
  int produced = 0;
  void produce(const OutgoingMessage&, DoneCallback done) override {
    ++produced;
    done(fail("refused", "nothing is produced in this test"));
  }
  bool reachable() const override { return true; }
  int outstanding() const override { return 0; }
};

class ReplayStoreTest : public testing::MigratedDatabaseTest {
 protected:
  // A dead delivery, its last attempt ten minutes ago, then marked replayed by a run (CLI).
  void dead_then_marked(const std::string& key) {
    db_->scalar(
        "INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, state,"
        " attempts, first_seen_at, last_attempt_at, origin_topic) VALUES ('" +
        key + "', 'webhook', 'acme', '" + key +
        "', 'ci', 'http://127.0.0.1:9/', 'dead', 3, now() - interval '1 hour',"
        " now() - interval '10 minutes', 'hookrelay.webhooks') RETURNING 1");
    DeliveryQueries queries(db_->url());
    ASSERT_TRUE(queries.mark_replayed(key, "killed-run", "receiver fixed"));
  }

  std::string state(const std::string& key) {
    return db_->scalar("SELECT state FROM deliveries WHERE delivery_key = '" + key + "'");
  }
};

// The undo of an earlier run's mark whose message is gone is fenced like the take-up of an
// unfinished replay, in the same statement: a delivery a worker took up after the mark (an attempt
// since: the earlier copy did reach Kafka, its ack lost) is left in the retry flow, "not_undone".
// Unfenced (the undo of a failed produce), it was set back to dead whatever came after the mark,
// and its retry copies then refused by the claim.
TEST_F(ReplayStoreTest, AnUndoOfAnEarlierMarkLeavesADeliveryAWorkerTookUpSinceThatMark) {
  dead_then_marked("taken");
  dead_then_marked("untouched");
  // A worker's attempt after the mark, its lease released: 'retrying', a retry copy in a tier.
  db_->scalar(
      "UPDATE deliveries SET last_attempt_at = now() + interval '1 second', attempts = 1"
      " WHERE delivery_key = 'taken' RETURNING 1");
  PostgresReplayStore store(db_->url());

  auto kept = store.undo_unfinished_replay("taken");
  ASSERT_FALSE(kept);
  EXPECT_EQ(kept.error().code, "not_undone") << kept.error().message;
  EXPECT_EQ(state("taken"), "retrying");

  ASSERT_TRUE(store.undo_unfinished_replay("untouched"));
  EXPECT_EQ(state("untouched"), "dead");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM dead_letters WHERE delivery_key = 'untouched'"), "1");
}

// The take-up is judged without comparing clocks: a worker whose clock is 5 s behind the
// database's attempts the delivery after the mark, stamping last_attempt_at before the mark's
// time. It still took the replay up: not unfinished, not to produce again, not to set back. The
// old test (last_attempt_at < the mark's replayed_at) set a live retry chain back to dead.
TEST_F(ReplayStoreTest, AnAttemptStampedByAWorkerClockBehindTheDatabasesStillTookTheReplayUp) {
  dead_then_marked("behind");
  db_->scalar(
      "UPDATE deliveries SET last_attempt_at = now() - interval '5 seconds', attempts = 1"
      " WHERE delivery_key = 'behind' RETURNING 1");
  DeliveryQueries queries(db_->url());
  auto unfinished = queries.unfinished_replay("behind");
  ASSERT_TRUE(unfinished) << unfinished.error().message;
  EXPECT_FALSE(*unfinished) << "taken for an unfinished replay, to be produced again";
  PostgresReplayStore store(db_->url());
  auto kept = store.undo_unfinished_replay("behind");
  ASSERT_FALSE(kept);
  EXPECT_EQ(kept.error().code, "not_undone") << kept.error().message;
  EXPECT_EQ(state("behind"), "retrying");

  // The same for an admin API replay resumed after its runner stopped (its item marked).
  db_->scalar(
      "INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, state,"
      " attempts, first_seen_at, last_attempt_at, origin_topic) VALUES ('item', 'webhook',"
      " 'acme', 'item', 'ci', 'http://127.0.0.1:9/', 'dead', 3, now() - interval '1 hour',"
      " now() - interval '10 minutes', 'hookrelay.webhooks') RETURNING 1");
  const int64_t replay =
      std::stoll(db_->scalar("INSERT INTO replays (request) VALUES ('{}') RETURNING id"));
  db_->scalar("INSERT INTO replay_items (replay_id, delivery_key) VALUES (" +
              std::to_string(replay) + ", 'item') RETURNING 1");
  ASSERT_TRUE(queries.mark_replayed("item", "admin", "receiver fixed", replay));
  EXPECT_EQ(*queries.needs_produce_again("item", replay), true);
  db_->scalar(
      "UPDATE deliveries SET last_attempt_at = now() - interval '5 seconds', attempts = 1"
      " WHERE delivery_key = 'item' RETURNING 1");
  EXPECT_EQ(*queries.needs_produce_again("item", replay), false);
}

// A retake (a rerun of an unfinished replay) is the newest mark: a run stopped between it and its
// produce leaves the delivery found unfinished again, and its undo still applies.
TEST_F(ReplayStoreTest, AReplayRetakenAndInterruptedAgainIsStillUnfinished) {
  dead_then_marked("twice");
  DeliveryQueries queries(db_->url());
  ASSERT_TRUE(queries.retake_replay("twice", "second-run", "rerun"));
  auto unfinished = queries.unfinished_replay("twice");
  ASSERT_TRUE(unfinished) << unfinished.error().message;
  EXPECT_TRUE(unfinished->has_value()) << "a retaken replay is no longer found unfinished";
  PostgresReplayStore store(db_->url());
  auto undone = store.undo_unfinished_replay("twice");
  EXPECT_TRUE(undone) << undone.error().message;
  EXPECT_EQ(state("twice"), "dead");
}

// `dlq replay --unfinished` of a run killed between its mark and its ack, once that delivery's
// dead letter is past retention: the delivery is set back to dead (listed again, replayable)
// and reported missing so. It stayed 'retrying' with no message anywhere, for good.
TEST_F(ReplayStoreTest, AnUnfinishedReplayWhoseMessageIsGoneIsSetBackToDead) {
  dead_then_marked("stranded");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  PostgresReplayStore store(db_->url());
  RefusingProducer producer;
  Replayer replayer(store, producer, ReplayClock{[] { return int64_t{0}; }, [](int64_t) {}});
  ReplayOptions options;
  options.who = "tester";
  options.unfinished_after_ms = 1;
  auto s = replayer.run({"stranded"}, {}, options, {});
  ASSERT_EQ(s.items.size(), 1u);
  EXPECT_EQ(s.items[0].outcome, ReplayOutcome::kMissing);
  EXPECT_NE(s.items[0].detail.find("set back to dead"), std::string::npos) << s.items[0].detail;
  EXPECT_EQ(state("stranded"), "dead");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM dead_letters WHERE delivery_key = 'stranded'"), "1");
  EXPECT_EQ(producer.produced, 0);
}

}  // namespace
}  // namespace hookrelay
