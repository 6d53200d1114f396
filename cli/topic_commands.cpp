// `hookrelay topics apply` and `hookrelay topics check`: the Kafka topics as the config describes
// them (shared/kafka/topic_plan.h), made so or compared, through the Admin API
// (shared/kafka/kafka_admin.h).
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <ostream>

#include "cli/commands.h"
#include "shared/json_writer.h"
#include "shared/kafka/kafka_admin.h"
#include "shared/kafka/topic_plan.h"

namespace hookrelay::cli {
namespace {

constexpr const char* kTopicsUsage =
    "usage: hookrelay topics apply|check [--config PATH] [--bootstrap HOSTS] [--dry-run] [--json]\n"
    "                                    [--timeout SECONDS] [--allow-retention-decrease]\n"
    "                                    [--allow-partition-increase]\n"
    "  The topics hookrelay uses (hookrelay.webhooks, hookrelay.calls, hookrelay.retry.<n> for\n"
    "  each retry.schedule_seconds entry, hookrelay.dlq, hookrelay.parked) as the config's\n"
    "  topics: section wants them: partitions, replication factor, min.insync.replicas,\n"
    "  retention.ms, max.message.bytes, cleanup.policy=delete,\n"
    "  unclean.leader.election.enable=false.\n"
    "  Without a config, the documented defaults.\n"
    "  apply   creates missing topics, raises partition counts, sets configs (other topic-level\n"
    "          overrides are kept); one line per action. Fewer partitions or another replication\n"
    "          factor are reported, never changed; nor is a min.insync.replicas at or above a\n"
    "          topic's replication factor ever set (acks=all writes would fail). --dry-run\n"
    "          prints what it would do.\n"
    "          Refused unless allowed (the rest is applied, exit 1):\n"
    "  --allow-retention-decrease   lower retention.ms (Kafka deletes older messages at once)\n"
    "  --allow-partition-increase   raise hookrelay.webhooks from 1 partition while routes are\n"
    "                               ordered (first attempts then no longer follow arrival order)\n"
    "  check   prints every difference, or 'ok: N topics as configured'; one that makes acks=all\n"
    "          writes fail starts with 'error:'. --json for a document.\n"
    "  --timeout SECONDS   per Kafka request (default 10)\n"
    "  exit: 0 as configured (apply: everything fixed), 1 differences left, a change refused or\n"
    "        Kafka error, 2 usage or config error\n";

std::string join_configs(const std::map<std::string, std::string>& configs) {
  std::string out;
  for (const auto& [k, v] : configs) out += (out.empty() ? "" : " ") + k + "=" + v;
  return out;
}

struct Target {
  Config config;
  std::vector<TopicSpec> desired;
  std::set<std::string> config_names;
  std::vector<std::string> ordered;  // ordered routes, "source/route"
};

Result<Target> resolve_target(const ParsedArgs& args, const CliIo& io) {
  auto loaded = load_cli_config(args, io);
  if (!loaded) return Unexpected{loaded.error()};
  auto kafka = resolve_kafka(args, io);
  if (!kafka) return Unexpected{kafka.error()};
  Target t;
  if (*loaded) t.config = std::move(**loaded);
  t.ordered = ordered_routes(t.config);
  t.config.kafka = std::move(*kafka);
  t.desired = desired_topics(t.config);
  for (const auto& spec : t.desired) {
    for (const auto& [k, v] : spec.configs) t.config_names.insert(k);
  }
  return t;
}

std::vector<std::string> names_of(const std::vector<TopicSpec>& specs) {
  std::vector<std::string> out;
  out.reserve(specs.size());
  for (const auto& s : specs) out.push_back(s.name);
  return out;
}

nlohmann::json drift_json(const TopicDrift& d) {
  return {{"topic", d.topic},        {"property", d.property}, {"wanted", d.wanted},
          {"found", d.found},        {"fixable", d.fixable},   {"message", d.message},
          {"error", d.blocks_writes}};
}

int topics_check(const Target& target, KafkaAdmin& admin, const ParsedArgs& args, CliIo& io) {
  auto observed = admin.describe(names_of(target.desired), target.config_names);
  if (!observed) return report_error(io, "topics check", observed.error());
  const auto drifts = diff_topics(target.desired, *observed);
  if (args.has("--json")) {
    nlohmann::json doc = {{"ok", drifts.empty()},
                          {"topics", target.desired.size()},
                          {"bootstrap", target.config.kafka.bootstrap_servers},
                          {"drifts", nlohmann::json::array()}};
    for (const auto& d : drifts) doc["drifts"].push_back(drift_json(d));
    io.out << json_text(doc, 2) << "\n";
  } else if (drifts.empty()) {
    io.out << "ok: " << target.desired.size() << " topics as configured\n";
  } else {
    int errors = 0;
    for (const auto& d : drifts) {
      io.out << (d.blocks_writes ? "error: " : "") << d.message << "\n";
      errors += d.blocks_writes ? 1 : 0;
    }
    io.out << drifts.size() << " difference(s) in " << target.desired.size() << " topics";
    if (errors > 0) io.out << ", " << errors << " of them making acks=all writes fail";
    io.out << "; `hookrelay topics apply` fixes those it can\n";
  }
  return drifts.empty() ? kExitOk : kExitFailed;
}

// One Admin API step of apply: its line for the dry run, and what it does.
struct Action {
  std::string plan;  // "create hookrelay.dlq: ..."
  std::string done;  // "created hookrelay.dlq: ..."
  std::function<Result<void>()> run;
};

// What apply does: its actions, and the changes it refuses (one sentence each, naming the flag).
struct Plan {
  std::vector<Action> actions;
  std::vector<std::string> refused;
  std::set<std::string> partitions_refused;  // topics whose partitions stay as they are
};

Plan plan_for(const Target& target, const std::vector<TopicDrift>& drifts,
              const ApplyAllowances& allowed, KafkaAdmin& admin) {
  Plan plan;
  auto& out = plan.actions;
  for (const auto& spec : target.desired) {
    std::map<std::string, std::string> configs;
    std::string changes;
    for (const auto& d : drifts) {
      if (d.topic != spec.name) continue;
      if (auto why = apply_refusal(d, target.ordered, allowed); !why.empty()) {
        plan.refused.push_back(std::move(why));
        if (d.kind == DriftKind::kFewerPartitions) plan.partitions_refused.insert(d.topic);
        continue;
      }
      switch (d.kind) {
        case DriftKind::kMissing: {
          std::string what = spec.name + ": " + std::to_string(spec.partitions) +
                             " partitions, replication factor " +
                             std::to_string(spec.replication_factor) + ", " +
                             join_configs(spec.configs);
          out.push_back({"create " + what, "created " + what,
                         [&admin, &spec] { return admin.create_topic(spec); }});
          break;
        }
        case DriftKind::kFewerPartitions: {
          std::string what = spec.name + " partitions from " + d.found + " to " + d.wanted;
          out.push_back({"raise " + what, "raised " + what, [&admin, &spec] {
                           return admin.raise_partitions(spec.name, spec.partitions);
                         }});
          break;
        }
        case DriftKind::kConfig:
          configs[d.property] = d.wanted;
          changes += (changes.empty() ? "" : ", ") + d.property + "=" + d.wanted + " (was " +
                     d.found + ")";
          break;
        case DriftKind::kMorePartitions:
        case DriftKind::kReplicationFactor:
        case DriftKind::kMinInsyncReplicas:
          break;  // reported by the caller
      }
    }
    if (!configs.empty()) {
      std::string what = spec.name + " " + changes;
      out.push_back({"set " + what, "set " + what, [&admin, name = spec.name, configs] {
                       return admin.set_configs(name, configs);
                     }});
    }
  }
  return plan;
}

// Topic -> the partitions every broker must show: as configured, or more where the topic has more,
// or as it is where raising them was refused.
std::map<std::string, int> partitions_wanted(const std::vector<TopicSpec>& desired,
                                             const std::map<std::string, ObservedTopic>& observed,
                                             const std::set<std::string>& refused = {}) {
  std::map<std::string, int> out;
  for (const auto& spec : desired) {
    auto it = observed.find(spec.name);
    if (it == observed.end()) {
      out[spec.name] = spec.partitions;
    } else if (refused.count(spec.name)) {
      out[spec.name] = it->second.partitions;
    } else {
      out[spec.name] = std::max(spec.partitions, it->second.partitions);
    }
  }
  return out;
}

std::string seconds_waited(std::chrono::milliseconds ms) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f s", static_cast<double>(ms.count()) / 1000.0);
  return text;
}

int topics_apply(const Target& target, KafkaAdmin& admin, const ParsedArgs& args, CliIo& io) {
  auto observed = admin.describe(names_of(target.desired), target.config_names);
  if (!observed) return report_error(io, "topics apply", observed.error());
  const auto drifts = diff_topics(target.desired, *observed);
  const bool dry_run = args.has("--dry-run");
  if (drifts.empty()) {
    // Cheap when every broker already has them (one metadata request each); waits otherwise, as
    // after a change (another apply may have just created them).
    if (!dry_run) {
      auto every =
          admin.wait_until_every_broker_knows(partitions_wanted(target.desired, *observed));
      if (!every) return report_error(io, "topics apply", every.error());
    }
    io.out << "ok: " << target.desired.size() << " topics as configured, nothing to do\n";
    return kExitOk;
  }
  const ApplyAllowances allowed{args.has(kAllowRetentionDecreaseFlag),
                                args.has(kAllowPartitionIncreaseFlag)};
  const Plan plan = plan_for(target, drifts, allowed, admin);
  const auto wanted = partitions_wanted(target.desired, *observed, plan.partitions_refused);
  int failed = 0;
  for (const auto& action : plan.actions) {
    if (dry_run) {
      io.out << "would " << action.plan << "\n";
      continue;
    }
    if (auto r = action.run(); !r) {
      io.out << "failed to " << action.plan << ": " << r.error().message << "\n";
      ++failed;
    } else {
      io.out << action.done << "\n";
    }
  }
  int left = 0;
  for (const auto& d : drifts) {
    if (d.fixable) continue;
    io.out << (d.blocks_writes ? "not applied: " : "left as is: ") << d.message << "\n";
    ++left;
  }
  for (const auto& why : plan.refused)
    io.out << (dry_run ? "would refuse: " : "refused: ") << why << "\n";
  if (dry_run) return kExitOk;
  if (failed > 0) {
    io.err << "hookrelay topics apply: " << failed << " action(s) failed\n";
    return kExitFailed;
  }
  // Return only once a client may use the topics whichever broker it asks.
  auto every = admin.wait_until_every_broker_knows(wanted);
  if (!every) return report_error(io, "topics apply", every.error());
  io.out << "every broker (" << every->brokers << ") lists the " << wanted.size()
         << " topics with a leader for each partition, after " << seconds_waited(every->waited)
         << " (" << every->rounds << (every->rounds == 1 ? " round" : " rounds")
         << " of metadata requests)\n";
  if (!plan.refused.empty()) {
    io.err << "hookrelay topics apply: " << plan.refused.size()
           << " change(s) refused; pass the flag named to make them\n";
  }
  return left > 0 || !plan.refused.empty() ? kExitFailed : kExitOk;
}

}  // namespace

int run_topics(const Args& args, CliIo& io) {
  ParsedArgs parsed;
  int rc = parse_or_help(args,
                         {kConfigOption,
                          kBootstrapOption,
                          kJsonOption,
                          {"--dry-run", false},
                          {"--timeout", true},
                          {kAllowRetentionDecreaseFlag, false},
                          {kAllowPartitionIncreaseFlag, false}},
                         kTopicsUsage, "topics", io, parsed);
  if (rc != kContinue) return rc;
  const auto& pos = parsed.positionals();
  if (pos.size() != 1 || (pos[0] != "apply" && pos[0] != "check")) {
    return usage_error(io, "topics", kTopicsUsage, "expected the subcommand 'apply' or 'check'");
  }
  const std::string command = "topics " + pos[0];
  if (pos[0] == "check" && parsed.has("--dry-run"))
    return usage_error(io, "topics", kTopicsUsage, "--dry-run applies to apply only");
  if (pos[0] == "apply" && parsed.has("--json"))
    return usage_error(io, "topics", kTopicsUsage, "--json applies to check only");
  for (const char* flag : {kAllowRetentionDecreaseFlag, kAllowPartitionIncreaseFlag}) {
    if (pos[0] == "check" && parsed.has(flag))
      return usage_error(io, "topics", kTopicsUsage, std::string(flag) + " applies to apply only");
  }
  auto seconds = parse_int_arg(parsed.value_or("--timeout", "10"), 1, 600, "--timeout");
  if (!seconds) return usage_error(io, "topics", kTopicsUsage, seconds.error().message);
  auto target = resolve_target(parsed, io);
  if (!target) return report_error(io, command, target.error());
  auto admin = KafkaAdmin::create(target->config.kafka, std::chrono::seconds(*seconds));
  if (!admin) return report_error(io, command, admin.error());
  return pos[0] == "check" ? topics_check(*target, **admin, parsed, io)
                           : topics_apply(*target, **admin, parsed, io);
}

}  // namespace hookrelay::cli
