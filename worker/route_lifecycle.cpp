#include "worker/route_lifecycle.h"

namespace hookrelay {

const char* suspend_cause_name(SuspendCause cause) {
  switch (cause) {
    case SuspendCause::kNone:
      return "none";
    case SuspendCause::kGone:
      return "gone";
    case SuspendCause::kConsecutiveFailures:
      return "consecutive_failures";
    case SuspendCause::kFailingFor:
      return "failing_for";
  }
  return "none";
}

SuspendCause suspend_cause_of_answer(int http_status) {
  return http_status == 410 ? SuspendCause::kGone : SuspendCause::kNone;
}

SuspendCause suspend_cause_of_streak(const std::optional<SuspendAfter>& rule, int failure_streak,
                                     int64_t failing_since_ms, int64_t now_ms) {
  if (!rule || failure_streak <= 0) return SuspendCause::kNone;
  if (rule->consecutive_failures > 0 && failure_streak >= rule->consecutive_failures) {
    return SuspendCause::kConsecutiveFailures;
  }
  if (rule->or_failing_for_seconds > 0 && failing_since_ms > 0 &&
      now_ms - failing_since_ms >= int64_t{rule->or_failing_for_seconds} * 1000) {
    return SuspendCause::kFailingFor;
  }
  return SuspendCause::kNone;
}

std::string suspend_reason(SuspendCause cause, int failure_streak, int64_t failing_since_ms,
                           int64_t now_ms, const std::optional<SuspendAfter>& rule) {
  switch (cause) {
    case SuspendCause::kGone:
      return "410 Gone from the receiver";
    case SuspendCause::kConsecutiveFailures:
      return std::to_string(failure_streak) +
             " consecutive failures (suspend_after.consecutive_failures: " +
             std::to_string(rule ? rule->consecutive_failures : 0) + ")";
    case SuspendCause::kFailingFor:
      return "failing for " + std::to_string((now_ms - failing_since_ms) / 1000) +
             " s without a success (suspend_after.or_failing_for_seconds: " +
             std::to_string(rule ? rule->or_failing_for_seconds : 0) + ")";
    case SuspendCause::kNone:
      break;
  }
  return "";
}

Decision park_decision(const std::optional<Decision>& attempted) {
  Decision d;
  if (attempted) {
    d = *attempted;
  } else {
    d.attempt = AttemptOutcome::kParked;
  }
  d.next = NextState::kParked;
  d.tier = -1;
  d.due_at_ms = 0;
  return d;
}

std::optional<bool> attempt_succeeded(const Decision& decision, TransportError error) {
  if (error == TransportError::kCircuitOpen || error == TransportError::kRateLimited)
    return std::nullopt;
  return decision.outcome.kind == OutcomeKind::kSuccess;
}

void RouteActivityLog::record(const std::string& source, const std::string& route, bool success,
                              int64_t now_ms) {
  auto [it, inserted] = pending_.try_emplace({source, route});
  RouteActivity& a = it->second;
  if (inserted) {
    a.source = source;
    a.route = route;
  }
  if (success) {
    a.succeeded = true;
    a.failures = 0;
    a.first_failure_ms = 0;
    return;
  }
  if (a.failures++ == 0) a.first_failure_ms = now_ms;
}

std::vector<RouteActivity> RouteActivityLog::take() {
  std::vector<RouteActivity> out;
  out.reserve(pending_.size());
  for (auto& [key, a] : pending_) out.push_back(std::move(a));
  pending_.clear();
  return out;
}

void RouteActivityLog::restore(std::vector<RouteActivity> older) {
  for (auto& a : older) {
    auto [it, inserted] = pending_.try_emplace({a.source, a.route}, a);
    if (inserted) continue;
    RouteActivity& newer = it->second;
    if (newer.succeeded) continue;  // a later success: the older failures no longer count
    newer.succeeded = a.succeeded;
    if (a.failures > 0) newer.first_failure_ms = a.first_failure_ms;
    newer.failures += a.failures;
  }
}

}  // namespace hookrelay
