// The Kafka topics a config asks for, and how a cluster differs from them: the pure part of
// `hookrelay topics apply|check` and of the services' start-up check (I/O is in kafka_admin.h).
//
// desired_topics() turns the `topics:` section and retry.schedule_seconds into one TopicSpec per
// topic (hookrelay.webhooks, hookrelay.calls, hookrelay.retry.<n>, hookrelay.dlq). diff_topics()
// compares them with what a cluster reports and returns every difference as a TopicDrift with a
// one-sentence message. Partitions can only be raised and replication factor is changed by a
// reassignment (an operator's job), so those drifts are marked not fixable: apply reports them.
// Nor is a min.insync.replicas at or above the topic's actual replication factor ever set: with
// acks=all (what ingest and the worker produce with) every write would fail NOT_ENOUGH_REPLICAS.
//
// Some fixable changes lose data or order, and apply makes them only when told to
// (apply_refusal): lowering retention.ms (Kafka deletes what is older than the new window at
// once: dead letters, a backlog) and raising hookrelay.webhooks from one partition while routes
// are ordered (one partition is what keeps arrival order for first attempts, docs/routes.md).
//
// Thread-safety: pure functions and plain values.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "shared/config/config.h"

namespace hookrelay {

struct TopicSpec {
  std::string name;
  int partitions = 0;
  int replication_factor = 0;
  // min.insync.replicas, retention.ms, max.message.bytes, cleanup.policy,
  // unclean.leader.election.enable.
  std::map<std::string, std::string> configs;
};

// What a cluster says about one topic. `configs` holds the values of the properties asked for
// (absent: the broker did not report it).
struct ObservedTopic {
  int partitions = 0;
  int replication_factor = 0;  // the fewest replicas of any partition
  std::map<std::string, std::string> configs;
};

enum class DriftKind {
  kMissing,            // fixable: create the topic
  kFewerPartitions,    // fixable: raise the count
  kMorePartitions,     // report only: Kafka cannot remove partitions
  kReplicationFactor,  // report only: a partition reassignment is an operator's job
  kConfig,             // fixable: alter the topic's config
  // report only: min.insync.replicas at or above the topic's replication factor (but for 1 and
  // 1), wanted or found; acks=all writes fail NOT_ENOUGH_REPLICAS with it.
  kMinInsyncReplicas,
};

struct TopicDrift {
  DriftKind kind = DriftKind::kMissing;
  std::string topic;
  std::string property;  // "topic", "partitions", "replication factor" or a config name
  std::string wanted;
  std::string found;     // "(missing)" / "(unset)" when absent
  bool fixable = false;  // `topics apply` can fix it
  // acks=all writes to the topic fail (NOT_ENOUGH_REPLICAS) as it is, or would if apply made the
  // change: `topics check` reports it as an error.
  bool blocks_writes = false;
  std::string message;  // one sentence naming topic, property, wanted and found
};

// Every topic the services use, in a stable order: webhooks, calls, retry tiers, dlq.
std::vector<TopicSpec> desired_topics(const Config& config);

// The differences, in the order of `desired`; topics not in `desired` are ignored.
std::vector<TopicDrift> diff_topics(const std::vector<TopicSpec>& desired,
                                    const std::map<std::string, ObservedTopic>& observed);

// Whether min.insync.replicas `min_isr` on a topic with `replication_factor` replicas makes
// acks=all writes fail: always when above it, as soon as one replica falls behind when equal to
// it; 1 and 1 (one broker, development) is allowed, as the config allows it.
bool min_isr_blocks_writes(int min_isr, int replication_factor);

// The changes `topics apply` makes only when its flag allows them.
inline constexpr const char* kAllowRetentionDecreaseFlag = "--allow-retention-decrease";
inline constexpr const char* kAllowPartitionIncreaseFlag = "--allow-partition-increase";
struct ApplyAllowances {
  bool retention_decrease = false;  // lower retention.ms
  bool partition_increase = false;  // raise hookrelay.webhooks from 1 partition, routes ordered
};

// The routes with `ordered: true`, as "source/route", in config order.
std::vector<std::string> ordered_routes(const Config& config);

// Why apply must not make `drift` under `allowed`: one sentence saying what would change, what
// it would do and the flag that allows it. Empty when apply may go ahead. `ordered` is
// ordered_routes() of the config.
std::string apply_refusal(const TopicDrift& drift, const std::vector<std::string>& ordered,
                          const ApplyAllowances& allowed);

// Retention of retry tier `tier`: max(topics.retention_ms, 10 x the tier's delay), so a message
// waiting for its due time is never deleted first.
int64_t retry_tier_retention_ms(const Config& config, int tier);

// The topics a service needs to exist before it starts. Ingest produces to webhooks and calls;
// the worker consumes those and the tiers and produces to the tiers and the DLQ.
enum class ServiceKind { kIngest, kWorker };
std::vector<std::string> required_topics(const Config& config, ServiceKind service);

// The names of `required` that `existing` lacks, in the order of `required`.
std::vector<std::string> missing_topics(const std::vector<std::string>& required,
                                        const std::set<std::string>& existing);

}  // namespace hookrelay
