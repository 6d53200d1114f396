// AdminTest: the base fixture of the admin API tests (integration on the devbroker, kafka on a
// real cluster): a WorkerTest whose derived fixture creates the Stack, then start_admin() runs
// hookrelay-admin on the stack's config plus an admin token, and the helpers below talk to it.
// Every reply is checked to be below 500.
//
// Thread-safety: the test thread only.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/free_port.h"
#include "tests/support/worker_fixture.h"

namespace hookrelay::test {

inline constexpr const char* kAdminToken = "adm_test_0123456789abcdef";

class AdminTest : public WorkerTest {
 protected:
  using json = nlohmann::json;
  using Headers = std::vector<std::pair<std::string, std::string>>;

  // Writes the admin config (the stack's, for `options`, plus the admin token) and starts the
  // first hookrelay-admin on it. Call with ASSERT_NO_FATAL_FAILURE after creating the stack.
  void configure_and_start_admin(const StackOptions& options) {
    auto path = stack_->write_config(options, "admin.yaml");
    ASSERT_TRUE(path) << path.error().message;
    std::ofstream(*path, std::ios::app) << "admin: { tokens: [\"" << kAdminToken << "\"] }\n";
    admin_config_ = *path;
    ASSERT_NO_FATAL_FAILURE(start_admin());
  }

  // A new hookrelay-admin process (on a new port) on the same config, e.g. after a kill.
  void start_admin() {
    admin_port_ = free_port();
    auto child = ChildProcess::spawn(
        {HOOKRELAY_BIN_DIR "/admin/hookrelay-admin", "--config", admin_config_.string()},
        {{"HOOKRELAY_ADMIN_LISTEN", "127.0.0.1:" + std::to_string(admin_port_)}},
        stack_->dir().file("admin-" + std::to_string(++admin_runs_) + ".log"));
    ASSERT_TRUE(child) << child.error().message;
    admin_ = std::make_unique<ChildProcess>(std::move(*child));
    ASSERT_TRUE(wait_for_status(url("/healthz"), 200, 20s)) << admin_->log_tail();
  }

  // `n` events whose route-a deliveries die (the receiver answers 400: permanent) and whose
  // route-b ones succeed, both recorded within `timeout`; route a still answers 400. Needs routes
  // acme -> a and acme -> b. Call with ASSERT_NO_FATAL_FAILURE.
  void die_on_a(int n, std::chrono::seconds timeout) {
    rx_.set_default("/a", {400, {}, 0, "refused"});
    start_worker();
    ASSERT_TRUE(stack_->produce_webhooks("acme", numbered_events("evt-", n)));
    ASSERT_TRUE(deliveries_in_state("dead", n, timeout)) << stack_->describe_deliveries();
    ASSERT_TRUE(deliveries_in_state("succeeded", n, timeout)) << stack_->describe_deliveries();
  }

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(admin_port_) + path;
  }
  static Headers auth() { return {{"Authorization", std::string("Bearer ") + kAdminToken}}; }
  static Headers auth_json() {
    return {{"Authorization", std::string("Bearer ") + kAdminToken},
            {"Content-Type", "application/json"}};
  }

  HttpReply call(const std::string& method, const std::string& path, const std::string& body = {},
                 const Headers& headers = auth()) {
    auto r = http_request(method, url(path), body, headers);
    EXPECT_TRUE(r) << r.error().message;
    if (!r) return {};
    EXPECT_LT(r->status, 500) << method << " " << path << ": " << r->body;
    return *r;
  }
  // The body of GET `path` as JSON; with status > 0, the status is expected too.
  json get_json(const std::string& path, int status = 200) {
    auto r = call("GET", path);
    if (status > 0) {
      EXPECT_EQ(r.status, status) << path << ": " << r.body;
    }
    return json::parse(r.body, nullptr, false);
  }
  json post_replay(const json& body) {
    auto r = call("POST", "/v1/replays", body.dump(), auth_json());
    EXPECT_EQ(r.status, 202) << r.body;
    return json::parse(r.body, nullptr, false);
  }
  // Waits for the replay to finish; its last progress.
  json wait_replay(const std::string& id, std::chrono::milliseconds timeout = 60s) {
    json p;
    eventually(
        [&] {
          p = get_json("/v1/replays/" + id);
          return p.value("state", "") == "finished";
        },
        timeout);
    return p;
  }
  // A 4xx JSON error whose code is `code` and whose message mentions `names`.
  static void expect_error(const HttpReply& r, int status, const std::string& code,
                           const std::string& names) {
    EXPECT_EQ(r.status, status) << r.body;
    auto j = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r.body;
    EXPECT_EQ(j["error"]["code"], code) << r.body;
    EXPECT_NE(j["error"]["message"].get<std::string>().find(names), std::string::npos) << r.body;
  }
  // The outcomes of a delivery's attempt trail, oldest first.
  std::vector<std::string> attempt_outcomes(const std::string& encoded_key) {
    const json detail = get_json("/v1/deliveries/" + encoded_key);
    std::vector<std::string> outcomes;
    for (const auto& a : detail["attempts"]) outcomes.push_back(a["outcome"]);
    return outcomes;
  }

  std::filesystem::path admin_config_;
  std::unique_ptr<ChildProcess> admin_;
  uint16_t admin_port_ = 0;
  int admin_runs_ = 0;
};

}  // namespace hookrelay::test
