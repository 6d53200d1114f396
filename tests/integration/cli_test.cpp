// The `hookrelay` CLI against real PostgreSQL and (for replay) the devbroker and a real worker.
// Commands whose output is asserted field by field run in-process through run_cli (separate
// stdout/stderr); migrate, config check and replay also run as the built binary.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <sstream>
#include <thread>

#include "cli/cli_app.h"
#include "shared/clock.h"
#include "shared/http/http_server.h"
#include "shared/store/delivery_queries.h"
#include "shared/store/migrator.h"
#include "tests/support/devbroker.h"
#include "tests/support/kafka_test_client.h"
#include "tests/support/postgres.h"
#include "tests/support/process.h"
#include "tests/support/test_dir.h"
#include "worker/postgres_delivery_store.h"

namespace hookrelay::test {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kCli = HOOKRELAY_BIN_DIR "/cli/hookrelay";
constexpr const char* kWorker = HOOKRELAY_BIN_DIR "/worker/hookrelay-worker";
constexpr const char* kMigrations = HOOKRELAY_SOURCE_DIR "/migrations";

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

struct CliResult {
  int code = -1;
  std::string out;
  std::string err;
};

// In-process, with the process environment and real clock.
CliResult run_cli_here(const std::vector<std::string>& args) {
  std::istringstream in;
  std::ostringstream out, err;
  cli::CliIo io{in,          out,
                err,         process_env(),
                unix_now_ms, [](int64_t ms) { std::this_thread::sleep_for(milliseconds(ms)); }};
  CliResult r;
  r.code = cli::run_cli(args, io);
  r.out = out.str();
  r.err = err.str();
  return r;
}

// The built binary; stdout and stderr together in `out`.
CliResult run_cli_binary(const TestDir& dir, const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env = {}) {
  static int n = 0;
  std::vector<std::string> argv = {kCli};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = ChildProcess::spawn(argv, env, dir.file("cli-" + std::to_string(++n) + ".log"));
  CliResult r;
  if (!child) {
    r.err = child.error().message;
    return r;
  }
  auto code = child->wait_exit(seconds(120));
  r.code = code.value_or(-1);
  r.out = child->read_log();
  return r;
}

// ---------------------------------------------------------------------------------------------
// config check and migrate, as the binary

TEST(CliConfigCheck, InvalidFilesExitTwoAndNameTheField) {
  TestDir dir;
  write_file(dir.file("bad.yaml"),
             "sources:\n  github: { scheme: github, secrets: [x] }\n"
             "routes:\n  github:\n    - { name: ci, url: \"ftp://127.0.0.1/\" }\n");
  auto bad = run_cli_binary(dir, {"config", "check", dir.file("bad.yaml").string()});
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(
      bad.out.find("config error: routes.github[0].url: only http and https URLs are allowed"),
      std::string::npos)
      << bad.out;

  write_file(dir.file("env.yaml"),
             "sources:\n  github: { scheme: github, secrets: [\"${HR_CLI_TEST_SECRET}\"] }\n");
  auto unset = run_cli_binary(dir, {"config", "check", dir.file("env.yaml").string()});
  EXPECT_EQ(unset.code, 2);
  EXPECT_NE(unset.out.find("sources.github.secrets"), std::string::npos) << unset.out;
  auto set = run_cli_binary(dir, {"config", "check", dir.file("env.yaml").string()},
                            {{"HR_CLI_TEST_SECRET", "s"}});
  EXPECT_EQ(set.code, 0) << set.out;
  EXPECT_NE(set.out.find(": ok (1 sources"), std::string::npos) << set.out;

  auto deployed = run_cli_binary(
      dir, {"config", "check", HOOKRELAY_SOURCE_DIR "/deploy/compose/hookrelay.yaml"},
      {{"DEMO_SOURCE_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
       {"GITHUB_WEBHOOK_SECRET", "g"},
       {"HOOKRELAY_API_TOKEN", "tok_0123456789abcdef"},
       {"HOOKRELAY_ADMIN_TOKEN", "adm_0123456789abcdef"},
       {"DEMO_ROUTE_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}});
  EXPECT_EQ(deployed.code, 0) << deployed.out;
}

TEST(CliMigrate, AppliesOnceThenReportsUpToDate) {
  TestDir dir;
  auto db = TestDatabase::create();
  ASSERT_TRUE(db) << db.error().message;
  std::map<std::string, std::string> env = {{"HOOKRELAY_DATABASE_URL", (*db)->url()},
                                            {"HOOKRELAY_MIGRATIONS_DIR", kMigrations}};
  auto first = run_cli_binary(dir, {"migrate"}, env);
  EXPECT_EQ(first.code, 0) << first.out;
  EXPECT_NE(first.out.find("applied 0001"), std::string::npos) << first.out;
  auto second = run_cli_binary(dir, {"migrate"}, env);
  EXPECT_EQ(second.code, 0) << second.out;
  EXPECT_NE(second.out.find("schema up to date"), std::string::npos) << second.out;

  auto no_dir = run_cli_binary(dir, {"migrate", "--dir", "/nonexistent/migrations"}, env);
  EXPECT_EQ(no_dir.code, 2) << no_dir.out;
  auto no_db = run_cli_binary(dir, {"migrate", "--database-url",
                                    "postgresql://postgres@127.0.0.1:1/x", "--dir", kMigrations});
  EXPECT_EQ(no_db.code, 1) << no_db.out;
}

// ---------------------------------------------------------------------------------------------
// Read-only views on seeded rows

// github/e1 -> ci (dead, 2 attempts, last 1 s ago), deploy (succeeded);
// stripe/e2 -> billing (dead, 1 attempt, last now); github/e0 -> ci (dead, 1 hour ago).
class CliViewsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = TestDatabase::create();
    ASSERT_TRUE(db) << db.error().message;
    db_ = std::move(*db);
    auto applied = migrate(db_->url(), kMigrations);
    ASSERT_TRUE(applied) << applied.error().message;
    PostgresDeliveryStore store(db_->url());
    t_ = unix_now_ms();
    auto ref = [&](std::string key, std::string source, std::string event, std::string route) {
      return DeliveryRef{
          key, "webhook", source, event, route, "http://127.0.0.1:9/" + route, "hookrelay.webhooks",
          t_};
    };
    auto claimed = store.claim({ref("wh:github:e1:ci", "github", "e1", "ci"),
                                ref("wh:github:e1:deploy", "github", "e1", "deploy"),
                                ref("wh:stripe:e2:billing", "stripe", "e2", "billing"),
                                ref("wh:github:e0:ci", "github", "e0", "ci")},
                               "w1", 60);
    ASSERT_TRUE(claimed) << claimed.error().message;
    auto recorded = store.record({AttemptRecord{"wh:github:e1:ci", 1, t_ - 2000, 30, 503,
                                                "retryable", "HTTP 503: unavailable", "retrying"}},
                                 "w1");
    ASSERT_TRUE(recorded) << recorded.error().message;
    claimed = store.claim({ref("wh:github:e1:ci", "github", "e1", "ci")}, "w1",
                          60);  // each attempt its own claim
    ASSERT_TRUE(claimed) << claimed.error().message;
    recorded = store.record(
        {AttemptRecord{"wh:github:e1:ci", 2, t_ - 1000, 40, 400, "permanent",
                       "HTTP 400: bad request", "dead"},
         AttemptRecord{"wh:github:e1:deploy", 1, t_ - 1500, 10, 200, "succeeded", "", "succeeded"},
         AttemptRecord{"wh:stripe:e2:billing", 1, t_, 5000, 0, "permanent", "timeout", "dead"},
         AttemptRecord{"wh:github:e0:ci", 1, t_ - 3600 * 1000, 20, 410, "permanent",
                       "HTTP 410: gone", "dead"}},
        "w1");
    ASSERT_TRUE(recorded) << recorded.error().message;
    auto inbound = store.record_inbound(
        {InboundEventRecord{"github", "e1", "hookrelay.webhooks", 2, 41, t_, "cafe"}});
    ASSERT_TRUE(inbound) << inbound.error().message;
  }

  CliResult run(std::vector<std::string> args) {
    args.push_back("--database-url");
    args.push_back(db_->url());
    return run_cli_here(args);
  }

  std::vector<std::string> listed_keys(std::vector<std::string> args) {
    args.insert(args.begin(), {"dlq", "list", "--json"});
    auto r = run(args);
    EXPECT_EQ(r.code, 0) << r.err;
    std::vector<std::string> keys;
    for (const auto& d : json::parse(r.out)) keys.push_back(d["key"]);
    return keys;
  }

  std::unique_ptr<TestDatabase> db_;
  int64_t t_ = 0;
};

using Keys = std::vector<std::string>;

TEST_F(CliViewsTest, DlqListFiltersBySourceDestinationStatusAndTime) {
  EXPECT_EQ(listed_keys({}), (Keys{"wh:stripe:e2:billing", "wh:github:e1:ci", "wh:github:e0:ci"}));
  EXPECT_EQ(listed_keys({"--source", "github"}), (Keys{"wh:github:e1:ci", "wh:github:e0:ci"}));
  EXPECT_EQ(listed_keys({"--destination", "billing"}), (Keys{"wh:stripe:e2:billing"}));
  EXPECT_EQ(listed_keys({"--source", "github", "--destination", "deploy"}), (Keys{}));
  EXPECT_EQ(listed_keys({"--status", "succeeded"}), (Keys{"wh:github:e1:deploy"}));
  EXPECT_EQ(listed_keys({"--status", "any", "--source", "github"}),
            (Keys{"wh:github:e1:ci", "wh:github:e1:deploy", "wh:github:e0:ci"}));
  EXPECT_EQ(listed_keys({"--since", "10m"}), (Keys{"wh:stripe:e2:billing", "wh:github:e1:ci"}));
  EXPECT_EQ(listed_keys({"--until", "10m"}), (Keys{"wh:github:e0:ci"}));
  EXPECT_EQ(listed_keys({"--limit", "1"}), (Keys{"wh:stripe:e2:billing"}));
}

TEST_F(CliViewsTest, DlqListTableAndErrors) {
  auto table = run({"dlq", "list", "--source", "github"});
  EXPECT_EQ(table.code, 0) << table.err;
  EXPECT_EQ(table.out.rfind("KEY", 0), 0u) << table.out;
  EXPECT_NE(table.out.find("wh:github:e1:ci"), std::string::npos);
  EXPECT_NE(table.out.find("HTTP 400: bad request"), std::string::npos);
  EXPECT_EQ(table.out.find("stripe"), std::string::npos);

  auto bad_status = run({"dlq", "list", "--status", "gone"});
  EXPECT_EQ(bad_status.code, 2);
  EXPECT_NE(bad_status.err.find("status"), std::string::npos);
  auto no_db =
      run_cli_here({"dlq", "list", "--database-url", "postgresql://postgres@127.0.0.1:1/x"});
  EXPECT_EQ(no_db.code, 1);
}

TEST_F(CliViewsTest, DlqShowAndDeliveriesShowGiveTheAttemptTrail) {
  auto show = run({"dlq", "show", "wh:github:e1:ci", "--json"});
  ASSERT_EQ(show.code, 0) << show.err;
  auto j = json::parse(show.out);
  EXPECT_EQ(j["state"], "dead");
  ASSERT_EQ(j["attempt_history"].size(), 2u);
  EXPECT_EQ(j["attempt_history"][1]["http_status"], 400);
  EXPECT_EQ(j["attempt_history"][1]["outcome"], "permanent");

  auto text = run({"deliveries", "show", "wh:github:e1:deploy"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("state           succeeded"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("attempts (1)"), std::string::npos) << text.out;

  EXPECT_EQ(run({"dlq", "show", "wh:nope"}).code, 3);
  auto missing = run({"deliveries", "show", "wh:nope"});
  EXPECT_EQ(missing.code, 3);
  EXPECT_NE(missing.err.find("no delivery with key wh:nope"), std::string::npos);
}

TEST_F(CliViewsTest, EventsShowGivesTheInboundRecordAndItsDeliveries) {
  auto r = run({"events", "show", "github", "e1", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = json::parse(r.out);
  EXPECT_EQ(j["inbound"]["partition"], 2);
  EXPECT_EQ(j["inbound"]["offset"], 41);
  ASSERT_EQ(j["deliveries"].size(), 2u);
  EXPECT_EQ(j["deliveries"][0]["destination"], "ci");
  EXPECT_EQ(j["deliveries"][1]["state"], "succeeded");

  auto no_inbound = run({"events", "show", "stripe", "e2"});
  EXPECT_EQ(no_inbound.code, 0) << no_inbound.err;
  EXPECT_NE(no_inbound.out.find("no inbound record"), std::string::npos);
  EXPECT_EQ(run({"events", "show", "github", "nope"}).code, 3);
}

// ---------------------------------------------------------------------------------------------
// Replay end to end: devbroker, Postgres, a real worker, a receiver that is fixed mid-test.

// A receiver that answers `status` and remembers what it got.
class ScriptedReceiver {
 public:
  ScriptedReceiver()
      : server_(HttpServerOptions{}, [this](const HttpRequest& req, Responder respond) {
          {
            std::lock_guard lock(mu_);
            auto id = req.header("webhook-id");
            ids_.emplace_back(id ? *id : "");
          }
          HttpResponse r;
          r.status = status_.load();
          r.body = "{}";
          respond(std::move(r));
        }) {}
  ~ScriptedReceiver() { server_.stop(); }

  Result<void> start() { return server_.start(); }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server_.port()) + "/hooks";
  }
  void answer(int status) { status_ = status; }
  std::vector<std::string> received() const {
    std::lock_guard lock(mu_);
    return ids_;
  }

 private:
  std::atomic<int> status_{400};
  mutable std::mutex mu_;
  std::vector<std::string> ids_;
  HttpServer server_;
};

std::string worker_config(const std::string& bootstrap, const std::string& db_url,
                          const std::string& receiver) {
  return "kafka: { bootstrap_servers: \"" + bootstrap +
         "\" }\n"
         "sources:\n"
         "  acme: { scheme: standard-webhooks, secrets: "
         "[\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"] }\n"
         "routes:\n"
         "  acme:\n"
         "    - { name: receiver, url: \"" +
         receiver +
         "\", timeout_ms: 5000 }\n"
         "postgres: { url: \"" +
         db_url +
         "\" }\n"
         "worker: { listen: \"127.0.0.1:0\", group_id: \"cli-replay-test\", worker_id: "
         "\"w-cli-test\",\n"
         "          allow_private_networks: true, batch_size: 10, shutdown_grace_ms: 2000 }\n"
         "retry: { schedule_seconds: [1, 2], max_attempts: 3, max_age_seconds: 600 }\n";
}

// Polls the delivery until `pred` holds or 60 s pass; returns the last detail seen.
template <class Pred>
std::optional<DeliveryDetail> wait_for_delivery(DeliveryQueries& q, const std::string& key,
                                                Pred pred) {
  std::optional<DeliveryDetail> last;
  auto deadline = std::chrono::steady_clock::now() + seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    auto d = q.delivery_show(key);
    if (d) {
      last = *d;
      if (pred(*d)) return last;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return last;
}

// A worker, its broker and database, and a receiver that answers 400 (permanent) until told
// otherwise: a webhook sent by dead_letter() is dead after one attempt, with one DLQ message.
class CliReplay : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = DevBroker::start(dir.path(),
                              DevBrokerConfig{.brokers = 1, .partitions = 2, .retry_tiers = 2});
    ASSERT_TRUE(b) << b.error().message;
    broker_ = std::move(*b);
    bootstrap = broker_->bootstrap();
    auto d = TestDatabase::create();
    ASSERT_TRUE(d) << d.error().message;
    db_ = std::move(*d);
    db_url = db_->url();
    ASSERT_EQ(run_cli_binary(dir, {"migrate", "--database-url", db_url, "--dir", kMigrations}).code,
              0);
    ASSERT_TRUE(receiver.start());
    write_file(dir.file("worker.yaml"), worker_config(bootstrap, db_url, receiver.url()));
    auto w = ChildProcess::spawn({kWorker, "--config", dir.file("worker.yaml").string()}, {},
                                 dir.file("worker.log"));
    ASSERT_TRUE(w) << w.error().message;
    worker.emplace(std::move(*w));
    delivery_queries.emplace(db_url);
  }

  // Sends webhook `event_id` (with `extra` headers) and waits until its delivery is dead.
  void dead_letter(const std::string& event_id,
                   std::vector<std::pair<std::string, std::string>> extra = {}) {
    auto producer = TestProducer::create(bootstrap);
    ASSERT_TRUE(producer) << producer.error().message;
    std::vector<std::pair<std::string, std::string>> headers = {
        {"hr-kind", "webhook"},
        {"hr-source", "acme"},
        {"hr-event-id", event_id},
        {"hr-received-at", std::to_string(unix_now_ms())},
        {"hr-content-type", "application/json"}};
    headers.insert(headers.end(), extra.begin(), extra.end());
    auto sent = (*producer)->produce("hookrelay.webhooks", R"({"type":"invoice.paid"})", headers);
    ASSERT_TRUE(sent) << sent.error().message;
    auto dead = wait_for_delivery(*delivery_queries, key_of(event_id), [](const DeliveryDetail& d) {
      return d.delivery.state == "dead";
    });
    ASSERT_TRUE(dead && dead->delivery.state == "dead") << worker->log_tail();
  }

  static std::string key_of(const std::string& event_id) {
    return "wh:acme:" + event_id + ":receiver";
  }

  std::vector<std::string> with_common(std::vector<std::string> args) const {
    for (const std::string& a :
         {std::string("--bootstrap"), bootstrap, std::string("--database-url"), db_url})
      args.push_back(a);
    return args;
  }

  TestDir dir;
  std::unique_ptr<DevBroker> broker_;
  std::unique_ptr<TestDatabase> db_;
  std::string bootstrap;
  std::string db_url;
  ScriptedReceiver receiver;
  std::optional<ChildProcess> worker;
  std::optional<DeliveryQueries> delivery_queries;
};

TEST_F(CliReplay, ADeadLetteredDeliveryIsDeliveredOnceAfterTheReceiverRecovers) {
  // Not UTF-8: carried into the DLQ message, where dlq show --json must still print valid JSON.
  dead_letter("evt-cli-1", {{"hr-fwd-x-binary", "\xff\xfe\x80"}});
  const std::string key = key_of("evt-cli-1");
  DeliveryQueries& queries = *delivery_queries;
  auto dlq = consume_all(bootstrap, "hookrelay.dlq", 1);
  ASSERT_TRUE(dlq) << dlq.error().message;
  ASSERT_EQ(dlq->size(), 1u) << worker->log_tail();
  EXPECT_EQ(receiver.received().size(), 1u);

  receiver.answer(200);

  auto show = run_cli_here(with_common({"dlq", "show", key, "--message", "--json"}));
  ASSERT_EQ(show.code, 0) << show.err;
  auto sj = json::parse(show.out);
  EXPECT_EQ(sj["state"], "dead");
  EXPECT_EQ(sj["dlq_message"]["body_bytes"], 23);
  json reason;
  for (const auto& h : sj["dlq_message"]["headers"]) {
    if (h["name"] == "hr-dlq-reason") reason = h["value"];
  }
  EXPECT_EQ(reason, "permanent") << show.out;
  bool binary_header_shown = false;
  for (const auto& h : sj["dlq_message"]["headers"]) {
    if (h["name"] == "hr-fwd-x-binary")
      binary_header_shown = h["value"] == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd";
  }
  EXPECT_TRUE(binary_header_shown) << "each invalid byte is shown as U+FFFD: " << show.out;

  // A dry run by filter finds it and changes nothing.
  auto dry =
      run_cli_here(with_common({"dlq", "replay", "--source", "acme", "--dry-run", "--json"}));
  ASSERT_EQ(dry.code, 0) << dry.err;
  auto dj = json::parse(dry.out);
  ASSERT_EQ(dj["items"].size(), 1u) << dry.out;
  EXPECT_EQ(dj["items"][0]["key"], key);
  EXPECT_EQ(dj["items"][0]["outcome"], "would_replay");
  EXPECT_EQ(queries.delivery_show(key)->delivery.state, "dead");

  auto replay = run_cli_binary(dir, with_common({"dlq", "replay", "--id", key, "--by", "tester",
                                                 "--reason", "receiver fixed"}));
  ASSERT_EQ(replay.code, 0) << replay.out;
  EXPECT_NE(replay.out.find("replayed 1/1, skipped 0, missing 0, failed 0"), std::string::npos)
      << replay.out;

  auto done = wait_for_delivery(
      queries, key, [](const DeliveryDetail& d) { return d.delivery.state == "succeeded"; });
  ASSERT_TRUE(done && done->delivery.state == "succeeded") << worker->log_tail();
  ASSERT_EQ(done->replays.size(), 1u);
  EXPECT_EQ(done->replays[0].replayed_by, "tester");
  EXPECT_EQ(done->replays[0].reason, "receiver fixed");
  std::vector<std::string> outcomes;
  for (const auto& a : done->attempts) outcomes.push_back(a.outcome);
  EXPECT_EQ(outcomes, (std::vector<std::string>{"permanent", "replayed", "succeeded"}));

  // Exactly once more: nothing else arrives, not from a retry tier either.
  std::this_thread::sleep_for(seconds(3));
  EXPECT_EQ(receiver.received(), (std::vector<std::string>{"evt-cli-1", "evt-cli-1"}));

  // Replaying again is a no-op: Postgres says it succeeded.
  auto again = run_cli_binary(dir, with_common({"dlq", "replay", key, "--by", "tester"}));
  EXPECT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("skipped_succeeded"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("replayed 0/1, skipped 1"), std::string::npos) << again.out;
  std::this_thread::sleep_for(seconds(1));
  EXPECT_EQ(receiver.received().size(), 2u);
  EXPECT_EQ(queries.delivery_show(key)->replays.size(), 1u);

  // A key with no delivery is reported as missing: exit 3.
  auto unknown = run_cli_binary(dir, with_common({"dlq", "replay", "wh:acme:nope:receiver"}));
  EXPECT_EQ(unknown.code, 3) << unknown.out;

  EXPECT_EQ(worker->stop(seconds(10)), 0) << worker->log_tail();
}

// The JSON document in a run's output, whatever progress lines stderr put around it.
json json_in(const std::string& out) {
  const std::size_t from = out.rfind('{', 0) == 0 ? 0 : out.find("\n{") + 1;
  return json::parse(out.substr(from, out.rfind('}') + 1 - from));
}

// A worker whose config lags ingest's (a rollout half done) meets a webhook of a source it does
// not know: the event is dead-lettered whole as unknown_source, not finished without a trace.
// Once the workers know the source, `dlq replay --unknown-sources` produces it again to
// hookrelay.webhooks and it is delivered once; a second run produces it again, and the claim
// keeps it from being delivered twice.
TEST_F(CliReplay, AWebhookOfASourceTheWorkerDidNotKnowIsDeliveredOnceAfterTheConfigCatchesUp) {
  auto eventually_true = [](const std::function<bool()>& condition) {
    for (auto deadline = std::chrono::steady_clock::now() + seconds(30);
         std::chrono::steady_clock::now() < deadline;
         std::this_thread::sleep_for(milliseconds(100))) {
      if (condition()) return true;
    }
    return condition();
  };
  receiver.answer(200);
  auto producer = TestProducer::create(bootstrap);
  ASSERT_TRUE(producer) << producer.error().message;
  auto sent = (*producer)->produce(TestRecord{"hookrelay.webhooks",
                                              R"({"type":"new.source"})",
                                              {{"hr-kind", "webhook"},
                                               {"hr-source", "newsrc"},
                                               {"hr-event-id", "evt-new-1"},
                                               {"hr-received-at", std::to_string(unix_now_ms())},
                                               {"hr-content-type", "application/json"}},
                                              "evt-new-1"});
  ASSERT_TRUE(sent) << sent.error().message;
  auto dlq = consume_all(bootstrap, "hookrelay.dlq", 1);
  ASSERT_TRUE(dlq) << dlq.error().message;
  ASSERT_EQ(dlq->size(), 1u) << worker->log_tail();
  EXPECT_EQ((*dlq)[0].header("hr-dlq-reason"), "unknown_source");
  EXPECT_TRUE(receiver.received().empty());

  // The old config does not know it either: skipped, not produced to die again.
  auto old_config =
      run_cli_binary(dir, with_common({"dlq", "replay", "--unknown-sources", "--config",
                                       dir.file("worker.yaml").string(), "--json"}));
  ASSERT_EQ(old_config.code, 0) << old_config.out << old_config.err;
  auto oj = json_in(old_config.out);
  ASSERT_EQ(oj["items"].size(), 1u) << old_config.out;
  EXPECT_EQ(oj["items"][0]["outcome"], "skipped_unknown_source");

  // The workers' config catches up: the source and a route for it.
  std::string config = worker_config(bootstrap, db_url, receiver.url());
  config.replace(config.find("routes:\n"), 8,
                 "  newsrc: { scheme: standard-webhooks, secrets: "
                 "[\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"] }\nroutes:\n"
                 "  newsrc:\n    - { name: receiver, url: \"" +
                     receiver.url() + "\", timeout_ms: 5000 }\n");
  write_file(dir.file("worker.yaml"), config);
  ::kill(worker->pid(), SIGHUP);
  ASSERT_TRUE(eventually_true([&] {
    return worker->read_log().find("msg=config_reloaded") != std::string::npos;
  })) << worker->log_tail();

  auto dry = run_cli_binary(dir, with_common({"dlq", "replay", "--unknown-sources", "--config",
                                              dir.file("worker.yaml").string(), "--dry-run"}));
  ASSERT_EQ(dry.code, 0) << dry.out << dry.err;
  EXPECT_NE(dry.out.find("would replay 1/1 events of unknown sources"), std::string::npos)
      << dry.out;
  auto replay = run_cli_binary(dir, with_common({"dlq", "replay", "--unknown-sources", "--config",
                                                 dir.file("worker.yaml").string()}));
  ASSERT_EQ(replay.code, 0) << replay.out << replay.err;
  EXPECT_NE(replay.out.find("replayed 1/1 events of unknown sources, skipped 0, failed 0"),
            std::string::npos)
      << replay.out;
  const std::string key = "wh:newsrc:evt-new-1:receiver";
  auto done = wait_for_delivery(*delivery_queries, key, [](const DeliveryDetail& d) {
    return d.delivery.state == "succeeded";
  });
  ASSERT_TRUE(done && done->delivery.state == "succeeded") << worker->log_tail();
  ASSERT_EQ(receiver.received(), (std::vector<std::string>{"evt-new-1"}));

  // Again: produced again, and the claim finds the delivery succeeded.
  auto again = run_cli_binary(dir, with_common({"dlq", "replay", "--unknown-sources", "--config",
                                                dir.file("worker.yaml").string()}));
  ASSERT_EQ(again.code, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("replayed 1/1"), std::string::npos) << again.out;
  // A later webhook on the second copy's partition (the same Kafka key): once it is delivered,
  // the copy ahead of it has been taken up too.
  auto after = (*producer)->produce(TestRecord{"hookrelay.webhooks",
                                               R"({"type":"after"})",
                                               {{"hr-kind", "webhook"},
                                                {"hr-source", "newsrc"},
                                                {"hr-event-id", "evt-after"},
                                                {"hr-received-at", std::to_string(unix_now_ms())},
                                                {"hr-content-type", "application/json"}},
                                               "evt-new-1"});
  ASSERT_TRUE(after) << after.error().message;
  ASSERT_TRUE(eventually_true([&] { return receiver.received().size() >= 2; }))
      << worker->log_tail();
  std::this_thread::sleep_for(seconds(1));
  EXPECT_EQ(receiver.received(), (std::vector<std::string>{"evt-new-1", "evt-after"}));
  EXPECT_EQ(worker->stop(seconds(10)), 0) << worker->log_tail();
}

// A replay killed (SIGKILL) between its mark and the broker's ack left the delivery 'retrying'
// with no message anywhere. A later run skips it while the mark is young (its message may still
// be on its way to a worker); once the mark is --unfinished-after old, --unfinished finds it and
// produces it again, and it is delivered once.
TEST_F(CliReplay, AReplayKilledBetweenItsMarkAndItsAckIsTakenUpByALaterRun) {
  dead_letter("evt-cli-2");
  const std::string key = key_of("evt-cli-2");
  receiver.answer(200);
  // What the killed run did: the mark, and nothing after it.
  ASSERT_TRUE(delivery_queries->mark_replayed(key, "killed-run", "receiver fixed"));
  std::this_thread::sleep_for(seconds(2));
  EXPECT_EQ(delivery_queries->delivery_show(key)->delivery.state, "retrying");
  EXPECT_EQ(receiver.received().size(), 1u);

  auto young = run_cli_binary(dir, with_common({"dlq", "replay", key, "--json"}));
  EXPECT_EQ(young.code, 0) << young.out;
  auto yj = json_in(young.out);
  EXPECT_EQ(yj["items"][0]["outcome"], "skipped_not_dead") << young.out;
  EXPECT_NE(yj["items"][0]["detail"].get<std::string>().find(
                "replayed by killed-run 2 s ago and not taken up by a worker yet"),
            std::string::npos)
      << young.out;
  auto none = run_cli_binary(dir, with_common({"dlq", "replay", "--unfinished"}));
  EXPECT_EQ(none.code, 0) << none.out;
  EXPECT_NE(none.out.find("nothing to replay: no unfinished replay"), std::string::npos)
      << none.out;

  auto taken =
      run_cli_binary(dir, with_common({"dlq", "replay", "--unfinished", "--unfinished-after", "1s",
                                       "--by", "tester", "--json"}));
  ASSERT_EQ(taken.code, 0) << taken.out;
  auto tj = json_in(taken.out);
  ASSERT_EQ(tj["items"].size(), 1u) << taken.out;
  EXPECT_EQ(tj["items"][0]["key"], key);
  EXPECT_EQ(tj["items"][0]["outcome"], "replayed");
  EXPECT_NE(tj["items"][0]["detail"].get<std::string>().find(
                "an unfinished replay: marked by killed-run"),
            std::string::npos)
      << taken.out;

  auto done = wait_for_delivery(*delivery_queries, key, [](const DeliveryDetail& d) {
    return d.delivery.state == "succeeded";
  });
  ASSERT_TRUE(done && done->delivery.state == "succeeded") << worker->log_tail();
  ASSERT_EQ(done->replays.size(), 2u);
  EXPECT_EQ(done->replays[0].replayed_by, "killed-run");
  EXPECT_EQ(done->replays[1].replayed_by, "tester");
  std::vector<std::string> outcomes;
  for (const auto& a : done->attempts) outcomes.push_back(a.outcome);
  EXPECT_EQ(outcomes, (std::vector<std::string>{"permanent", "replayed", "replayed", "succeeded"}));
  std::this_thread::sleep_for(seconds(3));
  EXPECT_EQ(receiver.received(), (std::vector<std::string>{"evt-cli-2", "evt-cli-2"}));
  // Taken up by the worker: nothing is unfinished any more.
  auto after = run_cli_binary(
      dir, with_common({"dlq", "replay", "--unfinished", "--unfinished-after", "1s"}));
  EXPECT_NE(after.out.find("no unfinished replay"), std::string::npos) << after.out;
  EXPECT_EQ(worker->stop(seconds(10)), 0) << worker->log_tail();
}

// ---------------------------------------------------------------------------------------------
// routes, with the database in the way

class CliRoutes : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = TestDatabase::create();
    ASSERT_TRUE(db) << db.error().message;
    db_ = std::move(*db);
    auto applied = migrate(db_->url(), kMigrations);
    ASSERT_TRUE(applied) << applied.error().message;
    write_file(
        dir_.file("hookrelay.yaml"),
        "sources:\n  acme: { scheme: standard-webhooks, secrets: "
        "[\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"] }\n"
        "routes:\n  acme:\n    - { name: receiver, url: \"https://receiver.example.com/\" }\n");
  }

  std::vector<std::string> routes(std::vector<std::string> args) const {
    args.insert(args.begin(), "routes");
    for (const std::string& a : {std::string("--config"), dir_.file("hookrelay.yaml").string(),
                                 std::string("--database-url"), db_->url()})
      args.push_back(a);
    return args;
  }

  TestDir dir_;
  std::unique_ptr<TestDatabase> db_;
};

// The CLI connected with a bare URL: a row lock held elsewhere (a stuck worker transaction, an
// operator's open psql session) kept `routes suspend` waiting for ever.
TEST_F(CliRoutes, SuspendGivesUpWithAClearErrorWhileAnotherTransactionHoldsTheRoutesRow) {
  pqxx::connection holder(db_->url());
  {
    pqxx::work seed(holder);
    seed.exec("INSERT INTO route_states (source, route) VALUES ('acme', 'receiver')");
    seed.commit();
  }
  auto lock = std::make_unique<pqxx::work>(holder);
  lock->exec("SELECT 1 FROM route_states WHERE source = 'acme' AND route = 'receiver' FOR UPDATE");

  const auto started = std::chrono::steady_clock::now();
  auto suspend = std::async(std::launch::async,
                            [args = routes({"suspend", "receiver", "--reason", "maintenance"})] {
                              return run_cli_here(args);
                            });
  const bool returned = suspend.wait_for(seconds(30)) == std::future_status::ready;
  const auto waited = std::chrono::steady_clock::now() - started;
  lock->abort();  // lets a command that did not give up finish, so the test ends either way
  const CliResult r = suspend.get();
  ASSERT_TRUE(returned) << "routes suspend still waited for the lock after 30 s";
  EXPECT_LT(waited, seconds(20));
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_EQ(r.err.rfind("hookrelay routes suspend: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("lock timeout"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("gave up after waiting 5 s for a row another transaction holds"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.out, "");

  // The lock gone, the same command goes through.
  auto again = run_cli_here(routes({"suspend", "receiver", "--reason", "maintenance"}));
  EXPECT_EQ(again.code, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("acme/receiver: suspended"), std::string::npos) << again.out;
}

// A reason and a name are anyone's text (an operator's, or copied from a receiver's answer): a
// terminal showing them must not run the escape sequences in them.
TEST_F(CliRoutes, SuspendPrintsTheReasonAndWhoWithoutTerminalEscapes) {
  auto r = run_cli_here(routes({"suspend", "receiver", "--reason",
                                "\x1b]0;owned\x07 red \xc2\x9b"
                                "31m text",
                                "--by",
                                "ops\x1b[2J\xc2\x9d"
                                "52;c;x\xc2\x9c"}));
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (const char* escape : {"\x1b", "\x07", "\xc2\x9b", "\xc2\x9d", "\xc2\x9c"})
    EXPECT_EQ(r.out.find(escape), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" ]0;owned  red  31m text)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ops [2J 52;c;x "), std::string::npos) << r.out;
}

TEST(CliSend, PostsASignedWebhookAndExitsByTheAnswer) {
  TestDir dir;
  ScriptedReceiver receiver;
  ASSERT_TRUE(receiver.start());
  write_file(dir.file("hookrelay.yaml"),
             "sources:\n  acme: { scheme: standard-webhooks, secrets: "
             "[\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"] }\n");
  write_file(dir.file("body.json"), R"({"type":"ping"})");
  const std::vector<std::string> args = {"send",
                                         "--config",
                                         dir.file("hookrelay.yaml").string(),
                                         "--source",
                                         "acme",
                                         "--ingest",
                                         receiver.url(),
                                         "--event-id",
                                         "evt-send-1",
                                         dir.file("body.json").string()};
  auto refused = run_cli_binary(dir, args);
  EXPECT_EQ(refused.code, 1) << refused.out;
  EXPECT_NE(refused.out.find("HTTP 400"), std::string::npos) << refused.out;
  receiver.answer(202);
  auto accepted = run_cli_binary(dir, args);
  EXPECT_EQ(accepted.code, 0) << accepted.out;
  EXPECT_NE(accepted.out.find("HTTP 202"), std::string::npos) << accepted.out;
  EXPECT_EQ(receiver.received(), (std::vector<std::string>{"evt-send-1", "evt-send-1"}));
}

}  // namespace
}  // namespace hookrelay::test
