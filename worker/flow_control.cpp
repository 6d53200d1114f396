#include "worker/flow_control.h"

#include <algorithm>
#include <cmath>

namespace hookrelay {

AdaptiveHostLimits::Signal AdaptiveHostLimits::signal_of(TransportError error, int status) {
  switch (error) {
    case TransportError::kNone:
      if (status == 429) return Signal::kTooManyRequests;
      if (status == 503) return Signal::kUnavailable;
      if (status >= 200 && status <= 299) return Signal::kSuccess;
      return Signal::kNone;  // a receiver's error says nothing about its capacity
    case TransportError::kTimeout:
      return Signal::kTimeout;
    default:
      return Signal::kNone;  // connection trouble is the circuit breaker's; our own limits made no
                             // call
  }
}

const char* AdaptiveHostLimits::signal_name(Signal s) {
  switch (s) {
    case Signal::kTooManyRequests:
      return "429";
    case Signal::kUnavailable:
      return "503";
    case Signal::kTimeout:
      return "timeout";
    case Signal::kSuccess:
      return "success";
    case Signal::kNone:
      break;
  }
  return "none";
}

AdaptiveHostLimits::AdaptiveHostLimits(AdaptiveLimitConfig options, int max_limit)
    : options_(options), max_limit_(max_limit) {}

void AdaptiveHostLimits::set_options(AdaptiveLimitConfig options, int max_limit) {
  options_ = options;
  max_limit_ = max_limit;
  for (auto& [host, h] : hosts_)
    h.limit = std::min(h.limit, static_cast<double>(std::max(max_limit_, 1)));
  if (!enabled()) hosts_.clear();
}

int AdaptiveHostLimits::limit(std::string_view host) const {
  if (!enabled() || hosts_.empty()) return max_limit_;
  auto it = hosts_.find(std::string(host));
  if (it == hosts_.end()) return max_limit_;
  return std::max(1, static_cast<int>(it->second.limit));
}

int64_t AdaptiveHostLimits::paused_until(std::string_view host) const {
  if (!enabled() || hosts_.empty()) return 0;
  auto it = hosts_.find(std::string(host));
  return it == hosts_.end() ? 0 : it->second.paused_until_ms;
}

bool AdaptiveHostLimits::on_result(std::string_view host, Signal signal, int64_t started_ms,
                                   int64_t now_ms, std::optional<int64_t> retry_after_ms) {
  if (!enabled() || signal == Signal::kNone) return false;
  const auto max = static_cast<double>(max_limit_);
  if (signal == Signal::kSuccess) {
    // A host at its maximum has no state to grow: nothing to look up on the common path.
    if (hosts_.empty()) return false;
    auto it = hosts_.find(std::string(host));
    if (it == hosts_.end()) return false;
    Host& h = it->second;
    h.limit = std::min(max, h.limit + options_.increase_step / std::max(1.0, h.limit));
    h.last_result_ms = now_ms;
    return false;
  }
  auto [it, inserted] = hosts_.try_emplace(std::string(host), Host{max, -1, 0, now_ms});
  Host& h = it->second;
  h.last_result_ms = now_ms;
  if (retry_after_ms && signal != Signal::kTimeout && options_.max_pause_seconds > 0) {
    const int64_t pause =
        std::clamp<int64_t>(*retry_after_ms, 0, int64_t{options_.max_pause_seconds} * 1000);
    h.paused_until_ms = std::max(h.paused_until_ms, now_ms + pause);
  }
  // Calls started before the last cut were sent under the old limit: their overload answers
  // were already paid for.
  if (started_ms <= h.last_cut_ms) return false;
  h.limit = std::max(1.0, std::floor(h.limit * options_.decrease_factor));
  h.last_cut_ms = now_ms;
  return true;
}

void AdaptiveHostLimits::each(
    const std::function<void(const std::string& host, int limit)>& fn) const {
  for (const auto& [host, h] : hosts_) fn(host, std::max(1, static_cast<int>(h.limit)));
}

void AdaptiveHostLimits::prune(int64_t now_ms) {
  const auto max = static_cast<double>(max_limit_);
  std::erase_if(hosts_, [&](const auto& entry) {
    const Host& h = entry.second;
    if (h.paused_until_ms > now_ms) return false;
    // Back at its maximum, or not called for long (a host called a few times and never again):
    // its next call starts from the maximum, as a host never cut does.
    return h.limit >= max || now_ms - h.last_result_ms >= kForgetIdleMs;
  });
}

std::string RouteLimits::key(std::string_view source, std::string_view route) {
  std::string k;
  k.reserve(source.size() + route.size() + 1);
  k.append(source).append("/").append(route);
  return k;
}

RateLimiter* RouteLimits::bucket(Route& r, const RouteConfig& route) {
  if (route.rate_per_second <= 0) {
    r.bucket.reset();
    r.rate = 0;
    return nullptr;
  }
  if (!r.bucket || r.rate != route.rate_per_second) {
    // A burst of one second's worth, at least one call.
    r.bucket = std::make_unique<RateLimiter>(route.rate_per_second,
                                             std::max(1.0, route.rate_per_second), now_ms_);
    r.rate = route.rate_per_second;
  }
  return r.bucket.get();
}

bool RouteLimits::ready(const std::string& key, const RouteConfig& route) {
  Route& r = routes_[key];
  if (route.max_in_flight > 0 && r.in_flight >= route.max_in_flight) return false;
  RateLimiter* b = bucket(r, route);
  return !b || b->ms_until_available(key) == 0;
}

void RouteLimits::start(const std::string& key, const RouteConfig& route) {
  Route& r = routes_[key];
  ++r.in_flight;
  if (RateLimiter* b = bucket(r, route)) (void)b->try_acquire(key);
}

void RouteLimits::end(const std::string& key) {
  auto it = routes_.find(key);
  if (it == routes_.end() || it->second.in_flight == 0) return;
  --it->second.in_flight;
}

int RouteLimits::in_flight(const std::string& key) const {
  auto it = routes_.find(key);
  return it == routes_.end() ? 0 : it->second.in_flight;
}

void RouteLimits::prune() {
  for (auto& [key, r] : routes_) {
    if (r.bucket) r.bucket->prune();
  }
}

}  // namespace hookrelay
