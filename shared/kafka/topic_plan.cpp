#include "shared/kafka/topic_plan.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <optional>

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
    case DriftKind::kMinInsyncReplicas:
      d.fixable = false;
      d.blocks_writes = true;
      break;  // the message is the caller's: it depends on which value is at fault
  }
  return d;
}

std::optional<int64_t> number(const std::string& text) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

// What min.insync.replicas `min_isr` does on `replicas` replicas, as a clause.
std::string min_isr_effect(int64_t min_isr, int replicas) {
  return min_isr > replicas ? "every acks=all write fails (NOT_ENOUGH_REPLICAS)"
                            : "acks=all writes fail (NOT_ENOUGH_REPLICAS) as soon as one replica "
                              "falls behind";
}

// The min.insync.replicas drift of an existing topic, judged against its actual replication
// factor: nullopt when there is none. A wanted value that would block writes is never applied
// (kMinInsyncReplicas); a found value that blocks them is an error, fixed by apply when the wanted
// value does not block them (kConfig, blocks_writes).
std::optional<TopicDrift> min_isr_drift(const TopicSpec& spec, const ObservedTopic& seen) {
  constexpr const char* kKey = "min.insync.replicas";
  const int replicas = seen.replication_factor;
  auto wanted_it = spec.configs.find(kKey);
  if (wanted_it == spec.configs.end()) return std::nullopt;
  const std::string& wanted = wanted_it->second;
  auto found_it = seen.configs.find(kKey);
  const std::string found = found_it == seen.configs.end() ? "(unset)" : found_it->second;
  const auto blocks = [replicas](const std::optional<int64_t>& v) {
    return replicas > 0 && v && *v < (int64_t{1} << 30) &&
           min_isr_blocks_writes(static_cast<int>(*v), replicas);
  };
  const auto wanted_value = number(wanted);
  const auto found_value = number(found);
  const bool wanted_blocks = blocks(wanted_value);
  const bool found_blocks = blocks(found_value);
  const std::string rf = std::to_string(replicas);
  if (wanted != found && !wanted_blocks) {
    TopicDrift d = drift(DriftKind::kConfig, spec.name, kKey, wanted, found);
    if (found_blocks) {
      d.blocks_writes = true;
      d.message +=
          " (with replication factor " + rf + ", " + min_isr_effect(*found_value, replicas) + ")";
    }
    return d;
  }
  if (!wanted_blocks && !found_blocks) return std::nullopt;
  TopicDrift d = drift(DriftKind::kMinInsyncReplicas, spec.name, kKey, wanted, found);
  if (wanted != found) {
    d.message = spec.name + ": min.insync.replicas not set to " + wanted + " (it is " + found +
                "): the topic's replication factor is " + rf + ", and with " + wanted + " " +
                min_isr_effect(*wanted_value, replicas) +
                "; raise the replication factor first (kafka-reassign-partitions) or lower "
                "topics.min_insync_replicas";
    if (found_blocks) d.message += "; as it is, " + min_isr_effect(*found_value, replicas);
  } else {
    d.message = spec.name + ": min.insync.replicas is " + found + " with replication factor " + rf +
                ": " + min_isr_effect(*found_value, replicas) +
                "; raise the replication factor (kafka-reassign-partitions) or lower "
                "topics.min_insync_replicas";
  }
  return d;
}

}  // namespace

bool min_isr_blocks_writes(int min_isr, int replication_factor) {
  return min_isr >= replication_factor && !(min_isr == 1 && replication_factor == 1);
}

std::vector<std::string> ordered_routes(const Config& config) {
  std::vector<std::string> out;
  for (const auto& [source, routes] : config.routes) {
    for (const auto& r : routes) {
      if (r.ordered) out.push_back(source + "/" + r.name);
    }
  }
  return out;
}

std::string apply_refusal(const TopicDrift& drift, const std::vector<std::string>& ordered,
                          const ApplyAllowances& allowed) {
  if (drift.kind == DriftKind::kConfig && drift.property == "retention.ms" &&
      !allowed.retention_decrease) {
    // -1 keeps messages for ever: lowering it to any window is a decrease.
    auto window = [](std::optional<int64_t> ms) -> std::optional<int64_t> {
      if (ms && *ms < 0) return std::numeric_limits<int64_t>::max();
      return ms;
    };
    const auto wanted = window(number(drift.wanted));
    const auto found = window(number(drift.found));
    if (wanted && found && *wanted < *found) {
      return drift.topic + " retention.ms not lowered from " + drift.found + " to " + drift.wanted +
             ": Kafka would delete every message older than " + drift.wanted +
             " ms at once (dead letters, parked deliveries, a backlog not yet consumed); pass " +
             kAllowRetentionDecreaseFlag + " to lower it";
    }
  }
  if (drift.kind == DriftKind::kFewerPartitions && drift.topic == kWebhooksTopic &&
      drift.found == "1" && !ordered.empty() && !allowed.partition_increase) {
    std::string routes;
    for (const auto& r : ordered) routes += (routes.empty() ? "" : ", ") + r;
    return drift.topic + " partitions not raised from 1 to " + drift.wanted +
           ": routes are ordered (" + routes +
           "), and one partition is what keeps webhooks in arrival order for their first "
           "attempts (docs/routes.md); pass " +
           kAllowPartitionIncreaseFlag + " to raise it";
  }
  return "";
}

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
      if (key == "min.insync.replicas") {
        if (auto d = min_isr_drift(spec, seen)) out.push_back(std::move(*d));
        continue;
      }
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
