#include "worker/dispatcher.h"

#include <algorithm>
#include <cstdlib>
#include <random>
#include <utility>

#include "shared/call_request.h"
#include "shared/kafka/wire_contract.h"
#include "shared/log.h"
#include "worker/attempt_decision.h"

namespace hookrelay {

namespace {

// An open circuit is kept while any delivery to its host may still come back from a retry tier:
// up to the longest a delivery may live (the retry policies' max_age, and the most a call may
// ask for) or wait in a tier, and a cooldown.
CircuitBreaker::Options breaker_options(const Config& config) {
  int64_t longest_s =
      std::max<int64_t>(config.retry.max_age_seconds, CallLimits{}.max_max_age_seconds);
  auto add = [&longest_s](const RetryConfig& r) {
    longest_s = std::max<int64_t>(longest_s, r.max_age_seconds);
    for (int delay : r.schedule_seconds) longest_s = std::max<int64_t>(longest_s, delay);
  };
  add(config.retry);
  for (const auto& [source, routes] : config.routes) {
    for (const auto& route : routes) {
      if (route.retry) add(*route.retry);
    }
  }
  const auto& w = config.worker;
  return {w.breaker_failure_threshold, w.breaker_cooldown_ms,
          longest_s * 1000 + w.breaker_cooldown_ms};
}

std::function<double()> own_rand01() {
  auto rng = std::make_shared<std::mt19937_64>(std::random_device{}());
  return [rng] { return std::uniform_real_distribution<double>(0.0, 1.0)(*rng); };
}

}  // namespace

Dispatcher::Dispatcher(const Config& config, HttpSender& sender, std::function<int64_t()> now_ms,
                       std::function<int64_t()> steady_ms, PostEvent post,
                       std::function<double()> rand01)
    : config_(&config),
      sender_(sender),
      now_ms_(std::move(now_ms)),
      steady_ms_(std::move(steady_ms)),
      post_(std::move(post)),
      rand01_(rand01 ? std::move(rand01) : own_rand01()),
      retry_policy_(make_retry_policy(config.retry)),
      breaker_(breaker_options(config), steady_ms_),
      concurrency_(config.worker.per_host_max_in_flight),
      adaptive_(config.worker.adaptive_limit, config.worker.per_host_max_in_flight),
      route_limits_(steady_ms_) {
  if (config.worker.per_host_rate_per_second > 0) {
    double rate = config.worker.per_host_rate_per_second;
    rate_ = std::make_unique<RateLimiter>(rate, std::max(1.0, rate), steady_ms_);
  }
}

void Dispatcher::reconfigure(const Config& config) {
  config_ = &config;
  retry_policy_ = make_retry_policy(config.retry);
  const auto& w = config.worker;
  breaker_.set_options(breaker_options(config));
  concurrency_.set_max_per_host(w.per_host_max_in_flight);
  adaptive_.set_options(w.adaptive_limit, w.per_host_max_in_flight);
  const double rate = w.per_host_rate_per_second;
  if (rate <= 0) {
    rate_.reset();
  } else if (rate_) {
    rate_->set_rate(rate, std::max(1.0, rate));
  } else {
    rate_ = std::make_unique<RateLimiter>(rate, std::max(1.0, rate), steady_ms_);
  }
}

void Dispatcher::enqueue(std::unique_ptr<Job> job) {
  bool first_attempt = !is_retry_topic(job->msg->tp.topic);
  if (job->d.ordered && first_attempt) {
    // One at a time per route and partition; per route and ordering key when the route names
    // its key (a header or JSON pointer): keys of one partition then go side by side.
    const bool by_key = job->d.route &&
                        job->d.route->ordering_key.from != OrderingKey::From::kKafkaKey &&
                        !job->d.ordering_key.empty();
    std::string gate =
        by_key ? job->d.destination + "\x1f" + job->d.source + "\x1fkey\x1f" + job->d.ordering_key
               : job->d.destination + "\x1f" + job->msg->tp.topic + "\x1f" +
                     std::to_string(job->msg->tp.partition);
    if (!ordered_busy_.insert(gate).second) {
      ordered_waiting_[gate].push_back(std::move(job));
      return;
    }
    job->order_gate = gate;
  }
  auto& queue = queued_[job->d.host_key];
  queue.push_back(std::move(job));
}

void Dispatcher::release_order_gate(Job& job) {
  if (job.order_gate.empty()) return;
  std::string gate = std::move(job.order_gate);
  job.order_gate.clear();
  open_gate(gate);
}

void Dispatcher::open_gate(const std::string& gate) {
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
  // Bounced jobs are handed on once the walk is over: `bounce` may take jobs out of the queues
  // and erase the ones it empties (take_queued, for the deliveries behind an ordered key it
  // holds), which must not happen under the walk's iterators.
  Jobs bounced;
  const Now at{now, steady_ms_()};
  dispatch_route_waiting(at, bounced);
  for (auto it = queued_.begin(); it != queued_.end();) {
    auto& queue = it->second;
    while (!queue.empty()) {
      if (start_head(queue, at, bounced, false) != Head::kGone) break;
    }
    it = queue.empty() ? queued_.erase(it) : std::next(it);
  }
  // A bounced job's order gate opens only once `bounce` has dealt with it: the next ordered
  // delivery of its gate must not start before the bounced one holds its key and takes the
  // deliveries of that key out to wait behind it.
  for (auto& job : bounced) {
    std::string gate = std::exchange(job->order_gate, std::string());
    bounce(std::move(job));
    if (!gate.empty()) open_gate(gate);
  }
}

Dispatcher::Head Dispatcher::start_head(std::deque<std::unique_ptr<Job>>& queue, Now now,
                                        Jobs& bounced, bool route_checked) {
  auto& job = queue.front();
  if (job->send_by_ms > 0 && steady_ms_() > job->send_by_ms) {
    // Waited here (for its host, route or rate) until its lease no longer covers the call: once
    // the lease ends another worker may claim the delivery, and both would send it. It goes
    // back to a retry tier without a call and is claimed afresh when it comes back.
    auto j = std::move(job);
    queue.pop_front();
    bounced.push_back(std::move(j));
    return Head::kGone;
  }
  const std::string& host = job->d.host_key;
  // The pass's `now` for the gate, the deferral and started(): all three see one state.
  const auto circuit = breaker_.gate(host, now.steady);
  // Half-open with its probe out: the probe's answer decides, soon; wait for it here.
  if (circuit == CircuitBreaker::Gate::kProbeOut) return Head::kHostFull;
  if (circuit == CircuitBreaker::Gate::kOpen) {
    const int64_t open_until = breaker_.open_until(host, now.steady);
    // Open: the delivery waits in a retry tier until the circuit turns half-open, or a while
    // after, without a call and without spending an attempt, so a host outage costs only
    // max_age.
    auto j = std::move(job);
    queue.pop_front();
    j->circuit_open_until_ms = circuit_due_at(*j, now, open_until);
    bounced.push_back(std::move(j));
    breaker_.deferred(host, now.steady);
    return Head::kGone;
  }
  // Paused by a Retry-After for long: the delivery waits in a retry tier until the pause ends, as
  // for an open circuit, instead of here. Here it held one of max_in_flight until the pause
  // ended, and a host paused for a minute at a hundred deliveries a second took them all: the
  // worker took no message for any host meanwhile. A short pause is waited out here.
  const int64_t paused_until = adaptive_.paused_until(host);
  if (paused_until - now.steady > kDeferPauseMs) {
    auto j = std::move(job);
    queue.pop_front();
    j->circuit_open_until_ms = now.wall + (paused_until - now.steady);
    j->deferred_for_pause = true;
    bounced.push_back(std::move(j));
    return Head::kGone;
  }
  if (host_held(host, now.steady)) return Head::kHostFull;
  if (route_checked) {
    if (!route_ready(*job)) return Head::kRouteFull;
  } else if (must_wait_for_route(*job)) {
    auto j = std::move(job);
    queue.pop_front();
    route_waiting_[j->route_key].push_back(std::move(j));
    return Head::kGone;
  }
  if (!concurrency_.try_acquire(host)) return Head::kHostFull;
  if (rate_ && !rate_->try_acquire(host)) {
    concurrency_.release(host);
    return Head::kHostFull;
  }
  // Only now that it goes out is a half-open circuit's probe spent on it: a job held back above
  // (a Retry-After pause, the route's limits, the host's slots) leaves the probe for the next.
  breaker_.started(host, now.steady);
  auto j = std::move(job);
  queue.pop_front();
  send(std::move(j), now);
  return Head::kGone;
}

int64_t Dispatcher::circuit_due_at(const Job& job, Now now, int64_t steady_open_until) {
  // The half-open moment in Unix ms, for the retry message's due time; then a moment drawn from
  // the cooldown after it, so that only a share of the host's deferred deliveries is back at the
  // half-open moment to wait for the probe's answer.
  const int64_t open_until = now.wall + std::max<int64_t>(0, steady_open_until - now.steady);
  return circuit_due_at_ms(job.d, retry_policy_, open_until, config_->worker.breaker_cooldown_ms,
                           rand01_);
}

void Dispatcher::send(std::unique_ptr<Job> j, Now now) {
  j->holds_slot = true;
  j->started_ms = now.wall;
  j->steady_started_ms = now.steady;
  j->stages.sent = StageTimes::Clock::now();
  if (!j->route_key.empty()) {
    route_limits_.start(j->route_key, *j->d.route);
    j->holds_route_slot = true;
  }
  auto call = build_http_call(j->d, now.wall, config_->worker.connect_timeout_ms);
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

bool Dispatcher::host_held(const std::string& host, int64_t steady_now) const {
  if (adaptive_.paused_until(host) > steady_now) return true;
  const int limit = adaptive_.limit(host);
  // At the maximum, HostConcurrency's own cap decides.
  return limit < config_->worker.per_host_max_in_flight && concurrency_.in_flight(host) >= limit;
}

bool Dispatcher::must_wait_for_route(Job& job) {
  if (!job.d.route || !RouteLimits::limited(*job.d.route)) return false;
  if (job.route_key.empty()) job.route_key = RouteLimits::key(job.d.source, job.d.destination);
  // Behind jobs of its route already waiting, or at the route's limit.
  auto waiting = route_waiting_.find(job.route_key);
  if (waiting != route_waiting_.end() && !waiting->second.empty()) return true;
  return !route_limits_.ready(job.route_key, *job.d.route);
}

bool Dispatcher::route_ready(Job& job) { return route_limits_.ready(job.route_key, *job.d.route); }

void Dispatcher::dispatch_route_waiting(Now now, Jobs& bounced) {
  for (auto it = route_waiting_.begin(); it != route_waiting_.end();) {
    auto& queue = it->second;
    while (!queue.empty()) {
      if (start_head(queue, now, bounced, true) != Head::kGone) break;
    }
    it = queue.empty() ? route_waiting_.erase(it) : std::next(it);
  }
}

void Dispatcher::end_flow(Job& job, const HttpResult& r, Now now, int64_t steady_started) {
  if (job.holds_route_slot) {
    route_limits_.end(job.route_key);
    job.holds_route_slot = false;
  }
  const auto signal = AdaptiveHostLimits::signal_of(r.error, r.status);
  if (signal == AdaptiveHostLimits::Signal::kNone) return;
  // A Retry-After date is wall-clock time; the pause it asks for runs on the steady clock.
  std::optional<int64_t> retry_after;
  if (r.retry_after && signal != AdaptiveHostLimits::Signal::kSuccess)
    retry_after = parse_retry_after(*r.retry_after, now.wall);
  const int64_t paused_before = adaptive_.paused_until(job.d.host_key);
  const bool cut =
      adaptive_.on_result(job.d.host_key, signal, steady_started, now.steady, retry_after);
  if (!flow_event_ ||
      (!cut && adaptive_.paused_until(job.d.host_key) <= std::max(paused_before, now.steady)))
    return;
  const std::string_view label = host_label(job.d.host_key);
  if (cut) flow_event_(label, AdaptiveHostLimits::signal_name(signal));
  if (adaptive_.paused_until(job.d.host_key) > std::max(paused_before, now.steady))
    flow_event_(label, "pause");
}

std::string_view Dispatcher::host_label(std::string_view host) const {
  for (const auto& [source, routes] : config_->routes) {
    for (const auto& route : routes) {
      if (route.host_key == host) return host;
    }
  }
  return "other";
}

bool Dispatcher::throttled(const HttpResult& r) const {
  return adaptive_.enabled() && AdaptiveHostLimits::signal_of(r.error, r.status) ==
                                    AdaptiveHostLimits::Signal::kTooManyRequests;
}

void Dispatcher::each_host_limit(
    const std::function<void(const std::string& host, int limit)>& fn) const {
  adaptive_.each([&](const std::string& host, int limit) {
    if (host_label(host) == host) fn(host, limit);
  });
}

std::vector<HostStateRow> Dispatcher::host_states() const {
  std::set<std::string> hosts;
  for (const auto& [source, routes] : config_->routes) {
    for (const auto& route : routes) hosts.insert(route.host_key);
  }
  // The breaker's and the pauses' times are on the steady clock; published, they are Unix ms.
  const int64_t wall = now_ms_();
  const int64_t steady = steady_ms_();
  auto unix_ms = [&](int64_t steady_at) { return steady_at > 0 ? steady_at - steady + wall : 0; };
  std::vector<HostStateRow> out;
  out.reserve(hosts.size());
  for (const auto& host : hosts) {
    HostStateRow row;
    row.host = host;
    row.circuit = circuit_state_name(breaker_.state(host));
    row.open_until_ms = unix_ms(breaker_.open_until(host, steady));
    row.adaptive_limit = adaptive_.limit(host);
    row.max_limit = config_->worker.per_host_max_in_flight;
    row.paused_until_ms = unix_ms(adaptive_.paused_until(host));
    out.push_back(std::move(row));
  }
  return out;
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
  const Now now{now_ms_(), steady_ms_()};
  // Every job released was sent from here; one that was not is placed by its Unix start.
  const int64_t started = job.steady_started_ms.value_or(now.steady - (now.wall - job.started_ms));
  end_flow(job, r, now, started);
  // Our own limits made no call: the host's health is unknown. Nor did the SSRF guard's refusal
  // reach the host: a half-open circuit's probe so refused is not spent. A 429 is the receiver's
  // flow control, which the adaptive limit answers: the host is up, and its circuit stays as it
  // is; so is a host that refused our certificate check or that our own TLS setup could not
  // reach (not failures of the host, nor successes to reset a failure count with).
  if (r.error == TransportError::kBlockedBySsrfGuard) {
    breaker_.abandoned(job.d.host_key, started);
    return;
  }
  bool real_call =
      r.error != TransportError::kCircuitOpen && r.error != TransportError::kRateLimited;
  const bool no_verdict = throttled(r) || r.error == TransportError::kTlsFailed ||
                          r.error == TransportError::kTlsLocalFailed;
  if (real_call && !no_verdict)
    breaker_.record(job.d.host_key, outcome.kind != OutcomeKind::kRetryable, started);
  else if (real_call)
    breaker_.answered(job.d.host_key, started);  // a half-open circuit's probe ends
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
  for (auto& [route, queue] : route_waiting_) {
    for (auto& j : queue) out.push_back(std::move(j));
  }
  route_waiting_.clear();
  return out;
}

std::vector<std::unique_ptr<Job>> Dispatcher::take_queued(
    const std::function<bool(const Job&)>& pred) {
  auto take_from = [&pred](std::deque<std::unique_ptr<Job>>& queue,
                           std::vector<std::unique_ptr<Job>>& into) {
    for (auto it = queue.begin(); it != queue.end();) {
      if (pred(**it)) {
        into.push_back(std::move(*it));
        it = queue.erase(it);
      } else {
        ++it;
      }
    }
  };
  // In the order they were read: a gate's holder (queued) before the jobs waiting for its gate.
  // Releasing a taken job's order gate queues the next ordered job of its gate, which pred
  // judges in the next round.
  std::vector<std::unique_ptr<Job>> out;
  for (;;) {
    std::vector<std::unique_ptr<Job>> round;
    for (auto q = queued_.begin(); q != queued_.end();) {
      take_from(q->second, round);
      q = q->second.empty() ? queued_.erase(q) : std::next(q);
    }
    for (auto q = route_waiting_.begin(); q != route_waiting_.end();) {
      take_from(q->second, round);
      q = q->second.empty() ? route_waiting_.erase(q) : std::next(q);
    }
    if (round.empty()) break;
    for (auto& job : round) {
      release_order_gate(*job);
      out.push_back(std::move(job));
    }
  }
  for (auto& [gate, queue] : ordered_waiting_) take_from(queue, out);
  return out;
}

void Dispatcher::prune() {
  if (rate_) rate_->prune();
  route_limits_.prune();
  adaptive_.prune(steady_ms_());
  breaker_.prune(steady_ms_());
}

}  // namespace hookrelay
