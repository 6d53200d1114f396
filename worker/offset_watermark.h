// OffsetWatermark: the Kafka offset a partition may commit while deliveries finish out of order.
//
// Contract: the consumer calls track(offset) when a message starts, in increasing offset order
// (gaps are normal: compaction, transaction markers), and finish(offset) when every delivery of
// that message is done (succeeded, retried onto a tier topic, or dead-lettered). The committable
// position is the lowest tracked offset not yet finished, or last tracked + 1 when none is
// outstanding: everything below it is done, so a crash after committing it replays, never skips.
// Offsets skipped by a gap are committed past as soon as everything before them is finished.
//
// Cost: track and the front-draining part of finish are amortised O(1); finish locates its offset
// by binary search, O(log n) in the outstanding window.
//
// Thread-safety: none. One owner (the consumer loop thread) calls every method.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace hookrelay {

class OffsetWatermark {
 public:
  // Starts tracking `offset`. False (and nothing changes) unless it is above every offset tracked
  // since construction or reset(): a lower one means the consumer was repositioned without a
  // reset, which would corrupt the watermark.
  [[nodiscard]] bool track(int64_t offset);

  // Marks a tracked offset finished. False for an offset never tracked, already finished, or
  // below the watermark: the caller has a bookkeeping bug to count and log.
  [[nodiscard]] bool finish(int64_t offset);

  // The next offset to commit, if it advanced since the last call that returned a value.
  // Tracking the first offset does not count as an advance: nothing has been done yet.
  [[nodiscard]] std::optional<int64_t> committable();

  // The current watermark regardless of what was already returned; nullopt before any track().
  std::optional<int64_t> position() const;

  // Offsets tracked and not yet finished.
  std::size_t size() const { return outstanding_; }

  // Forgets everything (partition revoked or repositioned).
  void reset();

 private:
  struct Entry {
    int64_t offset;
    bool finished;
  };

  // Pops finished entries off the front so the front is always the lowest unfinished offset.
  void drain_front();

  std::deque<Entry> window_;  // increasing offsets; front is unfinished unless empty
  std::size_t outstanding_ = 0;
  std::optional<int64_t> last_tracked_;
  std::optional<int64_t> last_reported_;  // committable() baseline: first tracked, then returned
};

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;

  auto operator<=>(const TopicPartition&) const = default;
};

struct CommitPosition {
  TopicPartition tp;
  int64_t offset = 0;  // next offset to read, as Kafka commits it

  bool operator==(const CommitPosition&) const = default;
};

// One OffsetWatermark per assigned partition.
//
// Thread-safety: none; same single owner as OffsetWatermark.
class PartitionWatermarks {
 public:
  // The partition's watermark, created empty on first use.
  OffsetWatermark& at(const TopicPartition& tp) { return by_partition_[tp]; }

  // nullptr when the partition has never been used or was erased.
  OffsetWatermark* find(const TopicPartition& tp);

  [[nodiscard]] bool track(const TopicPartition& tp, int64_t offset) {
    return at(tp).track(offset);
  }

  // False for a partition not held here, or as OffsetWatermark::finish.
  [[nodiscard]] bool finish(const TopicPartition& tp, int64_t offset);

  // Drops a revoked partition; its late finish() calls then return false.
  void erase(const TopicPartition& tp) { by_partition_.erase(tp); }

  // Every partition whose committable position advanced since the previous call, ordered by
  // (topic, partition).
  [[nodiscard]] std::vector<CommitPosition> take_committable();

  // Outstanding offsets over all partitions.
  std::size_t outstanding() const;

  std::size_t partitions() const { return by_partition_.size(); }

 private:
  std::map<TopicPartition, OffsetWatermark> by_partition_;
};

}  // namespace hookrelay
