// RouteStates against real PostgreSQL (migrations/0010): streaks add up across workers' reports
// and restart after a success, suspension keeps its first reason, resume clears the streak, and
// parked deliveries are listed in arrival order and leave the list when released.
#include "shared/routes/route_states.h"

#include <gtest/gtest.h>

#include <chrono>

#include "shared/clock.h"
#include "tests/integration/scratch_database.h"
#include "worker/postgres_delivery_store.h"

namespace hookrelay {
namespace {

class RouteStatesTest : public testing::MigratedDatabaseTest {};

TEST_F(RouteStatesTest, StreaksAddUpAcrossReportsAndRestartAfterASuccess) {
  RouteStates states(db_->url());
  const int64_t t = unix_now_ms() - 60'000;
  // Two workers' rounds: 3 and 2 failures, then one with a success followed by 1 failure.
  auto r = states.report({RouteActivity{"gh", "ci", false, 3, t}});
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].failure_streak, 3);
  EXPECT_NEAR((*r)[0].failing_since_ms, t, 1);
  r = states.report(
      {RouteActivity{"gh", "ci", false, 2, t + 5000}, RouteActivity{"gh", "deploy", true, 0, 0}});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)[0].failure_streak, 5);
  EXPECT_NEAR((*r)[0].failing_since_ms, t, 1) << "the streak's first failure stays";
  EXPECT_EQ((*r)[1].failure_streak, 0);
  EXPECT_EQ((*r)[1].failing_since_ms, 0);
  r = states.report({RouteActivity{"gh", "ci", true, 1, t + 9000}});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)[0].failure_streak, 1);
  EXPECT_NEAR((*r)[0].failing_since_ms, t + 9000, 1);
  EXPECT_EQ((*r)[0].state, "active");
}

TEST_F(RouteStatesTest, SuspendKeepsTheFirstReasonAndResumeClearsTheStreak) {
  RouteStates states(db_->url());
  ASSERT_TRUE(states.report({RouteActivity{"gh", "ci", false, 4, unix_now_ms()}}));
  auto first = states.suspend("gh", "ci", "410 Gone from the receiver", "w1");
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_TRUE(*first);
  auto second = states.suspend("gh", "ci", "operator", "operator:alice");
  ASSERT_TRUE(second);
  EXPECT_FALSE(*second);
  auto suspended = states.suspended();
  ASSERT_TRUE(suspended);
  ASSERT_EQ(suspended->size(), 1u);
  EXPECT_EQ((*suspended)[0].reason, "410 Gone from the receiver");
  EXPECT_EQ((*suspended)[0].suspended_by, "w1");
  EXPECT_GT((*suspended)[0].suspended_at_ms, 0);

  auto resumed = states.resume("gh", "ci", "operator:alice");
  ASSERT_TRUE(resumed);
  EXPECT_TRUE(*resumed);
  EXPECT_FALSE(*states.resume("gh", "ci", "operator:alice"));
  auto row = states.get("gh", "ci");
  ASSERT_TRUE(row);
  EXPECT_EQ(row->state, "active");
  EXPECT_EQ(row->failure_streak, 0);
  EXPECT_GT(row->resumed_at_ms, 0);
  EXPECT_EQ(states.get("gh", "nope").error().code, "not_found");
  // A route never seen before can be suspended by an operator.
  ASSERT_TRUE(states.suspend("gh", "fresh", "maintenance", "operator:bob"));
  EXPECT_EQ(states.get("gh", "fresh")->state, "suspended");
}

TEST_F(RouteStatesTest, ParkedDeliveriesAreListedInArrivalOrderUntilReleased) {
  PostgresDeliveryStore store(db_->url());
  const int64_t t = unix_now_ms();
  // Claimed in a different order from their arrival (first_seen) order.
  std::vector<DeliveryRef> refs;
  for (int i : {2, 0, 3, 1}) {
    refs.push_back(DeliveryRef{"wh:gh:e" + std::to_string(i) + ":ci", "webhook", "gh",
                               "e" + std::to_string(i), "ci", "http://127.0.0.1:9/ci",
                               "hookrelay.webhooks", t + i * 10, 100 + i});
  }
  refs.push_back(DeliveryRef{"wh:gh:e0:deploy", "webhook", "gh", "e0", "deploy",
                             "http://127.0.0.1:9/d", "hookrelay.webhooks", t, 200});
  ASSERT_TRUE(store.claim(refs, "w1", 60));
  std::vector<AttemptRecord> parked;
  for (const auto& ref : refs) {
    parked.push_back(AttemptRecord{ref.key, 0, t, 0, 0, "parked", "route suspended",
                                   ref.destination == "ci" ? "parked" : "succeeded",
                                   ref.lease_token});
  }
  ASSERT_TRUE(store.record(parked, "w1"));
  RouteStates states(db_->url());
  auto keys = states.parked_keys("gh", "ci");
  ASSERT_TRUE(keys) << keys.error().message;
  EXPECT_EQ(*keys,
            (std::vector<std::string>{"wh:gh:e0:ci", "wh:gh:e1:ci", "wh:gh:e2:ci", "wh:gh:e3:ci"}));
  EXPECT_TRUE(states.parked_keys("gh", "deploy")->empty());

  // Released (the replay's mark: parked -> retrying): it leaves the list.
  pqxx::connection c(db_->url());
  pqxx::nontransaction tx(c);
  tx.exec("UPDATE deliveries SET state = 'retrying' WHERE delivery_key = 'wh:gh:e1:ci'");
  EXPECT_EQ(*states.parked_keys("gh", "ci"),
            (std::vector<std::string>{"wh:gh:e0:ci", "wh:gh:e2:ci", "wh:gh:e3:ci"}));
  ASSERT_TRUE(states.suspend("gh", "ci", "410 Gone from the receiver", "w1"));
  auto all = states.all();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].parked, 3);
}

}  // namespace
}  // namespace hookrelay
