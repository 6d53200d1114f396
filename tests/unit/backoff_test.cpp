#include "worker/backoff.h"

#include <gtest/gtest.h>

namespace hookrelay {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;
constexpr int64_t kSecond = 1000;

RetryPolicy policy() { return RetryPolicy{{5, 30, 120, 600}, 8, 86400, {}}; }

std::function<double()> fixed(double v) {
  return [v] { return v; };
}

TEST(Backoff, PolicyComesFromConfig) {
  RetryConfig rc;
  rc.schedule_seconds = {1, 2, 3};
  rc.max_attempts = 4;
  rc.max_age_seconds = 60;
  RetryPolicy p = make_retry_policy(rc);
  EXPECT_EQ(p.schedule_seconds, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(p.max_attempts, 4);
  EXPECT_EQ(p.max_age_seconds, 60);
}

TEST(Backoff, CeilingGrowsWithAttemptsAndIsCappedAtTheLastTier) {
  // rand just below 1 gives (almost) the ceiling, which lands on the matching tier.
  const double top = 0.999999;
  struct Row {
    int attempts;
    int64_t ceiling_ms;
    int tier;
  };
  for (Row r : {Row{1, 5 * kSecond, 0}, Row{2, 30 * kSecond, 1}, Row{3, 120 * kSecond, 2},
                Row{4, 600 * kSecond, 3}, Row{5, 600 * kSecond, 3}, Row{7, 600 * kSecond, 3}}) {
    RetryPlan p = plan_retry(policy(), r.attempts, kNow, kNow, std::nullopt, fixed(top));
    ASSERT_EQ(p.kind, RetryPlan::Kind::kRetry) << r.attempts;
    EXPECT_LT(p.due_at_ms - kNow, r.ceiling_ms) << r.attempts;
    EXPECT_GE(p.due_at_ms - kNow, r.ceiling_ms - 1) << r.attempts;
    EXPECT_EQ(p.tier, r.tier) << r.attempts;
    EXPECT_EQ(p.reason, "backoff");
  }
}

TEST(Backoff, FullJitterSpansZeroToCeiling) {
  RetryPlan zero = plan_retry(policy(), 3, kNow, kNow, std::nullopt, fixed(0.0));
  EXPECT_EQ(zero.due_at_ms, kNow);
  EXPECT_EQ(zero.tier, 0);
  RetryPlan half = plan_retry(policy(), 3, kNow, kNow, std::nullopt, fixed(0.5));
  EXPECT_EQ(half.due_at_ms, kNow + 60 * kSecond);
  EXPECT_EQ(half.tier, 2);  // 60 s: 30 s tier too short, 120 s tier covers it
}

TEST(Backoff, TierIsTheSmallestCoveringTheDelay) {
  // Attempt 4 has a 600 s ceiling; the delay picks the tier, not the attempt number.
  struct Row {
    double r;
    int tier;
  };
  for (Row row : {Row{0.0, 0}, Row{5.0 / 600, 0}, Row{5.001 / 600, 1}, Row{30.0 / 600, 1},
                  Row{0.2, 2}, Row{0.21, 3}}) {
    RetryPlan p = plan_retry(policy(), 4, kNow, kNow, std::nullopt, fixed(row.r));
    EXPECT_EQ(p.tier, row.tier) << row.r;
  }
}

TEST(Backoff, OutOfRangeRandomIsClamped) {
  RetryPlan hi = plan_retry(policy(), 1, kNow, kNow, std::nullopt, fixed(7.0));
  EXPECT_LT(hi.due_at_ms - kNow, 5 * kSecond);
  RetryPlan lo = plan_retry(policy(), 1, kNow, kNow, std::nullopt, fixed(-1.0));
  EXPECT_EQ(lo.due_at_ms, kNow);
}

TEST(Backoff, RetryAfterRaisesTheDelayButNeverLowersIt) {
  RetryPlan raised = plan_retry(policy(), 1, kNow, kNow, 90 * kSecond, fixed(0.5));
  EXPECT_EQ(raised.due_at_ms, kNow + 90 * kSecond);
  EXPECT_EQ(raised.tier, 2);
  EXPECT_EQ(raised.reason, "retry_after");

  RetryPlan kept = plan_retry(policy(), 3, kNow, kNow, 1 * kSecond, fixed(0.5));
  EXPECT_EQ(kept.due_at_ms, kNow + 60 * kSecond);
  EXPECT_EQ(kept.reason, "backoff");
}

TEST(Backoff, RetryAfterIsCappedAtTheLastTier) {
  RetryPlan p = plan_retry(policy(), 1, kNow, kNow, 86400 * kSecond, fixed(0.0));
  EXPECT_EQ(p.kind, RetryPlan::Kind::kRetry);
  EXPECT_EQ(p.due_at_ms, kNow + 600 * kSecond);
  EXPECT_EQ(p.tier, 3);
  RetryPlan negative = plan_retry(policy(), 1, kNow, kNow, -5, fixed(0.0));
  EXPECT_EQ(negative.due_at_ms, kNow);
}

TEST(Backoff, DeadLettersAfterMaxAttempts) {
  RetryPlan before = plan_retry(policy(), 7, kNow, kNow, std::nullopt, fixed(0.1));
  EXPECT_EQ(before.kind, RetryPlan::Kind::kRetry);
  RetryPlan at = plan_retry(policy(), 8, kNow, kNow, std::nullopt, fixed(0.1));
  EXPECT_EQ(at.kind, RetryPlan::Kind::kDeadLetter);
  EXPECT_EQ(at.reason, "max_attempts");
  EXPECT_EQ(at.tier, -1);
  RetryPolicy once{{5}, 1, 86400, {}};
  EXPECT_EQ(plan_retry(once, 1, kNow, kNow, std::nullopt, fixed(0.1)).reason, "max_attempts");
}

TEST(Backoff, DeadLettersWhenTheNextAttemptWouldPassMaxAge) {
  RetryPolicy p{{5, 30}, 100, 3600, {}};
  const int64_t first = kNow - 3600 * kSecond + 10 * kSecond;                // 10 s of age left
  RetryPlan fits = plan_retry(p, 1, first, kNow, std::nullopt, fixed(0.5));  // 2.5 s
  EXPECT_EQ(fits.kind, RetryPlan::Kind::kRetry);
  RetryPlan exact = plan_retry(p, 1, first, kNow, 10 * kSecond, fixed(0.0));  // lands on the limit
  EXPECT_EQ(exact.kind, RetryPlan::Kind::kRetry);
  RetryPlan late = plan_retry(p, 2, first, kNow, std::nullopt, fixed(0.5));  // 15 s
  EXPECT_EQ(late.kind, RetryPlan::Kind::kDeadLetter);
  EXPECT_EQ(late.reason, "max_age");
  RetryPlan old = plan_retry(p, 1, kNow - 7200 * kSecond, kNow, std::nullopt, fixed(0.0));
  EXPECT_EQ(old.reason, "max_age");
}

TEST(Backoff, AttemptsBelowOneCountAsOne) {
  RetryPlan p = plan_retry(policy(), 0, kNow, kNow, std::nullopt, fixed(0.999));
  EXPECT_EQ(p.tier, 0);
}

TEST(Backoff, EmptyScheduleDeadLetters) {
  RetryPlan p = plan_retry(RetryPolicy{{}, 8, 60, {}}, 1, kNow, kNow, std::nullopt, fixed(0.5));
  EXPECT_EQ(p.kind, RetryPlan::Kind::kDeadLetter);
  EXPECT_EQ(p.reason, "no_schedule");
}

TEST(RetryAfter, DeltaSeconds) {
  EXPECT_EQ(parse_retry_after("120", kNow), 120 * kSecond);
  EXPECT_EQ(parse_retry_after("0", kNow), 0);
  EXPECT_EQ(parse_retry_after("  7\t", kNow), 7 * kSecond);
  EXPECT_EQ(parse_retry_after("007", kNow), 7 * kSecond);
}

TEST(RetryAfter, ImfFixdate) {
  // 1994-11-06T08:49:37Z = 784111777 s.
  const int64_t at = 784111777LL * kSecond;
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at - 30 * kSecond), 30 * kSecond);
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at + 5 * kSecond), 0);  // past
  // 2024-02-29T23:59:59Z = 1709251199 s: leap day.
  EXPECT_EQ(parse_retry_after("Thu, 29 Feb 2024 23:59:59 GMT", 1709251199LL * kSecond - 1500),
            1500);
}

TEST(RetryAfter, RejectsGarbage) {
  for (const char* bad :
       {"", "   ", "-5", "+5", "1.5", "5s", "abc", "12 34", "99999999999999999999",
        "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994 08:49:37",
        "Xyz, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994", "Sun, 0x Nov 1994 08:49:37 GMT"}) {
    EXPECT_EQ(parse_retry_after(bad, kNow), std::nullopt) << '"' << bad << '"';
  }
}

}  // namespace
}  // namespace hookrelay
