// Route lifecycle end to end: a real worker, the devbroker, Postgres, hookrelay-admin and the CLI.
// A receiver answering 410 Gone suspends its route: the route's deliveries are parked (state
// parked, not attempted, not dead-lettered) while another route of the same events keeps
// receiving; a resume releases them in the order they arrived, each delivered once. Operators
// do the same through `hookrelay routes` and /v1/routes.
#include <gtest/gtest.h>

#include <future>
#include <pqxx/pqxx>
#include <thread>

#include "shared/kafka/wire_contract.h"
#include "shared/routes/route_control.h"
#include "shared/signing/crypto.h"
#include "tests/support/admin_fixture.h"
#include "tests/support/cli_run.h"

namespace hookrelay::test {
namespace {

constexpr int kRouteEvents = 10;

class RouteLifecycleTest : public AdminTest {
 protected:
  // Events evt-<from> .. evt-<to - 1> of acme, produced one at a time so they arrive in that order.
  void produce_in_order(int from = 0, int to = kRouteEvents) {
    for (int i = from; i < to; ++i) {
      ASSERT_NO_FATAL_FAILURE(
          produce("acme", "evt-" + std::to_string(i), R"({"n":)" + std::to_string(i) + "}"));
      std::this_thread::sleep_for(5ms);
    }
  }
  std::vector<std::string> webhook_ids(const std::vector<ReceivedRequest>& requests,
                                       std::size_t from) {
    std::vector<std::string> ids;
    for (std::size_t i = from; i < requests.size(); ++i)
      ids.push_back(requests[i].header("webhook-id").value_or("?"));
    return ids;
  }
  static std::vector<std::string> in_order() {
    std::vector<std::string> ids;
    for (int i = 0; i < kRouteEvents; ++i) ids.push_back("evt-" + std::to_string(i));
    return ids;
  }
  std::vector<std::string> cli_common() {
    return {"--config",    admin_config_.string(), "--database-url", stack_->database().url(),
            "--bootstrap", stack_->bootstrap()};
  }
  // Routes a and b of acme, the admin and one worker (index 0), route a suspended through the
  // admin API and the worker parking its deliveries.
  void start_with_route_a_suspended() {
    StackOptions o;
    o.routes = {{"acme", "a", rx_.url("/a")}, {"acme", "b", rx_.url("/b")}};
    ASSERT_NO_FATAL_FAILURE(create_stack(o));
    ASSERT_NO_FATAL_FAILURE(configure_and_start_admin(o));
    start_worker();
    ASSERT_EQ(call("POST", "/v1/routes/a/suspend").status, 200);
    ASSERT_TRUE(eventually(
        [&] { return worker_metric(0, "hookrelay_route_suspended", {"route=\"a\""}) == 1; }, 10s));
  }
  // Route a of acme as GET /v1/routes shows it.
  json route_a() {
    const json listed = get_json("/v1/routes");
    for (const auto& r : listed["routes"]) {
      if (r["source"] == "acme" && r["name"] == "a") return r;
    }
    return json();
  }
};

TEST_F(RouteLifecycleTest, A410ParksTheRouteWhileAnotherKeepsReceivingAndTheCliReleasesItInOrder) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}, {"acme", "b", rx_.url("/b")}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  ASSERT_NO_FATAL_FAILURE(configure_and_start_admin(o));
  rx_.set_default("/a", {410, {}, 0, "gone"});
  start_worker();
  // evt-0's 410 suspends route a; the later events come after the suspension, so none of them
  // is attempted on a (events read in one batch with it would be in flight already).
  ASSERT_NO_FATAL_FAILURE(produce_in_order(0, 1));
  ASSERT_TRUE(deliveries_in_state("parked", 1, 30s)) << stack_->describe_deliveries();
  ASSERT_NO_FATAL_FAILURE(produce_in_order(1, kRouteEvents));

  ASSERT_TRUE(rx_.wait_for_count("/b", kRouteEvents, 30s)) << "route b got " << rx_.count("/b");
  ASSERT_TRUE(deliveries_in_state("parked", kRouteEvents, 30s)) << stack_->describe_deliveries();
  ASSERT_TRUE(deliveries_in_state("succeeded", kRouteEvents, 10s));
  std::this_thread::sleep_for(1500ms);  // a retry or a dead letter would show up here
  const std::size_t gone_calls = rx_.count("/a");
  EXPECT_EQ(gone_calls, 1u) << "the route was not suspended by its 410";
  EXPECT_EQ(stack_->count_deliveries("dead"), 0);
  EXPECT_EQ(stack_->count_deliveries("parked"), kRouteEvents);
  EXPECT_EQ(
      stack_->scalar(
          "SELECT count(*) FROM parked_deliveries WHERE source = 'acme' AND destination = 'a'"),
      std::to_string(kRouteEvents));
  EXPECT_EQ(stack_
                ->scalar("SELECT state || ' ' || reason || ' ' || suspended_by FROM route_states"
                         " WHERE source = 'acme' AND route = 'a'")
                .substr(0, 36),
            "suspended 410 Gone from the receiver");
  EXPECT_EQ(worker_metric(0, "hookrelay_route_suspended", {"route=\"a\""}), 1);
  EXPECT_EQ(worker_metric(0, "hookrelay_worker_deliveries_total", {"outcome=\"parked\""}),
            kRouteEvents);

  auto listed = run_cli_in_process([&] {
    std::vector<std::string> a = {"routes", "list", "--json"};
    for (auto& c : cli_common()) a.push_back(c);
    return a;
  }());
  ASSERT_EQ(listed.code, 0) << listed.err;
  auto routes = json::parse(listed.out)["routes"];
  ASSERT_EQ(routes.size(), 2u) << listed.out;
  EXPECT_EQ(routes[0]["name"], "a");
  EXPECT_EQ(routes[0]["state"], "suspended");
  EXPECT_EQ(routes[0]["parked"], kRouteEvents);
  EXPECT_EQ(routes[0]["reason"], "410 Gone from the receiver");
  EXPECT_EQ(routes[1]["name"], "b");
  EXPECT_EQ(routes[1]["state"], "active");
  EXPECT_EQ(routes[1]["failure_streak"], 0);

  // The receiver is back: resume releases the parked deliveries, oldest first, at 10/s.
  rx_.set_default("/a", {200});
  std::vector<std::string> resume = {"routes", "resume", "a",    "--source", "acme",
                                     "--rate", "10",     "--by", "tester",   "--json"};
  for (auto& c : cli_common()) resume.push_back(c);
  auto resumed = run_cli_in_process(resume);
  ASSERT_EQ(resumed.code, 0) << resumed.out << resumed.err;
  auto rj = json::parse(resumed.out);
  EXPECT_EQ(rj["route"]["state"], "active");
  EXPECT_EQ(rj["changed"], true);
  EXPECT_EQ(rj["release"]["released"], kRouteEvents) << resumed.out;

  ASSERT_TRUE(rx_.wait_for_count("/a", gone_calls + kRouteEvents, 30s)) << rx_.count("/a");
  ASSERT_TRUE(deliveries_in_state("succeeded", 2 * kRouteEvents, 20s))
      << stack_->describe_deliveries();
  std::this_thread::sleep_for(1500ms);  // a second copy would show up here
  EXPECT_EQ(rx_.count("/a"), gone_calls + kRouteEvents);
  EXPECT_EQ(webhook_ids(rx_.requests("/a"), gone_calls), in_order());
  expect_each_succeeded_once(*stack_, 2 * kRouteEvents);
  EXPECT_EQ(stack_->count_deliveries("parked"), 0);
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM parked_deliveries"), "0");
  EXPECT_TRUE(eventually(
      [&] { return worker_metric(0, "hookrelay_route_suspended", {"route=\"a\""}) == 0; }, 5s));
}

TEST_F(RouteLifecycleTest,
       ConsecutiveFailuresSuspendTheRouteAndItsRetriesAreParkedNotDeadLettered) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a"), 5000, "suspend_after: { consecutive_failures: 3 }"},
              {"acme", "b", rx_.url("/b")}};
  o.max_attempts = 20;  // the retry budget would outlast the test: only the suspension stops it
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  ASSERT_NO_FATAL_FAILURE(configure_and_start_admin(o));
  rx_.set_default("/a", {500, {}, 0, "down"});
  start_worker();
  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-0", "{}"));
  ASSERT_NO_FATAL_FAILURE(produce("acme", "evt-1", "{}"));

  ASSERT_TRUE(rx_.wait_for_count("/b", 2, 30s));
  ASSERT_TRUE(deliveries_in_state("parked", 2, 40s)) << stack_->describe_deliveries();
  const std::size_t calls = rx_.count("/a");
  EXPECT_GE(calls, 3u);
  std::this_thread::sleep_for(3s);  // tiers of 1-3 s: a retry not parked would call again here
  EXPECT_EQ(rx_.count("/a"), calls) << "a suspended route was called";
  EXPECT_EQ(stack_->count_deliveries("dead"), 0);
  auto a = route_a();
  EXPECT_EQ(a["state"], "suspended") << a.dump();
  EXPECT_NE(a["reason"].get<std::string>().find(
                "consecutive failures (suspend_after.consecutive_failures: 3)"),
            std::string::npos)
      << a.dump();
  EXPECT_GE(a["failure_streak"].get<int>(), 3);
  EXPECT_EQ(a["parked"], 2);
  EXPECT_EQ(a["suspend_after"]["consecutive_failures"], 3);
  EXPECT_EQ(worker_metric(0, "hookrelay_route_suspensions_total",
                          {"route=\"a\"", "cause=\"consecutive_failures\""}),
            1);
}

TEST_F(RouteLifecycleTest, TheAdminApiSuspendsAndResumesWithTheCliImplementation) {
  StackOptions o;
  o.routes = {
      {"acme", "a", rx_.url("/a")}, {"acme", "b", rx_.url("/b")}, {"github", "b", rx_.url("/gb")}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  ASSERT_NO_FATAL_FAILURE(configure_and_start_admin(o));
  start_worker();

  auto listed = get_json("/v1/routes");
  ASSERT_EQ(listed["routes"].size(), 3u) << listed.dump();
  EXPECT_EQ(route_a()["state"], "active");
  EXPECT_EQ(route_a()["suspend_after"], nullptr);

  auto suspended = call("POST", "/v1/routes/a/suspend?reason=receiver%20migrating");
  ASSERT_EQ(suspended.status, 200) << suspended.body;
  auto sj = json::parse(suspended.body);
  EXPECT_EQ(sj["route"]["state"], "suspended");
  EXPECT_EQ(sj["route"]["reason"], "receiver migrating");
  // The token's name: the first 16 hex digits of its SHA-256, never the token.
  EXPECT_EQ(sj["route"]["suspended_by"],
            "operator:admin-token-" + hex_encode(sha256(kAdminToken)).substr(0, 16));
  EXPECT_EQ(sj["changed"], true);
  EXPECT_EQ(json::parse(call("POST", "/v1/routes/a/suspend").body)["changed"], false);
  ASSERT_TRUE(eventually(
      [&] { return worker_metric(0, "hookrelay_route_suspended", {"route=\"a\""}) == 1; }, 10s));

  ASSERT_NO_FATAL_FAILURE(produce_in_order());
  ASSERT_TRUE(rx_.wait_for_count("/b", kRouteEvents, 30s));
  ASSERT_TRUE(deliveries_in_state("parked", kRouteEvents, 30s)) << stack_->describe_deliveries();
  EXPECT_EQ(rx_.count("/a"), 0u) << "a suspended route was called";
  EXPECT_EQ(route_a()["parked"], kRouteEvents);

  auto resumed = call("POST", "/v1/routes/a/resume?source=acme&rate=10");
  ASSERT_EQ(resumed.status, 202) << resumed.body;
  auto rj = json::parse(resumed.body);
  EXPECT_EQ(rj["route"]["state"], "active");
  EXPECT_EQ(rj["release"]["matched"], kRouteEvents);
  auto done = wait_replay(rj["release"]["id"].get<std::string>());
  EXPECT_EQ(done["state"], "finished") << done.dump();
  EXPECT_EQ(done["produced"], kRouteEvents) << done.dump();
  ASSERT_TRUE(rx_.wait_for_count("/a", kRouteEvents, 30s));
  ASSERT_TRUE(deliveries_in_state("succeeded", 2 * kRouteEvents, 20s))
      << stack_->describe_deliveries();
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(rx_.count("/a"), static_cast<std::size_t>(kRouteEvents));
  EXPECT_EQ(webhook_ids(rx_.requests("/a"), 0), in_order());
  expect_each_succeeded_once(*stack_, 2 * kRouteEvents);
  EXPECT_EQ(route_a()["parked"], 0);
  // Nothing parked: a resume of an active route answers 200 with no release.
  auto again = call("POST", "/v1/routes/a/resume?source=acme");
  EXPECT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(json::parse(again.body)["release"], nullptr);

  // Bad input: a 4xx naming the problem.
  expect_error(call("POST", "/v1/routes/b/suspend"), 409, "ambiguous_route", "acme, github");
  expect_error(call("POST", "/v1/routes/nope/suspend"), 404, "route_not_found", "nope");
  expect_error(call("POST", "/v1/routes/a/suspend?source=github"), 404, "route_not_found",
               "github");
  expect_error(call("POST", "/v1/routes/a/resume?rate=-1"), 400, "bad_parameter", "rate");
  expect_error(call("POST", "/v1/routes/a/resume?reason=x"), 400, "unknown_parameter", "reason");
  expect_error(call("GET", "/v1/routes/a/suspend"), 405, "method_not_allowed", "POST");
  expect_error(call("POST", "/v1/routes"), 405, "method_not_allowed", "GET");
  expect_error(call("GET", "/v1/routes?colour=red"), 400, "unknown_parameter", "colour");
}

// An ordered route's parked deliveries of one ordering key are released one at a time, in the
// order they arrived: each waits behind its key (as a retry of it would) instead of all going to
// the first retry tier at once, where they would be attempted side by side. Another key's go
// their own way.
TEST_F(RouteLifecycleTest, AReleaseOfAnOrderedRouteDeliversEachKeysParkedDeliveriesOneAtATime) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a"), 5000,
               "ordered: true, ordering_key: { json_pointer: /customer }"}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  ASSERT_NO_FATAL_FAILURE(configure_and_start_admin(o));
  start_worker();
  auto suspended = call("POST", "/v1/routes/a/suspend?reason=receiver%20migrating");
  ASSERT_EQ(suspended.status, 200) << suspended.body;
  ASSERT_TRUE(eventually(
      [&] { return worker_metric(0, "hookrelay_route_suspended", {"route=\"a\""}) == 1; }, 10s));
  constexpr int kPerKey = 5;
  for (int i = 0; i < kPerKey; ++i) {
    for (const char* customer : {"c1", "c2"}) {
      ASSERT_NO_FATAL_FAILURE(produce(
          "acme", std::string(customer) + "-" + std::to_string(i),
          R"({"customer":")" + std::string(customer) + R"(","n":)" + std::to_string(i) + "}"));
      std::this_thread::sleep_for(5ms);
    }
  }
  ASSERT_TRUE(deliveries_in_state("parked", 2 * kPerKey, 30s)) << stack_->describe_deliveries();

  rx_.set_default("/a", {200, {}, 300});  // slow: deliveries side by side would overlap
  auto resumed = call("POST", "/v1/routes/a/resume?source=acme");
  ASSERT_EQ(resumed.status, 202) << resumed.body;
  auto done = wait_replay(json::parse(resumed.body)["release"]["id"].get<std::string>());
  EXPECT_EQ(done["state"], "finished") << done.dump();
  EXPECT_EQ(done["produced"], 2 * kPerKey) << done.dump();
  ASSERT_TRUE(deliveries_in_state("succeeded", 2 * kPerKey, 60s)) << stack_->describe_deliveries();
  std::this_thread::sleep_for(1s);  // a second copy would show up here
  expect_each_succeeded_once(*stack_, 2 * kPerKey);
  EXPECT_EQ(rx_.count("/a"), static_cast<std::size_t>(2 * kPerKey));
  for (const std::string customer : {"c1", "c2"}) {
    std::vector<std::string> ids, expected;
    std::optional<std::chrono::steady_clock::time_point> previous;
    for (const auto& r : rx_.requests("/a")) {
      const std::string id = r.header("webhook-id").value_or("?");
      if (id.rfind(customer + "-", 0) != 0) continue;
      ids.push_back(id);
      // One at a time: each is sent after the one before it was answered (300 ms).
      if (previous) {
        EXPECT_GE(r.at - *previous, 290ms) << customer << ": " << id << " overlapped";
      }
      previous = r.at;
    }
    for (int i = 0; i < kPerKey; ++i) expected.push_back(customer + "-" + std::to_string(i));
    EXPECT_EQ(ids, expected) << customer;
  }
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM ordered_waiting"), "0");
  EXPECT_TRUE(
      eventually([&] { return stack_->scalar("SELECT count(*) FROM ordered_keys") == "0"; }, 15s));
}

// A suspended route removed from the configuration: Postgres still remembers it (suspended, with
// its deliveries parked), so `routes resume` still finds it. Its parked deliveries are released
// and, with no route to take them, dead-lettered as unknown_route: recorded dead and in the DLQ,
// where an operator sees them and can replay them, rather than parked until the parked topic's
// retention drops their messages. The route's suspension (and its alert) ends.
TEST_F(RouteLifecycleTest, AResumeOfARouteRemovedWhileSuspendedDeadLettersItsParkedDeliveries) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}, {"acme", "b", rx_.url("/b")}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  ASSERT_NO_FATAL_FAILURE(configure_and_start_admin(o));
  const std::size_t first = start_worker();
  ASSERT_EQ(call("POST", "/v1/routes/a/suspend").status, 200);
  ASSERT_TRUE(eventually(
      [&] { return worker_metric(first, "hookrelay_route_suspended", {"route=\"a\""}) == 1; },
      10s));
  constexpr int kParked = 3;
  ASSERT_NO_FATAL_FAILURE(produce_in_order(0, kParked));
  ASSERT_TRUE(deliveries_in_state("parked", kParked, 30s)) << stack_->describe_deliveries();
  ASSERT_TRUE(rx_.wait_for_count("/b", kParked, 30s));

  // Route a leaves the configuration: the worker restarts on the new one, and the CLI reads it.
  stack_->worker(first).process.terminate();
  ASSERT_TRUE(stack_->worker(first).process.wait_exit(30s));
  StackOptions without_a = o;
  without_a.routes = {{"acme", "b", rx_.url("/b")}};
  auto config = stack_->write_config(without_a, "without-a.yaml");
  ASSERT_TRUE(config) << config.error().message;
  auto second = stack_->start_worker(true, *config);
  ASSERT_TRUE(second) << second.error().message;

  const std::vector<std::string> common = {"--config",       config->string(),
                                           "--database-url", stack_->database().url(),
                                           "--bootstrap",    stack_->bootstrap()};
  std::vector<std::string> list = {"routes", "list", "--json"};
  list.insert(list.end(), common.begin(), common.end());
  auto listed = run_cli_in_process(list);
  ASSERT_EQ(listed.code, 0) << listed.err;
  const auto routes = json::parse(listed.out)["routes"];
  ASSERT_EQ(routes.size(), 2u) << listed.out;
  EXPECT_EQ(routes[1]["name"], "a") << listed.out;  // after the configured ones
  EXPECT_EQ(routes[1]["configured"], false) << listed.out;
  EXPECT_EQ(routes[1]["state"], "suspended") << listed.out;
  EXPECT_EQ(routes[1]["parked"], kParked) << listed.out;

  std::vector<std::string> resume = {"routes", "resume", "a", "--source", "acme", "--json"};
  resume.insert(resume.end(), common.begin(), common.end());
  auto resumed = run_cli_in_process(resume);
  ASSERT_EQ(resumed.code, 0) << resumed.out << resumed.err;
  auto rj = json::parse(resumed.out);
  EXPECT_EQ(rj["route"]["state"], "active") << resumed.out;
  EXPECT_EQ(rj["route"]["configured"], false) << resumed.out;
  EXPECT_EQ(rj["release"]["released"], kParked) << resumed.out;

  ASSERT_TRUE(deliveries_in_state("dead", kParked, 30s)) << stack_->describe_deliveries();
  EXPECT_EQ(stack_->count_deliveries("parked"), 0);
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM parked_deliveries"), "0");
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM dead_letters"), std::to_string(kParked));
  EXPECT_EQ(stack_->scalar("SELECT state FROM route_states WHERE source = 'acme' AND route = 'a'"),
            "active");
  EXPECT_EQ(rx_.count("/a"), 0u);
  EXPECT_TRUE(eventually(
      [&] {
        return worker_metric(*second, "hookrelay_worker_dlq_total", {"reason=\"unknown_route\""}) ==
               kParked;
      },
      10s))
      << stack_->worker_metrics(*second);
  // The audit: parked, replayed (the release), then the dead letter, with no call made.
  EXPECT_EQ(stack_->scalar("SELECT string_agg(outcome || ' ' || attempt, ', ' ORDER BY started_at)"
                           " FROM delivery_attempts_all WHERE delivery_key = 'wh:acme:evt-0:a'"),
            "parked 0, replayed 0, permanent 0");
  EXPECT_NE(stack_
                ->scalar("SELECT last_error FROM deliveries WHERE delivery_key = "
                         "'wh:acme:evt-0:a'")
                .find("no longer configured"),
            std::string::npos);

  // A route name that neither the config nor Postgres knows is still a 404.
  std::vector<std::string> unknown = {"routes", "resume", "nope"};
  unknown.insert(unknown.end(), common.begin(), common.end());
  auto nope = run_cli_in_process(unknown);
  EXPECT_EQ(nope.code, 3) << nope.out << nope.err;
  EXPECT_NE(nope.err.find("no configured route named 'nope'"), std::string::npos) << nope.err;
}

// A release killed between marking a parked delivery 'retrying' and producing its message (the
// CLI's process ended there) leaves the delivery 'retrying' with its message still in
// hookrelay.parked. Running `routes resume` again takes that mark up once it is old enough and
// produces the message: the delivery is delivered, once. Before, a second resume listed only the
// route's parked deliveries, and `dlq replay --unfinished` read hookrelay.dlq: it was never
// delivered.
TEST_F(RouteLifecycleTest, ARerunResumeReleasesADeliveryAKilledReleaseMarkedAndDidNotProduce) {
  ASSERT_NO_FATAL_FAILURE(start_with_route_a_suspended());
  constexpr int kParked = 3;
  ASSERT_NO_FATAL_FAILURE(produce_in_order(0, kParked));
  ASSERT_TRUE(deliveries_in_state("parked", kParked, 30s)) << stack_->describe_deliveries();
  // What the killed release left of evt-1: marked (state, audit), not produced.
  stack_->scalar(
      "WITH m AS (UPDATE deliveries SET state = 'retrying', last_attempt_at = now() WHERE "
      "delivery_key = "
      "'wh:acme:evt-1:a' RETURNING 1) INSERT INTO dlq_replays (delivery_key, replayed_by, "
      "replayed_at, reason) SELECT 'wh:acme:evt-1:a', 'op', now(), 'release of route acme/a "
      "(resumed)' "
      "FROM m RETURNING 1");
  std::this_thread::sleep_for(1500ms);  // past --unfinished-after

  std::vector<std::string> resume = {
      "routes", "resume", "a", "--source", "acme", "--unfinished-after", "1s", "--json"};
  const auto common = cli_common();
  resume.insert(resume.end(), common.begin(), common.end());
  auto resumed = run_cli_in_process(resume);
  ASSERT_EQ(resumed.code, 0) << resumed.out << resumed.err;
  const json rj = json::parse(resumed.out);
  EXPECT_EQ(rj["release"]["released"], kParked) << resumed.out;
  ASSERT_TRUE(rx_.wait_for_count("/a", kParked, 30s)) << stack_->describe_deliveries();
  ASSERT_TRUE(deliveries_in_state("succeeded", 2 * kParked, 20s)) << stack_->describe_deliveries();
  for (const auto& [webhook_id, n] : rx_.webhook_id_counts("/a")) EXPECT_EQ(n, 1) << webhook_id;
}

// A worker records a delivery parked before its message reaches hookrelay.parked. A resume whose
// read of the topic began before that message was acknowledged reads the topic once more for
// the keys it did not find, as `dlq replay` does: the delivery is released, not reported missing
// and left parked on a route that is active again.
TEST_F(RouteLifecycleTest, TheCliReleasesAParkedDeliveryWhoseMessageArrivesAfterItsFirstRead) {
  StackOptions o;
  o.routes = {{"acme", "a", rx_.url("/a")}};
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  ASSERT_NO_FATAL_FAILURE(configure_and_start_admin(o));
  ASSERT_EQ(call("POST", "/v1/routes/a/suspend").status, 200);
  const std::string key = "wh:acme:evt-late:a";
  stack_->scalar(
      "INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, state,"
      " attempts, first_seen_at, origin_topic) VALUES ('" +
      key + "', 'webhook', 'acme', 'evt-late', 'a', '" + rx_.url("/a") +
      "', 'retrying', 0, now(), 'hookrelay.webhooks') RETURNING 1");
  // As a worker parks it (the parked_deliveries trigger follows state changes).
  stack_->scalar("UPDATE deliveries SET state = 'parked' WHERE delivery_key = '" + key +
                 "' RETURNING 1");

  std::vector<std::string> resume = {"routes", "resume", "a", "--source", "acme", "--json"};
  for (auto& c : cli_common()) resume.push_back(c);
  auto started = std::chrono::steady_clock::now();
  auto running = std::async(std::launch::async, [&] { return run_cli_in_process(resume); });
  // After the resume's settle and the start of its read of hookrelay.parked.
  std::this_thread::sleep_until(started + std::chrono::milliseconds(kRouteSettleMs) + 900ms);
  auto producer = TestProducer::create(stack_->bootstrap());
  ASSERT_TRUE(producer) << producer.error().message;
  const Headers headers = {{"hr-kind", "webhook"},
                           {"hr-source", "acme"},
                           {"hr-event-id", "evt-late"},
                           {"hr-received-at", "1700000000000"},
                           {"hr-content-type", "application/json"},
                           {"hr-delivery-key", key},
                           {"hr-route", "a"},
                           {"hr-origin-topic", "hookrelay.webhooks"},
                           {"hr-attempt", "0"}};
  ASSERT_TRUE((*producer)->produce(TestRecord{std::string(kParkedTopic), "{}", headers, key}));

  auto resumed = running.get();
  ASSERT_EQ(resumed.code, 0) << resumed.out << resumed.err;
  auto rj = json::parse(resumed.out);
  EXPECT_EQ(rj["release"]["released"], 1) << resumed.out;
  EXPECT_EQ(rj["release"]["missing"], 0) << resumed.out;
  EXPECT_NE(resumed.out.find("second read of hookrelay.parked"), std::string::npos) << resumed.out;
  EXPECT_EQ(stack_->scalar("SELECT state FROM deliveries WHERE delivery_key = '" + key + "'"),
            "retrying");
  auto retried = consume_all(stack_->bootstrap(), retry_topic(0), 1, 10s);
  ASSERT_TRUE(retried) << retried.error().message;
  ASSERT_EQ(retried->size(), 1u);
  EXPECT_EQ(retried->front().header(header::kDeliveryKey), key);
}

// A client retries its POST /v1/routes/{name}/resume (the first timed out) while the release of the
// first still runs: the retry finds the route active and stores another release of the keys still
// parked. A key is released only while it is parked, in the statement that takes it out of
// `parked`, so the second release skips what the first took: each parked delivery is delivered
// once, and a resume needs no Idempotency-Key.
TEST_F(RouteLifecycleTest, ARetriedResumeDeliversEachParkedDeliveryOnce) {
  ASSERT_NO_FATAL_FAILURE(start_with_route_a_suspended());
  ASSERT_NO_FATAL_FAILURE(produce_in_order());
  ASSERT_TRUE(rx_.wait_for_count("/b", kRouteEvents, 30s));
  ASSERT_TRUE(deliveries_in_state("parked", kRouteEvents, 30s)) << stack_->describe_deliveries();

  auto first = call("POST", "/v1/routes/a/resume?rate=5");
  ASSERT_EQ(first.status, 202) << first.body;
  auto retry = call("POST", "/v1/routes/a/resume?rate=5");  // at 5/s most keys are still parked
  ASSERT_EQ(retry.status, 202) << retry.body;
  const json fj = json::parse(first.body), rj = json::parse(retry.body);
  EXPECT_EQ(fj["changed"], true);
  EXPECT_EQ(rj["changed"], false);
  ASSERT_GT(rj["release"]["matched"].get<int>(), 0) << retry.body;
  auto first_done = wait_replay(fj["release"]["id"].get<std::string>());
  auto retry_done = wait_replay(rj["release"]["id"].get<std::string>());
  EXPECT_EQ(first_done["produced"].get<int>() + retry_done["produced"].get<int>(), kRouteEvents)
      << first_done.dump() << retry_done.dump();
  EXPECT_EQ(retry_done["produced"].get<int>() + retry_done["skipped"].get<int>(),
            retry_done["matched"].get<int>())
      << retry_done.dump();

  ASSERT_TRUE(rx_.wait_for_count("/a", kRouteEvents, 30s));
  ASSERT_TRUE(deliveries_in_state("succeeded", 2 * kRouteEvents, 20s))
      << stack_->describe_deliveries();
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(rx_.count("/a"), static_cast<std::size_t>(kRouteEvents));
  for (const auto& [webhook_id, n] : rx_.webhook_id_counts("/a")) EXPECT_EQ(n, 1) << webhook_id;
  expect_each_succeeded_once(*stack_, 2 * kRouteEvents);
}

// A worker decides to park while its view of the route is suspended, and records the park only
// after an operator's resume has listed the route's parked deliveries (here its records are held
// back by a lock on the audit table, as a slow database would): the record finds the suspension
// ended and makes the delivery a retry, which is delivered. Before, it was recorded parked after
// the release had looked, and stayed parked on an active route until another resume.
TEST_F(RouteLifecycleTest, AParkRecordedAfterAResumeListedTheRoutesParksIsDeliveredAnyway) {
  ASSERT_NO_FATAL_FAILURE(start_with_route_a_suspended());

  pqxx::connection lock_holder(stack_->database().url());
  pqxx::work held(lock_holder);
  held.exec("LOCK TABLE delivery_attempts IN EXCLUSIVE MODE");  // every record waits
  ASSERT_NO_FATAL_FAILURE(produce_in_order());
  ASSERT_TRUE(rx_.wait_for_count("/b", kRouteEvents, 30s));
  ASSERT_TRUE(deliveries_in_state("in_flight", 2 * kRouteEvents, 30s))
      << stack_->describe_deliveries();
  std::this_thread::sleep_for(500ms);  // the claims' answers reach the worker: parks decided

  auto resumed = call("POST", "/v1/routes/a/resume");
  ASSERT_EQ(resumed.status, 200) << resumed.body;
  EXPECT_EQ(json::parse(resumed.body)["release"], nullptr) << "nothing was parked yet";
  ASSERT_TRUE(eventually(
      [&] { return worker_metric(0, "hookrelay_route_suspended", {"route=\"a\""}) == 0; }, 10s));
  EXPECT_EQ(rx_.count("/a"), 0u);
  held.abort();  // the records go now, after the release

  EXPECT_TRUE(rx_.wait_for_count("/a", kRouteEvents, 30s))
      << rx_.count("/a") << " delivered; " << stack_->describe_deliveries();
  ASSERT_TRUE(deliveries_in_state("succeeded", 2 * kRouteEvents, 20s))
      << stack_->describe_deliveries();
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(rx_.count("/a"), static_cast<std::size_t>(kRouteEvents));
  for (const auto& [webhook_id, n] : rx_.webhook_id_counts("/a")) EXPECT_EQ(n, 1) << webhook_id;
  expect_each_succeeded_once(*stack_, 2 * kRouteEvents);
  EXPECT_EQ(route_a()["parked"], 0);
  // Each was audited as parked when its park was recorded, then attempted once.
  pqxx::connection c(stack_->database().url());
  pqxx::nontransaction q(c);
  EXPECT_EQ(
      q.exec1("SELECT count(*) FROM delivery_attempts_all WHERE outcome = 'parked'")[0].as<int>(),
      kRouteEvents);
}

}  // namespace
}  // namespace hookrelay::test
