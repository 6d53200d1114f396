// Stack: one test's whole hookrelay deployment on this machine: a TestDir, a migrated
// TestDatabase, a DevBroker (or, with StackOptions::kafka_bootstrap, a Kafka cluster someone else
// runs), a config file, and any number of hookrelay-ingest and hookrelay-worker processes started
// from the build tree, each on a free 127.0.0.1 port.
//
// The config has two sources: "acme" (standard-webhooks, kAcmeSecret) and "github" (github,
// kGithubSecret), the API token kApiToken, and the routes of StackOptions; every route signs
// with kRouteSecret. Retry tiers, leases and grace periods default to test-sized values.
//
// Typical use:
//   StackOptions o;
//   o.routes = {{"acme", "a", rx.url("/a")}};
//   auto stack = Stack::create(o);
//   ASSERT_TRUE(stack) << stack.error().message;
//   auto w = (*stack)->start_worker();
//   ASSERT_TRUE(w) << w.error().message;
//   ASSERT_TRUE((*stack)->produce_webhook("acme", "evt-1", "{}"));
//
// Destruction kills what still runs, stops the broker, drops the database, and removes the
// directory unless the test failed (then the logs stay, and the children print their tails).
//
// Thread-safety: one test thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "shared/config/config.h"
#include "shared/result.h"
#include "tests/support/devbroker.h"
#include "tests/support/http_client.h"
#include "tests/support/kafka_test_client.h"
#include "tests/support/postgres.h"
#include "tests/support/process.h"
#include "tests/support/test_dir.h"

namespace hookrelay::test {

inline constexpr const char* kAcmeSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
// What a test rotating acme's secret replaces kAcmeSecret with.
inline constexpr const char* kAcmeRotatedSecret =
    "whsec_bmV3LXNlY3JldC1hZnRlci10aGUtcmVsb2FkLTEyMzQ=";
inline constexpr const char* kRouteSecret = "whsec_dGVzdC1yb3V0ZS1zaWduaW5nLWtleS0xMjM0NTY=";
inline constexpr const char* kGithubSecret = "gh-test-secret";
inline constexpr const char* kApiToken = "tok_test_0123456789abcdef";

struct RouteSpec {
  std::string source;  // "acme" or "github"
  std::string name;
  std::string url;
  int timeout_ms = 5000;
  // More keys of the route's YAML flow mapping, e.g. "filter: {...}, headers: {...}". With a
  // `secrets` key among them the route does not also get `secret: kRouteSecret`.
  std::string extra = {};
};

struct StackOptions {
  std::vector<RouteSpec> routes;
  std::vector<int> schedule_seconds = {1, 2, 3};
  int max_attempts = 5;
  int max_age_seconds = 3600;
  // Short, so tests of a lost worker's leases are quick, yet long enough for a route's 5 s call
  // and the record of its result (the worker's lease_window would cut a call that does not fit).
  int claim_lease_seconds = 8;
  bool allow_private_networks = true;
  int shutdown_grace_ms = 3000;
  int batch_size = 100;
  int max_in_flight = 1000;
  int per_host_max_in_flight = 256;
  // More keys of the worker section, as YAML lines ("  adaptive_limit: { enabled: false }\n").
  std::string worker_extra;
  std::string group_id = "hookrelay-workers";
  std::string log_level = "info";
  // librdkafka properties added to (or overriding) the stack's, e.g. {"debug", "cgrp"}.
  std::map<std::string, std::string> kafka_properties;
  int brokers = 1;
  int partitions = 4;
  // Non-empty: this Kafka (e.g. a KafkaCluster's bootstrap, its topics made by the caller) instead
  // of a DevBroker of the stack's own; brokers and partitions are then unused.
  std::string kafka_bootstrap;
  // Environment of the services (and of the stack's own reading of the config): ${VAR} values.
  std::map<std::string, std::string> env;
};

// A running hookrelay process and its HTTP port.
struct Service {
  ChildProcess process;
  uint16_t port = 0;
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
};

class Stack {
 public:
  static Result<std::unique_ptr<Stack>> create(StackOptions options);
  ~Stack();
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  const StackOptions& options() const { return options_; }
  const Config& config() const { return config_; }
  const TestDir& dir() const { return dir_; }
  DevBroker& broker() { return *broker_; }  // only without options().kafka_bootstrap
  const std::string& bootstrap() const { return bootstrap_; }
  const TestDatabase& database() const { return *db_; }

  // Writes the YAML for `options` (this stack's broker and database) to dir/name.
  Result<std::filesystem::path> write_config(const StackOptions& options,
                                             const std::string& name) const;

  // Starts hookrelay-ingest and waits for /readyz.
  Result<void> start_ingest(std::chrono::milliseconds ready_timeout = std::chrono::seconds(20));
  Service& ingest() { return *ingest_; }

  // Starts a hookrelay-worker (with this stack's config, or `config_path`) and, when
  // wait_ready, waits until /readyz answers 200 (partitions assigned, Postgres up). Returns its
  // index for worker().
  Result<std::size_t> start_worker(
      bool wait_ready = true, const std::filesystem::path& config_path = {},
      std::chrono::milliseconds ready_timeout = std::chrono::seconds(30));
  Service& worker(std::size_t index) { return *workers_.at(index); }
  // GET /metrics of a worker; "" when it does not answer.
  std::string worker_metrics(std::size_t index);

  // Produces straight to hookrelay.webhooks with the headers ingest would set (key = event id).
  Result<void> produce_webhook(const std::string& source, const std::string& event_id,
                               const std::string& body,
                               const std::string& content_type = "application/json");
  // Many at once: (event id, body) pairs, all for `source`.
  Result<void> produce_webhooks(const std::string& source,
                                const std::vector<std::pair<std::string, std::string>>& events);
  // `copies` copies of one webhook delivery's retry message in retry tier `tier`, due now, as a
  // worker re-publishes it after attempts 1, 2, ...: what a replay after a failed offset commit
  // leaves in a tier.
  Result<void> produce_retry_copies(const std::string& source, const std::string& event_id,
                                    const std::string& route, const std::string& body, int copies,
                                    int tier = 0);
  // POST /webhooks/<source> through ingest, signed as the provider would sign it.
  // `extra_headers` are sent besides the provider's (e.g. X-GitHub-Event).
  Result<HttpReply> post_webhook(
      const std::string& source, const std::string& event_id, const std::string& body,
      const std::vector<std::pair<std::string, std::string>>& extra_headers = {});
  // POST /v1/calls through ingest with the API token; `json` is the request body.
  Result<HttpReply> post_call(const std::string& json);

  // Postgres assertions on this stack's database. Errors throw (the test fails loudly).
  std::string scalar(const std::string& sql) const;
  int64_t count_deliveries(const std::string& state = "") const;
  // One line per delivery (key, state, attempts, lease owner, last status/error) and per attempt
  // row: for failure messages.
  std::string describe_deliveries() const;
  // delivery key -> number of 'succeeded' attempt rows, for every delivery key.
  std::map<std::string, int64_t> succeeded_attempts_per_key() const;
  // Refuses (false) or allows (true) new connections to this stack's database; refusing also
  // terminates the sessions already open, as an outage would.
  void set_database_accepting(bool accepting) const;

 private:
  explicit Stack(StackOptions options) : options_(std::move(options)) {}
  Result<Service> spawn(const std::string& program, const std::string& listen_env,
                        const std::filesystem::path& config_path, const std::string& log_name);

  StackOptions options_;
  Config config_;
  TestDir dir_;
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<DevBroker> broker_;
  std::string bootstrap_;
  std::unique_ptr<TestProducer> producer_;
  std::filesystem::path config_path_;
  std::unique_ptr<Service> ingest_;
  std::vector<std::unique_ptr<Service>> workers_;
};

// POST /webhooks/<source> to `ingest` for a standard-webhooks source, with one v1 signature per
// secret in `secrets`: what a provider rotating its secret sends.
Result<HttpReply> post_signed_webhook(const Service& ingest, const std::string& source,
                                      const std::string& event_id, const std::string& body,
                                      const std::vector<std::string>& secrets);

// The whole file (a config a test rewrites); "" when it cannot be read.
std::string read_text_file(const std::filesystem::path& path);

// Polls `condition` every 50 ms until it holds or timeout passes; returns the last result.
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

}  // namespace hookrelay::test
