#include "worker/circuit_breaker.h"

#include <algorithm>
#include <utility>

namespace hookrelay {

CircuitBreaker::CircuitBreaker(Options options, std::function<int64_t()> now_ms)
    : options_(options), now_ms_(std::move(now_ms)) {}

CircuitBreaker::State CircuitBreaker::effective_state(const Host& h, int64_t now) const {
  if (h.state == State::kOpen && now - h.opened_at_ms >= options_.cooldown_ms) {
    return State::kHalfOpen;
  }
  return h.state;
}

int64_t CircuitBreaker::half_open_since(const Host& h) const {
  return h.opened_at_ms + options_.cooldown_ms;
}

void CircuitBreaker::open(Host& h, int64_t now) {
  h.state = State::kOpen;
  h.opened_at_ms = now;
  h.probe_in_flight = false;
}

CircuitBreaker::State CircuitBreaker::state(std::string_view host) const {
  auto it = hosts_.find(std::string(host));
  if (it == hosts_.end()) return State::kClosed;
  return effective_state(it->second, now_ms_());
}

int64_t CircuitBreaker::open_until(std::string_view host, int64_t now_ms) const {
  auto it = hosts_.find(std::string(host));
  if (it == hosts_.end() || effective_state(it->second, now_ms) != State::kOpen) return 0;
  return it->second.opened_at_ms + options_.cooldown_ms;
}

CircuitBreaker::Gate CircuitBreaker::gate(std::string_view host, int64_t now) const {
  auto it = hosts_.find(std::string(host));
  if (it == hosts_.end()) return Gate::kCall;
  const Host& h = it->second;
  switch (effective_state(h, now)) {
    case State::kClosed:
      return Gate::kCall;
    case State::kOpen:
      return Gate::kOpen;
    case State::kHalfOpen:
      // A probe that never reported is replaced after a further cooldown.
      return h.probe_in_flight && now - h.probe_started_ms < options_.cooldown_ms ? Gate::kProbeOut
                                                                                  : Gate::kCall;
  }
  return Gate::kOpen;
}

void CircuitBreaker::started(std::string_view host, int64_t now_ms) {
  auto it = hosts_.find(std::string(host));
  if (it == hosts_.end()) return;
  Host& h = it->second;
  h.last_seen_ms = now_ms;
  h.state = effective_state(h, now_ms);
  if (h.state != State::kHalfOpen) return;
  h.probe_in_flight = true;
  h.probe_started_ms = now_ms;
}

void CircuitBreaker::record(std::string_view host, bool success, int64_t started_ms) {
  const std::string key(host);
  auto it = hosts_.find(key);
  if (it == hosts_.end()) {
    if (success) return;  // nothing to remember about a healthy host
    it = hosts_.emplace(key, Host{}).first;
  }
  Host& h = it->second;
  const int64_t now = now_ms_();
  h.last_seen_ms = now;
  switch (h.state) {
    case State::kClosed:
      if (success) {
        hosts_.erase(it);
        return;
      }
      ++h.consecutive_failures;
      if (options_.failure_threshold > 0 && h.consecutive_failures >= options_.failure_threshold) {
        open(h, now);
      }
      return;
    case State::kOpen:
      return;  // a call started before the circuit opened
    case State::kHalfOpen:
      // Only a probe's answer: a call started before the circuit turned half-open began before
      // it opened. Any probe of this half-open spell counts, not only the newest: a probe slower
      // than the cooldown is replaced by another, and if only the newest counted, a host
      // answering slower than the cooldown would never close or open its circuit again.
      if (!h.probe_in_flight || started_ms < half_open_since(h)) return;
      if (success) {
        hosts_.erase(it);
      } else {
        open(h, now);
      }
      return;
  }
}

void CircuitBreaker::answered(std::string_view host, int64_t started_ms) {
  auto it = hosts_.find(std::string(host));
  if (it == hosts_.end()) return;
  Host& h = it->second;
  h.last_seen_ms = now_ms_();
  if (h.state == State::kHalfOpen && h.probe_in_flight && started_ms >= half_open_since(h))
    hosts_.erase(it);
}

void CircuitBreaker::abandoned(std::string_view host, int64_t started_ms) {
  auto it = hosts_.find(std::string(host));
  if (it == hosts_.end()) return;
  Host& h = it->second;
  if (h.state == State::kHalfOpen && h.probe_in_flight && started_ms == h.probe_started_ms)
    h.probe_in_flight = false;
}

void CircuitBreaker::deferred(std::string_view host, int64_t now_ms) {
  if (auto it = hosts_.find(std::string(host)); it != hosts_.end())
    it->second.last_seen_ms = now_ms;
}

void CircuitBreaker::prune(int64_t now_ms) {
  const int64_t closed_idle = std::max(kForgetIdleMs, 2 * options_.cooldown_ms);
  const int64_t open_idle = std::max(closed_idle, options_.forget_open_after_ms);
  std::erase_if(hosts_, [&](const auto& entry) {
    const Host& h = entry.second;
    return now_ms - h.last_seen_ms >= (h.state == State::kClosed ? closed_idle : open_idle);
  });
}

CircuitBreaker::Counts CircuitBreaker::counts() const {
  Counts c;
  const int64_t now = now_ms_();
  for (const auto& [host, h] : hosts_) {
    switch (effective_state(h, now)) {
      case State::kClosed:
        ++c.closed;
        break;
      case State::kOpen:
        ++c.open;
        break;
      case State::kHalfOpen:
        ++c.half_open;
        break;
    }
  }
  return c;
}

const char* circuit_state_name(CircuitBreaker::State state) {
  switch (state) {
    case CircuitBreaker::State::kClosed:
      return "closed";
    case CircuitBreaker::State::kOpen:
      return "open";
    case CircuitBreaker::State::kHalfOpen:
      return "half_open";
  }
  return "unknown";
}

}  // namespace hookrelay
