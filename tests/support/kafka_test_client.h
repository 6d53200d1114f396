// Kafka clients for integration tests, against the devbroker (or any cluster on 127.0.0.1):
//   TestProducer      idempotent, acks=all; produce and wait for the delivery report
//   consume_all       read a topic from the beginning, outside any consumer group's offsets
//   TestGroupConsumer a subscribe()-based group member, to test rebalancing and commits
//   topic_partitions  topic -> partition count, from metadata
//   group_progress    a group's committed offsets next to the high watermarks
//
// Header values and payloads are raw bytes in std::string (NULs survive). Header order is kept.
//
// Thread-safety: each object belongs to one thread; the free functions are thread-safe.
#pragma once

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/result.h"

namespace hookrelay::test {

using Headers = std::vector<std::pair<std::string, std::string>>;
using KafkaProperties = std::map<std::string, std::string>;

struct TestRecord {
  std::string topic;
  std::string value;
  Headers headers;
  std::optional<std::string> key;                  // nullopt: no key
  std::int32_t partition = RD_KAFKA_PARTITION_UA;  // UA: the partitioner chooses
};

struct ProducedAt {
  std::int32_t partition = -1;
  std::int64_t offset = -1;
};

struct ConsumedMessage {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  std::string key;  // empty when the message had no key (see has_key)
  bool has_key = false;
  std::string value;
  Headers headers;

  // The first header with this name, if any.
  std::optional<std::string> header(std::string_view name) const;
};

struct KafkaHandleDeleter {
  void operator()(rd_kafka_t* rk) const;  // closes a consumer first, then destroys
};
using KafkaHandle = std::unique_ptr<rd_kafka_t, KafkaHandleDeleter>;

class TestProducer {
 public:
  // enable.idempotence=true, acks=all, linger.ms=1; `properties` add to or override these
  // (e.g. {"message.timeout.ms", "2000"}).
  static Result<std::unique_ptr<TestProducer>> create(const std::string& bootstrap,
                                                      const KafkaProperties& properties = {});

  // Produces and waits for the delivery report. A failed report is an Error whose code is
  // librdkafka's error name (e.g. "_MSG_TIMED_OUT"); `timeout` bounds the wait here, which is
  // separate from message.timeout.ms inside librdkafka.
  Result<ProducedAt> produce(const TestRecord& record,
                             std::chrono::milliseconds timeout = std::chrono::seconds(30));
  Result<ProducedAt> produce(const std::string& topic, std::string_view value,
                             const Headers& headers = {});
  // Enqueues every record, then waits for all reports; fails with the first failure.
  Result<std::vector<ProducedAt>> produce_all(
      const std::vector<TestRecord>& records,
      std::chrono::milliseconds timeout = std::chrono::seconds(30));

  rd_kafka_t* handle() { return handle_.get(); }

 private:
  TestProducer() = default;
  struct Pending {
    bool done = false;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    ProducedAt at;
  };
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque);

  KafkaHandle handle_;
  // Keyed by an id passed as the message opaque, so a report that arrives after its waiter
  // gave up finds nothing instead of a dangling pointer.
  std::map<std::uintptr_t, Pending> pending_;
  std::uintptr_t next_id_ = 1;
};

// Every message of `topic` from offset 0 of each partition, until expected_count have arrived
// or timeout passes; returns what arrived (the caller asserts on the count). Uses a throwaway
// group id and commits nothing. Order is per partition only.
Result<std::vector<ConsumedMessage>> consume_all(
    const std::string& bootstrap, const std::string& topic, std::size_t expected_count,
    std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Every message of `topic` from offset 0 up to each partition's high watermark as it stood
// when called: all that was acknowledged before, however many. Fails on timeout.
Result<std::vector<ConsumedMessage>> consume_to_end(
    const std::string& bootstrap, const std::string& topic,
    std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Topic name -> partition count for every topic the cluster reports.
Result<std::map<std::string, int>> topic_partitions(
    const std::string& bootstrap, std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Where a consumer group stands on one partition.
struct PartitionProgress {
  std::int64_t committed = -1;  // the group's committed offset; -1: none
  std::int64_t end = 0;         // the high watermark
};

// Per partition of `topic`: `group`'s committed offset and the high watermark, read without
// joining the group (so its members are not disturbed).
Result<std::map<std::int32_t, PartitionProgress>> group_progress(
    const std::string& bootstrap, const std::string& group, const std::string& topic,
    std::chrono::milliseconds timeout = std::chrono::seconds(10));

class TestGroupConsumer {
 public:
  // auto.offset.reset=earliest, enable.auto.commit=false, short session/heartbeat timings;
  // `properties` override.
  static Result<std::unique_ptr<TestGroupConsumer>> create(const std::string& bootstrap,
                                                           const std::string& group_id,
                                                           const std::vector<std::string>& topics,
                                                           const KafkaProperties& properties = {});

  // Serves group protocol callbacks too, so call it regularly. nullopt: nothing within timeout.
  // Transient client errors (broker down, ...) are not returned: they are what tests inject.
  std::optional<ConsumedMessage> poll(std::chrono::milliseconds timeout);
  // The partitions this member owns right now, sorted.
  std::vector<std::pair<std::string, std::int32_t>> assignment();
  // Synchronous commit of the positions after the messages returned by poll().
  Result<void> commit();

  rd_kafka_t* handle() { return handle_.get(); }

 private:
  explicit TestGroupConsumer(KafkaHandle handle) : handle_(std::move(handle)) {}
  KafkaHandle handle_;
};

}  // namespace hookrelay::test
