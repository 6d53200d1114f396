#include "worker/key_set.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>

namespace hookrelay {
namespace {

std::string delivery_key(int i) {
  return "wh:github:0b6c2e8a-5f1e-4d2a-9c7b-" + std::to_string(100000000000 + i) + ":github";
}

TEST(KeySet, InsertsEachKeyOnceAndErasesIt) {
  KeySet keys;
  EXPECT_FALSE(keys.contains("wh:a:1:r"));
  EXPECT_FALSE(keys.erase("wh:a:1:r"));
  EXPECT_TRUE(keys.insert("wh:a:1:r"));
  EXPECT_FALSE(keys.insert("wh:a:1:r"));  // the same delivery is already in flight
  EXPECT_TRUE(keys.insert("wh:a:1:s"));
  EXPECT_TRUE(keys.insert(""));
  EXPECT_EQ(keys.size(), 3u);
  EXPECT_TRUE(keys.contains("wh:a:1:r"));
  EXPECT_TRUE(keys.erase("wh:a:1:r"));
  EXPECT_FALSE(keys.erase("wh:a:1:r"));
  EXPECT_FALSE(keys.contains("wh:a:1:r"));
  EXPECT_TRUE(keys.contains("wh:a:1:s"));
  EXPECT_TRUE(keys.contains(""));
  EXPECT_TRUE(keys.insert("wh:a:1:r"));  // free again once finished
  EXPECT_EQ(keys.size(), 3u);
}

// Random inserts and erases across several growths, checked step by step against std::set: no
// key is lost or found twice when erases shift the keys of a probe run back.
TEST(KeySet, AgreesWithStdSetThroughGrowthAndErases) {
  KeySet keys;
  std::set<std::string> model;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> pick(0, 5000);
  for (int step = 0; step < 200000; ++step) {
    const std::string k = delivery_key(pick(rng));
    if (rng() % 3 == 0) {
      ASSERT_EQ(keys.erase(k), model.erase(k) == 1) << "step " << step;
    } else {
      ASSERT_EQ(keys.insert(k), model.insert(k).second) << "step " << step;
    }
    ASSERT_EQ(keys.size(), model.size());
  }
  for (int i = 0; i <= 5000; ++i) {
    const std::string k = delivery_key(i);
    EXPECT_EQ(keys.contains(k), model.count(k) == 1) << k;
  }
  for (const auto& k : model) EXPECT_TRUE(keys.erase(k)) << k;
  EXPECT_TRUE(keys.empty());
  for (int i = 0; i <= 5000; ++i) EXPECT_FALSE(keys.contains(delivery_key(i)));
}

}  // namespace
}  // namespace hookrelay
