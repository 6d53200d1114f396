#include "worker/store_batcher.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <string_view>

#include "shared/log.h"

namespace hookrelay {
namespace {

constexpr int64_t kDbRetryMs = 1000;
constexpr std::size_t kMaxInboundBacklog = 100000;
// Claims per round trip: a claim batch is what one poll brought, bounded by max_in_flight.
constexpr std::size_t kMaxClaimBatch = SIZE_MAX;
// Rows per record round trip. The statement costs the same per row at any size (each row is an
// index lookup); the bound keeps one round trip short, so results of the next batch do not
// wait long behind it.
constexpr std::size_t kMaxRecordBatch = 1000;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

AttemptRecord attempt_record(const Job& j) {
  // Text only here, at the database boundary.
  AttemptRecord rec;
  rec.key = j.d.key;
  // A delivery parked, or dead without an attempt this turn (its route gone, a bounce whose
  // retry Kafka refused for good, held unsent until max_age): its audit row counts the attempts
  // made so far.
  const bool no_attempt = j.decision.attempt == AttemptOutcome::kParked ||
                          (j.decision.next == NextState::kDead && !j.decision.attempt);
  rec.attempt = no_attempt ? j.d.attempt - 1 : j.d.attempt;
  rec.started_ms = j.started_ms;
  rec.duration_ms = j.duration_ms;
  rec.http_status = j.history.last_status;
  rec.outcome = attempt_outcome_name(j.decision.attempt.value_or(AttemptOutcome::kPermanent));
  rec.error = j.history.last_error.substr(0, 1024);
  rec.next_state = next_state_name(j.decision.next);
  rec.lease_token = j.lease_token;
  if (j.decision.next == NextState::kParked && j.park_suspended_at_ms > 0) {
    rec.park_source = j.d.source;
    rec.park_route = j.d.destination;
    rec.park_suspended_at_ms = j.park_suspended_at_ms;
  }
  return rec;
}

}  // namespace

StoreBatcher::StoreBatcher(StoreBatcherDeps deps)
    : d_(std::move(deps)),
      claims_(d_.threaded, kMaxClaimBatch, "pg_claims"),
      records_(d_.threaded, kMaxRecordBatch, "pg_records"),
      inbound_(d_.threaded, kMaxClaimBatch, "pg_inbound") {
  set_batching(d_.batching);
}

void StoreBatcher::set_batching(StoreBatchingConfig b) {
  d_.batching = b;
  claims_.set_batching(b.min_batch, b.max_wait_ms, b.max_wait_ms);
  records_.set_batching(
      b.min_batch, b.record_max_wait_ms < 0 ? b.max_wait_ms : b.record_max_wait_ms, b.max_wait_ms);
  // The audit lane carries only what could not ride with claims: it sends at once.
}

void StoreBatcher::audit(InboundEventRecord event) {
  if (audit_.size() < kMaxInboundBacklog) audit_.push_back(std::move(event));
}

void StoreBatcher::flush_audit(int64_t now) {
  for (auto& e : audit_) inbound_.push(std::move(e));
  audit_.clear();
  flush_inbound(now);
}

void StoreBatcher::flush_claims(int64_t now) {
  if (!claims_.busy() && !claims_.has_queued()) {
    // No claim left to carry them (their claims were dropped): the audit lane takes them.
    flush_audit(now);
  } else {
    flush_inbound(now);
  }
  if (down_ && usable(now) && !claims_.busy() && !claims_.has_queued() && !records_.busy() &&
      !records_.has_queued()) {
    // Down, with nothing left to try again (a rebalance dropped the claims that found it down):
    // no round trip would ever find it up. The partitions go on, and the next claim judges.
    ok();
  }
  if (!usable(now) || !claims_.due(now)) return;
  const auto& batch = claims_.start();
  auto refs = std::make_shared<std::vector<DeliveryRef>>();
  refs->reserve(batch.size());
  const auto sent_at = StageTimes::Clock::now();
  const int64_t steady_now = d_.steady_ms();
  for (const auto& j : batch) {
    j->stages.claim_sent = sent_at;
    // Every claim has a token of its own, so a claim is one attempt's: see DeliveryStore::claim.
    // A claim sent again after a failed round trip keeps its token: if the first one did commit,
    // the lease it took is found holding this token and the claim is won, not refused.
    // The database starts the lease when it runs the claim, after this send: counted from here,
    // the lease ends no later than the database says. The call and the record of its result
    // must fit in what is left (lease_window; a timeout too long for the lease is cut to fit).
    const auto window = lease_window(int64_t{d_.lease_seconds} * 1000, j->d.timeout_ms);
    if (j->lease_token == 0) {
      j->lease_token = make_lease_token(d_.run_id, ++claim_seq_);
      j->send_by_ms = steady_now + window.send_within_ms;
    } else {
      // Sent again: the lease asked for now may be shorter than at the first send (a reload of
      // claim_lease_seconds in between), and the earlier of the two ends counts.
      j->send_by_ms = std::min(j->send_by_ms, steady_now + window.send_within_ms);
    }
    j->d.timeout_ms = window.timeout_ms;
    refs->push_back({j->d.key, j->d.kind, j->d.source, j->d.event_id, j->d.destination, j->d.url,
                     j->d.origin_topic, j->d.received_at_ms, j->lease_token, j->d.attempt - 1});
  }
  auto audit = std::make_shared<std::vector<InboundEventRecord>>(std::move(audit_));
  audit_.clear();
  audit_out_ = audit;
  claims_.submit([this, refs, audit, lease_seconds = d_.lease_seconds] {
    WorkerEvent e;
    e.kind = WorkerEvent::Kind::kClaimed;
    auto t0 = std::chrono::steady_clock::now();
    e.claimed = d_.claim_store->claim_and_audit(*refs, *audit, d_.worker_id, lease_seconds);
    e.seconds = seconds_since(t0);
    d_.post(std::move(e));
  });
}

// Events sent on their own (see the header): never held by claims, never holding them.
void StoreBatcher::flush_inbound(int64_t now) {
  if (inbound_.busy() || !inbound_.has_queued() || now < inbound_retry_at_) return;
  const auto& batch = inbound_.start();
  inbound_.submit([this, &batch] {
    WorkerEvent e;
    e.kind = WorkerEvent::Kind::kInbound;
    auto t0 = std::chrono::steady_clock::now();
    auto r = d_.inbound_store->record_inbound(batch);
    e.seconds = seconds_since(t0);
    if (!r) e.stored = Unexpected{r.error()};
    d_.post(std::move(e));
  });
}

void StoreBatcher::flush_records(int64_t now) {
  if (!usable(now) || !records_.due(now)) return;
  const auto& batch = records_.start();
  auto records = std::make_shared<std::vector<AttemptRecord>>();
  records->reserve(batch.size());
  for (const auto& j : batch) records->push_back(attempt_record(*j));
  records_.submit([this, records] {
    WorkerEvent e;
    e.kind = WorkerEvent::Kind::kRecorded;
    auto t0 = std::chrono::steady_clock::now();
    auto r = d_.record_store->record(*records, d_.worker_id);
    if (r) {
      e.unparked = std::move(*r);
    } else {
      e.stored = Unexpected{r.error()};
    }
    e.seconds = seconds_since(t0);
    d_.post(std::move(e));
  });
}

template <class T>
std::vector<T> StoreBatcher::after_failure(StoreLane<T>& lane, std::vector<T> batch, const Error& e,
                                           std::string_view op, int64_t now, bool holds) {
  bool outage = holds ? failed(e, op, now) : e.retryable;
  if (outage || batch.size() > 1) {
    // An outage: tried again once the store answers. A permanent error on a batch: its items
    // go one per round trip until the one refused is found.
    if (!outage) lane.isolate(batch.size());
    lane.put_back(std::move(batch));
    return {};
  }
  d_.metrics->store_rejected(op);
  return batch;
}

StoreBatcher::Claimed StoreBatcher::on_claimed(const WorkerEvent& e, int64_t now) {
  d_.metrics->postgres("claim", e.seconds, e.claimed ? "" : e.claimed.error().code);
  auto jobs = claims_.finish();
  auto audit = std::move(audit_out_);
  audit_out_.reset();
  if (audit && !audit->empty() && !e.claimed)
    audit_not_stored(std::move(*audit), e.claimed.error());
  Claimed out;
  if (!e.claimed) {
    for (auto& j : after_failure(claims_, std::move(jobs), e.claimed.error(), "claim", now, true)) {
      out.rejected.emplace_back(std::move(j), e.claimed.error());
    }
    return out;
  }
  ok();
  out.answered.reserve(jobs.size());
  for (std::size_t i = 0; i < jobs.size(); ++i)
    out.answered.emplace_back(std::move(jobs[i]), (*e.claimed)[i]);
  return out;
}

StoreBatcher::Recorded StoreBatcher::on_recorded(const WorkerEvent& e, int64_t now) {
  d_.metrics->postgres("record", e.seconds, e.stored ? "" : e.stored.error().code);
  auto jobs = records_.finish();
  Recorded out;
  if (!e.stored) {
    for (auto& j :
         after_failure(records_, std::move(jobs), e.stored.error(), "record", now, true)) {
      out.rejected.emplace_back(std::move(j), e.stored.error());
    }
    return out;
  }
  ok();
  if (e.unparked.empty()) {
    out.recorded = std::move(jobs);
    return out;
  }
  std::set<std::string_view> unparked(e.unparked.begin(), e.unparked.end());
  for (auto& j : jobs) {
    if (j->decision.next == NextState::kParked && unparked.count(j->d.key)) {
      out.unparked.push_back(std::move(j));
    } else {
      out.recorded.push_back(std::move(j));
    }
  }
  return out;
}

// The audit never holds up deliveries: an outage here holds no partition, and its batch waits
// (up to kMaxInboundBacklog events) for the next round trip.
void StoreBatcher::on_inbound(const WorkerEvent& e, int64_t now) {
  d_.metrics->postgres("inbound", e.seconds, e.stored ? "" : e.stored.error().code);
  auto batch = inbound_.finish();
  if (e.stored) return;
  const Error& err = e.stored.error();
  // Tried again no sooner than claims and records are in an outage.
  if (err.retryable) inbound_retry_at_ = now + kDbRetryMs;
  if (inbound_.queued().size() >= kMaxInboundBacklog) return;
  for (const auto& refused :
       after_failure(inbound_, std::move(batch), err, "inbound", now, false)) {
    spdlog::error(
        "msg=inbound_event_refused source={} event_id={} code={} error={} action=\"not audited\"",
        log_quote(refused.source), log_quote(refused.event_id), err.code, log_quote(err.message));
  }
}

void StoreBatcher::audit_not_stored(std::vector<InboundEventRecord> batch, const Error& e) {
  if (e.retryable) {
    batch.insert(batch.end(), std::make_move_iterator(audit_.begin()),
                 std::make_move_iterator(audit_.end()));
    audit_ = std::move(batch);
    if (audit_.size() > kMaxInboundBacklog) audit_.resize(kMaxInboundBacklog);
    return;
  }
  // Refused for good: the audit may be what the store refused. The claims go again without it,
  // and the audit lane finds the event refused, if it is one of them.
  for (auto& ev : batch) {
    if (inbound_.queued().size() < kMaxInboundBacklog) inbound_.push(std::move(ev));
  }
  inbound_.isolate(inbound_.queued().size());
}

bool StoreBatcher::failed(const Error& e, std::string_view op, int64_t now) {
  if (!e.retryable) {
    // The store answered: it is up, and this batch (or one row of it) is what it refused.
    spdlog::error(
        "msg=postgres_refused op={} code={} error={} action=\"isolating the refused delivery\"", op,
        e.code, log_quote(e.message));
    ok();
    return false;
  }
  retry_at_ = now + kDbRetryMs;
  if (down_) return true;
  down_ = true;
  d_.metrics->postgres_up().Set(0);
  spdlog::error(
      "msg=postgres_unavailable op={} code={} error={} action=\"pausing consumption; claimed "
      "work continues\"",
      op, e.code, log_quote(e.message));
  if (d_.on_outage) d_.on_outage();
  return true;
}

void StoreBatcher::ok() {
  if (!down_) return;
  down_ = false;
  d_.metrics->postgres_up().Set(1);
  spdlog::info("msg=postgres_available action=resuming");
  if (d_.on_recovered) d_.on_recovered();
}

std::size_t StoreBatcher::drop_unclaimed(const std::function<bool(const Job&)>& drop) {
  auto& q = claims_.queued();
  auto keep =
      std::remove_if(q.begin(), q.end(), [&](const std::unique_ptr<Job>& j) { return drop(*j); });
  auto n = static_cast<std::size_t>(std::distance(keep, q.end()));
  q.erase(keep, q.end());
  return n;
}

void StoreBatcher::release(std::vector<LeaseRef> leases) {
  if (leases.empty() || down_) return;
  claims_.submit([this, leases = std::move(leases)] {
    auto t0 = std::chrono::steady_clock::now();
    best_effort_done("release", leases.size(), d_.claim_store->release(leases, d_.worker_id),
                     seconds_since(t0));
  });
}

void StoreBatcher::fence(std::vector<CopyFence> fences) {
  if (fences.empty() || down_) return;
  claims_.submit([this, fences = std::move(fences)] {
    auto t0 = std::chrono::steady_clock::now();
    best_effort_done("fence", fences.size(), d_.claim_store->fence(fences), seconds_since(t0));
  });
}

// On the claim lane's thread. Nothing is tried again (see release() and fence()), but a failure
// is logged and counted, so that an operator can tell why stale copies were attempted again or
// why leases ran to their end.
void StoreBatcher::best_effort_done(std::string_view op, std::size_t deliveries,
                                    const Result<void>& done, double seconds) {
  d_.metrics->postgres(op, seconds, done ? "" : done.error().code);
  if (done) return;
  spdlog::warn("msg=postgres_{}_failed deliveries={} code={} error={} action=\"not tried again\"",
               op, deliveries, done.error().code, log_quote(done.error().message));
}

}  // namespace hookrelay
