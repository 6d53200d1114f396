#include "shared/kafka/topic_check.h"

#include <cstdio>

#include "shared/kafka/kafka_admin.h"
#include "shared/log.h"

namespace hookrelay {

TopicCheckVerdict judge_topics_at_start(const std::string& service,
                                        const std::vector<std::string>& required,
                                        const Result<std::set<std::string>>& listed,
                                        const std::string& bootstrap) {
  if (!listed) {
    return {
        true, true,
        "could not check that the Kafka topics exist, going on without: " + listed.error().message};
  }
  auto missing = missing_topics(required, *listed);
  if (missing.empty()) return {};
  std::string names;
  for (const auto& name : missing) names += (names.empty() ? "" : ", ") + name;
  return {false, false,
          service + ": Kafka topic" + (missing.size() > 1 ? "s " : " ") + names +
              (missing.size() > 1 ? " do" : " does") + " not exist at " + bootstrap +
              "; `hookrelay topics apply --config FILE` creates " +
              (missing.size() > 1 ? "them" : "it") + " as configured"};
}

bool check_topics_at_start(const std::string& service, const Config& config, ServiceKind kind,
                           std::chrono::milliseconds timeout) {
  const auto required = required_topics(config, kind);
  Result<std::set<std::string>> listed = fail("kafka", "no admin client");
  if (auto admin = KafkaAdmin::create(config.kafka, timeout); !admin) {
    listed = Unexpected{admin.error()};
  } else {
    listed = (*admin)->topic_names();
  }
  auto verdict = judge_topics_at_start(service, required, listed, config.kafka.bootstrap_servers);
  if (verdict.warned) {
    spdlog::warn("msg=topic_check_skipped kafka={} error={}",
                 log_quote(config.kafka.bootstrap_servers), log_quote(listed.error().message));
  } else if (!verdict.go_on) {
    spdlog::critical("msg=topics_missing kafka={}", log_quote(config.kafka.bootstrap_servers));
    std::fprintf(stderr, "%s\n", verdict.message.c_str());
  }
  return verdict.go_on;
}

}  // namespace hookrelay
