// WakePacer: a thread fed by others wakes at most once per interval while work keeps arriving,
// and is never held back after a pause longer than the interval.
#include "worker/wake_pacer.h"

#include <gtest/gtest.h>

namespace hookrelay {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

TEST(WakePacer, WaitsOutTheRestOfTheIntervalSinceTheLastWakeUp) {
  WakePacer pacer(microseconds(1000));
  const auto t0 = WakePacer::Clock::now();
  pacer.woke(t0);
  EXPECT_EQ(pacer.remaining(t0 + microseconds(300)), microseconds(700));
  EXPECT_EQ(pacer.remaining(t0 + microseconds(1000)), WakePacer::Clock::duration::zero());
  EXPECT_EQ(pacer.remaining(t0 + milliseconds(50)), WakePacer::Clock::duration::zero())
      << "after a pause the first event is taken at once";
}

TEST(WakePacer, NeverWaitsBeforeItsFirstWakeUpOrWithoutAnInterval) {
  WakePacer first(microseconds(1000));
  EXPECT_EQ(first.remaining(WakePacer::Clock::now()), WakePacer::Clock::duration::zero());
  WakePacer off(microseconds(0));
  const auto t0 = WakePacer::Clock::now();
  off.woke(t0);
  EXPECT_EQ(off.remaining(t0), WakePacer::Clock::duration::zero());
}

TEST(WakePacer, PaceSleepsUntilTheIntervalHasPassed) {
  WakePacer pacer(microseconds(5000));
  pacer.woke();
  const auto woke = WakePacer::Clock::now();
  pacer.pace();
  EXPECT_GE(WakePacer::Clock::now() - woke, microseconds(4000));
  pacer.woke();
  pacer.set_interval(microseconds(0));
  const auto before = WakePacer::Clock::now();
  pacer.pace();
  EXPECT_LT(WakePacer::Clock::now() - before, milliseconds(4)) << "interval 0: no wait";
}

}  // namespace
}  // namespace hookrelay
