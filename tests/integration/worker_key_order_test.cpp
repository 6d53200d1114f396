// Per-key ordering across retries end to end: a real worker, the devbroker and Postgres, and a
// receiver that answers by the event's ordering key (a JSON pointer to the customer). For every
// key the receiver's successful deliveries arrive in sequence order, each event exactly once,
// while it fails at random; and one key failing for seconds does not slow the other keys.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <map>
#include <pqxx/pqxx>
#include <thread>
#include <vector>

#include "shared/clock.h"
#include "shared/kafka/wire_contract.h"
#include "tests/support/kafka_test_client.h"
#include "tests/support/ordered_receiver.h"
#include "tests/support/worker_fixture.h"

namespace hookrelay::test {
namespace {

class KeyOrderTest : public WorkerTest {
 protected:
  void SetUp() override {
    WorkerTest::SetUp();
    auto started = receiver_.start();
    ASSERT_TRUE(started) << started.error().message;
    ASSERT_NO_FATAL_FAILURE(create_stack(ordered_route_stack(receiver_.url())));
    start_worker();
  }
  // Produces the events and waits for `n` successes; the seconds it took.
  double run(const std::vector<std::pair<std::string, std::string>>& events, std::size_t n,
             std::chrono::seconds timeout) {
    const auto start = Clock::now();
    auto produced = stack_->produce_webhooks("acme", events);
    EXPECT_TRUE(produced) << produced.error().message;
    EXPECT_TRUE(eventually([&] { return receiver_.successes() >= n; }, timeout))
        << receiver_.successes() << " of " << n << " delivered";
    return std::chrono::duration<double>(Clock::now() - start).count();
  }
  // Once every event is delivered, no key is held and no delivery waits behind one.
  void expect_every_key_free() {
    EXPECT_TRUE(
        eventually([&] { return stack_->scalar("SELECT count(*) FROM ordered_keys") == "0"; }, 10s))
        << "every key is free at the end";
    EXPECT_EQ(stack_->scalar("SELECT count(*) FROM ordered_waiting"), "0");
  }
  // Seconds from `start` until the last success of the keys other than `skip`.
  double others_done(Clock::time_point start, const std::string& skip) {
    Clock::time_point last = start;
    for (const auto& [key, list] : receiver_.by_key()) {
      if (key == skip) continue;
      for (const auto& s : list) last = std::max(last, s.at);
    }
    return std::chrono::duration<double>(last - start).count();
  }

  OrderedReceiver receiver_;
};

TEST_F(KeyOrderTest, RandomFailuresKeepEveryKeysSuccessesInSequenceEachOnce) {
  constexpr int kKeys = 50, kPerKey = 40;
  receiver_.configure(0.2, "", {});
  const double took_s = run(keyed_events("r", kKeys, kPerKey), kKeys * kPerKey, 240s);
  std::this_thread::sleep_for(2s);  // a duplicate would show up here
  ASSERT_NO_FATAL_FAILURE(expect_in_sequence(receiver_.by_key(), kKeys, kPerKey));
  EXPECT_EQ(receiver_.successes(), static_cast<std::size_t>(kKeys * kPerKey));
  expect_each_succeeded_once(*stack_, kKeys * kPerKey);
  const double waits = worker_metric(0, "hookrelay_ordered_waits_total");
  const double releases = worker_metric(0, "hookrelay_ordered_releases_total");
  EXPECT_GT(waits, 0) << "no delivery waited behind a failed head: the order was not at stake";
  EXPECT_EQ(releases, waits) << "every waiting delivery is released once";
  expect_every_key_free();
  std::printf(
      "[ key order ] %d events over %d keys, receiver failing 20%%: all delivered in %.1f s, "
      "%d failed attempts, %.0f deliveries waited behind their key's head and were released\n",
      kKeys * kPerKey, kKeys, took_s, receiver_.failures(), waits);
}

// What a new worker finds after a worker was SIGKILLed with a request out: the first delivery of
// a key still leased by the dead worker (its lease runs for seconds more), and the key's later
// events arriving behind it. The leased one is not attempted until its lease runs out, and the
// later ones wait for it: the key's first success is the leased delivery's.
TEST_F(KeyOrderTest, ADeliveryLeasedByAStoppedWorkerHoldsItsKeyUntilItIsDelivered) {
  constexpr int kPerKey = 5;
  constexpr int kLeaseMs = 3000;
  receiver_.configure(0, "", {});
  const auto events = keyed_events("l", 2, kPerKey);  // c0 and c1, seq 0 of each first
  const std::string leased = events.front().first;    // c0's seq 0
  stack_->scalar(
      "INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, state,"
      " attempts, lease_owner, lease_until, lease_token) VALUES ('wh:acme:" +
      leased + ":o', 'webhook', 'acme', '" + leased + "', 'o', '" + receiver_.url() +
      "', 'in_flight', 1, 'worker-killed-earlier', now() + make_interval(secs => " +
      std::to_string(kLeaseMs / 1000.0) + "), 42)");
  const auto start = Clock::now();
  run(events, 2 * kPerKey, 30s);
  std::this_thread::sleep_for(1s);  // a late or second copy would show up here
  const auto got = receiver_.by_key();
  ASSERT_NO_FATAL_FAILURE(expect_in_sequence(got, 2, kPerKey));
  const double c0_first = std::chrono::duration<double>(got.at("c0").front().at - start).count();
  const double c1_done = std::chrono::duration<double>(got.at("c1").back().at - start).count();
  EXPECT_GE(c0_first, kLeaseMs / 1000.0 - 0.5) << "the leased delivery was sent under its lease";
  EXPECT_LT(c1_done, kLeaseMs / 1000.0) << "the other key waited for the leased one";
  expect_each_succeeded_once(*stack_, 2 * kPerKey);
  expect_every_key_free();
  std::printf(
      "[ key order ] a delivery leased by a stopped worker: its key's first success %.2f s after "
      "the events (lease %d ms), the other key done in %.2f s\n",
      c0_first, kLeaseMs, c1_done);
}

// A route removed (a reload) while one of its keys is held by a failing head, with later events
// of the key waiting behind it: the head's retry comes back to a route that no longer exists and
// is dead-lettered (unknown_route), and that releases what waits behind it, which is
// dead-lettered the same way. Nothing is left waiting, no key held: before, the key's waiting
// deliveries stayed in ordered_waiting for ever, their messages long committed.
TEST_F(KeyOrderTest, ARouteRemovedWhileAKeyIsHeldDeadLettersWhatWaitsBehindIt) {
  receiver_.configure(0, customer(0), Clock::now() + 600s);  // c0 fails throughout
  auto produced = stack_->produce_webhooks("acme", keyed_events("gone", 1, 3));
  ASSERT_TRUE(produced) << produced.error().message;
  ASSERT_TRUE(eventually(
      [&] { return stack_->scalar("SELECT count(*) FROM ordered_waiting") == "2"; }, 20s))
      << stack_->describe_deliveries();
  StackOptions without = stack_->options();
  without.routes = {{"acme", "other", receiver_.url(), 5000}};
  ASSERT_TRUE(stack_->write_config(without, "hookrelay.yaml"));
  ASSERT_EQ(::kill(stack_->worker(0).process.pid(), SIGHUP), 0);
  EXPECT_TRUE(eventually(
      [&] {
        return worker_metric(0, "hookrelay_worker_dlq_total", {"reason=\"unknown_route\""}) >= 3;
      },
      30s))
      << stack_->worker(0).process.log_tail();
  expect_every_key_free();
  EXPECT_EQ(receiver_.successes(), 0u);
}

TEST_F(KeyOrderTest, AKeyStuckInRetriesDoesNotSlowTheOthers) {
  constexpr int kKeys = 50, kPerKey = 10;
  constexpr auto kStuck = 8s;
  const std::string stuck = customer(0);
  // Without a stuck key.
  receiver_.configure(0, "", {});
  auto start = Clock::now();
  run(keyed_events("a", kKeys, kPerKey), kKeys * kPerKey, 60s);
  const double without = others_done(start, stuck);
  ASSERT_NO_FATAL_FAILURE(expect_in_sequence(receiver_.by_key(), kKeys, kPerKey));
  receiver_.reset();

  // The first key fails every attempt for kStuck.
  start = Clock::now();
  receiver_.configure(0, stuck, start + kStuck);
  auto produced = stack_->produce_webhooks("acme", keyed_events("b", kKeys, kPerKey));
  ASSERT_TRUE(produced) << produced.error().message;
  ASSERT_TRUE(eventually(
      [&] { return receiver_.successes() >= static_cast<std::size_t>((kKeys - 1) * kPerKey); },
      60s));
  const double with = others_done(start, stuck);
  EXPECT_EQ(receiver_.by_key().count(stuck), 0u) << "the stuck key got through while failing";
  ASSERT_TRUE(eventually([&] { return receiver_.successes() >= kKeys * kPerKey; }, 60s));
  const double stuck_done =
      std::chrono::duration<double>(receiver_.by_key().at(stuck).back().at - start).count();
  ASSERT_NO_FATAL_FAILURE(expect_in_sequence(receiver_.by_key(), kKeys, kPerKey));
  std::printf(
      "[ key order ] the other %d keys' %d deliveries done in %.2f s without a stuck key, %.2f s "
      "with key %s failing for %lld s (that key done after %.2f s)\n",
      kKeys - 1, (kKeys - 1) * kPerKey, without, with, stuck.c_str(),
      static_cast<long long>(kStuck.count()), stuck_done);
  EXPECT_LT(with, std::chrono::duration<double>(kStuck).count() / 2)
      << "the other keys waited for the stuck one";
  EXPECT_LT(with, without * 2 + 1.0);
}

// A delivery that waits behind its key is published again from its row in ordered_waiting when its
// turn comes: with the exact bytes of its headers. Ingest forwards a provider's header values as
// they came, obs-text (bytes 0x80-0xFF) included; the old row kept its headers as text, with
// U+FFFD for every byte that was not UTF-8, and the released message (and the receiver) got those
// instead of the provider's bytes, where the same delivery on an unordered route kept its own.
TEST_F(KeyOrderTest, AReleasedDeliveryKeepsTheExactBytesOfItsHeaders) {
  const std::string latin1("caf\xe9 \xff\x80 end");
  receiver_.configure(0, customer(0), Clock::now() + 4s);  // c0 fails for 4 s
  auto producer = TestProducer::create(stack_->bootstrap());
  ASSERT_TRUE(producer) << producer.error().message;
  std::vector<TestRecord> records;
  for (int seq = 0; seq < 2; ++seq) {
    const std::string id = "bytes-" + std::to_string(seq);
    records.push_back(TestRecord{std::string(kWebhooksTopic),
                                 R"({"customer":"c0","seq":)" + std::to_string(seq) + "}",
                                 {{std::string(header::kKind), "webhook"},
                                  {std::string(header::kSource), "acme"},
                                  {std::string(header::kEventId), id},
                                  {std::string(header::kReceivedAt), std::to_string(unix_now_ms())},
                                  {std::string(header::kContentType), "application/json"},
                                  {"hr-fwd-x-label", latin1}},
                                 id});
  }
  auto produced = (*producer)->produce_all(records);
  ASSERT_TRUE(produced) << produced.error().message;
  ASSERT_TRUE(eventually(
      [&] { return stack_->scalar("SELECT count(*) FROM ordered_waiting") == "1"; }, 20s))
      << "bytes-1 never waited behind bytes-0\n"
      << stack_->describe_deliveries();
  ASSERT_TRUE(eventually([&] { return receiver_.successes() >= 2; }, 30s))
      << stack_->describe_deliveries();
  ASSERT_NO_FATAL_FAILURE(expect_in_sequence(receiver_.by_key(), 1, 2));
  // Its released message: bytes-1 waited from its first read, so its only retry copy.
  auto tier = consume_to_end(stack_->bootstrap(), retry_topic(0));
  ASSERT_TRUE(tier) << tier.error().message;
  int released = 0;
  for (const auto& m : *tier) {
    if (m.key != "wh:acme:bytes-1:o") continue;
    ++released;
    EXPECT_EQ(m.header("hr-fwd-x-label").value_or("<none>"), latin1)
        << "the released message's header is not the provider's bytes";
  }
  EXPECT_EQ(released, 1);
  expect_every_key_free();
}

// The read of the held keys before consuming fails (here: ordered_keys locked past the worker's
// statement_timeout, as a key table too large to read in time does). The worker goes on, counts
// it, takes its partitions after 10 s without the look (counted too), and learns the keys at a
// later look. The old worker exited 1, and a restarted one met the
// same table: every worker of the fleet in a crash loop.
class KeyOrderStartTest : public WorkerTest {
 protected:
  OrderedReceiver receiver_;
};

TEST_F(KeyOrderStartTest, AFailedReadOfTheHeldKeysAtStartDoesNotStopTheWorker) {
  auto started = receiver_.start();
  ASSERT_TRUE(started) << started.error().message;
  StackOptions o = ordered_route_stack(receiver_.url());
  o.worker_extra = "  statement_timeout_ms: 2000\n";
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  pqxx::connection locker(stack_->database().url());
  auto lock = std::make_unique<pqxx::work>(locker);
  lock->exec("LOCK TABLE ordered_keys IN ACCESS EXCLUSIVE MODE");
  auto w = stack_->start_worker(true, {}, 30s);
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_TRUE(stack_->worker(*w).process.running());
  EXPECT_GE(worker_metric(*w, "hookrelay_ordered_store_errors_total", {"op=\"held\""}), 1);
  // The look after the assignment fails too: the partitions are taken after 10 s, counted.
  EXPECT_TRUE(eventually(
      [&] { return worker_metric(*w, "hookrelay_ordered_looks_late_total") >= 1; }, 25s));
  lock->commit();
  lock.reset();
  // It works as ever once the table answers: a key's failures keep its events in sequence.
  receiver_.configure(0, customer(0), Clock::now() + 3s);
  auto produced = stack_->produce_webhooks("acme", keyed_events("s", 2, 3));
  ASSERT_TRUE(produced) << produced.error().message;
  ASSERT_TRUE(eventually([&] { return receiver_.successes() >= 6; }, 40s))
      << stack_->describe_deliveries();
  ASSERT_NO_FATAL_FAILURE(expect_in_sequence(receiver_.by_key(), 2, 3));
  EXPECT_GT(worker_metric(*w, "hookrelay_ordered_waits_total"), 0);
  EXPECT_TRUE(stack_->worker(*w).process.running());
}

}  // namespace
}  // namespace hookrelay::test
