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

#include "shared/config.h"
#include "shared/message_producer.h"
#include "shared/result.h"

namespace hookrelay::cli {

struct DlqMessage {
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;  // broker/producer timestamp; 0 when absent
  std::string key;           // Kafka message key (the worker uses the delivery key)
  std::string value;         // the payload, byte for byte
  std::vector<MessageHeader> headers;

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

class KafkaDlqReader final : public DlqSource {
 public:
  // `timeout_ms` bounds metadata requests and any stretch without progress while reading.
  static Result<std::unique_ptr<KafkaDlqReader>> create(const KafkaConfig& config, int timeout_ms);
  ~KafkaDlqReader() override;

  Result<std::vector<DlqMessage>> read(const KeepFn& keep, const ProgressFn& progress) override;

 private:
  struct Impl;
  explicit KafkaDlqReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hookrelay::cli
