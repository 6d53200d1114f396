// decide(): the one place a delivery's next state is chosen, for every path.
#include "worker/attempt_decision.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace hookrelay {
namespace {

constexpr int64_t kDecisionNow = 1'700'000'000'000;

class Decide : public ::testing::Test {
 protected:
  Decide() {
    d.attempt = 1;
    d.received_at_ms = kDecisionNow;
  }
  Decision http(int status, TransportError err = TransportError::kNone) {
    return decide(d, AttemptResult::http(err, status, std::nullopt), policy, kDecisionNow,
                  [] { return 0.5; });
  }
  Decision without_attempt(AttemptResult::Kind kind) {
    return decide(d, AttemptResult::none(kind), policy, kDecisionNow, [] { return 0.5; });
  }

  Delivery d;
  RetryPolicy policy{{5, 30, 120}, 3, 86400, {}};
};

TEST_F(Decide, TwoHundredSucceeds) {
  auto r = http(200);
  EXPECT_EQ(r.next, NextState::kSucceeded);
  EXPECT_EQ(r.attempt, AttemptOutcome::kSucceeded);
  EXPECT_TRUE(r.spends_attempt);
}

TEST_F(Decide, FourHundredIsDeadAsPermanent) {
  auto r = http(400);
  EXPECT_EQ(r.next, NextState::kDead);
  EXPECT_EQ(r.reason, DeadReason::kPermanent);
  EXPECT_EQ(r.attempt, AttemptOutcome::kPermanent);
}

TEST_F(Decide, RetryableGoesToATierWithItsDueTime) {
  auto r = http(503);
  EXPECT_EQ(r.next, NextState::kRetrying);
  EXPECT_EQ(r.attempt, AttemptOutcome::kRetryable);
  EXPECT_EQ(r.tier, 0);
  EXPECT_EQ(r.due_at_ms, kDecisionNow + 2500);  // half of the first tier's 5 s (rand 0.5)
}

TEST_F(Decide, RetryAfterRaisesTheDelay) {
  auto r = decide(d, AttemptResult::http(TransportError::kNone, 429, 60'000), policy, kDecisionNow,
                  [] { return 0.0; });
  EXPECT_EQ(r.next, NextState::kRetrying);
  EXPECT_EQ(r.tier, 2);
  EXPECT_EQ(r.due_at_ms, kDecisionNow + 60'000);
}

TEST_F(Decide, LastAttemptIsDeadAsMaxAttempts) {
  d.attempt = 3;
  auto r = http(500);
  EXPECT_EQ(r.next, NextState::kDead);
  EXPECT_EQ(r.reason, DeadReason::kMaxAttempts);
  EXPECT_STREQ(dead_reason_name(r.reason), "max_attempts");
}

TEST_F(Decide, TooOldIsDeadAsMaxAge) {
  d.received_at_ms = kDecisionNow - 86'400'000;
  auto r = http(500, TransportError::kTimeout);
  EXPECT_EQ(r.next, NextState::kDead);
  EXPECT_EQ(r.reason, DeadReason::kMaxAge);
}

TEST_F(Decide, ABounceWaitsOnTheFirstTierAndSpendsNoAttempt) {
  d.attempt = 3;  // even on the last attempt: no attempt was made
  auto r = without_attempt(AttemptResult::Kind::kNotAttempted);
  EXPECT_EQ(r.next, NextState::kRetrying);
  EXPECT_EQ(r.tier, 0);
  EXPECT_EQ(r.due_at_ms, kDecisionNow + 5000);
  EXPECT_FALSE(r.spends_attempt);
  EXPECT_FALSE(r.attempt) << "nothing to record";
}

// An open circuit: the delivery waits until the circuit turns half-open, in the tier that covers
// that wait, not on the first tier again and again.
TEST_F(Decide, AnOpenCircuitWaitsOutItsCoolDownInTheTierThatCoversIt) {
  d.attempt = 3;
  auto r = decide(d, AttemptResult::circuit_open(20'000), policy, kDecisionNow, [] { return 0.5; });
  EXPECT_EQ(r.next, NextState::kRetrying);
  EXPECT_EQ(r.due_at_ms, kDecisionNow + 20'000);
  EXPECT_EQ(r.tier, 1) << "20 s waits in the 30 s tier";
  EXPECT_FALSE(r.spends_attempt);
  EXPECT_FALSE(r.attempt) << "nothing to record";
}

// A host whose circuit stays open holds its deliveries back without an attempt; they still end
// at max_age instead of waiting for the circuit for ever.
TEST_F(Decide, AnOpenCircuitPastMaxAgeIsDeadAsMaxAge) {
  d.received_at_ms = kDecisionNow - 86'400'000 + 10'000;  // 10 s of its day left
  auto r = decide(d, AttemptResult::circuit_open(20'000), policy, kDecisionNow, [] { return 0.5; });
  EXPECT_EQ(r.next, NextState::kDead);
  EXPECT_EQ(r.reason, DeadReason::kMaxAge);
  EXPECT_FALSE(r.attempt.has_value()) << "no attempt was made";
  r = decide(d, AttemptResult::circuit_open(5'000), policy, kDecisionNow, [] { return 0.5; });
  EXPECT_EQ(r.next, NextState::kRetrying) << "due within its age: it waits";
}

// A call request's own max_attempts and max_age_seconds bound its retries, not the global ones.
TEST_F(Decide, ACallFollowsItsOwnMaxAttemptsAndMaxAge) {
  d.kind = "call";
  d.max_attempts = 1;
  d.max_age_seconds = 86400;
  auto r = http(503);
  EXPECT_EQ(r.next, NextState::kDead);
  EXPECT_EQ(r.reason, DeadReason::kMaxAttempts);
  d.max_attempts = 10;
  d.attempt = 5;  // past the global 3
  EXPECT_EQ(http(503).next, NextState::kRetrying);
  d.max_age_seconds = 60;
  d.received_at_ms = kDecisionNow - 59'000;
  r = http(503);
  EXPECT_EQ(r.next, NextState::kDead);
  EXPECT_EQ(r.reason, DeadReason::kMaxAge);
}

TEST_F(Decide, AnOpenCircuitWaitsAtMostTheLongestTier) {
  auto r =
      decide(d, AttemptResult::circuit_open(600'000), policy, kDecisionNow, [] { return 0.5; });
  ASSERT_EQ(r.next, NextState::kRetrying);
  EXPECT_EQ(r.tier, 2);
  EXPECT_EQ(r.due_at_ms, kDecisionNow + 120'000);
}

TEST_F(Decide, AnOpenCircuitOfARouteWithItsOwnScheduleWaitsInTheGlobalTiers) {
  RouteConfig route;
  route.retry = RetryConfig{{1, 2}, 5, 3600};
  d.route = &route;
  auto r = decide(d, AttemptResult::circuit_open(25'000), policy, kDecisionNow, [] { return 0.5; });
  ASSERT_EQ(r.next, NextState::kRetrying);
  EXPECT_EQ(r.tier, 1);
  EXPECT_EQ(r.due_at_ms, kDecisionNow + 25'000);
}

// The deliveries deferred during one open spell of their host's circuit come back spread over the
// cooldown after it turns half-open, each within [open_until, open_until + cooldown), and decide()
// keeps the moment drawn. Coming back all at the half-open moment, they waited in the worker for
// the one probe's answer, filling its max_in_flight.
TEST_F(Decide, CircuitDeferralsOfOneOpenSpellComeBackSpreadOverTheCooldownAfterIt) {
  const int64_t open_until = kDecisionNow + 15'000;
  const int64_t cooldown = 20'000;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  auto rand01 = [&] { return uniform(rng); };
  std::set<int64_t> due;
  int early = 0;  // in the first tenth of the window
  for (int i = 0; i < 1000; ++i) {
    const int64_t at = circuit_due_at_ms(d, policy, open_until, cooldown, rand01);
    ASSERT_GE(at, open_until);
    ASSERT_LT(at, open_until + cooldown);
    due.insert(at);
    early += at < open_until + cooldown / 10 ? 1 : 0;
    auto r = decide(d, AttemptResult::circuit_open(at - kDecisionNow), policy, kDecisionNow,
                    [] { return 0.5; });
    ASSERT_EQ(r.next, NextState::kRetrying);
    ASSERT_EQ(r.due_at_ms, at);
    ASSERT_EQ(r.tier, at - kDecisionNow <= 30'000 ? 1 : 2);
  }
  EXPECT_GT(due.size(), 900u) << "deferrals of one open spell share their due time";
  EXPECT_LT(early, 200) << "a tenth of the window took " << early << " of 1000";
  EXPECT_GT(early, 50);
  // A source at its bounds stays within the window.
  EXPECT_EQ(circuit_due_at_ms(d, policy, open_until, cooldown, [] { return 0.0; }), open_until);
  EXPECT_EQ(circuit_due_at_ms(d, policy, open_until, cooldown, [] { return 1.0; }),
            open_until + cooldown - 1);
}

// Spread, a deferral still never comes back after its delivery's max_age (the route's or the
// call's own where it has one): it is due when its age ends, and is attempted then. One whose age
// ends before the circuit turns half-open is due at the half-open moment, and dead as max_age.
TEST_F(Decide, ASpreadCircuitDeferralStaysWithinItsMaxAge) {
  const int64_t open_until = kDecisionNow + 15'000;
  auto late = [] { return 0.99; };
  d.received_at_ms = open_until + 5'000 - 86'400'000;  // 5 s of age left at half-open
  int64_t at = circuit_due_at_ms(d, policy, open_until, 20'000, late);
  EXPECT_EQ(at, open_until + 5'000);
  auto r = decide(d, AttemptResult::circuit_open(at - kDecisionNow), policy, kDecisionNow, late);
  EXPECT_EQ(r.next, NextState::kRetrying) << "dead-lettered for a moment drawn past its max_age";
  EXPECT_EQ(r.due_at_ms, open_until + 5'000);

  d.received_at_ms = open_until - 1'000 - 86'400'000;  // its age ends before half-open
  at = circuit_due_at_ms(d, policy, open_until, 20'000, late);
  EXPECT_EQ(at, open_until);
  r = decide(d, AttemptResult::circuit_open(at - kDecisionNow), policy, kDecisionNow, late);
  EXPECT_EQ(r.next, NextState::kDead);
  EXPECT_EQ(r.reason, DeadReason::kMaxAge);

  RouteConfig route;
  route.retry = RetryConfig{{5}, 5, 30};  // 30 s of age
  d.route = &route;
  d.received_at_ms = kDecisionNow;
  EXPECT_EQ(circuit_due_at_ms(d, policy, open_until, 20'000, late), kDecisionNow + 30'000);
  d.route = nullptr;
  d.kind = "call";
  d.max_age_seconds = 20;
  EXPECT_EQ(circuit_due_at_ms(d, policy, open_until, 20'000, late), kDecisionNow + 20'000);
}

TEST_F(Decide, ABounceWithNoTiersIsDead) {
  policy.schedule_seconds.clear();
  auto r = without_attempt(AttemptResult::Kind::kNotAttempted);
  EXPECT_EQ(r.next, NextState::kDead);
  EXPECT_EQ(r.reason, DeadReason::kNoSchedule);
}

TEST_F(Decide, EveryPathWithoutAnAttemptHasItsReason) {
  const std::pair<AttemptResult::Kind, const char*> cases[] = {
      {AttemptResult::Kind::kMalformed, "malformed"},
      {AttemptResult::Kind::kUnknownRoute, "unknown_route"},
      {AttemptResult::Kind::kAlreadyDead, "republished"},
      {AttemptResult::Kind::kStoreRejected, "store_rejected"},
      {AttemptResult::Kind::kProduceRejected, "produce_rejected"},
  };
  for (const auto& [kind, name] : cases) {
    auto r = without_attempt(kind);
    EXPECT_EQ(r.next, NextState::kDead) << name;
    EXPECT_STREQ(dead_reason_name(r.reason), name);
    EXPECT_FALSE(r.attempt) << name;
  }
}

TEST_F(Decide, ARouteWithItsOwnRetryFollowsItInTheGlobalTiers) {
  RouteConfig route;
  route.retry = RetryConfig{{20, 60}, 2, 600};  // global: tiers 5, 30, 120 s; 3 attempts
  d.route = &route;
  auto r = decide(d, AttemptResult::http(TransportError::kNone, 503, std::nullopt), policy,
                  kDecisionNow, [] { return 0.99; });
  ASSERT_EQ(r.next, NextState::kRetrying);
  EXPECT_EQ(r.due_at_ms, kDecisionNow + 19'800) << "the route's first delay (20 s), jittered";
  EXPECT_EQ(r.tier, 1) << "waits in the global 30 s tier, the smallest that covers 19.8 s";

  d.attempt = 2;  // the route allows 2 attempts where the global policy allows 3
  r = http(503);
  EXPECT_EQ(r.next, NextState::kDead);
  EXPECT_EQ(r.reason, DeadReason::kMaxAttempts);

  d.attempt = 1;
  d.received_at_ms = kDecisionNow - 595'000;  // 5 s left of the route's 600 s max age
  r = http(503);
  EXPECT_EQ(r.next, NextState::kDead);
  EXPECT_EQ(r.reason, DeadReason::kMaxAge);

  route.retry.reset();  // no retry of its own: the global policy
  r = http(503);
  EXPECT_EQ(r.next, NextState::kRetrying);
}

TEST_F(Decide, ABounceWaitsTheRoutesFirstDelayInTheTierThatCoversIt) {
  RouteConfig route;
  route.retry = RetryConfig{{60, 120}, 5, 3600};
  d.route = &route;
  auto r = without_attempt(AttemptResult::Kind::kNotAttempted);
  ASSERT_EQ(r.next, NextState::kRetrying);
  EXPECT_EQ(r.due_at_ms, kDecisionNow + 60'000);
  EXPECT_EQ(r.tier, 2) << "60 s waits in the global 120 s tier";
  EXPECT_FALSE(r.spends_attempt);
}

TEST(DecisionNames, AreTheDatabaseWords) {
  EXPECT_STREQ(next_state_name(NextState::kSucceeded), "succeeded");
  EXPECT_STREQ(next_state_name(NextState::kRetrying), "retrying");
  EXPECT_STREQ(next_state_name(NextState::kDead), "dead");
  EXPECT_STREQ(attempt_outcome_name(AttemptOutcome::kSucceeded), "succeeded");
  EXPECT_STREQ(attempt_outcome_name(AttemptOutcome::kRetryable), "retryable");
  EXPECT_STREQ(attempt_outcome_name(AttemptOutcome::kPermanent), "permanent");
}

}  // namespace
}  // namespace hookrelay
