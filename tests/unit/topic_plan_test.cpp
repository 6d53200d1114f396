#include "shared/kafka/topic_plan.h"

#include <gtest/gtest.h>

#include "shared/kafka/kafka_admin.h"
#include "shared/kafka/topic_check.h"
#include "shared/kafka/wire_contract.h"

namespace hookrelay {
namespace {

Config config_of(const std::string& yaml) {
  auto c = parse_config(yaml, [](const std::string&) { return std::nullopt; });
  EXPECT_TRUE(c) << c.error().message;
  return c ? *c : Config{};
}

// What a cluster made exactly as `desired` says reports.
std::map<std::string, ObservedTopic> as_desired(const std::vector<TopicSpec>& desired) {
  std::map<std::string, ObservedTopic> out;
  for (const auto& s : desired) out[s.name] = {s.partitions, s.replication_factor, s.configs};
  return out;
}

TEST(TopicPlan, DefaultsGiveEveryTopicWithTheDocumentedSettings) {
  auto topics = desired_topics(Config{});
  ASSERT_EQ(topics.size(), 10u);  // webhooks, calls, 6 tiers, dlq, parked
  EXPECT_EQ(topics[0].name, "hookrelay.webhooks");
  EXPECT_EQ(topics[1].name, "hookrelay.calls");
  EXPECT_EQ(topics[2].name, "hookrelay.retry.0");
  EXPECT_EQ(topics[7].name, "hookrelay.retry.5");
  EXPECT_EQ(topics[8].name, "hookrelay.dlq");
  EXPECT_EQ(topics[9].name, "hookrelay.parked");
  for (const auto& t : topics) {
    EXPECT_EQ(t.partitions, 12) << t.name;
    EXPECT_EQ(t.replication_factor, 3) << t.name;
    EXPECT_EQ(t.configs.at("min.insync.replicas"), "2") << t.name;
    EXPECT_EQ(t.configs.at("cleanup.policy"), "delete") << t.name;
    EXPECT_EQ(t.configs.at("unclean.leader.election.enable"), "false") << t.name;
    // The producer's 1 MiB plus the batch overhead: the broker takes whatever the producer sends.
    EXPECT_EQ(t.configs.at("max.message.bytes"), std::to_string(1048576 + 4096)) << t.name;
  }
  EXPECT_EQ(topics[0].configs.at("retention.ms"), "604800000");
  EXPECT_EQ(topics[8].configs.at("retention.ms"), "2592000000");
  EXPECT_EQ(topics[9].configs.at("retention.ms"), "2592000000");  // parked: the DLQ's window
  // The top default tier (1 h) x 10 is under 7 days: the floor applies.
  EXPECT_EQ(topics[7].configs.at("retention.ms"), "604800000");
}

TEST(TopicPlan, RetryTierRetentionIsTenTimesItsDelayWhenThatIsLonger) {
  auto c =
      config_of("retry: { schedule_seconds: [60, 172800] }\ntopics: { retention_ms: 86400000 }\n");
  EXPECT_EQ(retry_tier_retention_ms(c, 0), 86400000);      // 10 min < 1 day
  EXPECT_EQ(retry_tier_retention_ms(c, 1), 1728000000LL);  // 10 x 2 days
  auto topics = desired_topics(c);
  ASSERT_EQ(topics.size(), 6u);
  EXPECT_EQ(topics[3].name, "hookrelay.retry.1");
  EXPECT_EQ(topics[3].configs.at("retention.ms"), "1728000000");
}

TEST(TopicPlan, ConfiguredValuesAndSeparatePartitionCounts) {
  auto c = config_of(
      "topics: { partitions: 24, retry_partitions: 6, dlq_partitions: 3, replication_factor: 1,\n"
      "          min_insync_replicas: 1, max_message_bytes: 2097152 }\n"
      "kafka: { producer_properties: { message.max.bytes: \"2000000\" } }\n");
  auto topics = desired_topics(c);
  EXPECT_EQ(topics[0].partitions, 24);
  EXPECT_EQ(topics[2].partitions, 6);
  EXPECT_EQ(topics.back().partitions, 3);
  EXPECT_EQ(topics[0].replication_factor, 1);
  EXPECT_EQ(topics[0].configs.at("max.message.bytes"), "2097152");
}

TEST(TopicPlan, MaxMessageBytesFollowsTheProducerWhenNotSet) {
  auto c = config_of("kafka: { properties: { message.max.bytes: \"3000000\" } }\n");
  EXPECT_EQ(desired_topics(c)[0].configs.at("max.message.bytes"), "3004096");
}

TEST(TopicDiff, NothingWhenTheClusterIsAsDesired) {
  auto desired = desired_topics(Config{});
  auto observed = as_desired(desired);
  observed["some.other.topic"] = {1, 1, {}};  // not ours: ignored
  EXPECT_TRUE(diff_topics(desired, observed).empty());
}

TEST(TopicDiff, EveryKindOfDriftIsOneSentenceNamingTopicPropertyWantedAndFound) {
  auto desired = desired_topics(Config{});
  auto observed = as_desired(desired);
  observed.erase("hookrelay.dlq");
  observed["hookrelay.webhooks"].partitions = 6;
  observed["hookrelay.calls"].partitions = 16;
  observed["hookrelay.retry.0"].replication_factor = 4;
  observed["hookrelay.retry.1"].configs["retention.ms"] = "3600000";
  observed["hookrelay.retry.2"].configs.erase("cleanup.policy");

  auto drifts = diff_topics(desired, observed);
  ASSERT_EQ(drifts.size(), 6u);

  EXPECT_EQ(drifts[0].kind, DriftKind::kFewerPartitions);
  EXPECT_TRUE(drifts[0].fixable);
  EXPECT_EQ(drifts[0].message, "hookrelay.webhooks: partitions is 6, wanted 12");

  EXPECT_EQ(drifts[1].kind, DriftKind::kMorePartitions);
  EXPECT_FALSE(drifts[1].fixable);
  EXPECT_EQ(drifts[1].topic, "hookrelay.calls");
  EXPECT_NE(drifts[1].message.find("partitions is 16, wanted 12"), std::string::npos)
      << drifts[1].message;
  EXPECT_NE(drifts[1].message.find("cannot remove"), std::string::npos) << drifts[1].message;

  EXPECT_EQ(drifts[2].kind, DriftKind::kReplicationFactor);
  EXPECT_FALSE(drifts[2].fixable);
  EXPECT_NE(drifts[2].message.find("hookrelay.retry.0: replication factor is 4, wanted 3"),
            std::string::npos)
      << drifts[2].message;

  EXPECT_EQ(drifts[3].kind, DriftKind::kConfig);
  EXPECT_TRUE(drifts[3].fixable);
  EXPECT_EQ(drifts[3].message, "hookrelay.retry.1: retention.ms is 3600000, wanted 604800000");

  EXPECT_EQ(drifts[4].message, "hookrelay.retry.2: cleanup.policy is (unset), wanted delete");

  // In the order of the desired topics: the DLQ comes last.
  EXPECT_EQ(drifts[5].kind, DriftKind::kMissing);
  EXPECT_TRUE(drifts[5].fixable);
  EXPECT_EQ(drifts[5].message, "hookrelay.dlq: topic is missing (wanted it to exist)");
}

TEST(TopicDiff, AMissingTopicIsOneDriftNotOnePerProperty) {
  auto desired = desired_topics(Config{});
  auto observed = as_desired(desired);
  observed.erase("hookrelay.calls");
  auto drifts = diff_topics(desired, observed);
  ASSERT_EQ(drifts.size(), 1u);
  EXPECT_EQ(drifts[0].topic, "hookrelay.calls");
}

const TopicDrift* drift_of(const std::vector<TopicDrift>& drifts, const std::string& topic,
                           const std::string& property) {
  for (const auto& d : drifts) {
    if (d.topic == topic && d.property == property) return &d;
  }
  return nullptr;
}

// A topic made by hand with one replica, a config asking for 3 and min ISR 2: setting
// min.insync.replicas=2 there made every acks=all write fail NOT_ENOUGH_REPLICAS (ingest: 503).
TEST(TopicDiff, AMinInsyncReplicasAtOrAboveTheTopicsReplicationFactorIsNeverSetAndIsAnError) {
  auto desired = desired_topics(Config{});  // replication factor 3, min ISR 2
  auto observed = as_desired(desired);
  observed["hookrelay.webhooks"].replication_factor = 1;
  observed["hookrelay.webhooks"].configs["min.insync.replicas"] = "1";
  observed["hookrelay.calls"].replication_factor = 2;  // 2 of 2: one broker down stops writes
  observed["hookrelay.calls"].configs["min.insync.replicas"] = "1";

  auto drifts = diff_topics(desired, observed);
  const TopicDrift* webhooks = drift_of(drifts, "hookrelay.webhooks", "min.insync.replicas");
  ASSERT_NE(webhooks, nullptr);
  EXPECT_EQ(webhooks->kind, DriftKind::kMinInsyncReplicas);
  EXPECT_FALSE(webhooks->fixable);
  EXPECT_TRUE(webhooks->blocks_writes);
  EXPECT_EQ(webhooks->message,
            "hookrelay.webhooks: min.insync.replicas not set to 2 (it is 1): the topic's "
            "replication factor is 1, and with 2 every acks=all write fails "
            "(NOT_ENOUGH_REPLICAS); raise the replication factor first "
            "(kafka-reassign-partitions) or lower topics.min_insync_replicas");
  const TopicDrift* calls = drift_of(drifts, "hookrelay.calls", "min.insync.replicas");
  ASSERT_NE(calls, nullptr);
  EXPECT_EQ(calls->kind, DriftKind::kMinInsyncReplicas);
  EXPECT_FALSE(calls->fixable);
  EXPECT_NE(calls->message.find("as soon as one replica falls behind"), std::string::npos)
      << calls->message;
  // The replication factor itself is reported as before; nothing else about these topics.
  ASSERT_NE(drift_of(drifts, "hookrelay.webhooks", "replication factor"), nullptr);
  EXPECT_EQ(drifts.size(), 4u);
  for (const auto& d : drifts) EXPECT_NE(d.kind, DriftKind::kConfig) << d.message;

  // Already set so (by hand, or by an older apply): an error as it is.
  observed["hookrelay.webhooks"].configs["min.insync.replicas"] = "2";
  drifts = diff_topics(desired, observed);
  webhooks = drift_of(drifts, "hookrelay.webhooks", "min.insync.replicas");
  ASSERT_NE(webhooks, nullptr);
  EXPECT_EQ(webhooks->kind, DriftKind::kMinInsyncReplicas);
  EXPECT_TRUE(webhooks->blocks_writes);
  EXPECT_NE(webhooks->message.find("hookrelay.webhooks: min.insync.replicas is 2 with replication "
                                   "factor 1: every acks=all write fails"),
            std::string::npos)
      << webhooks->message;

  // Found blocking, wanted not: an ordinary change apply makes, flagged as an error until then.
  observed = as_desired(desired);
  observed["hookrelay.dlq"].configs["min.insync.replicas"] = "3";
  drifts = diff_topics(desired, observed);
  ASSERT_EQ(drifts.size(), 1u);
  EXPECT_EQ(drifts[0].kind, DriftKind::kConfig);
  EXPECT_TRUE(drifts[0].fixable);
  EXPECT_TRUE(drifts[0].blocks_writes);
  EXPECT_EQ(drifts[0].message.rfind("hookrelay.dlq: min.insync.replicas is 3, wanted 2", 0), 0u)
      << drifts[0].message;
}

TEST(TopicDiff, OneReplicaWithMinInsyncReplicasOneIsTheOneBrokerSetupNotAnError) {
  auto c = config_of("topics: { replication_factor: 1, min_insync_replicas: 1 }\n");
  auto desired = desired_topics(c);
  auto observed = as_desired(desired);
  EXPECT_TRUE(diff_topics(desired, observed).empty());
  observed["hookrelay.webhooks"].configs["min.insync.replicas"] = "2";
  auto drifts = diff_topics(desired, observed);
  ASSERT_EQ(drifts.size(), 1u);
  EXPECT_EQ(drifts[0].kind, DriftKind::kConfig);  // apply lowers it to 1
  EXPECT_TRUE(drifts[0].blocks_writes);
  EXPECT_FALSE(min_isr_blocks_writes(1, 1));
  EXPECT_TRUE(min_isr_blocks_writes(2, 2));
  EXPECT_FALSE(min_isr_blocks_writes(2, 3));
}

// Lowering retention.ms makes Kafka delete what is older than the new window at once: dead
// letters an operator has not looked at yet, a backlog.
TEST(ApplyRefusal, LoweringRetentionNeedsItsFlagRaisingItDoesNot) {
  auto desired = desired_topics(Config{});
  auto observed = as_desired(desired);
  observed["hookrelay.dlq"].configs["retention.ms"] = "5184000000";     // 60 days, wanted 30
  observed["hookrelay.webhooks"].configs["retention.ms"] = "86400000";  // 1 day, wanted 7
  auto drifts = diff_topics(desired, observed);
  const TopicDrift* lower = drift_of(drifts, "hookrelay.dlq", "retention.ms");
  const TopicDrift* raise = drift_of(drifts, "hookrelay.webhooks", "retention.ms");
  ASSERT_NE(lower, nullptr);
  ASSERT_NE(raise, nullptr);
  EXPECT_EQ(apply_refusal(*lower, {}, {}),
            "hookrelay.dlq retention.ms not lowered from 5184000000 to 2592000000: Kafka would "
            "delete every message older than 2592000000 ms at once (dead letters, parked "
            "deliveries, a backlog not yet consumed); pass --allow-retention-decrease to lower it");
  EXPECT_EQ(apply_refusal(*lower, {}, {.retention_decrease = true}), "");
  EXPECT_EQ(apply_refusal(*lower, {}, {.partition_increase = true}).empty(), false);
  EXPECT_EQ(apply_refusal(*raise, {}, {}), "");
  // -1 keeps messages for ever: any window is lower.
  observed["hookrelay.dlq"].configs["retention.ms"] = "-1";
  drifts = diff_topics(desired, observed);
  const TopicDrift* from_forever = drift_of(drifts, "hookrelay.dlq", "retention.ms");
  ASSERT_NE(from_forever, nullptr);
  EXPECT_NE(apply_refusal(*from_forever, {}, {}).find("not lowered from -1"), std::string::npos);
}

// One partition is what keeps an ordered route's webhooks in arrival order for their first
// attempts (docs/routes.md).
TEST(ApplyRefusal, RaisingWebhooksFromOnePartitionNeedsItsFlagWhenRoutesAreOrdered) {
  auto ordered = config_of(
      "sources: { github: { scheme: github, secrets: [\"s\"] } }\n"
      "routes:\n  github:\n"
      "    - { name: ci, url: \"https://ci.example.com/\", ordered: true }\n"
      "    - { name: chat, url: \"https://chat.example.com/\" }\n");
  EXPECT_EQ(ordered_routes(ordered), (std::vector<std::string>{"github/ci"}));
  auto desired = desired_topics(ordered);
  auto observed = as_desired(desired);
  observed["hookrelay.webhooks"].partitions = 1;
  observed["hookrelay.calls"].partitions = 1;
  observed["hookrelay.dlq"].partitions = 2;
  auto drifts = diff_topics(desired, observed);
  const TopicDrift* webhooks = drift_of(drifts, "hookrelay.webhooks", "partitions");
  ASSERT_NE(webhooks, nullptr);
  EXPECT_EQ(apply_refusal(*webhooks, ordered_routes(ordered), {}),
            "hookrelay.webhooks partitions not raised from 1 to 12: routes are ordered "
            "(github/ci), and one partition is what keeps webhooks in arrival order for their "
            "first attempts (docs/routes.md); pass --allow-partition-increase to raise it");
  EXPECT_EQ(apply_refusal(*webhooks, ordered_routes(ordered), {.partition_increase = true}), "");
  EXPECT_EQ(apply_refusal(*webhooks, {}, {}), "");  // no ordered route
  // Other topics, and a webhooks topic that already has several partitions, are raised.
  EXPECT_EQ(apply_refusal(*drift_of(drifts, "hookrelay.calls", "partitions"),
                          ordered_routes(ordered), {}),
            "");
  EXPECT_EQ(
      apply_refusal(*drift_of(drifts, "hookrelay.dlq", "partitions"), ordered_routes(ordered), {}),
      "");
  observed["hookrelay.webhooks"].partitions = 2;
  drifts = diff_topics(desired, observed);
  EXPECT_EQ(apply_refusal(*drift_of(drifts, "hookrelay.webhooks", "partitions"),
                          ordered_routes(ordered), {}),
            "");
}

// Two applies at once: the second CreateTopics / CreatePartitions is told it is already done.
TEST(KafkaAdminErrors, AlreadyExistsAndAlreadyHasThosePartitionsMeanAnotherClientDidIt) {
  EXPECT_TRUE(already_made_by_another(RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS,
                                      "Topic 'hookrelay.dlq' already exists."));
  EXPECT_TRUE(already_made_by_another(RD_KAFKA_RESP_ERR_INVALID_PARTITIONS,
                                      "Topic already has 6 partition(s)."));
  // Fewer than it has is a real error; so is every other one.
  EXPECT_FALSE(already_made_by_another(
      RD_KAFKA_RESP_ERR_INVALID_PARTITIONS,
      "The topic hookrelay.dlq currently has 8 partition(s); 6 would not be an increase."));
  EXPECT_FALSE(already_made_by_another(RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR,
                                       "Unable to replicate the partition 3 time(s)"));
  EXPECT_FALSE(already_made_by_another(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, ""));
  EXPECT_FALSE(already_made_by_another(RD_KAFKA_RESP_ERR_NO_ERROR, ""));
}

TEST(RequiredTopics, IngestNeedsTheFreshTopicsTheWorkerEveryTopic) {
  auto c = config_of("retry: { schedule_seconds: [1, 2] }\n");
  EXPECT_EQ(required_topics(c, ServiceKind::kIngest),
            (std::vector<std::string>{"hookrelay.webhooks", "hookrelay.calls"}));
  EXPECT_EQ(required_topics(c, ServiceKind::kWorker),
            (std::vector<std::string>{"hookrelay.webhooks", "hookrelay.calls", "hookrelay.retry.0",
                                      "hookrelay.retry.1", "hookrelay.dlq", "hookrelay.parked"}));
  EXPECT_EQ(missing_topics({"a", "b", "c"}, {"b", "x"}), (std::vector<std::string>{"a", "c"}));
}

TEST(TopicCheckAtStart, MissingTopicsStopTheServiceNamingThemAndTheFix) {
  auto v = judge_topics_at_start("hookrelay-worker",
                                 {"hookrelay.webhooks", "hookrelay.dlq", "hookrelay.retry.0"},
                                 std::set<std::string>{"hookrelay.webhooks"}, "k1:9092");
  EXPECT_FALSE(v.go_on);
  EXPECT_FALSE(v.warned);
  EXPECT_NE(v.message.find("hookrelay.dlq, hookrelay.retry.0 do not exist at k1:9092"),
            std::string::npos)
      << v.message;
  EXPECT_NE(v.message.find("hookrelay topics apply"), std::string::npos) << v.message;

  auto one = judge_topics_at_start("hookrelay-ingest", {"hookrelay.calls"}, std::set<std::string>{},
                                   "k1:9092");
  EXPECT_FALSE(one.go_on);
  EXPECT_NE(one.message.find("topic hookrelay.calls does not exist"), std::string::npos)
      << one.message;
}

TEST(TopicCheckAtStart, AllPresentGoesOnSilently) {
  auto v = judge_topics_at_start("hookrelay-ingest", {"hookrelay.calls"},
                                 std::set<std::string>{"hookrelay.calls", "x"}, "k1:9092");
  EXPECT_TRUE(v.go_on);
  EXPECT_FALSE(v.warned);
  EXPECT_TRUE(v.message.empty());
}

TEST(TopicCheckAtStart, NoAnswerFromKafkaWarnsAndGoesOn) {
  Result<std::set<std::string>> timed_out =
      fail("kafka_unreachable", "Kafka at k1:9092 did not answer within 10 s", true);
  auto v = judge_topics_at_start("hookrelay-ingest", {"hookrelay.calls"}, timed_out, "k1:9092");
  EXPECT_TRUE(v.go_on);
  EXPECT_TRUE(v.warned);
  EXPECT_NE(v.message.find("did not answer"), std::string::npos) << v.message;
}

}  // namespace
}  // namespace hookrelay
