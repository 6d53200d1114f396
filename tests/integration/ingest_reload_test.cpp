// SIGHUP reload of hookrelay-ingest while traffic flows: a source's secret is replaced and no
// request that either secret signs is refused during the switch; afterwards only the new secret
// is accepted. An invalid file is refused: the old config stays, and the refusal is counted.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "tests/support/stack.h"

namespace hookrelay::test {
namespace {

using namespace std::chrono_literals;

Result<HttpReply> post_signed(Service& ingest, const std::string& event_id,
                              const std::vector<std::string>& secrets) {
  return post_signed_webhook(ingest, "acme", event_id, R"({"id":")" + event_id + R"("})", secrets);
}

TEST(IngestReload, ASecretChangedBySighupRefusesNothingEitherSecretSigns) {
  auto stack = Stack::create({});
  ASSERT_TRUE(stack) << stack.error().message;
  Stack& s = **stack;
  ASSERT_TRUE(s.start_ingest());
  const auto config_path = s.dir().file("hookrelay.yaml");
  const std::string original = read_text_file(config_path);
  ASSERT_NE(original.find(kAcmeSecret), std::string::npos);

  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, refused{0};
  std::string first_refusal;
  std::thread traffic([&] {
    for (int i = 0; !stop.load(); ++i) {
      auto r =
          post_signed(s.ingest(), "evt-" + std::to_string(i), {kAcmeSecret, kAcmeRotatedSecret});
      ++sent;
      if (!r || r->status != 202) {
        if (refused++ == 0)
          first_refusal = r ? std::to_string(r->status) + " " + r->body : r.error().message;
      }
    }
  });
  std::this_thread::sleep_for(500ms);
  std::string changed = original;
  changed.replace(changed.find(kAcmeSecret), std::string(kAcmeSecret).size(), kAcmeRotatedSecret);
  std::ofstream(config_path, std::ios::trunc) << changed;
  ASSERT_EQ(::kill(s.ingest().process.pid(), SIGHUP), 0);
  ASSERT_TRUE(eventually(
      [&] { return s.ingest().process.read_log().find("config_reloaded") != std::string::npos; },
      10s))
      << s.ingest().process.log_tail();
  std::this_thread::sleep_for(500ms);
  stop = true;
  traffic.join();
  EXPECT_GT(sent.load(), 20);
  EXPECT_EQ(refused.load(), 0) << first_refusal;

  // Now only the new secret signs.
  auto old_only = post_signed(s.ingest(), "evt-old", {kAcmeSecret});
  ASSERT_TRUE(old_only);
  EXPECT_EQ(old_only->status, 401) << old_only->body;
  auto new_only = post_signed(s.ingest(), "evt-new", {kAcmeRotatedSecret});
  ASSERT_TRUE(new_only);
  EXPECT_EQ(new_only->status, 202) << new_only->body;

  // An invalid file is refused and counted; the config in force stays.
  std::ofstream(config_path, std::ios::trunc) << changed << "sources: {broken\n";
  ASSERT_EQ(::kill(s.ingest().process.pid(), SIGHUP), 0);
  ASSERT_TRUE(eventually(
      [&] {
        return s.ingest().process.read_log().find("config_reload_refused") != std::string::npos;
      },
      10s))
      << s.ingest().process.log_tail();
  auto metrics = http_get(s.ingest().url("/metrics"));
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metric_sum(metrics->body, "hookrelay_config_reloads_total", {"result=\"invalid\""}), 1);
  EXPECT_EQ(metric_sum(metrics->body, "hookrelay_config_reloads_total", {"result=\"applied\""}), 1);
  auto still = post_signed(s.ingest(), "evt-still", {kAcmeRotatedSecret});
  ASSERT_TRUE(still);
  EXPECT_EQ(still->status, 202) << still->body;
  EXPECT_TRUE(s.ingest().process.running());
}

}  // namespace
}  // namespace hookrelay::test
