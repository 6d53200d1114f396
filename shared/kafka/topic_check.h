// The start-up check both services run: do the Kafka topics they use exist?
//
// One metadata request, bounded by a timeout. Kafka answered and a topic is missing: the service
// must not start (it would fail every produce, or consume nothing), so it exits 2 with a message
// naming the topics and `hookrelay topics apply`. Kafka did not answer in time: a warning, and the
// service goes on (ingest answers 503 until Kafka is reachable; the worker waits for it).
//
// Thread-safety: plain functions; call from the main thread at start.
#pragma once

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "shared/config/config.h"
#include "shared/kafka/topic_plan.h"
#include "shared/result.h"

namespace hookrelay {

struct TopicCheckVerdict {
  bool go_on = true;
  bool warned = false;  // Kafka did not answer: `message` is the warning
  std::string message;  // why the service stops, or the warning; empty when all is well
};

// The decision, without I/O: `listed` is the metadata's topic names or the error getting them.
TopicCheckVerdict judge_topics_at_start(const std::string& service,
                                        const std::vector<std::string>& required,
                                        const Result<std::set<std::string>>& listed,
                                        const std::string& bootstrap);

// Asks Kafka, logs the warning (msg=topic_check_skipped) or prints why the service stops to stderr.
// Returns false when the service must exit with status 2.
bool check_topics_at_start(const std::string& service, const Config& config, ServiceKind kind,
                           std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace hookrelay
