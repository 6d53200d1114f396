// Flow control: the adaptive per-host limit (AIMD, Retry-After pauses), a route's own limits, and
// how the Dispatcher applies them beside the per-host caps.
#include "worker/flow_control.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <set>

#include "worker/dispatcher.h"

namespace hookrelay {
namespace {

using Signal = AdaptiveHostLimits::Signal;

AdaptiveLimitConfig adaptive(double decrease = 0.5, double step = 1.0, int max_pause_seconds = 60) {
  return AdaptiveLimitConfig{true, decrease, step, max_pause_seconds};
}

TEST(AdaptiveHostLimits, StartsAtTheMaximumAndCutsMultiplicativelyOnOverload) {
  AdaptiveHostLimits l(adaptive(0.5), 64);
  EXPECT_EQ(l.limit("h:80"), 64);
  EXPECT_TRUE(l.on_result("h:80", Signal::kTooManyRequests, 10, 20, std::nullopt));
  EXPECT_EQ(l.limit("h:80"), 32);
  EXPECT_TRUE(l.on_result("h:80", Signal::kUnavailable, 30, 40, std::nullopt));
  EXPECT_EQ(l.limit("h:80"), 16);
  EXPECT_TRUE(l.on_result("h:80", Signal::kTimeout, 50, 60, std::nullopt));
  EXPECT_EQ(l.limit("h:80"), 8);
  EXPECT_EQ(l.limit("other:80"), 64) << "hosts are independent";
}

TEST(AdaptiveHostLimits, OneCutPerRoundOfCalls) {
  AdaptiveHostLimits l(adaptive(0.5), 64);
  ASSERT_TRUE(l.on_result("h", Signal::kTooManyRequests, 100, 200, std::nullopt));
  // Answers to calls started before the cut were sent under the old limit.
  EXPECT_FALSE(l.on_result("h", Signal::kTooManyRequests, 150, 210, std::nullopt));
  EXPECT_FALSE(l.on_result("h", Signal::kTimeout, 199, 220, std::nullopt));
  EXPECT_EQ(l.limit("h"), 32);
  EXPECT_TRUE(l.on_result("h", Signal::kTooManyRequests, 201, 230, std::nullopt));
  EXPECT_EQ(l.limit("h"), 16);
}

TEST(AdaptiveHostLimits, NeverBelowOne) {
  AdaptiveHostLimits l(adaptive(0.1), 4);
  for (int i = 0; i < 10; ++i)
    l.on_result("h", Signal::kTooManyRequests, 10 * i + 5, 10 * i + 6, std::nullopt);
  EXPECT_EQ(l.limit("h"), 1);
}

TEST(AdaptiveHostLimits, GrowsAdditivelyOnSuccessUpToTheMaximum) {
  AdaptiveHostLimits l(adaptive(0.5, 1.0), 20);
  ASSERT_TRUE(l.on_result("h", Signal::kTooManyRequests, 1, 2, std::nullopt));
  ASSERT_EQ(l.limit("h"), 10);
  // About one more per limit's worth of successes (one round trip at the limit).
  for (int i = 0; i < 9; ++i) l.on_result("h", Signal::kSuccess, 3, 4, std::nullopt);
  EXPECT_EQ(l.limit("h"), 10);
  for (int i = 0; i < 2; ++i) l.on_result("h", Signal::kSuccess, 3, 4, std::nullopt);
  EXPECT_EQ(l.limit("h"), 11);
  for (int i = 0; i < 12; ++i) l.on_result("h", Signal::kSuccess, 3, 4, std::nullopt);
  EXPECT_EQ(l.limit("h"), 12);
  for (int i = 0; i < 1000; ++i) l.on_result("h", Signal::kSuccess, 3, 4, std::nullopt);
  EXPECT_EQ(l.limit("h"), 20);
}

TEST(AdaptiveHostLimits, OtherAnswersLeaveTheLimitAlone) {
  AdaptiveHostLimits l(adaptive(), 16);
  EXPECT_EQ(AdaptiveHostLimits::signal_of(TransportError::kNone, 500), Signal::kNone);
  EXPECT_EQ(AdaptiveHostLimits::signal_of(TransportError::kConnectFailed, 0), Signal::kNone);
  EXPECT_EQ(AdaptiveHostLimits::signal_of(TransportError::kCircuitOpen, 0), Signal::kNone);
  EXPECT_EQ(AdaptiveHostLimits::signal_of(TransportError::kNone, 429), Signal::kTooManyRequests);
  EXPECT_EQ(AdaptiveHostLimits::signal_of(TransportError::kNone, 503), Signal::kUnavailable);
  EXPECT_EQ(AdaptiveHostLimits::signal_of(TransportError::kTimeout, 0), Signal::kTimeout);
  EXPECT_EQ(AdaptiveHostLimits::signal_of(TransportError::kNone, 204), Signal::kSuccess);
  EXPECT_FALSE(l.on_result("h", Signal::kNone, 1, 2, std::nullopt));
  EXPECT_EQ(l.limit("h"), 16);
}

TEST(AdaptiveHostLimits, RetryAfterPausesTheHostCappedAtMaxPause) {
  AdaptiveHostLimits l(adaptive(0.5, 1.0, 30), 16);
  l.on_result("h", Signal::kTooManyRequests, 1, 1000, 5000);
  EXPECT_EQ(l.paused_until("h"), 6000);
  EXPECT_EQ(l.paused_until("other"), 0);
  l.on_result("h", Signal::kUnavailable, 2, 2000, 3'600'000);  // an hour asked: 30 s given
  EXPECT_EQ(l.paused_until("h"), 32'000);
  l.on_result("h", Signal::kTooManyRequests, 3, 3000,
              1000);  // a shorter pause never ends one early
  EXPECT_EQ(l.paused_until("h"), 32'000);
}

TEST(AdaptiveHostLimits, ZeroMaxPauseOrDisabledNeverPauses) {
  AdaptiveHostLimits no_pause(adaptive(0.5, 1.0, 0), 16);
  no_pause.on_result("h", Signal::kTooManyRequests, 1, 1000, 5000);
  EXPECT_EQ(no_pause.paused_until("h"), 0);
  EXPECT_EQ(no_pause.limit("h"), 8);

  AdaptiveLimitConfig off = adaptive();
  off.enabled = false;
  AdaptiveHostLimits disabled(off, 16);
  EXPECT_FALSE(disabled.on_result("h", Signal::kTooManyRequests, 1, 1000, 5000));
  EXPECT_EQ(disabled.limit("h"), 16);
  EXPECT_EQ(disabled.paused_until("h"), 0);
}

TEST(AdaptiveHostLimits, ALowerMaximumBringsLimitsDownAndPruneForgetsRecoveredHosts) {
  AdaptiveHostLimits l(adaptive(0.5), 64);
  l.on_result("h", Signal::kTooManyRequests, 1, 2, std::nullopt);
  l.on_result("g", Signal::kTooManyRequests, 1, 2, std::nullopt);
  l.set_options(adaptive(0.5), 20);
  EXPECT_EQ(l.limit("h"), 20);
  l.on_result("g", Signal::kTooManyRequests, 3, 4, std::nullopt);
  int hosts = 0;
  l.each([&](const std::string&, int) { ++hosts; });
  EXPECT_EQ(hosts, 2);
  l.prune(10);
  std::map<std::string, int> left;
  l.each([&](const std::string& host, int limit) { left[host] = limit; });
  EXPECT_EQ(left, (std::map<std::string, int>{{"g", 10}}));
}

// A host cut once and never called again (a call to a host that is gone) is forgotten once idle
// long enough, unless a Retry-After still pauses it. The old limits kept it until successes grew
// it back, which never came: memory grew with every such host.
TEST(AdaptiveHostLimits, PruneForgetsHostsWithNoAnswerForLong) {
  AdaptiveHostLimits l(adaptive(0.5, 1.0, 3600), 64);
  for (int i = 0; i < 1000; ++i)
    l.on_result("gone-" + std::to_string(i), Signal::kTimeout, 1, 2, std::nullopt);
  l.on_result("paused", Signal::kTooManyRequests, 1, 2, int64_t{3'000'000});
  const int64_t later = 2 + AdaptiveHostLimits::kForgetIdleMs;
  l.on_result("busy", Signal::kUnavailable, later - 10, later - 1, std::nullopt);
  l.prune(later - 1);
  int hosts = 0;
  l.each([&](const std::string&, int) { ++hosts; });
  EXPECT_EQ(hosts, 1002) << "forgotten before it was idle long enough";
  l.prune(later);
  std::map<std::string, int> left;
  l.each([&](const std::string& host, int limit) { left[host] = limit; });
  EXPECT_EQ(left, (std::map<std::string, int>{{"busy", 32}, {"paused", 32}}));
}

TEST(RouteLimits, MaxInFlightAndRate) {
  int64_t now = 1'000'000;
  RouteLimits r([&] { return now; });
  RouteConfig route;
  route.max_in_flight = 2;
  const std::string key = RouteLimits::key("gh", "ci");
  EXPECT_EQ(key, "gh/ci");
  ASSERT_TRUE(r.ready(key, route));
  r.start(key, route);
  r.start(key, route);
  EXPECT_FALSE(r.ready(key, route));
  r.end(key);
  EXPECT_TRUE(r.ready(key, route));

  RouteConfig rated;
  rated.rate_per_second = 2;  // burst 2, then one per 500 ms
  const std::string k2 = RouteLimits::key("gh", "slow");
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(r.ready(k2, rated));
    r.start(k2, rated);
    r.end(k2);
  }
  EXPECT_FALSE(r.ready(k2, rated));
  now += 499;
  EXPECT_FALSE(r.ready(k2, rated));
  now += 1;
  EXPECT_TRUE(r.ready(k2, rated));
}

// The Dispatcher with a sender that holds every call until the test answers it.
class HeldSender : public HttpSender {
 public:
  void send(HttpCall call, Done done) override {
    calls.push_back({std::move(call), std::move(done)});
  }
  void answer(std::size_t i, HttpResult r) {
    auto done = std::move(calls.at(i).second);
    done(std::move(r));
  }
  std::vector<std::pair<HttpCall, Done>> calls;
};

class DispatcherFlow : public ::testing::Test {
 protected:
  DispatcherFlow() {
    config.worker.per_host_max_in_flight = 8;
    config.worker.adaptive_limit = adaptive(0.5, 1.0, 30);
    fast.name = "fast";
    fast.url = "http://h/fast";
    limited.name = "limited";
    limited.url = "http://h/limited";
    limited.max_in_flight = 2;
    fast.host_key = limited.host_key = "h:80";
    config.routes["gh"] = {fast, limited};  // the hosts metrics may name
  }
  void make() {
    dispatcher = std::make_unique<Dispatcher>(
        config, sender, [this] { return now; }, [this] { return own_steady ? steady_now : now; },
        [this](WorkerEvent e) { events.push_back(std::move(e)); }, rand01);
  }
  std::unique_ptr<Job> job(const RouteConfig& route, int n) {
    auto j = std::make_unique<Job>();
    j->d.kind = "webhook";
    j->d.source = "gh";
    j->d.destination = route.name;
    j->d.event_id = "e" + std::to_string(n);
    j->d.key = "wh:gh:" + j->d.event_id + ":" + route.name;
    j->d.url = route.url;
    j->d.host_key = "h:80";
    j->d.route = &route;
    j->d.body = std::make_shared<const std::string>("{}");
    j->d.received_at_ms = now;
    j->msg = std::make_shared<MessageState>();
    j->msg->tp.topic = "hookrelay.webhooks";
    return j;
  }
  void dispatch() {
    dispatcher->dispatch(now, [this](std::unique_ptr<Job> j) { bounced.push_back(std::move(j)); });
  }
  // Answers call i and hands its job back to the dispatcher, as the worker does.
  void complete(std::size_t i, int status, std::optional<std::string> retry_after = std::nullopt,
                TransportError error = TransportError::kNone) {
    HttpResult r;
    r.status = status;
    r.error = error;
    r.retry_after = std::move(retry_after);
    sender.answer(i, r);
    WorkerEvent e = std::move(events.back());
    events.pop_back();
    auto j = dispatcher->take(e.job);
    dispatcher->release(*j, e.http, classify(e.http.error, e.http.status));
  }
  std::size_t calls_to(const std::string& url) const {
    std::size_t n = 0;
    for (const auto& [call, done] : sender.calls) n += call.url == url ? 1 : 0;
    return n;
  }

  // Opens the host's circuit (threshold 2, cooldown 20 s): two calls fail.
  void open_circuit() {
    const std::size_t first = sender.calls.size();
    dispatcher->enqueue(job(fast, 1000));
    dispatcher->enqueue(job(fast, 1001));
    dispatch();
    ASSERT_EQ(sender.calls.size(), first + 2);
    complete(first, 0, std::nullopt, TransportError::kConnectFailed);
    complete(first + 1, 0, std::nullopt, TransportError::kConnectFailed);
    ASSERT_EQ(dispatcher->circuit_counts().open, 1u);
  }
  void breaker_config() {
    config.worker.breaker_failure_threshold = 2;
    config.worker.breaker_cooldown_ms = 20'000;
    config.worker.per_host_max_in_flight = 64;
    config.worker.adaptive_limit.enabled = false;
  }
  HostStateRow host_state() const {
    for (auto& row : dispatcher->host_states()) {
      if (row.host == "h:80") return row;
    }
    ADD_FAILURE() << "no row for h:80";
    return {};
  }

  int64_t now = 1'700'000'000'000;  // the wall clock
  bool own_steady = false;          // the steady clock is steady_now, not `now`
  int64_t steady_now = 5'000'000;
  std::function<double()> rand01;  // empty: the dispatcher's own
  Config config;
  RouteConfig fast, limited;
  HeldSender sender;
  std::vector<WorkerEvent> events;
  std::vector<std::unique_ptr<Job>> bounced;
  std::unique_ptr<Dispatcher> dispatcher;
};

TEST_F(DispatcherFlow, ARouteAtItsLimitWaitsWhileAnotherRouteOfTheHostFlows) {
  make();
  for (int i = 0; i < 5; ++i) dispatcher->enqueue(job(limited, i));
  for (int i = 0; i < 3; ++i) dispatcher->enqueue(job(fast, i));
  dispatch();
  EXPECT_EQ(calls_to(limited.url), 2u);
  EXPECT_EQ(calls_to(fast.url), 3u)
      << "the limited route's waiting jobs do not hold the host's queue";
  EXPECT_TRUE(bounced.empty()) << "a route at its limit waits, it does not bounce";
  complete(0, 200);  // a call of the limited route ends: the next one starts, in order
  dispatch();
  EXPECT_EQ(calls_to(limited.url), 3u);
  // Shutdown gives every waiting job back.
  EXPECT_EQ(dispatcher->take_unsent().size(), 2u);
}

TEST_F(DispatcherFlow, ARouteRateSpacesItsCalls) {
  limited.max_in_flight = 0;
  limited.rate_per_second = 1;  // burst 1
  make();
  for (int i = 0; i < 3; ++i) dispatcher->enqueue(job(limited, i));
  dispatch();
  EXPECT_EQ(sender.calls.size(), 1u);
  now += 999;
  dispatch();
  EXPECT_EQ(sender.calls.size(), 1u);
  now += 1;
  dispatch();
  EXPECT_EQ(sender.calls.size(), 2u);
  EXPECT_TRUE(bounced.empty());
}

TEST_F(DispatcherFlow, A429CutsTheHostLimitAndRetryAfterPausesTheWholeHost) {
  make();
  for (int i = 0; i < 20; ++i) dispatcher->enqueue(job(fast, i));
  dispatch();
  ASSERT_EQ(sender.calls.size(), 8u);  // the configured maximum
  std::vector<std::string> flow;
  dispatcher->on_flow_event([&](std::string_view host, std::string_view what) {
    flow.push_back(std::string(host) + " " + std::string(what));
  });
  now += 10;
  complete(0, 429, "2");
  EXPECT_EQ(dispatcher->host_limit("h:80"), 4);
  EXPECT_EQ(flow, (std::vector<std::string>{"h:80 429", "h:80 pause"}));
  complete(1, 503);  // a call started before the cut: no second cut
  EXPECT_EQ(flow.size(), 2u);
  EXPECT_EQ(dispatcher->host_limit("h:80"), 4);
  for (std::size_t i = 2; i < 8; ++i) complete(i, 200);
  dispatch();
  EXPECT_EQ(sender.calls.size(), 8u) << "paused by Retry-After: no call to the host";
  now += 1990;
  dispatch();
  EXPECT_EQ(sender.calls.size(), 8u);
  now += 10;
  dispatch();
  // After the pause: the cut limit, 4, grown by 6 successes to 5.3.
  EXPECT_EQ(sender.calls.size(), 13u);
  EXPECT_TRUE(bounced.empty());
}

// A host paused for long (Retry-After longer than kDeferPauseMs) has its jobs deferred to a retry
// tier until the pause ends, as for an open circuit: waiting in the queue, each held one of
// max_in_flight for the whole pause, and enough of them stopped the worker's intake for every
// host. Another host's jobs go on; a shorter pause is still waited out (the test above).
TEST_F(DispatcherFlow, AHostPausedForLongHasItsJobsDeferredUntilThePauseEnds) {
  RouteConfig other = fast;
  other.name = "other";
  other.url = "http://o/";
  other.host_key = "o:80";
  make();
  for (int i = 0; i < 3; ++i) dispatcher->enqueue(job(fast, i));
  dispatch();
  ASSERT_EQ(sender.calls.size(), 3u);
  complete(0, 503, "3600");  // paused for max_pause_seconds: 30 s
  const int64_t pause_end = now + 30'000;
  for (int i = 3; i < 7; ++i) dispatcher->enqueue(job(fast, i));
  auto o = job(other, 100);
  o->d.host_key = "o:80";
  dispatcher->enqueue(std::move(o));
  dispatch();
  ASSERT_EQ(bounced.size(), 4u) << "the paused host's jobs wait in the queue";
  for (const auto& j : bounced) {
    EXPECT_TRUE(j->deferred_for_pause);
    EXPECT_EQ(j->circuit_open_until_ms, pause_end);
  }
  EXPECT_EQ(calls_to("http://o/"), 1u) << "another host's job is sent";
  EXPECT_TRUE(dispatcher->take_unsent().empty()) << "nothing left waiting for the pause";
  bounced.clear();
  // kDeferPauseMs left: waited out here.
  now += 30'000 - Dispatcher::kDeferPauseMs;
  dispatcher->enqueue(job(fast, 7));
  dispatch();
  EXPECT_TRUE(bounced.empty());
  EXPECT_EQ(calls_to(fast.url), 3u);
  now = pause_end;
  dispatch();
  EXPECT_EQ(calls_to(fast.url), 4u);
}

TEST_F(DispatcherFlow, A429IsFlowControlNotAFailureOfTheHost) {
  config.worker.breaker_failure_threshold = 2;
  make();
  for (int i = 0; i < 20; ++i) dispatcher->enqueue(job(fast, i));
  dispatch();
  for (std::size_t i = 0; i < 8; ++i) complete(i, 429);
  EXPECT_EQ(dispatcher->circuit_counts().open, 0u) << "eight 429s opened the circuit";
  dispatch();
  EXPECT_TRUE(bounced.empty());
  EXPECT_GT(sender.calls.size(), 8u);
}

// A half-open circuit's probe that the SSRF guard refused reached no host: it neither closes
// the circuit as a success would nor holds the next probe back. A closed circuit's failure count
// is not reset by a refused certificate as a success would reset it.
TEST_F(DispatcherFlow, AProbeTheGuardRefusedIsNotASuccessOfTheHost) {
  config.worker.breaker_failure_threshold = 2;
  config.worker.breaker_cooldown_ms = 1000;
  config.worker.per_host_max_in_flight = 64;
  config.worker.adaptive_limit.enabled = false;
  make();
  dispatcher->enqueue(job(fast, 0));
  dispatcher->enqueue(job(fast, 1));
  dispatch();
  ASSERT_EQ(sender.calls.size(), 2u);
  complete(0, 0, std::nullopt, TransportError::kConnectFailed);
  complete(1, 0, std::nullopt, TransportError::kConnectFailed);
  ASSERT_EQ(dispatcher->circuit_counts().open, 1u);
  for (int i = 2; i < 4; ++i) dispatcher->enqueue(job(fast, i));
  now += 1000;
  dispatch();
  ASSERT_EQ(sender.calls.size(), 3u) << "one probe";
  complete(2, 0, std::nullopt, TransportError::kBlockedBySsrfGuard);
  EXPECT_EQ(dispatcher->circuit_counts().half_open, 1u) << "a refused probe closed the circuit";
  dispatch();
  ASSERT_EQ(sender.calls.size(), 4u) << "the next probe was held back";
  complete(3, 200);
  EXPECT_EQ(dispatcher->circuit_counts().half_open, 0u);

  // Closed again: one failure, a refused certificate, one failure: the circuit opens.
  for (int i = 4; i < 7; ++i) dispatcher->enqueue(job(fast, i));
  dispatch();
  ASSERT_EQ(sender.calls.size(), 7u);
  complete(4, 0, std::nullopt, TransportError::kConnectFailed);
  complete(5, 0, std::nullopt, TransportError::kTlsFailed);
  complete(6, 0, std::nullopt, TransportError::kConnectFailed);
  EXPECT_EQ(dispatcher->circuit_counts().open, 1u)
      << "a refused certificate reset the failure count as a success";
}

TEST_F(DispatcherFlow, AHostNoRouteNamesIsOtherInMetrics) {
  config.routes.clear();  // e.g. a call's host, which comes from a request
  make();
  std::vector<std::string> flow;
  dispatcher->on_flow_event([&](std::string_view host, std::string_view what) {
    flow.push_back(std::string(host) + " " + std::string(what));
  });
  dispatcher->enqueue(job(fast, 0));
  dispatch();
  complete(0, 429);
  EXPECT_EQ(flow, (std::vector<std::string>{"other 429"}));
  int reported = 0;
  dispatcher->each_host_limit([&](const std::string&, int) { ++reported; });
  EXPECT_EQ(reported, 0);
  EXPECT_EQ(dispatcher->host_limit("h:80"), 4) << "the limit itself adapts all the same";
}

TEST_F(DispatcherFlow, WithoutAdaptationA429ChangesNothing) {
  config.worker.adaptive_limit.enabled = false;
  make();
  for (int i = 0; i < 20; ++i) dispatcher->enqueue(job(fast, i));
  dispatch();
  complete(0, 429, "2");
  dispatch();
  EXPECT_EQ(sender.calls.size(), 9u);
  EXPECT_EQ(dispatcher->host_limit("h:80"), 8);
}

// The deliveries deferred during one open spell of a host's circuit come back spread over the
// cooldown that follows its turn to half-open, not all at that moment: there one probe goes out
// and the rest wait in the worker for its answer, counted in its max_in_flight. The old
// dispatcher deferred every one of them to the half-open moment itself.
TEST_F(DispatcherFlow, DeferralsOfOneOpenSpellAreSpreadOverTheCooldownAfterItTurnsHalfOpen) {
  breaker_config();
  int draws = 0;
  rand01 = [&draws] { return static_cast<double>(draws++ % 100) / 100.0; };
  make();
  ASSERT_NO_FATAL_FAILURE(open_circuit());
  const int64_t half_open_at = now + 20'000;
  now += 5'000;
  for (int i = 0; i < 100; ++i) dispatcher->enqueue(job(fast, i));
  dispatch();
  ASSERT_EQ(bounced.size(), 100u);
  std::set<int64_t> due;
  for (const auto& j : bounced) {
    EXPECT_GE(j->circuit_open_until_ms, half_open_at) << "due before the circuit turns half-open";
    EXPECT_LT(j->circuit_open_until_ms, half_open_at + 20'000) << "due past one cooldown after";
    due.insert(j->circuit_open_until_ms);
  }
  EXPECT_EQ(due.size(), 100u) << "deferrals of one open spell share their due time";
  EXPECT_EQ(*due.begin(), half_open_at);
  EXPECT_EQ(*due.rbegin(), half_open_at + 19'800);
  EXPECT_EQ(sender.calls.size(), 2u) << "called a host whose circuit is open";
}

// A deferral never comes back after its delivery's max_age ends: the spread stops there, and a
// delivery whose max_age ends before the half-open moment is due then (decide() dead-letters it).
TEST_F(DispatcherFlow, ASpreadDeferralStaysWithinTheDeliveryMaxAge) {
  breaker_config();
  config.retry.max_age_seconds = 60;
  rand01 = [] { return 0.99; };
  make();
  ASSERT_NO_FATAL_FAILURE(open_circuit());
  const int64_t half_open_at = now + 20'000;
  auto young = job(fast, 1);
  auto ageing = job(fast, 2);
  ageing->d.received_at_ms = half_open_at + 5'000 - 60'000;  // 5 s of age left at half-open
  auto old = job(fast, 3);
  old->d.received_at_ms = half_open_at - 1'000 - 60'000;  // none left by then
  dispatcher->enqueue(std::move(young));
  dispatcher->enqueue(std::move(ageing));
  dispatcher->enqueue(std::move(old));
  dispatch();
  ASSERT_EQ(bounced.size(), 3u);
  EXPECT_EQ(bounced[0]->circuit_open_until_ms, half_open_at + 19'800);
  EXPECT_EQ(bounced[1]->circuit_open_until_ms, half_open_at + 5'000) << "spread past its max_age";
  EXPECT_EQ(bounced[2]->circuit_open_until_ms, half_open_at);
}

// The wall clock stepped back an hour (an NTP correction) while a host's circuit is open: the
// circuit runs on the steady clock, so a deferral is due when the rest of the cooldown is over,
// published in Unix ms, and the probe goes out once the cooldown has passed on the steady clock.
// The old dispatcher ran the breaker on the wall clock: the circuit stayed open an hour more, and
// its deferrals were given an hour to wait (dead-lettered as max_age when that was past it).
TEST_F(DispatcherFlow, AWallClockSteppedBackLeavesTheCircuitToTheSteadyClock) {
  breaker_config();
  own_steady = true;
  rand01 = [] { return 0.0; };  // due at the half-open moment itself
  make();
  ASSERT_NO_FATAL_FAILURE(open_circuit());
  now -= 3'600'000;
  steady_now += 5'000;
  dispatcher->enqueue(job(fast, 0));
  dispatch();
  ASSERT_EQ(bounced.size(), 1u);
  EXPECT_EQ(bounced[0]->circuit_open_until_ms, now + 15'000)
      << "the rest of the cooldown, as a Unix time";
  const HostStateRow row = host_state();
  EXPECT_EQ(row.circuit, "open");
  EXPECT_EQ(row.open_until_ms, now + 15'000) << "published open_until is not Unix ms";
  now += 15'000;
  steady_now += 15'000;
  dispatcher->enqueue(job(fast, 1));
  dispatch();
  ASSERT_EQ(sender.calls.size(), 3u) << "no probe after the cooldown on the steady clock";
  EXPECT_EQ(bounced.size(), 1u);
  complete(2, 200);
  EXPECT_EQ(dispatcher->circuit_counts().open + dispatcher->circuit_counts().half_open, 0u)
      << "the probe's success did not close the circuit";
}

// The same for a Retry-After pause: it ends after its delay on the steady clock, and is published
// in Unix ms. The old dispatcher paused the host until the wall clock caught up, an hour more.
TEST_F(DispatcherFlow, AWallClockSteppedBackDoesNotStretchARetryAfterPause) {
  own_steady = true;
  make();
  for (int i = 0; i < 3; ++i) dispatcher->enqueue(job(fast, i));
  dispatch();
  ASSERT_EQ(sender.calls.size(), 3u);
  complete(0, 429, "2");
  EXPECT_EQ(host_state().paused_until_ms, now + 2'000);
  now -= 3'600'000;
  steady_now += 1'999;
  dispatcher->enqueue(job(fast, 3));
  dispatch();
  EXPECT_EQ(sender.calls.size(), 3u) << "paused by Retry-After: no call to the host";
  steady_now += 1;
  dispatch();
  EXPECT_EQ(sender.calls.size(), 4u) << "still paused after 2 s on the steady clock";
}

// Nor does it stall the per-host rate or a route's: their buckets refill on the steady clock. The
// old ones waited for the wall clock to catch up before minting a token.
TEST_F(DispatcherFlow, AWallClockSteppedBackStallsNoRate) {
  config.worker.per_host_rate_per_second = 1;
  limited.max_in_flight = 0;
  limited.rate_per_second = 1;
  own_steady = true;
  make();
  dispatcher->enqueue(job(fast, 0));
  dispatcher->enqueue(job(fast, 1));
  dispatch();
  ASSERT_EQ(sender.calls.size(), 1u) << "one call a second to the host";
  now -= 3'600'000;
  steady_now += 1'000;
  dispatch();
  EXPECT_EQ(sender.calls.size(), 2u) << "the host's rate waits for the wall clock";

  config.worker.per_host_rate_per_second = 0;
  dispatcher->reconfigure(config);
  dispatcher->enqueue(job(limited, 2));
  dispatcher->enqueue(job(limited, 3));
  dispatch();
  ASSERT_EQ(sender.calls.size(), 3u) << "one call a second of the route";
  now -= 3'600'000;
  steady_now += 1'000;
  dispatch();
  EXPECT_EQ(sender.calls.size(), 4u) << "the route's rate waits for the wall clock";
}

}  // namespace
}  // namespace hookrelay
