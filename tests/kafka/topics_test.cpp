// `hookrelay topics apply|check` and the services' start-up topic check on a real one-node Apache
// Kafka (KRaft, replication factor 1, min.insync.replicas 1), started once for this suite: apply
// creates what is missing, check reports every drift (a config value changed, too many
// partitions), apply fixes what it can and keeps other topic-level overrides; ingest and worker
// refuse to start without their topics, naming them. On the shared three-node cluster: apply
// returns only once every broker lists the topics with their leaders; on librdkafka's mock
// cluster: the wait names each broker still behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "devbroker/mock_cluster.h"
#include "shared/kafka/kafka_admin.h"
#include "shared/kafka/kafka_handles.h"
#include "tests/kafka/shared_cluster.h"
#include "tests/support/cli_run.h"
#include "tests/support/free_port.h"
#include "tests/support/http_client.h"
#include "tests/support/kafka_cluster.h"
#include "tests/support/kafka_test_client.h"
#include "tests/support/process.h"
#include "tests/support/test_dir.h"

namespace hookrelay::test {
namespace {

using namespace std::chrono_literals;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Writes a config for `bootstrap` to `path`: `partitions` partitions, replication factor
// `replication` (min ISR: at most 2), retention one day plus `topics_extra`, the retry schedule
// `schedule`, and `sections` (sources, routes) at the end.
std::string topics_config(const std::filesystem::path& path, const std::string& bootstrap,
                          int replication, int partitions, const std::string& topics_extra = "",
                          const std::string& schedule = "[1, 2]",
                          const std::string& sections = "") {
  std::ofstream(path) << "kafka: { bootstrap_servers: \"" << bootstrap << "\" }\n"
                      << "topics: { partitions: " << partitions
                      << ", replication_factor: " << replication
                      << ", min_insync_replicas: " << std::min(2, replication) << ",\n"
                      << "          retention_ms: 86400000" << topics_extra << " }\n"
                      << "ingest: { listen: \"127.0.0.1:" << free_port() << "\" }\n"
                      << "worker: { listen: \"127.0.0.1:0\" }\n"
                      << "postgres: { url: \"postgresql://postgres@127.0.0.1:1/none\" }\n"
                      << "retry: { schedule_seconds: " << schedule << " }\n"
                      << sections;
  return path.string();
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
    return topics_config(test_dir_.file("config-" + std::to_string(++configs_) + ".yaml"),
                         kafka_->bootstrap(), 1, partitions, topics_extra, schedule);
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
  EXPECT_TRUE(contains(apply.out,
                       "every broker (1) lists the 6 topics with a leader for each "
                       "partition, after "))
      << apply.out;

  // An override apply does not manage, set by hand: it must survive apply's AlterConfigs.
  KafkaConfig kafka;
  kafka.bootstrap_servers = kafka_->bootstrap();
  auto admin = KafkaAdmin::create(kafka, 15s);
  ASSERT_TRUE(admin) << admin.error().message;
  auto manual = (*admin)->set_configs("hookrelay.webhooks", {{"segment.ms", "3600000"}});
  ASSERT_TRUE(manual) << manual.error().message;

  // Another retention applied (as from an edited config): the base config now sees drift. A
  // shorter one deletes dead letters at once: refused without its flag, the rest applied.
  const std::string shorter = config(", dlq_retention_ms: 172800000");
  auto refused = run_cli_in_process({"topics", "apply", "--config", shorter});
  EXPECT_EQ(refused.code, 1) << refused.out << refused.err;
  EXPECT_TRUE(contains(refused.out,
                       "refused: hookrelay.dlq retention.ms not lowered from 2592000000 to "
                       "172800000: Kafka would delete every message older than 172800000 ms"))
      << refused.out;
  EXPECT_TRUE(contains(refused.out, "pass --allow-retention-decrease to lower it")) << refused.out;
  EXPECT_EQ(run_cli_in_process({"topics", "check", "--config", base}).code, 0)
      << "a refused change was made";
  auto other =
      run_cli_in_process({"topics", "apply", "--config", shorter, "--allow-retention-decrease"});
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

// Runs after the tests above. A topic with one replica under a config asking for three and min
// ISR 2: setting min.insync.replicas=2 there made every acks=all write fail NOT_ENOUGH_REPLICAS.
TEST_F(TopicsOnKafka, MinInsyncReplicasIsNeverSetAtOrAboveATopicsReplicationFactor) {
  const std::string base = config("", "[1, 2]", 5);
  ASSERT_EQ(run_cli_in_process({"topics", "apply", "--config", base}).code, 0);
  const std::string three =
      topics_config(test_dir_.file("three-replicas.yaml"), kafka_->bootstrap(), 3, 5);

  auto apply = run_cli_in_process({"topics", "apply", "--config", three});
  EXPECT_EQ(apply.code, 1) << apply.out << apply.err;
  EXPECT_TRUE(contains(apply.out,
                       "not applied: hookrelay.webhooks: min.insync.replicas not set to 2 (it is "
                       "1): the topic's replication factor is 1, and with 2 every acks=all write "
                       "fails (NOT_ENOUGH_REPLICAS)"))
      << apply.out;
  EXPECT_TRUE(contains(apply.out,
                       "left as is: hookrelay.webhooks: replication factor is 1, "
                       "wanted 3"))
      << apply.out;
  EXPECT_FALSE(contains(apply.out, "min.insync.replicas=2")) << apply.out;

  KafkaConfig kafka;
  kafka.bootstrap_servers = kafka_->bootstrap();
  auto admin = KafkaAdmin::create(kafka, 15s);
  ASSERT_TRUE(admin) << admin.error().message;
  Config wanted;
  wanted.retry.schedule_seconds = {1, 2};
  std::vector<std::string> names;
  for (const auto& t : desired_topics(wanted)) names.push_back(t.name);
  auto seen = (*admin)->describe(names, {"min.insync.replicas"});
  ASSERT_TRUE(seen) << seen.error().message;
  for (const auto& name : names)
    EXPECT_EQ(seen->at(name).configs.at("min.insync.replicas"), "1") << name;

  // check calls it an error, not a mere difference.
  auto check = run_cli_in_process({"topics", "check", "--config", three});
  EXPECT_EQ(check.code, 1) << check.out;
  EXPECT_TRUE(contains(check.out, "error: hookrelay.webhooks: min.insync.replicas not set to 2"))
      << check.out;
  EXPECT_TRUE(contains(check.out, "of them making acks=all writes fail")) << check.out;
  auto json = run_cli_in_process({"topics", "check", "--config", three, "--json"});
  EXPECT_TRUE(contains(json.out, "\"error\": true")) << json.out;

  // Set so by hand: an error as it is, which apply of a config that wants 1 fixes.
  ASSERT_TRUE((*admin)->set_configs("hookrelay.dlq", {{"min.insync.replicas", "2"}}));
  check = run_cli_in_process({"topics", "check", "--config", base});
  EXPECT_EQ(check.code, 1) << check.out;
  EXPECT_TRUE(contains(check.out,
                       "error: hookrelay.dlq: min.insync.replicas is 2, wanted 1 (with "
                       "replication factor 1, every acks=all write fails (NOT_ENOUGH_REPLICAS))"))
      << check.out;
  apply = run_cli_in_process({"topics", "apply", "--config", base});
  EXPECT_EQ(apply.code, 0) << apply.out << apply.err;
  EXPECT_EQ(run_cli_in_process({"topics", "check", "--config", base}).code, 0);
}

// One partition keeps an ordered route's webhooks in arrival order for their first attempts
// (docs/routes.md): raising it is refused without its flag, while the rest of the plan applies.
TEST_F(TopicsOnKafka, RaisingWebhooksFromOnePartitionWithOrderedRoutesNeedsItsFlag) {
  Config wanted;
  wanted.retry.schedule_seconds = {1, 2};
  std::vector<std::string> names;
  for (const auto& t : desired_topics(wanted)) names.push_back(t.name);
  ASSERT_TRUE(kafka_->delete_topics(names));
  const std::string routes =
      "sources:\n  acme: { scheme: standard-webhooks, secrets: "
      "[\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"] }\n"
      "routes:\n  acme:\n"
      "    - { name: ledger, url: \"https://ledger.example.com/\", ordered: true }\n";
  const auto path = [this](const std::string& name) { return test_dir_.file(name); };
  const std::string one =
      topics_config(path("one.yaml"), kafka_->bootstrap(), 1, 1, "", "[1, 2]", routes);
  const std::string three =
      topics_config(path("three.yaml"), kafka_->bootstrap(), 1, 3, "", "[1, 2]", routes);
  ASSERT_EQ(run_cli_in_process({"topics", "apply", "--config", one}).code, 0);

  auto dry = run_cli_in_process({"topics", "apply", "--config", three, "--dry-run"});
  EXPECT_TRUE(contains(dry.out, "would refuse: hookrelay.webhooks partitions not raised"))
      << dry.out;

  auto apply = run_cli_in_process({"topics", "apply", "--config", three});
  EXPECT_EQ(apply.code, 1) << apply.out << apply.err;
  EXPECT_TRUE(contains(apply.out,
                       "refused: hookrelay.webhooks partitions not raised from 1 to 3: routes are "
                       "ordered (acme/ledger), and one partition is what keeps webhooks in "
                       "arrival order for their first attempts (docs/routes.md); pass "
                       "--allow-partition-increase to raise it"))
      << apply.out;
  EXPECT_TRUE(contains(apply.out, "raised hookrelay.calls partitions from 1 to 3")) << apply.out;
  EXPECT_TRUE(contains(apply.err, "1 change(s) refused")) << apply.err;
  auto partitions = topic_partitions(kafka_->bootstrap());
  ASSERT_TRUE(partitions) << partitions.error().message;
  EXPECT_EQ(partitions->at("hookrelay.webhooks"), 1);
  EXPECT_EQ(partitions->at("hookrelay.calls"), 3);

  apply = run_cli_in_process({"topics", "apply", "--config", three, "--allow-partition-increase"});
  EXPECT_EQ(apply.code, 0) << apply.out << apply.err;
  EXPECT_TRUE(contains(apply.out, "raised hookrelay.webhooks partitions from 1 to 3")) << apply.out;
  EXPECT_EQ(run_cli_in_process({"topics", "check", "--config", three}).code, 0);
}

// Two applies at once: the one whose CreateTopics or CreatePartitions comes second is told the
// work is done. That is no failure when the topic is now as configured.
TEST_F(TopicsOnKafka, TwoAppliesAtOnceBothSucceed) {
  Config wanted;
  wanted.retry.schedule_seconds = {1, 2};
  std::vector<std::string> names;
  for (const auto& t : desired_topics(wanted)) names.push_back(t.name);
  ASSERT_TRUE(kafka_->delete_topics(names));
  const std::string two = config("", "[1, 2]", 2);
  ASSERT_EQ(run_cli_in_process({"topics", "apply", "--config", two}).code, 0);

  // Deterministically second: the topic and its partitions exist as asked.
  KafkaConfig kafka;
  kafka.bootstrap_servers = kafka_->bootstrap();
  auto admin = KafkaAdmin::create(kafka, 15s);
  ASSERT_TRUE(admin) << admin.error().message;
  auto specs = desired_topics(
      *load_config_file(two, [](const std::string&) { return std::optional<std::string>{}; }));
  auto created = (*admin)->create_topic(specs.at(0));
  EXPECT_TRUE(created) << created.error().message;
  auto raised = (*admin)->raise_partitions(specs.at(0).name, 2);
  EXPECT_TRUE(raised) << raised.error().message;
  // Made otherwise by the other client: an error naming how it differs.
  TopicSpec other = specs.at(0);
  other.partitions = 4;
  auto differs = (*admin)->create_topic(other);
  ASSERT_FALSE(differs);
  EXPECT_TRUE(contains(differs.error().message,
                       "create topic hookrelay.webhooks: another client created it meanwhile, and "
                       "it differs: hookrelay.webhooks: partitions is 2, wanted 4"))
      << differs.error().message;

  // Two whole applies racing, from nothing and then raising partitions.
  for (int partitions : {3, 4}) {
    if (partitions == 3) {
      ASSERT_TRUE(kafka_->delete_topics(names));
    }
    const std::string path = config("", "[1, 2]", partitions);
    std::vector<CliRun> runs(2);
    std::thread first([&] { runs[0] = run_cli_in_process({"topics", "apply", "--config", path}); });
    runs[1] = run_cli_in_process({"topics", "apply", "--config", path});
    first.join();
    for (const auto& r : runs) EXPECT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(run_cli_in_process({"topics", "check", "--config", path}).code, 0);
  }
}

// The cluster's metadata, asked through a client of its own on `bootstrap`.
Result<KafkaMetadata> metadata_from(const std::string& bootstrap) {
  auto conf = make_kafka_conf({{"bootstrap.servers", bootstrap}});
  if (!conf) return Unexpected{conf.error()};
  char err[512];
  KafkaHandle rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), err, sizeof err));
  if (!rk) return fail("kafka", err);
  (void)conf->release();  // rd_kafka_new took ownership
  const rd_kafka_metadata_t* raw = nullptr;
  if (auto e = rd_kafka_metadata(rk.get(), 1, nullptr, &raw, 10000);
      e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return fail("kafka", bootstrap + ": " + rd_kafka_err2str(e));
  return KafkaMetadata(raw);
}

// What one broker's own metadata says, asked through a client that knows only that broker:
// topic -> the leader of each partition (-1: none). The answer must come from that broker
// (librdkafka names it "host:port/<id>" or "host:port/bootstrap").
Result<std::map<std::string, std::vector<int>>> leaders_seen_by(const std::string& address) {
  auto md = metadata_from(address);
  if (!md) return Unexpected{md.error()};
  if (std::string((*md)->orig_broker_name).rfind(address + "/", 0) != 0)
    return fail("kafka", address + ": the answer came from " + (*md)->orig_broker_name);
  std::map<std::string, std::vector<int>> out;
  for (int i = 0; i < (*md)->topic_cnt; ++i) {
    const auto& t = (*md)->topics[i];
    if (t.err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    auto& leaders = out[t.topic];
    for (int p = 0; p < t.partition_cnt; ++p) {
      leaders.push_back(t.partitions[p].err == RD_KAFKA_RESP_ERR_NO_ERROR ? t.partitions[p].leader
                                                                          : -1);
    }
  }
  return out;
}

class TopicsOnThreeBrokers : public OnSharedCluster<::testing::Test> {
 protected:
  TestDir test_dir_;
};

TEST_F(TopicsOnThreeBrokers, EveryBrokerListsTheTopicsWithLeadersAsSoonAsApplyReturns) {
  Config wanted;
  wanted.retry.schedule_seconds = {1, 2};
  std::vector<std::string> names;
  for (const auto& t : desired_topics(wanted)) names.push_back(t.name);
  ASSERT_TRUE(kafka_->delete_topics(names));
  const auto config =
      topics_config(test_dir_.file("config.yaml"), kafka_->bootstrap(), kafka_->nodes(), 6);

  auto apply = run_cli_in_process({"topics", "apply", "--config", config});
  ASSERT_EQ(apply.code, 0) << apply.out << apply.err;
  auto cluster = metadata_from(kafka_->bootstrap());
  ASSERT_TRUE(cluster) << cluster.error().message;
  ASSERT_EQ((*cluster)->broker_cnt, 3);
  for (int b = 0; b < (*cluster)->broker_cnt; ++b) {
    const std::string address = std::string((*cluster)->brokers[b].host) + ":" +
                                std::to_string((*cluster)->brokers[b].port);
    auto seen = leaders_seen_by(address);
    ASSERT_TRUE(seen) << seen.error().message;
    for (const auto& name : names) {
      ASSERT_TRUE(seen->count(name)) << address << " does not list " << name << "\n" << apply.out;
      const auto& leaders = seen->at(name);
      EXPECT_EQ(leaders.size(), 6u) << address << " " << name;
      for (std::size_t p = 0; p < leaders.size(); ++p)
        EXPECT_GE(leaders[p], 0) << address << " " << name << " partition " << p
                                 << " has no leader";
    }
  }
  EXPECT_TRUE(contains(apply.out, "every broker (3) lists the " + std::to_string(names.size()) +
                                      " topics with a leader for each partition, after "))
      << apply.out;

  // Again: nothing to do (each broker asked once).
  auto again = run_cli_in_process({"topics", "apply", "--config", config});
  EXPECT_EQ(again.code, 0) << again.out << again.err;
  EXPECT_EQ(again.out,
            "ok: " + std::to_string(names.size()) + " topics as configured, nothing to do\n");
  // Other suites make these topics with their own partition counts.
  EXPECT_TRUE(kafka_->delete_topics(names));
}

// librdkafka's mock cluster (three brokers, no JVM): the wait asks each broker, and after its
// timeout names every broker still behind and what it lacks.
TEST(EveryBrokerOnMockCluster, WaitNamesTheBrokersBehindAndWhatTheyLack) {
  auto mock = devbroker::MockCluster::create(3);
  ASSERT_TRUE(mock) << mock.error().message;
  ASSERT_TRUE((*mock)->create_topic("hookrelay.webhooks", 4, 3));
  KafkaConfig kafka;
  kafka.bootstrap_servers = (*mock)->bootstrap();
  auto admin = KafkaAdmin::create(kafka, 1s);
  ASSERT_TRUE(admin) << admin.error().message;

  auto every = (*admin)->wait_until_every_broker_knows({{"hookrelay.webhooks", 4}});
  ASSERT_TRUE(every) << every.error().message;
  EXPECT_EQ(every->brokers, 3);
  EXPECT_EQ(every->rounds, 1);

  auto behind =
      (*admin)->wait_until_every_broker_knows({{"hookrelay.webhooks", 6}, {"hookrelay.dlq", 1}});
  ASSERT_FALSE(behind);
  EXPECT_EQ(behind.error().code, "kafka_metadata_lag");
  EXPECT_TRUE(contains(behind.error().message, "after 1 s, 3 of 3 brokers still do not list"))
      << behind.error().message;
  for (int id = 1; id <= 3; ++id) {
    EXPECT_TRUE(contains(behind.error().message, "broker " + std::to_string(id) + " (127.0.0.1:"))
        << behind.error().message;
  }
  EXPECT_TRUE(contains(behind.error().message,
                       "hookrelay.dlq: topic is missing, hookrelay.webhooks: 4 of 6 partitions"))
      << behind.error().message;

  // A broker that does not answer is behind, whatever the others say. The wait's first step asks
  // the cluster through whichever broker the shared client picks, maybe the one just gone down;
  // then it asks each bootstrap broker on its own, and a live one answers.
  ASSERT_TRUE((*mock)->set_broker_down(2));
  behind = (*admin)->wait_until_every_broker_knows({{"hookrelay.webhooks", 4}});
  ASSERT_FALSE(behind);
  EXPECT_TRUE(contains(behind.error().message, "1 of 3 brokers")) << behind.error().message;
  EXPECT_TRUE(contains(behind.error().message, "broker 2 (127.0.0.1:")) << behind.error().message;
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
