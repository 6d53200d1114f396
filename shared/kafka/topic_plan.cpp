#include "shared/kafka/topic_plan.h"

#include <algorithm>

#include "shared/kafka/wire_contract.h"

namespace hookrelay {
namespace {

std::map<std::string, std::string> topic_configs(const Config& config, int64_t retention_ms) {
  return {
      {"min.insync.replicas", std::to_string(config.topics.min_insync_replicas)},
      {"retention.ms", std::to_string(retention_ms)},
      {"max.message.bytes", std::to_string(topic_max_message_bytes(config))},
      // Expiry by time only: compaction would drop webhooks that share a key.
      {"cleanup.policy", "delete"},
      // An out-of-sync replica as leader loses acknowledged messages.
      {"unclean.leader.election.enable", "false"},
  };
}

TopicDrift drift(DriftKind kind, const std::string& topic, std::string property, std::string wanted,
                 std::string found) {
  TopicDrift d;
  d.kind = kind;
  d.topic = topic;
  d.property = std::move(property);
  d.wanted = std::move(wanted);
  d.found = std::move(found);
  switch (kind) {
    case DriftKind::kMissing:
      d.fixable = true;
      d.message = topic + ": topic is missing (wanted it to exist)";
      break;
    case DriftKind::kFewerPartitions:
      d.fixable = true;
      d.message = topic + ": partitions is " + d.found + ", wanted " + d.wanted;
      break;
    case DriftKind::kMorePartitions:
      d.fixable = false;
      d.message = topic + ": partitions is " + d.found + ", wanted " + d.wanted +
                  " (Kafka cannot remove partitions: raise topics.partitions or leave it)";
      break;
    case DriftKind::kReplicationFactor:
      d.fixable = false;
      d.message = topic + ": replication factor is " + d.found + ", wanted " + d.wanted +
                  " (not changed by apply: reassign the partitions with kafka-reassign-partitions)";
      break;
    case DriftKind::kConfig:
      d.fixable = true;
      d.message = topic + ": " + d.property + " is " + d.found + ", wanted " + d.wanted;
      break;
  }
  return d;
}

}  // namespace

int64_t retry_tier_retention_ms(const Config& config, int tier) {
  const int64_t delay_ms =
      static_cast<int64_t>(config.retry.schedule_seconds.at(static_cast<std::size_t>(tier))) * 1000;
  return std::max(config.topics.retention_ms, 10 * delay_ms);
}

std::vector<TopicSpec> desired_topics(const Config& config) {
  const TopicsConfig& t = config.topics;
  const int retry_partitions = t.retry_partitions > 0 ? t.retry_partitions : t.partitions;
  const int dlq_partitions = t.dlq_partitions > 0 ? t.dlq_partitions : t.partitions;
  std::vector<TopicSpec> out;
  for (auto name : {kWebhooksTopic, kCallsTopic}) {
    out.push_back({std::string(name), t.partitions, t.replication_factor,
                   topic_configs(config, t.retention_ms)});
  }
  const int tiers = static_cast<int>(config.retry.schedule_seconds.size());
  for (int tier = 0; tier < tiers; ++tier) {
    out.push_back({retry_topic(tier), retry_partitions, t.replication_factor,
                   topic_configs(config, retry_tier_retention_ms(config, tier))});
  }
  out.push_back({std::string(kDlqTopic), dlq_partitions, t.replication_factor,
                 topic_configs(config, t.dlq_retention_ms)});
  // Parked deliveries wait for an operator, as dead letters do: the same partitions and window.
  out.push_back({std::string(kParkedTopic), dlq_partitions, t.replication_factor,
                 topic_configs(config, t.dlq_retention_ms)});
  return out;
}

std::vector<TopicDrift> diff_topics(const std::vector<TopicSpec>& desired,
                                    const std::map<std::string, ObservedTopic>& observed) {
  std::vector<TopicDrift> out;
  for (const auto& spec : desired) {
    auto it = observed.find(spec.name);
    if (it == observed.end()) {
      out.push_back(drift(DriftKind::kMissing, spec.name, "topic", "present", "(missing)"));
      continue;
    }
    const ObservedTopic& seen = it->second;
    if (seen.partitions < spec.partitions) {
      out.push_back(drift(DriftKind::kFewerPartitions, spec.name, "partitions",
                          std::to_string(spec.partitions), std::to_string(seen.partitions)));
    } else if (seen.partitions > spec.partitions) {
      out.push_back(drift(DriftKind::kMorePartitions, spec.name, "partitions",
                          std::to_string(spec.partitions), std::to_string(seen.partitions)));
    }
    if (seen.replication_factor != spec.replication_factor) {
      out.push_back(drift(DriftKind::kReplicationFactor, spec.name, "replication factor",
                          std::to_string(spec.replication_factor),
                          std::to_string(seen.replication_factor)));
    }
    for (const auto& [key, wanted] : spec.configs) {
      auto found = seen.configs.find(key);
      if (found == seen.configs.end()) {
        out.push_back(drift(DriftKind::kConfig, spec.name, key, wanted, "(unset)"));
      } else if (found->second != wanted) {
        out.push_back(drift(DriftKind::kConfig, spec.name, key, wanted, found->second));
      }
    }
  }
  return out;
}

std::vector<std::string> required_topics(const Config& config, ServiceKind service) {
  std::vector<std::string> out = {std::string(kWebhooksTopic), std::string(kCallsTopic)};
  switch (service) {
    case ServiceKind::kIngest:
      break;
    case ServiceKind::kWorker:
      for (std::size_t tier = 0; tier < config.retry.schedule_seconds.size(); ++tier) {
        out.push_back(retry_topic(static_cast<int>(tier)));
      }
      out.emplace_back(kDlqTopic);
      out.emplace_back(kParkedTopic);
      break;
  }
  return out;
}

std::vector<std::string> missing_topics(const std::vector<std::string>& required,
                                        const std::set<std::string>& existing) {
  std::vector<std::string> out;
  for (const auto& name : required) {
    if (!existing.count(name)) out.push_back(name);
  }
  return out;
}

}  // namespace hookrelay
