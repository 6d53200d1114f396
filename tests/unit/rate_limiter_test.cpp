#include "worker/rate_limiter.h"

#include <gtest/gtest.h>

#include <limits>

namespace hookrelay {
namespace {

class RateLimiterTest : public ::testing::Test {
 protected:
  int64_t now_ = 50'000;
  std::function<int64_t()> clock_ = [this] { return now_; };
};

TEST_F(RateLimiterTest, BurstThenRefillAtTheRate) {
  RateLimiter rl(10, 3, clock_);  // 10/s: one token per 100 ms
  EXPECT_TRUE(rl.try_acquire("a"));
  EXPECT_TRUE(rl.try_acquire("a"));
  EXPECT_TRUE(rl.try_acquire("a"));
  EXPECT_FALSE(rl.try_acquire("a"));
  EXPECT_EQ(rl.ms_until_available("a"), 100);
  now_ += 40;
  EXPECT_EQ(rl.ms_until_available("a"), 60);
  EXPECT_FALSE(rl.try_acquire("a"));
  now_ += 60;
  EXPECT_EQ(rl.ms_until_available("a"), 0);
  EXPECT_TRUE(rl.try_acquire("a"));
  EXPECT_FALSE(rl.try_acquire("a"));
}

TEST_F(RateLimiterTest, RefillIsCappedAtBurst) {
  RateLimiter rl(10, 2, clock_);
  ASSERT_TRUE(rl.try_acquire("a"));
  now_ += 60'000;
  EXPECT_TRUE(rl.try_acquire("a"));
  EXPECT_TRUE(rl.try_acquire("a"));
  EXPECT_FALSE(rl.try_acquire("a"));
}

TEST_F(RateLimiterTest, HostsAreIndependent) {
  RateLimiter rl(1, 1, clock_);
  EXPECT_TRUE(rl.try_acquire("a"));
  EXPECT_FALSE(rl.try_acquire("a"));
  EXPECT_TRUE(rl.try_acquire("b"));
  EXPECT_EQ(rl.ms_until_available("a"), 1000);
  EXPECT_EQ(rl.ms_until_available("c"), 0);
}

TEST_F(RateLimiterTest, ZeroRateIsUnlimited) {
  RateLimiter rl(0, 1, clock_);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(rl.try_acquire("a"));
  EXPECT_EQ(rl.ms_until_available("a"), 0);
  EXPECT_EQ(rl.hosts(), 0u);
}

TEST_F(RateLimiterTest, BurstBelowOneStillLetsCallsThrough) {
  RateLimiter rl(2, 0, clock_);
  EXPECT_TRUE(rl.try_acquire("a"));
  EXPECT_FALSE(rl.try_acquire("a"));
  now_ += 500;
  EXPECT_TRUE(rl.try_acquire("a"));
}

TEST_F(RateLimiterTest, ClockSteppingBackDoesNotMintTokens) {
  RateLimiter rl(1, 1, clock_);
  ASSERT_TRUE(rl.try_acquire("a"));
  now_ -= 10'000;
  EXPECT_FALSE(rl.try_acquire("a"));
  now_ += 10'000 + 999;
  EXPECT_FALSE(rl.try_acquire("a"));
  now_ += 1;
  EXPECT_TRUE(rl.try_acquire("a"));
}

// A rate so small that the wait for the next token does not fit in 64-bit milliseconds: the
// longest wait there is. The old conversion overflowed (undefined; on x86 a negative wait).
TEST_F(RateLimiterTest, ATinyRateWaitsTheLongestWaitInsteadOfOverflowing) {
  for (double rate : {1e-20, 1e-300}) {
    RateLimiter rl(rate, 1, clock_);
    ASSERT_TRUE(rl.try_acquire("a"));
    EXPECT_FALSE(rl.try_acquire("a"));
    EXPECT_EQ(rl.ms_until_available("a"), std::numeric_limits<int64_t>::max()) << rate;
  }
  RateLimiter slow(0.001, 1, clock_);  // the slowest rate the config takes: one call in 1000 s
  ASSERT_TRUE(slow.try_acquire("a"));
  EXPECT_EQ(slow.ms_until_available("a"), 1'000'000);
}

TEST_F(RateLimiterTest, PruneForgetsOnlyFullBuckets) {
  RateLimiter rl(10, 5, clock_);
  ASSERT_TRUE(rl.try_acquire("idle"));
  now_ += 100;
  ASSERT_TRUE(rl.try_acquire("busy"));
  ASSERT_TRUE(rl.try_acquire("busy"));
  EXPECT_EQ(rl.hosts(), 2u);
  rl.prune();  // "idle" has refilled its one token; "busy" is two short
  EXPECT_EQ(rl.hosts(), 1u);
  EXPECT_EQ(rl.ms_until_available("busy"), 0);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(rl.try_acquire("busy"));
  EXPECT_FALSE(rl.try_acquire("busy"));  // pruning did not reset the busy bucket
}

TEST(HostConcurrency, CapsCallsInFlightPerHost) {
  HostConcurrency hc(2);
  EXPECT_TRUE(hc.try_acquire("a"));
  EXPECT_TRUE(hc.try_acquire("a"));
  EXPECT_FALSE(hc.try_acquire("a"));
  EXPECT_TRUE(hc.try_acquire("b"));
  EXPECT_EQ(hc.in_flight("a"), 2);
  EXPECT_EQ(hc.in_flight("b"), 1);
  EXPECT_EQ(hc.in_flight("c"), 0);
  EXPECT_EQ(hc.total_in_flight(), 3);
  hc.release("a");
  EXPECT_EQ(hc.in_flight("a"), 1);
  EXPECT_TRUE(hc.try_acquire("a"));
  hc.release("a");
  hc.release("a");
  hc.release("b");
  EXPECT_EQ(hc.total_in_flight(), 0);
  EXPECT_EQ(hc.in_flight("a"), 0);
}

TEST(HostConcurrency, ZeroMeansUnlimitedButCounted) {
  HostConcurrency hc(0);
  for (int i = 0; i < 500; ++i) ASSERT_TRUE(hc.try_acquire("a"));
  EXPECT_EQ(hc.in_flight("a"), 500);
}

}  // namespace
}  // namespace hookrelay
