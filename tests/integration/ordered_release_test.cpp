// The release of a resumed ordered route whose key is headed by a delivery that stays parked: a
// real worker, the devbroker, Postgres and hookrelay-admin.
#include <gtest/gtest.h>

#include <string>

#include "tests/support/admin_fixture.h"

namespace hookrelay::test {
namespace {

class OrderedReleaseTest : public AdminTest {};

// Key c1 of an ordered route is held by H, a delivery parked while the route was suspended whose
// parked message is gone (past the parked topic's retention): the release cannot release it, and
// it stays parked. D, a later delivery of the key parked too, is released. It must be attempted.
// The old release saw H parked and produced D at once "as an unordered release would", but the
// worker that read D knew the key's head H and set D to wait behind it, where nothing ever
// released it (nor any later delivery of the key): only SQL by hand got the key out.
TEST_F(OrderedReleaseTest, AReleasedDeliveryIsAttemptedWhenItsKeysHeadStaysParked) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a"), 5000,
               "ordered: true, ordering_key: { json_pointer: /customer }"}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  ASSERT_NO_FATAL_FAILURE(configure_and_start_admin(o));
  start_worker();
  auto suspended = call("POST", "/v1/routes/a/suspend");
  ASSERT_EQ(suspended.status, 200) << suspended.body;
  ASSERT_TRUE(eventually(
      [&] { return worker_metric(0, "hookrelay_route_suspended", {"route=\"a\""}) == 1; }, 10s));

  // H: it failed, held its key, and its retry was parked; its parked message is no more.
  const std::string head = "wh:acme:c1-head:a";
  stack_->scalar(
      "INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, state,"
      " attempts, first_seen_at) VALUES ('" +
      head + "', 'webhook', 'acme', 'c1-head', 'a', '" + rx_.url("/a") +
      "', 'parked', 1, now() - interval '1 minute')");
  stack_->scalar(
      "INSERT INTO ordered_keys (source, route, ordering_key, head_key)"
      " VALUES ('acme', 'a', 'c1', '" +
      head + "') RETURNING 1");
  // D: parked with its message.
  ASSERT_NO_FATAL_FAILURE(produce("acme", "c1-0", R"({"customer":"c1","n":0})"));
  ASSERT_TRUE(deliveries_in_state("parked", 2, 30s)) << stack_->describe_deliveries();

  auto resumed = call("POST", "/v1/routes/a/resume?source=acme");
  ASSERT_EQ(resumed.status, 202) << resumed.body;
  auto done = wait_replay(json::parse(resumed.body)["release"]["id"].get<std::string>());
  EXPECT_EQ(done["state"], "finished") << done.dump();
  EXPECT_TRUE(rx_.wait_for_count("/a", 1, 30s)) << "the released delivery was never attempted\n"
                                                << stack_->describe_deliveries();
  EXPECT_TRUE(eventually(
      [&] {
        return stack_->scalar(
                   "SELECT state FROM deliveries WHERE delivery_key = 'wh:acme:c1-0:a'") ==
               "succeeded";
      },
      10s))
      << stack_->describe_deliveries();
  EXPECT_EQ(stack_->scalar("SELECT state FROM deliveries WHERE delivery_key = '" + head + "'"),
            "parked")
      << "the head with no message cannot be released";
  // The key is free again: a later event of it is delivered at once.
  ASSERT_TRUE(
      eventually([&] { return stack_->scalar("SELECT count(*) FROM ordered_keys") == "0"; }, 15s))
      << stack_->scalar("SELECT string_agg(head_key, ',') FROM ordered_keys");
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM ordered_waiting"), "0");
  ASSERT_NO_FATAL_FAILURE(produce("acme", "c1-1", R"({"customer":"c1","n":1})"));
  EXPECT_TRUE(rx_.wait_for_count("/a", 2, 20s)) << stack_->describe_deliveries();
}

}  // namespace
}  // namespace hookrelay::test
