// Per-key ordering across retries (worker/key_order.h, worker/ordering_key.h): the ordering key
// of an event, its config and the errors that name the field, and the rules that hold a key
// while its head waits in a retry tier and release the waiting deliveries in order, against an
// in-memory store and producer.
#include "worker/key_order.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "shared/kafka/wire_contract.h"
#include "shared/signing/crypto.h"
#include "shared/utf8.h"
#include "worker/ordering_key.h"

namespace hookrelay {
namespace {

// The store's rules as the Postgres adapter keeps them, in memory.
class FakeKeyOrderStore final : public KeyOrderStore {
 public:
  struct Key {
    std::string head;
    std::vector<WaitingDelivery> waiting;
  };
  Result<std::string> hold(const OrderKey& key, const std::string& head,
                           const WaitingDelivery& otherwise, int64_t token) override {
    auto& k = keys.try_emplace(key, Key{head, {}}).first->second;
    if (k.head.empty()) k.head = head;
    if (k.head != head) (void)enqueue(otherwise, token);
    return k.head;
  }
  Result<bool> enqueue(const WaitingDelivery& w, int64_t token) override {
    auto& k = keys.try_emplace(w.key, Key{"", {}}).first->second;
    if (k.head == w.delivery_key) return false;  // the head itself: it does not wait
    leases_given_back.push_back(token);
    for (const auto& queued : k.waiting) {
      if (queued.delivery_key == w.delivery_key) return true;  // waiting already: keeps its place
    }
    k.waiting.push_back(w);
    k.waiting.back().id = ++next_id;
    return true;
  }
  Result<KeyAdvance> advance(const OrderKey& key, const std::string& head) override {
    if (advance_gate.valid()) advance_gate.wait();
    ++advances;
    auto it = keys.find(key);
    if (it == keys.end()) return KeyAdvance{};
    if (it->second.head != head) return KeyAdvance{std::nullopt, it->second.head};
    std::erase_if(it->second.waiting,
                  [&head](const WaitingDelivery& w) { return w.delivery_key == head; });
    if (it->second.waiting.empty()) {
      keys.erase(it);
      return KeyAdvance{};
    }
    it->second.head = it->second.waiting.front().delivery_key;
    return KeyAdvance{it->second.waiting.front(), std::nullopt};
  }
  Result<void> released(int64_t id) override {
    for (auto& [key, k] : keys) {
      std::erase_if(k.waiting, [id](const WaitingDelivery& w) { return w.id == id; });
    }
    return {};
  }
  Result<std::vector<HeldKey>> held(int64_t) override {
    if (held_fails) return fail("db_timeout", "canceling statement due to statement timeout", true);
    std::vector<HeldKey> out;
    for (const auto& [key, k] : keys) {
      out.push_back({key, k.head, done.count(k.head) > 0 || k.head.empty(),
                     static_cast<int64_t>(k.waiting.size()), std::nullopt});
      for (const auto& w : k.waiting) {
        if (w.delivery_key == k.head && unconfirmed_long_ago && !out.back().head_done) {
          out.back().unreleased = w;
          break;
        }
      }
    }
    return out;
  }
  std::map<OrderKey, Key> keys;
  std::set<std::string> done;  // heads held() reports as finished long ago
  // held() reports a head's own waiting row as left unconfirmed long ago.
  bool unconfirmed_long_ago = false;
  bool held_fails = false;
  std::shared_future<void> advance_gate;  // when set, advance() waits for it
  std::vector<int64_t> leases_given_back;
  int64_t next_id = 0;
  int advances = 0;
};

class RecordingProducer final : public MessageProducer {
 public:
  struct Sent {
    std::string topic, key, value;
    std::vector<MessageHeader> headers;
    DoneCallback done;
  };
  void produce(const OutgoingMessage& m, DoneCallback on_done) override {
    sent.push_back({std::string(m.topic), std::string(m.key), std::string(m.value), *m.headers,
                    std::move(on_done)});
  }
  bool reachable() const override { return true; }
  int outstanding() const override { return 0; }
  void ack_all() {
    for (auto& s : sent) {
      if (s.done) std::exchange(s.done, nullptr)(ProducedAt{0, 1});
    }
  }
  std::vector<Sent> sent;
};

Delivery ordered(const std::string& event, const std::string& key) {
  Delivery d;
  d.kind = "webhook";
  d.source = "acme";
  d.destination = "a";
  d.event_id = event;
  d.key = "wh:acme:" + event + ":a";
  d.ordered = true;
  d.ordering_key = key;
  d.body = std::make_shared<const std::string>(R"({"event":")" + event + "\"}");
  return d;
}

std::unique_ptr<Job> job_of(const Delivery& d, int64_t token = 7) {
  auto job = std::make_unique<Job>();
  job->d = d;
  job->lease_token = token;
  return job;
}

std::string header_of(const std::vector<MessageHeader>& headers, std::string_view name) {
  for (const auto& h : headers) {
    if (h.name == name) return h.value;
  }
  return "";
}

class KeyOrderTest : public ::testing::Test {
 protected:
  void SetUp() override { order.start(); }
  // wait() for `d`: the job comes back once the store has it.
  void wait(const Delivery& d) {
    order.wait(job_of(d), [this](std::unique_ptr<Job> j, bool waiting) {
      EXPECT_TRUE(waiting);
      waited.push_back(j->d.key);
    });
    order.poll(now);
  }
  // A failed attempt of `d` that goes to a retry tier.
  void fail(const Delivery& d) {
    if (order.take_head(d)) {
      order.hold(
          job_of(d), [this](std::unique_ptr<Job> j) { held.push_back(j->d.key); },
          [this](std::unique_ptr<Job> j) { lost.push_back(j->d.key); });
    }
    order.poll(now);
  }
  void resolve(const Delivery& d) {
    order.resolved(d);
    order.poll(now);
  }

  FakeKeyOrderStore store;
  RecordingProducer producer;
  prometheus::Registry registry;
  KeyOrder order{store, producer, registry, [] {}, {.refresh_ms = 1000000, .threaded = false}};
  int64_t now = 1000;
  std::vector<std::string> waited, held, lost;
};

TEST_F(KeyOrderTest, AFailedHeadHoldsItsKeyOnlyAndLaterDeliveriesOfTheKeyWait) {
  auto d1 = ordered("e1", "k"), d2 = ordered("e2", "k"), other = ordered("e3", "other");
  EXPECT_FALSE(order.must_wait(d1));
  fail(d1);
  EXPECT_EQ(held, std::vector<std::string>{d1.key}) << "the job moves on once the hold is stored";
  EXPECT_EQ(store.keys.at({"acme", "a", "k"}).head, d1.key);
  EXPECT_FALSE(order.must_wait(d1)) << "the head's own retry is attempted";
  EXPECT_TRUE(order.must_wait(d2));
  EXPECT_FALSE(order.must_wait(other)) << "other keys are never held up";
  Delivery unkeyed = ordered("e4", "");
  EXPECT_FALSE(order.must_wait(unkeyed)) << "an event without a key holds nothing back";
  Delivery unordered = d2;
  unordered.ordered = false;
  EXPECT_FALSE(order.must_wait(unordered));
  // A second failure of the head changes nothing.
  EXPECT_FALSE(order.take_head(d1));
}

// The look at Postgres failing (a statement timeout on a large key table) leaves keys held
// elsewhere unlearned and stopped workers' heads unreleased: it is logged and counted. The old key
// order dropped the error without a word.
TEST(KeyOrderRefresh, AFailedLookAtPostgresIsCounted) {
  FakeKeyOrderStore store;
  RecordingProducer producer;
  prometheus::Registry registry;
  KeyOrder order{store, producer, registry, [] {}, {.refresh_ms = 1000, .threaded = false}};
  order.start();
  store.held_fails = true;
  order.poll(1000);
  order.poll(2500);
  order.poll(2600);  // completions are served by the next poll
  double failed = 0;
  for (const auto& f : registry.Collect()) {
    if (f.name != "hookrelay_ordered_store_errors_total") continue;
    for (const auto& m : f.metric) {
      if (m.label.size() == 1 && m.label[0].value == "held") failed = m.counter.value;
    }
  }
  EXPECT_EQ(failed, 2);
}

// The read of the held keys at start failing (a statement timeout on a large key table) does not
// stop the worker: it is logged and counted, and the first poll looks again. The old start()
// returned the error, and the worker exited 1 at every start while the table stayed slow.
TEST(KeyOrderRefresh, AFailedReadAtStartIsCountedAndTheFirstPollLooksAgain) {
  FakeKeyOrderStore store;
  const OrderKey k{"acme", "a", "k"};
  store.keys[k].head = "wh:acme:e1:a";
  store.held_fails = true;
  RecordingProducer producer;
  prometheus::Registry registry;
  KeyOrder order{store, producer, registry, [] {}, {.refresh_ms = 1'000'000, .threaded = false}};
  order.start();
  EXPECT_EQ(order.held_keys(), 0u);
  double failed = 0;
  for (const auto& f : registry.Collect()) {
    if (f.name != "hookrelay_ordered_store_errors_total") continue;
    for (const auto& m : f.metric) {
      if (m.label.size() == 1 && m.label[0].value == "held") failed = m.counter.value;
    }
  }
  EXPECT_EQ(failed, 1);
  store.held_fails = false;
  order.poll(1000);
  order.poll(1000);  // completions are served by the next poll
  EXPECT_EQ(order.head_of(k), "wh:acme:e1:a");
  EXPECT_TRUE(order.must_wait(ordered("e2", "k")));
}

// A stop waits for the key order to be idle: an advance still on its way to Postgres is not. The
// old idle() looked only at jobs and publishes, so a stop could end with the advance queued, and
// the key's next delivery waited for another worker to find the head finished.
TEST(KeyOrderIdle, AnAdvanceOnItsWayToPostgresIsNotIdle) {
  FakeKeyOrderStore store;
  RecordingProducer producer;
  prometheus::Registry registry;
  KeyOrder order{store, producer, registry, [] {}, {.refresh_ms = 1000000}};
  order.start();
  auto d1 = ordered("e1", "k");
  ASSERT_TRUE(order.take_head(d1));
  bool held = false;
  order.hold(
      job_of(d1), [&](std::unique_ptr<Job>) { held = true; }, [](std::unique_ptr<Job>) {});
  for (int i = 0; i < 400 && !held; ++i) {
    order.poll(1000);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(held);
  std::promise<void> gate;
  store.advance_gate = gate.get_future().share();
  order.resolved(d1);
  EXPECT_FALSE(order.idle()) << "idle with the head's advance still queued";
  gate.set_value();
  for (int i = 0; i < 400 && !order.idle(); ++i) {
    order.poll(1000);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(order.idle());
  EXPECT_EQ(store.advances, 1);
}

TEST_F(KeyOrderTest, WaitingDeliveriesAreStoredWithTheirRetryMessageAndReleasedInOrder) {
  auto d1 = ordered("e1", "k"), d2 = ordered("e2", "k"), d3 = ordered("e3", "k");
  d3.attempt = 3;  // a retry that came back from a tier while the key was held
  d3.first_attempt_at_ms = 500;
  fail(d1);
  wait(d2);
  wait(d3);
  EXPECT_EQ(waited, (std::vector<std::string>{d2.key, d3.key}));
  const auto& queue = store.keys.at({"acme", "a", "k"}).waiting;
  ASSERT_EQ(queue.size(), 2u);
  EXPECT_EQ(queue[0].topic, retry_topic(0));
  EXPECT_EQ(queue[0].body, *d2.body);
  EXPECT_EQ(header_of(queue[0].headers, header::kDeliveryKey), d2.key);
  EXPECT_EQ(header_of(queue[0].headers, header::kAttempt), "0");
  EXPECT_EQ(header_of(queue[1].headers, header::kAttempt), "2") << "no attempt is spent waiting";
  EXPECT_EQ(store.leases_given_back, (std::vector<int64_t>{7, 7}));

  // The head succeeds: d2 is published to the first tier and becomes the head; d3 still waits.
  resolve(d1);
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, retry_topic(0));
  EXPECT_EQ(producer.sent[0].key, d2.key);
  EXPECT_EQ(producer.sent[0].value, *d2.body);
  EXPECT_EQ(order.head_of({"acme", "a", "k"}), d2.key);
  EXPECT_FALSE(order.must_wait(d2));
  EXPECT_TRUE(order.must_wait(d3));
  EXPECT_EQ(store.keys.at({"acme", "a", "k"}).waiting.size(), 2u)
      << "the row stays until the publish is acknowledged";
  producer.ack_all();
  order.poll(now);
  order.poll(now);
  EXPECT_EQ(store.keys.at({"acme", "a", "k"}).waiting.size(), 1u);

  // A delivery that is not the head finishing changes nothing.
  resolve(d3);
  EXPECT_EQ(producer.sent.size(), 1u);
  // d2 is dead-lettered: d3 is next; d3 succeeds: the key is free.
  resolve(d2);
  ASSERT_EQ(producer.sent.size(), 2u);
  EXPECT_EQ(producer.sent[1].key, d3.key);
  producer.ack_all();
  order.poll(now);
  order.poll(now);
  resolve(d3);
  EXPECT_TRUE(store.keys.empty());
  EXPECT_EQ(order.held_keys(), 0u);
  EXPECT_FALSE(order.must_wait(ordered("e9", "k")));
  EXPECT_TRUE(order.idle());
}

// A release Kafka keeps refusing (a message larger than the topic takes, an ACL) is tried again
// after 1 s, doubling to 60 s, and counted; after a fatal error a stop no longer waits for it (its
// row stays unconfirmed in Postgres for whoever looks next). The old key order tried it every
// second for good, and a stop waited its whole grace for it.
TEST_F(KeyOrderTest, AReleaseKafkaKeepsRefusingIsTriedLessOftenAndDoesNotHoldAFatalStop) {
  auto d1 = ordered("e1", "k"), d2 = ordered("e2", "k");
  fail(d1);
  wait(d2);
  resolve(d1);
  ASSERT_EQ(producer.sent.size(), 1u);
  // Kafka refuses every publish; ten minutes of polls, one every 100 ms.
  std::size_t answered = 0;
  std::vector<int64_t> tried_at{now};
  for (int64_t t = now; t <= now + 600'000; t += 100) {
    for (; answered < producer.sent.size(); ++answered) {
      std::exchange(producer.sent[answered].done, nullptr)(
          hookrelay::fail("kafka_msg_size_too_large", "Broker: Message size too large"));
    }
    const std::size_t before = producer.sent.size();
    order.poll(t);
    order.poll(t);
    if (producer.sent.size() > before) tried_at.push_back(t);
  }
  ASSERT_GE(tried_at.size(), 8u);
  EXPECT_LE(tried_at.size(), 17u) << "a publish a second would be about 600";
  std::vector<int64_t> gaps;
  for (std::size_t i = 1; i < tried_at.size(); ++i) gaps.push_back(tried_at[i] - tried_at[i - 1]);
  EXPECT_NEAR(static_cast<double>(gaps[0]), 1000, 200);
  EXPECT_NEAR(static_cast<double>(gaps[1]), 2000, 200);
  EXPECT_NEAR(static_cast<double>(gaps[2]), 4000, 200);
  EXPECT_NEAR(static_cast<double>(gaps.back()), 60'000, 200) << "the delay stops at 60 s";
  double counted = 0;
  for (const auto& f : registry.Collect()) {
    if (f.name == "hookrelay_ordered_release_publish_failures_total")
      counted = f.metric.at(0).counter.value;
  }
  EXPECT_EQ(counted, static_cast<double>(answered));
  for (; answered < producer.sent.size(); ++answered) {
    std::exchange(producer.sent[answered].done, nullptr)(hookrelay::fail("kafka_fatal", "fatal"));
  }
  order.poll(now + 600'000);
  EXPECT_FALSE(order.idle()) << "a refused publish is still to try";
  order.stop_republishing();
  EXPECT_TRUE(order.idle());
  const std::size_t sent = producer.sent.size();
  order.poll(now + 700'000);
  EXPECT_EQ(producer.sent.size(), sent) << "nothing published after stop_republishing()";
  EXPECT_EQ(store.keys.at({"acme", "a", "k"}).waiting.size(), 1u) << "the row stays in Postgres";
}

TEST_F(KeyOrderTest, AReleasedHeadFinishingBeforeItsPublishIsConfirmedIsNotPublishedAgain) {
  auto d1 = ordered("e1", "k"), d2 = ordered("e2", "k"), d3 = ordered("e3", "k");
  fail(d1);
  wait(d2);
  wait(d3);
  resolve(d1);
  ASSERT_EQ(producer.sent.size(), 1u);
  resolve(d2);  // delivered before the broker's ack came back
  ASSERT_EQ(producer.sent.size(), 2u);
  EXPECT_EQ(producer.sent[1].key, d3.key) << "d2 was published once; d3 is next";
}

TEST_F(KeyOrderTest, AHeadThatSucceedsWithNothingWaitingFreesTheKey) {
  auto d1 = ordered("e1", "k");
  fail(d1);
  resolve(d1);
  EXPECT_TRUE(producer.sent.empty());
  EXPECT_EQ(order.held_keys(), 0u);
  EXPECT_TRUE(store.keys.empty());
}

TEST_F(KeyOrderTest, ARefusedPublishIsPublishedAgainAfterADelay) {
  auto d1 = ordered("e1", "k"), d2 = ordered("e2", "k");
  fail(d1);
  wait(d2);
  resolve(d1);
  ASSERT_EQ(producer.sent.size(), 1u);
  std::exchange(producer.sent[0].done, nullptr)(Unexpected{Error{"kafka_down", "down", true}});
  order.poll(now);  // the refusal is seen
  order.poll(now + 999);
  EXPECT_EQ(producer.sent.size(), 1u) << "due a second after the refusal was seen";
  order.poll(now + 1000);
  ASSERT_EQ(producer.sent.size(), 2u);
  EXPECT_EQ(producer.sent[1].key, d2.key);
}

TEST(KeyOrderRefresh, KeysHeldBeforeAStartAreKeptAndAFinishedHeadReleasesTheNext) {
  FakeKeyOrderStore store;
  RecordingProducer producer;
  prometheus::Registry registry;
  // As a worker that stopped left them: k1's head still retries, k2's head succeeded long ago.
  store.keys[{"acme", "a", "k1"}] = {"wh:acme:e1:a", {}};
  WaitingDelivery w;
  w.key = {"acme", "a", "k2"};
  w.delivery_key = "wh:acme:e5:a";
  w.topic = retry_topic(0);
  w.id = 1;
  store.keys[{"acme", "a", "k2"}] = {"wh:acme:e4:a", {w}};
  store.done.insert("wh:acme:e4:a");
  KeyOrder order(store, producer, registry, [] {}, {.refresh_ms = 1000, .threaded = false});
  order.start();
  order.poll(0);
  EXPECT_TRUE(order.must_wait(ordered("e2", "k1")));
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].key, "wh:acme:e5:a");
  EXPECT_EQ(order.head_of({"acme", "a", "k2"}), "wh:acme:e5:a");
  // Another worker frees k1: the next refresh forgets it here.
  store.keys.erase({"acme", "a", "k1"});
  order.poll(1000);
  order.poll(1000);
  EXPECT_FALSE(order.must_wait(ordered("e2", "k1")));
  std::string text;
  for (const auto& family : registry.Collect()) {
    if (family.name == "hookrelay_ordered_waiting")
      text = std::to_string(family.metric.at(0).gauge.value);
  }
  EXPECT_EQ(text, std::to_string(1.0)) << "e5's row waits for its publish to be confirmed";
}

// A worker made e2 the head and stopped before its publish was confirmed (maybe before it was
// sent): whoever sees the row left there publishes e2 again; e3 waits until e2 is done.
TEST(KeyOrderRefresh, AHeadReleasedByAStoppedWorkerIsPublishedAgainNotSkipped) {
  FakeKeyOrderStore store;
  RecordingProducer producer;
  prometheus::Registry registry;
  const OrderKey k{"acme", "a", "k"};
  for (int i : {2, 3}) {
    WaitingDelivery w;
    w.key = k;
    w.delivery_key = "wh:acme:e" + std::to_string(i) + ":a";
    w.topic = retry_topic(0);
    w.body = "e" + std::to_string(i);
    w.id = i;
    store.keys[k].waiting.push_back(w);
  }
  store.keys[k].head = "wh:acme:e2:a";
  store.unconfirmed_long_ago = true;
  KeyOrder order(store, producer, registry, [] {}, {.refresh_ms = 1000, .threaded = false});
  order.start();
  order.poll(0);
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].key, "wh:acme:e2:a");
  EXPECT_EQ(producer.sent[0].value, "e2");
  EXPECT_EQ(order.head_of(k), "wh:acme:e2:a");
  EXPECT_TRUE(order.must_wait(ordered("e3", "k")));
  order.poll(1000);  // published, not yet confirmed: not published a third time
  EXPECT_EQ(producer.sent.size(), 1u);
  producer.ack_all();
  order.poll(1000);
  order.poll(1000);
  ASSERT_EQ(store.keys.at(k).waiting.size(), 1u) << "e2's row is gone once its publish is acked";
  order.poll(2000);
  EXPECT_EQ(producer.sent.size(), 1u);
  // e2 succeeds: e3 is released.
  order.resolved(ordered("e2", "k"));
  order.poll(2000);
  ASSERT_EQ(producer.sent.size(), 2u);
  EXPECT_EQ(producer.sent[1].key, "wh:acme:e3:a");
}

ConsumedMessage message(std::string key, std::vector<std::pair<std::string, std::string>> headers,
                        std::string body) {
  ConsumedMessage m;
  m.key = std::move(key);
  m.headers = std::move(headers);
  m.value = std::make_shared<const std::string>(std::move(body));
  return m;
}

TEST(OrderingKeyOf, KafkaKeyHeaderOrJsonPointer) {
  RouteConfig r;
  r.ordered = true;
  auto m = message("kafka-key", {{"hr-fwd-X-Tenant", "t1"}, {"hr-source", "acme"}},
                   R"({"customer":{"id":"c-9","n":42,"ok":true,"obj":{}},"list":[1]})");
  EXPECT_EQ(ordering_key_of(r, m), "kafka-key");
  r.ordering_key.from = OrderingKey::From::kHeader;
  r.ordering_key.header = "x-tenant";
  EXPECT_EQ(ordering_key_of(r, m), "t1") << "header names compare case-insensitively";
  r.ordering_key.header = "x-other";
  EXPECT_EQ(ordering_key_of(r, m), "");
  r.ordering_key.from = OrderingKey::From::kJsonPointer;
  auto pointer = [&](const std::string& p) {
    r.ordering_key.pointer = *parse_json_pointer(p);
    return ordering_key_of(r, m);
  };
  EXPECT_EQ(pointer("/customer/id"), "c-9");
  EXPECT_EQ(pointer("/customer/n"), "42");
  EXPECT_EQ(pointer("/customer/ok"), "true");
  EXPECT_EQ(pointer("/customer/obj"), "") << "an object is not a key";
  EXPECT_EQ(pointer("/list"), "");
  EXPECT_EQ(pointer("/missing"), "");
  m.value = std::make_shared<const std::string>("not json {");
  EXPECT_EQ(pointer("/customer/id"), "") << "a body that is not JSON has no key, and no crash";
}

// Keys Postgres could not store (its text primary key): bytes that are not UTF-8, a NUL, more than
// a btree row holds. The old worker passed them as they were, and every hold and wait of their
// deliveries failed: ordering was off for that key. They are kept as their SHA-256, still one
// per key.
TEST(OrderingKeyOf, AKeyPostgresCouldNotStoreIsItsSha256) {
  RouteConfig r;
  r.ordered = true;
  r.ordering_key.from = OrderingKey::From::kHeader;
  r.ordering_key.header = "x-tenant";
  auto key_of = [&](const std::string& value) {
    return ordering_key_of(r, message("k", {{"hr-fwd-X-Tenant", value}}, "{}"));
  };
  const std::string latin1 = "caf\xe9";
  const std::string nul("a\0b", 3);
  const std::string long_key(3000, 'k');
  for (const std::string& raw : {latin1, nul, long_key}) {
    const std::string k = key_of(raw);
    EXPECT_EQ(k, "sha256:" + hex_encode(sha256(raw)));
    EXPECT_TRUE(is_postgres_text(k));
  }
  EXPECT_NE(key_of(long_key), key_of(std::string(3000, 'j')));
  EXPECT_EQ(key_of("caf\xc3\xa9"), "caf\xc3\xa9") << "a UTF-8 key is kept as it is";
  EXPECT_EQ(key_of(std::string(1024, 'k')), std::string(1024, 'k'));
}

Result<Config> parse_route(const std::string& keys) {
  return parse_config(
      "sources: { g: { scheme: github, secrets: [s] } }\n"
      "routes:\n  g:\n    - { name: ci, url: \"http://h/\", " +
          keys + " }\n",
      [](const std::string&) -> std::optional<std::string> { return std::nullopt; });
}

TEST(OrderingKeyConfig, ParsedAndRefusalsNameTheField) {
  auto c = parse_route("ordered: true, ordering_key: { header: X-Tenant }");
  ASSERT_TRUE(c) << c.error().message;
  const auto& k = c->routes.at("g").at(0).ordering_key;
  EXPECT_EQ(k.from, OrderingKey::From::kHeader);
  EXPECT_EQ(k.header, "x-tenant");
  c = parse_route("ordered: true, ordering_key: { json_pointer: /customer/id }");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->routes.at("g").at(0).ordering_key.from, OrderingKey::From::kJsonPointer);
  EXPECT_EQ(c->routes.at("g").at(0).ordering_key.pointer.text, "/customer/id");
  c = parse_route("ordered: true");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->routes.at("g").at(0).ordering_key.from, OrderingKey::From::kKafkaKey);

  struct Bad {
    std::string keys, field;
  };
  for (const Bad& b : std::vector<Bad>{
           {"ordering_key: { header: X-Tenant }", "routes.g[0].ordering_key"},
           {"ordered: true, ordering_key: { header: X-T, json_pointer: /a }",
            "routes.g[0].ordering_key"},
           {"ordered: true, ordering_key: {}", "routes.g[0].ordering_key"},
           {"ordered: true, ordering_key: { column: x }", "routes.g[0].ordering_key"},
           {"ordered: true, ordering_key: { header: \"X Tenant\" }",
            "routes.g[0].ordering_key.header"},
           {"ordered: true, ordering_key: { json_pointer: \"a/b\" }",
            "routes.g[0].ordering_key.json_pointer"},
           {"ordered: true, ordering_key: { json_pointer: \"\" }",
            "routes.g[0].ordering_key.json_pointer"},
       }) {
    auto r = parse_route(b.keys);
    ASSERT_FALSE(r) << b.keys;
    EXPECT_NE(r.error().message.find(b.field), std::string::npos)
        << b.keys << ": " << r.error().message;
  }
}

// Another worker released the key's next delivery (d2) while this worker still had the old head
// (d1) in its view. d2's released message is read here: it is the head, so it is attempted, and
// this worker adopts it. The old worker set it to wait behind itself: nobody released it again,
// and the key was held for good.
TEST_F(KeyOrderTest, TheHeadItselfReadWithAnOldViewIsAttemptedNotSetToWait) {
  auto d1 = ordered("e1", "k"), d2 = ordered("e2", "k");
  const OrderKey k{"acme", "a", "k"};
  fail(d1);
  wait(d2);
  auto next = store.advance(k, d1.key);  // another worker: d1 succeeded there
  ASSERT_TRUE(next && next->next);
  ASSERT_TRUE(store.released(next->next->id));
  ASSERT_TRUE(order.must_wait(d2)) << "the test needs this worker's view to be old";
  std::vector<std::pair<std::string, bool>> back;
  order.wait(job_of(d2), [&back](std::unique_ptr<Job> j, bool waiting) {
    back.emplace_back(j->d.key, waiting);
  });
  order.poll(now);
  EXPECT_EQ(back, (std::vector<std::pair<std::string, bool>>{{d2.key, false}}))
      << "the head was set to wait behind itself";
  EXPECT_EQ(order.head_of(k), d2.key);
  EXPECT_TRUE(store.keys.at(k).waiting.empty());
}

// The same old view, mended by the next look at Postgres: the head another worker moved the key
// on to is adopted, and the worker is told (learned()) so that it sets that key's queued
// deliveries to wait. The old worker kept its own head for good.
TEST_F(KeyOrderTest, AHeadMovedOnByAnotherWorkerIsAdoptedAtTheNextRefresh) {
  auto d1 = ordered("e1", "k"), d2 = ordered("e2", "k"), d3 = ordered("e3", "k");
  const OrderKey k{"acme", "a", "k"};
  fail(d1);
  wait(d2);
  wait(d3);
  order.learned();
  auto next = store.advance(k, d1.key);
  ASSERT_TRUE(next && next->next);
  now += 1'000'000;
  order.poll(now);  // the refresh goes out
  order.poll(now);  // and its answer is merged
  EXPECT_EQ(order.head_of(k), d2.key);
  EXPECT_TRUE(order.learned());
  EXPECT_FALSE(order.learned()) << "told once";
  EXPECT_TRUE(order.must_wait(d3));
  EXPECT_FALSE(order.must_wait(d2));
}

// Another worker held the key first (d9 its head), unseen here yet: this worker's failed d1
// takes the key in its own view, but Postgres keeps the other head. That head is adopted and d1
// goes to `lost`, to wait behind it. The old worker took d1 for the head as well: two heads,
// each worker releasing the key's next delivery when its own finished.
TEST_F(KeyOrderTest, AHoldLostToAnotherWorkersHeadAdoptsThatHead) {
  auto d1 = ordered("e1", "k"), d2 = ordered("e2", "k");
  const OrderKey k{"acme", "a", "k"};
  store.keys[k] = {"wh:acme:e9:a", {}};
  fail(d1);
  EXPECT_TRUE(held.empty());
  EXPECT_EQ(lost, std::vector<std::string>{d1.key});
  EXPECT_EQ(order.head_of(k), "wh:acme:e9:a");
  ASSERT_EQ(store.keys.at(k).waiting.size(), 1u);
  EXPECT_EQ(store.keys.at(k).waiting[0].delivery_key, d1.key) << "d1 waits behind that head";
  EXPECT_TRUE(order.must_wait(d1));
  EXPECT_TRUE(order.must_wait(d2));
  EXPECT_TRUE(order.learned());
}

// Another worker moved the key on (d1 finished there; d2 is its head now), unseen here: a copy of
// d1 read here again is found done, and this worker's advance from d1 finds another head. The
// key is still held, by d2: d3 must wait. The old worker took "no next" for "the key is free",
// forgot the key, and sent d3 at once, beside d2, until its next refresh.
TEST_F(KeyOrderTest, AnAdvanceThatFindsAnotherHeadKeepsTheKeyHeldByIt) {
  auto d1 = ordered("e1", "k"), d2 = ordered("e2", "k"), d3 = ordered("e3", "k");
  const OrderKey k{"acme", "a", "k"};
  fail(d1);
  wait(d2);
  order.learned();
  auto moved = store.advance(k, d1.key);  // elsewhere
  ASSERT_TRUE(moved && moved->next);
  resolve(d1);
  EXPECT_EQ(order.held_keys(), 1u);
  EXPECT_EQ(order.head_of(k), d2.key);
  EXPECT_TRUE(order.must_wait(d3)) << "a delivery of the key was let go beside its head";
  EXPECT_FALSE(order.must_wait(d2));
  EXPECT_TRUE(order.learned());
  EXPECT_TRUE(producer.sent.empty()) << "released d2 a second time";
}

}  // namespace
}  // namespace hookrelay
