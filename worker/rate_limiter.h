// Per-destination-host outbound limits: a token bucket on the call rate (RateLimiter) and a cap
// on calls in flight (HostConcurrency), so one busy route cannot flood its receiver or take every
// connection the worker has.
//
// Thread-safety: none for either class. One owner (the delivery loop thread) calls every method.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace hookrelay {

// Token bucket per host: refills at rate_per_second up to `burst` tokens; a call takes one.
// A host seen for the first time starts with a full bucket. rate_per_second <= 0 means
// unlimited (the config's 0). burst below 1 is raised to 1, or no call could ever pass.
// `now_ms` should never step: a wall clock stepped back would hold every bucket empty until it
// caught up again.
class RateLimiter {
 public:
  RateLimiter(double rate_per_second, double burst, std::function<int64_t()> now_ms);

  // Takes a token if one is available.
  [[nodiscard]] bool try_acquire(std::string_view host);

  // A new rate and burst (a configuration reload). Each bucket keeps the tokens it earned at the
  // old rate until now, cut to the new burst; from now on it refills at the new rate.
  void set_rate(double rate_per_second, double burst);

  // How long until try_acquire(host) would succeed; 0 if it would now, INT64_MAX when the wait
  // does not fit in an int64 (a rate below about one call in 285 million years).
  int64_t ms_until_available(std::string_view host);

  // Forgets hosts whose bucket has refilled completely: they behave exactly like new ones.
  // Call now and then to bound memory when destinations come and go.
  void prune();

  std::size_t hosts() const { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens = 0;
    int64_t updated_ms = 0;
  };

  bool unlimited() const { return rate_per_ms_ <= 0; }
  Bucket& refill(std::string_view host, int64_t now);

  double rate_per_ms_;
  double burst_;
  std::function<int64_t()> now_ms_;
  std::unordered_map<std::string, Bucket> buckets_;
};

// Calls in flight per host, at most max_per_host each (<= 0: unlimited, still counted).
class HostConcurrency {
 public:
  explicit HostConcurrency(int max_per_host) : max_per_host_(max_per_host) {}

  // A new cap (a configuration reload). Calls in flight stay counted: a host above a lowered cap
  // starts no call until enough of them end.
  void set_max_per_host(int max_per_host) { max_per_host_ = max_per_host; }

  // Counts a call in flight if the host is below its cap.
  [[nodiscard]] bool try_acquire(std::string_view host);

  // Ends a call counted by try_acquire. Releasing a host with nothing in flight is a caller bug:
  // it asserts in debug builds and is otherwise ignored, so counts never go negative.
  void release(std::string_view host);

  int in_flight(std::string_view host) const;
  int total_in_flight() const { return total_; }

 private:
  int max_per_host_;
  int total_ = 0;
  std::unordered_map<std::string, int> in_flight_;  // hosts with zero are erased
};

}  // namespace hookrelay
