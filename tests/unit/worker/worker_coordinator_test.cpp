// The coordinator with fakes behind every I/O boundary: offsets, retries, dead letters,
// idempotent skips, Postgres outages and retry-tier pauses, step by step.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "shared/ascii.h"
#include "shared/kafka/wire_contract.h"
#include "tests/unit/worker/fake_route_store.h"
#include "worker/worker.h"

namespace hookrelay {
namespace {

class FakeConsumer : public MessageConsumer {
 public:
  void set_listener(ConsumerListener l) override { listener = std::move(l); }
  // Like Kafka, a paused partition's messages stay in the log until it is resumed.
  std::vector<ConsumedMessage> poll(int max, int) override {
    std::vector<ConsumedMessage> out;
    for (auto it = queue.begin(); it != queue.end() && static_cast<int>(out.size()) < max;) {
      if (paused.count({it->topic, it->partition})) {
        ++it;
        continue;
      }
      out.push_back(*it);
      it = queue.erase(it);
    }
    if (on_poll && !out.empty()) on_poll();
    return out;
  }
  void wake() override { ++wakes; }
  std::function<void()> on_poll;  // called by a poll that returns messages, before it returns
  bool pause(const TopicPartition& tp, int64_t seek) override {
    pauses.push_back({tp, seek});
    if (fail_seek) return false;  // not paused: fetching goes on after what poll() returned
    paused.insert(tp);
    return true;
  }
  void hold(const std::vector<TopicPartition>& tps) override {
    for (const auto& tp : tps) {
      holds.push_back(tp);
      if (!leak_after_hold) paused.insert(tp);
    }
  }
  void resume(const TopicPartition& tp) override {
    resumes.push_back(tp);
    paused.erase(tp);
  }
  void store_offsets(const std::vector<CommitPosition>& p) override {
    for (const auto& c : p) stored[c.tp] = c.offset;
  }
  Result<void> commit() override { return {}; }
  std::vector<TopicPartition> assignment() override { return assigned; }
  std::map<std::string, int64_t> lag_by_topic() override { return lags; }
  void close() override {}
  void assign(std::vector<TopicPartition> tps) {
    assigned = tps;
    listener.on_assigned(tps);
  }

  ConsumerListener listener;
  std::deque<ConsumedMessage> queue;
  std::vector<TopicPartition> assigned;
  std::vector<std::pair<TopicPartition, int64_t>> pauses;
  std::vector<TopicPartition> resumes;
  std::vector<TopicPartition> holds;
  bool leak_after_hold =
      false;               // a hold that has not taken effect yet: poll still returns messages
  bool fail_seek = false;  // pause()'s seek fails
  std::set<TopicPartition> paused;
  std::map<TopicPartition, int64_t> stored;
  std::map<std::string, int64_t> lags;  // what lag_by_topic() answers
  std::atomic<int> wakes{0};
};

class FakeProducer : public MessageProducer {
 public:
  struct Sent {
    std::string topic, key, value;
    std::vector<MessageHeader> headers;
    std::string header(std::string_view n) const {
      for (const auto& h : headers) {
        if (h.name == n) return h.value;
      }
      return "";
    }
  };
  void produce(const OutgoingMessage& m, DoneCallback done) override {
    if (auto r = refuse_topic.find(std::string(m.topic)); r != refuse_topic.end()) {
      refused.push_back(
          {std::string(m.topic), std::string(m.key), std::string(m.value), *m.headers});
      done(Unexpected{r->second});
      return;
    }
    sent.push_back({std::string(m.topic), std::string(m.key), std::string(m.value), *m.headers});
    done(ProducedAt{0, static_cast<int64_t>(sent.size())});
  }
  bool reachable() const override { return true; }
  int outstanding() const override { return 0; }
  std::vector<Sent> sent;
  std::vector<Sent> refused;
  std::map<std::string, Error> refuse_topic;  // every produce to the topic fails with the error
};

class FakeSender : public HttpSender {
 public:
  void send(HttpCall call, Done done) override {
    calls.push_back(call);
    HttpResult r;
    r.status = 200;
    if (!script.empty()) {
      r = script.front();
      script.pop_front();
    }
    if (hold) {
      held.push_back([done, r] { done(r); });
    } else {
      done(r);
    }
  }
  std::vector<HttpCall> calls;
  std::deque<HttpResult> script;
  bool hold = false;
  std::vector<std::function<void()>> held;
};

// Keeps DeliveryStore's contract in memory: a claim is exclusive per attempt (a lease held by
// this run of the worker is not taken again), a record moves the state only under its claim's
// token (or as the first success), and "succeeded" is final. Leases never expire here. Safe to
// call from the worker's Postgres lanes; `gate_claims` makes a claim wait, after deciding,
// until `open_gate()`.
class FakeStore : public DeliveryStore {
 public:
  struct Lease {
    std::string owner;
    int64_t token = 0;
  };
  Result<std::vector<ClaimStatus>> claim(const std::vector<DeliveryRef>& refs,
                                         const std::string& worker, int) override {
    std::unique_lock lock(mu);
    if (down) return fail("db_unavailable", "down", true);
    ++claim_calls;
    for (const auto& r : refs) {
      if (refuse_claims.count(r.key))
        return fail("db_error", "claim: value too long for type (22001)", false);
    }
    std::vector<ClaimStatus> out;
    for (const auto& r : refs) {
      auto& s = state[r.key];
      auto& l = lease[r.key];
      bool earlier_run = l.owner == worker && (l.token >> 32) != (r.lease_token >> 32);
      auto& f = fence_of[r.key];
      if (s == "succeeded") {
        out.push_back(ClaimStatus::kAlreadySucceeded);
      } else if (s == "dead") {
        out.push_back(ClaimStatus::kAlreadyDead);
      } else if (r.attempts_made < f) {
        out.push_back(ClaimStatus::kSuperseded);
      } else if (l.token != 0 && l.token != r.lease_token && !earlier_run) {
        out.push_back(ClaimStatus::kLeasedElsewhere);
      } else {
        s = "in_flight";
        l = {worker, r.lease_token};
        f = r.attempts_made;
        out.push_back(ClaimStatus::kClaimed);
      }
    }
    if (gate_claims) {
      claim_waiting = true;
      changed.notify_all();
      changed.wait(lock, [this] { return !gate_claims; });
      claim_waiting = false;
    }
    return out;
  }
  Result<std::vector<std::string>> record(const std::vector<AttemptRecord>& records,
                                          const std::string&) override {
    std::lock_guard lock(mu);
    std::vector<std::string> unparked;
    if (down) return fail("db_unavailable", "down", true);
    ++record_calls;
    for (const auto& r : records) {
      if (auto it = refuse_records.find(r.key); it != refuse_records.end() && it->second > 0) {
        --it->second;
        return fail("db_error", "record: invalid byte sequence (22021)", false);
      }
    }
    for (auto r : records) {
      auto& s = state[r.key];
      auto& l = lease[r.key];
      bool holds = l.token == r.lease_token;
      if (s != "succeeded" && (holds || r.next_state == "succeeded")) {
        s = r.next_state;
        // As route_states would say: the park's suspension ended by a resume.
        if (r.next_state == "parked" && r.park_suspended_at_ms > 0 &&
            resumed_routes.count(r.park_source + "/" + r.park_route)) {
          s = "retrying";
          unparked.push_back(r.key);
        }
        if (holds || r.next_state == "succeeded" || r.next_state == "dead") l = {};
      } else if (r.outcome == "succeeded") {
        r.outcome = "duplicate_success";
      }
      attempts.push_back(r);
    }
    return unparked;
  }
  Result<int> record_inbound(const std::vector<InboundEventRecord>& e) override {
    std::lock_guard lock(mu);
    if (down) return fail("db_unavailable", "down", true);
    for (const auto& r : e) inbound.push_back(r.source + "/" + r.event_id);
    return static_cast<int>(e.size());
  }
  // Gives a lease back only while the claim the ref names holds it, as the real store does.
  Result<void> release(const std::vector<LeaseRef>& leases, const std::string& worker) override {
    std::lock_guard lock(mu);
    for (const auto& r : leases) {
      auto& l = lease[r.key];
      if (l.owner == worker && l.token == r.lease_token) l = {};
      released.push_back(r.key);
    }
    return {};
  }
  // Raises fences as the real store does (never on a finished delivery, never down).
  Result<void> fence(const std::vector<CopyFence>& fences) override {
    std::lock_guard lock(mu);
    for (const auto& f : fences) {
      fenced.push_back(f);
      auto& s = state[f.key];
      if (s != "succeeded" && s != "dead")
        fence_of[f.key] = std::max(fence_of[f.key], f.attempts_made);
    }
    return {};
  }
  void open_gate() {
    std::lock_guard lock(mu);
    gate_claims = false;
    changed.notify_all();
  }
  std::mutex mu;
  std::condition_variable changed;
  bool gate_claims = false;
  bool claim_waiting = false;
  bool down = false;
  int claim_calls = 0;
  int record_calls = 0;
  std::set<std::string> refuse_claims;        // a batch with one of these keys is refused for good
  std::map<std::string, int> refuse_records;  // a batch with this key is refused this many times
  std::map<std::string, std::string> state;
  std::map<std::string, Lease> lease;
  std::vector<std::string> released;    // keys whose leases release() was asked to give back
  std::vector<std::string> inbound;     // source/event id of each audited event
  std::map<std::string, int> fence_of;  // each delivery's newest copy's attempts (its fence)
  std::vector<CopyFence> fenced;        // what fence() was asked
  std::vector<AttemptRecord> attempts;
  std::set<std::string> resumed_routes;  // "source/route" resumed since any park's suspension
};

HttpResult status(int code, std::optional<std::string> retry_after = std::nullopt) {
  HttpResult r;
  r.status = code;
  r.retry_after = std::move(retry_after);
  return r;
}

class WorkerCoordinator : public ::testing::Test {
 protected:
  WorkerCoordinator() {
    auto c = parse_config(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes:
  gh:
    - { name: a, url: "http://127.0.0.1:9/a" }
retry: { schedule_seconds: [5, 30, 120], max_attempts: 3 }
)",
                          [](const std::string&) { return std::nullopt; });
    EXPECT_TRUE(c) << c.error().message;
    config = *c;
    worker = std::make_unique<Worker>(deps(consumer));
    consumer.assign({{std::string(kWebhooksTopic), 0}, {retry_topic(0), 0}});
    consumer.resumes.clear();  // assignment resumes whatever librdkafka kept paused
  }

  WorkerDeps deps(FakeConsumer& c) {
    // The clock stands still between steps: Postgres batches go at once (store_batcher_test
    // covers how they gather).
    config.worker.store_batching = {.min_batch = 1, .max_wait_ms = 0};
    WorkerDeps d;
    d.config = &config;
    d.consumer = &c;
    d.producer = &producer;
    d.sender = &sender;
    d.store = &store;
    d.metrics = &metrics;
    d.now_ms = [this] { return clock ? clock() : now; };
    d.steady_ms = [this] { return steady ? steady() : clock ? clock() : now; };
    d.rand01 = [] { return 0.5; };
    d.worker_id = "w1";
    return d;
  }

  void webhook(int64_t offset, const std::string& event_id,
               std::string topic = std::string(kWebhooksTopic),
               std::vector<std::pair<std::string, std::string>> extra = {}) {
    ConsumedMessage m;
    m.topic = std::move(topic);
    m.partition = 0;
    m.offset = offset;
    m.value = std::make_shared<const std::string>("{\"e\":\"" + event_id + "\"}");
    m.headers = {{"hr-kind", "webhook"},
                 {"hr-source", "gh"},
                 {"hr-event-id", event_id},
                 {"hr-received-at", std::to_string(now)}};
    for (auto& h : extra) m.headers.push_back(h);
    consumer.queue.push_back(m);
  }

  // A message of route a's first retry tier, due at `due`, read by `own` instead of the
  // fixture's consumer.
  void retry_message(FakeConsumer& own, int64_t offset, const std::string& event_id, int64_t due,
                     const std::string& attempt = "1") {
    webhook(offset, event_id, retry_topic(0),
            {{"hr-attempt", attempt}, {"hr-route", "a"}, {"hr-due-at", std::to_string(due)}});
    own.queue.push_back(consumer.queue.back());
    consumer.queue.pop_back();
  }

  // Enough iterations for one message to go all the way: claim, call, record, re-publish,
  // each handing its result to the next iteration as an event.
  // Webhook `id` of route a, read while another worker holds its lease: bounced, and its retry
  // refused for good by Kafka (too large for the tier's topic).
  void bounce_held_elsewhere(const std::string& id) {
    producer.refuse_topic[retry_topic(0)] =
        Error{"message_too_large", "Broker: Message size too large", false};
    const std::string key = "wh:gh:" + id + ":a";
    store.state[key] = "in_flight";
    store.lease[key] = {"other-worker", 99};
    webhook(0, id);
    steps(12);
  }
  void steps(int n = 8) {
    for (int i = 0; i < n; ++i) worker->step();
  }

  int64_t stored(const std::string& topic = std::string(kWebhooksTopic)) {
    auto it = consumer.stored.find({topic, 0});
    return it == consumer.stored.end() ? -1 : it->second;
  }

  // From here on the workers' clock goes with real time, from `now`: a drain's grace runs out.
  void real_clock() {
    const int64_t base = now;
    const auto start = std::chrono::steady_clock::now();
    clock = [base, start] {
      return base + std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    };
  }

  int64_t now = 1'700'000'000'000;
  std::function<int64_t()> clock;   // when set, the workers' clock instead of `now`
  std::function<int64_t()> steady;  // when set, their steady clock instead of the above
  int64_t steady_now = 0;           // for a `steady` of a test's own
  Config config;
  prometheus::Registry registry;
  WorkerMetrics metrics{registry, 3};
  FakeConsumer consumer;
  FakeProducer producer;
  FakeSender sender;
  FakeStore store;
  std::unique_ptr<Worker> worker;
};

TEST_F(WorkerCoordinator, SuccessRecordsAndStoresTheNextOffset) {
  webhook(0, "e1");
  steps();
  ASSERT_EQ(sender.calls.size(), 1u);
  EXPECT_EQ(sender.calls[0].url, "http://127.0.0.1:9/a");
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
  EXPECT_EQ(stored(), 1);
  EXPECT_EQ(worker->in_flight(), 0);
}

// Route lifecycle: the deliveries of a suspended route are parked (recorded 'parked', published
// to hookrelay.parked, never attempted nor dead-lettered); the other routes of the same events
// keep flowing.
class WorkerRoutes : public WorkerCoordinator {
 protected:
  WorkerRoutes() {
    auto c = parse_config(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes:
  gh:
    - { name: a, url: "http://127.0.0.1:9/a" }
    - { name: b, url: "http://127.0.0.1:9/b" }
retry: { schedule_seconds: [5, 30, 120], max_attempts: 3 }
)",
                          [](const std::string&) { return std::nullopt; });
    EXPECT_TRUE(c) << c.error().message;
    worker.reset();
    config = *c;
    auto d = deps(consumer);
    d.routes = &routes;
    worker = std::make_unique<Worker>(d);
    consumer.assign({{std::string(kWebhooksTopic), 0}, {retry_topic(0), 0}});
  }
  ~WorkerRoutes() override { worker.reset(); }

  std::vector<FakeProducer::Sent> parked() const {
    std::vector<FakeProducer::Sent> out;
    for (const auto& m : producer.sent) {
      if (m.topic == kParkedTopic) out.push_back(m);
    }
    return out;
  }

  FakeRouteStore route_store;
  RouteSync routes{route_store, metrics, [this] { return now; }, {.worker_id = "w1"}};
};

TEST_F(WorkerRoutes, ASuspendedRoutesDeliveriesAreParkedAndTheOtherRouteIsDelivered) {
  route_store.row("gh", "a").state = "suspended";
  ASSERT_TRUE(routes.sync());
  webhook(0, "e1");
  steps();
  ASSERT_EQ(sender.calls.size(), 1u);
  EXPECT_EQ(sender.calls[0].url, "http://127.0.0.1:9/b");
  EXPECT_EQ(store.state["wh:gh:e1:b"], "succeeded");
  EXPECT_EQ(store.state["wh:gh:e1:a"], "parked");
  ASSERT_EQ(parked().size(), 1u);
  EXPECT_EQ(parked()[0].key, "wh:gh:e1:a");
  EXPECT_EQ(parked()[0].header("hr-delivery-key"), "wh:gh:e1:a");
  EXPECT_EQ(parked()[0].header("hr-route"), "a");
  EXPECT_EQ(parked()[0].value, "{\"e\":\"e1\"}");
  bool audited = false;
  for (const auto& r : store.attempts) {
    if (r.key != "wh:gh:e1:a") continue;
    audited = true;
    EXPECT_EQ(r.outcome, "parked");
    EXPECT_EQ(r.attempt, 0) << "no attempt was made";
  }
  EXPECT_TRUE(audited);
  EXPECT_EQ(stored(), 1) << "a parked delivery finishes its message";
  EXPECT_EQ(worker->in_flight(), 0);
}

TEST_F(WorkerRoutes, A410SuspendsTheRouteParksItAndTheNextEventsWithoutACall) {
  sender.script = {status(410), status(200)};
  webhook(0, "e1");
  steps();
  ASSERT_EQ(sender.calls.size(), 2u);
  EXPECT_TRUE(routes.suspended("gh", "a"));
  EXPECT_EQ(store.state["wh:gh:e1:a"], "parked") << "a 410 is parked, not dead";
  EXPECT_EQ(store.state["wh:gh:e1:b"], "succeeded");
  webhook(1, "e2");
  webhook(2, "e3");
  steps();
  ASSERT_EQ(sender.calls.size(), 4u) << "only route b is called";
  EXPECT_EQ(sender.calls[2].url, "http://127.0.0.1:9/b");
  EXPECT_EQ(sender.calls[3].url, "http://127.0.0.1:9/b");
  EXPECT_EQ(parked().size(), 3u);
  for (const auto& m : producer.sent) EXPECT_NE(m.topic, kDlqTopic);
  EXPECT_EQ(stored(), 3);
  ASSERT_TRUE(routes.sync());
  EXPECT_EQ(route_store.row("gh", "a").state, "suspended");
}

TEST_F(WorkerRoutes, QueuedDeliveriesOfARouteSuspendedMeanwhileAreParkedUnsent) {
  sender.hold = true;
  config.worker.per_host_max_in_flight = 1;  // one call out; the rest wait in the dispatcher
  auto d = deps(consumer);
  d.routes = &routes;
  worker.reset();
  worker = std::make_unique<Worker>(d);
  consumer.assign({{std::string(kWebhooksTopic), 0}});
  webhook(0, "e1");
  webhook(1, "e2");
  steps();
  ASSERT_EQ(sender.calls.size(), 1u);
  route_store.row("gh", "a").state = "suspended";
  ASSERT_TRUE(routes.sync());
  steps();
  for (auto& done : sender.held) done();
  sender.held.clear();
  sender.hold = false;
  steps(16);
  for (std::size_t i = 1; i < sender.calls.size(); ++i) {
    EXPECT_NE(sender.calls[i].url, "http://127.0.0.1:9/a")
        << "a queued delivery of route a was sent";
  }
  EXPECT_EQ(store.state["wh:gh:e2:a"], "parked");
  EXPECT_EQ(store.state["wh:gh:e2:b"], "succeeded");
  EXPECT_EQ(stored(), 2);
}

// A resume this worker has not read yet: its park decision stands (no call), but the store finds
// the suspension it was decided under ended and records the delivery 'retrying' instead; the
// worker publishes it to the first retry tier, not to hookrelay.parked, where a release that has
// already listed the route's parks would never look for it.
TEST_F(WorkerRoutes, AParkRecordedAfterTheRoutesResumeGoesToTheFirstRetryTierInstead) {
  route_store.row("gh", "a").state = "suspended";
  route_store.row("gh", "a").suspended_at_ms = 1'700'000'000'000;
  ASSERT_TRUE(routes.sync());
  store.resumed_routes = {"gh/a"};
  webhook(0, "e1");
  steps();
  ASSERT_EQ(sender.calls.size(), 1u);
  EXPECT_EQ(sender.calls[0].url, "http://127.0.0.1:9/b");
  EXPECT_EQ(store.state["wh:gh:e1:a"], "retrying");
  EXPECT_TRUE(parked().empty());
  std::vector<FakeProducer::Sent> retries;
  for (const auto& m : producer.sent) {
    if (m.topic == retry_topic(0)) retries.push_back(m);
  }
  ASSERT_EQ(retries.size(), 1u);
  EXPECT_EQ(retries[0].key, "wh:gh:e1:a");
  EXPECT_EQ(retries[0].header("hr-attempt"), "0") << "no attempt was made";
  EXPECT_EQ(retries[0].header("hr-due-at"), "") << "due at once";
  bool carried = false;
  for (const auto& r : store.attempts) {
    if (r.key != "wh:gh:e1:a") continue;
    carried = true;
    EXPECT_EQ(r.park_source, "gh");
    EXPECT_EQ(r.park_route, "a");
    EXPECT_EQ(r.park_suspended_at_ms, 1'700'000'000'000);
  }
  EXPECT_TRUE(carried);
  EXPECT_EQ(stored(), 1);
  EXPECT_EQ(worker->in_flight(), 0);

  // Taken from the tier once this worker has read the resume: attempted.
  route_store.row("gh", "a").state = "active";
  ASSERT_TRUE(routes.sync());
  ConsumedMessage retry;
  retry.topic = retry_topic(0);
  retry.offset = 0;
  retry.value = std::make_shared<const std::string>(retries[0].value);
  for (const auto& h : retries[0].headers) retry.headers.emplace_back(h.name, h.value);
  consumer.queue.push_back(retry);
  steps();
  ASSERT_EQ(sender.calls.size(), 2u);
  EXPECT_EQ(sender.calls[1].url, "http://127.0.0.1:9/a");
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
}

// hookrelay.parked refuses a park for good: the delivery is recorded dead, then dead-lettered,
// so Postgres does not keep it parked while its message is only in the DLQ.
TEST_F(WorkerRoutes, AParkKafkaRefusesForGoodIsRecordedDeadThenDeadLettered) {
  producer.refuse_topic[std::string(kParkedTopic)] =
      Error{"message_too_large", "Broker: Message size too large", false};
  route_store.row("gh", "a").state = "suspended";
  ASSERT_TRUE(routes.sync());
  webhook(0, "e1");
  steps(12);
  EXPECT_EQ(store.state["wh:gh:e1:a"], "dead");
  std::vector<std::string> topics;
  for (const auto& m : producer.sent) {
    if (m.key == "wh:gh:e1:a") topics.push_back(m.topic);
  }
  EXPECT_EQ(topics, std::vector<std::string>{std::string(kDlqTopic)});
  for (const auto& r : store.attempts) {
    if (r.key == "wh:gh:e1:a") {
      EXPECT_EQ(r.attempt, 0) << "no attempt was made";
    }
  }
  EXPECT_EQ(stored(), 1);
}

// Parks that carry no suspension stand whatever the store says of the route: one after this
// worker's own 410 (Postgres does not have that suspension yet, so a resume found there is an
// older one) and one of an ordered route (its release keeps the key's order).
TEST_F(WorkerRoutes, AParkAfterThisWorkersOwn410OrOfAnOrderedRouteStandsWhateverTheStoreSays) {
  store.resumed_routes = {"gh/a"};
  sender.script = {status(410), status(200)};
  webhook(0, "e1");
  steps();
  EXPECT_EQ(store.state["wh:gh:e1:a"], "parked");
  ASSERT_EQ(parked().size(), 1u);

  auto c = parse_config(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes:
  gh:
    - { name: a, url: "http://127.0.0.1:9/a", ordered: true, ordering_key: { json_pointer: /e } }
retry: { schedule_seconds: [5, 30, 120], max_attempts: 3 }
)",
                        [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(c) << c.error().message;
  worker.reset();
  config = *c;
  route_store.row("gh", "a").state = "suspended";
  route_store.row("gh", "a").suspended_at_ms = 1'700'000'000'000;
  ASSERT_TRUE(routes.sync());
  auto d = deps(consumer);
  d.routes = &routes;
  worker = std::make_unique<Worker>(d);
  consumer.assign({{std::string(kWebhooksTopic), 0}});
  webhook(1, "e2");
  steps();
  EXPECT_EQ(store.state["wh:gh:e2:a"], "parked");
  EXPECT_EQ(parked().size(), 2u);
  for (const auto& r : store.attempts) EXPECT_EQ(r.park_suspended_at_ms, 0) << r.key;
}

// Value of a counter or gauge series with one label, or -1 when the series does not exist.
double labelled(prometheus::Registry& registry, const std::string& name, const std::string& label,
                const std::string& value) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      for (const auto& l : m.label) {
        if (l.name == label && l.value == value)
          return family.type == prometheus::MetricType::Gauge ? m.gauge.value : m.counter.value;
      }
    }
  }
  return -1;
}

TEST_F(WorkerCoordinator, ConsumerErrorsAreCountedAsConsumerErrors) {
  consumer.listener.on_error("broker_down");
  consumer.listener.on_error("broker_down");
  EXPECT_EQ(labelled(registry, "hookrelay_kafka_consumer_errors_total", "code", "broker_down"), 2);
  EXPECT_LE(labelled(registry, "hookrelay_kafka_producer_errors_total", "code", "broker_down"), 0);
}

// A rebalance took every partition of a topic from this worker: its lag series goes to 0 (the new
// owner reports that lag now). The old worker kept exporting its last value for as long as it
// ran, and the group's sum counted it twice.
TEST_F(WorkerCoordinator, TheLagOfATopicNoLongerHeldGoesToZero) {
  const std::string webhooks(kWebhooksTopic);
  consumer.lags = {{webhooks, 40}, {retry_topic(0), 3}};
  steps(1);
  EXPECT_EQ(labelled(registry, "hookrelay_worker_consumer_lag", "topic", webhooks), 40);
  consumer.assigned = {{retry_topic(0), 0}};
  consumer.listener.on_revoked({{webhooks, 0}});
  consumer.lags = {{retry_topic(0), 2}};
  now += 1000;
  steps(1);
  EXPECT_EQ(labelled(registry, "hookrelay_worker_consumer_lag", "topic", webhooks), 0);
  EXPECT_EQ(labelled(registry, "hookrelay_worker_consumer_lag", "topic", retry_topic(0)), 2);
  consumer.lags = {};  // held, but its watermarks could not be read: the last value stands
  now += 1000;
  steps(1);
  EXPECT_EQ(labelled(registry, "hookrelay_worker_consumer_lag", "topic", retry_topic(0)), 2);
}

TEST_F(WorkerCoordinator, OffsetsWaitForTheLowestUnfinishedMessage) {
  sender.hold = true;
  webhook(0, "e1");
  webhook(1, "e2");
  steps();
  ASSERT_EQ(sender.held.size(), 2u);
  sender.held[1]();  // the second finishes first
  steps();
  EXPECT_EQ(stored(), -1) << "offset 1 stored while offset 0 is unfinished";
  sender.held[0]();
  steps();
  EXPECT_EQ(stored(), 2);
}

TEST_F(WorkerCoordinator, RetryableFailureGoesToATierAfterBeingRecorded) {
  sender.script = {status(503)};
  webhook(0, "e1");
  steps();
  ASSERT_EQ(producer.sent.size(), 1u);
  const auto& m = producer.sent[0];
  EXPECT_EQ(m.topic.rfind("hookrelay.retry.", 0), 0u);
  EXPECT_EQ(m.key, "wh:gh:e1:a");
  EXPECT_EQ(m.header("hr-attempt"), "1");
  EXPECT_EQ(m.header("hr-route"), "a");
  EXPECT_EQ(m.header("hr-last-status"), "503");
  EXPECT_FALSE(m.header("hr-due-at").empty());
  EXPECT_EQ(m.value, "{\"e\":\"e1\"}");
  EXPECT_EQ(store.state["wh:gh:e1:a"], "retrying");
  EXPECT_EQ(stored(), 1);
}

// Once Kafka has a delivery's retry, copies with fewer attempts are stale: the fence says so.
// A dead letter raises none.
TEST_F(WorkerCoordinator, AnAcknowledgedRetryRaisesItsDeliverysFence) {
  sender.script = {status(503), status(400)};
  webhook(0, "e1");
  webhook(1, "e2");
  steps();
  ASSERT_EQ(producer.sent.size(), 2u);
  ASSERT_EQ(store.fenced.size(), 1u);
  EXPECT_EQ(store.fenced[0].key, "wh:gh:e1:a");
  EXPECT_EQ(store.fenced[0].attempts_made, 1) << "the retry's hr-attempt";
}

// A partition read again from its committed offset (a rebalance, a restart) gives back copies
// whose delivery has moved on: here the first copy, after its attempt failed and its retry (due
// in 5 s) was published. Claimed, it was attempted at once and started a second retry chain.
TEST_F(WorkerCoordinator, ACopyReadAgainAfterItsRetryWasPublishedIsNotAttemptedAgain) {
  sender.script = {status(503), status(200)};
  webhook(0, "e1");
  steps();
  ASSERT_EQ(sender.calls.size(), 1u);
  ASSERT_EQ(producer.sent.size(), 1u);
  webhook(1, "e1");  // the same message, read again
  steps();
  EXPECT_EQ(sender.calls.size(), 1u) << "the stale copy was attempted ahead of its retry";
  EXPECT_EQ(producer.sent.size(), 1u) << "the stale copy started a second retry chain";
  EXPECT_EQ(store.state["wh:gh:e1:a"], "retrying");
  EXPECT_EQ(stored(), 2) << "the stale copy is finished";
  EXPECT_EQ(labelled(registry, "hookrelay_worker_idempotent_skips_total", "reason", "superseded"),
            1);
  // The retry itself is attempted when due.
  webhook(0, "e1", retry_topic(0),
          {{"hr-attempt", producer.sent[0].header("hr-attempt")},
           {"hr-route", "a"},
           {"hr-due-at", std::to_string(now - 1)}});
  steps();
  EXPECT_EQ(sender.calls.size(), 2u);
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
}

// The same copy read in the very step the retry's acknowledgement is taken: the fence goes to
// the claim lane ahead of that step's claims (it went after them, and the copy was attempted).
TEST_F(WorkerCoordinator, ACopyReadInTheStepItsRetryIsAcknowledgedIsNotAttemptedAgain) {
  sender.script = {status(503)};
  webhook(0, "e1");
  for (int i = 0; i < 20 && producer.sent.empty(); ++i) worker->step();
  ASSERT_EQ(producer.sent.size(), 1u);
  ASSERT_TRUE(store.fenced.empty()) << "the acknowledgement is taken in the next step";
  webhook(1, "e1");  // read again, taken in that step
  steps();
  EXPECT_EQ(sender.calls.size(), 1u) << "the stale copy was attempted ahead of its retry";
  EXPECT_EQ(labelled(registry, "hookrelay_worker_idempotent_skips_total", "reason", "superseded"),
            1);
}

TEST_F(WorkerCoordinator, PermanentFailureIsDeadLettered) {
  sender.script = {status(400)};
  webhook(0, "e1");
  steps();
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, kDlqTopic);
  EXPECT_EQ(producer.sent[0].header("hr-dlq-reason"), "permanent");
  EXPECT_EQ(producer.sent[0].header("hr-origin-topic"), kWebhooksTopic);
  EXPECT_EQ(store.state["wh:gh:e1:a"], "dead");
}

TEST_F(WorkerCoordinator, LastAttemptIsDeadLetteredAsExhausted) {
  sender.script = {status(500)};
  webhook(0, "e1", retry_topic(0),
          {{"hr-attempt", "2"}, {"hr-route", "a"}, {"hr-due-at", std::to_string(now - 1)}});
  steps();
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, kDlqTopic);
  EXPECT_EQ(producer.sent[0].header("hr-dlq-reason"), "max_attempts");
  EXPECT_EQ(producer.sent[0].header("hr-attempt"), "3");
}

// A retry whose route is no longer configured: no call, recorded dead in Postgres with the
// attempts made so far (so the DLQ listings and `dlq replay` find it), then dead-lettered.
// A first copy of a source this worker's config does not know (ingest has a newer config) is not
// finished without a trace, as "no route takes it" would be: it is audited and dead-lettered
// whole, as unknown_source, for `dlq replay --unknown-sources` once the config knows the source.
TEST_F(WorkerCoordinator, AFirstCopyOfASourceTheConfigDoesNotKnowIsDeadLetteredWhole) {
  webhook(0, "e1", std::string(kWebhooksTopic), {{"x-extra", "kept"}});
  for (auto& h : consumer.queue.back().headers) {
    if (h.first == "hr-source") h.second = "newsrc";
  }
  steps(12);
  EXPECT_TRUE(sender.calls.empty());
  ASSERT_EQ(producer.sent.size(), 1u);
  const auto& dead = producer.sent[0];
  EXPECT_EQ(dead.topic, kDlqTopic);
  EXPECT_EQ(dead.header("hr-dlq-reason"), "unknown_source");
  EXPECT_EQ(dead.header("hr-source"), "newsrc");
  EXPECT_EQ(dead.header("hr-event-id"), "e1");
  EXPECT_EQ(dead.header("hr-origin-topic"), kWebhooksTopic);
  EXPECT_EQ(dead.header("x-extra"), "kept");
  EXPECT_EQ(dead.value, "{\"e\":\"e1\"}");
  EXPECT_NE(dead.header("hr-last-error").find("source 'newsrc' is not in this worker's"),
            std::string::npos);
  EXPECT_EQ(store.inbound, (std::vector<std::string>{"newsrc/e1"}));
  EXPECT_EQ(stored(), 1) << "its dead letter acknowledged, the message is finished";
}

TEST_F(WorkerCoordinator, ARetryOfARemovedRouteIsRecordedDeadThenDeadLettered) {
  webhook(0, "e1", retry_topic(0),
          {{"hr-attempt", "2"}, {"hr-route", "gone"}, {"hr-due-at", std::to_string(now - 1)}});
  steps();
  EXPECT_TRUE(sender.calls.empty());
  EXPECT_EQ(store.state["wh:gh:e1:gone"], "dead");
  ASSERT_EQ(store.attempts.size(), 1u);
  EXPECT_EQ(store.attempts[0].attempt, 2) << "no attempt was made: the two made so far";
  EXPECT_EQ(store.attempts[0].outcome, "permanent");
  EXPECT_NE(store.attempts[0].error.find("no longer configured"), std::string::npos);
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, kDlqTopic);
  EXPECT_EQ(producer.sent[0].header("hr-dlq-reason"), "unknown_route");
  EXPECT_EQ(stored(retry_topic(0)), 1);
}

TEST_F(WorkerCoordinator, AlreadySucceededIsSkippedWithoutACall) {
  store.state["wh:gh:e1:a"] = "succeeded";
  webhook(0, "e1");
  steps();
  EXPECT_TRUE(sender.calls.empty());
  EXPECT_EQ(stored(), 1);
}

// A worker that stopped between recording a delivery dead and publishing its dead letter leaves
// the message to be replayed: the successor publishes the dead letter, without a call, so
// Postgres and the DLQ topic agree.
TEST_F(WorkerCoordinator, AlreadyDeadIsDeadLetteredAgainWithoutACall) {
  store.state["wh:gh:e1:a"] = "dead";
  webhook(0, "e1");
  steps();
  EXPECT_TRUE(sender.calls.empty());
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, kDlqTopic);
  EXPECT_EQ(producer.sent[0].header("hr-dlq-reason"), "republished");
  EXPECT_EQ(producer.sent[0].value, "{\"e\":\"e1\"}");
  EXPECT_EQ(store.state["wh:gh:e1:a"], "dead");
  EXPECT_EQ(stored(), 1) << "the offset moves once the dead letter is acknowledged";
}

TEST_F(WorkerCoordinator, SameDeliveryTwiceInOneBatchIsCalledOnce) {
  sender.hold = true;
  webhook(0, "e1");
  webhook(1, "e1");
  steps();
  EXPECT_EQ(sender.calls.size(), 1u);
  ASSERT_EQ(producer.sent.size(), 1u) << "the duplicate should be bounced to a retry tier";
  EXPECT_EQ(producer.sent[0].header("hr-attempt"), "0");
}

// The interleaving that made one live worker send a delivery twice: two copies of one retry
// message (a replay after a failed offset commit). The second copy's claim is decided while the
// first attempt is in flight, and its answer reaches the worker only after the first attempt's
// success was recorded and its key released (claims and records run on separate connections).
// A claim is exclusive per attempt, so the second copy's claim is refused and it is bounced,
// never sent again.
TEST_F(WorkerCoordinator, SecondCopyClaimedDuringTheFirstAttemptIsNotSentAgain) {
  FakeConsumer own;
  WorkerDeps d = deps(own);
  d.threaded_db = true;  // claims and records on their own threads, as in production
  Worker w(d);
  const TopicPartition tier{retry_topic(0), 0};
  own.assign({tier});
  auto copy = [&](int64_t offset, const std::string& attempt) {
    retry_message(own, offset, "e1", now - 1, attempt);
  };
  auto step_until = [&](const std::function<bool()>& done) {
    for (int i = 0; i < 5000 && !done(); ++i) {
      w.step();
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return done();
  };
  auto with_store = [&](const std::function<bool()>& f) {
    return [&, f] {
      std::lock_guard lock(store.mu);
      return f();
    };
  };

  sender.hold = true;
  copy(0, "1");
  ASSERT_TRUE(step_until([&] { return sender.calls.size() == 1; }));
  {
    std::lock_guard lock(store.mu);
    store.gate_claims = true;
  }
  copy(1, "2");
  ASSERT_TRUE(
      step_until(with_store([&] { return store.claim_waiting; })));  // decided, not answered

  auto held = std::move(sender.held);  // the first attempt answers 200 ...
  sender.held.clear();
  sender.hold = false;
  for (auto& answer : held) answer();
  // ... and is recorded and finished before the second claim's answer arrives.
  ASSERT_TRUE(step_until([&] { return own.stored.count(tier) && own.stored[tier] == 1; }));
  store.open_gate();
  ASSERT_TRUE(step_until([&] { return own.stored[tier] == 2; }));

  EXPECT_EQ(sender.calls.size(), 1u) << "one live worker sent one delivery twice";
  ASSERT_EQ(producer.sent.size(), 1u) << "the second copy should be bounced to a retry tier";
  EXPECT_EQ(producer.sent[0].topic, retry_topic(0));
  std::lock_guard lock(store.mu);
  ASSERT_EQ(store.attempts.size(), 1u);
  EXPECT_EQ(store.attempts[0].outcome, "succeeded");
}

TEST_F(WorkerCoordinator, PostgresDownPausesAndResumesWithoutSkipping) {
  store.down = true;
  webhook(0, "e1");
  steps();
  EXPECT_TRUE(sender.calls.empty());
  EXPECT_FALSE(consumer.holds.empty());
  EXPECT_TRUE(consumer.pauses.empty()) << "a hold must not seek";
  EXPECT_FALSE(worker->ready());
  EXPECT_EQ(stored(), -1);
  store.down = false;
  now += 2000;
  steps();
  EXPECT_EQ(sender.calls.size(), 1u);
  EXPECT_FALSE(consumer.resumes.empty());
  EXPECT_EQ(stored(), 1);
  EXPECT_TRUE(worker->ready());
}

TEST_F(WorkerCoordinator, ResultsWaitForPostgresBeforeTheOffsetMoves) {
  sender.hold = true;
  webhook(0, "e1");
  steps();
  store.down = true;
  sender.held[0]();
  steps();
  EXPECT_EQ(stored(), -1);
  store.down = false;
  now += 2000;
  steps();
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
  EXPECT_EQ(stored(), 1);
}

// Full jitter leaves due times out of order within a tier partition: a message due later must
// not hold back the ones behind it that are already due, and the offset must not pass it.
TEST_F(WorkerCoordinator, RetryTierMessageNotDueWaitsWhileLaterDueOnesAreTaken) {
  webhook(7, "e1", retry_topic(0),
          {{"hr-attempt", "1"}, {"hr-route", "a"}, {"hr-due-at", std::to_string(now + 5000)}});
  webhook(8, "e2", retry_topic(0),
          {{"hr-attempt", "1"}, {"hr-route", "a"}, {"hr-due-at", std::to_string(now - 1)}});
  webhook(9, "e3", retry_topic(0),
          {{"hr-attempt", "1"}, {"hr-route", "a"}, {"hr-due-at", std::to_string(now + 2000)}});
  steps();
  EXPECT_TRUE(consumer.pauses.empty()) << "a look-ahead with room must not pause the partition";
  ASSERT_EQ(sender.calls.size(), 1u);
  EXPECT_EQ(store.state["wh:gh:e2:a"], "succeeded");
  EXPECT_EQ(stored(retry_topic(0)), -1) << "the offset passed a retry still waiting";
  now += 2000;
  steps();
  ASSERT_EQ(sender.calls.size(), 2u) << "the message due second was not taken on time";
  EXPECT_EQ(store.state["wh:gh:e3:a"], "succeeded");
  EXPECT_EQ(store.state.count("wh:gh:e1:a"), 0u) << "taken before its due time";
  now += 3000;
  steps();
  ASSERT_EQ(sender.calls.size(), 3u);
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
  EXPECT_EQ(store.attempts.back().attempt, 2);
  EXPECT_EQ(stored(retry_topic(0)), 10);
}

TEST_F(WorkerCoordinator, FullRetryLookAheadPausesThePartitionUntilItsMessageIsDue) {
  config.worker.max_in_flight = 2;  // a look-ahead of one message
  FakeConsumer own;
  Worker w(deps(own));
  own.assign({{retry_topic(0), 0}});
  own.resumes.clear();  // assignment resumes whatever librdkafka kept paused
  auto feed = [&](int64_t offset, const std::string& id, int64_t due) {
    retry_message(own, offset, id, due);
  };
  auto run = [&] {
    for (int i = 0; i < 8; ++i) w.step();
  };
  feed(7, "e1", now + 5000);
  feed(8, "e2", now + 3000);
  run();
  EXPECT_TRUE(sender.calls.empty());
  ASSERT_EQ(own.pauses.size(), 1u);
  EXPECT_EQ(own.pauses[0].second, 8) << "must seek back to the message that found no room";
  now += 3001;
  run();
  ASSERT_EQ(own.resumes.size(), 1u);
  feed(8, "e2", now - 1);  // read again after the seek
  run();
  ASSERT_EQ(sender.calls.size(), 1u);
  EXPECT_EQ(store.state["wh:gh:e2:a"], "succeeded");
  now += 2000;
  run();
  ASSERT_EQ(sender.calls.size(), 2u);
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
  EXPECT_EQ(own.stored[(TopicPartition{retry_topic(0), 0})], 9);
  EXPECT_EQ(labelled(registry, "hookrelay_worker_messages_consumed_total", "topic", retry_topic(0)),
            2)
      << "the message fetched again after the seek back was counted twice";
}

// As above, but the seek back fails: the message would never be fetched again, so it is kept
// over the look-ahead's limit and delivered when due, and the offset never passes it before. The
// old worker dropped it, and every later message the same poll returned, and committed past them.
TEST_F(WorkerCoordinator, AFullRetryLookAheadWhoseSeekFailsKeepsTheMessage) {
  config.worker.max_in_flight = 2;  // a look-ahead of one message
  FakeConsumer own;
  own.fail_seek = true;
  Worker w(deps(own));
  own.assign({{retry_topic(0), 0}});
  auto feed = [&](int64_t offset, const std::string& id, int64_t due) {
    retry_message(own, offset, id, due);
  };
  auto run = [&] {
    for (int i = 0; i < 8; ++i) w.step();
  };
  feed(7, "e1", now + 5000);
  feed(8, "e2", now + 3000);
  feed(9, "e3", now + 4000);
  run();
  EXPECT_TRUE(sender.calls.empty());
  EXPECT_EQ(own.pauses.size(), 1u) << "sought again in the same poll after a failed seek";
  EXPECT_EQ(labelled(registry, "hookrelay_kafka_consumer_errors_total", "code", "seek_failed"), 1);
  const TopicPartition tier{retry_topic(0), 0};
  EXPECT_TRUE(own.stored.find(tier) == own.stored.end() || own.stored[tier] <= 7);
  now += 5001;
  run();
  EXPECT_EQ(sender.calls.size(), 3u) << "a message whose seek failed was dropped";
  EXPECT_EQ(own.stored[tier], 10);
}

// The seek back of a full look-ahead reported a failure (a timeout), so the message was kept and
// reading went on; the seek then landed and librdkafka read the partition again from that
// message. Those are taken already: not a rewind of the log, nothing is taken twice.
TEST_F(WorkerCoordinator, ASeekReportedFailedThatLandsLaterTakesNothingTwice) {
  config.worker.max_in_flight = 2;  // a look-ahead of one message
  FakeConsumer own;
  own.fail_seek = true;
  Worker w(deps(own));
  own.assign({{retry_topic(0), 0}});
  auto run = [&] {
    for (int i = 0; i < 8; ++i) w.step();
  };
  retry_message(own, 7, "e1", now + 5000);
  retry_message(own, 8, "e2", now + 3000);
  retry_message(own, 9, "e3", now - 1);
  run();
  ASSERT_EQ(sender.calls.size(), 1u);
  retry_message(own, 8, "e2", now + 3000);  // the seek to offset 8 landed
  retry_message(own, 9, "e3", now - 1);
  run();
  EXPECT_EQ(sender.calls.size(), 1u) << "a message taken before was taken again";
  EXPECT_EQ(
      labelled(registry, "hookrelay_kafka_consumer_errors_total", "code", "partition_rewound"), -1);
  now += 5001;
  run();
  EXPECT_EQ(sender.calls.size(), 3u);
  EXPECT_EQ(own.stored[(TopicPartition{retry_topic(0), 0})], 10);
}

TEST_F(WorkerCoordinator, RetriesWaitingInARevokedPartitionAreDropped) {
  webhook(7, "e1", retry_topic(0),
          {{"hr-attempt", "1"}, {"hr-route", "a"}, {"hr-due-at", std::to_string(now + 5000)}});
  steps();
  consumer.listener.on_revoked({{retry_topic(0), 0}});
  now += 5001;
  steps();
  EXPECT_TRUE(sender.calls.empty()) << "a revoked partition's waiting retry was still taken";
}

TEST_F(WorkerCoordinator, RevokedPartitionFinishesDoNotMoveTheNextAssignment) {
  sender.hold = true;
  webhook(0, "e1");
  steps();
  consumer.listener.on_revoked({{std::string(kWebhooksTopic), 0}});
  consumer.assign({{std::string(kWebhooksTopic), 0}});
  webhook(0, "e1b");  // replayed by the new assignment
  steps();
  sender.held[0]();  // the old attempt finishes
  steps();
  EXPECT_EQ(stored(), -1) << "a finish from before the revoke marked the replayed offset done";
}

// The partition's log went back under the consumer (an unclean leader election truncated it, or
// the topic was created again) and librdkafka's offset reset reads it from its start: what is
// there now is new. The old worker skipped every offset it had tracked before as "seen", so the
// webhooks accepted after the rewind were never delivered and later commits passed them.
TEST_F(WorkerCoordinator, MessagesAtOffsetsThePartitionHadBeforeItsLogWentBackAreDelivered) {
  sender.hold = true;
  webhook(0, "e1");
  webhook(1, "e2");
  steps();
  ASSERT_EQ(sender.held.size(), 2u);
  webhook(0, "n1");  // the log after the rewind
  webhook(1, "n2");
  steps();
  ASSERT_EQ(sender.calls.size(), 4u) << "messages at offsets seen before the rewind were skipped";
  EXPECT_EQ(
      labelled(registry, "hookrelay_kafka_consumer_errors_total", "code", "partition_rewound"), 1);
  EXPECT_EQ(stored(), 0) << "the position before the rewind, past the new log's end, could be "
                            "committed and the next owner would skip the new messages";
  sender.held[0]();  // e1, offset 0 before the rewind
  sender.held[1]();
  steps();
  EXPECT_EQ(stored(), 0) << "a finish from before the rewind marked the new offset 0 done";
  sender.held[2]();
  sender.held[3]();
  steps();
  for (const char* k : {"wh:gh:e1:a", "wh:gh:e2:a", "wh:gh:n1:a", "wh:gh:n2:a"})
    EXPECT_EQ(store.state[k], "succeeded") << k;
  EXPECT_EQ(stored(), 2);
}

// As above on a retry tier, with a retry from before the rewind still waiting for its due time
// at the offset a new retry now has: both are delivered, each in its own generation.
TEST_F(WorkerCoordinator, ARetryWaitingFromBeforeTheRewindIsDeliveredBesideTheNewOne) {
  const TopicPartition tier{retry_topic(0), 0};
  retry_message(consumer, 7, "old", now + 5000);
  steps();
  retry_message(consumer, 5, "n1", now - 1);  // the tier's log after the rewind
  retry_message(consumer, 7, "n2", now + 5000);
  steps();
  ASSERT_EQ(sender.calls.size(), 1u);
  EXPECT_EQ(store.state["wh:gh:n1:a"], "succeeded");
  EXPECT_EQ(consumer.stored.count(tier) ? consumer.stored[tier] : -1, 7)
      << "the new generation's watermark must stop at its retry waiting at offset 7";
  now += 5001;
  steps();
  ASSERT_EQ(sender.calls.size(), 3u) << "one of the two retries at offset 7 was dropped";
  EXPECT_EQ(store.state["wh:gh:old:a"], "succeeded");
  EXPECT_EQ(store.state["wh:gh:n2:a"], "succeeded");
  EXPECT_EQ(consumer.stored[tier], 8);
}

TEST_F(WorkerCoordinator, OrderedRouteMakesFirstAttemptsOneAtATimeInOffsetOrder) {
  auto c = parse_config(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes:
  gh:
    - { name: a, url: "http://127.0.0.1:9/a", ordered: true }
)",
                        [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(c);
  config = *c;
  FakeConsumer ordered_consumer;
  Worker w(deps(ordered_consumer));
  ordered_consumer.assign({{std::string(kWebhooksTopic), 0}});
  sender.hold = true;
  for (int i = 0; i < 3; ++i) {
    webhook(i, "e" + std::to_string(i));
    ordered_consumer.queue.push_back(consumer.queue.back());
  }
  for (int i = 0; i < 8; ++i) w.step();
  ASSERT_EQ(sender.calls.size(), 1u) << "an ordered route had two first attempts in flight";
  sender.held[0]();
  for (int i = 0; i < 8; ++i) w.step();
  ASSERT_EQ(sender.calls.size(), 2u);
  sender.held[1]();
  for (int i = 0; i < 8; ++i) w.step();
  ASSERT_EQ(sender.calls.size(), 3u);
  sender.held[2]();
  for (int i = 0; i < 8; ++i) w.step();
  std::vector<std::string> order;
  for (const auto& a : store.attempts) order.push_back(a.key);
  EXPECT_EQ(order, (std::vector<std::string>{"wh:gh:e0:a", "wh:gh:e1:a", "wh:gh:e2:a"}));
}

TEST_F(WorkerCoordinator, AtMaxInFlightMessagesWaitWithoutPausingAndAreDeliveredInOrder) {
  config.worker.max_in_flight = 2;
  config.worker.batch_size = 2;
  sender.hold = true;
  for (int i = 0; i < 6; ++i) webhook(i, "e" + std::to_string(i));
  steps();
  EXPECT_EQ(sender.calls.size(), 2u) << "more than max_in_flight deliveries started";
  EXPECT_TRUE(consumer.pauses.empty());
  EXPECT_TRUE(consumer.holds.empty()) << "capacity must not pause fetching: resuming is slow";
  EXPECT_FALSE(consumer.queue.empty()) << "a full backlog must leave messages to the consumer";
  for (int round = 0; round < 3; ++round) {
    std::size_t started = sender.held.size();
    for (std::size_t i = started - 2; i < started; ++i) sender.held[i]();
    steps();
  }
  ASSERT_EQ(sender.calls.size(), 6u);
  std::vector<std::string> order;
  for (const auto& a : store.attempts) order.push_back(a.key);
  EXPECT_EQ(order, (std::vector<std::string>{"wh:gh:e0:a", "wh:gh:e1:a", "wh:gh:e2:a", "wh:gh:e3:a",
                                             "wh:gh:e4:a", "wh:gh:e5:a"}));
  EXPECT_EQ(stored(), 6);
}

// A backlog that stays full (every call held) takes one message a poll to serve the group: 10 a
// second, each kept with its body. Past its hard bound (its bound, a batch and 50) the partition
// is held instead, and released once the backlog drains; nothing is lost or reordered.
TEST_F(WorkerCoordinator, AFullBacklogIsBoundedByHoldingItsPartitions) {
  config.worker.max_in_flight = 2;  // backlog bound 1, hard bound 1 + 1 + 50
  config.worker.batch_size = 1;
  sender.hold = true;
  for (int i = 0; i < 200; ++i) webhook(i, "e" + std::to_string(i));
  for (int round = 0; round < 200; ++round) {  // 20 s of polls with nothing finishing
    now += 100;
    worker->step();
  }
  EXPECT_EQ(sender.calls.size(), 2u);
  EXPECT_GE(consumer.queue.size(), 200u - 2 - 52)
      << "the backlog took " << 200 - 2 - consumer.queue.size() << " messages";
  EXPECT_FALSE(consumer.holds.empty()) << "the partition was not held";
  // A partition assigned while the backlog is held (a rebalance) is held with the rest.
  const TopicPartition added{std::string(kWebhooksTopic), 1};
  consumer.assigned.push_back(added);
  consumer.listener.on_assigned({added});
  EXPECT_TRUE(consumer.paused.count(added)) << "a partition assigned during the hold was fetched";
  // Everything finishes: the backlog drains, the partition is resumed, all 200 are delivered in
  // order.
  for (int round = 0; round < 2000 && sender.calls.size() < 200; ++round) {
    for (auto& done : sender.held) {
      if (done) std::exchange(done, nullptr)();
    }
    now += 100;
    steps(2);
  }
  for (auto& done : sender.held) {
    if (done) std::exchange(done, nullptr)();
  }
  steps();
  ASSERT_EQ(sender.calls.size(), 200u);
  EXPECT_FALSE(consumer.resumes.empty());
  for (std::size_t i = 0; i < 200; ++i)
    EXPECT_EQ(store.attempts.at(i).key, "wh:gh:e" + std::to_string(i) + ":a") << i;
  EXPECT_EQ(stored(), 200);
}

// librdkafka resumes a held partition after the last message poll() returned, so a message
// returned after the hold (Postgres down) must be kept and delivered, in order, afterwards.
TEST_F(WorkerCoordinator, MessagesReturnedAfterAHoldAreKeptAndDeliveredInOrder) {
  consumer.leak_after_hold = true;
  store.down = true;
  webhook(0, "e0");
  steps();
  EXPECT_FALSE(consumer.holds.empty());
  for (int i = 1; i < 3; ++i) webhook(i, "e" + std::to_string(i));
  steps();
  EXPECT_TRUE(consumer.queue.empty()) << "the test needs poll to return messages after the hold";
  EXPECT_TRUE(sender.calls.empty());
  store.down = false;
  now += 2000;
  steps();
  ASSERT_EQ(sender.calls.size(), 3u);
  std::vector<std::string> order;
  for (const auto& a : store.attempts) order.push_back(a.key);
  EXPECT_EQ(order, (std::vector<std::string>{"wh:gh:e0:a", "wh:gh:e1:a", "wh:gh:e2:a"}));
  EXPECT_TRUE(consumer.pauses.empty()) << "a hold must not seek";
  EXPECT_EQ(stored(), 3);
}

// Value of a counter without labels, or -1 when it does not exist.
double unlabelled_counter(prometheus::Registry& registry, const std::string& name) {
  for (const auto& family : registry.Collect()) {
    if (family.name == name && family.metric.size() == 1) return family.metric[0].counter.value;
  }
  return -1;
}

// A second worker, `w` on consumer `own`, made by start_own() once a fixture has changed the
// config it is built with (the fixture's `worker` keeps the defaults).
class OwnWorkerCoordinator : public WorkerCoordinator {
 protected:
  void start_own() {
    w = std::make_unique<Worker>(deps(own));
    own.assign({{std::string(kWebhooksTopic), 0}});
  }
  void feed(int64_t offset, const std::string& id) {
    webhook(offset, id);
    own.queue.push_back(consumer.queue.back());
    consumer.queue.pop_back();
  }
  void run() {
    for (int i = 0; i < 8; ++i) w->step();
  }
  // e1's call is out, held; e2 waits behind it for the host's one slot (per_host_max_in_flight 1).
  void e2_waits_behind_e1() {
    sender.hold = true;
    feed(0, "e1");
    feed(1, "e2");
    run();
    ASSERT_EQ(sender.calls.size(), 1u) << "one slot for the host";
  }
  int64_t stored_webhooks() { return own.stored[(TopicPartition{std::string(kWebhooksTopic), 0})]; }

  FakeConsumer own;
  std::unique_ptr<Worker> w;
};

// A stop requested while the consumer's poll is out (where the worker waits most of the time):
// the step that took the poll's messages ends there, and its audit of an event no route takes
// (finished at once, its offset committed at the stop) is still written. The old drain never
// sent the audit queued for claims to come, and the event's row was lost.
TEST_F(OwnWorkerCoordinator, TheAuditOfAnEventTakenAsTheStopCameIsWritten) {
  auto c = parse_config(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes:
  gh:
    - { name: a, url: "http://127.0.0.1:9/a", filter: { header: { X-E: ["yes"] } } }
retry: { schedule_seconds: [5, 30, 120], max_attempts: 3 }
)",
                        [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(c) << c.error().message;
  config = *c;
  start_own();
  own.on_poll = [this] { w->request_stop(); };
  feed(0, "e1");
  config.worker.shutdown_grace_ms = 2'000;
  real_clock();
  w->run();
  EXPECT_TRUE(sender.calls.empty());
  EXPECT_EQ(store.inbound, std::vector<std::string>{"gh/e1"}) << "its audit row was lost";
  EXPECT_EQ(stored_webhooks(), 1);
}

// A worker of its own whose breaker opens after two failures and cools down for 20 s; open()
// makes two calls to 127.0.0.1:9 fail.
class CircuitCoordinator : public OwnWorkerCoordinator {
 protected:
  CircuitCoordinator() {
    config.worker.breaker_failure_threshold = 2;
    config.worker.breaker_cooldown_ms = 20'000;
    start_own();
  }
  void open() {
    sender.script = {status(503), status(503)};
    feed(0, "e1");
    feed(1, "e2");
    run();
    ASSERT_EQ(sender.calls.size(), 2u);
    producer.sent.clear();
  }
};

TEST_F(CircuitCoordinator, OpenCircuitDefersUntilItTurnsHalfOpenWithoutACallOrAnAttempt) {
  ASSERT_NO_FATAL_FAILURE(open());
  const int64_t opened_at = now;
  now += 5'000;
  feed(2, "e3");
  run();
  EXPECT_EQ(sender.calls.size(), 2u) << "called a host whose circuit is open";
  ASSERT_EQ(producer.sent.size(), 1u);
  // Due when the circuit turns half-open, or within a cooldown after (spread: see below).
  const int64_t due = std::stoll(producer.sent[0].header("hr-due-at"));
  EXPECT_GE(due, opened_at + 20'000) << "due before the circuit turns half-open";
  EXPECT_LT(due, opened_at + 40'000);
  EXPECT_EQ(producer.sent[0].topic, due - now <= 30'000 ? retry_topic(1) : retry_topic(2))
      << "waits in the tier that covers the rest of the cool-down and its spread";
  EXPECT_EQ(producer.sent[0].header("hr-attempt"), "0") << "a deferral must not spend an attempt";
  EXPECT_EQ(stored_webhooks(), 3);
  EXPECT_EQ(unlabelled_counter(registry, "hookrelay_worker_circuit_deferrals_total"), 1);
  EXPECT_EQ(store.released, std::vector<std::string>{"wh:gh:e3:a"})
      << "a deferral keeps its lease, and its claim when it comes back is refused";
  EXPECT_EQ(store.lease["wh:gh:e3:a"].token, 0) << "the release named another claim's token";
}

// The deliveries deferred during one open spell come back spread over the cooldown after the
// circuit turns half-open, not all at that moment, where one probe goes out and the rest wait in
// the worker for its answer, filling its max_in_flight and holding every other host back. The
// old worker gave each of them the half-open moment itself.
TEST_F(CircuitCoordinator, DeferralsOfOneOpenSpellComeBackSpreadOverTheCooldown) {
  // A random source that varies, in case the worker hands its own to the dispatcher.
  w.reset();
  auto d = deps(own);
  d.rand01 = [n = 0]() mutable { return static_cast<double>(n++ % 20) / 20.0; };
  w = std::make_unique<Worker>(d);
  own.assign({{std::string(kWebhooksTopic), 0}});
  ASSERT_NO_FATAL_FAILURE(open());
  const int64_t half_open_at = now + 20'000;
  now += 5'000;
  for (int i = 0; i < 20; ++i) feed(2 + i, "d" + std::to_string(i));
  run();
  EXPECT_EQ(sender.calls.size(), 2u) << "called a host whose circuit is open";
  ASSERT_EQ(producer.sent.size(), 20u);
  std::set<int64_t> due;
  for (const auto& m : producer.sent) {
    const int64_t at = std::stoll(m.header("hr-due-at"));
    EXPECT_GE(at, half_open_at) << "due before the circuit turns half-open";
    EXPECT_LT(at, half_open_at + 20'000) << "due past a cooldown after it";
    EXPECT_EQ(m.header("hr-attempt"), "0");
    due.insert(at);
  }
  EXPECT_GT(due.size(), 1u) << "every deferral of the open spell is due at one moment";
}

// The wall clock stepped back an hour (an NTP correction) while the circuit is open: it turns
// half-open after its cooldown on the steady clock. A deferral meanwhile waits the rest of the
// cooldown, due in Unix ms. The old worker ran the breaker on the wall clock: the circuit stayed
// open an hour more, and each deferral computed an hour left to wait (dead-lettered as max_age
// when that was past it).
TEST_F(CircuitCoordinator, AWallClockSteppedBackDoesNotKeepTheCircuitOpen) {
  steady_now = 1'000'000;
  steady = [this] { return steady_now; };
  ASSERT_NO_FATAL_FAILURE(open());
  now -= 3'600'000;
  steady_now += 5'000;
  feed(2, "e3");
  run();
  EXPECT_EQ(sender.calls.size(), 2u) << "called a host whose circuit is open";
  ASSERT_EQ(producer.sent.size(), 1u);
  const int64_t due = std::stoll(producer.sent[0].header("hr-due-at"));
  EXPECT_GE(due, now + 15'000);
  EXPECT_LT(due, now + 35'000) << "the rest of the cooldown on the steady clock, and its spread";
  now += 15'000;
  steady_now += 15'000;
  feed(3, "e4");
  run();
  ASSERT_EQ(sender.calls.size(), 3u) << "no probe once the cooldown passed on the steady clock";
  EXPECT_EQ(store.state["wh:gh:e4:a"], "succeeded");
}

// A deferral whose retry message is acknowledged while the worker drains for a stop gives its
// lease back, as it would while running. The old drain kept it, so the retry was refused as
// leased elsewhere and bounced again when it came back, until the lease ran out.
TEST_F(CircuitCoordinator, ADeferralAcknowledgedWhileDrainingGivesItsLeaseBack) {
  ASSERT_NO_FATAL_FAILURE(open());
  now += 5'000;
  feed(2, "e3");
  for (int i = 0; i < 8 && producer.sent.empty(); ++i) w->step();
  ASSERT_EQ(producer.sent.size(), 1u) << "not deferred";
  ASSERT_TRUE(store.released.empty()) << "the acknowledgement was taken before the stop";
  config.worker.shutdown_grace_ms = 200;
  const int64_t base = now;
  const auto start = std::chrono::steady_clock::now();
  clock = [&] {
    return base + std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  };
  w->request_stop();
  w->run();
  EXPECT_EQ(store.released, std::vector<std::string>{"wh:gh:e3:a"});
}

// A host that stays down ends its deliveries at max_age without a call. One that dies so, unsent
// under its own claim, is recorded dead before its dead letter is produced, so `dlq list` and
// `dlq replay` find it. The old worker produced the dead letter and gave the lease back, and
// Postgres kept the delivery in_flight for good.
class ShortLivedCircuitCoordinator : public OwnWorkerCoordinator {
 protected:
  ShortLivedCircuitCoordinator() {
    config.worker.breaker_failure_threshold = 2;
    config.worker.breaker_cooldown_ms = 20'000;
    config.retry.max_age_seconds = 10;
    start_own();
  }
};

TEST_F(ShortLivedCircuitCoordinator, ADeliveryHeldByAnOpenCircuitUntilMaxAgeIsRecordedDead) {
  sender.script = {status(503), status(503)};
  feed(0, "e1");
  feed(1, "e2");
  run();
  ASSERT_EQ(sender.calls.size(), 2u);
  producer.sent.clear();
  now += 5'000;
  feed(2, "e3");  // 15 s of cool-down left, 10 s of age: dies at once
  run();
  EXPECT_EQ(sender.calls.size(), 2u) << "called a host whose circuit is open";
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, kDlqTopic);
  EXPECT_EQ(store.state["wh:gh:e3:a"], "dead") << "dead-lettered while Postgres has it in flight";
  bool recorded = false;
  for (const auto& r : store.attempts) {
    if (r.key != "wh:gh:e3:a") continue;
    recorded = true;
    EXPECT_EQ(r.attempt, 0) << "no attempt was made";
    EXPECT_NE(r.lease_token, 0) << "recorded under the lease it held";
  }
  EXPECT_TRUE(recorded);
  EXPECT_TRUE(store.released.empty()) << "the record gave the lease back";
  EXPECT_EQ(stored_webhooks(), 3);
}

// A claimed delivery waiting for its host's only slot while its lease runs: once the lease no
// longer covers its call (20 s lease, 10 s route timeout: 10 s after the claim), it is not sent
// (another worker may claim it once the lease ends), but goes back to the first retry tier
// without an attempt, and its lease is given back.
class LeaseCoordinator : public OwnWorkerCoordinator {
 protected:
  LeaseCoordinator() {
    config.worker.per_host_max_in_flight = 1;
    config.worker.claim_lease_seconds = 20;
    start_own();
  }
};

TEST_F(LeaseCoordinator, ADeliveryThatWaitedUntilItsLeaseNoLongerCoversTheCallIsNotSent) {
  ASSERT_NO_FATAL_FAILURE(e2_waits_behind_e1());
  now += 7'000;
  run();
  EXPECT_EQ(sender.calls.size(), 1u);
  EXPECT_TRUE(producer.sent.empty())
      << "13 s of its lease left cover a 10 s call and 2 s to record it: it waits";
  now += 2'000;
  run();
  EXPECT_EQ(sender.calls.size(), 1u) << "sent with less of its lease left than its timeout";
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, retry_topic(0));
  EXPECT_EQ(producer.sent[0].header("hr-event-id"), "e2");
  EXPECT_EQ(producer.sent[0].header("hr-attempt"), "0") << "no attempt was made";
  EXPECT_EQ(unlabelled_counter(registry, "hookrelay_worker_lease_requeues_total"), 1);
  EXPECT_EQ(store.released, std::vector<std::string>{"wh:gh:e2:a"});
  for (auto& answer : sender.held) answer();
  run();
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
  EXPECT_EQ(stored_webhooks(), 2);
}

// The wall clock stepped back (an NTP correction) while a claimed delivery waited for its host:
// the lease is counted on a clock that never steps, so the call still is not started once the
// lease no longer covers it. The old worker compared the wall clock, and would have sent it a
// minute after its lease ended, when another worker may have claimed it.
TEST_F(LeaseCoordinator, AWallClockSteppedBackDoesNotStretchTheLease) {
  steady = [this] { return steady_now; };
  ASSERT_NO_FATAL_FAILURE(e2_waits_behind_e1());
  now -= 60'000;
  steady_now += 9'000;
  run();
  for (auto& answer : sender.held) answer();
  run();
  EXPECT_EQ(sender.calls.size(), 1u) << "sent with less of its lease left than its timeout";
  EXPECT_EQ(unlabelled_counter(registry, "hookrelay_worker_lease_requeues_total"), 1);
}

// As above, but the delivery is past retry.max_age_seconds when its lease runs short: it is
// dead-lettered (max_age), as a delivery whose host's circuit stays open is. The old worker
// requeued it without ageing, for ever while its host stayed that slow.
TEST_F(LeaseCoordinator, ADeliveryRequeuedUnsentPastItsMaxAgeIsDeadLettered) {
  w.reset();
  config.retry.max_age_seconds = 10;
  start_own();
  ASSERT_NO_FATAL_FAILURE(e2_waits_behind_e1());
  now += 9'000;
  run();
  EXPECT_EQ(sender.calls.size(), 1u);
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, kDlqTopic) << "requeued past its max_age";
  EXPECT_EQ(producer.sent[0].header("hr-dlq-reason"), "max_age");
  EXPECT_EQ(store.state["wh:gh:e2:a"], "dead");
  for (auto& answer : sender.held) answer();
  run();
}

// A delivery requeued unsent (its lease ran short) whose retry Kafka refuses for good: recorded
// dead under its own lease as a turn without an attempt (no attempt counted, no 1970 times),
// then dead-lettered.
TEST_F(LeaseCoordinator, ARequeueKafkaRefusesForGoodIsRecordedDeadWithoutAnAttempt) {
  producer.refuse_topic[retry_topic(0)] =
      Error{"message_too_large", "Broker: Message size too large", false};
  sender.hold = true;
  feed(0, "e1");
  feed(1, "e2");
  run();
  now += 11'000;  // e2's lease no longer covers its call: requeued, refused
  run();
  run();
  EXPECT_EQ(store.state["wh:gh:e2:a"], "dead");
  bool recorded = false;
  for (const auto& r : store.attempts) {
    if (r.key != "wh:gh:e2:a") continue;
    recorded = true;
    EXPECT_EQ(r.attempt, 0) << "no attempt was made";
    EXPECT_EQ(r.started_ms, now);
    EXPECT_EQ(r.next_state, "dead");
    EXPECT_NE(r.lease_token, 0) << "recorded under the lease it held";
  }
  EXPECT_TRUE(recorded);
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, kDlqTopic);
  EXPECT_EQ(producer.sent[0].header("hr-event-id"), "e2");
  EXPECT_TRUE(store.released.empty()) << "the record gave the lease back";
  for (auto& answer : sender.held) answer();
  run();
}

// A call whose timeout is more than half the lease: it may start only while the lease still
// covers the whole call and the record of its result, not while half the lease is left.
TEST_F(LeaseCoordinator, ACallLongerThanHalfTheLeaseStartsOnlyWhileTheLeaseCoversIt) {
  config.routes["gh"][0].timeout_ms = 15'000;
  start_own();
  ASSERT_NO_FATAL_FAILURE(e2_waits_behind_e1());
  now += 6'000;  // 14 s of e2's lease left: less than its 15 s call and 2 s to record it
  for (auto& answer : sender.held) answer();
  sender.held.clear();
  run();
  EXPECT_EQ(sender.calls.size(), 1u) << "e2 was sent with too little of its lease left";
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, retry_topic(0));
  EXPECT_EQ(producer.sent[0].header("hr-event-id"), "e2");
}

// A 17.999 s call under a 20 s lease: the old window left it 1 ms to start, which the claim's own
// round trip used up, so it was sent back unsent at every turn, for good. It now starts within
// the window's 2 s floor, its timeout cut to the 16 s the lease leaves.
TEST_F(LeaseCoordinator, ACallWhoseTimeoutAlmostFillsTheLeaseStillHasTimeToStart) {
  config.routes["gh"][0].timeout_ms = 17'999;
  start_own();
  feed(0, "e1");
  w->step();  // the claim goes out
  now += 20;  // its round trip
  run();
  ASSERT_EQ(sender.calls.size(), 1u) << "sent back unsent: its window was shorter than a claim";
  EXPECT_EQ(sender.calls[0].timeout_ms, 16'000);
  EXPECT_TRUE(producer.sent.empty());
}

TEST(LeaseWindow, ACallStartsOnlyWhileTheLeaseCoversItAndItsRecord) {
  using Window = std::pair<int64_t, int>;
  auto window = [](int64_t lease_ms, int timeout_ms) {
    auto w = lease_window(lease_ms, timeout_ms);
    return Window{w.send_within_ms, w.timeout_ms};
  };
  EXPECT_EQ(window(120'000, 10'000), Window(105'000, 10'000));
  EXPECT_EQ(window(120'000, 100'000), Window(15'000, 100'000));
  EXPECT_EQ(window(20'000, 10'000), Window(8'000, 10'000));  // margin: 2 s
  // Too long to leave the floor (a tenth of the lease, at least 1 s, at most half): started
  // within the floor, cut to what the floor and the margin leave.
  EXPECT_EQ(window(120'000, 103'000), Window(12'000, 103'000));
  EXPECT_EQ(window(120'000, 103'001), Window(12'000, 103'000));
  EXPECT_EQ(window(120'000, 114'999), Window(12'000, 103'000));
  EXPECT_EQ(window(120'000, 120'000), Window(12'000, 103'000));
  EXPECT_EQ(window(20'000, 19'000), Window(2'000, 16'000));
  EXPECT_EQ(window(1'000, 5'000), Window(500, 400));
}

// For every lease and timeout: the window is never shorter than its floor (the old one left 1 ms
// to a timeout 1 ms short of the cut: the claim's own round trip used it up, and the delivery was
// sent back unsent for good), and the call with its margin always ends within the lease.
TEST(LeaseWindow, NeverShorterThanItsFloorAndAlwaysWithinTheLease) {
  for (int64_t lease_ms : {1'000, 8'000, 20'000, 120'000, 600'000}) {
    const int64_t margin = std::min<int64_t>(kLeaseRecordMarginMs, lease_ms / 10);
    const int64_t floor = std::min<int64_t>(lease_ms / 2, std::max<int64_t>(1'000, lease_ms / 10));
    for (int timeout_ms = 100; timeout_ms <= 600'000; timeout_ms += 97) {
      auto w = lease_window(lease_ms, timeout_ms);
      ASSERT_GE(w.send_within_ms, floor) << lease_ms << " " << timeout_ms;
      ASSERT_LE(w.send_within_ms + w.timeout_ms + margin, lease_ms)
          << lease_ms << " " << timeout_ms;
      ASSERT_LE(w.timeout_ms, timeout_ms);
      ASSERT_GE(w.timeout_ms, 1);
    }
  }
}

// Key order in memory, as far as a bounced delivery needs it: holding a key succeeds.
class AcceptingKeyOrderStore final : public KeyOrderStore {
 public:
  Result<std::string> hold(const OrderKey&, const std::string& head,
                           const WaitingDelivery& otherwise, int64_t) override {
    holds.push_back(head);
    if (taken_by.empty()) return head;
    waiting.push_back(otherwise.delivery_key);
    return taken_by;
  }
  Result<bool> enqueue(const WaitingDelivery& w, int64_t) override {
    if (enqueue_gate.valid()) enqueue_gate.wait();
    if (w.delivery_key == head_itself) return false;
    if (w.delivery_key == refused) return Unexpected{Error{"db_error", "refused", false}};
    waiting.push_back(w.delivery_key);
    return true;
  }
  std::string head_itself;  // a delivery Postgres has as its key's head (enqueue says so)
  std::string refused;      // a delivery Postgres refuses for good to set to wait
  Result<KeyAdvance> advance(const OrderKey&, const std::string&) override {
    ++advances;
    return KeyAdvance{};
  }
  Result<void> released(int64_t) override { return {}; }
  Result<std::vector<HeldKey>> held(int64_t) override {
    if (held_gate.valid()) held_gate.wait();
    return held_keys;
  }
  std::vector<HeldKey> held_keys;         // as other workers hold them
  std::shared_future<void> held_gate;     // when set, held() waits for it
  std::shared_future<void> enqueue_gate;  // when set, enqueue() waits for it
  std::vector<std::string> holds;
  std::string taken_by;              // the head another worker gave every key first ("": none did)
  std::vector<std::string> waiting;  // deliveries set to wait behind their key's head
  int advances = 0;
};

// LeaseCoordinator's case on an ordered route whose keys go side by side (a JSON pointer): the
// delivery left waiting for the host's only slot is the last of its host's queue. Bouncing it
// takes its key's head, and holding the key takes the deliveries behind held keys out of the
// dispatcher's queues, dropping the queues it empties: the one the dispatcher was walking when
// it found the delivery past its send-by time. That walk must not go on over the dropped queue
// (the sanitized build reported a heap-use-after-free there).
class OrderedLeaseCoordinator : public OwnWorkerCoordinator {
 protected:
  OrderedLeaseCoordinator() {
    auto c = parse_config(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes:
  gh:
    - { name: a, url: "http://127.0.0.1:9/a", ordered: true, ordering_key: { json_pointer: /e } }
worker:
  per_host_max_in_flight: 1
  claim_lease_seconds: 20
  breaker_failure_threshold: 2
  breaker_cooldown_ms: 20000
)",
                          [](const std::string&) { return std::nullopt; });
    EXPECT_TRUE(c) << c.error().message;
    if (c) config = *c;
    order.start();
    WorkerDeps d = deps(own);
    d.key_order = &order;
    w = std::make_unique<Worker>(d);
    own.assign({{std::string(kWebhooksTopic), 0}});
  }
  ~OrderedLeaseCoordinator() override { w.reset(); }
  // An event whose ordering key (its body's /e) is `key`.
  void feed_keyed(int64_t offset, const std::string& id, const std::string& key) {
    feed(offset, id);
    own.queue.back().value = std::make_shared<const std::string>("{\"e\":\"" + key + "\"}");
  }

  AcceptingKeyOrderStore order_store;
  prometheus::Registry order_registry;
  KeyOrder order{
      order_store, producer, order_registry, [] {}, {.refresh_ms = 1'000'000, .threaded = false}};
};

TEST_F(OrderedLeaseCoordinator, ADeliveryBouncedAsTheLastOfItsHostQueueHoldsItsKeyWithoutACall) {
  ASSERT_NO_FATAL_FAILURE(e2_waits_behind_e1());
  now += 11'000;
  run();
  EXPECT_EQ(sender.calls.size(), 1u) << "sent with less of its lease left than its timeout";
  EXPECT_EQ(order_store.holds, std::vector<std::string>{"wh:gh:e2:a"})
      << "a bounced delivery of an ordered route holds its key";
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, retry_topic(0));
  EXPECT_EQ(producer.sent[0].header("hr-event-id"), "e2");
  EXPECT_EQ(producer.sent[0].header("hr-attempt"), "0") << "no attempt was made";
  for (auto& answer : sender.held) answer();
  run();
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
}

// Two deliveries of one key: e1 waits for the host's only slot, e2 (claimed 5 s later) waits
// behind e1's order gate. The pass that finds e1 past its send-by time also finds the slot free
// (e0 answered): e1 goes back unsent and holds its key, and e2 must wait behind it, not take the
// slot e1 left (the old dispatcher opened e1's gate at once and started e2 in that same pass).
TEST_F(OrderedLeaseCoordinator, TheNextOfAKeyWaitsBehindADeliveryBouncedUnsentInTheSamePass) {
  sender.hold = true;
  feed_keyed(0, "e0", "y");
  feed_keyed(1, "e1", "x");
  run();
  ASSERT_EQ(sender.calls.size(), 1u) << "e0 has the host's only slot";
  now += 5'000;
  feed_keyed(2, "e2", "x");
  run();
  now += 6'000;  // e1's lease no longer covers its call; e2's does
  sender.held[0]();
  run();
  EXPECT_EQ(sender.calls.size(), 1u)
      << "e2 was sent while e1, before it on its key, went back unsent";
  EXPECT_EQ(order_store.holds, std::vector<std::string>{"wh:gh:e1:a"});
  EXPECT_EQ(order.head_of({"gh", "a", "x"}), "wh:gh:e1:a");
  EXPECT_EQ(order_store.waiting, std::vector<std::string>{"wh:gh:e2:a"});
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].header("hr-event-id"), "e1");
  EXPECT_EQ(producer.sent[0].topic, retry_topic(0));
}

// e1 holds its key's order gate, waiting for the host's only slot; e2 waits for the gate. A copy
// of e3, same key, is leased elsewhere: bounced, it takes the key's head, and e1 and e2 wait
// behind it in the order they were read. The old dispatcher handed over the gate's waiters
// first: e2 was set to wait before e1, and would have been released first.
TEST_F(OrderedLeaseCoordinator, DeliveriesTakenToWaitBehindANewHeadKeepTheirOrder) {
  sender.hold = true;
  feed_keyed(0, "e0", "y");
  feed_keyed(1, "e1", "x");
  feed_keyed(2, "e2", "x");
  run();
  ASSERT_EQ(sender.calls.size(), 1u);
  store.lease["wh:gh:e3:a"] = {"other", 5};
  feed_keyed(3, "e3", "x");
  run();
  EXPECT_EQ(order.head_of({"gh", "a", "x"}), "wh:gh:e3:a");
  EXPECT_EQ(order_store.waiting, (std::vector<std::string>{"wh:gh:e1:a", "wh:gh:e2:a"}));
}

// A copy leased elsewhere heads its key here, and its retry is refused for good: the delivery is
// still to be made (by its holder, or here once the holder's lease has ended), so the key stays
// held, its next delivery waiting, until the copy is claimed again and delivered. The old worker
// dead-lettered the copy as a trace and let its offset go: with the holder killed, nothing was
// left to make the delivery, nor to release the key.
TEST_F(OrderedLeaseCoordinator, ACopyLeasedElsewhereWhoseRetryIsRefusedKeepsItsKeyUntilDone) {
  producer.refuse_topic[retry_topic(0)] =
      Error{"message_too_large", "Broker: Message size too large", false};
  store.lease["wh:gh:e1:a"] = {"other", 5};
  feed_keyed(0, "e1", "x");
  feed_keyed(1, "e2", "x");
  run();
  EXPECT_TRUE(producer.sent.empty()) << "a delivery another worker holds was dead-lettered";
  EXPECT_EQ(order_store.waiting, std::vector<std::string>{"wh:gh:e2:a"});
  EXPECT_EQ(order_store.advances, 0) << "the key's next delivery was released";
  EXPECT_EQ(order.head_of({"gh", "a", "x"}), "wh:gh:e1:a");
  store.lease["wh:gh:e1:a"] = {};  // the holder was killed: its lease (20 s) runs out
  now += 20'000;
  run();
  ASSERT_EQ(sender.calls.size(), 1u) << "the key's head was never delivered";
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
  EXPECT_EQ(order_store.advances, 1) << "the head is done: the key's next delivery goes";
  EXPECT_EQ(stored_webhooks(), 2);
}

// A named key's failed attempt holds its key, and a later delivery of the key waits behind it
// (unchanged by routes ordered by the Kafka key holding nothing: see KafkaKeyOrderedCoordinator).
TEST_F(OrderedLeaseCoordinator, ANamedKeysFailedDeliveryHoldsItsKeyAndTheNextWaitsBehindIt) {
  sender.script = {status(503)};
  feed_keyed(0, "e1", "x");
  run();
  feed_keyed(1, "e2", "x");
  run();
  EXPECT_EQ(sender.calls.size(), 1u) << "e2 was sent while e1, before it on its key, retries";
  EXPECT_EQ(order_store.holds, std::vector<std::string>{"wh:gh:e1:a"});
  EXPECT_EQ(order.head_of({"gh", "a", "x"}), "wh:gh:e1:a");
  EXPECT_EQ(order_store.waiting, std::vector<std::string>{"wh:gh:e2:a"});
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].header("hr-ordering-key"), "x");
  EXPECT_EQ(stored_webhooks(), 2);
}

// A route ordered by the Kafka key (the default ordering key), with a key order, as ingest writes
// its events: each keyed by its own event id, so each is a key of its own. Its host's circuit
// opens after two failures.
class KafkaKeyOrderedCoordinator : public OwnWorkerCoordinator {
 protected:
  KafkaKeyOrderedCoordinator() {
    auto c = parse_config(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes:
  gh:
    - { name: a, url: "http://127.0.0.1:9/a", ordered: true }
worker:
  breaker_failure_threshold: 2
  breaker_cooldown_ms: 20000
)",
                          [](const std::string&) { return std::nullopt; });
    EXPECT_TRUE(c) << c.error().message;
    if (c) config = *c;
    order.start();
    WorkerDeps d = deps(own);
    d.key_order = &order;
    w = std::make_unique<Worker>(d);
    own.assign({{std::string(kWebhooksTopic), 0}, {retry_topic(0), 0}});
  }
  ~KafkaKeyOrderedCoordinator() override { w.reset(); }
  void feed_as_ingest(int64_t offset, const std::string& id) {
    feed(offset, id);
    own.queue.back().key = id;
  }

  AcceptingKeyOrderStore order_store;
  prometheus::Registry order_registry;
  KeyOrder order{
      order_store, producer, order_registry, [] {}, {.refresh_ms = 1'000'000, .threaded = false}};
};

// Each event is its own key, so holding it keeps nothing in order: a failed attempt, and a
// delivery sent back unsent for its host's open circuit, hold nothing, and their retries carry no
// ordering key. Their order is the partition's first-attempt order (one at a time, in offset
// order), as before. The old worker held the key of every retrying delivery: a row of
// ordered_keys each, read whole by every worker every 2 s (millions in a receiver's outage).
TEST_F(KafkaKeyOrderedCoordinator, AFailedOrDeferredDeliveryHoldsNoKeyAndItsRetryCarriesNone) {
  sender.script = {status(503), status(503)};
  feed_as_ingest(0, "e1");
  feed_as_ingest(1, "e2");
  run();
  ASSERT_EQ(sender.calls.size(), 2u);
  now += 5'000;
  feed_as_ingest(2, "e3");  // its host's circuit is open: sent back without a call
  run();
  EXPECT_EQ(sender.calls.size(), 2u);
  EXPECT_TRUE(order_store.holds.empty()) << "a delivery of a route ordered by the Kafka key held "
                                         << order_store.holds.size() << " key(s)";
  EXPECT_TRUE(order_store.waiting.empty());
  EXPECT_EQ(order.held_keys(), 0u);
  ASSERT_EQ(producer.sent.size(), 3u);
  for (const auto& sent : producer.sent) {
    EXPECT_EQ(sent.topic.rfind(kRetryTopicPrefix, 0), 0u) << sent.topic;
    EXPECT_EQ(sent.header("hr-ordering-key"), "") << sent.header("hr-event-id");
  }
  EXPECT_EQ(stored_webhooks(), 3);
}

// An upgrade: a retry copy an older worker wrote for a route ordered by the Kafka key carries the
// key it was expanded with, and its key may be held in Postgres (with deliveries waiting behind
// it). It keeps its key: failing again it holds it, and its success releases it.
TEST_F(KafkaKeyOrderedCoordinator, ARetryCopyFromAnOlderWorkerKeepsItsKeyUntilItIsDelivered) {
  auto copy = [&](int64_t offset, const std::string& attempt) {
    retry_message(own, offset, "e1", now - 1, attempt);
    own.queue.back().key = "wh:gh:e1:a";
    own.queue.back().headers.emplace_back("hr-ordering-key", "e1");
  };
  sender.script = {status(503)};
  copy(0, "1");
  run();
  ASSERT_EQ(sender.calls.size(), 1u);
  EXPECT_EQ(order_store.holds, std::vector<std::string>{"wh:gh:e1:a"});
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].header("hr-ordering-key"), "e1");
  copy(1, "2");
  run();
  ASSERT_EQ(sender.calls.size(), 2u);
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
  EXPECT_EQ(order_store.advances, 1) << "its success did not release its key";
  EXPECT_EQ(order.held_keys(), 0u);
}

// OrderedLeaseCoordinator with a key order that looks at Postgres every 2 s.
class RefreshingOrderCoordinator : public OrderedLeaseCoordinator {
 protected:
  RefreshingOrderCoordinator() {
    w.reset();
    refreshing.start();
    WorkerDeps d = deps(own);
    d.key_order = &refreshing;
    w = std::make_unique<Worker>(d);
    own.assign({{std::string(kWebhooksTopic), 0}});
  }
  ~RefreshingOrderCoordinator() override { w.reset(); }
  KeyOrder refreshing{
      order_store, producer, order_registry, [] {}, {.refresh_ms = 2'000, .threaded = false}};
};

// e1 and e2 of key x are queued here (e1 for the host's only slot, e2 for x's order gate) when
// the look at Postgres finds x held by another worker: they are taken out to wait behind its
// head. The old worker learned the key but sent e1 and e2 anyway, ahead of that head.
TEST_F(RefreshingOrderCoordinator, DeliveriesQueuedBeforeTheirKeyWasLearnedHeldWaitBehindIt) {
  sender.hold = true;
  feed_keyed(0, "e0", "y");
  feed_keyed(1, "e1", "x");
  feed_keyed(2, "e2", "x");
  run();
  ASSERT_EQ(sender.calls.size(), 1u);
  order_store.held_keys = {{{"gh", "a", "x"}, "wh:gh:e9:a", false, 0, std::nullopt}};
  now += 2'001;
  run();
  EXPECT_EQ(order_store.waiting, (std::vector<std::string>{"wh:gh:e1:a", "wh:gh:e2:a"}));
  sender.held[0]();
  run();
  EXPECT_EQ(sender.calls.size(), 1u) << "sent ahead of the head another worker holds";
}

// e1 fails; its key turns out held by another worker's head (unseen here yet). e1 waits behind
// that head with its retry message, recorded as retrying, instead of going to a retry tier as a
// second head; e2, queued behind it, waits after it. The old worker published e1's retry as the
// key's head.
TEST_F(OrderedLeaseCoordinator, AFailedAttemptWhoseKeyAnotherWorkerHoldsWaitsBehindItsHead) {
  order_store.taken_by = "wh:gh:e9:a";
  sender.hold = true;
  sender.script = {status(503)};
  feed_keyed(0, "e1", "x");
  feed_keyed(1, "e2", "x");
  run();
  ASSERT_EQ(sender.calls.size(), 1u);
  sender.held[0]();
  run();
  EXPECT_EQ(sender.calls.size(), 1u);
  EXPECT_TRUE(producer.sent.empty()) << "its retry was published as the key's second head";
  EXPECT_EQ(order_store.waiting, (std::vector<std::string>{"wh:gh:e1:a", "wh:gh:e2:a"}));
  EXPECT_EQ(store.state["wh:gh:e1:a"], "retrying");
  EXPECT_EQ(order.head_of({"gh", "a", "x"}), "wh:gh:e9:a");
  EXPECT_EQ(stored_webhooks(), 2);
}

// As above, but the key's other head was learned by the look at Postgres while e1's attempt was
// out: e1's failure waits behind it too. The old worker published e1's retry (take_head found the
// key held and the retry went as an ordinary one), a second head of the key: e2, read later and
// released after e9, could arrive before e1's retry.
TEST_F(RefreshingOrderCoordinator,
       AFailedAttemptWhoseKeyWasLearnedHeldMeanwhileWaitsBehindItsHead) {
  sender.hold = true;
  sender.script = {status(503)};
  feed_keyed(0, "e1", "x");
  run();
  ASSERT_EQ(sender.calls.size(), 1u);
  order_store.held_keys = {{{"gh", "a", "x"}, "wh:gh:e9:a", false, 0, std::nullopt}};
  now += 2'001;
  run();
  ASSERT_EQ(refreshing.head_of({"gh", "a", "x"}), "wh:gh:e9:a");
  sender.held[0]();
  run();
  for (const auto& m : producer.sent)
    EXPECT_NE(m.topic, retry_topic(0)) << "e1's retry was published beside the key's head";
  EXPECT_EQ(order_store.waiting, std::vector<std::string>{"wh:gh:e1:a"});
  EXPECT_EQ(store.attempts.size(), 1u) << "the attempt was not recorded";
  EXPECT_EQ(stored_webhooks(), 1);
}

// Partitions just assigned: their keys may be held by the workers that had them, so the key
// order looks at Postgres at once instead of at its next refresh (up to 2 s later, while the
// partitions' deliveries were already being sent).
TEST_F(RefreshingOrderCoordinator, AnAssignmentLooksAtTheHeldKeysAtOnce) {
  run();  // the first look at Postgres: nothing held
  order_store.held_keys = {{{"gh", "a", "x"}, "wh:gh:e9:a", false, 0, std::nullopt}};
  own.assign({{std::string(kWebhooksTopic), 0}});
  w->step();
  w->step();
  feed_keyed(0, "e1", "x");
  run();
  EXPECT_TRUE(sender.calls.empty()) << "sent ahead of the head the previous owner held";
  EXPECT_EQ(order_store.waiting, std::vector<std::string>{"wh:gh:e1:a"});
}

// OrderedLeaseCoordinator with its key order on a thread of its own, as the worker runs it, over
// a store whose looks and waits a test can hold (`gate`, opened at the latest when the test ends:
// the key order's stop joins its thread). Route states come from `route_store`.
class ThreadedOrderCoordinator : public OrderedLeaseCoordinator {
 protected:
  ~ThreadedOrderCoordinator() override {
    open_gate();
    w.reset();
  }
  void start_threaded(int refresh_ms) {
    w.reset();
    threaded = std::make_unique<KeyOrder>(
        slow, producer, registry_of_slow, [] {}, KeyOrderOptions{.refresh_ms = refresh_ms});
    threaded->start();  // its first look, before the worker runs
    ASSERT_TRUE(routes.sync());
    WorkerDeps d = deps(own);
    d.key_order = threaded.get();
    d.routes = &routes;
    w = std::make_unique<Worker>(d);
  }
  void open_gate() {
    if (!gate_open) gate.set_value();
    gate_open = true;
  }
  // Runs the worker until `done` (or 2 s), the key order answering on its own thread.
  bool run_until(const std::function<bool()>& done) {
    for (int i = 0; i < 400 && !done(); ++i) {
      run();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return done();
  }

  AcceptingKeyOrderStore slow;
  prometheus::Registry registry_of_slow;
  std::unique_ptr<KeyOrder> threaded;
  FakeRouteStore route_store;
  RouteSync routes{route_store, metrics, [this] { return now; }, {.worker_id = "w1"}};
  std::promise<void> gate;
  std::shared_future<void> gate_future = gate.get_future().share();
  bool gate_open = false;
};

// Partitions assigned while the key order's look at Postgres is slow (its own thread): nothing of
// them is taken until a look started after the assignment has come back. The old worker claimed
// and sent e1 while the look was out, ahead of the head the previous owner held for its key.
TEST_F(ThreadedOrderCoordinator, AnAssignedPartitionWaitsForTheLookAtTheHeldKeys) {
  ASSERT_NO_FATAL_FAILURE(start_threaded(2'000));
  slow.held_keys = {{{"gh", "a", "x"}, "wh:gh:e9:a", false, 0, std::nullopt}};
  slow.held_gate = gate_future;
  own.assign({{std::string(kWebhooksTopic), 0}});
  feed_keyed(0, "e1", "x");
  feed_keyed(1, "e2", "y");
  run();
  EXPECT_TRUE(sender.calls.empty()) << "sent while the look at the held keys was out";
  open_gate();
  ASSERT_TRUE(run_until([&] { return !sender.calls.empty(); }));
  ASSERT_EQ(sender.calls.size(), 1u);
  EXPECT_EQ(store.state["wh:gh:e2:a"], "succeeded") << "a key nobody holds goes out after the look";
  EXPECT_EQ(slow.waiting, std::vector<std::string>{"wh:gh:e1:a"});
}

// A look that does not come back (Postgres failing it, or stuck behind other round trips) holds
// the assigned partitions 10 s at most, and hookrelay.calls not at all: the first version of the
// hold waited for it for ever, for every route.
TEST_F(ThreadedOrderCoordinator,
       ALookThatDoesNotComeBackHoldsTheAssignedPartitionsTenSecondsAtMost) {
  ASSERT_NO_FATAL_FAILURE(start_threaded(2'000));
  slow.held_gate = gate_future;
  own.assign({{std::string(kWebhooksTopic), 0}, {std::string(kCallsTopic), 0}});
  feed_keyed(0, "e1", "y");
  run();
  EXPECT_TRUE(sender.calls.empty()) << "taken while the look was out";
  EXPECT_EQ(own.paused.count({std::string(kCallsTopic), 0}), 0u) << "calls were held";
  now += 10'001;
  run();
  EXPECT_EQ(sender.calls.size(), 1u) << "still held after the look's limit";
}

// e2 waits on Postgres to say whether it waits behind its key's head (e1's), and the route is
// suspended meanwhile: Postgres answers it is the head itself, and it is parked, not sent to the
// suspended route. The old worker parked what was queued at the suspension, then sent e2.
TEST_F(ThreadedOrderCoordinator, AHeadFoundAfterItsRouteWasSuspendedIsParkedNotSent) {
  ASSERT_NO_FATAL_FAILURE(start_threaded(1'000'000));
  own.assign({{std::string(kWebhooksTopic), 0}});
  ASSERT_TRUE(run_until([&] { return threaded->refreshed(1); }));
  sender.script = {status(503)};
  feed_keyed(0, "e1", "x");
  ASSERT_TRUE(run_until([&] { return threaded->head_of({"gh", "a", "x"}) == "wh:gh:e1:a"; }));
  slow.enqueue_gate = gate_future;
  slow.head_itself = "wh:gh:e2:a";
  feed_keyed(1, "e2", "x");
  run();  // e2 is claimed and asked to wait: Postgres has not answered
  route_store.row("gh", "a").state = "suspended";
  ASSERT_TRUE(routes.sync());
  run();
  open_gate();
  ASSERT_TRUE(run_until([&] { return store.state["wh:gh:e2:a"] == "parked"; }))
      << store.state["wh:gh:e2:a"];
  EXPECT_EQ(sender.calls.size(), 1u) << "e2 was sent to its suspended route";
}

// e1 failed and holds key x. Copies of e2 and e3 (same key) are leased elsewhere, by a worker
// that stopped with them claimed: they wait behind e1 in the order they were read. The old worker
// sent them to the first retry tier: they came back together once the key was free and went out
// side by side, in any order (RoutesOnKafka.PerKeyOrder* failed so under CPU load).
TEST_F(OrderedLeaseCoordinator, CopiesLeasedElsewhereOfAHeldKeyWaitBehindItsHead) {
  sender.script = {status(503)};
  feed_keyed(0, "e1", "x");
  run();
  ASSERT_EQ(order.head_of({"gh", "a", "x"}), "wh:gh:e1:a");
  producer.sent.clear();
  store.lease["wh:gh:e2:a"] = {"other", 5};
  store.lease["wh:gh:e3:a"] = {"other", 6};
  feed_keyed(1, "e2", "x");
  feed_keyed(2, "e3", "x");
  run();
  EXPECT_EQ(order_store.waiting, (std::vector<std::string>{"wh:gh:e2:a", "wh:gh:e3:a"}));
  EXPECT_TRUE(producer.sent.empty()) << "a copy of a held key was sent to a retry tier";
  EXPECT_EQ(store.lease["wh:gh:e2:a"].owner, "other") << "the lease stays its holder's";
  EXPECT_EQ(stored_webhooks(), 3);
}

// A copy leased elsewhere turns out to be its key's head itself (this worker's view was old): it
// is not this worker's to send while another holds its lease, so it goes to the retry tier. Sent
// from the dispatcher instead, it would have gone out with no lease, beside its holder's call.
TEST_F(OrderedLeaseCoordinator, ACopyLeasedElsewhereThatHeadsItsKeyIsNotSent) {
  sender.script = {status(503)};
  feed_keyed(0, "e1", "x");
  run();
  ASSERT_EQ(order.head_of({"gh", "a", "x"}), "wh:gh:e1:a");
  producer.sent.clear();
  order_store.head_itself = "wh:gh:e2:a";
  store.lease["wh:gh:e2:a"] = {"other", 5};
  feed_keyed(1, "e2", "x");
  run();
  EXPECT_EQ(sender.calls.size(), 1u) << "sent without its lease";
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, retry_topic(0));
  EXPECT_EQ(producer.sent[0].header("hr-event-id"), "e2");
}

// e1's key is held (e2 failed), and Postgres refuses for good to set e1 to wait: it is attempted
// out of order rather than lost, but waits for the host's only slot until its lease no longer
// covers a call. It then goes back to the retry tier unsent. The old worker tried to set it to
// wait again and, refused, handed it to the dispatcher, which sent it back again at every pass,
// for good: never finished, its partition's offset stuck behind it.
TEST_F(OrderedLeaseCoordinator, AnExpiredDeliveryPostgresWillNotSetToWaitGoesToTheRetryTier) {
  sender.script = {status(503)};
  feed_keyed(0, "e2", "x");
  run();
  ASSERT_EQ(order.head_of({"gh", "a", "x"}), "wh:gh:e2:a");
  producer.sent.clear();
  sender.hold = true;
  feed_keyed(1, "e0", "y");
  run();
  ASSERT_EQ(sender.calls.size(), 2u) << "e0 has the host's only slot";
  order_store.refused = "wh:gh:e1:a";
  feed_keyed(2, "e1", "x");
  run();
  now += 11'000;  // e1's lease no longer covers its call
  run();
  run();
  EXPECT_EQ(sender.calls.size(), 2u) << "sent after its lease had run out";
  ASSERT_EQ(producer.sent.size(), 1u) << "still going round the dispatcher";
  EXPECT_EQ(producer.sent[0].header("hr-event-id"), "e1");
  EXPECT_EQ(producer.sent[0].topic, retry_topic(0));
  EXPECT_EQ(producer.sent[0].header("hr-attempt"), "0");
  EXPECT_EQ(unlabelled_counter(registry, "hookrelay_worker_lease_requeues_total"), 1);
}

// A delivery of an ordered route deferred for its host's open circuit holds its key, as a failed
// attempt does: the key's next delivery waits behind it. The old worker deferred both without a
// hold, and they came back from the retry tier side by side, in either order.
TEST_F(OrderedLeaseCoordinator, ADeliveryDeferredForAnOpenCircuitHoldsItsKey) {
  sender.script = {status(503), status(503)};
  feed_keyed(0, "e0", "y");
  feed_keyed(1, "e1", "z");
  run();
  ASSERT_EQ(sender.calls.size(), 2u);
  producer.sent.clear();
  order_store.holds.clear();
  feed_keyed(2, "e2", "x");
  feed_keyed(3, "e3", "x");
  run();
  EXPECT_EQ(sender.calls.size(), 2u) << "called a host whose circuit is open";
  EXPECT_EQ(order_store.holds, std::vector<std::string>{"wh:gh:e2:a"});
  EXPECT_EQ(order_store.waiting, std::vector<std::string>{"wh:gh:e3:a"});
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].header("hr-event-id"), "e2");
  EXPECT_EQ(producer.sent[0].header("hr-attempt"), "0") << "a deferral must not spend an attempt";
}

// Half-open: one probe goes out; the host's other deliveries wait for its answer instead of
// being sent back to a tier, and go when it succeeds.
TEST_F(CircuitCoordinator, HalfOpenCircuitHoldsTheOthersWhileItsProbeIsOut) {
  ASSERT_NO_FATAL_FAILURE(open());
  now += 20'000;  // half-open
  sender.hold = true;
  feed(2, "e3");
  feed(3, "e4");
  feed(4, "e5");
  run();
  ASSERT_EQ(sender.calls.size(), 3u) << "one probe, the others waiting";
  EXPECT_TRUE(producer.sent.empty()) << "a delivery behind the probe was sent back to a tier";
  sender.hold = false;
  sender.held[0]();  // the probe succeeds: the circuit closes
  run();
  EXPECT_EQ(sender.calls.size(), 5u);
  EXPECT_TRUE(producer.sent.empty());
  EXPECT_EQ(stored_webhooks(), 5);
}

// A host whose circuit opened and that nothing came to for a while (its deliveries waiting in
// long retry tiers) keeps its circuit: when they come back, one probe goes and the others wait
// for it, as before any quiet spell. Forgotten, they would all be sent at once, each spending an
// attempt on a host that is down.
TEST_F(CircuitCoordinator, AnOpenCircuitIsKeptThroughAQuietSpell) {
  ASSERT_NO_FATAL_FAILURE(open());
  now += 11 * 60 * 1000;
  run();  // prunes the hosts idle long enough
  sender.hold = true;
  feed(2, "e3");
  feed(3, "e4");
  feed(4, "e5");
  run();
  EXPECT_EQ(sender.calls.size(), 3u) << "sent at once as to a host never seen failing";
}

// A half-open circuit's probe answered 429 shows the host up: the circuit closes (the adaptive
// limit answers the throttling) and the deliveries held behind the probe go. The old breaker
// ignored the answer, left the probe out, and held them for another whole cooldown.
TEST_F(CircuitCoordinator, AProbeAnswered429ClosesTheCircuit) {
  ASSERT_NO_FATAL_FAILURE(open());
  now += 20'000;  // half-open
  sender.hold = true;
  sender.script = {status(429)};
  feed(2, "e3");
  feed(3, "e4");
  run();
  ASSERT_EQ(sender.calls.size(), 3u) << "one probe, the other waiting";
  sender.hold = false;
  sender.held[0]();  // the probe is throttled
  run();
  EXPECT_EQ(sender.calls.size(), 4u) << "e4 held for another cooldown";
  EXPECT_EQ(store.state["wh:gh:e4:a"], "succeeded");
}

// A half-open circuit's probe is spent only on a call that goes out: a delivery held back by its
// host's Retry-After pause when the circuit turns half-open leaves the probe, and is the probe
// itself once the pause ends, not one more cooldown later.
TEST_F(CircuitCoordinator, AProbeHeldBackByARetryAfterPauseIsSentWhenThePauseEnds) {
  sender.script = {status(503), status(503, "25")};  // opens the circuit, pauses the host 25 s
  feed(0, "e1");
  feed(1, "e2");
  run();
  ASSERT_EQ(sender.calls.size(), 2u);
  producer.sent.clear();
  now += 20'000;  // half-open, still paused
  feed(2, "e3");
  run();
  EXPECT_EQ(sender.calls.size(), 2u) << "called a host its Retry-After pauses";
  now += 5'001;  // the pause is over
  run();
  ASSERT_EQ(sender.calls.size(), 3u) << "the probe was spent while the host was paused";
  EXPECT_EQ(store.state["wh:gh:e3:a"], "succeeded");
  EXPECT_TRUE(producer.sent.empty()) << "the delivery was sent back to a tier";
}

// A claim the store refuses for good (a value the schema refuses) concerns one delivery: the
// rest of its batch is claimed and delivered, the refused one is dead-lettered with the reason,
// and no partition is held.
TEST_F(WorkerCoordinator, PermanentClaimErrorDeadLettersOnlyItsDelivery) {
  store.refuse_claims = {"wh:gh:e2:a"};
  webhook(0, "e1");
  webhook(1, "e2");
  webhook(2, "e3");
  steps(12);
  ASSERT_EQ(sender.calls.size(), 2u) << "the deliveries the store accepted were not made";
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
  EXPECT_EQ(store.state["wh:gh:e3:a"], "succeeded");
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, kDlqTopic);
  EXPECT_EQ(producer.sent[0].key, "wh:gh:e2:a");
  EXPECT_EQ(producer.sent[0].header("hr-dlq-reason"), "store_rejected");
  EXPECT_NE(producer.sent[0].header("hr-last-error").find("22001"), std::string::npos);
  EXPECT_TRUE(consumer.holds.empty())
      << "a refused value held every partition as if Postgres were down";
  EXPECT_TRUE(worker->ready());
  EXPECT_EQ(stored(), 3);
  EXPECT_EQ(labelled(registry, "hookrelay_worker_store_rejected_total", "op", "claim"), 1);
  EXPECT_EQ(labelled(registry, "hookrelay_worker_dlq_total", "reason", "store_rejected"), 1);
}

// A record refused for good is recorded once more as dead with the store's reason, then
// dead-lettered; other partitions are not held.
TEST_F(WorkerCoordinator, PermanentRecordErrorIsRecordedDeadAndDeadLettered) {
  store.refuse_records = {{"wh:gh:e1:a", 1}};
  sender.script = {status(503)};
  webhook(0, "e1");
  steps(12);
  EXPECT_EQ(store.state["wh:gh:e1:a"], "dead");
  ASSERT_EQ(store.attempts.size(), 1u);
  EXPECT_EQ(store.attempts[0].next_state, "dead");
  EXPECT_EQ(store.attempts[0].outcome, "retryable") << "the attempt was what it was";
  EXPECT_NE(store.attempts[0].error.find("refused by the store"), std::string::npos);
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, kDlqTopic);
  EXPECT_EQ(producer.sent[0].header("hr-dlq-reason"), "store_rejected");
  EXPECT_TRUE(producer.sent[0].header("hr-due-at").empty());
  EXPECT_TRUE(consumer.holds.empty());
  EXPECT_EQ(stored(), 1);
}

TEST_F(WorkerCoordinator, RecordRefusedTwiceIsDeadLetteredWithoutARecord) {
  store.refuse_records = {{"wh:gh:e1:a", 2}};
  sender.script = {status(503)};
  webhook(0, "e1");
  steps(12);
  EXPECT_TRUE(store.attempts.empty());
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, kDlqTopic);
  EXPECT_EQ(producer.sent[0].header("hr-dlq-reason"), "store_rejected");
  EXPECT_TRUE(consumer.holds.empty());
  EXPECT_EQ(stored(), 1);
  EXPECT_EQ(store.record_calls, 2) << "a refused record must not be tried forever";
}

// A retry message the broker will never take (too large, not authorized) is dead-lettered at
// once with the broker's reason, not produced again every second forever.
TEST_F(WorkerCoordinator, RetryMessageRefusedForGoodIsDeadLettered) {
  producer.refuse_topic[retry_topic(0)] =
      Error{"message_too_large", "Broker: Message size too large", false};
  sender.script = {status(503)};
  webhook(0, "e1");
  steps(12);
  ASSERT_EQ(producer.refused.size(), 1u);
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, kDlqTopic);
  EXPECT_EQ(producer.sent[0].header("hr-dlq-reason"), "produce_rejected");
  EXPECT_NE(producer.sent[0].header("hr-last-error").find("message_too_large"), std::string::npos);
  // Dead in Postgres too, before its dead letter: the DLQ listings and replays read it there.
  EXPECT_EQ(store.state["wh:gh:e1:a"], "dead");
  ASSERT_EQ(store.attempts.size(), 2u);
  EXPECT_EQ(store.attempts[1].next_state, "dead");
  EXPECT_EQ(store.attempts[1].attempt, 1) << "the same attempt, with the refusal";
  EXPECT_EQ(store.attempts[1].lease_token, 0) << "its lease went back with the first record";
  EXPECT_NE(store.attempts[1].error.find("refused by Kafka"), std::string::npos);
  EXPECT_EQ(stored(), 1);
  EXPECT_TRUE(worker->fatal_error().empty());
}

// A copy bounced because another worker holds the delivery, whose retry Kafka refuses for good
// (the tier not authorized): the holder decides the delivery's state while its lease runs, so
// nothing is recorded or dead-lettered here, but the copy's offset does not go either: the
// holder may have been killed with its call out, and this copy be the last one Kafka has. Once
// the holder's lease has ended the copy is claimed again, and delivered. The old worker
// published a dead letter as a trace and let the offset go: the delivery stayed in flight for
// good, never delivered, and never dead (a DLQ replay needs it dead).
TEST_F(WorkerCoordinator, ACopyLeasedByAWorkerThatDiedIsClaimedAgainOnceItsLeaseHasEnded) {
  producer.refuse_topic[retry_topic(0)] =
      Error{"topic_authorization_failed", "Broker: Topic authorization failed", false};
  store.state["wh:gh:e1:a"] = "in_flight";
  store.lease["wh:gh:e1:a"] = {"other-worker", 99};
  webhook(0, "e1");
  webhook(1, "e2");
  steps(12);
  ASSERT_EQ(sender.calls.size(), 1u) << "e2, behind it in the partition, is delivered meanwhile";
  EXPECT_EQ(store.state["wh:gh:e2:a"], "succeeded");
  EXPECT_TRUE(producer.sent.empty()) << "a delivery another worker holds was dead-lettered";
  EXPECT_EQ(store.state["wh:gh:e1:a"], "in_flight");
  EXPECT_EQ(store.attempts.size(), 1u) << "only e2's attempt is recorded";
  EXPECT_EQ(stored(), -1) << "e1's offset went with no copy of it left in Kafka";
  EXPECT_EQ(unlabelled_counter(registry, "hookrelay_worker_lease_waits_total"), 1);
  // Not claimed again while the holder's lease (120 s) may still run, however many steps.
  const int claims = store.claim_calls;
  now += 119'000;
  steps(50);
  EXPECT_EQ(store.claim_calls, claims) << "claimed again within the holder's lease";
  // The holder was killed: its lease runs out (this store's leases never end by themselves).
  store.lease["wh:gh:e1:a"] = {};
  now += 1'000;
  steps(12);
  ASSERT_EQ(sender.calls.size(), 2u) << "the delivery was never made";
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
  EXPECT_EQ(stored(), 2);
  EXPECT_EQ(worker->in_flight(), 0);
  EXPECT_TRUE(producer.sent.empty());
}

// As above, with the holder alive: its lease still runs when the copy is claimed again, so the
// copy is bounced again and waits another lease (one claim and one produce a lease, never a
// spin), and nothing is recorded. Once the holder has delivered it, the copy is skipped and its
// offset goes. The old worker dead-lettered the copy as a trace at once.
TEST_F(WorkerCoordinator, ARefusedRetryOfACopyLeasedElsewhereWaitsForTheHolderNotRecordedDead) {
  bounce_held_elsewhere("e1");
  EXPECT_TRUE(sender.calls.empty());
  EXPECT_TRUE(producer.sent.empty()) << "a delivery another worker holds was dead-lettered";
  EXPECT_EQ(producer.refused.size(), 1u);
  EXPECT_EQ(stored(), -1);
  now += 120'000;
  steps(12);
  EXPECT_TRUE(sender.calls.empty()) << "sent while another worker holds it";
  EXPECT_EQ(producer.refused.size(), 2u) << "bounced again once, after the lease";
  EXPECT_EQ(unlabelled_counter(registry, "hookrelay_worker_lease_waits_total"), 2);
  EXPECT_EQ(store.state["wh:gh:e1:a"], "in_flight");
  EXPECT_TRUE(store.attempts.empty()) << "no record for a delivery another worker holds";
  EXPECT_EQ(stored(), -1);
  // The holder delivers it.
  store.state["wh:gh:e1:a"] = "succeeded";
  store.lease["wh:gh:e1:a"] = {};
  now += 120'000;
  steps(12);
  EXPECT_TRUE(sender.calls.empty());
  EXPECT_TRUE(producer.sent.empty());
  EXPECT_EQ(stored(), 1);
  EXPECT_EQ(worker->in_flight(), 0);
}

// A copy waiting for another worker's lease holds no lease here: a rebalance that takes its
// partition drops it (the new owner reads it again from the uncommitted offset), and so does a
// stop.
TEST_F(WorkerCoordinator, ACopyWaitingForAnotherWorkersLeaseIsDroppedWithItsPartition) {
  bounce_held_elsewhere("e1");
  ASSERT_EQ(worker->in_flight(), 0) << "a copy waiting for a lease holds a slot";
  consumer.listener.on_revoked(consumer.assigned);
  EXPECT_EQ(worker->in_flight(), 0);
  const int claims = store.claim_calls;
  now += 120'000;
  steps(12);
  EXPECT_EQ(store.claim_calls, claims) << "claimed for a partition no longer held";
  EXPECT_EQ(worker->in_flight(), 0);
}

// A copy waiting for another worker's lease holds no lease, no call and no slot: a worker
// replaying many copies a dead worker held (each bounced, each retry refused) still takes the
// rest of its partitions' messages meanwhile, not nothing for a lease. Its claim again counts.
TEST_F(WorkerCoordinator, ACopyWaitingForAnotherWorkersLeaseTakesNoSlot) {
  config.worker.max_in_flight = 1;
  bounce_held_elsewhere("e1");
  webhook(1, "e2");
  steps(12);
  ASSERT_EQ(sender.calls.size(), 1u) << "e2 waited for the slot a waiting copy held";
  EXPECT_EQ(store.state["wh:gh:e2:a"], "succeeded");
  EXPECT_EQ(worker->in_flight(), 0);
  store.state["wh:gh:e1:a"] = "succeeded";  // the holder delivered it meanwhile
  store.lease["wh:gh:e1:a"] = {};
  now += 120'000;
  steps(12);
  EXPECT_EQ(worker->in_flight(), 0);
  EXPECT_EQ(sender.calls.size(), 1u);
  EXPECT_EQ(stored(), 2) << "both offsets go once the waiting copy is settled";
}

// A bounce whose retry Kafka refuses for good after its partition went to another worker is
// not kept waiting here: the new owner reads the message again.
TEST_F(WorkerCoordinator, ARetryRefusedAfterItsPartitionWentIsNotKeptWaiting) {
  producer.refuse_topic[retry_topic(0)] =
      Error{"message_too_large", "Broker: Message size too large", false};
  store.state["wh:gh:e1:a"] = "in_flight";
  store.lease["wh:gh:e1:a"] = {"other-worker", 99};
  webhook(0, "e1");
  // Step by step until the bounce's retry is refused: its answer waits for the next step.
  for (int i = 0; i < 12 && producer.refused.empty(); ++i) worker->step();
  ASSERT_EQ(producer.refused.size(), 1u) << "the bounce's retry was not produced";
  consumer.listener.on_revoked(consumer.assigned);
  steps(12);
  EXPECT_EQ(unlabelled_counter(registry, "hookrelay_worker_lease_waits_total"), 0);
  EXPECT_EQ(worker->in_flight(), 0);
  const int claims = store.claim_calls;
  now += 120'000;
  steps(12);
  EXPECT_EQ(store.claim_calls, claims) << "claimed again for a partition no longer held";
}

TEST_F(WorkerCoordinator, TransientProduceErrorIsPublishedAgain) {
  producer.refuse_topic[retry_topic(0)] = Error{"broker_down", "all brokers down", true};
  sender.script = {status(503)};
  webhook(0, "e1");
  steps(12);
  EXPECT_TRUE(producer.sent.empty());
  EXPECT_EQ(stored(), -1);
  producer.refuse_topic.clear();
  now += 1001;
  steps(4);
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, retry_topic(0));
  EXPECT_EQ(stored(), 1);
}

// Postgres failed a claim, and before that claim was tried again a rebalance took its partition
// (dropping the claim): no round trip was left to find Postgres up again, and the old worker held
// every partition, the ones it kept and the ones it was given, until it was restarted.
TEST_F(WorkerCoordinator, AnOutageWhoseClaimsARebalanceDroppedEndsAtTheNextTry) {
  store.down = true;
  webhook(0, "e1");
  steps(2);
  ASSERT_FALSE(consumer.holds.empty());
  const auto tps = consumer.assigned;
  consumer.listener.on_revoked(tps);
  consumer.assign(tps);
  store.down = false;
  now += 2'000;
  webhook(0, "e1");  // replayed by the new assignment
  steps(16);
  EXPECT_EQ(sender.calls.size(), 1u) << "the partitions stayed held with Postgres up";
  EXPECT_TRUE(worker->ready());
  EXPECT_EQ(stored(), 1);
}

// Stopped with a call still out when its grace ends: the call's lease runs on, as after a crash.
// The old worker gave it back, and the partition's next owner could claim the delivery and send
// it again at once, while the first call was still with its receiver.
TEST_F(WorkerCoordinator, AStopLeavesTheLeaseOfACallStillOutToRunOn) {
  sender.hold = true;
  webhook(0, "e1");
  steps();
  ASSERT_EQ(sender.calls.size(), 1u);
  config.worker.shutdown_grace_ms = 0;
  worker->request_stop();
  worker->run();
  EXPECT_TRUE(store.released.empty()) << "gave back the lease of a call still out";
  EXPECT_NE(store.lease["wh:gh:e1:a"].token, 0);
  EXPECT_EQ(stored(), -1);
}

// A stop's drain waits for the results it is waiting for: the old drain skipped its wait once a
// stop was requested (always, while draining), and spun a core for the whole grace, taking the
// CPU from the calls it was waiting for.
TEST_F(WorkerCoordinator, AStopWaitsForTheCallsStillOutWithoutSpinning) {
  sender.hold = true;
  webhook(0, "e1");
  steps();
  ASSERT_EQ(sender.calls.size(), 1u);
  config.worker.shutdown_grace_ms = 300;
  int64_t reads = 0;
  const auto start = std::chrono::steady_clock::now();
  clock = [&] {
    ++reads;
    return now + std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - start)
                     .count();
  };
  worker->request_stop();
  worker->run();
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
  EXPECT_LT(reads, 1000) << "the drain read the clock " << reads << " times in 300 ms";
}

// Even the DLQ refuses it: there is nowhere to keep the delivery, so the worker stops loudly
// instead of dropping it or retrying forever; its offset is not committed.
TEST_F(WorkerCoordinator, DeadLetterRefusedForGoodStopsTheWorker) {
  producer.refuse_topic[std::string(kDlqTopic)] =
      Error{"topic_authorization_failed", "not authorized", false};
  sender.script = {status(400)};
  webhook(0, "e1");
  steps(12);
  EXPECT_NE(worker->fatal_error().find("wh:gh:e1:a"), std::string::npos) << worker->fatal_error();
  EXPECT_NE(worker->fatal_error().find("not authorized"), std::string::npos);
  EXPECT_EQ(stored(), -1);
  worker->run();  // stop was requested by the worker itself: run() drains and returns
  EXPECT_EQ(stored(), -1);
}

// The producer itself failed for good (a fatal error of the idempotent producer): the retry is
// not the delivery's fault, so it is not recorded dead; the worker stops with the offset
// uncommitted and the message is read again after a restart. The old worker recorded every
// delivery whose retry met the broken producer dead, for good.
TEST_F(WorkerCoordinator, ARetryRefusedByABrokenProducerIsNotRecordedDead) {
  const Error broken{"producer_fatal", "Kafka producer is in a fatal state", false};
  producer.refuse_topic[retry_topic(0)] = broken;
  producer.refuse_topic[std::string(kDlqTopic)] = broken;
  sender.script = {status(503)};
  webhook(0, "e1");
  steps(12);
  EXPECT_NE(store.state["wh:gh:e1:a"], "dead");
  EXPECT_NE(worker->fatal_error().find("wh:gh:e1:a"), std::string::npos) << worker->fatal_error();
  EXPECT_EQ(stored(), -1);
  worker->run();
  EXPECT_EQ(stored(), -1);
}

// A copy of a delivery still finishing here (its retry message not yet acknowledged) is claimed
// while the worker stops: its lease goes back at the end, as every claim made during a stop
// does, so the partition's next owner can claim the delivery at once instead of bouncing it as
// leased elsewhere until claim_lease_seconds have passed.
TEST_F(WorkerCoordinator, ALocalDuplicateClaimedDuringAStopGivesItsLeaseBack) {
  producer.refuse_topic[retry_topic(0)] = Error{"broker_down", "all brokers down", true};
  sender.script = {status(503)};
  webhook(0, "e1");
  steps(12);
  ASSERT_EQ(sender.calls.size(), 1u);
  ASSERT_EQ(store.state["wh:gh:e1:a"], "retrying") << "recorded; its retry waits for the broker";
  ASSERT_EQ(store.lease["wh:gh:e1:a"].token, 0);
  // A copy of its retry is read (a replay) and claimed, and the stop comes before the answer.
  webhook(1, "e1", retry_topic(0),
          {{"hr-attempt", "1"}, {"hr-route", "a"}, {"hr-due-at", std::to_string(now - 1)}});
  worker->step();
  ASSERT_NE(store.lease["wh:gh:e1:a"].token, 0) << "the copy was not claimed";
  config.worker.shutdown_grace_ms = 200;
  real_clock();
  worker->request_stop();
  worker->run();
  EXPECT_EQ(sender.calls.size(), 1u);
  EXPECT_EQ(store.lease["wh:gh:e1:a"].token, 0) << "a claim made during the stop kept its lease";
}

// A worker of its own with two calls at a time per host, whose DLQ refuses every dead letter for
// good: the first delivery to die stops it (fatal_error()).
class FatalStopCoordinator : public OwnWorkerCoordinator {
 protected:
  FatalStopCoordinator() {
    config.worker.per_host_max_in_flight = 2;
    start_own();
    producer.refuse_topic[std::string(kDlqTopic)] =
        Error{"topic_authorization_failed", "Broker: Topic authorization failed", false};
  }
  // e1 is answered 400 (dead; its dead letter refused, so the worker decides to stop) while
  // e2's call is out; e3 takes e1's slot, and e4 waits for one. Returns the answers of e2 and e3,
  // 2xx, still held.
  std::vector<std::function<void()>> stop_with_calls_out() {
    sender.hold = true;
    sender.script = {status(400), status(200), status(200), status(200)};
    feed(0, "e1");
    feed(1, "e2");
    feed(2, "e3");
    feed(3, "e4");
    run();
    EXPECT_EQ(sender.calls.size(), 2u) << "two slots for the host";
    auto held = std::move(sender.held);
    sender.held.clear();
    held.at(0)();
    for (int i = 0; i < 12 && w->fatal_error().empty(); ++i) w->step();
    EXPECT_NE(w->fatal_error().find("wh:gh:e1:a"), std::string::npos) << w->fatal_error();
    EXPECT_EQ(sender.calls.size(), 3u) << "e3 is sent in e1's slot before the decision";
    held.erase(held.begin());
    held.insert(held.end(), sender.held.begin(), sender.held.end());
    sender.held.clear();
    return held;
  }
};

// The worker stops itself on a fatal error while other calls are out: their 2xx, answered after
// the decision, are recorded before run() returns, as on a stop by signal. The old drain ended
// at once on a fatal error and the process failed the calls: the successes stayed in flight
// under this run's lease, which the restarted worker (same worker id) takes over at once, and
// the receiver got those deliveries twice.
TEST_F(FatalStopCoordinator, CallsAnsweredAfterAFatalErrorAreRecordedBeforeTheWorkerStops) {
  auto answers = stop_with_calls_out();
  ASSERT_EQ(answers.size(), 2u);
  config.worker.shutdown_grace_ms = 5'000;
  real_clock();
  std::thread answering([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (auto& answer : answers) answer();
  });
  w->run();
  answering.join();
  EXPECT_EQ(store.state["wh:gh:e2:a"], "succeeded") << "a 2xx answered while draining is lost";
  EXPECT_EQ(store.state["wh:gh:e3:a"], "succeeded") << "a 2xx answered while draining is lost";
  EXPECT_EQ(store.lease["wh:gh:e2:a"].token, 0);
  EXPECT_EQ(sender.calls.size(), 3u);
  EXPECT_EQ(store.lease["wh:gh:e4:a"].token, 0) << "e4, claimed and never sent, kept its lease";
  EXPECT_EQ(store.state["wh:gh:e1:a"], "dead");
  EXPECT_EQ(stored_webhooks(), 0) << "e1's dead letter was refused: its offset must stay";
}

// Nothing new starts once the worker has decided to stop on a fatal error: no step after it
// takes, claims or sends anything. The old worker went on: the slot freed by a call answered
// after the decision started the next delivery's call (which the exit then failed, or left
// answered and unrecorded), and new messages were taken and claimed.
TEST_F(FatalStopCoordinator, NoCallStartsAfterAFatalError) {
  auto answers = stop_with_calls_out();
  ASSERT_EQ(answers.size(), 2u);
  const int claims = store.claim_calls;
  answers[0]();  // e2's 2xx frees a slot
  feed(4, "e5");
  run();
  EXPECT_EQ(sender.calls.size(), 3u) << "a call started after the worker decided to stop";
  EXPECT_EQ(store.claim_calls, claims) << "a claim made after the worker decided to stop";
  answers[1]();
  for (auto& answer : sender.held) answer();
  sender.held.clear();
  config.worker.shutdown_grace_ms = 5'000;
  real_clock();
  w->run();
  EXPECT_EQ(sender.calls.size(), 3u);
  EXPECT_EQ(store.state["wh:gh:e2:a"], "succeeded");
  EXPECT_EQ(store.state["wh:gh:e3:a"], "succeeded");
}

// A retry whose hr-due-at is not a number was not written by hookrelay: it is logged, counted
// and dead-lettered as malformed, not taken as "due now" and delivered.
TEST_F(WorkerCoordinator, BadDueTimeIsCountedAndDeadLettered) {
  webhook(0, "e1", retry_topic(0),
          {{"hr-attempt", "1"}, {"hr-route", "a"}, {"hr-due-at", "tomorrow"}});
  steps();
  EXPECT_TRUE(sender.calls.empty());
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, kDlqTopic);
  EXPECT_EQ(producer.sent[0].header("hr-dlq-reason"), "malformed");
  EXPECT_EQ(labelled(registry, "hookrelay_worker_bad_headers_total", "header", "hr-due-at"), 1);
  EXPECT_TRUE(consumer.pauses.empty());
  EXPECT_EQ(stored(retry_topic(0)), 1);
}

// A config as a reload installs it (SIGHUP: ConfigReloader, then Worker::reconfigure).
std::shared_ptr<const Config> installed_config(const std::string& yaml) {
  auto c = parse_config(yaml, [](const std::string&) { return std::nullopt; });
  EXPECT_TRUE(c) << c.error().message;
  Config installed = c ? *c : Config{};
  installed.worker.store_batching = {.min_batch = 1, .max_wait_ms = 0};  // as deps() does
  return std::make_shared<const Config>(installed);
}

std::string reload_yaml(const std::string& url, const std::string& extra = "", int max_attempts = 3,
                        const std::string& schedule = "[5, 30, 120]") {
  return R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes:
  gh:
    - { name: a, url: ")" +
         url + R"(", headers: { X-Config: ")" + url + R"(" } }
retry: { schedule_seconds: )" +
         schedule + ", max_attempts: " + std::to_string(max_attempts) + " }\n" + extra;
}

std::string call_header(const HttpCall& call, const std::string& name) {
  for (const auto& [k, v] : call.headers) {
    if (ascii_iequals(k, name)) return v;
  }
  return "";
}

// A reload applies to messages taken after it; a delivery already expanded keeps the route it
// was expanded under (and that config stays alive) until it finishes.
TEST_F(WorkerCoordinator, ReloadAppliesToMessagesTakenAfterItAndCallsOutKeepTheirRoute) {
  sender.hold = true;
  std::weak_ptr<const Config> first;
  {
    auto c = installed_config(reload_yaml("http://127.0.0.1:9/first"));
    first = c;
    worker->reconfigure(c);
  }
  webhook(0, "e1");
  steps();
  ASSERT_EQ(sender.calls.size(), 1u);
  EXPECT_EQ(sender.calls[0].url, "http://127.0.0.1:9/first");

  worker->reconfigure(installed_config(reload_yaml("http://127.0.0.1:9/second")));
  webhook(1, "e2");
  steps();
  ASSERT_EQ(sender.calls.size(), 2u);
  EXPECT_EQ(sender.calls[1].url, "http://127.0.0.1:9/second");
  EXPECT_EQ(call_header(sender.calls[1], "X-Config"), "http://127.0.0.1:9/second");
  EXPECT_FALSE(first.expired())
      << "a config was freed while a delivery expanded under it is in flight";

  for (auto& answer : sender.held) answer();
  sender.held.clear();
  steps();
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
  EXPECT_EQ(store.state["wh:gh:e2:a"], "succeeded");
  EXPECT_EQ(stored(), 2);
  EXPECT_TRUE(first.expired()) << "the replaced config outlived its last delivery";
}

// A retry is expanded again under the config in force when it is consumed: the route is found by
// name, with its new url; the retry policy is the new one.
TEST_F(WorkerCoordinator, RetryConsumedAfterAReloadUsesTheNewRouteAndPolicy) {
  sender.script = {status(503)};
  webhook(0, "e1");
  steps();
  ASSERT_EQ(producer.sent.size(), 1u);
  ASSERT_EQ(producer.sent[0].topic, retry_topic(0));

  worker->reconfigure(installed_config(reload_yaml("http://127.0.0.1:9/moved", "", 2)));
  ConsumedMessage retry;
  retry.topic = retry_topic(0);
  retry.offset = 0;
  retry.value = std::make_shared<const std::string>(producer.sent[0].value);
  for (const auto& h : producer.sent[0].headers) retry.headers.emplace_back(h.name, h.value);
  now += 60'000;  // due
  consumer.queue.push_back(retry);
  sender.script = {status(503)};
  steps();
  ASSERT_EQ(sender.calls.size(), 2u);
  EXPECT_EQ(sender.calls[1].url, "http://127.0.0.1:9/moved");
  ASSERT_EQ(producer.sent.size(), 2u);
  EXPECT_EQ(producer.sent[1].topic, kDlqTopic) << "the reloaded max_attempts (2) was not applied";
  EXPECT_EQ(producer.sent[1].header("hr-dlq-reason"), "max_attempts");
}

// The retry the worker published for `sent`, as the consumer reads it back.
ConsumedMessage read_back(const FakeProducer::Sent& sent) {
  ConsumedMessage m;
  m.topic = sent.topic;
  m.offset = 0;
  m.value = std::make_shared<const std::string>(sent.value);
  for (const auto& h : sent.headers) m.headers.emplace_back(h.name, h.value);
  return m;
}

// A retry that turns out malformed (here its hr-received-at is corrupt) names its delivery: it is
// recorded dead and dead-lettered under its own key, so `dlq list` and `dlq replay` find it. The
// old worker dead-lettered it with no Kafka key and an empty hr-delivery-key, and left the row
// 'retrying' for good, where no tool could see or replay it.
TEST_F(WorkerCoordinator, AMalformedRetryIsRecordedDeadUnderItsOwnKey) {
  sender.script = {status(503)};
  webhook(0, "e1");
  steps();
  ASSERT_EQ(store.state["wh:gh:e1:a"], "retrying");
  ASSERT_EQ(producer.sent.size(), 1u);
  ConsumedMessage retry = read_back(producer.sent[0]);
  for (auto& [name, value] : retry.headers) {
    if (name == "hr-received-at") value = "yesterday";
  }
  now += 60'000;  // due
  consumer.queue.push_back(retry);
  steps();
  EXPECT_EQ(sender.calls.size(), 1u);
  ASSERT_EQ(producer.sent.size(), 2u);
  const auto& dead = producer.sent[1];
  EXPECT_EQ(dead.topic, kDlqTopic);
  EXPECT_EQ(dead.key, "wh:gh:e1:a");
  EXPECT_EQ(dead.header("hr-dlq-reason"), "malformed");
  int keys = 0;
  for (const auto& h : dead.headers) {
    if (h.name == "hr-delivery-key") {
      ++keys;
      EXPECT_EQ(h.value, "wh:gh:e1:a");
    }
  }
  EXPECT_EQ(keys, 1);
  EXPECT_EQ(store.state["wh:gh:e1:a"], "dead") << "dlq list and replay would not find it";
  EXPECT_EQ(stored(retry_topic(0)), 1);
}

// A malformed first copy (written by something other than ingest) that names another delivery's
// key in hr-delivery-key does not record that delivery dead: only a retry names its own delivery.
TEST_F(WorkerCoordinator, AMalformedFirstCopyNamingAnotherDeliveryDoesNotKillIt) {
  sender.script = {status(503)};
  webhook(0, "e1");
  steps();
  ASSERT_EQ(store.state["wh:gh:e1:a"], "retrying");
  webhook(1, "e2", std::string(kWebhooksTopic),
          {{"hr-delivery-key", "wh:gh:e1:a"}, {"hr-content-type", "text/plain\r\nX: y"}});
  steps();
  ASSERT_EQ(producer.sent.size(), 2u);
  EXPECT_EQ(producer.sent[1].topic, kDlqTopic);
  EXPECT_EQ(producer.sent[1].header("hr-dlq-reason"), "malformed");
  EXPECT_EQ(producer.sent[1].key, "");
  for (const auto& h : producer.sent[1].headers)
    EXPECT_NE(h.name, "hr-delivery-key") << "dlq replay would take it for " << h.value << "'s";
  EXPECT_EQ(store.state["wh:gh:e1:a"], "retrying") << "killed by another message's header";
}

// A reload that lowers ingest.max_headers does not make webhooks accepted before it malformed:
// the old worker held their forwarded headers to the new limit and dead-lettered them all, the
// backlog and every retry still waiting in a tier.
TEST_F(WorkerCoordinator, ALowerMaxHeadersDoesNotRefuseWebhooksAcceptedBeforeIt) {
  worker->reconfigure(
      installed_config(reload_yaml("http://127.0.0.1:9/a", "ingest: { max_headers: 8 }\n")));
  std::vector<std::pair<std::string, std::string>> forwarded;
  for (int i = 0; i < 20; ++i) forwarded.emplace_back("hr-fwd-x-h" + std::to_string(i), "v");
  webhook(0, "e1", std::string(kWebhooksTopic), forwarded);
  steps();
  ASSERT_EQ(sender.calls.size(), 1u) << "dead-lettered as malformed";
  EXPECT_EQ(call_header(sender.calls[0], "x-h19"), "v");
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
}

// A claim that Postgres failed is sent again after a reload shortened claim_lease_seconds: the
// shorter lease the database then starts bounds the call's start. The old worker kept the first
// send's window (8 s of a 20 s lease), and could start the call after the 12 s lease had ended.
TEST_F(WorkerCoordinator, AClaimSentAgainAfterAReloadShortenedTheLeaseKeepsToTheShorterOne) {
  const std::string url = "http://127.0.0.1:9/a";
  worker->reconfigure(installed_config(reload_yaml(url,
                                                   "worker: { per_host_max_in_flight: 1, "
                                                   "claim_lease_seconds: 20 }\n")));
  sender.hold = true;
  webhook(0, "e1");
  steps();
  ASSERT_EQ(sender.calls.size(), 1u) << "e1 has the host's only slot";
  store.down = true;
  webhook(1, "e2");
  steps(2);  // e2's claim fails: it will be sent again
  worker->reconfigure(installed_config(reload_yaml(url,
                                                   "worker: { per_host_max_in_flight: 1, "
                                                   "claim_lease_seconds: 12 }\n")));
  store.down = false;
  now += 1'000;
  steps();  // claimed under a 12 s lease: a 10 s call must start within 0.8 s
  now += 2'000;
  sender.held[0]();
  steps();
  EXPECT_EQ(sender.calls.size(), 1u) << "e2 was sent after the lease it was claimed under ran out";
  EXPECT_EQ(unlabelled_counter(registry, "hookrelay_worker_lease_requeues_total"), 1);
}

// Worker limits of a reload apply to calls started after it, lowered or raised.
TEST_F(WorkerCoordinator, ReloadedPerHostLimitAppliesToCallsStartedAfterIt) {
  sender.hold = true;
  worker->reconfigure(installed_config(
      reload_yaml("http://127.0.0.1:9/a", "worker: { per_host_max_in_flight: 1 }\n")));
  for (int i = 0; i < 3; ++i) webhook(i, "e" + std::to_string(i));
  steps();
  EXPECT_EQ(sender.calls.size(), 1u) << "the reloaded per-host limit (1) was not applied";
  worker->reconfigure(installed_config(
      reload_yaml("http://127.0.0.1:9/a", "worker: { per_host_max_in_flight: 3 }\n")));
  steps();
  EXPECT_EQ(sender.calls.size(), 3u) << "the raised per-host limit (3) was not applied";
}

// A reload that changes the tier count keeps the running schedule until a restart, and a retry's
// due time is bounded by that schedule, not the reloaded one: a retry of the 120 s tier is not
// taken early because the reload left 30 s as the longest delay. A due time beyond the running
// schedule's longest delay is cut to it.
TEST_F(WorkerCoordinator, ARetryWaitsForItsDueTimeUnderTheRunningScheduleAfterAReloadDropsATier) {
  consumer.assign({{retry_topic(2), 0}});
  worker->reconfigure(installed_config(reload_yaml("http://127.0.0.1:9/a", "", 3, "[5, 30]")));
  const int64_t start = now;
  webhook(3, "e1", retry_topic(2),
          {{"hr-attempt", "2"}, {"hr-route", "a"}, {"hr-due-at", std::to_string(start + 100'000)}});
  webhook(
      4, "e2", retry_topic(2),
      {{"hr-attempt", "2"}, {"hr-route", "a"}, {"hr-due-at", std::to_string(start + 86'400'000)}});
  steps();
  now = start + 31'000;
  steps();
  EXPECT_TRUE(sender.calls.empty()) << "a retry due in 100 s was taken after 31 s";
  now = start + 100'000;
  steps();
  ASSERT_EQ(sender.calls.size(), 1u) << "the retry was not taken at its due time";
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
  now = start + 120'000;
  steps();
  ASSERT_EQ(sender.calls.size(), 2u) << "a due time a day away was not cut to the longest tier";
  EXPECT_EQ(store.state["wh:gh:e2:a"], "succeeded");
}

// A reload that adds a tier keeps the running schedule too, but a retry's due time may reach the
// reloaded config's longest delay (a route's `retry:` delays and Retry-After go up to it): it is
// not cut to the running schedule's shorter one.
TEST_F(WorkerCoordinator, ARetryDueWithinTheReloadedConfigsLongestDelayIsNotTakenEarly) {
  consumer.assign({{retry_topic(2), 0}});
  worker->reconfigure(
      installed_config(reload_yaml("http://127.0.0.1:9/a", "", 3, "[5, 30, 120, 600]")));
  const int64_t start = now;
  webhook(3, "e1", retry_topic(2),
          {{"hr-attempt", "2"}, {"hr-route", "a"}, {"hr-due-at", std::to_string(start + 300'000)}});
  steps();
  now = start + 121'000;
  steps();
  EXPECT_TRUE(sender.calls.empty()) << "a retry due in 300 s was cut to the running 120 s";
  now = start + 300'000;
  steps();
  ASSERT_EQ(sender.calls.size(), 1u);
}

// A reload made route a unordered while e1 held key x: e1's retry still resolves its key when it
// succeeds, releasing what waits behind it in turn. The old worker expanded the retry as
// unordered, left the key held, and each waiting delivery went out only after the key order's
// look found the head finished 10 s before: one per 12 s or so.
TEST_F(OrderedLeaseCoordinator, ARetryOfAKeyHeldWhenItsRouteStoppedBeingOrderedStillReleasesIt) {
  sender.script = {status(503)};
  feed_keyed(0, "e1", "x");
  run();
  ASSERT_EQ(order.head_of({"gh", "a", "x"}), "wh:gh:e1:a");
  ASSERT_EQ(producer.sent.size(), 1u);
  const auto retry = producer.sent[0];
  ASSERT_FALSE(retry.header("hr-ordering-key").empty());
  w->reconfigure(installed_config(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes:
  gh:
    - { name: a, url: "http://127.0.0.1:9/a" }
worker: { per_host_max_in_flight: 1, claim_lease_seconds: 20 }
)"));
  // As Postgres has it (this fake store keeps no holds of its own).
  order_store.held_keys = {{{"gh", "a", "x"}, "wh:gh:e1:a", false, 0, std::nullopt}};
  own.assign({{std::string(kWebhooksTopic), 0}, {retry_topic(0), 0}});
  ConsumedMessage m;
  m.topic = retry_topic(0);
  m.offset = 0;
  m.key = retry.key;
  m.value = std::make_shared<const std::string>(retry.value);
  for (const auto& h : retry.headers)
    m.headers.emplace_back(h.name, h.name == "hr-due-at" ? std::to_string(now - 1) : h.value);
  own.queue.push_back(m);
  run();
  ASSERT_EQ(sender.calls.size(), 2u);
  EXPECT_EQ(store.state["wh:gh:e1:a"], "succeeded");
  EXPECT_EQ(order_store.advances, 1) << "the key its retry held was not resolved";
}

}  // namespace
}  // namespace hookrelay
