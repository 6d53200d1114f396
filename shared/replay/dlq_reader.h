// DlqReader: reads the dead-letter topic hookrelay.dlq once, from the start of every partition to
// the high watermark found when the read begins, outside any consumer group (assign, no
// commits), so operators can read it while workers run and nothing they do moves an offset.
//
// The DlqSource interface lets replay be tested without Kafka; KafkaDlqReader is the real one.
//
// Thread-safety: one reader per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "shared/config/config.h"
#include "shared/kafka/message_producer.h"
#include "shared/kafka/wire_contract.h"
#include "shared/result.h"

namespace hookrelay {

struct DlqMessage {
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;  // broker/producer timestamp; 0 when absent
  std::string key;           // Kafka message key (the worker uses the delivery key)
  std::string value;         // the payload, byte for byte
  std::vector<MessageHeader> headers;
  // Read past the reader's memory budget (KafkaDlqReader::set_max_held_bytes): only where it is
  // (partition, offset, timestamp), its delivery key (in `key`) and its hr-dlq-reason, hr-source
  // and hr-event-id headers are kept; the rest is fetched when the message is used
  // (MessageFetcher::fetch).
  bool stub = false;

  // The last value of a header, or nullptr.
  const std::string* header(std::string_view name) const;
  // hr-delivery-key, else the message key; empty for messages no delivery stands for
  // (malformed input the worker could not expand).
  std::string delivery_key() const;
};

class DlqSource {
 public:
  using KeepFn = std::function<bool(const std::string& delivery_key)>;
  // Called now and then while reading: messages read so far, messages to read in all.
  using ProgressFn = std::function<void(int64_t read, int64_t total)>;

  virtual ~DlqSource() = default;
  // Every DLQ message whose delivery key `keep` accepts, in partition/offset order.
  virtual Result<std::vector<DlqMessage>> read(const KeepFn& keep, const ProgressFn& progress) = 0;
};

// One message at known coordinates (the first copy of an inbound event, as inbound_events
// records it): what a resend of a succeeded delivery sends again.
class MessageFetcher {
 public:
  virtual ~MessageFetcher() = default;
  // "not_found" when the offset is gone (retention) or past the end.
  virtual Result<DlqMessage> fetch(const std::string& topic, int32_t partition, int64_t offset) = 0;
};

// What a replay's read holds in memory at most (KafkaDlqReader::set_max_held_bytes): a DLQ of
// many large bodies is read as stubs past it, each fetched when replayed.
inline constexpr std::size_t kReplayMaxHeldBytes = std::size_t{128} << 20;

class KafkaDlqReader final : public DlqSource, public MessageFetcher {
 public:
  // `timeout_ms` bounds metadata requests and any stretch without progress while reading.
  // `client_id` names the program to the brokers. `topic`: what read() reads (hookrelay.parked
  // for the release of a resumed route's parked deliveries, which have the same form).
  static Result<std::unique_ptr<KafkaDlqReader>> create(
      const KafkaConfig& config, int timeout_ms, const std::string& client_id = "hookrelay-cli",
      std::string_view topic = kDlqTopic);
  ~KafkaDlqReader() override;

  Result<std::vector<DlqMessage>> read(const KeepFn& keep, const ProgressFn& progress) override;
  Result<DlqMessage> fetch(const std::string& topic, int32_t partition, int64_t offset) override;
  // What this reader's reads hold of message values and headers at most, together (a replay
  // keeps its first read while it reads again); the messages kept past that are stubs
  // (DlqMessage::stub), fetched one at a time when used. Unbounded by default.
  void set_max_held_bytes(std::size_t bytes);

 private:
  struct Impl;
  explicit KafkaDlqReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hookrelay
