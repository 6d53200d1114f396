// MessageProducer: the I/O boundary for publishing to Kafka. The real adapter is KafkaProducer;
// unit tests use a fake.
//
// Contract: `on_done` is called exactly once per produce(), with success only after the broker
// acknowledged the message (acks=all). It may run on the caller's thread (immediate refusal such
// as a full queue) or on the producer's own thread (delivery report). It must not block.
//
// Thread-safety: produce() may be called from any thread concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/result.h"

namespace hookrelay {

// Error code of a message Kafka will never take (larger than message.max.bytes): permanent.
inline constexpr std::string_view kMessageTooLargeCode = "message_too_large";
// Error code of a message that was sent and not acknowledged (a timeout, or purged at close while
// in flight): Kafka may have stored it, or not. Retryable; a retry may store it a second time.
inline constexpr std::string_view kDeliveryOutcomeUnknownCode = "delivery_outcome_unknown";

// Appended to the message of a broker's refusal for good (a permanent code: message too large,
// not authorized) when an earlier send of the message went unanswered: that send may have stored
// it, so whoever answers for the message must not say it was not accepted.
inline constexpr std::string_view kMayHaveStoredNote =
    "(an earlier send of it, unanswered, may have stored it)";

struct MessageHeader {
  std::string name;
  std::string value;
};

struct ProducedAt {
  int32_t partition = -1;
  int64_t offset = -1;
};

// One partition's messages handed over and not yet reported, as the producer's own partitioner
// counts them (KafkaProducer with partition runs on: ingest).
struct PartitionOutstanding {
  std::string topic;
  int32_t partition = -1;
  int messages = 0;
};

struct OutgoingMessage {
  std::string_view topic;
  std::string_view key;    // empty = no key
  std::string_view value;  // copied by produce()
  const std::vector<MessageHeader>* headers = nullptr;
};

class MessageProducer {
 public:
  using DoneCallback = std::function<void(Result<ProducedAt>)>;
  virtual ~MessageProducer() = default;
  virtual void produce(const OutgoingMessage& message, DoneCallback on_done) = 0;
  // Whether the brokers answered recently (readiness).
  virtual bool reachable() const = 0;
  // A fatal error: this producer will never produce again; the process must be restarted.
  virtual bool fatal() const { return false; }
  // Messages handed over and not yet reported.
  virtual int outstanding() const = 0;
  // The same by partition, for every partition the producer placed a message on; empty when
  // librdkafka places them (by key) and the producer does not count them.
  virtual std::vector<PartitionOutstanding> outstanding_by_partition() const { return {}; }
};

}  // namespace hookrelay
