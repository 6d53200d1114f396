// kafka_error(): a librdkafka code decided by what it is.
#include <gtest/gtest.h>

#include "shared/kafka/kafka_handles.h"
#include "shared/kafka/kafka_producer.h"
#include "shared/kafka/message_producer.h"

namespace hookrelay {
namespace {

TEST(KafkaError, TransientCodesAreRetryable) {
  for (auto err : {RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
                   RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__TRANSPORT,
                   RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                   RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART}) {
    EXPECT_TRUE(kafka_error(err).retryable) << rd_kafka_err2name(err);
  }
}

// These used to fall through to a retryable "kafka_error": the worker produced them again
// every second forever, holding the partition's watermark.
TEST(KafkaError, CodesThatCanNeverSucceedAreNotRetryable) {
  EXPECT_EQ(kafka_error(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE).code, kMessageTooLargeCode);
  EXPECT_EQ(kafka_error(RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE).code, kMessageTooLargeCode);
  EXPECT_EQ(kafka_error(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED).code, "not_authorized");
  for (auto err :
       {RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_INVALID_RECORD,
        RD_KAFKA_RESP_ERR_POLICY_VIOLATION, RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION,
        RD_KAFKA_RESP_ERR__INVALID_ARG, RD_KAFKA_RESP_ERR__FATAL}) {
    EXPECT_FALSE(kafka_error(err).retryable) << rd_kafka_err2name(err);
  }
}

TEST(KafkaError, EveryCodeLibrdkafkaDescribesHasALabelAndAMessage) {
  const rd_kafka_err_desc* descs = nullptr;
  size_t n = 0;
  rd_kafka_get_err_descs(&descs, &n);
  int seen = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!descs[i].name) continue;
    auto e = kafka_error(descs[i].code);
    EXPECT_FALSE(e.code.empty()) << descs[i].name;
    EXPECT_FALSE(e.message.empty()) << descs[i].name;
    ++seen;
  }
  EXPECT_GT(seen, 100);
  // A value that names no code (a newer broker's) is not assumed to pass. 150 is above every
  // code librdkafka has but inside the enum's range of values, so the cast is well defined.
  EXPECT_FALSE(kafka_error(static_cast<rd_kafka_resp_err_t>(150)).retryable);
}

// A failed delivery report: a message that was sent and not acknowledged (timed out, or purged
// at close while in flight) may have been stored, whatever the error says; one never sent was not.
TEST(DeliveryError, AMessageThatMayHaveBeenStoredIsOutcomeUnknownNotAFailure) {
  for (auto err : {RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR__TIMED_OUT,
                   RD_KAFKA_RESP_ERR__PURGE_INFLIGHT, RD_KAFKA_RESP_ERR__TRANSPORT}) {
    for (auto status : {RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED, RD_KAFKA_MSG_STATUS_PERSISTED}) {
      const Error e = delivery_error(err, status);
      EXPECT_EQ(e.code, kDeliveryOutcomeUnknownCode) << rd_kafka_err2name(err) << " " << status;
      EXPECT_TRUE(e.retryable) << rd_kafka_err2name(err);
      EXPECT_NE(e.message.find(rd_kafka_err2str(err)), std::string::npos) << e.message;
    }
  }
  // Never sent: what kafka_error says.
  EXPECT_EQ(
      delivery_error(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_MSG_STATUS_NOT_PERSISTED).code,
      "delivery_timeout");
  EXPECT_EQ(delivery_error(RD_KAFKA_RESP_ERR__PURGE_QUEUE, RD_KAFKA_MSG_STATUS_NOT_PERSISTED).code,
            "kafka_error");
  EXPECT_EQ(
      delivery_error(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_MSG_STATUS_NOT_PERSISTED).code,
      kMessageTooLargeCode);
  for (const rd_kafka_resp_err_t err :
       {RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED}) {
    const Error expected = kafka_error(err);
    const Error e = delivery_error(err, RD_KAFKA_MSG_STATUS_NOT_PERSISTED);
    EXPECT_EQ(e.code, expected.code);
    EXPECT_EQ(e.retryable, expected.retryable);
  }
  // A broker's refusal for good of a message an earlier, unanswered send may have stored stays a
  // refusal for good: retried as "may have been stored", a worker's dead letter refused so would
  // go round again instead of stopping it.
  for (const rd_kafka_resp_err_t err :
       {RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED}) {
    const Error e = delivery_error(err, RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED);
    EXPECT_EQ(e.code, kafka_error(err).code) << rd_kafka_err2name(err);
    EXPECT_FALSE(e.retryable) << rd_kafka_err2name(err);
    EXPECT_NE(e.message.find("may have stored it"), std::string::npos) << e.message;
  }
}

}  // namespace
}  // namespace hookrelay
