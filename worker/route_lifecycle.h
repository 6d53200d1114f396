// Route lifecycle: when a route is suspended, and what becomes of its deliveries then.
//
// A route is suspended by a 410 Gone from its receiver (at once: the receiver says the endpoint
// is gone for good), by its `suspend_after` bound (consecutive_failures failed attempts in a row
// across every worker, or failing without a success for or_failing_for_seconds), or by an
// operator (`hookrelay routes suspend`, POST /v1/routes/{name}/suspend). While it is suspended,
// its deliveries are parked: not attempted, not dead-lettered, state `parked` in Postgres and
// their message kept in hookrelay.parked, until a resume releases them in the order they
// arrived. Other routes of the same events are not affected.
//
// Thread-safety: pure functions; RouteActivityLog is owned by one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shared/config/config.h"
#include "shared/routes/route_states.h"
#include "worker/attempt_decision.h"

namespace hookrelay {

enum class SuspendCause { kNone, kGone, kConsecutiveFailures, kFailingFor };

const char* suspend_cause_name(
    SuspendCause cause);  // "gone" | "consecutive_failures" | "failing_for"

// What an HTTP answer says by itself: a 410 Gone suspends the route, whatever its config.
SuspendCause suspend_cause_of_answer(int http_status);

// What the route's streak says, across every worker: its suspend_after bound reached.
SuspendCause suspend_cause_of_streak(const std::optional<SuspendAfter>& rule, int failure_streak,
                                     int64_t failing_since_ms, int64_t now_ms);

// The reason stored with the suspension, for operators: "410 Gone from the receiver", "500
// consecutive failures (bound 500)", ...
std::string suspend_reason(SuspendCause cause, int failure_streak, int64_t failing_since_ms,
                           int64_t now_ms, const std::optional<SuspendAfter>& rule);

// The decision for a delivery of a suspended route: parked. `attempted` is the decision of the
// attempt just made (its outcome is recorded); nullopt when no attempt was made (the audit row
// says "parked").
Decision park_decision(const std::optional<Decision>& attempted);

// Whether an attempt counts in the route's streak, and which way: nullopt when no call reached
// the receiver (our own circuit or rate limit refused it).
std::optional<bool> attempt_succeeded(const Decision& decision, TransportError error);

// One worker's attempts per route between two reports to Postgres.
class RouteActivityLog {
 public:
  void record(const std::string& source, const std::string& route, bool success, int64_t now_ms);
  // The activity since the last take(), and forgets it.
  std::vector<RouteActivity> take();
  // Puts back what take() gave when its report failed, before what was recorded since.
  void restore(std::vector<RouteActivity> older);
  bool empty() const { return pending_.empty(); }

 private:
  std::map<std::pair<std::string, std::string>, RouteActivity> pending_;
};

}  // namespace hookrelay
