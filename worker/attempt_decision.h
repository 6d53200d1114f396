// The attempt decision: what becomes of a delivery after an attempt, or after a turn in which no
// attempt could be made. One pure function decides for every path (an HTTP answer, a bounce
// because the lease is held elsewhere or the host's circuit is open, a malformed message, a
// delivery found dead, a store or broker that refused it), so no path builds a retry or a dead
// letter of its own.
//
// States and reasons are enums here; they become text only where they leave the process (the
// database, the DLQ header, log lines and metric labels: the *_name functions).
//
// Thread-safety: pure functions; the random source is the caller's.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "worker/backoff.h"
#include "worker/delivery.h"
#include "worker/delivery_outcome.h"

namespace hookrelay {

// Where a delivery goes next; stored as deliveries.state. kParked: its route is suspended, so
// it waits in hookrelay.parked for the route's resume (route_lifecycle.h), neither attempted
// again nor dead.
enum class NextState { kSucceeded, kRetrying, kDead, kParked };

// What one HTTP attempt was; stored as delivery_attempts.outcome. kParked is the audit row of a
// delivery parked without an attempt.
enum class AttemptOutcome { kSucceeded, kRetryable, kPermanent, kParked };

// Why a delivery was dead-lettered: the hr-dlq-reason header and the dlq metric label.
enum class DeadReason {
  kPermanent,        // the receiver's answer cannot change (4xx, SSRF refusal, TLS, ...)
  kMaxAttempts,      // retry.max_attempts spent
  kMaxAge,           // the next attempt would come after retry.max_age_seconds
  kNoSchedule,       // no retry tiers configured
  kMalformed,        // the message is not a delivery
  kUnknownRoute,     // a retry for a route no longer configured
  kUnknownSource,    // a first copy of a source this worker's config does not know
  kRepublished,      // dead in the store before: its dead letter is published again
  kStoreRejected,    // the store refused the delivery's claim or record for good
  kProduceRejected,  // the broker refused its retry message for good
};

const char* next_state_name(NextState s);  // "succeeded" | "retrying" | "dead" | "parked"
const char* attempt_outcome_name(
    AttemptOutcome o);                       // "succeeded" | "retryable" | "permanent" | "parked"
const char* dead_reason_name(DeadReason r);  // "permanent", "max_attempts", ...

// What happened this turn.
struct AttemptResult {
  enum class Kind {
    kHttp,             // an HTTP attempt was made (or refused by our own limits): error, status
    kNotAttempted,     // bounced without an attempt: another attempt holds the lease
    kCircuitOpen,      // deferred without an attempt: the host's circuit is open for
                       // retry_after_ms more
    kMalformed,        // the message could not be expanded into deliveries
    kUnknownRoute,     // a retry whose route is gone
    kUnknownSource,    // a first copy of a source the config does not know
    kAlreadyDead,      // the store has it dead: publish the dead letter again
    kStoreRejected,    // the store refused it for good (a permanent error)
    kProduceRejected,  // the broker refused its retry message for good
  };
  Kind kind = Kind::kHttp;
  TransportError error = TransportError::kNone;
  int status = 0;
  std::optional<int64_t> retry_after_ms;  // the receiver's Retry-After, as a delay
  // kNotAttempted: the delivery still ages toward max_age (it waited in this worker for its host
  // or its route); false for a bounce whose copy another attempt holds.
  bool ages = false;

  static AttemptResult none(Kind kind) {  // a turn without an HTTP attempt
    AttemptResult r;
    r.kind = kind;
    return r;
  }
  // Requeued unsent: it waited in this worker until its claim's lease no longer covered the
  // call (a host slower than the lease allows, or held at its limits). Each requeue spends
  // nothing, so without ageing a host that stays that slow would requeue it for ever.
  static AttemptResult lease_ran_short() {
    AttemptResult r = none(Kind::kNotAttempted);
    r.ages = true;
    return r;
  }
  // The host's circuit stays open for `remaining_ms` (or the delivery was given a later moment
  // to come back, circuit_due_at_ms()): wait that long, spending nothing.
  static AttemptResult circuit_open(int64_t remaining_ms) {
    AttemptResult r;
    r.kind = Kind::kCircuitOpen;
    r.retry_after_ms = remaining_ms;
    return r;
  }
  static AttemptResult http(TransportError error, int status,
                            std::optional<int64_t> retry_after_ms) {
    AttemptResult r;
    r.error = error;
    r.status = status;
    r.retry_after_ms = retry_after_ms;
    return r;
  }
};

struct Decision {
  NextState next = NextState::kDead;
  // Set when an HTTP attempt was made: it is recorded in the store.
  std::optional<AttemptOutcome> attempt;
  Outcome outcome;        // classify()'s answer for an HTTP attempt (metric label)
  int tier = -1;          // retry tier when next == kRetrying
  int64_t due_at_ms = 0;  // earliest next attempt when next == kRetrying
  DeadReason reason = DeadReason::kPermanent;  // when next == kDead
  bool spends_attempt = false;                 // whether the attempt counts against max_attempts
};

// The one place a next state is chosen. `global` is the config's retry policy; a delivery whose
// route has a `retry:` of its own follows that one (route_retry_policy: its delays, attempts and
// age, in the global tier topics), retries coming back from a tier included, since their
// Delivery::route is resolved again by name. `rand01` is uniform in [0, 1) (retry jitter).
Decision decide(const Delivery& delivery, const AttemptResult& result, const RetryPolicy& global,
                int64_t now_ms, const std::function<double()>& rand01);

// When a delivery deferred for its host's open circuit comes back (Unix ms): a moment drawn
// uniformly from [open_until_ms, open_until_ms + spread_ms) (spread_ms: the circuit's cooldown),
// so the deliveries deferred during one open spell do not all come back at the half-open moment,
// when one probe goes out and the rest wait in the worker for its answer, filling its
// max_in_flight. Never after the moment the delivery's max_age ends, unless open_until_ms is
// itself that late: then open_until_ms, and decide() dead-letters it as max_age. `rand01` is
// uniform in [0, 1).
int64_t circuit_due_at_ms(const Delivery& delivery, const RetryPolicy& global,
                          int64_t open_until_ms, int64_t spread_ms,
                          const std::function<double()>& rand01);

}  // namespace hookrelay
