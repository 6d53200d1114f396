// SIGHUP reload of hookrelay-worker (with hookrelay-ingest) while webhooks flow: one reload moves
// a route to a second receiver and replaces the source's secret. No request that either secret
// signs is refused, every accepted event is delivered exactly once across the two receivers,
// and events sent after the worker installed the new config reach only the new URL. An invalid
// file is refused and counted, settings that need a restart are named, and delivery goes on.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "tests/support/scripted_receiver.h"
#include "tests/support/stack.h"

namespace hookrelay::test {
namespace {

using namespace std::chrono_literals;

// The stack's config for `options`, with the acme source's secret replaced by `secret`, written
// over the file the services read.
void rewrite_reload_config(Stack& s, const StackOptions& options, const std::string& secret) {
  auto path = s.write_config(options, "hookrelay.yaml");
  ASSERT_TRUE(path) << path.error().message;
  std::string text = read_text_file(*path);
  auto at = text.find(kAcmeSecret);
  ASSERT_NE(at, std::string::npos);
  text.replace(at, std::string(kAcmeSecret).size(), secret);
  std::ofstream(*path, std::ios::trunc) << text;
}

bool log_has(Service& service, const std::string& what, std::chrono::milliseconds timeout = 15s) {
  return eventually([&] { return service.process.read_log().find(what) != std::string::npos; },
                    timeout);
}

std::size_t count_in(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(WorkerReload, RouteUrlAndSourceSecretChangedBySighupWhileTrafficFlows) {
  ScriptedReceiver old_rx, new_rx;
  ASSERT_TRUE(old_rx.start());
  ASSERT_TRUE(new_rx.start());
  StackOptions options;
  options.routes = {{"acme", "a", old_rx.url("/a")}};
  auto stack = Stack::create(options);
  ASSERT_TRUE(stack) << stack.error().message;
  Stack& s = **stack;
  ASSERT_TRUE(s.start_ingest());
  auto w = s.start_worker();
  ASSERT_TRUE(w) << w.error().message;
  Service& worker = s.worker(*w);

  // Traffic: each event signed with both secrets, as a provider rotating its secret sends it.
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::atomic<int> applied_at{-1};  // the first event sent after the worker had the new config
  std::mutex mu;
  std::vector<std::string> accepted;
  std::vector<std::string> refusals;
  std::thread traffic([&] {
    for (int i = 0; !stop.load(); ++i) {
      const std::string id = "evt-" + std::to_string(i);
      auto r = post_signed_webhook(s.ingest(), "acme", id, R"({"n":)" + std::to_string(i) + "}",
                                   {kAcmeSecret, kAcmeRotatedSecret});
      sent.store(i + 1);
      std::lock_guard lock(mu);
      if (r && r->status == 202) {
        accepted.push_back(id);
      } else {
        refusals.push_back(id + ": " +
                           (r ? std::to_string(r->status) + " " + r->body : r.error().message));
      }
      std::this_thread::sleep_for(2ms);
    }
  });

  ASSERT_TRUE(old_rx.wait_for_count("/a", 50, 20s)) << worker.process.log_tail();
  StackOptions moved = options;
  moved.routes = {{"acme", "a", new_rx.url("/a")}};
  rewrite_reload_config(s, moved, kAcmeRotatedSecret);
  ASSERT_EQ(::kill(s.ingest().process.pid(), SIGHUP), 0);
  ASSERT_EQ(::kill(worker.process.pid(), SIGHUP), 0);
  ASSERT_TRUE(log_has(s.ingest(), "msg=config_reloaded")) << s.ingest().process.log_tail();
  ASSERT_TRUE(log_has(worker, "msg=worker_config_applied")) << worker.process.log_tail();
  // Events up to the one in flight now may have been consumed before the switch; later ones not.
  applied_at.store(sent.load() + 1);
  ASSERT_TRUE(new_rx.wait_for_count("/a", 100, 20s)) << worker.process.log_tail();
  stop = true;
  traffic.join();

  std::vector<std::string> ids;
  {
    std::lock_guard lock(mu);
    ids = accepted;
    EXPECT_TRUE(refusals.empty()) << refusals.size() << " refused, first: " << refusals.front();
  }
  ASSERT_TRUE(
      eventually([&] { return old_rx.total_count() + new_rx.total_count() >= ids.size(); }, 30s))
      << old_rx.total_count() << " + " << new_rx.total_count() << " of " << ids.size()
      << " delivered\n"
      << worker.process.log_tail();
  std::this_thread::sleep_for(500ms);  // a duplicate would arrive now

  auto at_old = old_rx.webhook_id_counts();
  auto at_new = new_rx.webhook_id_counts();
  int lost = 0, duplicated = 0, late_to_old = 0;
  for (const auto& id : ids) {
    const int n = (at_old.count(id) ? at_old[id] : 0) + (at_new.count(id) ? at_new[id] : 0);
    if (n == 0) ++lost;
    if (n > 1) ++duplicated;
    if (std::stoi(id.substr(4)) >= applied_at.load() && at_old.count(id)) ++late_to_old;
  }
  const std::size_t received = old_rx.total_count() + new_rx.total_count();
  std::cout << "[ worker reload ] sent=" << sent.load() << " accepted=" << ids.size()
            << " refused=" << refusals.size() << " old_url=" << old_rx.total_count()
            << " new_url=" << new_rx.total_count() << " lost=" << lost
            << " duplicated=" << duplicated
            << " sent_after_apply=" << sent.load() - applied_at.load()
            << " of_those_to_old_url=" << late_to_old << "\n";
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(duplicated, 0);
  EXPECT_EQ(received, ids.size()) << "a request that is no accepted event reached a receiver";
  EXPECT_EQ(late_to_old, 0)
      << "an event sent after the new config was installed went to the old URL";
  EXPECT_GT(old_rx.total_count(), 0u);
  EXPECT_GT(new_rx.total_count(), 0u);
  // The new route signs with its secrets too: every delivery carries a signature.
  for (const auto& r : new_rx.requests("/a")) EXPECT_TRUE(r.header("webhook-signature")) << r.body;

  // After the switch only the new secret signs.
  auto old_only = post_signed_webhook(s.ingest(), "acme", "evt-old", "{}", {kAcmeSecret});
  ASSERT_TRUE(old_only);
  EXPECT_EQ(old_only->status, 401) << old_only->body;

  const std::string metrics = s.worker_metrics(*w);
  EXPECT_EQ(metric_sum(metrics, "hookrelay_config_reloads_total", {"result=\"applied\""}), 1);
  EXPECT_EQ(metric_sum(metrics, "hookrelay_config_reloads_total", {"result=\"invalid\""}), 0);
  EXPECT_EQ(s.count_deliveries("succeeded"), static_cast<int64_t>(ids.size()))
      << s.describe_deliveries();
}

TEST(WorkerReload, InvalidFileIsRefusedAndSettingsThatNeedARestartAreNamed) {
  ScriptedReceiver rx;
  ASSERT_TRUE(rx.start());
  StackOptions options;
  options.routes = {{"acme", "a", rx.url("/a")}};
  auto stack = Stack::create(options);
  ASSERT_TRUE(stack) << stack.error().message;
  Stack& s = **stack;
  auto w = s.start_worker();
  ASSERT_TRUE(w) << w.error().message;
  Service& worker = s.worker(*w);
  const auto path = s.dir().file("hookrelay.yaml");
  const std::string good = read_text_file(path);

  // Not YAML: refused, counted, the running config stays.
  std::ofstream(path, std::ios::trunc) << good << "routes: {broken\n";
  ASSERT_EQ(::kill(worker.process.pid(), SIGHUP), 0);
  ASSERT_TRUE(log_has(worker, "msg=config_reload_refused")) << worker.process.log_tail();
  // Valid YAML the worker cannot use (its SSRF allowlist): refused the same way, the field named.
  StackOptions bad_cidr = options;
  ASSERT_TRUE(s.write_config(bad_cidr, "hookrelay.yaml"));
  std::string text = read_text_file(path);
  auto at = text.find("worker:\n");
  ASSERT_NE(at, std::string::npos);
  text.insert(at + 8, "  allowed_cidrs: [\"10.0.0.0/33\"]\n");
  std::ofstream(path, std::ios::trunc) << text;
  ASSERT_EQ(::kill(worker.process.pid(), SIGHUP), 0);
  ASSERT_TRUE(eventually(
      [&] { return count_in(worker.process.read_log(), "msg=config_reload_refused") == 2; }, 15s))
      << worker.process.log_tail();
  EXPECT_NE(worker.process.read_log().find("worker.allowed_cidrs[0]"), std::string::npos)
      << worker.process.log_tail();
  ASSERT_TRUE(s.produce_webhook("acme", "evt-1", "{}"));
  ASSERT_TRUE(rx.wait_for_count("/a", 1, 20s)) << worker.process.log_tail();

  // A group id differs: named as needing a restart; the rest applies, the worker stays in its
  // group.
  StackOptions regrouped = options;
  regrouped.group_id = "another-group";
  regrouped.max_in_flight = 500;
  ASSERT_TRUE(s.write_config(regrouped, "hookrelay.yaml"));
  ASSERT_EQ(::kill(worker.process.pid(), SIGHUP), 0);
  ASSERT_TRUE(log_has(worker, "restart_required_for=worker.group_id")) << worker.process.log_tail();
  ASSERT_TRUE(log_has(worker, "msg=worker_config_applied max_in_flight=500"))
      << worker.process.log_tail();
  ASSERT_TRUE(s.produce_webhook("acme", "evt-2", "{}"));
  ASSERT_TRUE(rx.wait_for_count("/a", 2, 20s)) << worker.process.log_tail();

  const std::string metrics = s.worker_metrics(*w);
  EXPECT_EQ(metric_sum(metrics, "hookrelay_config_reloads_total", {"result=\"invalid\""}), 2);
  EXPECT_EQ(metric_sum(metrics, "hookrelay_config_reloads_total", {"result=\"applied\""}), 1);
  EXPECT_TRUE(worker.process.running());
}

}  // namespace
}  // namespace hookrelay::test
