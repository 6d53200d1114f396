// KafkaProducer: MessageProducer on librdkafka with the idempotent producer (acks=all, exactly
// one copy per message per partition, ordered), a poll thread that runs delivery reports, and a
// health probe thread that asks the cluster for metadata once a second for readiness.
//
// message.timeout.ms = KafkaConfig::produce_timeout_ms bounds how long a message may wait for the
// broker: after it, on_done gets "delivery_timeout" and the message is not stored.
//
// Thread-safety: produce(), reachable(), outstanding() from any thread. flush() and the
// destructor from the owning thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "shared/config/config.h"
#include "shared/kafka/kafka_handles.h"
#include "shared/kafka/message_producer.h"
#include "shared/net/unique_fd.h"

namespace hookrelay {

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
  // true: the first messages of each short window of time go to one partition, whatever their
  // keys (the key stays on the message), and the rest of the window's by key. librdkafka sends
  // one produce request per partition, so keys hashed over N partitions split each linger's few
  // messages into up to N requests; the window keeps a steady stream's in one. Past a run of
  // kStickyRun (8) messages a window spreads by key again: a busy producer whose callers wait on
  // each message answered them later with every message on one partition (bench/ingest). The
  // window is `sticky.partitioning.linger.ms` (librdkafka's name for the same window of keyless
  // messages) when kafka.producer_properties sets it, else twice linger.ms (librdkafka's rule),
  // at least 1 ms; 0 there, or a `partitioner` set there, partitions every message by key.
  // false: librdkafka's default partitioner (by key).
  bool sticky_partitions = false;
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
  bool fatal() const { return fatal_.load(); }

  // Waits up to timeout_ms for every outstanding message to be reported. Returns how many remain.
  int flush(int timeout_ms);

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
  static constexpr int kRunBits = 20;
  static constexpr uint64_t kStickyRun = 8;
  int sticky_window_ms_ = 0;             // 0: by key
  uint64_t sticky_salt_ = 0;             // this producer's own sequence of window partitions
  std::atomic<uint64_t> sticky_run_{0};  // see sticky_partition
  std::atomic<bool> running_{true};
  std::atomic<bool> reachable_{false};
  std::atomic<bool> fatal_{false};
  std::atomic<int> outstanding_{0};
  std::thread poller_;
  std::thread prober_;
  UniqueFd event_read_fd_;
  UniqueFd event_write_fd_;
};

}  // namespace hookrelay
