// Job: one delivery as it moves through the worker (claim -> dispatch -> record -> redelivery),
// and MessageState: the consumed message its deliveries came from, finished when all of them
// are. Owned by exactly one place at a time (a unique_ptr passed from stage to stage); the
// coordinator thread is the only one that reads or writes them, except that a store lane reads
// the batch it was handed while the coordinator leaves it alone.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "worker/attempt_decision.h"
#include "worker/delivery.h"
#include "worker/offset_watermark.h"
#include "worker/outbound_request.h"

namespace hookrelay {

struct MessageState {
  TopicPartition tp;
  int64_t offset = 0;
  uint64_t generation = 0;
  int pending = 0;  // deliveries of this message not yet finished
  // The config its deliveries were expanded under: their Delivery::route points into it, so it
  // lives until the last of them finishes, whatever a reload installs meanwhile.
  std::shared_ptr<const Config> config;
};

// When one turn of a delivery passed each stage of the worker, for
// hookrelay_worker_stage_seconds (docs/metrics.md). A stamp left at its default was not passed.
struct StageTimes {
  using Clock = std::chrono::steady_clock;
  int64_t kafka_ms = -1;  // a first copy's Kafka timestamp (Unix ms); -1: not a first copy
  int64_t polled_ms = 0;  // when the worker took its message (Unix ms)
  Clock::time_point polled, claim_sent, claimed, sent, answered;
};

struct Job {
  Delivery d;
  std::shared_ptr<MessageState> msg;
  bool holds_slot = false;        // counted in the dispatcher's per-host concurrency
  bool holds_route_slot = false;  // counted in its route's max_in_flight (Dispatcher)
  std::string route_key;   // "source/route" of a route with limits of its own, once dispatched
  bool holds_key = false;  // the coordinator's in-flight key entry is this job's
  int64_t started_ms = 0;  // when the HTTP attempt started
  // The same on the dispatcher's steady clock (its breaker's and adaptive limits' time).
  std::optional<int64_t> steady_started_ms;
  int duration_ms = 0;      // of the HTTP attempt
  int64_t lease_token = 0;  // the token of this job's claim; its attempt is recorded under it
  // The latest its call may start (the worker's steady clock, ms; 0: no limit): its claim's
  // lease, counted from the claim's first send, then still covers the call
  // (Dispatcher::start_head). Steady, not wall-clock time: a clock stepped back must not let a
  // call start after the lease ended and another worker may have claimed the delivery.
  int64_t send_by_ms = 0;
  AttemptHistory history;     // carried into the retry or dead-letter message
  Decision decision;          // set by decide() once this turn's result is known
  std::string order_gate;     // non-empty while this job holds an ordered route's gate
  int64_t produce_at_ms = 0;  // redelivery: when to publish again after a transient refusal
  int store_rejections = 0;   // permanent store errors met by this job
  // Set when the dispatcher defers the job because its host's circuit is open: when the job is to
  // come back (Unix ms), a moment in the cooldown after the circuit turns half-open
  // (circuit_due_at_ms). 0 on a job it defers because its lease is running out.
  int64_t circuit_open_until_ms = 0;
  // Deferred the same way (circuit_open_until_ms: when the pause ends) because a Retry-After
  // paused its host for longer than Dispatcher::kDeferPauseMs.
  bool deferred_for_pause = false;
  // Bounced without an attempt under a lease of its own: the coordinator gives the lease back
  // once the retry message is acknowledged.
  bool give_back_lease = false;
  // Failed, it found its key held by another worker's head (KeyOrder::hold) and waits behind
  // it: once its attempt is recorded it is finished instead of going to a retry tier.
  bool wait_after_record = false;
  // A park's suspension (RouteSync::suspension; AttemptRecord::park_suspended_at_ms): the record
  // turns it into a retry if a resume has ended it. 0: the park stands.
  int64_t park_suspended_at_ms = 0;
  StageTimes stages;

  LeaseRef lease() const { return {d.key, lease_token}; }
};

}  // namespace hookrelay
