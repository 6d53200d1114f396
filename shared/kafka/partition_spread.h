// PartitionSpread: the partitions a producer gives one topic's messages, in short runs on one
// partition at a time, chosen by how many messages each partition has unacknowledged.
//
// Why: librdkafka sends one produce request per partition, so messages whose keys hash over N
// partitions leave a few at a time in up to N requests, and the brokers pay per request. A run of
// messages on one partition lets a steady stream's messages share a request.
//
// A run lasts as long as the producer's linger, or until it holds a batch's worth of messages
// (batch.num.messages), so that all of it leaves in one request: the linger's, or at once when the
// batch is full. The next run goes to the partition with the fewest unacknowledged messages, the
// first such from the one after the last run's (an idle topic's runs go round its partitions),
// passing over partitions without a leader. That keeps each partition's messages in flight to one
// request, because librdkafka 2.0.2's idempotent producer sends no further request for a
// partition while 5 of its messages are unacknowledged (RD_KAFKA_IDEMP_MAX_INFLIGHT, counted in
// messages), and its broker thread meanwhile polls without sleeping until the answer comes. Fixed
// windows of twice the linger, whose runs were cut in two requests, cost ingest 3x its CPU per
// event at 4,000/s on the devbroker that way, and runs placed without regard to what a partition
// still had in flight held a busy client's requests behind that partition's round trips. The
// message keys stay on the messages; nothing downstream relies on which partition a key lands on.
//
// Thread-safety: every member from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace hookrelay {

class PartitionSpread {
 public:
  // run_us: how long a run lasts (the producer's linger); max_run: how many messages it holds at
  // most (the producer's batch.num.messages).
  PartitionSpread(uint64_t first_partition_seed, int64_t run_us, int max_run)
      : run_us_(run_us), max_run_(max_run), next_(first_partition_seed) {}

  // The partition for one more message, produced at now_us (any monotonic clock), of a topic of
  // `partitions` partitions, counted as unacknowledged until acked(). `available(p)` says whether
  // partition p has a leader; when none has, the partition after the last run's is returned (the
  // message waits for its leader).
  int32_t choose(int32_t partitions, const std::function<bool(int32_t)>& available, int64_t now_us);
  // A message choose() placed on `partition` was acknowledged, failed or was never enqueued.
  void acked(int32_t partition);

  int unacked(int32_t partition) const;
  // unacked() of every partition choose() has seen, by partition number.
  std::vector<int> unacked_all() const;

 private:
  mutable std::mutex mu_;
  std::vector<int> unacked_;
  const int64_t run_us_;
  const int max_run_;
  int32_t current_ = -1;
  int run_ = 0;
  int64_t run_start_us_ = 0;
  uint64_t next_;  // where the next run's search starts (mod partitions)
};

}  // namespace hookrelay
