#include "worker/offset_watermark.h"

#include <algorithm>

namespace hookrelay {

bool OffsetWatermark::track(int64_t offset) {
  if (last_tracked_ && offset <= *last_tracked_) return false;
  if (!last_reported_) last_reported_ = offset;
  last_tracked_ = offset;
  window_.push_back(Entry{offset, false});
  ++outstanding_;
  return true;
}

bool OffsetWatermark::finish(int64_t offset) {
  auto it = std::lower_bound(window_.begin(), window_.end(), offset,
                             [](const Entry& e, int64_t o) { return e.offset < o; });
  if (it == window_.end() || it->offset != offset || it->finished) return false;
  it->finished = true;
  --outstanding_;
  drain_front();
  return true;
}

void OffsetWatermark::drain_front() {
  while (!window_.empty() && window_.front().finished) window_.pop_front();
}

std::optional<int64_t> OffsetWatermark::position() const {
  if (!last_tracked_) return std::nullopt;
  if (window_.empty()) return *last_tracked_ + 1;
  return window_.front().offset;
}

std::optional<int64_t> OffsetWatermark::committable() {
  auto pos = position();
  if (!pos || (last_reported_ && *pos <= *last_reported_)) return std::nullopt;
  last_reported_ = pos;
  return pos;
}

void OffsetWatermark::reset() {
  window_.clear();
  outstanding_ = 0;
  last_tracked_.reset();
  last_reported_.reset();
}

OffsetWatermark* PartitionWatermarks::find(const TopicPartition& tp) {
  auto it = by_partition_.find(tp);
  return it == by_partition_.end() ? nullptr : &it->second;
}

bool PartitionWatermarks::finish(const TopicPartition& tp, int64_t offset) {
  OffsetWatermark* w = find(tp);
  return w != nullptr && w->finish(offset);
}

std::vector<CommitPosition> PartitionWatermarks::take_committable() {
  std::vector<CommitPosition> out;
  for (auto& [tp, w] : by_partition_) {
    if (auto pos = w.committable()) out.push_back(CommitPosition{tp, *pos});
  }
  return out;
}

std::size_t PartitionWatermarks::outstanding() const {
  std::size_t n = 0;
  for (const auto& [tp, w] : by_partition_) n += w.size();
  return n;
}

}  // namespace hookrelay
