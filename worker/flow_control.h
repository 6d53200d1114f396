// Flow control beside the per-host caps of rate_limiter.h:
//
// AdaptiveHostLimits: each destination host's in-flight limit adapts to what the receiver
// takes (AIMD): a 429, a 503 or a timeout cuts it multiplicatively, a success grows it
// additively, between 1 and the configured maximum (worker.per_host_max_in_flight, where every
// host starts). One cut per round of calls: an overload answer to a call started before the last
// cut was already paid for. A Retry-After on a 429 or 503 pauses the whole host until then.
//
// RouteLimits: a route's own `max_in_flight` and `rate_per_second` (per worker). A route at its
// limit waits; it neither fails nor bounces.
//
// Times are the caller's, on a clock that never steps (the dispatcher's steady clock): a wall
// clock stepped back would stretch a pause, or stall a rate, by as much.
//
// Thread-safety: none for either class. One owner (the delivery loop thread) calls every method.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "shared/config/config.h"
#include "worker/delivery_outcome.h"
#include "worker/rate_limiter.h"

namespace hookrelay {

class AdaptiveHostLimits {
 public:
  // What one call's answer says about the host's capacity.
  enum class Signal { kNone, kSuccess, kTooManyRequests, kUnavailable, kTimeout };
  static Signal signal_of(TransportError error, int status);
  static const char* signal_name(Signal s);  // "429" | "503" | "timeout" | "success" | "none"

  // max_limit: the configured per-host maximum (<= 0: the adaptive limit is off too).
  AdaptiveHostLimits(AdaptiveLimitConfig options, int max_limit);

  // A reloaded config: limits above the new maximum come down to it.
  void set_options(AdaptiveLimitConfig options, int max_limit);

  bool enabled() const { return options_.enabled && max_limit_ > 0; }

  // The host's current limit (the maximum for a host not seen yet, or with adaptation off).
  int limit(std::string_view host) const;
  // Until when the host is paused by a Retry-After, on the clock of the times given to
  // on_result (the dispatcher's steady clock); 0 = not paused.
  int64_t paused_until(std::string_view host) const;

  // The answer to a call to `host` started at started_ms. Returns true when it cut the limit.
  // retry_after_ms: the Retry-After delay of a 429 or 503, which pauses the host (capped).
  bool on_result(std::string_view host, Signal signal, int64_t started_ms, int64_t now_ms,
                 std::optional<int64_t> retry_after_ms);

  // Each host with state: its limit (for the gauge).
  void each(const std::function<void(const std::string& host, int limit)>& fn) const;
  // Forgets hosts not paused that are back at the maximum (they behave exactly like new ones) or
  // have given no answer for kForgetIdleMs (called a few times and never again).
  void prune(int64_t now_ms);
  static constexpr int64_t kForgetIdleMs = int64_t{10} * 60 * 1000;

 private:
  struct Host {
    double limit = 0;
    int64_t last_cut_ms = -1;  // started_ms of calls after this may cut again
    int64_t paused_until_ms = 0;
    int64_t last_result_ms = 0;  // the last answer that said something about its capacity
  };

  AdaptiveLimitConfig options_;
  int max_limit_;
  std::unordered_map<std::string, Host> hosts_;
};

// Per-route in-flight counts and rates, keyed by "source/route". Only routes with a limit
// (max_in_flight > 0 or rate_per_second > 0) have state.
class RouteLimits {
 public:
  explicit RouteLimits(std::function<int64_t()> now_ms) : now_ms_(std::move(now_ms)) {}

  static bool limited(const RouteConfig& route) {
    return route.max_in_flight > 0 || route.rate_per_second > 0;
  }
  static std::string key(std::string_view source, std::string_view route);

  // Whether a call of this route may start now (below max_in_flight, a rate token available).
  // Takes nothing.
  bool ready(const std::string& key, const RouteConfig& route);
  // A call of the route starts: counts it and takes its rate token. Call after ready().
  void start(const std::string& key, const RouteConfig& route);
  // A call counted by start() ended.
  void end(const std::string& key);

  int in_flight(const std::string& key) const;
  void prune();

 private:
  struct Route {
    int in_flight = 0;
    double rate = 0;  // the rate `bucket` was made with
    std::unique_ptr<RateLimiter> bucket;
  };
  RateLimiter* bucket(Route& r, const RouteConfig& route);

  std::function<int64_t()> now_ms_;
  std::unordered_map<std::string, Route> routes_;
};

}  // namespace hookrelay
