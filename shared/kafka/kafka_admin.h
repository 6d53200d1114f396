// KafkaAdmin: the Kafka cluster's topics as an operator manages them, on librdkafka's Admin API
// (CreateTopics, CreatePartitions, DescribeConfigs, AlterConfigs) and metadata. Used by
// `hookrelay topics apply|check` and by the services' start-up check.
//
// Every call waits at most the timeout given to create() (plus a short margin for the answer
// to arrive) and returns an Error naming the topic and what Kafka said; no answer in time is a
// retryable Error with code "kafka_unreachable". librdkafka's own log lines are dropped: the
// caller reports the Error.
//
// librdkafka 2.0.2 has no IncrementalAlterConfigs: AlterConfigs replaces a topic's whole set of
// dynamic overrides, so set_configs() first reads the topic's DYNAMIC_TOPIC_CONFIG entries and
// sends them along with the new values, leaving every other override as it was.
//
// A broker answers metadata from its own copy of the cluster's metadata, which can lag the
// controller's for a moment after a change: wait_until_every_broker_knows() asks each broker in
// turn, through a client of its own bootstrapped on that broker alone.
//
// Two applies at once (two deploys, a retried Job) race: the one whose CreateTopics or
// CreatePartitions comes second is told the topic already exists, or already has that many
// partitions. That is someone else having done it: create_topic() and raise_partitions() then look
// at the topic again and succeed when it is as asked.
//
// Thread-safety: one thread at a time per KafkaAdmin.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "shared/config/config.h"
#include "shared/kafka/kafka_handles.h"
#include "shared/kafka/topic_plan.h"
#include "shared/result.h"

namespace hookrelay {

// Whether a CreateTopics or CreatePartitions error says the change is already made (by another
// client, at the same time): TOPIC_ALREADY_EXISTS, or INVALID_PARTITIONS whose `detail` says the
// topic "already has" the count asked for (not one saying the count would be a decrease).
bool already_made_by_another(rd_kafka_resp_err_t err, std::string_view detail);

class KafkaAdmin {
 public:
  // Builds the client from kafka.bootstrap_servers and kafka.properties (never connects here).
  // Error "config" naming the property when librdkafka refuses one.
  static Result<std::unique_ptr<KafkaAdmin>> create(const KafkaConfig& kafka,
                                                    std::chrono::milliseconds timeout);

  // Every topic name in the cluster's metadata (never asks for a topic by name, so a broker with
  // auto.create.topics.enable=true creates nothing).
  Result<std::set<std::string>> topic_names();

  // For each of `names` that exists: partitions, replication factor (the fewest replicas of any
  // partition) and the current values of `config_names`.
  Result<std::map<std::string, ObservedTopic>> describe(const std::vector<std::string>& names,
                                                        const std::set<std::string>& config_names);

  // Both return once the cluster's metadata shows the change, so a service started right after
  // finds the topic (the controller has it before every broker does). A topic created meanwhile
  // by another client is success when it is as `spec` says (else an Error naming how it
  // differs); so is a partition count another client raised to `total` meanwhile.
  Result<void> create_topic(const TopicSpec& spec);
  // Raises the topic's partition count to `total`.
  Result<void> raise_partitions(const std::string& topic, int total);
  // Sets `configs` on the topic, keeping its other dynamic overrides (see above).
  Result<void> set_configs(const std::string& topic,
                           const std::map<std::string, std::string>& configs);

  // Waits until the metadata of every broker the cluster lists shows each of `partitions`' topics
  // with at least that many partitions, each with a leader, so that any client may use them
  // whichever broker it asks. Returns how long that took, how many brokers were asked and in how
  // many rounds (1: every broker had them at once). After the timeout, Error
  // "kafka_metadata_lag" naming each broker still behind and what it lacks (`topic is missing`,
  // `N of M partitions`, `partition P has no leader`, or its error).
  struct EveryBroker {
    std::chrono::milliseconds waited{0};
    int brokers = 0;
    int rounds = 0;
  };
  Result<EveryBroker> wait_until_every_broker_knows(const std::map<std::string, int>& partitions);

 private:
  KafkaAdmin(KafkaHandle rk, std::chrono::milliseconds timeout, KafkaConfig kafka)
      : rk_(std::move(rk)),
        timeout_(timeout),
        bootstrap_(kafka.bootstrap_servers),
        properties_(std::move(kafka.properties)) {}

  // The cluster's metadata from the first bootstrap broker that answers before `deadline`.
  Result<KafkaMetadata> cluster_metadata(std::chrono::steady_clock::time_point deadline);

  // name -> value of the topic's configs whose source is DYNAMIC_TOPIC_CONFIG (or, when
  // `all_of` is non-empty, of those names whatever their source).
  Result<std::map<std::string, std::map<std::string, std::string>>> describe_configs(
      const std::vector<std::string>& topics, const std::set<std::string>& all_of);

  // Polls metadata until `topic` has at least `partitions` partitions, or the timeout passes.
  Result<void> wait_for_partitions(const std::string& topic, int partitions,
                                   const std::string& what);

  KafkaHandle rk_;
  std::chrono::milliseconds timeout_;
  std::string bootstrap_;
  std::map<std::string, std::string> properties_;  // kafka.properties, for the per-broker clients
};

}  // namespace hookrelay
