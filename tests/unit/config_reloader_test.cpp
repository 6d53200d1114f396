// ConfigReloader: a valid file replaces the config in force, an invalid one (or one the
// service's own check refuses) leaves it in place; both are counted, and settings that need a
// restart are named.
#include "shared/config/config_reloader.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/unit/cli/cli_test_io.h"

namespace hookrelay {
namespace {

using cli::testing::TempFile;

const char* kReloadBase = R"(
sources: { acme: { scheme: standard-webhooks, secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] } }
routes:
  acme:
    - { name: a, url: "http://127.0.0.1:9001/a" }
worker: { group_id: g1, per_host_max_in_flight: 8 }
retry: { schedule_seconds: [5, 30] }
)";

EnvLookup reload_env() {
  return [](const std::string&) { return std::nullopt; };
}

Config parse_reload_config(const std::string& yaml) {
  auto c = parse_config(yaml, reload_env());
  EXPECT_TRUE(c) << c.error().message;
  return c ? *c : Config{};
}

std::string with_replaced(std::string text, const std::string& from, const std::string& to) {
  auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

double reload_count(prometheus::Registry& registry, const std::string& result) {
  for (const auto& family : registry.Collect()) {
    if (family.name != "hookrelay_config_reloads_total") continue;
    for (const auto& m : family.metric) {
      for (const auto& label : m.label) {
        if (label.name == "result" && label.value == result) return m.counter.value;
      }
    }
  }
  return -1;
}

class Reloader : public ::testing::Test {
 protected:
  void rewrite(const std::string& text) { std::ofstream(file.path(), std::ios::trunc) << text; }

  TempFile file{kReloadBase};
  prometheus::Registry registry;
  ConfigReloader reloader{"hookrelay-worker", file.path(), parse_reload_config(kReloadBase),
                          registry, reload_env()};
};

TEST_F(Reloader, AValidFileBecomesCurrentAndTheOldOneLivesOnWhereHeld) {
  auto before = reloader.current();
  rewrite(with_replaced(kReloadBase, "9001/a", "9002/a"));
  auto next = reloader.reload();
  ASSERT_TRUE(next) << next.error().message;
  EXPECT_EQ(reloader.current(), *next);
  EXPECT_EQ(reloader.current()->routes.at("acme").at(0).url, "http://127.0.0.1:9002/a");
  EXPECT_EQ(before->routes.at("acme").at(0).url, "http://127.0.0.1:9001/a");
  EXPECT_EQ(reload_count(registry, "applied"), 1);
  EXPECT_EQ(reload_count(registry, "invalid"), 0);
}

TEST_F(Reloader, AnInvalidFileIsRefusedNamingTheFieldAndCounted) {
  auto before = reloader.current();
  rewrite(with_replaced(kReloadBase, "per_host_max_in_flight: 8", "per_host_max_in_flight: -3"));
  auto next = reloader.reload();
  ASSERT_FALSE(next);
  EXPECT_NE(next.error().message.find("worker.per_host_max_in_flight"), std::string::npos)
      << next.error().message;
  EXPECT_EQ(reloader.current(), before);
  EXPECT_EQ(reload_count(registry, "invalid"), 1);
  EXPECT_EQ(reload_count(registry, "applied"), 0);
}

TEST_F(Reloader, AnUnreadableFileIsRefused) {
  std::filesystem::remove(file.path());
  auto before = reloader.current();
  EXPECT_FALSE(reloader.reload());
  EXPECT_EQ(reloader.current(), before);
  EXPECT_EQ(reload_count(registry, "invalid"), 1);
}

TEST_F(Reloader, TheServicesOwnCheckRefusesLikeAnInvalidFile) {
  reloader.set_check([](const Config& c) -> Result<void> {
    if (c.routes.at("acme").at(0).url.find("9003") != std::string::npos)
      return fail("config", "routes.acme[0].url: refused");
    return {};
  });
  auto before = reloader.current();
  rewrite(with_replaced(kReloadBase, "9001/a", "9003/a"));
  auto next = reloader.reload();
  ASSERT_FALSE(next);
  EXPECT_EQ(next.error().message, "routes.acme[0].url: refused");
  EXPECT_EQ(reloader.current(), before);
  EXPECT_EQ(reload_count(registry, "invalid"), 1);

  rewrite(with_replaced(kReloadBase, "9001/a", "9004/a"));
  EXPECT_TRUE(reloader.reload());
  EXPECT_EQ(reload_count(registry, "applied"), 1);
}

TEST(RestartOnlyChanges, NamesWhatTheWorkerReadsOnlyAtStart) {
  const Config a = parse_reload_config(kReloadBase);
  EXPECT_TRUE(restart_only_changes(a, a).empty());

  Config b = a;
  b.worker.group_id = "g2";
  b.worker.allowed_cidrs = {parse_cidr("10.0.0.0/8").value()};
  b.worker.allow_private_networks = true;
  b.retry.schedule_seconds = {5, 30, 120};
  b.postgres.url = "postgresql://elsewhere/db";
  b.worker.http_threads = 2;
  EXPECT_EQ(restart_only_changes(a, b),
            (std::vector<std::string>{"postgres.url", "worker.group_id", "worker.http_threads",
                                      "worker.allow_private_networks", "worker.allowed_cidrs",
                                      "retry.schedule_seconds (tier count)"}));
}

// The HTTP server's bounds are set when it starts.
TEST(RestartOnlyChanges, NamesWhatIngestAndTheAdminReadOnlyAtStart) {
  const Config a = parse_reload_config(kReloadBase);
  Config b = a;
  b.ingest.max_buffered_body_bytes = a.ingest.max_buffered_body_bytes * 2;
  b.admin.statement_timeout_ms = 1000;
  b.kafka.produce_timeout_ms = a.kafka.produce_timeout_ms + 1000;
  b.ingest.shutdown_grace_ms = a.ingest.shutdown_grace_ms + 1000;  // read at the stop: applies
  EXPECT_EQ(restart_only_changes(a, b),
            (std::vector<std::string>{"kafka.produce_timeout_ms", "ingest.max_buffered_body_bytes",
                                      "admin.statement_timeout_ms"}));
}

TEST(RestartOnlyChanges, LeavesOutWhatAppliesLive) {
  const Config a = parse_reload_config(kReloadBase);
  Config b = parse_reload_config(with_replaced(kReloadBase, "9001/a", "9002/a"));
  b.worker.per_host_max_in_flight = 2;
  b.worker.max_in_flight = 10;
  b.worker.breaker_failure_threshold = 3;
  b.worker.claim_lease_seconds = 30;
  b.retry.schedule_seconds = {10, 60};  // new delays, the same tiers
  b.retry.max_attempts = 3;
  b.sources.at("acme").secrets.push_back("whsec_bmV3LXNlY3JldA==");
  EXPECT_TRUE(restart_only_changes(a, b).empty());
}

}  // namespace
}  // namespace hookrelay
