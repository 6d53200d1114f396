// hookrelay-admin on the real three-node Apache Kafka cluster this binary shares
// (shared_cluster.h), with real PostgreSQL and a real worker: a dead delivery replayed through
// POST /v1/replays is delivered once; a succeeded one resent arrives again with its webhook-id,
// audited as a resend, and its marker is consumed once; a paced replay whose admin process is
// SIGKILLed mid-run finishes after a restart without sending anything twice; bad input to each
// endpoint family is a 4xx naming the problem.
#include <gtest/gtest.h>

#include <csignal>
#include <thread>

#include "shared/kafka/wire_contract.h"
#include "shared/store/delivery_queries.h"
#include "tests/kafka/shared_cluster.h"
#include "tests/support/admin_fixture.h"

namespace hookrelay::test {
namespace {

class AdminOnKafka : public OnSharedCluster<AdminTest> {
 protected:
  // Routes acme -> a and acme -> b; the admin process runs, no worker yet.
  void SetUp() override {
    OnSharedCluster::SetUp();
    if (HasFatalFailure()) return;
    StackOptions o;
    o.routes = {{"acme", "a", rx_.url("/a")}, {"acme", "b", rx_.url("/b")}};
    auto on_kafka = on_cluster(*kafka_, std::move(o));
    ASSERT_TRUE(on_kafka) << on_kafka.error().message;
    ASSERT_NO_FATAL_FAILURE(create_stack(*on_kafka));
    ASSERT_NO_FATAL_FAILURE(configure_and_start_admin(*on_kafka));
  }

  // `n` events whose route-a deliveries die (the receiver answers 400) and whose route-b ones
  // succeed; then route a answers 200.
  void dead_on_a(int n) {
    ASSERT_NO_FATAL_FAILURE(die_on_a(n, 60s));
    // The worker records a delivery dead before its dead letter is acknowledged by the DLQ
    // (acks=all on three nodes); a replay that reads the DLQ in between finds no message for the
    // key and reports it missing. Replays here start once every dead letter is there.
    ASSERT_TRUE(eventually(
        [&] {
          auto dlq = consume_to_end(kafka_->bootstrap(), std::string(kDlqTopic), 10s);
          return dlq && dlq->size() >= static_cast<std::size_t>(n);
        },
        30s))
        << "dead letters missing from " << kDlqTopic;
    rx_.set_default("/a", {200});
  }

  std::string item(const std::string& replay_id, const std::string& key,
                   const std::string& column) {
    return stack_->scalar("SELECT " + column + " FROM replay_items WHERE replay_id = " + replay_id +
                          " AND delivery_key = '" + key + "'");
  }
};

TEST_F(AdminOnKafka,
       ADeadDeliveryReplayedIsDeliveredOnceAndASucceededOneResentArrivesAgainAsAResend) {
  ASSERT_NO_FATAL_FAILURE(dead_on_a(3));

  auto replay =
      post_replay({{"filter", {{"state", "dead"}, {"route", "a"}}}, {"reason", "receiver fixed"}});
  auto done = wait_replay(replay["id"]);
  EXPECT_EQ(done["matched"], 3);
  EXPECT_EQ(done["produced"], 3) << done.dump();
  ASSERT_TRUE(deliveries_in_state("succeeded", 6, 30s)) << stack_->describe_deliveries();
  std::this_thread::sleep_for(2s);
  // Each webhook-id of route a: the refused attempt and the replayed one, nothing more.
  const auto on_a = rx_.webhook_id_counts("/a");
  EXPECT_EQ(on_a.size(), 3u);
  for (const auto& [id, n] : on_a) EXPECT_EQ(n, 2) << id;
  EXPECT_EQ(attempt_outcomes("wh%3Aacme%3Aevt-0%3Aa"),
            (std::vector<std::string>{"permanent", "replayed", "succeeded"}));

  // Resend of a succeeded route-b delivery.
  const std::string key = "wh:acme:evt-1:b";
  const auto before = rx_.webhook_id_counts("/b");
  ASSERT_EQ(before.size(), 3u);
  auto resend =
      post_replay({{"keys", {key}}, {"resend_succeeded", true}, {"reason", "receiver lost it"}});
  const std::string resend_id = resend["id"].get<std::string>();
  auto resent = wait_replay(resend_id);
  EXPECT_EQ(resent["produced"], 1) << resent.dump();
  EXPECT_EQ(item(resend_id, key, "status"), "resent");
  ASSERT_TRUE(rx_.wait_for_count("/b", 4, 30s));
  ASSERT_TRUE(
      eventually([&] { return attempt_outcomes("wh%3Aacme%3Aevt-1%3Ab").size() == 3; }, 10s));
  const auto after = rx_.webhook_id_counts("/b");
  EXPECT_EQ(after.size(), 3u) << "a resend keeps the webhook-id";
  EXPECT_EQ(after.at("evt-1"), 2);
  // Audited as a resend: the operator's 'resent' row, then the worker's attempt that the
  // marker let through; the marker is gone.
  EXPECT_EQ(attempt_outcomes("wh%3Aacme%3Aevt-1%3Ab"),
            (std::vector<std::string>{"succeeded", "resent", "succeeded"}));
  EXPECT_EQ(stack_->scalar("SELECT string_agg(outcome || ' ' || (worker_id LIKE 'operator:%'), ',' "
                           "ORDER BY started_at,"
                           " attempt) FROM delivery_attempts_all WHERE delivery_key = '" +
                           key + "'"),
            "succeeded false,resent true,succeeded false");
  EXPECT_EQ(
      stack_->scalar(
          "SELECT state || ' ' || (resend_id IS NULL) FROM deliveries WHERE delivery_key = '" +
          key + "'"),
      "succeeded true");
  // The copy on the real retry tier stands for the one delivery and names who replayed it; the
  // marker in Postgres, not a header, is what lets it through.
  auto tier = consume_to_end(kafka_->bootstrap(), retry_topic(0), 30s);
  ASSERT_TRUE(tier) << tier.error().message;
  int resend_copies = 0;
  for (const auto& m : *tier) {
    if (m.header(header::kDeliveryKey) != key || !m.header(header::kReplayedBy)) continue;
    ++resend_copies;
    EXPECT_EQ(m.header(header::kRoute), "b");
    EXPECT_EQ(m.header(header::kOriginTopic), std::string(kWebhooksTopic));
    EXPECT_FALSE(m.header("hr-resend-id"));
    EXPECT_EQ(m.value, R"({"n":1})");
  }
  EXPECT_EQ(resend_copies, 1);

  // The marker is consumed once: later copies of the delivery's message are skipped.
  ASSERT_TRUE(stack_->produce_retry_copies("acme", "evt-1", "b", R"({"n":1})", 2));
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(rx_.count("/b"), 4u);
  // A second resend of it is a new, explicit one.
  auto again = wait_replay(
      post_replay({{"keys", {key}}, {"resend_succeeded", true}})["id"].get<std::string>());
  EXPECT_EQ(again["produced"], 1) << again.dump();
  ASSERT_TRUE(rx_.wait_for_count("/b", 5, 30s));
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(rx_.webhook_id_counts("/b").at("evt-1"), 3);
}

TEST_F(AdminOnKafka, AReplaySigkilledMidRunFinishesAfterRestartWithoutSendingAnythingTwice) {
  constexpr int kEvents = 24;
  ASSERT_NO_FATAL_FAILURE(dead_on_a(kEvents));

  // 8 keys a second: about three seconds of work.
  auto replay = post_replay({{"filter", {{"state", "dead"}}}, {"rate", 8}});
  const std::string id = replay["id"].get<std::string>();
  ASSERT_TRUE(
      eventually([&] { return get_json("/v1/replays/" + id)["produced"].get<int>() >= 5; }, 30s));
  admin_->kill();
  ASSERT_EQ(admin_->wait_exit(5s), std::optional<int>(128 + SIGKILL));
  const int done_before = std::stoi(stack_->scalar(
      "SELECT count(*) FROM replay_items WHERE status <> 'pending' AND replay_id = " + id));
  ASSERT_LT(done_before, kEvents) << "the replay finished before the kill";

  // Where the kill landed is up to the scheduler, so the two windows that matter are made
  // certain with the runner's own steps:
  //   killed after the broker's ack, before the item was saved: the last produced item is
  //   'marked' again. Its delivery has been taken up by the worker: not produced again.
  const std::string acked = stack_->scalar(
      "SELECT max(delivery_key) FROM replay_items WHERE status = 'replayed' AND replay_id = " + id);
  ASSERT_FALSE(acked.empty());
  ASSERT_TRUE(eventually(
      [&] {
        return stack_->scalar("SELECT state FROM deliveries WHERE delivery_key = '" + acked +
                              "'") == "succeeded";
      },
      30s));
  stack_->scalar("UPDATE replay_items SET status = 'marked' WHERE replay_id = " + id +
                 " AND delivery_key = '" + acked + "' RETURNING 1");
  //   killed after marking the next key, before producing it: its delivery is 'retrying' with
  //   no message anywhere. Produced on resume.
  const std::string marked = stack_->scalar(
      "SELECT min(delivery_key) FROM replay_items WHERE status = 'pending' AND replay_id = " + id);
  ASSERT_FALSE(marked.empty());
  DeliveryQueries queries(stack_->database().url());
  auto m = queries.mark_replayed(marked, "admin-api", "admin API replay " + id, std::stoll(id));
  ASSERT_TRUE(m) << m.error().message;
  ASSERT_EQ(item(id, marked, "status"), "marked");

  ASSERT_NO_FATAL_FAILURE(start_admin());
  auto done = wait_replay(id, 90s);  // once the killed runner's lease has expired
  EXPECT_EQ(done["state"], "finished") << done.dump();
  EXPECT_EQ(done["matched"], kEvents);
  EXPECT_EQ(done["produced"], kEvents) << done.dump();
  EXPECT_EQ(item(id, acked, "status || ': ' || detail"),
            "replayed: taken up by a worker before the restart");
  EXPECT_EQ(item(id, marked, "status || ': ' || detail"), "replayed: to " + retry_topic(0));
  ASSERT_TRUE(deliveries_in_state("succeeded", 2 * kEvents, 60s)) << stack_->describe_deliveries();
  std::this_thread::sleep_for(3s);
  // Route a: one refused attempt and one delivery per event, whatever the kill interrupted.
  const auto on_a = rx_.webhook_id_counts("/a");
  EXPECT_EQ(on_a.size(), static_cast<std::size_t>(kEvents));
  for (const auto& [webhook_id, n] : on_a) EXPECT_EQ(n, 2) << webhook_id;
  expect_each_succeeded_once(*stack_, 2 * kEvents);
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM dlq_replays WHERE delivery_key LIKE '%:a'"),
            std::to_string(kEvents));
}

TEST_F(AdminOnKafka, BadInputToEachEndpointFamilyIsA4xxNamingTheProblem) {
  expect_error(call("GET", "/v1/deliveries", {}, {}), 401, "unauthorized", "Authorization");
  // Deliveries.
  expect_error(call("GET", "/v1/deliveries?cursor=bm90LWEtY3Vyc29y"), 400, "bad_cursor", "cursor");
  expect_error(call("GET", "/v1/deliveries?state=dead&limit=501"), 400, "bad_parameter", "limit");
  expect_error(call("GET", "/v1/deliveries?colour=red"), 400, "unknown_parameter", "colour");
  expect_error(call("GET", "/v1/deliveries/wh:acme:nope:a"), 404, "not_found", "wh:acme:nope:a");
  // Events and calls.
  expect_error(call("GET", "/v1/events/acme/nope"), 404, "not_found", "acme/nope");
  expect_error(call("GET", "/v1/calls/no-such-call"), 404, "not_found", "no-such-call");
  // Replays.
  expect_error(call("GET", "/v1/replays/abc"), 400, "bad_parameter", "id");
  expect_error(call("POST", "/v1/replays", "{\"keys\": [", auth_json()), 400, "bad_json", "JSON");
  expect_error(call("POST", "/v1/replays", R"({"keys":["k"]})",
                    {auth().front(), {"Content-Type", "text/plain"}}),
               415, "unsupported_media_type", "application/json");
  expect_error(call("POST", "/v1/replays", R"({"filter":{"state":"alive"}})", auth_json()), 400,
               "bad_request", "filter.state");
  // A key nobody knows is accepted, read against the real DLQ, and reported missing.
  auto missing = wait_replay(post_replay({{"keys", {"wh:acme:nope:a"}}})["id"].get<std::string>());
  EXPECT_EQ(missing["missing"], 1) << missing.dump();
  EXPECT_EQ(missing["produced"], 0) << missing.dump();
}

}  // namespace
}  // namespace hookrelay::test
