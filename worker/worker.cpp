#include "worker/worker.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "shared/clock.h"
#include "shared/kafka/wire_contract.h"
#include "shared/log.h"
#include "shared/signing/crypto.h"
#include "worker/message_expander.h"
#include "worker/route_lifecycle.h"

namespace hookrelay {
namespace {

constexpr int kIdlePollMs = 10;
// How long partitions just assigned wait for the key order's look at Postgres (on_assigned).
constexpr int64_t kOrderLookLimitMs = 10'000;

bool any_ordered_route(const Config& config) {
  for (const auto& [source, routes] : config.routes) {
    for (const auto& r : routes) {
      if (r.ordered) return true;
    }
  }
  return false;
}

WorkerDeps with_steady_clock(WorkerDeps d) {
  if (!d.steady_ms) d.steady_ms = steady_clock_ms;
  return d;
}

uint32_t pick_run_id(uint32_t given) {
  return given != 0 ? given : std::max(1u, static_cast<uint32_t>(std::random_device{}()));
}

}  // namespace

Worker::Worker(WorkerDeps deps)
    : d_(with_steady_clock(std::move(deps))),
      config_(std::shared_ptr<const Config>(), d_.config),
      policy_(make_retry_policy(d_.config->retry)),
      intake_(*d_.consumer, *d_.config, policy_.schedule_seconds, *d_.metrics,
              {.has_room = [this] { return has_room(); },
               .take = [this](ConsumedMessage& m,
                              const std::shared_ptr<MessageState>& msg) { take_message(m, msg); }}),
      dispatcher_(
          *d_.config, *d_.sender, d_.now_ms, d_.steady_ms,
          [this](WorkerEvent e) { post(std::move(e)); }, d_.rand01),
      redelivery_(*d_.producer, *d_.metrics, policy_, d_.rand01,
                  [this](WorkerEvent e) { post(std::move(e)); }),
      store_({.claim_store = d_.store,
              .record_store = d_.record_store ? d_.record_store : d_.store,
              .inbound_store = d_.inbound_store ? d_.inbound_store : d_.store,
              .threaded = d_.threaded_db,
              .metrics = d_.metrics,
              .worker_id = d_.worker_id,
              .lease_seconds = d_.config->worker.claim_lease_seconds,
              .run_id = pick_run_id(d_.run_id),
              .steady_ms = d_.steady_ms,
              .batching = d_.config->worker.store_batching,
              .post = [this](WorkerEvent e) { post(std::move(e)); },
              .on_outage =
                  [this] {
                    ready_.store(false);
                    intake_.hold_all();
                  },
              .on_recovered =
                  [this] {
                    ready_.store(!stop_.load());
                    intake_.release_holds();
                  }}) {
  d_.consumer->set_listener({
      .on_assigned = [this](const std::vector<TopicPartition>& tps) { on_assigned(tps); },
      .on_revoked = [this](const std::vector<TopicPartition>& tps) { on_revoked(tps); },
      .on_offset_reset = [this](std::string_view topic) { d_.metrics->offset_reset(topic); },
      .on_error = [this](std::string_view code) { d_.metrics->consumer_error(code); },
  });
  dispatcher_.on_flow_event([this](std::string_view host, std::string_view what) {
    d_.metrics->host_flow_event(host, what);
    if (what != "pause" && host != "other") {
      spdlog::info("msg=host_limit_cut host={} reason={} limit={}", host, what,
                   dispatcher_.host_limit(host));
    }
  });
}

Worker::~Worker() = default;

void Worker::request_stop() {
  stop_.store(true);
  cv_.notify_all();
}

std::string Worker::fatal_error() const {
  std::lock_guard lock(mu_);
  return fatal_;
}

void Worker::post(WorkerEvent e) {
  bool first;
  {
    std::lock_guard lock(mu_);
    first = events_.empty();
    events_.push_back(std::move(e));
  }
  cv_.notify_one();
  // The coordinator waits in poll(); later events of the same batch find it already woken.
  if (first) d_.consumer->wake();
}

bool Worker::events_waiting() {
  std::lock_guard lock(mu_);
  return !events_.empty();
}

void Worker::run() {
  d_.metrics->postgres_up().Set(1);
  while (!stop_.load()) step();
  drain_for_shutdown();
}

void Worker::reconfigure(std::shared_ptr<const Config> config) {
  {
    std::lock_guard lock(mu_);
    pending_config_ = std::move(config);
  }
  d_.consumer->wake();
}

void Worker::apply_pending_config() {
  std::shared_ptr<const Config> next;
  {
    std::lock_guard lock(mu_);
    next = std::move(pending_config_);
  }
  if (!next) return;
  // The old config stays alive as long as a message expanded under it is unfinished.
  config_ = std::move(next);
  // One retry topic per tier, subscribed at start: a new tier count waits for a restart, and
  // until then the running schedule stays (the reload names it).
  RetryConfig retry = config_->retry;
  if (retry.schedule_seconds.size() != policy_.schedule_seconds.size())
    retry.schedule_seconds = policy_.schedule_seconds;
  policy_ = make_retry_policy(retry);
  intake_.reconfigure(*config_);
  dispatcher_.reconfigure(*config_);
  redelivery_.set_policy(policy_);
  store_.set_lease_seconds(config_->worker.claim_lease_seconds);
  store_.set_batching(config_->worker.store_batching);
  spdlog::info("msg=worker_config_applied max_in_flight={} batch_size={} per_host_max_in_flight={}",
               config_->worker.max_in_flight, config_->worker.batch_size,
               config_->worker.per_host_max_in_flight);
}

void Worker::step() {
  apply_pending_config();
  int64_t now = d_.now_ms();
  drain_events(now, false);
  // Once a stop is requested (a signal, or a fatal error met by an event just drained) nothing
  // new is taken, claimed or sent: drain_for_shutdown() finishes what is out.
  if (stop_.load()) return;
  if (d_.key_order) {
    d_.key_order->poll(now);
    if (order_look_ > 0 &&
        (d_.key_order->refreshed(order_look_) || now >= order_look_deadline_ms_)) {
      if (!d_.key_order->refreshed(order_look_)) {
        // Failing (hookrelay_ordered_store_errors_total{op="held"}) or behind other round trips:
        // the partitions go on, as before a look was waited for, rather than stop for good.
        spdlog::warn(
            "msg=ordered_look_late waited_ms={} action=\"taking the assigned partitions; keys "
            "their previous owner held are learned at the next look that comes back\"",
            kOrderLookLimitMs);
        d_.metrics->ordered_look_late();
      }
      order_look_ = 0;
      intake_.release_order_holds();
    }
    // Keys other workers hold, learned since these deliveries were queued here: they wait too.
    if (d_.key_order->learned()) {
      for (auto& queued : queued_behind()) wait_for_key(std::move(queued));
    }
  }
  store_.flush_records(now);
  redelivery_.flush_due(now);
  reclaim_due();
  intake_.resume_due(now);
  if (!intake_.poll(now, events_waiting()))
    drain_events(now, true);  // backlog full: wait for results
  if (stop_.load()) return;   // the same, for the events of that wait
  // The fences of retries acknowledged this step go ahead of its claims on the claim lane: a
  // stale copy read in this very step is judged by them.
  store_.fence(std::move(copy_fences_));
  copy_fences_.clear();
  store_.flush_claims(d_.now_ms());
  park_queued(now);
  dispatcher_.dispatch(d_.now_ms(), [this](std::unique_ptr<Job> j) {
    if (j->circuit_open_until_ms > 0) return defer_for_circuit(std::move(j));
    requeue_unsent(std::move(j));
  });
  release_bounced_leases();
  intake_.store_offsets();
  update_gauges(now);
}

void Worker::take_message(ConsumedMessage& m, const std::shared_ptr<MessageState>& msg) {
  int64_t now = d_.now_ms();
  for (auto name : bad_numeric_headers(m)) {
    spdlog::warn("msg=bad_header topic={} partition={} offset={} header={} value={}", m.topic,
                 m.partition, m.offset, name, log_quote(*m.header(name)));
    d_.metrics->bad_header(name);
  }
  msg->config = config_;  // read once per message: its deliveries see this config throughout
  auto expanded = expand_message(m, *config_);
  if (!expanded) {
    spdlog::error("msg=undeliverable_message topic={} partition={} offset={} code={} error={}",
                  m.topic, m.partition, m.offset, expanded.error().code,
                  log_quote(expanded.error().message));
    auto job = std::make_unique<Job>();
    job->msg = msg;
    const bool unrouted = expanded.error().code == "unknown_route";
    const std::string* named = m.header(header::kDeliveryKey);
    // A retry names its delivery, which Postgres has: it is recorded dead under its own key. A
    // first copy names none the worker wrote (no route was chosen for it yet), so a key it
    // carries is not taken at its word: it could name another delivery.
    const bool recorded = unrouted || (is_retry_topic(m.topic) && named && !named->empty());
    if (recorded) {
      // Dead-lettered under its own key, and its attempts so far kept; finishing it releases
      // the ordered key it may head (KeyOrder::resolved), or what waits behind it would wait
      // for ever.
      job->d = delivery_named_by_headers(m);
      job->history.attempts_made = job->d.attempt - 1;
      job->history.first_attempt_at_ms = job->d.first_attempt_at_ms;
    } else {
      job->d.body = m.value;
      job->d.origin_topic = m.topic;
      // All its headers, for whoever reads the dead letter, but the key it names: not its own,
      // and the DLQ tools would take the dead letter for that delivery's.
      for (const auto& h : m.headers) {
        if (h.first != header::kDeliveryKey) job->d.carried_headers.push_back(h);
      }
    }
    job->history.last_error = expanded.error().message;
    msg->pending = 1;
    in_flight_.fetch_add(1);
    if (recorded) {
      // Postgres reads it dead before its dead letter is produced (on_recorded), as for any
      // delivery that dies, so the DLQ listings and `dlq replay` find it. No attempt is made:
      // the row records the attempts so far (attempt_record).
      const auto kind =
          unrouted ? AttemptResult::Kind::kUnknownRoute : AttemptResult::Kind::kMalformed;
      job->decision = decide(job->d, AttemptResult::none(kind), policy_, now, d_.rand01);
      job->started_ms = now;
      store_.record(std::move(job));
      return;
    }
    if (expanded.error().code == "unknown_source") {
      // Accepted by ingest all the same: audited like any other webhook, and its dead letter
      // keeps the whole message for `dlq replay --unknown-sources`.
      const std::string* event_id = m.header(header::kEventId);
      auto received = m.header_int(header::kReceivedAt, 0, kMaxTimestampMs);
      if (event_id && received)
        audit_first_copy(m, *m.header(header::kSource), *event_id, *received);
      redeliver(std::move(job), AttemptResult::Kind::kUnknownSource, now);
      return;
    }
    redeliver(std::move(job), AttemptResult::Kind::kMalformed, now);
    return;
  }
  if (expanded->empty()) {  // no route takes it: its source has none, or every filter said no
    // It was accepted all the same, so it is audited like any other webhook.
    if (m.topic == kWebhooksTopic) {
      // expand_message checked these headers before it found no route.
      const std::string* source = m.header(header::kSource);
      const std::string* event_id = m.header(header::kEventId);
      auto received = m.header_int(header::kReceivedAt, 0, kMaxTimestampMs);
      if (source && event_id && received) audit_first_copy(m, *source, *event_id, *received);
    }
    intake_.finish(*msg);
    return;
  }
  if (m.topic == kWebhooksTopic || m.topic == kCallsTopic) {
    const Delivery& first = expanded->front();
    audit_first_copy(m, first.source, first.event_id, first.received_at_ms);
  }
  msg->pending = static_cast<int>(expanded->size());
  const bool first_copy = m.topic == kWebhooksTopic || m.topic == kCallsTopic;
  const auto polled = StageTimes::Clock::now();
  for (auto& d : *expanded) {
    auto job = std::make_unique<Job>();
    job->d = std::move(d);
    job->msg = msg;
    job->stages.kafka_ms = first_copy ? m.timestamp_ms : -1;
    job->stages.polled_ms = now;
    job->stages.polled = polled;
    in_flight_.fetch_add(1);
    store_.claim(std::move(job));
  }
}

// Where the first copy of a webhook or a call lies in Kafka: a succeeded delivery is resent from
// it. A call's row keeps no body hash (nothing reads one for calls; the row stays narrow).
void Worker::audit_first_copy(const ConsumedMessage& m, const std::string& source,
                              const std::string& event_id, int64_t received_at_ms) {
  std::string body_hash;
  if (m.topic == kWebhooksTopic)
    body_hash = hex_encode(sha256(m.value ? std::string_view(*m.value) : std::string_view()));
  store_.audit(
      {source, event_id, m.topic, m.partition, m.offset, received_at_ms, std::move(body_hash)});
}

void Worker::on_claimed(const WorkerEvent& e, int64_t now) {
  auto claimed = store_.on_claimed(e, now);
  for (auto& [job, error] : claimed.rejected) {
    spdlog::error("msg=claim_refused key={} code={} error={} action=dead_letter",
                  log_quote(job->d.key), error.code, log_quote(error.message));
    job->history.attempts_made = job->d.attempt - 1;
    job->history.first_attempt_at_ms = job->d.first_attempt_at_ms;
    job->history.last_error = "claim refused by the store (" + error.code + "): " + error.message;
    redeliver(std::move(job), AttemptResult::Kind::kStoreRejected, now);
  }
  const auto claimed_at = StageTimes::Clock::now();
  for (auto& [job, status] : claimed.answered) {
    job->stages.claimed = claimed_at;
    switch (status) {
      case ClaimStatus::kClaimed:
        if (stop_.load()) {  // shutting down: give the lease back, the message is replayed
          abandoned_leases_.push_back(job->lease());
          in_flight_.fetch_sub(1);
          break;
        }
        if (local_keys_.insert(job->d.key).second) {
          job->holds_key = true;
          if (route_suspended(*job)) {
            park(std::move(job), now);
            break;
          }
          if (d_.key_order && d_.key_order->must_wait(job->d)) {
            wait_for_key(std::move(job));
            break;
          }
          dispatcher_.enqueue(std::move(job));
          break;
        }
        // The same delivery is still finishing here (a retry read back before the produce of its
        // retry message was acknowledged): let that one finish. This claim's lease is given back
        // once the bounce is published, or it would refuse the bounce's claim until it expires.
        // The attempt finishing here settles the key's order (it holds the key if it fails).
        job->give_back_lease = true;
        if (stop_.load()) {  // a stop requested since the check above: its lease goes back too
          abandoned_leases_.push_back(job->lease());
          in_flight_.fetch_sub(1);
          break;
        }
        redeliver(std::move(job), AttemptResult::Kind::kNotAttempted, now);
        break;
      case ClaimStatus::kLeasedElsewhere:
        if (stop_.load()) {
          in_flight_.fetch_sub(1);  // not finished: replayed from the last committed offset
          break;
        }
        bounce_leased(std::move(job), now);
        break;
      case ClaimStatus::kAlreadySucceeded:
        d_.metrics->idempotent_skip("already_succeeded");
        d_.metrics->delivery("skipped");
        finish(std::move(job));
        break;
      case ClaimStatus::kSuperseded:
        // A copy read again (after a rebalance or restart) whose delivery goes on in a newer
        // copy, already in a retry tier: attempted now, it would start a second retry chain
        // ahead of the first one's backoff. Not done: an ordered key it may head stays held.
        d_.metrics->idempotent_skip("superseded");
        d_.metrics->delivery("skipped");
        finish(std::move(job), false);
        break;
      case ClaimStatus::kAlreadyDead:
        // Dead in Postgres, but its dead letter may never have reached the DLQ topic: a worker
        // that stopped between recording and producing it leaves this message to be replayed.
        // Publishing it again keeps Postgres and the DLQ in agreement; a second dead letter for
        // one key is harmless (dlq show and replay take the latest).
        d_.metrics->idempotent_skip("already_dead");
        job->history.last_error = "recorded dead before; its dead letter is published again";
        redeliver(std::move(job), AttemptResult::Kind::kAlreadyDead, now);
        break;
    }
  }
}

// Another attempt is under way elsewhere, or a worker stopped (crashed) with the request out and
// its lease runs on: the delivery comes back after the first tier's delay, spending no attempt,
// and is skipped as already succeeded if that attempt succeeded. A delivery of an ordered route
// holds its key meanwhile, as a failed head does: its key's later deliveries must not be sent
// before it, and the attempt out elsewhere may well have failed (or never reached the receiver).
void Worker::bounce_leased(std::unique_ptr<Job> job, int64_t now) {
  if (d_.key_order && d_.key_order->must_wait(job->d)) {
    // Its key is held by another delivery: it waits behind that head in Postgres, in the order
    // it was read, like any delivery of a held key. Sent to the retry tier instead, copies of
    // one key bounced together came back together after the key was free, and went out side by
    // side in any order. The lease stays its holder's; released, it is claimed like a retry.
    // Should it not wait (it is the key's head itself, or Postgres refused it), it is not this
    // worker's to send: it goes to the retry tier as before.
    wait_for_key(std::move(job), [this](std::unique_ptr<Job> j) {
      redeliver(std::move(j), AttemptResult::Kind::kNotAttempted, d_.now_ms());
    });
    return;
  }
  if (d_.key_order && d_.key_order->take_head(job->d)) {
    hold_key(std::move(job), queued_behind(), [this](std::unique_ptr<Job> j) {
      redeliver(std::move(j), AttemptResult::Kind::kNotAttempted, d_.now_ms());
    });
    return;
  }
  redeliver(std::move(job), AttemptResult::Kind::kNotAttempted, now);
}

// A copy bounced because another worker held the delivery, whose retry Kafka refused for good.
// While the holder lives, its attempt decides the delivery's state; but the holder may have
// stopped (crashed) with the lease, and this copy may be the last one Kafka has: its offset must
// not go with nothing left to bring the delivery back, in flight for good. A dead letter would
// not do either: Postgres does not have the delivery dead, so it could not be replayed. So the
// copy stays unfinished here (its offset is not stored, as for a dead letter Kafka refuses) and
// is claimed again once the holder's lease has ended: the claim then finds the delivery finished
// (skipped), or takes it over and attempts it, or finds it leased again and bounces it again,
// one claim and one produce per lease at most. An ordered key it holds here stays held
// meanwhile. The partition's later messages go on; only its committed offset waits.
void Worker::wait_for_lease(std::unique_ptr<Job> job) {
  // Its retry was refused after its partition went to another worker (or back in a new
  // generation): the owner reads the message again from the uncommitted offset.
  if (!intake_.current(*job->msg)) {
    in_flight_.fetch_sub(1);
    return;
  }
  d_.metrics->lease_wait();
  // The holder's claim was made before this copy's claim was refused, so its lease ends within
  // a lease from now (the lease it was given may be longer only after a reload).
  const int64_t lease_ms = int64_t{config_->worker.claim_lease_seconds} * 1000;
  spdlog::warn(
      "msg=bounce_refused key={} error={} action=\"claiming it again in {} ms, once the lease "
      "another worker holds has ended\"",
      log_quote(job->d.key), log_quote(job->history.last_error), lease_ms);
  // Claimed afresh: a token of its own, a window counted from the new claim, and no decision.
  job->lease_token = 0;
  job->send_by_ms = 0;
  job->decision = Decision{};
  job->history = AttemptHistory{};
  // It holds no lease, no call and no slot while it waits: it does not count against
  // max_in_flight (a worker replaying many copies a dead worker held would take nothing else
  // for a lease), and counts again from its new claim.
  in_flight_.fetch_sub(1);
  lease_waits_.emplace_back(d_.steady_ms() + lease_ms, std::move(job));
}

void Worker::reclaim_due() {
  if (lease_waits_.empty()) return;
  const int64_t steady = d_.steady_ms();
  auto due = std::stable_partition(lease_waits_.begin(), lease_waits_.end(),
                                   [steady](const auto& w) { return w.first > steady; });
  for (auto it = due; it != lease_waits_.end(); ++it) {
    in_flight_.fetch_add(1);
    it->second->stages.polled = StageTimes::Clock::now();  // its claim_wait starts now
    store_.claim(std::move(it->second));
  }
  lease_waits_.erase(due, lease_waits_.end());
}

std::vector<std::unique_ptr<Job>> Worker::queued_behind() {
  return dispatcher_.take_queued([this](const Job& q) { return d_.key_order->must_wait(q.d); });
}

void Worker::hold_key(std::unique_ptr<Job> job, std::vector<std::unique_ptr<Job>> behind,
                      std::function<void(std::unique_ptr<Job>)> then,
                      std::function<void(std::unique_ptr<Job>)> lost) {
  // The hold is in Postgres before the job moves on, and before any delivery waits behind it: a
  // worker that reads the key meanwhile (after a crash or a rebalance) never finds it without a
  // head.
  if (!lost) {
    lost = [this](std::unique_ptr<Job> j) {
      finish(std::move(j), false);  // it waits behind another worker's head (KeyOrder::hold)
    };
  }
  d_.key_order->hold(std::move(job), std::move(then), std::move(lost));
  for (auto& queued : behind) wait_for_key(std::move(queued));
}

void Worker::redeliver(std::unique_ptr<Job> job, AttemptResult::Kind kind, int64_t now) {
  redeliver(std::move(job), AttemptResult::none(kind), now);
}

void Worker::redeliver(std::unique_ptr<Job> job, const AttemptResult& result, int64_t now) {
  if (result.kind == AttemptResult::Kind::kNotAttempted ||
      result.kind == AttemptResult::Kind::kCircuitOpen) {
    job->history.attempts_made = job->d.attempt - 1;
    job->history.first_attempt_at_ms = job->d.first_attempt_at_ms;
  }
  job->decision = decide(job->d, result, policy_, now, d_.rand01);
  if (job->decision.next == NextState::kRetrying) job->history.due_at_ms = job->decision.due_at_ms;
  if (job->decision.next == NextState::kDead && job->give_back_lease && job->holds_key) {
    // Dies unsent under a claim of its own (its host's circuit stayed open until max_age, or
    // no tier is left to wait in): Postgres reads it dead before its dead letter is produced,
    // as for any delivery that dies, and the record gives its lease back.
    job->give_back_lease = false;
    job->started_ms = now;
    job->duration_ms = 0;
    if (job->history.last_error.empty())
      job->history.last_error =
          std::string("not attempted: ") + dead_reason_name(job->decision.reason);
    store_.record(std::move(job));
    return;
  }
  redelivery_.publish(std::move(job));
}

// The host's circuit is open: the delivery waits in a retry tier until it turns half-open (or a
// Retry-After paused the host for long: until the pause ends).
void Worker::defer_for_circuit(std::unique_ptr<Job> job) {
  if (job->deferred_for_pause) {
    d_.metrics->pause_deferral();
  } else {
    d_.metrics->circuit_deferral();
  }
  job->give_back_lease = true;
  send_back_unsent(std::move(job), [this](std::unique_ptr<Job> j) {
    const int64_t now = d_.now_ms();
    const int64_t remaining = std::max<int64_t>(0, j->circuit_open_until_ms - now);
    redeliver(std::move(j), AttemptResult::circuit_open(remaining), now);
  });
}

// An ordered route's delivery that goes back unsent keeps its key's order, as a failed attempt
// does: it holds the key when the key is free (the key's deliveries queued here wait behind it),
// and waits behind the head when another delivery holds the key (learned since it was queued).
// The head itself, or any other delivery, goes on to `then`.
void Worker::send_back_unsent(std::unique_ptr<Job> job,
                              std::function<void(std::unique_ptr<Job>)> then) {
  if (d_.key_order && d_.key_order->must_wait(job->d)) {
    // Should it not wait, it goes on to `then` all the same: the dispatcher would only send it
    // back again (its lease no longer covers a call, or its host's circuit is open), at every
    // pass, for good when Postgres keeps refusing its wait.
    wait_for_key(std::move(job), then);
    return;
  }
  if (d_.key_order && d_.key_order->take_head(job->d)) {
    hold_key(std::move(job), queued_behind(), std::move(then));
    return;
  }
  then(std::move(job));
}

// A claimed delivery waited in the dispatcher (its host paused or at its limit, its route or rate
// full) until its lease no longer covers the call. Sent now, it could be sent twice: once the
// lease ends another worker may claim it (a copy read after a rebalance, a provider's resend).
// So it is not sent: it goes back to the first retry tier without an attempt, as a delivery
// leased elsewhere does (an ordered route's key stays held meanwhile), its lease is given back
// once that is acknowledged, and it is claimed afresh when it comes back.
void Worker::requeue_unsent(std::unique_ptr<Job> job) {
  d_.metrics->lease_requeue();
  job->give_back_lease = true;
  send_back_unsent(std::move(job), [this](std::unique_ptr<Job> j) {
    redeliver(std::move(j), AttemptResult::lease_ran_short(), d_.now_ms());
  });
}

// A delivery bounced under a lease of its own (deferred for an open circuit, or claimed while the
// same delivery was finishing here) has its retry message acknowledged: its lease is given back,
// so its claim when it comes back (before claim_lease_seconds may have passed) is not refused as
// leased elsewhere and bounced again. One round trip for the step's bounces, on the claim lane,
// ahead of any later claim of the same keys.
void Worker::release_bounced_leases() {
  if (bounced_leases_.empty()) return;
  store_.release(std::move(bounced_leases_));
  bounced_leases_.clear();
}

void Worker::drain_events(int64_t now, bool wait) {
  std::vector<WorkerEvent> events;
  {
    std::unique_lock lock(mu_);
    // A stop ends a step's wait, but not the drain's (it waits for results, or it would spin
    // for the whole grace).
    if (wait && events_.empty() && (draining_ || !stop_.load()))
      cv_.wait_for(lock, std::chrono::milliseconds(kIdlePollMs));
    events.swap(events_);
  }
  for (auto& e : events) {
    switch (e.kind) {
      case WorkerEvent::Kind::kClaimed:
        on_claimed(e, now);
        break;
      case WorkerEvent::Kind::kRecorded:
        on_recorded(e, now);
        break;
      case WorkerEvent::Kind::kInbound:
        store_.on_inbound(e, now);
        break;
      case WorkerEvent::Kind::kHttp:
        on_http_result(dispatcher_.take(e.job), e.http, now);
        break;
      case WorkerEvent::Kind::kProduced:
        on_produced(e, now);
        break;
    }
  }
}

void Worker::on_produced(const WorkerEvent& e, int64_t now) {
  if (auto job = redelivery_.on_produced(e, now)) {
    if (job->give_back_lease) bounced_leases_.push_back(job->lease());
    // The retry after an attempt is in Kafka: a copy with fewer attempts, read again after a
    // rebalance or restart, is stale from now on (a bounce's copy has the count its claim set).
    if (job->decision.next == NextState::kRetrying && job->decision.attempt)
      copy_fences_.push_back({job->d.key, job->history.attempts_made, job->started_ms});
    finish(std::move(job));
    return;
  }
  for (auto& job : redelivery_.take_to_record()) {
    const bool attempted = job->decision.attempt.has_value();  // this turn made a call or parked
    if (!attempted && !job->give_back_lease) {
      // A copy bounced because another worker holds the delivery: neither recorded nor
      // dead-lettered here, the holder decides its state. It waits for the holder's lease to
      // end instead (wait_for_lease).
      wait_for_lease(std::move(job));
      continue;
    }
    // A bounce under a lease of its own still holds it, and the record gives it back. Any other
    // job's lease went back with its last record: it is recorded dead under no lease (token 0),
    // which moves the delivery only while no worker holds one.
    if (!job->give_back_lease) job->lease_token = 0;
    job->give_back_lease = false;
    if (!attempted) {  // audited as no attempt (attempt_record), at this moment
      job->started_ms = now;
      job->duration_ms = 0;
    }
    store_.record(std::move(job));
  }
  if (const auto& fatal = redelivery_.fatal()) {
    {
      std::lock_guard lock(mu_);
      if (!fatal_.empty()) return;
      fatal_ = *fatal;
    }
    request_stop();
  }
}

void Worker::on_http_result(std::unique_ptr<Job> job, const HttpResult& r, int64_t now) {
  job->stages.answered = StageTimes::Clock::now();
  auto& d = job->d;
  std::optional<int64_t> retry_after;
  if (r.retry_after) retry_after = parse_retry_after(*r.retry_after, now);
  auto result = AttemptResult::http(r.error, r.status, retry_after);
  job->decision = decide(d, result, policy_, now, d_.rand01);
  note_route_attempt(*job, r, now);
  const Decision& decision = job->decision;
  // A failed attempt of an ordered route holds its key: the key's later deliveries queued here
  // wait too, taken out before releasing the order gate would start the next of them.
  const bool holds_key =
      d_.key_order && decision.next == NextState::kRetrying && d_.key_order->take_head(d);
  std::vector<std::unique_ptr<Job>> behind;
  if (holds_key) behind = queued_behind();
  dispatcher_.release(*job, r, decision.outcome);
  d_.metrics->attempt(d.destination, decision.outcome.label,
                      static_cast<double>(r.duration_ms) / 1000.0);
  auto& h = job->history;
  h.attempts_made = d.attempt;
  h.first_attempt_at_ms = d.first_attempt_at_ms > 0 ? d.first_attempt_at_ms : job->started_ms;
  h.last_attempt_at_ms = job->started_ms;
  h.last_status = r.status;
  h.last_error = r.error == TransportError::kNone
                     ? (decision.next == NextState::kSucceeded
                            ? ""
                            : "HTTP " + std::to_string(r.status) + ": " + r.message)
                     : r.message;
  if (decision.next == NextState::kRetrying) h.due_at_ms = decision.due_at_ms;
  job->duration_ms = static_cast<int>(r.duration_ms);
  if (!holds_key && d_.key_order && decision.next == NextState::kRetrying &&
      d_.key_order->must_wait(d)) {
    // Its key is held by another delivery this worker knows of (learned while this attempt was
    // out): a retry of its own would be the key's second head and could overtake the deliveries
    // waiting behind the first. It waits behind that head, with this attempt's retry message, as
    // a lost hold does; should Postgres have made it the head meanwhile, its retry goes as one.
    d_.key_order->wait(std::move(job), [this](std::unique_ptr<Job> j, bool waiting) {
      j->wait_after_record = waiting;
      store_.record(std::move(j));
    });
    return;
  }
  if (holds_key) {  // the hold is in Postgres before the retry is recorded and published
    hold_key(
        std::move(job), std::move(behind),
        [this](std::unique_ptr<Job> j) { store_.record(std::move(j)); },
        [this](std::unique_ptr<Job> j) {
          // Another worker's head has the key, and this attempt waits behind it with its retry
          // message: recorded (the record gives its lease back), it is finished.
          j->wait_after_record = true;
          store_.record(std::move(j));
        });
    return;
  }
  store_.record(std::move(job));
}

void Worker::wait_for_key(std::unique_ptr<Job> job,
                          std::function<void(std::unique_ptr<Job>)> otherwise) {
  d_.key_order->wait(std::move(job), [this, otherwise = std::move(otherwise)](
                                         std::unique_ptr<Job> j, bool waiting) {
    if (waiting) {
      // Its message is finished here, the delivery is not: it waits in Postgres. It may even be
      // its key's head already (released by another worker as soon as it was stored), and must
      // not release the next as if it were done.
      finish(std::move(j), false);
    } else if (otherwise) {
      otherwise(std::move(j));
    } else if (route_suspended(*j)) {
      // Its route was suspended while Postgres was asked (park_queued() ran without it): parked
      // as the deliveries queued then were, not sent to the suspended route.
      park(std::move(j), d_.now_ms());
    } else {
      // Its key's head itself (this worker's view was old), or refused for good by Postgres.
      dispatcher_.enqueue(std::move(j));
    }
  });
}

// The stages this turn passed through, into hookrelay_worker_stage_seconds.
void Worker::observe_stages(const StageTimes& t) {
  using Stage = WorkerMetrics::Stage;
  if (t.kafka_ms >= 0 && t.polled_ms >= t.kafka_ms)
    d_.metrics->stage(Stage::kBroker, static_cast<double>(t.polled_ms - t.kafka_ms) / 1000.0);
  const StageTimes::Clock::time_point marks[] = {t.polled, t.claim_sent, t.claimed,
                                                 t.sent,   t.answered,   StageTimes::Clock::now()};
  const Stage stages[] = {Stage::kClaimWait, Stage::kClaim, Stage::kDispatchWait, Stage::kHttp,
                          Stage::kRecord};
  for (std::size_t i = 0; i < std::size(stages); ++i) {
    if (marks[i] == StageTimes::Clock::time_point{} || marks[i + 1] < marks[i]) continue;
    d_.metrics->stage(stages[i], std::chrono::duration<double>(marks[i + 1] - marks[i]).count());
  }
}

void Worker::on_recorded(const WorkerEvent& e, int64_t now) {
  auto recorded = store_.on_recorded(e, now);
  for (auto& job : recorded.recorded) {
    observe_stages(job->stages);
    if (job->decision.next == NextState::kSucceeded) {
      d_.metrics->delivery("succeeded");
      finish(std::move(job));
    } else if (job->wait_after_record && job->decision.next == NextState::kRetrying) {
      finish(std::move(job), false);  // it waits behind another worker's head (hold_key)
    } else {
      redelivery_.publish(std::move(job));
    }
  }
  for (auto& job : recorded.unparked) {
    // Its route was resumed after this worker decided to park it: recorded 'retrying', it goes
    // to the first tier, due now, like a bounce.
    observe_stages(job->stages);
    spdlog::info(
        "msg=park_undone key={} source={} route={} action=\"retrying: the route was "
        "resumed\"",
        log_quote(job->d.key), job->d.source, job->d.destination);
    job->decision.next = NextState::kRetrying;
    job->decision.tier = 0;
    job->decision.due_at_ms = now;
    job->history.due_at_ms.reset();
    redelivery_.publish(std::move(job));
  }
  for (auto& [job, error] : recorded.rejected) {
    spdlog::error("msg=record_refused key={} attempt={} code={} error={}", log_quote(job->d.key),
                  job->d.attempt, error.code, log_quote(error.message));
    if (job->decision.next == NextState::kSucceeded) {
      // The call succeeded; only its audit row is missing. A dead letter would invite a second
      // delivery on replay, so it finishes as the success it was.
      d_.metrics->delivery("succeeded");
      finish(std::move(job));
      continue;
    }
    job->history.last_error =
        "attempt record refused by the store (" + error.code + "): " + error.message;
    job->history.due_at_ms.reset();
    auto attempt = job->decision.attempt;
    job->decision = decide(job->d, AttemptResult::none(AttemptResult::Kind::kStoreRejected),
                           policy_, now, d_.rand01);
    if (++job->store_rejections == 1) {
      // Recorded where possible: the same attempt once more, as dead, its error text replaced
      // by the store's reason (a refused text is what usually differs).
      job->decision.attempt = attempt;
      store_.record(std::move(job));
    } else {
      redelivery_.publish(std::move(job));
    }
  }
}

bool Worker::route_suspended(const Job& job) const {
  return d_.routes && job.d.route && d_.routes->suspended(job.d.source, job.d.destination);
}

void Worker::note_route_attempt(Job& job, const HttpResult& r, int64_t now) {
  if (!d_.routes || !job.d.route) return;
  bool gone = d_.routes->attempt(job.d.source, job.d.destination, job.d.route->suspend_after,
                                 attempt_succeeded(job.decision, r.error), r.status, now);
  if (job.decision.next == NextState::kSucceeded) return;
  // The 410 itself, and any failure of a route suspended meanwhile, waits with the others.
  if (gone || route_suspended(job)) {
    job.decision = park_decision(job.decision);
    job.park_suspended_at_ms = park_suspension(job);
  }
}

int64_t Worker::park_suspension(const Job& job) const {
  // A delivery with an ordering key (an ordered route with a named key) stays parked: its key's
  // order is kept by the release (ordered_waiting), which a retry published here would bypass.
  if (KeyOrder::key_of(job.d)) return 0;
  return d_.routes->suspension(job.d.source, job.d.destination).value_or(0);
}

void Worker::park(std::unique_ptr<Job> job, int64_t now) {
  auto& h = job->history;
  h.attempts_made = job->d.attempt - 1;
  h.first_attempt_at_ms = job->d.first_attempt_at_ms;
  h.last_error = "parked: route " + job->d.source + "/" + job->d.destination + " is suspended";
  h.due_at_ms.reset();
  job->started_ms = now;
  job->duration_ms = 0;
  job->decision = park_decision(std::nullopt);
  job->park_suspended_at_ms = park_suspension(*job);
  store_.record(std::move(job));
}

void Worker::park_queued(int64_t now) {
  if (!d_.routes || d_.routes->generation() == routes_generation_) return;
  routes_generation_ = d_.routes->generation();
  for (auto& job : dispatcher_.take_queued([this](const Job& j) { return route_suspended(j); })) {
    park(std::move(job), now);
  }
}

void Worker::finish(std::unique_ptr<Job> job, bool done) {
  // Done without another retry (succeeded, dead, found done): a key it held releases the next.
  if (d_.key_order && done && job->decision.next != NextState::kRetrying &&
      job->decision.next != NextState::kParked) {
    d_.key_order->resolved(job->d);
  }
  // A duplicate bounced while the key was in flight here must not free the key: the next copy
  // would then be sent while the first is still in flight.
  if (job->holds_key) local_keys_.erase(job->d.key);
  in_flight_.fetch_sub(1);
  auto& msg = *job->msg;
  if (--msg.pending > 0) return;
  intake_.finish(msg);
}

void Worker::on_assigned(const std::vector<TopicPartition>& tps) {
  // The keys the partitions' previous owner held are learned by the key order's next look at
  // Postgres, which runs on its own thread: until it is back, a delivery of such a key read here
  // would not know it must wait, and would be sent ahead of that key's head. So the partitions
  // are held until a look started after this assignment has come back (a round trip; every 2 s
  // again while Postgres fails it). Only with ordered routes.
  // hookrelay.calls never carries an ordered delivery, and is not held. The hold lasts
  // kOrderLookLimitMs at most.
  std::vector<TopicPartition> keyed, calls;
  for (const auto& tp : tps) (tp.topic == kCallsTopic ? calls : keyed).push_back(tp);
  const bool for_order = d_.key_order && any_ordered_route(*config_) && !keyed.empty();
  if (for_order) {
    order_look_ = std::max(order_look_, d_.key_order->refresh_soon());
    order_look_deadline_ms_ = d_.now_ms() + kOrderLookLimitMs;
  }
  intake_.assigned(keyed, store_.down(), for_order);
  intake_.assigned(calls, store_.down(), false);
  ready_.store(!store_.down() && !stop_.load());
}

void Worker::on_revoked(const std::vector<TopicPartition>& tps) {
  intake_.revoked(tps);
  std::set<TopicPartition> gone(tps.begin(), tps.end());
  // Unclaimed work of revoked partitions is dropped: the new owner replays it.
  auto dropped = store_.drop_unclaimed([&](const Job& j) { return gone.count(j.msg->tp) > 0; });
  // So are copies waiting for another worker's lease: they hold none here (nor a slot).
  auto waits = std::stable_partition(lease_waits_.begin(), lease_waits_.end(), [&](const auto& w) {
    return gone.count(w.second->msg->tp) == 0;
  });
  lease_waits_.erase(waits, lease_waits_.end());
  in_flight_.fetch_sub(static_cast<int>(dropped));
}

void Worker::update_gauges(int64_t now) {
  if (now < next_gauges_at_) return;
  next_gauges_at_ = now + 1000;
  d_.metrics->in_flight().Set(in_flight_.load());
  d_.metrics->paused_partitions().Set(static_cast<double>(intake_.paused_count()));
  d_.metrics->backlog().Set(static_cast<double>(intake_.backlog_size()));
  d_.metrics->retries_waiting().Set(static_cast<double>(intake_.waiting_count()));
  d_.metrics->ready().Set(ready_.load() ? 1 : 0);
  auto c = dispatcher_.circuit_counts();
  d_.metrics->circuits(static_cast<double>(c.closed), static_cast<double>(c.open),
                       static_cast<double>(c.half_open));
  // A topic none of whose partitions this worker holds any more (a rebalance gave them all to
  // another) has no lag here: its series goes to 0, or the group's sum would count the last
  // value twice for as long as this worker runs.
  auto lags = d_.consumer->lag_by_topic();
  std::set<std::string> held;
  for (const auto& tp : d_.consumer->assignment()) held.insert(tp.topic);
  for (const auto& topic : lag_topics_) {
    if (!held.count(topic)) lags.try_emplace(topic, 0);
  }
  for (const auto& [topic, lag] : lags) {
    d_.metrics->lag(topic, static_cast<double>(lag));
    lag_topics_.insert(topic);
  }
  // Before prune(): a host forgotten there is back at its maximum, as reported here.
  dispatcher_.each_host_limit(
      [this](const std::string& host, int limit) { d_.metrics->host_inflight_limit(host, limit); });
  if (d_.host_states) d_.host_states->offer(dispatcher_.host_states());
  dispatcher_.prune();
}

void Worker::drain_for_shutdown() {
  ready_.store(false);
  draining_ = true;
  if (d_.key_order) d_.key_order->stop_looking();
  auto deadline = d_.now_ms() + config_->worker.shutdown_grace_ms;
  spdlog::info("msg=worker_draining in_flight={} grace_ms={}", in_flight_.load(),
               config_->worker.shutdown_grace_ms);
  // Nothing new starts: unclaimed work is replayed by whoever owns the partition next, and
  // claimed-but-unsent work gives its lease back so that can happen at once.
  in_flight_.fetch_sub(static_cast<int>(store_.drop_unclaimed([](const Job&) { return true; })));
  std::vector<LeaseRef> unsent;
  auto take_unsent = [&] {
    for (auto& j : dispatcher_.take_unsent()) {
      unsent.push_back(j->lease());
      in_flight_.fetch_sub(1);
    }
  };
  take_unsent();
  // The audit of messages taken in the step the stop interrupted (one finished at once, without
  // a delivery, has its offset committed below): sent on its own lane, waited for as a lane.
  store_.flush_audit(d_.now_ms());
  // After a fatal error (at the stop, or met while draining) Kafka takes no more, or not the
  // dead letters: the calls out and the records of their results are still waited for (a success
  // not recorded would be sent again after a restart), but not the retries and dead letters to
  // publish. Those deliveries stay unfinished, their offsets not stored.
  auto fatal = [this] { return redelivery_.fatal().has_value(); };
  while (d_.now_ms() < deadline && (dispatcher_.calls_out() || store_.records_waiting() ||
                                    (!fatal() && !redelivery_.idle()) || store_.busy() ||
                                    (d_.key_order && !d_.key_order->idle()))) {
    int64_t now = d_.now_ms();
    drain_events(now, true);
    if (d_.key_order && fatal()) d_.key_order->stop_republishing();
    if (d_.key_order) d_.key_order->poll(now);
    store_.flush_records(now);
    store_.flush_audit(now);
    redelivery_.flush_due(now);
    intake_.store_offsets();
  }
  take_unsent();  // put back in the dispatcher meanwhile (a key's head adopted while draining)
  // Copies waiting for another worker's lease hold none (nor a slot): replayed, as unclaimed
  // work is.
  lease_waits_.clear();
  // The leases of calls still out and of results not yet recorded run on: given back, the
  // delivery could be claimed and sent again at once, by the partition's next owner, while the
  // call is still with its receiver. A crash leaves them running too.
  for (auto& l : redelivery_.leases_pending()) unsent.push_back(std::move(l));
  unsent.insert(unsent.end(), abandoned_leases_.begin(), abandoned_leases_.end());
  // Bounces whose retry message was acknowledged while draining give their leases back too, as
  // step() would have: kept, the retry would be refused as leased elsewhere when it comes back.
  unsent.insert(unsent.end(), bounced_leases_.begin(), bounced_leases_.end());
  bounced_leases_.clear();
  store_.release(std::move(unsent));
  store_.fence(std::move(copy_fences_));
  intake_.commit_and_close();
  spdlog::info(
      "msg=worker_stopped abandoned={} note=\"abandoned deliveries are replayed from the last "
      "committed offset\"",
      dispatcher_.out_count() + store_.records_pending() + redelivery_.pending());
}

}  // namespace hookrelay
