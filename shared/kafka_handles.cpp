#include "shared/kafka_handles.h"

#include "shared/message_producer.h"

namespace hookrelay {

Result<KafkaConf> make_kafka_conf(const std::map<std::string, std::string>& props,
                                  const std::function<std::string(const std::string&)>& field_of) {
  KafkaConf conf(rd_kafka_conf_new());
  char err[512];
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      return fail("config", (field_of ? field_of(k) : "kafka.properties." + k) + ": " + err);
    }
  }
  return conf;
}

Result<void> check_kafka_properties(const KafkaConfig& kafka) {
  for (bool producer : {true, false}) {
    auto conf = make_kafka_conf(producer ? kafka.producer_map() : kafka.consumer_map(),
                                [&kafka, producer](const std::string& key) { return kafka.field_of(key, producer); });
    if (!conf) return Unexpected{conf.error()};
  }
  return {};
}

Error kafka_error(rd_kafka_resp_err_t err) {
  std::string message = rd_kafka_err2str(err);
  // The common cases get their own labels; every other code is "kafka_error" and its
  // retryability comes from librdkafka's own classification below.
  switch (err) {
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
      return {"queue_full", "local produce queue is full: " + message, true};
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
      return {"delivery_timeout", "broker did not acknowledge in time: " + message, true};
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__RESOLVE:
      return {"broker_down", "Kafka brokers unreachable: " + message, true};
    case RD_KAFKA_RESP_ERR__FATAL:
      return {"producer_fatal", "Kafka producer hit a fatal error: " + message, false};
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
      return {std::string(kMessageTooLargeCode), "message is larger than Kafka accepts: " + message, false};
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
      return {"unknown_topic", "topic does not exist: " + message, true};
    default:
      break;
  }
  return {"kafka_error", message, true};
}

}  // namespace hookrelay
