// Route lifecycle rules: what suspends a route (410 Gone, the suspend_after bounds on the
// streak across workers), what a parked decision keeps, how one worker's attempts are
// summarised for Postgres, and RouteSync's local view against a store.
#include "worker/route_lifecycle.h"

#include <gtest/gtest.h>

#include <map>

#include "tests/unit/worker/fake_route_store.h"
#include "worker/route_sync.h"

namespace hookrelay {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;

TEST(RouteLifecycle, OnlyA410SuspendsByItsAnswer) {
  EXPECT_EQ(suspend_cause_of_answer(410), SuspendCause::kGone);
  for (int status : {0, 200, 404, 429, 500, 503}) {
    EXPECT_EQ(suspend_cause_of_answer(status), SuspendCause::kNone) << status;
  }
}

TEST(RouteLifecycle, ConsecutiveFailuresSuspendAtTheBound) {
  SuspendAfter rule{.consecutive_failures = 5, .or_failing_for_seconds = 0};
  EXPECT_EQ(suspend_cause_of_streak(rule, 4, kNow - 1000, kNow), SuspendCause::kNone);
  EXPECT_EQ(suspend_cause_of_streak(rule, 5, kNow - 1000, kNow),
            SuspendCause::kConsecutiveFailures);
  EXPECT_EQ(suspend_cause_of_streak(rule, 50, kNow - 1000, kNow),
            SuspendCause::kConsecutiveFailures);
}

TEST(RouteLifecycle, FailingForSuspendsOnceTheStreakIsOldEnough) {
  SuspendAfter rule{.consecutive_failures = 0, .or_failing_for_seconds = 60};
  EXPECT_EQ(suspend_cause_of_streak(rule, 3, kNow - 59'999, kNow), SuspendCause::kNone);
  EXPECT_EQ(suspend_cause_of_streak(rule, 3, kNow - 60'000, kNow), SuspendCause::kFailingFor);
  // No failure: nothing is failing, however old the last failure time was.
  EXPECT_EQ(suspend_cause_of_streak(rule, 0, kNow - 600'000, kNow), SuspendCause::kNone);
}

TEST(RouteLifecycle, EitherBoundSuspendsAndNoRuleNeverDoes) {
  SuspendAfter both{.consecutive_failures = 100, .or_failing_for_seconds = 10};
  EXPECT_EQ(suspend_cause_of_streak(both, 3, kNow - 11'000, kNow), SuspendCause::kFailingFor);
  EXPECT_EQ(suspend_cause_of_streak(both, 100, kNow, kNow), SuspendCause::kConsecutiveFailures);
  EXPECT_EQ(suspend_cause_of_streak(std::nullopt, 1'000'000, kNow - 86'400'000, kNow),
            SuspendCause::kNone);
}

TEST(RouteLifecycle, ReasonsNameTheBound) {
  SuspendAfter rule{.consecutive_failures = 5, .or_failing_for_seconds = 60};
  EXPECT_EQ(suspend_reason(SuspendCause::kGone, 0, 0, kNow, rule), "410 Gone from the receiver");
  EXPECT_EQ(suspend_reason(SuspendCause::kConsecutiveFailures, 7, kNow, kNow, rule),
            "7 consecutive failures (suspend_after.consecutive_failures: 5)");
  EXPECT_EQ(suspend_reason(SuspendCause::kFailingFor, 2, kNow - 61'000, kNow, rule),
            "failing for 61 s without a success (suspend_after.or_failing_for_seconds: 60)");
}

TEST(RouteLifecycle, AParkedDecisionKeepsTheAttemptItParks) {
  Decision attempted;
  attempted.next = NextState::kDead;
  attempted.attempt = AttemptOutcome::kPermanent;
  attempted.outcome = classify(TransportError::kNone, 410);
  attempted.spends_attempt = true;
  Decision parked = park_decision(attempted);
  EXPECT_EQ(parked.next, NextState::kParked);
  EXPECT_EQ(parked.attempt, AttemptOutcome::kPermanent);
  EXPECT_EQ(parked.outcome.label, attempted.outcome.label);

  Decision unattempted = park_decision(std::nullopt);
  EXPECT_EQ(unattempted.next, NextState::kParked);
  EXPECT_EQ(unattempted.attempt, AttemptOutcome::kParked);
  EXPECT_STREQ(next_state_name(unattempted.next), "parked");
  EXPECT_STREQ(attempt_outcome_name(*unattempted.attempt), "parked");
}

TEST(RouteLifecycle, OurOwnLimitsAreNotTheReceiversFailures) {
  Decision d;
  d.outcome = classify(TransportError::kCircuitOpen, 0);
  EXPECT_EQ(attempt_succeeded(d, TransportError::kCircuitOpen), std::nullopt);
  d.outcome = classify(TransportError::kRateLimited, 0);
  EXPECT_EQ(attempt_succeeded(d, TransportError::kRateLimited), std::nullopt);
  d.outcome = classify(TransportError::kTimeout, 0);
  EXPECT_EQ(attempt_succeeded(d, TransportError::kTimeout), false);
  d.outcome = classify(TransportError::kNone, 204);
  EXPECT_EQ(attempt_succeeded(d, TransportError::kNone), true);
}

TEST(RouteActivityLog, ASuccessRestartsTheCountFromTheFailuresAfterIt) {
  RouteActivityLog log;
  log.record("gh", "a", false, kNow);
  log.record("gh", "a", false, kNow + 1);
  log.record("gh", "a", true, kNow + 2);
  log.record("gh", "a", false, kNow + 3);
  log.record("gh", "b", false, kNow + 4);
  auto taken = log.take();
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0].route, "a");
  EXPECT_TRUE(taken[0].succeeded);
  EXPECT_EQ(taken[0].failures, 1);
  EXPECT_EQ(taken[0].first_failure_ms, kNow + 3);
  EXPECT_EQ(taken[1].route, "b");
  EXPECT_FALSE(taken[1].succeeded);
  EXPECT_EQ(taken[1].failures, 1);
  EXPECT_TRUE(log.empty());
}

TEST(RouteActivityLog, AFailedReportIsPutBackBeforeWhatCameSince) {
  RouteActivityLog log;
  log.record("gh", "a", false, kNow);
  log.record("gh", "b", false, kNow);
  auto failed = log.take();
  log.record("gh", "a", false, kNow + 10);  // more failures: they add up, the first stays
  log.record("gh", "b", true, kNow + 10);   // a success since: b's older failures no longer count
  log.restore(std::move(failed));
  auto taken = log.take();
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0].failures, 2);
  EXPECT_EQ(taken[0].first_failure_ms, kNow);
  EXPECT_FALSE(taken[0].succeeded);
  EXPECT_TRUE(taken[1].succeeded);
  EXPECT_EQ(taken[1].failures, 0);
}

class RouteSyncTest : public ::testing::Test {
 protected:
  prometheus::Registry registry;
  WorkerMetrics metrics{registry, 1};
  FakeRouteStore store;
  int64_t now = kNow;
  RouteSync sync{store, metrics, [this] { return now; }, {.worker_id = "w1"}};
};

TEST_F(RouteSyncTest, A410SuspendsHereAtOnceAndInPostgresAtTheNextRound) {
  auto gen = sync.generation();
  EXPECT_TRUE(sync.attempt("gh", "a", std::nullopt, false, 410, now));
  EXPECT_TRUE(sync.suspended("gh", "a"));
  EXPECT_FALSE(sync.suspended("gh", "b"));
  EXPECT_NE(sync.generation(), gen);
  EXPECT_EQ(store.row("gh", "a").state, "active");
  ASSERT_TRUE(sync.sync());
  EXPECT_EQ(store.row("gh", "a").state, "suspended");
  EXPECT_EQ(store.row("gh", "a").reason, "410 Gone from the receiver");
  EXPECT_EQ(store.row("gh", "a").suspended_by, "w1");
  EXPECT_TRUE(sync.suspended("gh", "a"));
}

TEST_F(RouteSyncTest, TheStreakAcrossWorkersReachesTheBound) {
  SuspendAfter rule{.consecutive_failures = 5, .or_failing_for_seconds = 0};
  store.row("gh", "a").failure_streak = 3;
  store.row("gh", "a").failing_since_ms = now;
  sync.attempt("gh", "a", rule, false, 500, now);
  ASSERT_TRUE(sync.sync());
  EXPECT_FALSE(sync.suspended("gh", "a")) << "streak 4 of 5";
  sync.attempt("gh", "a", rule, false, 503, now);
  ASSERT_TRUE(sync.sync());
  EXPECT_TRUE(sync.suspended("gh", "a"));
  EXPECT_EQ(store.row("gh", "a").reason,
            "5 consecutive failures (suspend_after.consecutive_failures: 5)");
}

TEST_F(RouteSyncTest, ASuccessResetsTheStreak) {
  SuspendAfter rule{.consecutive_failures = 3, .or_failing_for_seconds = 0};
  sync.attempt("gh", "a", rule, false, 500, now);
  sync.attempt("gh", "a", rule, false, 500, now);
  sync.attempt("gh", "a", rule, true, 200, now);
  sync.attempt("gh", "a", rule, false, 500, now);
  ASSERT_TRUE(sync.sync());
  EXPECT_EQ(store.row("gh", "a").failure_streak, 1);
  EXPECT_FALSE(sync.suspended("gh", "a"));
}

TEST_F(RouteSyncTest, AResumeElsewhereReachesThisWorkerAtTheNextRound) {
  store.row("gh", "a").state = "suspended";
  ASSERT_TRUE(sync.sync());
  EXPECT_TRUE(sync.suspended("gh", "a"));
  store.row("gh", "a").state = "active";
  ASSERT_TRUE(sync.sync());
  EXPECT_FALSE(sync.suspended("gh", "a"));
}

TEST_F(RouteSyncTest, PostgresDownKeepsTheLocalSuspensionAndWritesItLater) {
  store.down = true;
  EXPECT_TRUE(sync.attempt("gh", "a", std::nullopt, false, 410, now));
  EXPECT_FALSE(sync.sync());
  EXPECT_TRUE(sync.suspended("gh", "a"));
  store.down = false;
  ASSERT_TRUE(sync.sync());
  EXPECT_EQ(store.row("gh", "a").state, "suspended");
  EXPECT_TRUE(sync.suspended("gh", "a"));
}

TEST_F(RouteSyncTest, CallsRefusedByOurOwnLimitsDoNotCount) {
  SuspendAfter rule{.consecutive_failures = 1, .or_failing_for_seconds = 0};
  EXPECT_FALSE(sync.attempt("gh", "a", rule, std::nullopt, 0, now));
  ASSERT_TRUE(sync.sync());
  EXPECT_FALSE(sync.suspended("gh", "a"));
  EXPECT_TRUE(store.rows.empty());
}

}  // namespace
}  // namespace hookrelay
