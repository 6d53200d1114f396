// KafkaConsumer: MessageConsumer on a librdkafka high-level consumer in group
// worker.group_id, subscribed to the fresh topics and every retry tier: those of the schedule by
// name, and any other hookrelay.retry.<n> the cluster has by pattern (a tier dropped from the
// schedule is still drained).
//
// enable.auto.offset.store=false: offsets are stored by the worker only; auto commit sends the
// stored ones every second, and commit() on revoke and shutdown.
//
// Assignment is cooperative-sticky: a rebalance moves only the partitions that change owner,
// and the listener hears only about those. With worker.group_instance_id the consumer is a
// static member (KIP-345): a restart within session.timeout.ms (45 s by default then) gets the
// same partitions back without any rebalance, and close() does not leave the group (librdkafka
// sends no LeaveGroup for static members), so the partitions wait for the member's return or
// its session timeout.
//
// Thread-safety: see MessageConsumer.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "shared/config/config.h"
#include "shared/kafka/kafka_handles.h"
#include "worker/message_consumer.h"

namespace hookrelay {

class KafkaConsumer final : public MessageConsumer {
 public:
  // How long close() waits for librdkafka to finish closing before it gives up, and commit() for
  // the commit's answer (see kafka_consumer.cpp).
  static constexpr std::chrono::seconds kCloseLimit{10};
  static constexpr std::chrono::seconds kCommitLimit{5};

  static Result<std::unique_ptr<KafkaConsumer>> create(const Config& config,
                                                       const std::string& client_id);
  ~KafkaConsumer() override;
  KafkaConsumer(const KafkaConsumer&) = delete;
  KafkaConsumer& operator=(const KafkaConsumer&) = delete;

  void set_listener(ConsumerListener listener) override { listener_ = std::move(listener); }
  // Called once, from poll(), when librdkafka reports a fatal consumer error (e.g. this static
  // member was fenced by another with the same group.instance.id): the consumer is dead.
  void set_on_fatal(std::function<void(const std::string& reason)> f) { on_fatal_ = std::move(f); }
  std::vector<ConsumedMessage> poll(int max_messages, int timeout_ms) override;
  void wake() override;
  bool pause(const TopicPartition& tp, int64_t seek_offset) override;
  void hold(const std::vector<TopicPartition>& tps) override;
  void resume(const TopicPartition& tp) override;
  void store_offsets(const std::vector<CommitPosition>& positions) override;
  Result<void> commit() override;
  std::vector<TopicPartition> assignment() override;
  std::map<std::string, int64_t> lag_by_topic() override;
  void close() override;
  // Whether close() gave up on librdkafka (its threads still run): the process should then end
  // without running exit handlers and destructors beside them.
  bool abandoned() const { return abandoned_; }

 private:
  KafkaConsumer() = default;
  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t* parts, void* opaque);
  void handle_error_message(const rd_kafka_message_t* m);
  // librdkafka's log lines, served by poll() (log.queue): forwarded to the process's log, and an
  // offset reset noted for poll() to report (librdkafka raises no event for one with
  // auto.offset.reset=earliest: it only logs it).
  static void on_log(const rd_kafka_t* rk, int level, const char* facility, const char* text);
  // The result of each offset commit (the automatic ones every auto.commit.interval.ms too), on
  // the polling thread: a failure is logged and counted, which nothing else would show.
  static void on_commit(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t* offsets, void* opaque);
  void report_offset_resets();
  // A position no longer in the log: logged and told to the listener (the data-loss alarm).
  void offsets_vanished(const std::string& topic, std::string_view detail);
  // Sets next_offset_ of assigned partitions nothing was read from yet to their committed offset.
  void look_up_committed(const std::vector<TopicPartition>& assigned);

  KafkaHandle rk_;
  KafkaQueue queue_;  // the consumer queue poll() serves
  // The same queue, for wake() from other threads: set once at create, never cleared (close()
  // may release queue_ when it abandons librdkafka, and the queue then lives on with it).
  std::atomic<rd_kafka_queue_t*> wake_queue_{nullptr};
  ConsumerListener listener_;
  std::function<void(const std::string&)> on_fatal_;
  bool fatal_ = false;
  // Where each assigned partition is: last returned + 1, or (nothing returned yet) its committed
  // offset, looked up once per assignment by lag_by_topic().
  std::map<TopicPartition, int64_t> next_offset_;
  std::set<TopicPartition> committed_asked_;  // assigned partitions whose lookup was made
  bool closed_ = false;
  bool abandoned_ = false;
  bool cooperative_ = true;  // the rebalance protocol in force, as last reported by librdkafka
  std::mutex resets_mu_;
  std::vector<std::string> resets_;  // librdkafka's lines of offset resets not yet reported
};

}  // namespace hookrelay
