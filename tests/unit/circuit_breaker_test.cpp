#include "worker/circuit_breaker.h"

#include <gtest/gtest.h>

namespace hookrelay {
namespace {

using State = CircuitBreaker::State;

class CircuitBreakerTest : public ::testing::Test {
 protected:
  int64_t now_ = 1'000'000;
  CircuitBreaker breaker_{{3, 10'000}, [this] { return now_; }};

  // What the dispatcher does with one call: ask, and start it when it may go.
  bool allow(const std::string& host) {
    if (breaker_.gate(host, now_) != CircuitBreaker::Gate::kCall) return false;
    breaker_.started(host, now_);
    return true;
  }

  void fail_times(const std::string& host, int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(allow(host));
      breaker_.record(host, false, now_);
    }
  }
};

TEST_F(CircuitBreakerTest, UnknownHostIsClosed) {
  EXPECT_EQ(breaker_.state("a.example"), State::kClosed);
  EXPECT_TRUE(allow("a.example"));
}

TEST_F(CircuitBreakerTest, OpensAfterConsecutiveFailures) {
  fail_times("a", 2);
  EXPECT_EQ(breaker_.state("a"), State::kClosed);
  fail_times("a", 1);
  EXPECT_EQ(breaker_.state("a"), State::kOpen);
  EXPECT_FALSE(allow("a"));
  EXPECT_TRUE(allow("b"));  // per host
}

TEST_F(CircuitBreakerTest, OpenUntilIsWhenTheProbeMayStart) {
  EXPECT_EQ(breaker_.open_until("a"), 0) << "an unknown host is not open";
  fail_times("a", 3);
  EXPECT_EQ(breaker_.open_until("a"), 1'000'000 + 10'000);
  now_ += 4'000;
  EXPECT_EQ(breaker_.open_until("a"), 1'000'000 + 10'000) << "the cool-down does not move";
  now_ += 6'000;
  EXPECT_EQ(breaker_.open_until("a"), 0) << "half-open is not open";
  ASSERT_TRUE(allow("a"));  // the probe
  EXPECT_FALSE(allow("a"));
  EXPECT_EQ(breaker_.open_until("a"), 0) << "half-open with its probe out";
  breaker_.record("a", false, now_);
  EXPECT_EQ(breaker_.open_until("a"), now_ + 10'000) << "a failed probe opens it again";
}

TEST_F(CircuitBreakerTest, SuccessResetsTheFailureCount) {
  fail_times("a", 2);
  breaker_.record("a", true, now_);
  fail_times("a", 2);
  EXPECT_EQ(breaker_.state("a"), State::kClosed);
}

TEST_F(CircuitBreakerTest, RefusesForTheCooldownThenLetsOneProbeThrough) {
  fail_times("a", 3);
  now_ += 9'999;
  EXPECT_FALSE(allow("a"));
  EXPECT_EQ(breaker_.state("a"), State::kOpen);
  now_ += 1;
  EXPECT_EQ(breaker_.state("a"), State::kHalfOpen);
  EXPECT_TRUE(allow("a"));   // the probe
  EXPECT_FALSE(allow("a"));  // only one
  EXPECT_FALSE(allow("a"));
}

TEST_F(CircuitBreakerTest, ProbeSuccessCloses) {
  fail_times("a", 3);
  now_ += 10'000;
  ASSERT_TRUE(allow("a"));
  breaker_.record("a", true, now_);
  EXPECT_EQ(breaker_.state("a"), State::kClosed);
  EXPECT_TRUE(allow("a"));
  EXPECT_TRUE(allow("a"));
  fail_times("a", 2);  // the count started again from zero
  EXPECT_EQ(breaker_.state("a"), State::kClosed);
}

TEST_F(CircuitBreakerTest, ProbeFailureReopensForAFullCooldown) {
  fail_times("a", 3);
  now_ += 10'000;
  ASSERT_TRUE(allow("a"));
  now_ += 500;
  breaker_.record("a", false, now_);
  EXPECT_EQ(breaker_.state("a"), State::kOpen);
  now_ += 9'999;
  EXPECT_FALSE(allow("a"));
  now_ += 1;
  EXPECT_TRUE(allow("a"));
}

TEST_F(CircuitBreakerTest, LostProbeIsReplacedAfterAnotherCooldown) {
  fail_times("a", 3);
  now_ += 10'000;
  ASSERT_TRUE(allow("a"));  // never reports
  now_ += 9'999;
  EXPECT_FALSE(allow("a"));
  now_ += 1;
  EXPECT_TRUE(allow("a"));
  EXPECT_FALSE(allow("a"));
}

// A host answering slower than the cooldown: its first probe is replaced by a second before it
// answers. The first probe's answer still decides, whichever it is; only the newest probe's
// counting, the circuit never closed nor opened again, and a probe went out every cooldown.
TEST_F(CircuitBreakerTest, AProbeSlowerThanTheCooldownStillDecides) {
  fail_times("a", 3);
  now_ += 10'000;
  const int64_t first_probe = now_;
  ASSERT_TRUE(allow("a"));
  now_ += 10'000;
  ASSERT_TRUE(allow("a"));  // its replacement
  now_ += 5'000;
  breaker_.record("a", true, first_probe);
  EXPECT_EQ(breaker_.state("a"), State::kClosed) << "the slow probe's success was ignored";

  fail_times("a", 3);
  now_ += 10'000;
  const int64_t slow = now_;
  ASSERT_TRUE(allow("a"));
  now_ += 10'000;
  ASSERT_TRUE(allow("a"));
  breaker_.record("a", false, slow);
  EXPECT_EQ(breaker_.state("a"), State::kOpen) << "the slow probe's failure was ignored";
  EXPECT_EQ(breaker_.open_until("a"), now_ + 10'000);
}

TEST_F(CircuitBreakerTest, ResultsArrivingWhileOpenAreIgnored) {
  fail_times("a", 3);
  breaker_.record("a", true, now_ - 1);  // a call started before the circuit opened
  EXPECT_EQ(breaker_.state("a"), State::kOpen);
  breaker_.record("a", false, now_ - 1);
  now_ += 10'000;
  EXPECT_EQ(breaker_.state("a"), State::kHalfOpen);  // the cooldown was not restarted
}

// A call started before the circuit opened may answer after its cooldown, while the probe is
// out: only the probe's answer decides.
TEST_F(CircuitBreakerTest, OnlyTheProbesAnswerDecidesAHalfOpenCircuit) {
  const int64_t before_open = now_;
  fail_times("a", 3);
  now_ += 10'000;
  breaker_.record("a", false, before_open);  // half-open, no probe yet
  EXPECT_EQ(breaker_.state("a"), State::kHalfOpen);
  ASSERT_TRUE(allow("a"));  // the probe
  breaker_.record("a", false, before_open);
  EXPECT_EQ(breaker_.gate("a", now_), CircuitBreaker::Gate::kProbeOut)
      << "a call from before the circuit opened was taken for the probe's answer";
  breaker_.record("a", true, now_);
  EXPECT_EQ(breaker_.state("a"), State::kClosed);
}

// gate() hands nothing out: a caller whose other limits hold the call back leaves the probe for
// the next call, which started() marks when it really goes.
TEST_F(CircuitBreakerTest, GateHandsOutNoProbeUntilACallStarts) {
  fail_times("a", 3);
  EXPECT_EQ(breaker_.gate("a", now_), CircuitBreaker::Gate::kOpen);
  now_ += 10'000;
  EXPECT_EQ(breaker_.gate("a", now_), CircuitBreaker::Gate::kCall);
  EXPECT_EQ(breaker_.gate("a", now_), CircuitBreaker::Gate::kCall) << "asking spent the probe";
  breaker_.started("a", now_);
  EXPECT_EQ(breaker_.gate("a", now_), CircuitBreaker::Gate::kProbeOut);
  EXPECT_EQ(breaker_.gate("b", now_), CircuitBreaker::Gate::kCall);
  breaker_.started("b", now_);  // a closed host: nothing to remember
  EXPECT_EQ(breaker_.counts().closed, 0u);
}

// A caller's gate(), deferral and started() use the one time it read: a cool-down that ends
// between them cannot make the gate hand out a call that started() does not count as the probe.
TEST_F(CircuitBreakerTest, GateOpenUntilAndStartedAgreeOnTheTimeTheyAreGiven) {
  const int64_t opened = now_;
  fail_times("a", 3);
  const int64_t before = opened + 9'999;
  now_ = opened + 10'001;  // the breaker's own clock is already past the cool-down
  EXPECT_EQ(breaker_.gate("a", before), CircuitBreaker::Gate::kOpen);
  EXPECT_EQ(breaker_.open_until("a", before), opened + 10'000);
  const int64_t at = opened + 10'000;
  EXPECT_EQ(breaker_.gate("a", at), CircuitBreaker::Gate::kCall);
  breaker_.started("a", at);
  EXPECT_EQ(breaker_.gate("a", at), CircuitBreaker::Gate::kProbeOut);
  breaker_.record("a", true, at);
  EXPECT_EQ(breaker_.state("a"), State::kClosed) << "the probe's answer was not taken";
}

TEST_F(CircuitBreakerTest, CountsHostsPerState) {
  fail_times("open", 3);
  fail_times("half", 3);
  now_ += 5'000;
  fail_times("later", 3);
  fail_times("flaky", 1);
  now_ += 5'000;  // "open" and "half" are past their cooldown, "later" is not
  ASSERT_TRUE(allow("half"));
  breaker_.record("healthy", true, now_);
  CircuitBreaker::Counts c = breaker_.counts();
  EXPECT_EQ(c.closed, 1u);     // flaky; healthy hosts are not remembered
  EXPECT_EQ(c.open, 1u);       // later
  EXPECT_EQ(c.half_open, 2u);  // open (probe available) and half (probe out)
}

TEST(CircuitBreaker, ThresholdZeroNeverOpens) {
  int64_t now = 0;
  CircuitBreaker b({0, 1000}, [&] { return now; });
  for (int i = 0; i < 100; ++i) b.record("a", false, now);
  EXPECT_EQ(b.gate("a", now), CircuitBreaker::Gate::kCall);
  EXPECT_EQ(b.state("a"), CircuitBreaker::State::kClosed);
}

TEST(CircuitBreaker, StateNames) {
  EXPECT_STREQ(circuit_state_name(CircuitBreaker::State::kClosed), "closed");
  EXPECT_STREQ(circuit_state_name(CircuitBreaker::State::kOpen), "open");
  EXPECT_STREQ(circuit_state_name(CircuitBreaker::State::kHalfOpen), "half_open");
}

// A closed host that failed a few times and was never called again (a call to a host that is
// gone) is forgotten once idle long enough; one still in use is kept. An open host is kept for
// forget_open_after_ms after its last call or deferral: its deliveries may be waiting in a long
// retry tier. The old breaker kept every host for good: memory grew with each dead host calls
// named.
TEST_F(CircuitBreakerTest, PruneForgetsHostsIdleLongEnoughAndKeepsThoseInUse) {
  constexpr int64_t kHour = 3'600'000;
  breaker_.set_options({3, 10'000, kHour});
  for (int i = 0; i < 1000; ++i) fail_times("gone-" + std::to_string(i) + ":80", 1);
  fail_times("down", 3);       // open, nothing comes to it any more
  fail_times("deferring", 3);  // open, its deliveries still deferred
  EXPECT_EQ(breaker_.counts().closed, 1000u);
  now_ += CircuitBreaker::kForgetIdleMs - 1;
  fail_times("busy", 1);
  breaker_.prune(now_);
  EXPECT_EQ(breaker_.counts().closed, 1001u) << "forgotten before it was idle long enough";
  now_ += 1;
  breaker_.prune(now_);
  auto c = breaker_.counts();
  EXPECT_EQ(c.closed, 1u) << "idle hosts were kept";
  EXPECT_EQ(c.open + c.half_open, 2u) << "an open circuit was forgotten with a closed host's";
  fail_times("busy", 2);
  EXPECT_EQ(breaker_.state("busy"), State::kOpen) << "a host in use lost its failures";
  now_ += kHour - CircuitBreaker::kForgetIdleMs - 10;
  breaker_.deferred("deferring", now_);
  now_ += 10;
  breaker_.prune(now_);
  EXPECT_EQ(breaker_.state("down"), State::kClosed) << "kept past forget_open_after_ms";
  EXPECT_EQ(breaker_.state("deferring"), State::kHalfOpen)
      << "a host still deferring was forgotten";
}

}  // namespace
}  // namespace hookrelay
