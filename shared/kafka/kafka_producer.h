// KafkaProducer: MessageProducer on librdkafka with the idempotent producer (acks=all, exactly
// one copy per message per partition, ordered), a poll thread that runs delivery reports, and a
// health probe thread that asks the cluster for metadata once a second for readiness.
//
// message.timeout.ms = KafkaConfig::produce_timeout_ms bounds how long a message may wait for the
// broker: after it, on_done gets "delivery_timeout" when the message is not stored, or
// "delivery_outcome_unknown" when it was sent and not acknowledged (it may be stored).
//
// Thread-safety: produce(), reachable(), outstanding() from any thread. flush() and the
// destructor from the owning thread.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "shared/config/config.h"
#include "shared/kafka/kafka_handles.h"
#include "shared/kafka/message_producer.h"
#include "shared/kafka/partition_spread.h"
#include "shared/net/unique_fd.h"

namespace hookrelay {

// A failed delivery report as an Error: kafka_error(err), unless librdkafka says the message may
// have been stored (`status` not RD_KAFKA_MSG_STATUS_NOT_PERSISTED: a timeout, or a purge at close,
// after the produce request was sent), which is kDeliveryOutcomeUnknownCode, retryable. A broker's
// refusal for good stays kafka_error(err), permanent, whatever an earlier send of it did.
Error delivery_error(rd_kafka_resp_err_t err, rd_kafka_msg_status_t status);

struct KafkaProducerStats {
  std::function<void(std::string_view code)> on_error;  // client-level errors, by label
  // When true, no report thread is started: the owner watches event_fd() in its own event loop
  // and calls serve_reports() when it is readable (one thread hop fewer per acknowledgement).
  bool external_poll = false;
  // linger.ms unless kafka.producer_properties sets it. 5 ms (librdkafka's own default) suits a
  // producer whose caller does not wait on each message (at 1 ms a steady stream went to the
  // brokers a message or two per produce request); ingest holds an HTTP answer open until its
  // message is acknowledged, so it asks for less (see ingest_app.cpp).
  int default_linger_ms = 5;
  // true: messages go to partitions in runs as long as the linger and at most a batch (32 messages
  // unless batch.num.messages says otherwise), each on the partition with the fewest
  // unacknowledged (PartitionSpread, whose header says why), whatever their keys (the key
  // stays on the message); `sticky.partitioning.linger.ms` in kafka.producer_properties sets
  // another run length, 0 there or a `partitioner` partitions every message by key instead. false:
  // librdkafka's default partitioner (by key).
  bool sticky_partitions = false;
  // Once, from a librdkafka thread, when the producer hits a fatal error (the idempotent
  // producer's guarantees broken: it refuses every message from then on). Must not block.
  std::function<void(const std::string& reason)> on_fatal = nullptr;
};

class KafkaProducer final : public MessageProducer {
 public:
  // Error names the bad property or the failure to create the client.
  static Result<std::unique_ptr<KafkaProducer>> create(const KafkaConfig& config,
                                                       std::string client_id,
                                                       KafkaProducerStats stats = {});
  ~KafkaProducer() override;
  KafkaProducer(const KafkaProducer&) = delete;
  KafkaProducer& operator=(const KafkaProducer&) = delete;

  void produce(const OutgoingMessage& message, DoneCallback on_done) override;
  bool reachable() const override { return reachable_.load(std::memory_order_relaxed); }
  int outstanding() const override { return outstanding_.load(std::memory_order_relaxed); }
  // With partition runs on, each topic's partitions as its PartitionSpread counts them.
  std::vector<PartitionOutstanding> outstanding_by_partition() const override;
  bool fatal() const override { return fatal_.load(); }

  // Waits up to timeout_ms for every outstanding message to be reported. Returns how many remain.
  int flush(int timeout_ms);

  // Fails what is still outstanding (purged, queued or in flight) without stopping the producer:
  // each report comes as the others do (with external polling, through event_fd()), "failed"
  // for one never sent and "delivery_outcome_unknown" for one sent and not acknowledged. Lets a
  // stopping process answer its requests while it can still write the answers.
  void purge_outstanding();

  // Stops the threads and fails what is still outstanding (purged): every message not yet
  // reported gets its callback, failed, before this returns ("delivery_outcome_unknown" for one
  // sent and not acknowledged). Call it while what the callbacks touch still exists; the
  // destructor calls it too. Idempotent; produce() must not follow.
  void close();

  // external_poll only: readable when delivery reports are waiting; serve_reports() runs them
  // on the calling thread.
  int event_fd() const { return event_read_fd_.get(); }
  void serve_reports();

 private:
  KafkaProducer() = default;
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque);
  static void on_error(rd_kafka_t*, int err, const char* reason, void* opaque);
  static int32_t sticky_partition(const rd_kafka_topic_t* rkt, const void* key, size_t key_size,
                                  int32_t partitions, void* opaque, void* message_opaque);
  void probe_loop();

  KafkaHandle rk_;
  KafkaProducerStats stats_;
  // A message's delivery-report opaque: its caller's callback, and the partition its topic's
  // spread counted it on (none when the partitioner is librdkafka's).
  struct Pending {
    DoneCallback done;
    PartitionSpread* spread = nullptr;
    int32_t partition = -1;
  };
  PartitionSpread& spread_for(const rd_kafka_topic_t* rkt);
  int64_t spread_run_us_ = 0;  // a run's length: the linger, or sticky.partitioning.linger.ms
  int spread_max_run_ = 0;     // and its most messages: batch.num.messages
  uint64_t spread_seed_ = 0;   // this producer's first partition: several do not start in step
  mutable std::mutex spreads_mu_;
  std::vector<std::pair<std::string, std::unique_ptr<PartitionSpread>>> spreads_;  // by topic
  std::atomic<bool> running_{true};
  bool closed_ = false;  // close() ran
  std::atomic<bool> reachable_{false};
  std::atomic<bool> fatal_{false};
  std::atomic<int> outstanding_{0};
  std::thread poller_;
  std::thread prober_;
  UniqueFd event_read_fd_;
  UniqueFd event_write_fd_;
};

}  // namespace hookrelay
