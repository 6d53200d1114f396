#include "shared/kafka/partition_spread.h"

namespace hookrelay {

int32_t PartitionSpread::choose(int32_t partitions, const std::function<bool(int32_t)>& available,
                                int64_t now_us) {
  std::lock_guard lock(mu_);
  if (partitions <= 0) return 0;
  const auto n = static_cast<std::size_t>(partitions);
  if (unacked_.size() < n) unacked_.resize(n, 0);
  if (current_ >= 0 && current_ < partitions && run_ < max_run_ &&
      now_us - run_start_us_ < run_us_ && available(current_)) {
    ++run_;
    ++unacked_[static_cast<std::size_t>(current_)];
    return current_;
  }
  const auto start = static_cast<int32_t>(next_ % n);
  int32_t best = -1;
  for (int32_t i = 0; i < partitions; ++i) {
    const int32_t candidate = (start + i) % partitions;
    if (!available(candidate)) continue;
    const int load = unacked_[static_cast<std::size_t>(candidate)];
    if (best < 0 || load < unacked_[static_cast<std::size_t>(best)]) best = candidate;
    if (load == 0) break;
  }
  if (best < 0) best = start;  // no partition has a leader
  current_ = best;
  run_ = 1;
  run_start_us_ = now_us;
  next_ = static_cast<uint64_t>(best) + 1;
  ++unacked_[static_cast<std::size_t>(best)];
  return best;
}

void PartitionSpread::acked(int32_t partition) {
  std::lock_guard lock(mu_);
  if (partition < 0 || static_cast<std::size_t>(partition) >= unacked_.size()) return;
  auto& load = unacked_[static_cast<std::size_t>(partition)];
  if (load > 0) --load;
}

int PartitionSpread::unacked(int32_t partition) const {
  std::lock_guard lock(mu_);
  if (partition < 0 || static_cast<std::size_t>(partition) >= unacked_.size()) return 0;
  return unacked_[static_cast<std::size_t>(partition)];
}

std::vector<int> PartitionSpread::unacked_all() const {
  std::lock_guard lock(mu_);
  return unacked_;
}

}  // namespace hookrelay
