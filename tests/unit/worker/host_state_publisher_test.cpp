// HostStatePublisher with a fake store: what a worker writes of its hosts' circuits and adaptive
// limits, when, and what an unreachable database or a stop does; and destination_of(), which
// combines the workers' rows of one host for `hookrelay routes list`.
#include "worker/host_state_publisher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "shared/routes/route_control.h"

namespace hookrelay {
namespace {

class FakeHostStateStore : public HostStateStore {
 public:
  Result<void> publish(const std::string& worker_id, const std::vector<HostStateRow>& rows,
                       int forget_after_s) override {
    ++publishes;
    if (down) return fail("db_unavailable", "down", true);
    last_worker = worker_id;
    last_rows = rows;
    last_forget_after_s = forget_after_s;
    return {};
  }
  Result<void> withdraw(const std::string& worker_id) override {
    withdrawn.push_back(worker_id);
    return {};
  }

  bool down = false;
  std::atomic<int> publishes{0};
  std::string last_worker;
  std::vector<HostStateRow> last_rows;
  int last_forget_after_s = 0;
  std::vector<std::string> withdrawn;
};

HostStateRow host_row(const std::string& host, const std::string& circuit, int limit) {
  HostStateRow r;
  r.host = host;
  r.circuit = circuit;
  r.adaptive_limit = limit;
  r.max_limit = 64;
  return r;
}

TEST(HostStatePublisher, WritesNothingBeforeTheFirstOfferAndWithdrawsNothingAtStop) {
  FakeHostStateStore store;
  HostStatePublisher p(store, nullptr, {.worker_id = "w1"});
  EXPECT_TRUE(p.publish());
  EXPECT_EQ(store.publishes, 0);
  p.stop();
  EXPECT_TRUE(store.withdrawn.empty());
}

TEST(HostStatePublisher, WritesTheLatestOfferAsThisWorkersRows) {
  FakeHostStateStore store;
  HostStatePublisher p(store, nullptr, {.worker_id = "w1", .forget_after_s = 600});
  p.offer({host_row("a:443", "closed", 64)});
  p.offer({host_row("a:443", "open", 64), host_row("b:80", "closed", 12)});
  ASSERT_TRUE(p.publish());
  EXPECT_EQ(store.last_worker, "w1");
  EXPECT_EQ(store.last_forget_after_s, 600);
  ASSERT_EQ(store.last_rows.size(), 2u);
  EXPECT_EQ(store.last_rows[0].circuit, "open");
  EXPECT_EQ(store.last_rows[1].adaptive_limit, 12);
  // Unchanged state is written again: updated_at is what tells a live worker from a stale one.
  ASSERT_TRUE(p.publish());
  EXPECT_EQ(store.publishes, 2);
}

TEST(HostStatePublisher, AFailedRoundIsReportedAndTheNextWritesTheStateOfItsTime) {
  FakeHostStateStore store;
  HostStatePublisher p(store, nullptr, {.worker_id = "w1"});
  p.offer({host_row("a:443", "open", 64)});
  store.down = true;
  EXPECT_FALSE(p.publish());
  store.down = false;
  p.offer({host_row("a:443", "half_open", 64)});
  ASSERT_TRUE(p.publish());
  ASSERT_EQ(store.last_rows.size(), 1u);
  EXPECT_EQ(store.last_rows[0].circuit, "half_open");
}

TEST(HostStatePublisher, AStopWithdrawsThisWorkersRowsOnce) {
  FakeHostStateStore store;
  {
    HostStatePublisher p(store, nullptr, {.worker_id = "w7", .interval_ms = 10});
    p.start();
    p.offer({host_row("a:443", "closed", 64)});
    p.stop();
  }  // the destructor stops again: nothing more
  EXPECT_EQ(store.withdrawn, std::vector<std::string>{"w7"});
}

TEST(HostStatePublisher, ItsThreadWritesEveryInterval) {
  FakeHostStateStore store;
  HostStatePublisher p(store, nullptr, {.worker_id = "w1", .interval_ms = 5});
  p.offer({host_row("a:443", "closed", 64)});
  p.start();
  for (int i = 0; i < 400 && store.publishes < 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  p.stop();
  EXPECT_GE(store.publishes, 3);
}

TEST(RouteDestination, CombinesTheFreshRowsOfItsHostAndKeepsStaleOnesApart) {
  std::vector<HostStateRow> rows = {host_row("a:443", "closed", 40), host_row("a:443", "open", 64),
                                    host_row("a:443", "half_open", 8), host_row("b:80", "open", 1)};
  rows[1].open_until_ms = 5000;
  rows[2].age_ms = HostStatesConfig{}.stale_after_ms + 1;  // a worker that stopped publishing
  rows[0].worker_id = "w0";
  rows[1].worker_id = "w1";
  rows[2].worker_id = "w2";
  RouteDestination d = destination_of("a:443", rows, HostStatesConfig{}.stale_after_ms);
  EXPECT_EQ(d.circuit, "open");  // the worst fresh one
  EXPECT_EQ(d.open_until_ms, 5000);
  EXPECT_EQ(d.adaptive_limit, 40);  // the lowest fresh one: the stale 8 counts for nothing
  EXPECT_EQ(d.max_limit, 64);
  EXPECT_EQ(d.fresh_workers, 2);
  ASSERT_EQ(d.workers.size(), 3u);

  const nlohmann::json j = destination_json(d, [](int64_t ms) { return std::to_string(ms); });
  EXPECT_EQ(j["circuit"], "open");
  EXPECT_EQ(j["workers"][2]["worker_id"], "w2");
  EXPECT_EQ(j["workers"][2]["stale"], true);

  RouteDestination none = destination_of("c:443", rows, HostStatesConfig{}.stale_after_ms);
  EXPECT_EQ(none.circuit, "unknown");
  EXPECT_FALSE(none.adaptive_limit.has_value());
  EXPECT_TRUE(destination_json(none, [](int64_t) { return ""; })["max_in_flight"].is_null());
  EXPECT_TRUE(
      destination_json(destination_of("", rows, HostStatesConfig{}.stale_after_ms), [](int64_t) {
        return "";
      }).is_null());
}

}  // namespace
}  // namespace hookrelay
