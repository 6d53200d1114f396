#include "worker/dispatcher.h"

#include <algorithm>
#include <cstdlib>

#include "shared/log.h"
#include "shared/wire_contract.h"

namespace hookrelay {

Dispatcher::Dispatcher(const Config& config, HttpSender& sender, std::function<int64_t()> now_ms, PostEvent post)
    : config_(&config),
      sender_(sender),
      now_ms_(std::move(now_ms)),
      post_(std::move(post)),
      breaker_({config.worker.breaker_failure_threshold, config.worker.breaker_cooldown_ms}, now_ms_),
      concurrency_(config.worker.per_host_max_in_flight) {
  if (config.worker.per_host_rate_per_second > 0) {
    double rate = config.worker.per_host_rate_per_second;
    rate_ = std::make_unique<RateLimiter>(rate, std::max(1.0, rate), now_ms_);
  }
}

void Dispatcher::reconfigure(const Config& config) {
  config_ = &config;
  const auto& w = config.worker;
  breaker_.set_options({w.breaker_failure_threshold, w.breaker_cooldown_ms});
  concurrency_.set_max_per_host(w.per_host_max_in_flight);
  const double rate = w.per_host_rate_per_second;
  if (rate <= 0) {
    rate_.reset();
  } else if (rate_) {
    rate_->set_rate(rate, std::max(1.0, rate));
  } else {
    rate_ = std::make_unique<RateLimiter>(rate, std::max(1.0, rate), now_ms_);
  }
}

void Dispatcher::enqueue(std::unique_ptr<Job> job) {
  bool first_attempt = job->msg->tp.topic.rfind(kRetryTopicPrefix, 0) != 0;
  if (job->d.ordered && first_attempt) {
    std::string gate = job->d.destination + "\x1f" + job->msg->tp.topic + "\x1f" + std::to_string(job->msg->tp.partition);
    if (!ordered_busy_.insert(gate).second) {
      ordered_waiting_[gate].push_back(std::move(job));
      return;
    }
    job->order_gate = gate;
  }
  std::string host = job->d.host_key;
  queued_[host].push_back(std::move(job));
}

void Dispatcher::release_order_gate(Job& job) {
  if (job.order_gate.empty()) return;
  std::string gate = std::move(job.order_gate);
  job.order_gate.clear();
  auto waiting = ordered_waiting_.find(gate);
  if (waiting == ordered_waiting_.end() || waiting->second.empty()) {
    ordered_busy_.erase(gate);
    if (waiting != ordered_waiting_.end()) ordered_waiting_.erase(waiting);
    return;
  }
  auto next = std::move(waiting->second.front());
  waiting->second.pop_front();
  next->order_gate = gate;
  std::string host = next->d.host_key;
  queued_[host].push_back(std::move(next));
}

void Dispatcher::dispatch(int64_t now, const std::function<void(std::unique_ptr<Job>)>& bounce) {
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
        bounce(std::move(j));
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
      auto call = build_http_call(j->d, now, config_->worker.connect_timeout_ms);
      Job* raw = j.get();
      out_.emplace(raw, std::move(j));
      sender_.send(std::move(call), [this, raw](HttpResult r) {
        WorkerEvent e;
        e.kind = WorkerEvent::Kind::kHttp;
        e.job = raw;
        e.http = std::move(r);
        post_(std::move(e));
      });
    }
    it = queue.empty() ? queued_.erase(it) : std::next(it);
  }
}

std::unique_ptr<Job> Dispatcher::take(Job* raw) {
  auto sent = out_.extract(raw);
  if (sent.empty()) {
    // A second completion for one call: the sender broke its contract.
    spdlog::critical("msg=completion_for_unknown_job kind=http");
    std::abort();
  }
  return std::move(sent.mapped());
}

void Dispatcher::release(Job& job, const HttpResult& r, const Outcome& outcome) {
  release_order_gate(job);
  if (job.holds_slot) {
    concurrency_.release(job.d.host_key);
    job.holds_slot = false;
  }
  // Our own limits made no call: the host's health is unknown.
  bool real_call = r.error != TransportError::kCircuitOpen && r.error != TransportError::kRateLimited;
  if (real_call) breaker_.record(job.d.host_key, outcome.kind != OutcomeKind::kRetryable);
}

std::vector<std::unique_ptr<Job>> Dispatcher::take_unsent() {
  std::vector<std::unique_ptr<Job>> out;
  for (auto& [host, queue] : queued_) {
    for (auto& j : queue) out.push_back(std::move(j));
  }
  queued_.clear();
  for (auto& [gate, queue] : ordered_waiting_) {
    for (auto& j : queue) out.push_back(std::move(j));
  }
  ordered_waiting_.clear();
  return out;
}

std::vector<std::unique_ptr<Job>> Dispatcher::take_queued(const std::function<bool(const Job&)>& pred) {
  auto take_from = [&pred](std::deque<std::unique_ptr<Job>>& queue, std::vector<std::unique_ptr<Job>>& into) {
    for (auto it = queue.begin(); it != queue.end();) {
      if (pred(**it)) {
        into.push_back(std::move(*it));
        it = queue.erase(it);
      } else {
        ++it;
      }
    }
  };
  std::vector<std::unique_ptr<Job>> out;
  for (auto& [gate, queue] : ordered_waiting_) take_from(queue, out);
  // Releasing a taken job's order gate queues the next ordered job of its gate, which pred
  // judges in the next round.
  for (;;) {
    std::vector<std::unique_ptr<Job>> round;
    for (auto q = queued_.begin(); q != queued_.end();) {
      take_from(q->second, round);
      q = q->second.empty() ? queued_.erase(q) : std::next(q);
    }
    if (round.empty()) break;
    for (auto& job : round) {
      release_order_gate(*job);
      out.push_back(std::move(job));
    }
  }
  return out;
}

std::vector<std::string> Dispatcher::keys_out() const {
  std::vector<std::string> keys;
  keys.reserve(out_.size());
  for (const auto& [raw, job] : out_) keys.push_back(job->d.key);
  return keys;
}

void Dispatcher::prune() {
  if (rate_) rate_->prune();
}

}  // namespace hookrelay
