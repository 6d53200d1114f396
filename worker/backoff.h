// Retry decisions for a failed delivery attempt: when to try again and on which retry tier, or
// when to give up and dead-letter.
//
// Backoff is exponential with full jitter, capped: attempt k waits a uniformly random delay in
// [0, schedule[min(k-1, last)]) seconds. A receiver's Retry-After raises the delay (never beyond
// the last tier). The tier chosen is the smallest whose fixed delay covers the chosen delay, so a
// tier topic's delay bounds how long the head of one of its partitions can hold the rest back.
//
// Thread-safety: pure functions; the random source is the caller's.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/config/config.h"

namespace hookrelay {

struct RetryPolicy {
  std::vector<int> schedule_seconds;  // tier delays, increasing, non-empty (config validates)
  int max_attempts = 8;               // attempts in total, the first one included
  int max_age_seconds = 86400;        // from first receipt; later attempts are dead-lettered
  // The delays of the retry tier topics when they differ from schedule_seconds (a route's own
  // schedule; the topics are the global schedule's, shared by every route); empty = the same.
  std::vector<int> tier_seconds;
};

RetryPolicy make_retry_policy(const RetryConfig& config);

// The policy of a route with its own `retry:` (delays, attempts, age), waiting in the tier topics
// of `global`; nullopt when the route has none (or is not a route): use `global`.
std::optional<RetryPolicy> route_retry_policy(const RetryPolicy& global, const RouteConfig* route);

// The retry tier a delay waits in: the smallest tier topic whose delay covers it, else the last
// (the message's due time still holds it back). -1 when there are no tiers.
int tier_for_delay(const RetryPolicy& policy, int64_t delay_ms);

struct RetryPlan {
  enum class Kind { kRetry, kDeadLetter };
  Kind kind = Kind::kDeadLetter;
  int tier = -1;          // retry tier index (retry_topic(tier)); -1 when dead-lettered
  int64_t due_at_ms = 0;  // earliest next attempt; `now` when dead-lettered
  // Why: "backoff" or "retry_after" for a retry (which set the delay); "max_attempts",
  // "max_age" or "no_schedule" for a dead letter. A bounded set, fit for a metric label.
  std::string reason;
  // The same reason as an enum, for code that acts on it.
  enum class Why { kBackoff, kRetryAfter, kMaxAttempts, kMaxAge, kNoSchedule };
  Why why = Why::kNoSchedule;
};

// attempts_made counts attempts already made, including the one that just failed (values below
// 1 are treated as 1). rand01 returns a uniform value in [0, 1).
RetryPlan plan_retry(const RetryPolicy& policy, int attempts_made, int64_t first_received_ms,
                     int64_t now_ms, std::optional<int64_t> retry_after_ms,
                     const std::function<double()>& rand01);

// Parses a Retry-After header value into a delay from now_ms: delta-seconds ("120") or an
// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"; a date in the past gives 0). nullopt for
// anything else, negative numbers included. The obsolete RFC 850 and asctime date forms are not
// accepted.
std::optional<int64_t> parse_retry_after(std::string_view header, int64_t now_ms);

}  // namespace hookrelay
