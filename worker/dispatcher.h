// Dispatcher: claimed deliveries waiting for their HTTP call, and the calls out. It owns the
// limits that decide when a call may start: the per-host circuit breaker, per-host concurrency
// (adaptive: flow_control.h), a host's Retry-After pause, the per-host rate, a route's own
// max_in_flight and rate_per_second, and the gates of ordered routes (one first attempt at a time
// per route and source partition, the rest waiting in offset order). A job handed to the sender is
// owned here until its result comes back as a WorkerEvent.
//
// Contract: enqueue() a claimed job; dispatch() starts what the limits allow and hands jobs of a
// host whose circuit is open to `bounce` without a call, with Job::circuit_open_until_ms set to
// when the job is to come back (Unix ms): a moment drawn from the cooldown that follows the
// circuit's turn to half-open (circuit_due_at_ms), so the deliveries of one outage come back
// spread out rather than all at the probe's moment (while its one probe is out, they wait here
// for its answer instead). A job still waiting after its Job::send_by_ms (its lease no longer
// covers the call) goes to `bounce` too, with circuit_open_until_ms 0, never to the sender. So
// does a job of a host a Retry-After paused for longer than kDeferPauseMs, with
// circuit_open_until_ms the pause's end and Job::deferred_for_pause set: waiting here, it would
// hold its max_in_flight slot for the pause. take() gives back the job of an HTTP result (abort on
// an unknown one: the sender broke its once-per-call contract), and release() then frees its gate
// (starting the next ordered job) and slot and feeds the breaker.
//
// Clocks: the breaker, the Retry-After pauses and the rates run on `steady_ms`, which never
// steps: a wall clock stepped back an hour must not keep a circuit open or a host paused for an
// hour. Times that leave the process are Unix ms (`now_ms`): Job::started_ms, the call's
// signature time, circuit_open_until_ms and the times of host_states().
//
// Thread-safety: coordinator thread only. The sender's callback only posts an event.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "shared/config/config.h"
#include "shared/routes/route_states.h"
#include "worker/backoff.h"
#include "worker/circuit_breaker.h"
#include "worker/flow_control.h"
#include "worker/http_sender.h"
#include "worker/job.h"
#include "worker/rate_limiter.h"
#include "worker/worker_event.h"

namespace hookrelay {

class Dispatcher {
 public:
  // A host paused by a Retry-After for longer than this has its jobs deferred to a retry tier
  // until the pause ends (as for an open circuit); a pause this short is waited out in the queue.
  static constexpr int64_t kDeferPauseMs = 5000;

  // `steady_ms`: a clock that never steps (that of Job::send_by_ms). `rand01`, uniform in [0, 1),
  // draws when a job deferred for an open circuit comes back; empty: a source of its own.
  Dispatcher(const Config& config, HttpSender& sender, std::function<int64_t()> now_ms,
             std::function<int64_t()> steady_ms, PostEvent post,
             std::function<double()> rand01 = {});

  // The worker limits of a reloaded config (per-host concurrency and rate, breaker, connect
  // timeout) for calls started from now on; jobs queued or out keep their place. `config` must
  // outlive its use here (the worker keeps the one in force alive).
  void reconfigure(const Config& config);

  void enqueue(std::unique_ptr<Job> job);
  // `now`: Unix ms (the wall clock's now_ms); the limits read the steady clock themselves.
  void dispatch(int64_t now, const std::function<void(std::unique_ptr<Job>)>& bounce);
  std::unique_ptr<Job> take(Job* raw);
  void release(Job& job, const HttpResult& result, const Outcome& outcome);

  // The queued jobs (not yet sent) that `pred` selects, taken out in queue order: those of a
  // route just suspended, which are parked instead of sent (worker/route_lifecycle.h).
  std::vector<std::unique_ptr<Job>> take_queued(const std::function<bool(const Job&)>& pred);

  // Shutdown: the jobs not yet sent (their leases are given back).
  std::vector<std::unique_ptr<Job>> take_unsent();
  bool calls_out() const { return out_.size() > 0; }
  std::size_t out_count() const { return out_.size(); }

  CircuitBreaker::Counts circuit_counts() const { return breaker_.counts(); }
  void prune();

  // Adaptive per-host limits: each route host whose limit is below the maximum, with that limit;
  // and a callback told of every cut (host, "429" | "503" | "timeout") and Retry-After pause
  // (host, "pause"). Hosts are metric labels: a host no route names (a call's, from a request)
  // is "other", and has no limit reported.
  void each_host_limit(const std::function<void(const std::string& host, int limit)>& fn) const;
  void on_flow_event(std::function<void(std::string_view host, std::string_view what)> fn) {
    flow_event_ = std::move(fn);
  }
  int host_limit(std::string_view host) const { return adaptive_.limit(host); }
  // Every host a configured route calls, with its circuit and adaptive limit as of `now`
  // (worker/host_state_publisher.h). worker_id and the times of Postgres are left empty.
  std::vector<HostStateRow> host_states() const;

 private:
  // What became of the job at the head of a queue.
  enum class Head { kGone, kHostFull, kRouteFull };
  using Jobs = std::vector<std::unique_ptr<Job>>;
  // One moment on both clocks: `wall` for what leaves the process, `steady` for the limits.
  struct Now {
    int64_t wall = 0;
    int64_t steady = 0;
  };
  // A job that may not be sent (its lease would not cover the call, its host's circuit is open)
  // goes to `bounced`, which dispatch() hands to its `bounce` after walking the queues; its
  // order gate stays closed until then.
  Head start_head(std::deque<std::unique_ptr<Job>>& queue, Now now, Jobs& bounced,
                  bool route_checked);
  void send(std::unique_ptr<Job> j, Now now);
  void release_order_gate(Job& job);
  void open_gate(const std::string& gate);  // starts the next ordered job waiting for it, if any
  // Flow control (worker/flow_control.h): a host paused by Retry-After or at its adaptive limit;
  // a job whose route is at its own limit (or has jobs waiting before it) waits in
  // route_waiting_, started from there in order as the route frees up.
  bool host_held(const std::string& host, int64_t steady_now) const;
  bool must_wait_for_route(Job& job);
  bool route_ready(Job& job);
  void dispatch_route_waiting(Now now, Jobs& bounced);
  void end_flow(Job& job, const HttpResult& result, Now now, int64_t steady_started);
  // When a job deferred at `now` for its host's open circuit comes back (Unix ms).
  int64_t circuit_due_at(const Job& job, Now now, int64_t steady_open_until);
  bool throttled(const HttpResult& result) const;  // a 429 the adaptive limit answers
  std::string_view host_label(std::string_view host) const;

  const Config* config_;
  HttpSender& sender_;
  std::function<int64_t()> now_ms_;
  std::function<int64_t()> steady_ms_;
  PostEvent post_;
  std::function<double()> rand01_;
  RetryPolicy retry_policy_;  // the global one: the max_age of a circuit deferral's delivery
  CircuitBreaker breaker_;
  std::unique_ptr<RateLimiter> rate_;
  HostConcurrency concurrency_;
  AdaptiveHostLimits adaptive_;
  RouteLimits route_limits_;
  std::map<std::string, std::deque<std::unique_ptr<Job>>> route_waiting_;  // by route key
  std::function<void(std::string_view, std::string_view)> flow_event_;
  std::map<std::string, std::deque<std::unique_ptr<Job>>> queued_;  // by host, waiting for a slot
  std::map<std::string, std::deque<std::unique_ptr<Job>>> ordered_waiting_;
  std::set<std::string> ordered_busy_;
  // Handed to the sender, whose callback carries the raw pointer back in an event; owned here
  // until then, so calls still out when the worker is destroyed are freed with it.
  std::unordered_map<Job*, std::unique_ptr<Job>> out_;
};

}  // namespace hookrelay
