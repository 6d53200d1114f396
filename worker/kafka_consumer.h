// KafkaConsumer: MessageConsumer on a librdkafka high-level consumer in group
// worker.group_id, subscribed to the fresh topics and every retry tier.
//
// enable.auto.offset.store=false: offsets are stored by the worker only; auto commit sends the
// stored ones every second, and commit() on revoke and shutdown.
//
// Thread-safety: see MessageConsumer.
#pragma once

#include <memory>

#include "shared/config.h"
#include "shared/kafka_handles.h"
#include "worker/message_consumer.h"

namespace hookrelay {

class KafkaConsumer final : public MessageConsumer {
 public:
  static Result<std::unique_ptr<KafkaConsumer>> create(const Config& config, const std::string& client_id);
  ~KafkaConsumer() override;
  KafkaConsumer(const KafkaConsumer&) = delete;
  KafkaConsumer& operator=(const KafkaConsumer&) = delete;

  void set_listener(ConsumerListener listener) override { listener_ = std::move(listener); }
  std::vector<ConsumedMessage> poll(int max_messages, int timeout_ms) override;
  void wake() override;
  void pause(const TopicPartition& tp, int64_t seek_offset) override;
  void hold(const std::vector<TopicPartition>& tps) override;
  void resume(const TopicPartition& tp) override;
  void store_offsets(const std::vector<CommitPosition>& positions) override;
  Result<void> commit() override;
  std::vector<TopicPartition> assignment() override;
  std::map<std::string, int64_t> lag_by_topic() override;
  void close() override;

 private:
  KafkaConsumer() = default;
  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                           void* opaque);
  void handle_error_message(const rd_kafka_message_t* m);

  KafkaHandle rk_;
  KafkaQueue queue_;  // the consumer queue poll() serves; wake() yields it
  ConsumerListener listener_;
  std::map<TopicPartition, int64_t> next_offset_;  // last returned + 1, per assigned partition
  bool closed_ = false;
};

}  // namespace hookrelay
