#include "worker/offset_watermark.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

namespace hookrelay {
namespace {

TEST(OffsetWatermark, NothingCommittableBeforeAnythingFinishes) {
  OffsetWatermark w;
  EXPECT_EQ(w.committable(), std::nullopt);
  EXPECT_EQ(w.position(), std::nullopt);
  ASSERT_TRUE(w.track(10));
  EXPECT_EQ(w.committable(), std::nullopt);  // starting work is not progress
  EXPECT_EQ(w.position(), 10);
  EXPECT_EQ(w.size(), 1u);
}

TEST(OffsetWatermark, InOrderCompletionAdvancesOneByOne) {
  OffsetWatermark w;
  for (int64_t o = 0; o < 3; ++o) ASSERT_TRUE(w.track(o));
  ASSERT_TRUE(w.finish(0));
  EXPECT_EQ(w.committable(), 1);
  EXPECT_EQ(w.committable(), std::nullopt);  // already reported
  ASSERT_TRUE(w.finish(1));
  ASSERT_TRUE(w.finish(2));
  EXPECT_EQ(w.committable(), 3);
  EXPECT_EQ(w.size(), 0u);
}

TEST(OffsetWatermark, OutOfOrderCompletionWaitsForTheLowest) {
  OffsetWatermark w;
  for (int64_t o = 100; o < 105; ++o) ASSERT_TRUE(w.track(o));
  ASSERT_TRUE(w.finish(103));
  ASSERT_TRUE(w.finish(101));
  ASSERT_TRUE(w.finish(104));
  EXPECT_EQ(w.committable(), std::nullopt);  // 100 still running: a crash must replay it
  EXPECT_EQ(w.size(), 2u);
  ASSERT_TRUE(w.finish(100));
  EXPECT_EQ(w.committable(), 102);
  ASSERT_TRUE(w.finish(102));
  EXPECT_EQ(w.committable(), 105);
}

TEST(OffsetWatermark, GapsAreCommittedPastOnceEverythingBeforeIsDone) {
  OffsetWatermark w;
  ASSERT_TRUE(w.track(5));
  ASSERT_TRUE(w.track(8));  // 6 and 7 compacted away or transaction markers
  ASSERT_TRUE(w.track(20));
  ASSERT_TRUE(w.finish(5));
  EXPECT_EQ(w.committable(), 8);
  ASSERT_TRUE(w.finish(20));
  EXPECT_EQ(w.committable(), std::nullopt);
  ASSERT_TRUE(w.finish(8));
  EXPECT_EQ(w.committable(), 21);
}

TEST(OffsetWatermark, TrackingAfterAllFinishedMovesPastTheGap) {
  OffsetWatermark w;
  ASSERT_TRUE(w.track(1));
  ASSERT_TRUE(w.finish(1));
  EXPECT_EQ(w.committable(), 2);
  ASSERT_TRUE(w.track(9));
  EXPECT_EQ(w.committable(), 9);  // 2..8 do not exist, so 9 is the next to read
}

TEST(OffsetWatermark, RejectsUnknownAndDuplicateFinish) {
  OffsetWatermark w;
  EXPECT_FALSE(w.finish(0));  // nothing tracked
  ASSERT_TRUE(w.track(3));
  ASSERT_TRUE(w.track(4));
  ASSERT_TRUE(w.track(6));
  EXPECT_FALSE(w.finish(5));  // in a gap
  EXPECT_FALSE(w.finish(7));  // beyond
  EXPECT_FALSE(w.finish(2));  // below
  ASSERT_TRUE(w.finish(4));
  EXPECT_FALSE(w.finish(4));  // duplicate, still in the window
  ASSERT_TRUE(w.finish(3));
  EXPECT_FALSE(w.finish(3));  // duplicate, already drained below the watermark
  EXPECT_EQ(w.size(), 1u);
  EXPECT_EQ(w.committable(), 6);
}

TEST(OffsetWatermark, RejectsNonIncreasingTrack) {
  OffsetWatermark w;
  ASSERT_TRUE(w.track(10));
  EXPECT_FALSE(w.track(10));
  EXPECT_FALSE(w.track(9));
  EXPECT_EQ(w.size(), 1u);
  ASSERT_TRUE(w.finish(10));
  EXPECT_FALSE(w.track(10));  // even once finished: offsets never repeat without reset()
}

TEST(OffsetWatermark, ResetForgetsEverything) {
  OffsetWatermark w;
  ASSERT_TRUE(w.track(50));
  ASSERT_TRUE(w.track(51));
  w.reset();
  EXPECT_EQ(w.size(), 0u);
  EXPECT_EQ(w.position(), std::nullopt);
  EXPECT_FALSE(w.finish(50));  // a late finish from before the revoke
  ASSERT_TRUE(w.track(40));    // repositioned lower after a new assignment
  EXPECT_EQ(w.committable(), std::nullopt);
  ASSERT_TRUE(w.finish(40));
  EXPECT_EQ(w.committable(), 41);
}

// Many outstanding offsets finished in random order: the watermark must equal a brute-force
// answer at every step. Fixed seed, so the test is deterministic.
TEST(OffsetWatermark, MatchesBruteForceWithManyOutstanding) {
  constexpr int kCount = 20000;
  OffsetWatermark w;
  std::vector<int64_t> offsets;
  int64_t o = 1000;
  std::mt19937 rng(42);
  for (int i = 0; i < kCount; ++i) {
    o += 1 + static_cast<int64_t>(rng() % 3);  // gaps of 0..2
    offsets.push_back(o);
    ASSERT_TRUE(w.track(o));
  }
  EXPECT_EQ(w.size(), static_cast<std::size_t>(kCount));
  std::vector<int64_t> order = offsets;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<bool> done(kCount, false);
  std::size_t lowest_open = 0;
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(w.finish(order[i]));
    done[std::lower_bound(offsets.begin(), offsets.end(), order[i]) - offsets.begin()] = true;
    while (lowest_open < done.size() && done[lowest_open]) ++lowest_open;
    const int64_t expected =
        lowest_open < offsets.size() ? offsets[lowest_open] : offsets.back() + 1;
    ASSERT_EQ(w.position(), expected) << "after finishing " << i + 1;
  }
  EXPECT_EQ(w.size(), 0u);
  EXPECT_EQ(w.committable(), offsets.back() + 1);
}

TEST(PartitionWatermarks, ReportsOnlyPartitionsThatAdvanced) {
  PartitionWatermarks pw;
  const TopicPartition a{"hookrelay.webhooks", 0};
  const TopicPartition b{"hookrelay.webhooks", 1};
  const TopicPartition c{"hookrelay.calls", 0};
  ASSERT_TRUE(pw.track(a, 0));
  ASSERT_TRUE(pw.track(a, 1));
  ASSERT_TRUE(pw.track(b, 7));
  ASSERT_TRUE(pw.track(c, 3));
  EXPECT_TRUE(pw.take_committable().empty());
  EXPECT_EQ(pw.outstanding(), 4u);

  ASSERT_TRUE(pw.finish(b, 7));
  ASSERT_TRUE(pw.finish(c, 3));
  ASSERT_TRUE(pw.finish(a, 1));
  EXPECT_EQ(pw.take_committable(),
            (std::vector<CommitPosition>{{c, 4}, {b, 8}}));  // ordered by (topic, partition)
  EXPECT_TRUE(pw.take_committable().empty());

  ASSERT_TRUE(pw.finish(a, 0));
  EXPECT_EQ(pw.take_committable(), (std::vector<CommitPosition>{{a, 2}}));
  EXPECT_EQ(pw.outstanding(), 0u);
}

TEST(PartitionWatermarks, ErasedPartitionRejectsLateFinishes) {
  PartitionWatermarks pw;
  const TopicPartition a{"hookrelay.retry.0", 2};
  ASSERT_TRUE(pw.track(a, 5));
  pw.erase(a);
  EXPECT_EQ(pw.find(a), nullptr);
  EXPECT_FALSE(pw.finish(a, 5));
  EXPECT_FALSE(pw.finish({"unknown", 0}, 1));
  EXPECT_TRUE(pw.take_committable().empty());
  EXPECT_EQ(pw.partitions(), 0u);
}

}  // namespace
}  // namespace hookrelay
