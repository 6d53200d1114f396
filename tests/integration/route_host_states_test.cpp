// The circuit and adaptive limit of each route's destination host, which live in the worker's
// memory, in `hookrelay routes list` (real worker, devbroker, Postgres): route a calls a port
// where nothing listens (its circuit opens), route b a receiver answering 429 (its limit is cut).
// The worker publishes both every few seconds; the CLI joins them by the route's host; a clean
// stop withdraws the worker's rows, and a row nobody updated for a while is shown as stale.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/support/cli_run.h"
#include "tests/support/worker_fixture.h"

namespace hookrelay::test {
namespace {

using json = nlohmann::json;

TEST_F(WorkerTest, RoutesListShowsEachHostsCircuitAndAdaptiveLimitAsTheWorkersPublishThem) {
  uint16_t refused_port = 0;
  {
    ScriptedReceiver gone;
    ASSERT_TRUE(gone.start());
    refused_port = gone.port();
    gone.stop();
  }
  const std::string down_host = "127.0.0.1:" + std::to_string(refused_port);
  const std::string busy_host = "127.0.0.1:" + std::to_string(rx_.port());
  StackOptions o;
  o.routes = {{"acme", "a", "http://" + down_host + "/a"}, {"acme", "b", rx_.url("/b")}};
  o.schedule_seconds = {1, 2, 5};
  o.max_attempts = 20;
  o.per_host_max_in_flight = 64;
  o.worker_extra = "  breaker_failure_threshold: 3\n  breaker_cooldown_ms: 60000\n";
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.set_default("/b", {429});
  auto produced = stack_->produce_webhooks("acme", numbered_events("evt-host-", 20));
  ASSERT_TRUE(produced) << produced.error().message;
  const std::size_t w = start_worker();

  const std::vector<std::string> list = {"routes",
                                         "list",
                                         "--json",
                                         "--config",
                                         (stack_->dir().path() / "hookrelay.yaml").string(),
                                         "--database-url",
                                         stack_->database().url()};
  auto routes_now = [&]() -> json {
    auto r = run_cli_in_process(list);
    if (r.code != 0) return json();
    return json::parse(r.out)["routes"];
  };
  json routes;
  ASSERT_TRUE(eventually(
      [&] {
        routes = routes_now();
        return routes.is_array() && routes.size() == 2 &&
               routes[0]["destination"]["circuit"] == "open" &&
               routes[1]["destination"]["adaptive_limit"].is_number() &&
               routes[1]["destination"]["adaptive_limit"].get<int>() < 64;
      },
      30s))
      << routes.dump(2) << "\n"
      << stack_->scalar(
             "SELECT string_agg(host || ' ' || circuit || ' ' || adaptive_limit, '; ')"
             " FROM route_host_states");
  const json& a = routes[0]["destination"];
  EXPECT_EQ(a["host"], down_host);
  EXPECT_TRUE(a["open_until"].is_string()) << a.dump();
  EXPECT_EQ(a["max_in_flight"], 64);
  ASSERT_EQ(a["workers"].size(), 1u);
  EXPECT_EQ(a["workers"][0]["circuit"], "open");
  EXPECT_FALSE(a["workers"][0]["worker_id"].get<std::string>().empty());
  EXPECT_EQ(a["workers"][0]["stale"], false);
  const json& b = routes[1]["destination"];
  EXPECT_EQ(b["host"], busy_host);
  EXPECT_EQ(b["circuit"], "closed");  // a 429 is flow control, not a failure of the host
  EXPECT_EQ(b["max_in_flight"], 64);

  // The table the operator reads.
  std::vector<std::string> text_list = list;
  text_list.erase(text_list.begin() + 2);  // no --json
  auto text = run_cli_in_process(text_list);
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("CIRCUIT"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("open until "), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("/64"), std::string::npos) << text.out;

  // A clean stop withdraws the worker's rows: the routes' hosts are unknown again.
  stack_->worker(w).process.terminate();
  ASSERT_EQ(stack_->worker(w).process.wait_exit(30s), 0);
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM route_host_states"), "0");
  routes = routes_now();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0]["destination"]["circuit"], "unknown");
  EXPECT_TRUE(routes[0]["destination"]["adaptive_limit"].is_null());

  // A worker that died without withdrawing: its row stays listed, flagged stale, and counts for
  // nothing.
  stack_->scalar(
      "INSERT INTO route_host_states (host, worker_id, circuit, adaptive_limit,"
      " max_limit, updated_at) VALUES ('" +
      down_host +
      "', 'gone-worker', 'open', 3, 64, now() - interval '1 minute')"
      " RETURNING 1");
  routes = routes_now();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0]["destination"]["circuit"], "unknown");
  ASSERT_EQ(routes[0]["destination"]["workers"].size(), 1u);
  EXPECT_EQ(routes[0]["destination"]["workers"][0]["worker_id"], "gone-worker");
  EXPECT_EQ(routes[0]["destination"]["workers"][0]["stale"], true);
}

}  // namespace
}  // namespace hookrelay::test
