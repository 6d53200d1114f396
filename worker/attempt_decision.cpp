#include "worker/attempt_decision.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace hookrelay {
namespace {

DeadReason dead_reason_of(RetryPlan::Why why) {
  switch (why) {
    case RetryPlan::Why::kMaxAttempts:
      return DeadReason::kMaxAttempts;
    case RetryPlan::Why::kMaxAge:
      return DeadReason::kMaxAge;
    case RetryPlan::Why::kNoSchedule:
      return DeadReason::kNoSchedule;
    case RetryPlan::Why::kBackoff:
    case RetryPlan::Why::kRetryAfter:
      break;
  }
  return DeadReason::kPermanent;  // not reached: a retry plan is not a dead letter
}

// The delay of the longest retry tier topic: the longest a message can wait in one.
int64_t longest_tier_ms(const RetryPolicy& policy) {
  const std::vector<int>& tiers =
      policy.tier_seconds.empty() ? policy.schedule_seconds : policy.tier_seconds;
  return tiers.empty() ? 0 : int64_t{*std::max_element(tiers.begin(), tiers.end())} * 1000;
}

// The policy a delivery's retries follow when it is not `global`: a call's own max_attempts and
// max_age_seconds (its request's, or ingest's defaults) in the global tiers, or its route's own
// `retry:`.
std::optional<RetryPolicy> own_policy(const Delivery& delivery, const RetryPolicy& global) {
  if (delivery.kind == "call") {
    RetryPolicy p = global;
    p.max_attempts = delivery.max_attempts;
    p.max_age_seconds = delivery.max_age_seconds;
    return p;
  }
  return route_retry_policy(global, delivery.route);
}

Decision dead(DeadReason reason) {
  Decision d;
  d.next = NextState::kDead;
  d.reason = reason;
  return d;
}

}  // namespace

const char* next_state_name(NextState s) {
  switch (s) {
    case NextState::kSucceeded:
      return "succeeded";
    case NextState::kRetrying:
      return "retrying";
    case NextState::kDead:
      return "dead";
    case NextState::kParked:
      return "parked";
  }
  return "dead";
}

const char* attempt_outcome_name(AttemptOutcome o) {
  switch (o) {
    case AttemptOutcome::kSucceeded:
      return "succeeded";
    case AttemptOutcome::kRetryable:
      return "retryable";
    case AttemptOutcome::kPermanent:
      return "permanent";
    case AttemptOutcome::kParked:
      return "parked";
  }
  return "permanent";
}

const char* dead_reason_name(DeadReason r) {
  switch (r) {
    case DeadReason::kPermanent:
      return "permanent";
    case DeadReason::kMaxAttempts:
      return "max_attempts";
    case DeadReason::kMaxAge:
      return "max_age";
    case DeadReason::kNoSchedule:
      return "no_schedule";
    case DeadReason::kMalformed:
      return "malformed";
    case DeadReason::kUnknownRoute:
      return "unknown_route";
    case DeadReason::kUnknownSource:
      return "unknown_source";
    case DeadReason::kRepublished:
      return "republished";
    case DeadReason::kStoreRejected:
      return "store_rejected";
    case DeadReason::kProduceRejected:
      return "produce_rejected";
  }
  return "permanent";
}

Decision decide(const Delivery& delivery, const AttemptResult& result, const RetryPolicy& global,
                int64_t now_ms, const std::function<double()>& rand01) {
  // Only a retry reads the policy: a route's own is made for that path alone.
  std::optional<RetryPolicy> own;
  bool resolved = false;
  auto policy_of = [&]() -> const RetryPolicy& {
    if (!resolved) {
      own = own_policy(delivery, global);
      resolved = true;
    }
    return own ? *own : global;
  };
  switch (result.kind) {
    case AttemptResult::Kind::kNotAttempted: {
      // No attempt was made: back to the first tier after its delay, spending nothing. With no
      // tiers configured there is nowhere to wait, and the delivery is dead.
      const RetryPolicy& policy = policy_of();
      if (policy.schedule_seconds.empty()) return dead(DeadReason::kNoSchedule);
      Decision d;
      d.next = NextState::kRetrying;
      const int64_t delay_ms = int64_t{policy.schedule_seconds.front()} * 1000;
      if (result.ages && delivery.received_at_ms > 0 &&
          now_ms + delay_ms > delivery.received_at_ms + int64_t{policy.max_age_seconds} * 1000)
        return dead(DeadReason::kMaxAge);
      d.tier = tier_for_delay(policy, delay_ms);
      d.due_at_ms = now_ms + delay_ms;
      return d;
    }
    case AttemptResult::Kind::kCircuitOpen: {
      // The host refuses calls until its circuit turns half-open: wait until then, or the later
      // moment circuit_due_at_ms() drew (at most the longest tier's delay), in the tier that
      // covers it, spending nothing, instead of coming back after the first tier's delay again
      // and again.
      const RetryPolicy& policy = policy_of();
      if (policy.schedule_seconds.empty()) return dead(DeadReason::kNoSchedule);
      Decision d;
      d.next = NextState::kRetrying;
      const int64_t delay_ms =
          std::clamp<int64_t>(result.retry_after_ms.value_or(0), 0, longest_tier_ms(policy));
      // Held back without an attempt, it still ages: a host that stays down ends its
      // deliveries at max_age, as failed attempts would.
      if (now_ms + delay_ms > delivery.received_at_ms + int64_t{policy.max_age_seconds} * 1000)
        return dead(DeadReason::kMaxAge);
      d.tier = tier_for_delay(policy, delay_ms);
      d.due_at_ms = now_ms + delay_ms;
      return d;
    }
    case AttemptResult::Kind::kMalformed:
      return dead(DeadReason::kMalformed);
    case AttemptResult::Kind::kUnknownRoute:
      return dead(DeadReason::kUnknownRoute);
    case AttemptResult::Kind::kUnknownSource:
      return dead(DeadReason::kUnknownSource);
    case AttemptResult::Kind::kAlreadyDead:
      return dead(DeadReason::kRepublished);
    case AttemptResult::Kind::kStoreRejected:
      return dead(DeadReason::kStoreRejected);
    case AttemptResult::Kind::kProduceRejected:
      return dead(DeadReason::kProduceRejected);
    case AttemptResult::Kind::kHttp:
      break;
  }
  Decision d;
  d.outcome = classify(result.error, result.status);
  d.spends_attempt = true;
  switch (d.outcome.kind) {
    case OutcomeKind::kSuccess:
      d.attempt = AttemptOutcome::kSucceeded;
      d.next = NextState::kSucceeded;
      return d;
    case OutcomeKind::kPermanent:
      d.attempt = AttemptOutcome::kPermanent;
      d.next = NextState::kDead;
      d.reason = DeadReason::kPermanent;
      return d;
    case OutcomeKind::kRetryable:
      break;
  }
  d.attempt = AttemptOutcome::kRetryable;
  auto plan = plan_retry(policy_of(), delivery.attempt, delivery.received_at_ms, now_ms,
                         result.retry_after_ms, rand01);
  switch (plan.kind) {
    case RetryPlan::Kind::kRetry:
      d.next = NextState::kRetrying;
      d.tier = plan.tier;
      d.due_at_ms = plan.due_at_ms;
      break;
    case RetryPlan::Kind::kDeadLetter:
      d.next = NextState::kDead;
      d.reason = dead_reason_of(plan.why);
      break;
  }
  return d;
}

int64_t circuit_due_at_ms(const Delivery& delivery, const RetryPolicy& global,
                          int64_t open_until_ms, int64_t spread_ms,
                          const std::function<double()>& rand01) {
  const auto own = own_policy(delivery, global);
  const int64_t deadline_ms =
      delivery.received_at_ms + int64_t{(own ? *own : global).max_age_seconds} * 1000;
  if (spread_ms <= 0 || open_until_ms >= deadline_ms) return open_until_ms;
  // Clamp a misbehaving source so the moment stays within the window.
  const double r = std::clamp(rand01(), 0.0, std::nextafter(1.0, 0.0));
  const auto offset_ms = static_cast<int64_t>(std::floor(r * static_cast<double>(spread_ms)));
  return std::min(open_until_ms + offset_ms, deadline_ms);
}

}  // namespace hookrelay
