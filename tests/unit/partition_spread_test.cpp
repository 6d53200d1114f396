#include "shared/kafka/partition_spread.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

namespace hookrelay {
namespace {

const auto kAll = [](int32_t) { return true; };
constexpr int64_t kRunUs = 1000;  // a linger of 1 ms
constexpr int kMaxRun = 32;       // batch.num.messages

TEST(PartitionSpread, ARunLastsOneLingerOnOnePartition) {
  PartitionSpread spread(5, kRunUs, kMaxRun);
  // Messages 250 µs apart: four per run, runs on the partitions in turn while each is idle.
  std::vector<int32_t> got;
  for (int i = 0; i < 48; ++i) {
    got.push_back(spread.choose(12, kAll, 250 * i));
    spread.acked(got.back());
  }
  std::set<int32_t> seen;
  for (std::size_t run = 0; run < 12; ++run) {
    EXPECT_EQ(got[run * 4], (5 + static_cast<int32_t>(run)) % 12) << "run " << run;
    for (std::size_t k = 1; k < 4; ++k) EXPECT_EQ(got[run * 4 + k], got[run * 4]) << run;
    seen.insert(got[run * 4]);
  }
  EXPECT_EQ(seen.size(), 12u);
}

TEST(PartitionSpread, ARunEndsAfterItsMaximumCount) {
  PartitionSpread spread(0, kRunUs, kMaxRun);
  for (int i = 0; i < kMaxRun; ++i) EXPECT_EQ(spread.choose(4, kAll, 0), 0);
  EXPECT_EQ(spread.choose(4, kAll, 0), 1);
  EXPECT_EQ(spread.unacked(0), kMaxRun);
}

TEST(PartitionSpread, TheNextRunTakesThePartitionWithTheFewestUnacknowledged) {
  PartitionSpread spread(0, kRunUs, kMaxRun);
  // Three runs, nothing acknowledged: partitions 0, 1 and 2 hold 3, 2 and 1.
  int64_t now = 0;
  for (int count : {3, 2, 1}) {
    for (int i = 0; i < count; ++i) spread.choose(3, kAll, now);
    now += kRunUs;
  }
  ASSERT_EQ(spread.unacked(0), 3);
  ASSERT_EQ(spread.unacked(2), 1);
  EXPECT_EQ(spread.unacked_all(), (std::vector<int>{3, 2, 1}));
  // The search starts at 0 again but takes 2, the least loaded.
  EXPECT_EQ(spread.choose(3, kAll, now), 2);
  now += kRunUs;
  spread.acked(0);
  spread.acked(0);
  spread.acked(0);  // 0 is idle now: the first idle partition from the search's start
  EXPECT_EQ(spread.choose(3, kAll, now), 0);
}

TEST(PartitionSpread, PartitionsWithoutALeaderArePassedOver) {
  PartitionSpread spread(0, kRunUs, kMaxRun);
  const auto odd_only = [](int32_t p) { return p % 2 == 1; };
  std::set<int32_t> seen;
  for (int i = 0; i < 6; ++i) {
    const int32_t p = spread.choose(6, odd_only, i * kRunUs);
    spread.acked(p);
    seen.insert(p);
  }
  EXPECT_EQ(seen, (std::set<int32_t>{1, 3, 5}));
  // The run's partition loses its leader mid-run: the next message moves on.
  const int32_t p = spread.choose(6, odd_only, 10 * kRunUs);
  EXPECT_NE(spread.choose(
                6, [p](int32_t c) { return c != p && c % 2 == 1; }, 10 * kRunUs),
            p);
  // No leader anywhere: a partition is still named, and the message waits for its leader.
  const int32_t none = spread.choose(
      6, [](int32_t) { return false; }, 20 * kRunUs);
  EXPECT_GE(none, 0);
  EXPECT_LT(none, 6);
}

TEST(PartitionSpread, ALingerOfZeroMakesEveryMessageARun) {
  PartitionSpread spread(0, 0, kMaxRun);
  EXPECT_EQ(spread.choose(3, kAll, 0), 0);
  EXPECT_EQ(spread.choose(3, kAll, 0), 1);
  EXPECT_EQ(spread.choose(3, kAll, 0), 2);
}

TEST(PartitionSpread, MorePartitionsLaterAreUsed) {
  PartitionSpread spread(0, kRunUs, kMaxRun);
  spread.choose(2, kAll, 0);
  spread.choose(2, kAll, kRunUs);
  EXPECT_EQ(spread.choose(4, kAll, 2 * kRunUs), 2);
  EXPECT_EQ(spread.unacked(2), 1);
  spread.acked(7);  // unknown partitions are ignored
  spread.acked(2);
  spread.acked(2);  // never below zero
  EXPECT_EQ(spread.unacked(2), 0);
}

}  // namespace
}  // namespace hookrelay
