#include "worker/rate_limiter.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <utility>

namespace hookrelay {

RateLimiter::RateLimiter(double rate_per_second, double burst, std::function<int64_t()> now_ms)
    : rate_per_ms_(rate_per_second / 1000.0),
      burst_(std::max(burst, 1.0)),
      now_ms_(std::move(now_ms)) {}

RateLimiter::Bucket& RateLimiter::refill(std::string_view host, int64_t now) {
  auto [it, inserted] = buckets_.try_emplace(std::string(host), Bucket{burst_, now});
  Bucket& b = it->second;
  if (!inserted) {
    // A clock stepping backwards must not mint or destroy tokens.
    const int64_t elapsed = std::max<int64_t>(0, now - b.updated_ms);
    b.tokens = std::min(burst_, b.tokens + static_cast<double>(elapsed) * rate_per_ms_);
    b.updated_ms = std::max(b.updated_ms, now);
  }
  return b;
}

bool RateLimiter::try_acquire(std::string_view host) {
  if (unlimited()) return true;
  Bucket& b = refill(host, now_ms_());
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

void RateLimiter::set_rate(double rate_per_second, double burst) {
  const int64_t now = now_ms_();
  for (auto& [host, bucket] : buckets_) refill(host, now);
  rate_per_ms_ = rate_per_second / 1000.0;
  burst_ = std::max(burst, 1.0);
  for (auto& [host, bucket] : buckets_) bucket.tokens = std::min(bucket.tokens, burst_);
}

int64_t RateLimiter::ms_until_available(std::string_view host) {
  if (unlimited()) return 0;
  const Bucket& b = refill(host, now_ms_());
  if (b.tokens >= 1.0) return 0;
  const double wait_ms = std::ceil((1.0 - b.tokens) / rate_per_ms_);
  // A rate so small that the wait does not fit in milliseconds counted in 64 bits (the config
  // refuses rates below 0.001/s; this class takes any): the longest wait there is.
  constexpr double kLongestWaitMs = 9.0e18;
  if (!(wait_ms < kLongestWaitMs)) return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(wait_ms);
}

void RateLimiter::prune() {
  const int64_t now = now_ms_();
  std::erase_if(buckets_, [&](const auto& entry) {
    const Bucket& b = entry.second;
    const int64_t elapsed = std::max<int64_t>(0, now - b.updated_ms);
    return b.tokens + static_cast<double>(elapsed) * rate_per_ms_ >= burst_;
  });
}

bool HostConcurrency::try_acquire(std::string_view host) {
  const std::string key(host);
  auto it = in_flight_.find(key);
  const int current = it == in_flight_.end() ? 0 : it->second;
  if (max_per_host_ > 0 && current >= max_per_host_) return false;
  if (it == in_flight_.end()) {
    in_flight_.emplace(key, 1);
  } else {
    ++it->second;
  }
  ++total_;
  return true;
}

void HostConcurrency::release(std::string_view host) {
  auto it = in_flight_.find(std::string(host));
  assert(it != in_flight_.end() && "release without a matching try_acquire");
  if (it == in_flight_.end()) return;
  --total_;
  if (--it->second == 0) in_flight_.erase(it);
}

int HostConcurrency::in_flight(std::string_view host) const {
  auto it = in_flight_.find(std::string(host));
  return it == in_flight_.end() ? 0 : it->second;
}

}  // namespace hookrelay
