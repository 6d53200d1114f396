// The circuit and adaptive limit of each route's destination host, which live in the worker's
// memory, in `hookrelay routes list` (real worker, devbroker, Postgres): route a calls a port
// where nothing listens (its circuit opens), route b a receiver answering 429 (its limit is cut).
// The worker publishes both every few seconds; the CLI joins them by the route's host; a clean
// stop withdraws the worker's rows, and a row nobody updated for a while is shown as stale.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "shared/net/unique_fd.h"
#include "tests/support/cli_run.h"
#include "tests/support/worker_fixture.h"

namespace hookrelay::test {
namespace {

using json = nlohmann::json;

// A loopback port bound and never listened on, held while the test runs: a call to it is
// refused, and no test running beside this one can take the port meanwhile (a port found free
// and let go was once taken by another test's receiver, whose answers kept the circuit closed).
class RefusingPort {
 public:
  RefusingPort() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    auto* any = reinterpret_cast<sockaddr*>(&addr);
    if (fd_.get() >= 0 && ::bind(fd_.get(), any, len) == 0 &&
        ::getsockname(fd_.get(), any, &len) == 0)
      port_ = ntohs(addr.sin_port);
  }
  // 127.0.0.1:<port>; "" when no port could be had.
  std::string host() const { return port_ ? "127.0.0.1:" + std::to_string(port_) : ""; }

 private:
  UniqueFd fd_;
  uint16_t port_ = 0;
};

// `hookrelay routes list --json` on the stack's config and database.
std::vector<std::string> host_states_list_args(const Stack& stack) {
  return {"routes",
          "list",
          "--json",
          "--config",
          (stack.dir().path() / "hookrelay.yaml").string(),
          "--database-url",
          stack.database().url()};
}

// Its routes; null when the CLI failed.
json host_states_listed(const std::vector<std::string>& args) {
  auto r = run_cli_in_process(args);
  if (r.code != 0) return json();
  return json::parse(r.out)["routes"];
}

TEST_F(WorkerTest, RoutesListShowsEachHostsCircuitAndAdaptiveLimitAsTheWorkersPublishThem) {
  const RefusingPort down;
  const std::string down_host = down.host();
  ASSERT_FALSE(down_host.empty());
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

  const std::vector<std::string> list = host_states_list_args(*stack_);
  auto routes_now = [&] { return host_states_listed(list); };
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

// Two workers on one route stack, each publishing its own view of the same hosts every 300 ms
// (worker.host_states, short for the test): `routes list` lists both rows of each host and
// combines them as docs/routes.md says (the worst circuit, the lowest adaptive limit); a worker
// SIGKILLed (its rows not withdrawn) has its rows flagged stale once stale_after_ms has passed,
// and they no longer count.
TEST_F(WorkerTest, RoutesListCombinesTheRowsOfEveryWorkerAndDropsAKilledOnesOnceStale) {
  constexpr int kStaleMs = 1500;
  const RefusingPort down;
  const std::string down_host = down.host();
  ASSERT_FALSE(down_host.empty());
  StackOptions o;
  o.routes = {{"acme", "a", "http://" + down_host + "/a"}, {"acme", "b", rx_.url("/b")}};
  o.schedule_seconds = {1, 2, 5};
  o.max_attempts = 50;
  o.per_host_max_in_flight = 64;
  o.worker_extra =
      "  breaker_failure_threshold: 3\n  breaker_cooldown_ms: 60000\n"
      "  host_states: { publish_interval_ms: 300, stale_after_ms: " +
      std::to_string(kStaleMs) + " }\n";
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  rx_.set_default("/b", {429});
  const std::size_t first = start_worker();
  const std::size_t second = start_worker();
  // Events on every partition, so both workers call both hosts; more while the test waits.
  auto produced = stack_->produce_webhooks("acme", numbered_events("evt-two-", 40));
  ASSERT_TRUE(produced) << produced.error().message;

  const std::vector<std::string> list = host_states_list_args(*stack_);
  auto routes_now = [&] { return host_states_listed(list); };
  auto fresh_rows = [](const json& destination) {
    int n = 0;
    for (const auto& w : destination["workers"]) n += w["stale"] == false ? 1 : 0;
    return n;
  };
  json routes;
  ASSERT_TRUE(eventually(
      [&] {
        routes = routes_now();
        return routes.is_array() && routes.size() == 2 &&
               fresh_rows(routes[0]["destination"]) == 2 &&
               fresh_rows(routes[1]["destination"]) == 2 &&
               routes[0]["destination"]["circuit"] == "open" &&
               routes[1]["destination"]["adaptive_limit"].is_number() &&
               routes[1]["destination"]["adaptive_limit"].get<int>() < 64;
      },
      30s))
      << routes.dump(2);
  // Both workers' rows, each under its own id, and the combination the docs promise.
  for (const auto& route : routes) {
    const json& d = route["destination"];
    ASSERT_EQ(d["workers"].size(), 2u) << d.dump(2);
    EXPECT_NE(d["workers"][0]["worker_id"], d["workers"][1]["worker_id"]);
    int lowest = 64;
    bool any_open = false;
    for (const auto& w : d["workers"]) {
      lowest = std::min(lowest, w["adaptive_limit"].get<int>());
      any_open = any_open || w["circuit"] == "open";
      EXPECT_EQ(w["max_in_flight"], 64);
    }
    EXPECT_EQ(d["adaptive_limit"], lowest) << d.dump(2);
    EXPECT_EQ(d["circuit"] == "open", any_open) << d.dump(2);
  }
  // The rows are written every 300 ms, not every 5 s.
  const std::string when = "SELECT max(updated_at)::text FROM route_host_states";
  const std::string written = stack_->scalar(when);
  EXPECT_TRUE(eventually([&] { return stack_->scalar(when) != written; }, 1500ms))
      << "no row written again within 1.5 s";

  // The first worker is SIGKILLed: its rows stay (nothing withdraws them), listed but stale
  // once kStaleMs has passed, and only the second worker's rows count.
  const std::string killed_suffix = "-" + std::to_string(stack_->worker(first).process.pid());
  const std::string live_suffix = "-" + std::to_string(stack_->worker(second).process.pid());
  stack_->worker(first).process.kill();
  ASSERT_TRUE(stack_->worker(first).process.wait_exit(5s));
  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually(
      [&] {
        routes = routes_now();
        return routes.is_array() && routes.size() == 2 &&
               fresh_rows(routes[0]["destination"]) == 1 &&
               fresh_rows(routes[1]["destination"]) == 1;
      },
      10s))
      << routes.dump(2);
  const double waited_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  EXPECT_LT(waited_s, 5.0) << "a stale row counted for longer than stale_after_ms";
  for (const auto& route : routes) {
    const json& d = route["destination"];
    ASSERT_EQ(d["workers"].size(), 2u) << "the killed worker's row is still listed";
    const json* live = nullptr;
    for (const auto& w : d["workers"]) {
      const auto id = w["worker_id"].get<std::string>();
      const bool stale = w["stale"].get<bool>();
      if (!stale) live = &w;
      // Worker ids default to host-pid.
      EXPECT_EQ(stale, id.ends_with(killed_suffix)) << id;
      EXPECT_TRUE(id.ends_with(killed_suffix) || id.ends_with(live_suffix)) << id;
    }
    ASSERT_NE(live, nullptr);
    EXPECT_EQ(d["adaptive_limit"], (*live)["adaptive_limit"]) << d.dump(2);
    EXPECT_EQ(d["circuit"], (*live)["circuit"]) << d.dump(2);
  }
}

}  // namespace
}  // namespace hookrelay::test
