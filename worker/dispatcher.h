// Dispatcher: claimed deliveries waiting for their HTTP call, and the calls out. It owns the
// limits that decide when a call may start: the per-host circuit breaker, per-host concurrency,
// the per-host rate, and the gates of ordered routes (one first attempt at a time per route and
// source partition, the rest waiting in offset order). A job handed to the sender is owned here
// until its result comes back as a WorkerEvent.
//
// Contract: enqueue() a claimed job; dispatch() starts what the limits allow and hands jobs of a
// host whose circuit is open to `bounce` without a call; take() gives back the job of an HTTP
// result (abort on an unknown one: the sender broke its once-per-call contract), and release()
// then frees its gate (starting the next ordered job) and slot and feeds the breaker.
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

#include "shared/config.h"
#include "worker/circuit_breaker.h"
#include "worker/http_sender.h"
#include "worker/job.h"
#include "worker/rate_limiter.h"
#include "worker/worker_event.h"

namespace hookrelay {

class Dispatcher {
 public:
  Dispatcher(const Config& config, HttpSender& sender, std::function<int64_t()> now_ms, PostEvent post);

  // The worker limits of a reloaded config (per-host concurrency and rate, breaker, connect
  // timeout) for calls started from now on; jobs queued or out keep their place. `config` must
  // outlive its use here (the worker keeps the one in force alive).
  void reconfigure(const Config& config);

  void enqueue(std::unique_ptr<Job> job);
  void dispatch(int64_t now, const std::function<void(std::unique_ptr<Job>)>& bounce);
  std::unique_ptr<Job> take(Job* raw);
  void release(Job& job, const HttpResult& result, const Outcome& outcome);

  // The queued jobs (not yet sent) that `pred` selects, taken out in queue order: those of a
  // route just suspended, which are parked instead of sent (worker/route_lifecycle.h).
  std::vector<std::unique_ptr<Job>> take_queued(const std::function<bool(const Job&)>& pred);

  // Shutdown: the jobs not yet sent (their leases are given back), and the keys still out.
  std::vector<std::unique_ptr<Job>> take_unsent();
  std::vector<std::string> keys_out() const;
  bool calls_out() const { return out_.size() > 0; }
  std::size_t out_count() const { return out_.size(); }

  CircuitBreaker::Counts circuit_counts() const { return breaker_.counts(); }
  void prune();

 private:
  void release_order_gate(Job& job);

  const Config* config_;
  HttpSender& sender_;
  std::function<int64_t()> now_ms_;
  PostEvent post_;
  CircuitBreaker breaker_;
  std::unique_ptr<RateLimiter> rate_;
  HostConcurrency concurrency_;
  std::map<std::string, std::deque<std::unique_ptr<Job>>> queued_;  // by host, waiting for a slot
  std::map<std::string, std::deque<std::unique_ptr<Job>>> ordered_waiting_;
  std::set<std::string> ordered_busy_;
  // Handed to the sender, whose callback carries the raw pointer back in an event; owned here
  // until then, so calls still out when the worker is destroyed are freed with it.
  std::unordered_map<Job*, std::unique_ptr<Job>> out_;
};

}  // namespace hookrelay
