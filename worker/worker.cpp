#include "worker/worker.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <random>

#include "shared/crypto.h"
#include "shared/log.h"
#include "shared/topics.h"
#include "worker/delivery_outcome.h"

namespace hookrelay {

struct Worker::MessageState {
  TopicPartition tp;
  int64_t offset = 0;
  uint64_t generation = 0;
  int pending = 0;  // deliveries of this message not yet finished
};

struct Worker::Job {
  Delivery d;
  std::shared_ptr<MessageState> msg;
  std::string host;
  bool holds_slot = false;   // counted in HostConcurrency
  bool holds_key = false;    // the entry in local_keys_ is this job's
  int64_t started_ms = 0;
  AttemptRecord record;
  AttemptHistory history;
  std::string topic_out;     // retry tier or DLQ topic, once decided
  std::string dlq_reason;
  int tier = -1;
  bool malformed = false;    // not a delivery: the raw message goes to the DLQ
  std::string order_gate;    // non-empty while this job holds an ordered route's gate
};

namespace {

constexpr int kIdlePollMs = 10;
// hr-dlq-reason of a dead letter published again for a delivery already dead in Postgres.
constexpr std::string_view kDlqReasonRepublished = "republished";
constexpr int64_t kFullBacklogPollMs = 100;
constexpr int64_t kDbRetryMs = 1000;
constexpr int64_t kReproduceDelayMs = 1000;
constexpr std::size_t kMaxInboundBacklog = 100000;
// Rows per record round trip. The statement costs the same per row at any size (each row is an
// index lookup); the bound keeps one round trip short, so results of the next batch do not
// wait long behind it.
constexpr std::size_t kMaxRecordBatch = 1000;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Worker::Worker(WorkerDeps deps)
    : d_(std::move(deps)),
      config_(*d_.config),
      breaker_({d_.config->worker.breaker_failure_threshold, d_.config->worker.breaker_cooldown_ms}, d_.now_ms),
      concurrency_(d_.config->worker.per_host_max_in_flight) {
  run_id_ = d_.run_id != 0 ? d_.run_id : std::max(1u, static_cast<uint32_t>(std::random_device{}()));
  if (!d_.record_store) d_.record_store = d_.store;
  if (!d_.inbound_store) d_.inbound_store = d_.store;
  claim_lane_ = std::make_unique<DbLane>(d_.threaded_db);
  record_lane_ = std::make_unique<DbLane>(d_.threaded_db);
  inbound_lane_ = std::make_unique<DbLane>(d_.threaded_db);
  if (config_.worker.per_host_rate_per_second > 0) {
    double rate = config_.worker.per_host_rate_per_second;
    rate_ = std::make_unique<RateLimiter>(rate, std::max(1.0, rate), d_.now_ms);
  }
  d_.consumer->set_listener({
      .on_assigned = [this](const std::vector<TopicPartition>& tps) { on_assigned(tps); },
      .on_revoked = [this](const std::vector<TopicPartition>& tps) { on_revoked(tps); },
      .on_offset_reset = [this](std::string_view topic) { d_.metrics->offset_reset(topic); },
      .on_error = [this](std::string_view code) { d_.metrics->consumer_error(code); },
  });
}

Worker::~Worker() = default;

void Worker::request_stop() {
  stop_.store(true);
  cv_.notify_all();
}

void Worker::post(Event e) {
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

void Worker::run() {
  d_.metrics->postgres_up().Set(1);
  while (!stop_.load()) step();
  drain_for_shutdown();
}

void Worker::step() {
  int64_t now = d_.now_ms();
  drain_events(now, false);
  flush_records(now);
  flush_reproduce(now);
  for (auto it = paused_.begin(); it != paused_.end();) {
    auto next = std::next(it);
    if (it->second.resume_at_ms > 0 && it->second.resume_at_ms <= now) {
      it->second.resume_at_ms = 0;
      resume_if_free(it);
    }
    it = next;
  }
  poll_messages(now);
  flush_claims(d_.now_ms());
  dispatch(d_.now_ms());
  store_offsets();
  update_gauges(now);
}

void Worker::poll_messages(int64_t now) {
  // Messages polled while the worker is at max_in_flight wait in a per-partition backlog, so
  // work is at hand the moment capacity frees up. When the backlog is full (half of
  // max_in_flight), messages are left to librdkafka, which stops fetching once its own queue is
  // full (queued.max.messages.kbytes): no pause, so no refetch and no resume delay. poll() still
  // runs every kFullBacklogPollMs to serve the group (rebalances), taking at most one message.
  drain_backlog(now);
  bool busy;
  {
    std::lock_guard lock(mu_);
    busy = !events_.empty();
  }
  std::size_t limit = std::max<std::size_t>(1, static_cast<std::size_t>(config_.worker.max_in_flight) / 2);
  int max = config_.worker.batch_size;
  if (backlog_size_ >= limit) {
    if (now < next_full_poll_at_) {
      drain_events(now, !busy);  // wait for results instead
      return;
    }
    next_full_poll_at_ = now + kFullBacklogPollMs;
    max = 1;
  }
  // With events waiting there is work to do now; otherwise wait for a message or for post() to
  // wake the poll. Never spin: the cores are shared with curl, librdkafka and Postgres.
  auto msgs = d_.consumer->poll(max, busy ? 0 : kIdlePollMs);
  for (auto& m : msgs) take_message(m, now);
}

void Worker::take_message(ConsumedMessage& m, int64_t now) {
  TopicPartition tp{m.topic, m.partition};
  if (generation_.find(tp) == generation_.end()) return;  // not (or no longer) assigned
  auto p = paused_.find(tp);
  // A retry-tier pause sought back to its head: this is fetched again when the head is due.
  if (p != paused_.end() && p->second.seek_offset >= 0) return;
  auto q = backlog_.find(tp);
  if (!may_take(tp) || q != backlog_.end() || in_flight_.load() >= config_.worker.max_in_flight) {
    // Held for Postgres (fetched before the hold took effect: librdkafka resumes after it, so
    // it must be kept), behind earlier messages of its partition, or no room: kept in order.
    backlog_[tp].push_back(std::move(m));
    ++backlog_size_;
    return;
  }
  accept_message(m, now);
}

// A hold for capacity only stops fetching; Postgres being away or a retry not yet due also
// stops taking what was already fetched.
bool Worker::may_take(const TopicPartition& tp) const {
  auto p = paused_.find(tp);
  if (p == paused_.end()) return true;
  return !p->second.for_db && p->second.resume_at_ms == 0 && p->second.seek_offset < 0;
}

// Partitions that may take messages hand their backlog over in offset order while there is room.
void Worker::drain_backlog(int64_t now) {
  for (auto it = backlog_.begin(); it != backlog_.end() && in_flight_.load() < config_.worker.max_in_flight;) {
    const TopicPartition& tp = it->first;
    auto& q = it->second;
    while (!q.empty() && in_flight_.load() < config_.worker.max_in_flight && may_take(tp)) {
      ConsumedMessage m = std::move(q.front());
      q.pop_front();
      --backlog_size_;
      accept_message(m, now);
    }
    if (auto p = paused_.find(tp); p != paused_.end() && p->second.seek_offset >= 0) {
      backlog_size_ -= q.size();  // sought back to a retry not yet due: all of it is fetched again
      q.clear();
    }
    it = q.empty() ? backlog_.erase(it) : std::next(it);
  }
}

void Worker::accept_message(ConsumedMessage& m, int64_t now) {
  d_.metrics->consumed(m.topic);
  TopicPartition tp{m.topic, m.partition};
  auto gen = generation_.find(tp);
  if (gen == generation_.end()) return;  // not (or no longer) assigned
  if (m.topic.rfind(kRetryTopicPrefix, 0) == 0) {
    // A due time beyond the longest tier's delay is not one this worker wrote: it would hold
    // the partition for good, so it is cut to that delay.
    const auto& tiers = config_.retry.schedule_seconds;
    const int64_t longest = tiers.empty() ? 0 : int64_t{*std::max_element(tiers.begin(), tiers.end())} * 1000;
    auto due = std::min(m.header_int(header::kDueAt, 0, kMaxTimestampMs).value_or(0), now + longest);
    if (due > now) {
      auto& p = paused_[tp];
      d_.consumer->pause(tp, m.offset);
      p.seek_offset = m.offset;
      p.resume_at_ms = due;
      return;
    }
  }
  if (!watermarks_.track(tp, m.offset)) return;  // already seen in this assignment
  auto msg = std::make_shared<MessageState>(MessageState{tp, m.offset, gen->second, 0});

  auto expanded = expand_message(m, config_);
  if (!expanded) {
    spdlog::error("msg=undeliverable_message topic={} partition={} offset={} code={} error={}", m.topic, m.partition,
                  m.offset, expanded.error().code, log_quote(expanded.error().message));
    auto job = std::make_unique<Job>();
    job->malformed = true;
    job->msg = msg;
    job->d.body = m.value;
    job->d.origin_topic = m.topic;
    for (const auto& h : m.headers) job->d.carried_headers.push_back(h);
    job->history.last_error = expanded.error().message;
    job->dlq_reason = expanded.error().code == "unknown_route" ? "unknown_route" : "malformed";
    job->topic_out = std::string(kDlqTopic);
    msg->pending = 1;
    in_flight_.fetch_add(1);
    produce_redelivery(std::move(job), now);
    return;
  }
  if (expanded->empty()) {  // a source with no routes: nothing to do
    (void)watermarks_.finish(tp, m.offset);
    return;
  }
  if (m.topic == kWebhooksTopic && inbound_.size() < kMaxInboundBacklog) {
    inbound_.push_back({expanded->front().source, expanded->front().event_id, m.topic, m.partition, m.offset,
                        expanded->front().received_at_ms, hex_encode(sha256(*m.value))});
  }
  msg->pending = static_cast<int>(expanded->size());
  for (auto& d : *expanded) {
    auto job = std::make_unique<Job>();
    job->d = std::move(d);
    job->msg = msg;
    job->host = job->d.host_key;
    in_flight_.fetch_add(1);
    to_claim_.push_back(std::move(job));
  }
}

void Worker::flush_claims(int64_t now) {
  if (claim_busy_ || to_claim_.empty() || !db_usable(now)) return;
  claim_busy_ = true;
  claiming_ = std::move(to_claim_);
  to_claim_.clear();
  auto refs = std::make_shared<std::vector<DeliveryRef>>();
  refs->reserve(claiming_.size());
  for (const auto& j : claiming_) {
    // Every claim has a token of its own, so a claim is one attempt's: see DeliveryStore::claim.
    // A claim sent again after a failed round trip keeps its token: if the first one did commit,
    // the lease it took is found holding this token and the claim is won, not refused.
    int64_t& token = j->record.lease_token;  // the attempt is recorded under its claim's token
    if (token == 0) token = make_lease_token(run_id_, ++claim_seq_);
    refs->push_back({j->d.key, j->d.kind, j->d.source, j->d.event_id, j->d.destination, j->d.url, j->d.origin_topic,
                     j->d.received_at_ms, token});
  }
  claim_lane_->submit([this, refs] {
    Event e;
    e.kind = Event::Kind::kClaimed;
    auto t0 = std::chrono::steady_clock::now();
    e.claimed = d_.store->claim(*refs, d_.worker_id, config_.worker.claim_lease_seconds);
    e.seconds = seconds_since(t0);
    post(std::move(e));
  });
  flush_inbound();
}

// The audit of received events has a lane of its own: it never holds up claims.
void Worker::flush_inbound() {
  if (inbound_busy_ || inbound_.empty()) return;
  inbound_busy_ = true;
  auto inbound = std::make_shared<std::vector<InboundEventRecord>>(std::move(inbound_));
  inbound_.clear();
  inbound_lane_->submit([this, inbound] {
    Event e;
    e.kind = Event::Kind::kInbound;
    auto t0 = std::chrono::steady_clock::now();
    auto r = d_.inbound_store->record_inbound(*inbound);
    d_.metrics->postgres("inbound", seconds_since(t0), r.has_value());
    if (!r) e.inbound_retry = inbound;  // tried again with the next batch
    post(std::move(e));
  });
}

// A batch whose round trip failed goes back in front of its queue, in order: nothing is lost
// or reordered while Postgres is away.
void Worker::put_back(std::vector<std::unique_ptr<Job>> batch, std::vector<std::unique_ptr<Job>>& queue) {
  batch.insert(batch.end(), std::make_move_iterator(queue.begin()), std::make_move_iterator(queue.end()));
  queue = std::move(batch);
}

void Worker::on_claimed(Event& e, int64_t now) {
  claim_busy_ = false;
  d_.metrics->postgres("claim", e.seconds, e.claimed.has_value());
  auto jobs = std::move(claiming_);
  claiming_.clear();
  if (!e.claimed) {
    db_failed(e.claimed.error(), "claim", now);
    put_back(std::move(jobs), to_claim_);
    return;
  }
  db_ok();
  const auto& claimed = e.claimed;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    auto& job = jobs[i];
    switch ((*claimed)[i]) {
      case ClaimStatus::kClaimed:
        if (stop_.load()) {  // shutting down: give the lease back, the message is replayed
          abandoned_keys_.push_back(job->d.key);
          in_flight_.fetch_sub(1);
          break;
        }
        if (local_keys_.insert(job->d.key).second) {
          job->holds_key = true;
          enqueue_claimed(std::move(job));
          break;
        }
        [[fallthrough]];  // the same delivery is already in flight here: let that one finish
      case ClaimStatus::kLeasedElsewhere:
        // Another attempt is under way; come back after the first tier's delay, spending no
        // attempt. If that attempt succeeds, the retry is skipped as already succeeded.
        if (stop_.load()) {
          in_flight_.fetch_sub(1);  // not finished: replayed from the last committed offset
          break;
        }
        bounce(std::move(job), now);
        break;
      case ClaimStatus::kAlreadySucceeded:
        d_.metrics->idempotent_skip("already_succeeded");
        d_.metrics->delivery("skipped");
        finish(std::move(job));
        break;
      case ClaimStatus::kAlreadyDead:
        // Dead in Postgres, but its dead letter may never have reached the DLQ topic: a worker
        // that stopped between recording and producing it leaves this message to be replayed.
        // Publishing it again keeps Postgres and the DLQ in agreement; a second dead letter for
        // one key is harmless (dlq show and replay take the latest).
        d_.metrics->idempotent_skip("already_dead");
        job->dlq_reason = std::string(kDlqReasonRepublished);
        job->topic_out = std::string(kDlqTopic);
        job->history.last_error = "recorded dead before; its dead letter is published again";
        produce_redelivery(std::move(job), now);
        break;
    }
  }
}

void Worker::bounce(std::unique_ptr<Job> job, int64_t now) {
  job->history.attempts_made = job->d.attempt - 1;
  job->history.first_attempt_at_ms = job->d.first_attempt_at_ms;
  job->history.due_at_ms = now + int64_t{config_.retry.schedule_seconds.front()} * 1000;
  job->tier = 0;
  job->topic_out = retry_topic(0);
  produce_redelivery(std::move(job), now);
}

void Worker::enqueue_claimed(std::unique_ptr<Job> job) {
  bool first_attempt = job->msg->tp.topic.rfind(kRetryTopicPrefix, 0) != 0;
  if (job->d.ordered && first_attempt) {
    std::string gate = job->d.destination + "\x1f" + job->msg->tp.topic + "\x1f" + std::to_string(job->msg->tp.partition);
    if (!ordered_busy_.insert(gate).second) {
      ordered_waiting_[gate].push_back(std::move(job));
      return;
    }
    job->order_gate = gate;
  }
  std::string host = job->host;
  queued_[host].push_back(std::move(job));
}

void Worker::release_order_gate(const Job& job) {
  if (job.order_gate.empty()) return;
  auto waiting = ordered_waiting_.find(job.order_gate);
  if (waiting == ordered_waiting_.end() || waiting->second.empty()) {
    ordered_busy_.erase(job.order_gate);
    if (waiting != ordered_waiting_.end()) ordered_waiting_.erase(waiting);
    return;
  }
  auto next = std::move(waiting->second.front());
  waiting->second.pop_front();
  next->order_gate = job.order_gate;
  std::string host = next->host;
  queued_[host].push_back(std::move(next));
}

void Worker::dispatch(int64_t now) {
  for (auto it = queued_.begin(); it != queued_.end();) {
    auto& [host, queue] = *it;
    while (!queue.empty()) {
      auto& job = queue.front();
      if (!breaker_.allow(host)) {
        // The host is failing: its deliveries go back to the first retry tier without a call
        // and without spending an attempt, so a host outage costs only max_age.
        auto j = std::move(job);
        queue.pop_front();
        release_order_gate(*j);
        j->order_gate.clear();
        bounce(std::move(j), now);
        continue;
      }
      if (!concurrency_.try_acquire(host)) break;
      if (rate_ && !rate_->try_acquire(host)) {
        concurrency_.release(host);
        break;
      }
      auto j = std::move(job);
      queue.pop_front();
      j->holds_slot = true;
      j->started_ms = now;
      auto call = build_http_call(j->d, now, config_.worker.connect_timeout_ms);
      Job* raw = j.get();
      sending_.emplace(raw, std::move(j));
      d_.sender->send(std::move(call), [this, raw](HttpResult r) {
        Event e;
        e.kind = Event::Kind::kHttp;
        e.job = raw;
        e.http = std::move(r);
        post(std::move(e));
      });
    }
    it = queue.empty() ? queued_.erase(it) : std::next(it);
  }
}

void Worker::drain_events(int64_t now, bool wait) {
  std::vector<Event> events;
  {
    std::unique_lock lock(mu_);
    if (wait && events_.empty() && !stop_.load()) cv_.wait_for(lock, std::chrono::milliseconds(kIdlePollMs));
    events.swap(events_);
  }
  for (auto& e : events) {
    if (e.kind == Event::Kind::kClaimed) {
      on_claimed(e, now);
      continue;
    }
    if (e.kind == Event::Kind::kRecorded) {
      on_recorded(e, now);
      continue;
    }
    if (e.kind == Event::Kind::kInbound) {
      inbound_busy_ = false;
      if (e.inbound_retry && inbound_.size() < kMaxInboundBacklog) {
        inbound_.insert(inbound_.begin(), e.inbound_retry->begin(), e.inbound_retry->end());
      }
      continue;
    }
    auto sent = sending_.extract(e.job);
    if (sent.empty()) {
      // A second completion for one job: the sender or producer broke its contract.
      spdlog::critical("msg=completion_for_unknown_job kind={}", static_cast<int>(e.kind));
      std::abort();
    }
    std::unique_ptr<Job> job = std::move(sent.mapped());
    if (e.kind == Event::Kind::kHttp) {
      on_http_result(std::move(job), std::move(e.http), now);
    } else if (e.produced) {
      if (job->dlq_reason == kDlqReasonRepublished) {
        d_.metrics->dlq(job->dlq_reason);
        d_.metrics->delivery("skipped");  // counted dead when it died
      } else if (job->malformed || job->topic_out == kDlqTopic) {
        d_.metrics->dlq(job->dlq_reason);
        d_.metrics->delivery("dead");
      } else {
        // A retry after a failed attempt, or a bounce (lease held elsewhere, circuit open).
        d_.metrics->retry(job->tier);
        d_.metrics->delivery("retried");
      }
      finish(std::move(job));
    } else {
      spdlog::warn("msg=redelivery_produce_failed topic={} key={} error={}", job->topic_out, log_quote(job->d.key),
                   log_quote(e.produced.error().message));
      d_.metrics->kafka_error(e.produced.error().code);
      job->started_ms = now + kReproduceDelayMs;  // reused as "try again at"
      to_reproduce_.push_back(std::move(job));
    }
  }
}

void Worker::on_http_result(std::unique_ptr<Job> job, HttpResult r, int64_t now) {
  release_order_gate(*job);
  job->order_gate.clear();
  if (job->holds_slot) {
    concurrency_.release(job->host);
    job->holds_slot = false;
  }
  auto outcome = classify(r.error, r.status);
  bool real_call = r.error != TransportError::kCircuitOpen && r.error != TransportError::kRateLimited;
  if (real_call) breaker_.record(job->host, outcome.kind != OutcomeKind::kRetryable);
  d_.metrics->attempt(job->d.destination, outcome.label, static_cast<double>(r.duration_ms) / 1000.0);
  auto& d = job->d;
  auto& h = job->history;
  h.attempts_made = d.attempt;
  h.first_attempt_at_ms = d.first_attempt_at_ms > 0 ? d.first_attempt_at_ms : job->started_ms;
  h.last_attempt_at_ms = job->started_ms;
  h.last_status = r.status;
  h.last_error = r.error == TransportError::kNone ? (outcome.kind == OutcomeKind::kSuccess ? "" : "HTTP " + std::to_string(r.status) + ": " + r.message) : r.message;
  auto& rec = job->record;
  rec.key = d.key;
  rec.attempt = d.attempt;
  rec.started_ms = job->started_ms;
  rec.duration_ms = static_cast<int>(r.duration_ms);
  rec.http_status = r.status;
  rec.error = h.last_error.substr(0, 1024);
  switch (outcome.kind) {
    case OutcomeKind::kSuccess:
      rec.outcome = "succeeded";
      rec.next_state = "succeeded";
      break;
    case OutcomeKind::kPermanent:
      rec.outcome = "permanent";
      rec.next_state = "dead";
      job->dlq_reason = "permanent";
      job->topic_out = std::string(kDlqTopic);
      break;
    case OutcomeKind::kRetryable: {
      rec.outcome = "retryable";
      std::optional<int64_t> retry_after;
      if (r.retry_after) retry_after = parse_retry_after(*r.retry_after, now);
      RetryPolicy policy{config_.retry.schedule_seconds, d.max_attempts, d.max_age_seconds};
      auto plan = plan_retry(policy, d.attempt, d.received_at_ms, now, retry_after, d_.rand01);
      switch (plan.kind) {
        case RetryPlan::Kind::kRetry:
          rec.next_state = "retrying";
          job->tier = plan.tier;
          h.due_at_ms = plan.due_at_ms;
          job->topic_out = retry_topic(plan.tier);
          break;
        case RetryPlan::Kind::kDeadLetter:
          rec.next_state = "dead";
          job->dlq_reason = plan.reason;
          job->topic_out = std::string(kDlqTopic);
          break;
      }
      break;
    }
  }
  to_record_.push_back(std::move(job));
}

void Worker::flush_records(int64_t now) {
  if (record_busy_ || to_record_.empty() || !db_usable(now)) return;
  record_busy_ = true;
  if (to_record_.size() <= kMaxRecordBatch) {
    recording_ = std::move(to_record_);
    to_record_.clear();
  } else {
    auto split = to_record_.begin() + static_cast<std::ptrdiff_t>(kMaxRecordBatch);
    recording_.assign(std::make_move_iterator(to_record_.begin()), std::make_move_iterator(split));
    to_record_.erase(to_record_.begin(), split);
  }
  auto records = std::make_shared<std::vector<AttemptRecord>>();
  records->reserve(recording_.size());
  for (const auto& j : recording_) records->push_back(j->record);
  record_lane_->submit([this, records] {
    Event e;
    e.kind = Event::Kind::kRecorded;
    auto t0 = std::chrono::steady_clock::now();
    e.recorded = d_.record_store->record(*records, d_.worker_id);
    e.seconds = seconds_since(t0);
    post(std::move(e));
  });
}

void Worker::on_recorded(Event& e, int64_t now) {
  record_busy_ = false;
  d_.metrics->postgres("record", e.seconds, e.recorded.has_value());
  auto jobs = std::move(recording_);
  recording_.clear();
  if (!e.recorded) {
    db_failed(e.recorded.error(), "record", now);
    put_back(std::move(jobs), to_record_);
    return;
  }
  db_ok();
  for (auto& job : jobs) {
    if (job->record.next_state == "succeeded") {
      d_.metrics->delivery("succeeded");
      finish(std::move(job));
    } else {
      produce_redelivery(std::move(job), now);
    }
  }
}

void Worker::produce_redelivery(std::unique_ptr<Job> job, int64_t) {
  auto headers = redelivery_headers(job->d, job->history);
  if (!job->dlq_reason.empty()) headers.push_back({"hr-dlq-reason", job->dlq_reason});
  static const std::string kEmpty;
  const std::string& value = job->d.body ? *job->d.body : kEmpty;
  Job* raw = job.get();
  sending_.emplace(raw, std::move(job));
  d_.producer->produce({raw->topic_out, raw->d.key, value, &headers}, [this, raw](Result<ProducedAt> r) {
    Event e;
    e.kind = Event::Kind::kProduced;
    e.job = raw;
    e.produced = std::move(r);
    post(std::move(e));
  });
}

void Worker::flush_reproduce(int64_t now) {
  while (!to_reproduce_.empty() && to_reproduce_.front()->started_ms <= now) {
    auto job = std::move(to_reproduce_.front());
    to_reproduce_.pop_front();
    produce_redelivery(std::move(job), now);
  }
}

void Worker::finish(std::unique_ptr<Job> job) {
  // A duplicate bounced while the key was in flight here must not free the key: the next copy
  // would then be sent while the first is still in flight.
  if (job->holds_key) local_keys_.erase(job->d.key);
  in_flight_.fetch_sub(1);
  auto& msg = *job->msg;
  if (--msg.pending > 0) return;
  auto gen = generation_.find(msg.tp);
  // A finish from before a revoke must not move the watermark of a later assignment.
  if (gen != generation_.end() && gen->second == msg.generation) (void)watermarks_.finish(msg.tp, msg.offset);
}

void Worker::store_offsets() { d_.consumer->store_offsets(watermarks_.take_committable()); }

void Worker::db_failed(const Error& e, std::string_view op, int64_t now) {
  db_retry_at_ = now + kDbRetryMs;
  if (db_down_) return;
  db_down_ = true;
  ready_.store(false);
  d_.metrics->postgres_up().Set(0);
  spdlog::error("msg=postgres_unavailable op={} error={} action=\"pausing consumption; claimed work continues\"", op,
                log_quote(e.message));
  hold_all_for_db();
}

void Worker::db_ok() {
  if (!db_down_) return;
  db_down_ = false;
  ready_.store(!stop_.load());
  d_.metrics->postgres_up().Set(1);
  spdlog::info("msg=postgres_available action=resuming");
  release_db_holds();
}

// A partition already paused for a retry tier stays as it is and just gains the reason.
void Worker::hold_all_for_db() {
  std::vector<TopicPartition> fresh_holds;
  for (const auto& tp : d_.consumer->assignment()) {
    auto [it, fresh] = paused_.try_emplace(tp);
    if (fresh) fresh_holds.push_back(tp);
    it->second.for_db = true;
  }
  d_.consumer->hold(fresh_holds);
}

void Worker::release_db_holds() {
  for (auto it = paused_.begin(); it != paused_.end();) {
    auto next = std::next(it);
    if (it->second.for_db) {
      it->second.for_db = false;
      resume_if_free(it);
    }
    it = next;
  }
}

void Worker::resume_if_free(std::map<TopicPartition, Pause>::iterator it) {
  const auto& p = it->second;
  if (p.for_db || p.resume_at_ms > 0) return;
  d_.consumer->resume(it->first);
  paused_.erase(it);
}

void Worker::on_assigned(const std::vector<TopicPartition>& tps) {
  for (const auto& tp : tps) {
    generation_[tp] = next_generation_++;
    paused_.erase(tp);
    if (db_down_) {
      paused_[tp].for_db = true;
      d_.consumer->hold({tp});
    } else {
      // librdkafka keeps an application pause across revoke and reassignment, but paused_
      // forgot it at the revoke: a retry-tier partition paused here and assigned back would
      // otherwise never be resumed, stranding its retries.
      d_.consumer->resume(tp);
    }
  }
  ready_.store(!db_down_ && !stop_.load());
}

void Worker::on_revoked(const std::vector<TopicPartition>& tps) {
  store_offsets();
  std::set<TopicPartition> gone(tps.begin(), tps.end());
  for (const auto& tp : tps) {
    generation_.erase(tp);
    watermarks_.erase(tp);
    paused_.erase(tp);
    if (auto q = backlog_.find(tp); q != backlog_.end()) {
      backlog_size_ -= q->second.size();
      backlog_.erase(q);
    }
  }
  // Unclaimed work of revoked partitions is dropped: the new owner replays it.
  auto keep = std::remove_if(to_claim_.begin(), to_claim_.end(), [&](const std::unique_ptr<Job>& j) {
    return gone.count(j->msg->tp) > 0;
  });
  in_flight_.fetch_sub(static_cast<int>(std::distance(keep, to_claim_.end())));
  to_claim_.erase(keep, to_claim_.end());
}

void Worker::update_gauges(int64_t now) {
  if (now < next_gauges_at_) return;
  next_gauges_at_ = now + 1000;
  d_.metrics->in_flight().Set(in_flight_.load());
  d_.metrics->paused_partitions().Set(static_cast<double>(paused_.size()));
  d_.metrics->backlog().Set(static_cast<double>(backlog_size_));
  d_.metrics->ready().Set(ready_.load() ? 1 : 0);
  auto c = breaker_.counts();
  d_.metrics->circuits(static_cast<double>(c.closed), static_cast<double>(c.open), static_cast<double>(c.half_open));
  for (const auto& [topic, lag] : d_.consumer->lag_by_topic()) d_.metrics->lag(topic, static_cast<double>(lag));
  if (rate_) rate_->prune();
}

void Worker::drain_for_shutdown() {
  ready_.store(false);
  auto deadline = d_.now_ms() + config_.worker.shutdown_grace_ms;
  spdlog::info("msg=worker_draining in_flight={} grace_ms={}", in_flight_.load(), config_.worker.shutdown_grace_ms);
  // Nothing new starts: unclaimed work is replayed by whoever owns the partition next, and
  // claimed-but-unsent work gives its lease back so that can happen at once.
  in_flight_.fetch_sub(static_cast<int>(to_claim_.size()));
  to_claim_.clear();
  std::vector<std::string> unsent;
  for (auto& [host, queue] : queued_) {
    for (auto& j : queue) unsent.push_back(j->d.key);
    in_flight_.fetch_sub(static_cast<int>(queue.size()));
  }
  queued_.clear();
  for (auto& [gate, queue] : ordered_waiting_) {
    for (auto& j : queue) unsent.push_back(j->d.key);
    in_flight_.fetch_sub(static_cast<int>(queue.size()));
  }
  ordered_waiting_.clear();
  while (d_.now_ms() < deadline && (!sending_.empty() || !to_record_.empty() || !to_reproduce_.empty() ||
                                    claim_busy_ || record_busy_ || inbound_busy_)) {
    int64_t now = d_.now_ms();
    drain_events(now, true);
    flush_records(now);
    flush_reproduce(now);
    store_offsets();
  }
  for (const auto& sent : sending_) unsent.push_back(sent.second->d.key);
  for (auto& j : to_record_) unsent.push_back(j->d.key);
  for (auto& j : recording_) unsent.push_back(j->d.key);
  unsent.insert(unsent.end(), abandoned_keys_.begin(), abandoned_keys_.end());
  if (!unsent.empty() && !db_down_) {
    // On the claim lane: its connection is never used from two threads at once.
    claim_lane_->submit([this, keys = std::move(unsent)] { (void)d_.store->release(keys, d_.worker_id); });
  }
  store_offsets();
  if (auto r = d_.consumer->commit(); !r) {
    spdlog::warn("msg=final_commit_failed error={}", log_quote(r.error().message));
  }
  d_.consumer->close();
  spdlog::info("msg=worker_stopped abandoned={} note=\"abandoned deliveries are replayed from the last committed offset\"",
               sending_.size() + to_record_.size() + recording_.size() + to_reproduce_.size());
}

}  // namespace hookrelay
