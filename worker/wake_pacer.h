// WakePacer: at most one wake-up per interval for a thread that waits for work from other
// threads (the coordinator, an HTTP sender loop).
//
// In a steady stream such a thread used to wake for nearly every event (an HTTP answer, a fetch,
// a Postgres result), each time paying the scheduler's switch and its loop's fixed work for one
// or two events: in bench/e2e at 2,000/s the coordinator woke 1.3 times and the HTTP sender about
// once per event. Before it blocks, the thread lets the rest of the interval since its last
// wake-up pass, so what arrives meanwhile is taken in one wake-up. A thread that is busy (a
// drain) never waits that long, and one that was idle for longer than the interval is not held
// back: the first event after a pause is taken at once. The cost is at most one interval of
// latency per hop. Where deliveries wait for calls out to end (a host held at its adaptive or
// configured in-flight limit, a route's limit, an ordered route's one call at a time) that
// latency is paid on every round trip and the throughput is slots per round trip: the
// coordinator paces neither itself nor the sender then (Worker::step). Before it did, a receiver
// answering a share of calls with 503 (its limit cut to 2-5) fell behind by seconds.
//
// Thread-safety: one thread.
#pragma once

#include <chrono>
#include <thread>

namespace hookrelay {

class WakePacer {
 public:
  using Clock = std::chrono::steady_clock;

  explicit WakePacer(std::chrono::microseconds interval) : interval_(interval) {}

  // Before a wait for more work: how much of the interval since the last wake-up is left (zero
  // when the interval is zero or has passed).
  Clock::duration remaining(Clock::time_point now) const {
    if (interval_.count() <= 0 || last_ == Clock::time_point{}) return Clock::duration::zero();
    const auto due = last_ + interval_;
    return due > now ? due - now : Clock::duration::zero();
  }

  // Sleeps out the rest of the interval, if any.
  void pace() {
    if (auto left = remaining(Clock::now()); left > Clock::duration::zero())
      std::this_thread::sleep_for(left);
  }

  // The thread woke (or began a round of work) now.
  void woke(Clock::time_point now = Clock::now()) { last_ = now; }

  std::chrono::microseconds interval() const { return interval_; }
  void set_interval(std::chrono::microseconds interval) { interval_ = interval; }

 private:
  std::chrono::microseconds interval_;
  Clock::time_point last_{};
};

}  // namespace hookrelay
