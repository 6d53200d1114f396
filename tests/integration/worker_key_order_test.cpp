// Per-key ordering across retries end to end: a real worker, the devbroker and Postgres, and a
// receiver that answers by the event's ordering key (a JSON pointer to the customer). For every
// key the receiver's successful deliveries arrive in sequence order, each event exactly once,
// while it fails at random; and one key failing for seconds does not slow the other keys.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <random>
#include <vector>

#include "shared/http/http_server.h"
#include "tests/support/worker_fixture.h"

namespace hookrelay::test {
namespace {

using Clock = std::chrono::steady_clock;

// Answers {"customer": K, "seq": N} bodies: 500 for the stuck key until its time is up, 500 at
// random for `fail_rate` of the others' requests, else 200, recording each success.
class OrderedReceiver {
 public:
  struct Success {
    int seq;
    Clock::time_point at;
  };
  OrderedReceiver()
      : server_({}, [this](const HttpRequest& req, const Responder& respond) {
          HttpResponse r;
          r.status = answer(req.body);
          respond(std::move(r));
        }) {}
  Result<void> start() { return server_.start(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_.port()) + "/o"; }

  void configure(double fail_rate, std::string stuck_key, Clock::time_point stuck_until) {
    std::lock_guard lock(mu_);
    fail_rate_ = fail_rate;
    stuck_key_ = std::move(stuck_key);
    stuck_until_ = stuck_until;
  }
  std::size_t successes() const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& [k, list] : ok_) n += list.size();
    return n;
  }
  std::map<std::string, std::vector<Success>> by_key() const {
    std::lock_guard lock(mu_);
    return ok_;
  }
  int failures() const {
    std::lock_guard lock(mu_);
    return failed_;
  }
  void reset() {
    std::lock_guard lock(mu_);
    ok_.clear();
    failed_ = 0;
  }

 private:
  int answer(std::string_view body) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    std::string_view customer;
    int64_t seq = -1;
    if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS ||
        root["customer"].get(customer) != simdjson::SUCCESS ||
        root["seq"].get(seq) != simdjson::SUCCESS) {
      return 400;
    }
    std::lock_guard lock(mu_);
    const bool stuck = customer == stuck_key_ && Clock::now() < stuck_until_;
    if (stuck || std::uniform_real_distribution<double>(0, 1)(rng_) < fail_rate_) {
      ++failed_;
      return 500;
    }
    ok_[std::string(customer)].push_back({static_cast<int>(seq), Clock::now()});
    return 200;
  }

  mutable std::mutex mu_;
  std::mt19937_64 rng_{20261127};
  double fail_rate_ = 0;
  std::string stuck_key_;
  Clock::time_point stuck_until_;
  std::map<std::string, std::vector<Success>> ok_;
  int failed_ = 0;
  HttpServer server_;
};

std::string customer(int k) { return "c" + std::to_string(k); }

// `per_key` events for each of `keys` customers, interleaved: seq n of every key, then n + 1.
std::vector<std::pair<std::string, std::string>> keyed_events(const std::string& prefix, int keys,
                                                              int per_key) {
  std::vector<std::pair<std::string, std::string>> events;
  for (int n = 0; n < per_key; ++n) {
    for (int k = 0; k < keys; ++k) {
      events.emplace_back(
          prefix + "-" + customer(k) + "-" + std::to_string(n),
          R"({"customer":")" + customer(k) + R"(","seq":)" + std::to_string(n) + "}");
    }
  }
  return events;
}

// Every key's successes are 0, 1, ..., per_key - 1 in that order: in sequence, each once.
void expect_in_sequence(const std::map<std::string, std::vector<OrderedReceiver::Success>>& got,
                        int keys, int per_key) {
  ASSERT_EQ(got.size(), static_cast<std::size_t>(keys));
  for (const auto& [key, list] : got) {
    std::vector<int> seqs;
    for (const auto& s : list) seqs.push_back(s.seq);
    std::vector<int> want(static_cast<std::size_t>(per_key));
    for (int i = 0; i < per_key; ++i) want[static_cast<std::size_t>(i)] = i;
    EXPECT_EQ(seqs, want) << "key " << key;
  }
}

class KeyOrderTest : public WorkerTest {
 protected:
  void SetUp() override {
    WorkerTest::SetUp();
    auto started = receiver_.start();
    ASSERT_TRUE(started) << started.error().message;
    StackOptions o;
    // One partition: events reach the worker in the order they were produced.
    o.partitions = 1;
    o.schedule_seconds = {1, 2};
    o.max_attempts = 30;
    o.routes = {{"acme", "o", receiver_.url(), 5000,
                 "ordered: true, ordering_key: { json_pointer: /customer }"}};
    ASSERT_NO_FATAL_FAILURE(create_stack(o));
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
  const double seconds = run(keyed_events("r", kKeys, kPerKey), kKeys * kPerKey, 240s);
  std::this_thread::sleep_for(2s);  // a duplicate would show up here
  ASSERT_NO_FATAL_FAILURE(expect_in_sequence(receiver_.by_key(), kKeys, kPerKey));
  EXPECT_EQ(receiver_.successes(), static_cast<std::size_t>(kKeys * kPerKey));
  expect_each_succeeded_once(*stack_, kKeys * kPerKey);
  const double waits = worker_metric(0, "hookrelay_ordered_waits_total");
  const double releases = worker_metric(0, "hookrelay_ordered_releases_total");
  EXPECT_GT(waits, 0) << "no delivery waited behind a failed head: the order was not at stake";
  EXPECT_EQ(releases, waits) << "every waiting delivery is released once";
  EXPECT_TRUE(
      eventually([&] { return stack_->scalar("SELECT count(*) FROM ordered_keys") == "0"; }, 10s))
      << "every key is free at the end";
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM ordered_waiting"), "0");
  std::printf(
      "[ key order ] %d events over %d keys, receiver failing 20%%: all delivered in %.1f s, "
      "%d failed attempts, %.0f deliveries waited behind their key's head and were released\n",
      kKeys * kPerKey, kKeys, seconds, receiver_.failures(), waits);
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

}  // namespace
}  // namespace hookrelay::test
