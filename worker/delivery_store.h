// DeliveryStore: the worker's I/O boundary to its durable state (idempotency claims, attempt
// audit, inbound event dedupe). The real adapter is PostgresDeliveryStore; unit tests use fakes.
//
// Contract for every method: one batch is one database round trip, and every failure is an
// Error (retryable when trying again later may succeed: "db_unavailable", "db_conflict",
// "db_busy", "db_misconfigured"); implementations never throw.
//
// Thread-safety: implementations need not be thread-safe; the caller serializes calls.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shared/config/lease_window.h"
#include "shared/result.h"
#include "worker/delivery.h"

namespace hookrelay {

// One delivery as the worker knows it before calling out.
struct DeliveryRef {
  std::string key;     // delivery key: stable across retries and replays
  std::string kind;    // "webhook" | "call"
  std::string source;  // webhook source, or the calling service
  std::string event_id;
  std::string destination;  // route name, or "call"
  std::string url;
  std::string origin_topic;   // topic the message was first produced to
  int64_t first_seen_ms = 0;  // when ingest received it; 0 = now
  // This claim's fencing token: unique per claim. Its high 32 bits name the worker's run (a
  // process start), the low 32 count claims within it (make_lease_token). See claim().
  int64_t lease_token = 0;
  // Attempts made before this copy of the message (its hr-attempt; 0 for a first copy). A copy
  // with fewer attempts than the delivery's newest copy in Kafka is stale: see claim().
  int attempts_made = 0;
};

// A delivery's newest copy in Kafka: Kafka acknowledged a copy of its message carrying
// `attempts_made` attempts (a retry published after the attempt that started at
// `attempt_started_ms`).
struct CopyFence {
  std::string key;
  int attempts_made = 0;
  int64_t attempt_started_ms = 0;
};

// A token for one claim: `run` names this process's run of the worker (random at start),
// `seq` counts its claims.
int64_t make_lease_token(uint32_t run, uint32_t seq);

enum class ClaimStatus {
  kClaimed,           // this worker holds the lease: deliver it
  kAlreadySucceeded,  // done before: skip, it is a duplicate
  kAlreadyDead,       // in the DLQ: skip until an operator replays it
  kLeasedElsewhere,   // another attempt holds an unexpired lease (another worker's, or
                      // another copy of the message in this worker): do not deliver now
  kSuperseded,        // a stale copy: a newer copy with more attempts carries the delivery on
};

const char* claim_status_name(ClaimStatus status);

struct AttemptRecord {
  std::string key;
  int attempt = 0;         // 1-based attempt number
  int64_t started_ms = 0;  // ms since the Unix epoch
  int duration_ms = 0;
  int http_status = 0;      // 0 = no response (connect error, timeout, ...)
  std::string outcome;      // "succeeded" | "retryable" | "permanent"
  std::string error;        // empty on success
  std::string next_state;   // "succeeded" | "retrying" | "dead" | "parked"
  int64_t lease_token = 0;  // the token of the claim this attempt was made under
  // A park (next_state "parked") decided under the suspension of route (park_source,
  // park_route) that began at park_suspended_at_ms (Unix ms, as read from route_states): if a
  // resume has ended that suspension by the time the record runs, the delivery is recorded
  // "retrying" instead. 0: the park stands whatever the route's state.
  std::string park_source{};
  std::string park_route{};
  int64_t park_suspended_at_ms = 0;
};

struct InboundEventRecord {
  std::string source;
  std::string event_id;
  std::string topic;
  int partition = 0;
  int64_t offset = 0;
  int64_t received_ms = 0;  // ms since the Unix epoch (hr-received-at)
  std::string body_sha256;  // hex
};

class DeliveryStore {
 public:
  virtual ~DeliveryStore() = default;

  // Claims each delivery for `worker_id` for `lease_seconds` under the ref's lease_token, unless
  // it already succeeded (and no resend of it is pending), is dead, or an unexpired lease is held
  // by another attempt. A pending resend is consumed by the first claim of its key. A claim is
  // exclusive per attempt: a lease held by this same run of the worker (same worker_id, same
  // high 32 bits of the token) is not taken again, so two copies of one message never both
  // deliver. A lease held under `worker_id` by an earlier run (the process restarted) is taken
  // at once: worker ids are unique among live workers. Statuses come back in input order; a key
  // repeated in the batch is claimed once, through the ref whose copy made the most attempts
  // (the first of those): its other refs get kLeasedElsewhere while that claim holds (each ref is
  // one attempt's, and only one attempt may hold a delivery), or kSuperseded (below).
  //
  // A ref whose copy carries fewer attempts (attempts_made) than the delivery's newest copy known
  // to be in Kafka (fence(), or a claim of that copy) is kSuperseded, and claims nothing: that
  // copy is read again after a rebalance or restart, and its delivery goes on in the newer copy.
  // A copy with the fence's own count is claimed as any other (the copy that made the newest
  // attempt, read again before its retry was acknowledged, must be: that retry may be lost). A
  // claim raises the fence to its own copy's count; the claim of a resend sets it to that.
  virtual Result<std::vector<ClaimStatus>> claim(const std::vector<DeliveryRef>& deliveries,
                                                 const std::string& worker_id,
                                                 int lease_seconds) = 0;

  // Stores one audit row per record and moves each delivery to its record's next_state
  // (attempts, last_* columns; the lease is given back) when the record's lease_token still
  // holds the lease; an attempt whose lease was taken over (it outlived the lease) is only
  // audited, and the lease's holder decides the state. "succeeded" is final and always wins: the
  // first success moves the delivery whatever the lease, a later success for the same key is
  // stored with outcome "duplicate_success", so each key has at most one "succeeded" attempt
  // row per resend, and later failures do not move it out of "succeeded".
  // Returns the keys of the parks recorded "retrying" because their route was resumed since
  // (AttemptRecord::park_suspended_at_ms): the caller publishes those to the first retry tier.
  // No release can miss such a park: a release lists the parks committed after its resume, and
  // a park recorded after the resume is not one.
  virtual Result<std::vector<std::string>> record(const std::vector<AttemptRecord>& attempts,
                                                  const std::string& worker_id) = 0;

  // Remembers inbound events by (source, event_id); returns how many were not seen before.
  virtual Result<int> record_inbound(const std::vector<InboundEventRecord>& events) = 0;

  // claim() and record_inbound() in one round trip: the audit rides with the claims, and both
  // are committed together or not at all (PostgresDeliveryStore: one statement). The default
  // makes the two calls in turn, for stores without a combined form.
  virtual Result<std::vector<ClaimStatus>> claim_and_audit(
      const std::vector<DeliveryRef>& deliveries, const std::vector<InboundEventRecord>& audit,
      const std::string& worker_id, int lease_seconds);

  // Gives back leases without recording an attempt (a bounce, or shutdown), so another attempt
  // may claim the delivery at once. A lease is given back only while the claim named by the
  // ref's lease_token (taken by `worker_id`) still holds it: a later claim of the same delivery,
  // by this worker or another, keeps its lease.
  virtual Result<void> release(const std::vector<LeaseRef>& leases,
                               const std::string& worker_id) = 0;

  // Raises each delivery's fence to its copy's attempts_made (never lowers it), unless the
  // delivery is finished, or its last recorded attempt is not the one at attempt_started_ms (the
  // delivery went on since; replayed, its replay's copy counts anew and must not be held back):
  // a copy with fewer attempts is claimed as kSuperseded from then on. Called once Kafka
  // acknowledged the copy. A fence that is never raised (a failed round trip, a worker stopped
  // first) only leaves older copies claimable, as they were without it.
  virtual Result<void> fence(const std::vector<CopyFence>& fences) = 0;
};

}  // namespace hookrelay
