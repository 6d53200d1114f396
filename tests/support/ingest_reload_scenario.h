// SIGHUP reload of hookrelay-ingest while traffic flows, on whatever broker the Stack runs on (the
// devbroker in integration_tests, the real three-node cluster in kafka_tests): a source's secret
// is replaced and no request that either secret signs is refused during the switch; afterwards
// only the new secret is accepted. An invalid file is refused: the old config stays, and the
// refusal is counted. Call with ASSERT_NO_FATAL_FAILURE; `accepted` gets the event id of every
// request answered 202, for the caller to find in the topic.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/stack.h"

namespace hookrelay::test {

inline void sighup_secret_rotation_refuses_nothing(Stack& s, std::vector<std::string>& accepted) {
  using namespace std::chrono_literals;
  auto post = [&s](const std::string& event_id, const std::vector<std::string>& secrets) {
    return post_signed_webhook(s.ingest(), "acme", event_id, R"({"id":")" + event_id + R"("})",
                               secrets);
  };
  std::mutex mu;
  auto accept = [&](const std::string& id, const Result<HttpReply>& r) {
    if (r && r->status == 202) {
      std::lock_guard lock(mu);
      accepted.push_back(id);
    }
  };
  const auto config_path = s.dir().file("hookrelay.yaml");
  const std::string original = read_text_file(config_path);
  ASSERT_NE(original.find(kAcmeSecret), std::string::npos);

  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, refused{0};
  std::string first_refusal;
  std::thread traffic([&] {
    for (int i = 0; !stop.load(); ++i) {
      const std::string id = "evt-" + std::to_string(i);
      auto r = post(id, {kAcmeSecret, kAcmeRotatedSecret});
      ++sent;
      accept(id, r);
      if (!r || r->status != 202) {
        if (refused++ == 0)
          first_refusal = r ? std::to_string(r->status) + " " + r->body : r.error().message;
      }
    }
  });
  // Counts, not times: on a loaded machine with real brokers one request can take 50 ms or more.
  (void)eventually([&] { return sent.load() >= 10; }, 20s);
  std::string changed = original;
  changed.replace(changed.find(kAcmeSecret), std::string(kAcmeSecret).size(), kAcmeRotatedSecret);
  std::ofstream(config_path, std::ios::trunc) << changed;
  const bool signalled = ::kill(s.ingest().process.pid(), SIGHUP) == 0;
  const bool reloaded = signalled && eventually(
                                         [&] {
                                           return s.ingest().process.read_log().find(
                                                      "config_reloaded") != std::string::npos;
                                         },
                                         10s);
  const int sent_at_reload = sent.load();
  std::this_thread::sleep_for(500ms);
  (void)eventually([&] { return sent.load() >= sent_at_reload + 11; }, 20s);
  stop = true;
  traffic.join();
  ASSERT_TRUE(reloaded) << s.ingest().process.log_tail();
  EXPECT_GT(sent.load(), 20);
  EXPECT_EQ(refused.load(), 0) << first_refusal;

  // Now only the new secret signs.
  auto old_only = post("evt-old", {kAcmeSecret});
  ASSERT_TRUE(old_only);
  EXPECT_EQ(old_only->status, 401) << old_only->body;
  auto new_only = post("evt-new", {kAcmeRotatedSecret});
  ASSERT_TRUE(new_only);
  EXPECT_EQ(new_only->status, 202) << new_only->body;
  accept("evt-new", new_only);

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
  auto still = post("evt-still", {kAcmeRotatedSecret});
  ASSERT_TRUE(still);
  EXPECT_EQ(still->status, 202) << still->body;
  accept("evt-still", still);
  EXPECT_TRUE(s.ingest().process.running());
}

}  // namespace hookrelay::test
