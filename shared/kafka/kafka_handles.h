// unique_ptr owners for librdkafka C handles, and conversion of librdkafka errors into Error with
// a retryable flag (decided by a switch in kafka_handles.cpp).
#pragma once

#include <librdkafka/rdkafka.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "shared/config/config.h"
#include "shared/result.h"

namespace hookrelay {

struct RdKafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
  void operator()(rd_kafka_headers_t* h) const { rd_kafka_headers_destroy(h); }
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
  // Admin API (shared/kafka/kafka_admin.cpp).
  void operator()(rd_kafka_AdminOptions_t* o) const { rd_kafka_AdminOptions_destroy(o); }
  void operator()(rd_kafka_NewTopic_t* t) const { rd_kafka_NewTopic_destroy(t); }
  void operator()(rd_kafka_NewPartitions_t* p) const { rd_kafka_NewPartitions_destroy(p); }
  void operator()(rd_kafka_ConfigResource_t* c) const { rd_kafka_ConfigResource_destroy(c); }
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
  void operator()(const rd_kafka_metadata_t* m) const { rd_kafka_metadata_destroy(m); }
  void operator()(rd_kafka_error_t* e) const { rd_kafka_error_destroy(e); }
  void operator()(rd_kafka_topic_t* t) const { rd_kafka_topic_destroy(t); }
};
using KafkaHandle = std::unique_ptr<rd_kafka_t, RdKafkaDeleter>;
using KafkaConf = std::unique_ptr<rd_kafka_conf_t, RdKafkaDeleter>;
using KafkaPartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, RdKafkaDeleter>;
using KafkaMessage = std::unique_ptr<rd_kafka_message_t, RdKafkaDeleter>;
using KafkaQueue = std::unique_ptr<rd_kafka_queue_t, RdKafkaDeleter>;
using KafkaHeaders = std::unique_ptr<rd_kafka_headers_t, RdKafkaDeleter>;
using KafkaMetadata = std::unique_ptr<const rd_kafka_metadata_t, RdKafkaDeleter>;
using KafkaErrorHandle = std::unique_ptr<rd_kafka_error_t, RdKafkaDeleter>;
using KafkaEvent = std::unique_ptr<rd_kafka_event_t, RdKafkaDeleter>;
using KafkaTopic = std::unique_ptr<rd_kafka_topic_t, RdKafkaDeleter>;

// Builds a conf from key/value pairs; the error names the property.
// Builds (never connects) a librdkafka configuration. An unknown property or bad value is an
// Error naming `field_of(key)` (default: "kafka.properties.<key>").
Result<KafkaConf> make_kafka_conf(
    const std::map<std::string, std::string>& props,
    const std::function<std::string(const std::string&)>& field_of = {});

// Builds the producer and consumer configurations a config's kafka section gives (properties
// merged with producer_properties / consumer_properties) to validate every property without
// connecting: what `hookrelay config check` runs.
Result<void> check_kafka_properties(const KafkaConfig& kafka);

// A librdkafka error as an Error: code is a stable short name used as a metric label
// ("queue_full", "delivery_timeout", "broker_down", "unknown_topic", "message_too_large",
// "not_authorized", "producer_fatal", "kafka_error"), retryable says whether sending the same
// message again may succeed (too large, not authorized, invalid: never).
Error kafka_error(rd_kafka_resp_err_t err);

}  // namespace hookrelay
