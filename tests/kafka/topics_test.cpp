// `hookrelay topics apply|check` and the services' start-up topic check on a real one-node Apache
// Kafka (KRaft, replication factor 1, min.insync.replicas 1), started once for this suite: apply
// creates what is missing, check reports every drift (a config value changed, too many
// partitions), apply fixes what it can and keeps other topic-level overrides; ingest and worker
// refuse to start without their topics, naming them.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "shared/kafka/kafka_admin.h"
#include "tests/support/cli_run.h"
#include "tests/support/free_port.h"
#include "tests/support/http_client.h"
#include "tests/support/kafka_cluster.h"
#include "tests/support/process.h"
#include "tests/support/test_dir.h"

namespace hookrelay::test {
namespace {

using namespace std::chrono_literals;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class TopicsOnKafka : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TestDir();
    auto k = KafkaCluster::start(dir_->path(), 1);
    ASSERT_TRUE(k) << k.error().message;
    kafka_ = k->release();
  }
  static void TearDownTestSuite() {
    delete kafka_;
    kafka_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(kafka_, nullptr) << "the cluster did not start"; }

  // A config for one broker: 3 partitions (unless given), RF 1, min ISR 1, two retry tiers (5
  // topics).
  std::string config(const std::string& topics_extra = "", const std::string& schedule = "[1, 2]",
                     int partitions = 3) {
    auto path = test_dir_.file("config-" + std::to_string(++configs_) + ".yaml");
    std::ofstream(path) << "kafka: { bootstrap_servers: \"" << kafka_->bootstrap() << "\" }\n"
                        << "topics: { partitions: " << partitions
                        << ", replication_factor: 1, min_insync_replicas: 1,\n"
                        << "          retention_ms: 86400000" << topics_extra << " }\n"
                        << "ingest: { listen: \"127.0.0.1:" << free_port() << "\" }\n"
                        << "worker: { listen: \"127.0.0.1:0\" }\n"
                        << "postgres: { url: \"postgresql://postgres@127.0.0.1:1/none\" }\n"
                        << "retry: { schedule_seconds: " << schedule << " }\n";
    return path.string();
  }

  static TestDir* dir_;
  static KafkaCluster* kafka_;
  TestDir test_dir_;
  int configs_ = 0;
};

TestDir* TopicsOnKafka::dir_ = nullptr;
KafkaCluster* TopicsOnKafka::kafka_ = nullptr;

TEST_F(TopicsOnKafka, ApplyCreatesCheckReportsDriftApplyFixesItKeepingOtherOverrides) {
  const std::string base = config();

  // Nothing yet: the services refuse to start, naming the topics and the command.
  auto ingest = ChildProcess::spawn(
      {std::string(HOOKRELAY_BIN_DIR) + "/ingest/hookrelay-ingest", "--config", base}, {},
      test_dir_.file("ingest-refused.log"));
  ASSERT_TRUE(ingest) << ingest.error().message;
  ASSERT_EQ(ingest->wait_exit(30s), std::optional<int>(2)) << ingest->log_tail();
  EXPECT_TRUE(contains(
      ingest->read_log(),
      "Kafka topics hookrelay.webhooks, hookrelay.calls do not exist at " + kafka_->bootstrap()))
      << ingest->read_log();
  EXPECT_TRUE(contains(ingest->read_log(), "hookrelay topics apply")) << ingest->read_log();

  auto check = run_cli_in_process({"topics", "check", "--config", base});
  EXPECT_EQ(check.code, 1) << check.out << check.err;
  EXPECT_TRUE(contains(check.out, "hookrelay.webhooks: topic is missing")) << check.out;
  EXPECT_TRUE(contains(check.out, "6 difference(s) in 6 topics")) << check.out;

  auto dry = run_cli_in_process({"topics", "apply", "--config", base, "--dry-run"});
  EXPECT_EQ(dry.code, 0) << dry.out << dry.err;
  EXPECT_TRUE(contains(dry.out, "would create hookrelay.dlq: 3 partitions, replication factor 1"))
      << dry.out;
  EXPECT_EQ(run_cli_in_process({"topics", "check", "--config", base}).code, 1)
      << "a dry run changed something";

  auto apply = run_cli_in_process({"topics", "apply", "--config", base});
  ASSERT_EQ(apply.code, 0) << apply.out << apply.err;
  for (const char* topic : {"hookrelay.webhooks", "hookrelay.calls", "hookrelay.retry.0",
                            "hookrelay.retry.1", "hookrelay.dlq", "hookrelay.parked"}) {
    EXPECT_TRUE(contains(apply.out, std::string("created ") + topic + ": 3 partitions"))
        << apply.out;
  }
  check = run_cli_in_process({"topics", "check", "--config", base});
  EXPECT_EQ(check.code, 0) << check.out << check.err;
  EXPECT_EQ(check.out, "ok: 6 topics as configured\n");
  EXPECT_EQ(run_cli_in_process({"topics", "apply", "--config", base}).out,
            "ok: 6 topics as configured, nothing to do\n");

  // An override apply does not manage, set by hand: it must survive apply's AlterConfigs.
  KafkaConfig kafka;
  kafka.bootstrap_servers = kafka_->bootstrap();
  auto admin = KafkaAdmin::create(kafka, 15s);
  ASSERT_TRUE(admin) << admin.error().message;
  auto manual = (*admin)->set_configs("hookrelay.webhooks", {{"segment.ms", "3600000"}});
  ASSERT_TRUE(manual) << manual.error().message;

  // Another retention applied (as from an edited config): the base config now sees drift.
  auto other =
      run_cli_in_process({"topics", "apply", "--config", config(", dlq_retention_ms: 172800000")});
  ASSERT_EQ(other.code, 0) << other.out << other.err;
  EXPECT_TRUE(contains(other.out, "set hookrelay.dlq retention.ms=172800000 (was 2592000000)"))
      << other.out;

  check = run_cli_in_process({"topics", "check", "--config", base});
  EXPECT_EQ(check.code, 1) << check.out;
  EXPECT_TRUE(contains(check.out, "hookrelay.dlq: retention.ms is 172800000, wanted 2592000000"))
      << check.out;
  auto json = run_cli_in_process({"topics", "check", "--config", base, "--json"});
  EXPECT_EQ(json.code, 1);
  EXPECT_TRUE(contains(json.out, "\"property\": \"retention.ms\"")) << json.out;

  apply = run_cli_in_process({"topics", "apply", "--config", base});
  EXPECT_EQ(apply.code, 0) << apply.out << apply.err;
  EXPECT_TRUE(contains(apply.out, "set hookrelay.dlq retention.ms=2592000000 (was 172800000)"))
      << apply.out;
  EXPECT_EQ(run_cli_in_process({"topics", "check", "--config", base}).code, 0);

  // A config change on hookrelay.webhooks keeps the hand-set segment.ms.
  auto webhooks =
      run_cli_in_process({"topics", "apply", "--config", config(", max_message_bytes: 2097152")});
  EXPECT_EQ(webhooks.code, 0) << webhooks.out << webhooks.err;
  EXPECT_TRUE(
      contains(webhooks.out, "set hookrelay.webhooks max.message.bytes=2097152 (was 1052672)"))
      << webhooks.out;
  auto seen = (*admin)->describe({"hookrelay.webhooks"},
                                 {"segment.ms", "max.message.bytes", "retention.ms"});
  ASSERT_TRUE(seen) << seen.error().message;
  EXPECT_EQ(seen->at("hookrelay.webhooks").configs.at("segment.ms"), "3600000");
  EXPECT_EQ(seen->at("hookrelay.webhooks").configs.at("max.message.bytes"), "2097152");
  EXPECT_EQ(seen->at("hookrelay.webhooks").configs.at("retention.ms"), "86400000");
  ASSERT_EQ(run_cli_in_process({"topics", "apply", "--config", base}).code, 0);

  // Partitions: raised on apply; more than configured is reported, never "fixed".
  auto more = run_cli_in_process({"topics", "apply", "--config", config("", "[1, 2]", 5)});
  ASSERT_EQ(more.code, 0) << more.out << more.err;
  EXPECT_TRUE(contains(more.out, "raised hookrelay.webhooks partitions from 3 to 5")) << more.out;
  check = run_cli_in_process({"topics", "check", "--config", base});
  EXPECT_EQ(check.code, 1);
  EXPECT_TRUE(contains(check.out, "hookrelay.webhooks: partitions is 5, wanted 3")) << check.out;
  apply = run_cli_in_process({"topics", "apply", "--config", base});
  EXPECT_EQ(apply.code, 1) << apply.out;
  EXPECT_TRUE(contains(apply.out, "left as is: hookrelay.webhooks: partitions is 5, wanted 3"))
      << apply.out;
}

// Runs after the test above (declaration order), which left hookrelay.webhooks with 5 partitions.
TEST_F(TopicsOnKafka, ServicesStartWithTheirTopicsAndRefuseAMissingRetryTier) {
  const std::string base = config("", "[1, 2]", 5);
  ASSERT_EQ(run_cli_in_process({"topics", "apply", "--config", base}).code, 0);
  ASSERT_EQ(run_cli_in_process({"topics", "check", "--config", base}).code, 0);

  // Ingest finds hookrelay.webhooks and hookrelay.calls and serves.
  const int port = free_port();
  auto ingest = ChildProcess::spawn(
      {std::string(HOOKRELAY_BIN_DIR) + "/ingest/hookrelay-ingest", "--config", base},
      {{"HOOKRELAY_INGEST_LISTEN", "127.0.0.1:" + std::to_string(port)}},
      test_dir_.file("ingest.log"));
  ASSERT_TRUE(ingest) << ingest.error().message;
  EXPECT_TRUE(wait_for_status("http://127.0.0.1:" + std::to_string(port) + "/readyz", 200, 30s))
      << ingest->log_tail();
  EXPECT_EQ(ingest->stop(), 0);

  // A worker configured with a third tier nobody created: exit 2, the topic named.
  auto worker = ChildProcess::spawn({std::string(HOOKRELAY_BIN_DIR) + "/worker/hookrelay-worker",
                                     "--config", config("", "[1, 2, 3]")},
                                    {}, test_dir_.file("worker.log"));
  ASSERT_TRUE(worker) << worker.error().message;
  ASSERT_EQ(worker->wait_exit(30s), std::optional<int>(2)) << worker->log_tail();
  EXPECT_TRUE(contains(worker->read_log(), "Kafka topic hookrelay.retry.2 does not exist"))
      << worker->read_log();
}

// No cluster needed: Kafka that does not answer is a warning, and ingest serves (503 until Kafka
// is reachable).
TEST(TopicCheckAtStart, IngestGoesOnWithAWarningWhenKafkaDoesNotAnswer) {
  TestDir dir;
  const int port = free_port();
  auto path = dir.file("config.yaml");
  std::ofstream(path) << "kafka: { bootstrap_servers: \"127.0.0.1:" << free_port() << "\" }\n"
                      << "ingest: { listen: \"127.0.0.1:" << port << "\" }\n";
  auto ingest = ChildProcess::spawn(
      {std::string(HOOKRELAY_BIN_DIR) + "/ingest/hookrelay-ingest", "--config", path.string()}, {},
      dir.file("ingest.log"));
  ASSERT_TRUE(ingest) << ingest.error().message;
  EXPECT_TRUE(wait_for_status("http://127.0.0.1:" + std::to_string(port) + "/healthz", 200, 30s))
      << ingest->log_tail();
  EXPECT_TRUE(contains(ingest->read_log(), "msg=topic_check_skipped")) << ingest->read_log();
  EXPECT_TRUE(contains(ingest->read_log(), "did not answer within 10 s")) << ingest->read_log();
  EXPECT_EQ(ingest->stop(), 0);
}

}  // namespace
}  // namespace hookrelay::test
