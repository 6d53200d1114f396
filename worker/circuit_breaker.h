// CircuitBreaker: stops calling a destination host that keeps failing, then probes it.
//
// Per host: closed (calls flow) -> open after `failure_threshold` consecutive failures -> refuses
// calls for `cooldown_ms` -> half-open: allow() lets ONE probe through; its success closes the
// circuit, its failure opens it for another cooldown. A probe that never reports (the caller lost
// it) is replaced by a new one after a further cooldown, so a host cannot stay stuck half-open.
//
// A caller with other limits of its own asks gate() first, which hands nothing out, and calls
// started() only when the call really starts: a half-open probe is not spent on a call that its
// other limits then hold back.
//
// What to record: record(host, false, started) for retryable outcomes only (5xx, 408/429,
// timeouts, connect errors); record(host, true, started) for success and for permanent answers
// such as 404, since the host did answer. Outcomes where no request reached the host (circuit
// open, rate limited, SSRF refusal) are not recorded. Results arriving while the circuit is open
// come from calls started before it opened and are ignored; so are those of calls started before
// the circuit turned half-open: only a probe's answer decides, the first to come of the probes of
// that half-open spell (a probe slower than the cooldown is replaced by another, and each counts).
//
// Memory: a closed host with no recent failure is forgotten, so state stays proportional to the
// hosts currently misbehaving, however many hosts deliveries go to; prune() forgets a closed host
// no call has started to or answered from for kForgetIdleMs (or two cooldowns, if longer): one
// that failed a few times and was never called again (a call to a host that does not exist). An
// open or half-open host is kept while deliveries still come to it (a deferral counts, see
// deferred()), and for `forget_open_after_ms` after the last: its deliveries may wait in a long
// retry tier meanwhile, and forgotten, they would all be sent at once, each spending an attempt.
//
// Clock: `now_ms` and every time given to the methods are of one clock that never steps (the
// dispatcher's steady clock). On a wall clock stepped back an hour, an open circuit would stay
// open an hour longer. open_until() is on that clock too: the caller converts it to Unix ms.
//
// Thread-safety: none. One owner (the delivery loop thread) calls every method.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace hookrelay {

class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };

  struct Options {
    int failure_threshold = 20;   // consecutive failures that open a circuit; <= 0 never opens
    int64_t cooldown_ms = 30000;  // how long an open circuit refuses calls
    // How long an open or half-open host with nothing coming to it is kept (see above); never
    // less than a closed host's.
    int64_t forget_open_after_ms = 0;
  };

  // Hosts per state, for gauges. `closed` counts only hosts with a recent failure (see above).
  struct Counts {
    std::size_t closed = 0;
    std::size_t open = 0;
    std::size_t half_open = 0;
  };

  CircuitBreaker(Options options, std::function<int64_t()> now_ms);

  // The state as of now: an open circuit whose cooldown has passed reads as half-open.
  State state(std::string_view host) const;

  enum class Gate {
    kCall,      // closed, or half-open with the probe to hand out: a call may start
    kOpen,      // open: no call until open_until()
    kProbeOut,  // half-open with its probe out: its answer decides, soon
  };
  // Whether a call to `host` may start at `now_ms`, handing nothing out. A caller that then calls
  // started() passes both the same time, so the two agree on the state.
  Gate gate(std::string_view host, int64_t now_ms) const;
  // A call to `host` starts at `now_ms` (gate() said kCall): in half-open it is the probe.
  void started(std::string_view host, int64_t now_ms);

  // While the host's circuit is open: when it turns half-open (its next probe may start).
  // 0 when it is not open (closed, or half-open with or without a probe out).
  int64_t open_until(std::string_view host, int64_t now_ms) const;
  int64_t open_until(std::string_view host) const { return open_until(host, now_ms_()); }

  // The outcome of a call to `host` that started at `started_ms` (on this breaker's clock).
  void record(std::string_view host, bool success, int64_t started_ms);
  // The host answered a call started at `started_ms` without a verdict on its health (a 429: its
  // own flow control, which the adaptive limit answers). A half-open circuit's probe so answered
  // closes it, since the host is up; otherwise nothing changes.
  void answered(std::string_view host, int64_t started_ms);
  // A call started at `started_ms` reached no host after all (the SSRF guard refused every
  // address): if it was a half-open circuit's probe, the next call may be the probe at once.
  void abandoned(std::string_view host, int64_t started_ms);

  // New options (a configuration reload). Hosts keep their state: an open circuit's cooldown is
  // measured with the new value, and the new threshold counts failures already seen.
  void set_options(Options options) { options_ = options; }

  Counts counts() const;
  // A delivery to `host` was deferred at `now_ms` for its open circuit: the host is still in use.
  void deferred(std::string_view host, int64_t now_ms);
  // Forgets the hosts idle for long enough (see above).
  void prune(int64_t now_ms);
  static constexpr int64_t kForgetIdleMs = int64_t{10} * 60 * 1000;

 private:
  struct Host {
    State state = State::kClosed;
    int consecutive_failures = 0;
    int64_t opened_at_ms = 0;
    bool probe_in_flight = false;
    int64_t probe_started_ms = 0;
    int64_t last_seen_ms = 0;  // the last call started, answer recorded or deferral
  };

  State effective_state(const Host& h, int64_t now) const;
  // When the host's circuit turned (or turns) half-open: its probes start from then on.
  int64_t half_open_since(const Host& h) const;
  void open(Host& h, int64_t now);

  Options options_;
  std::function<int64_t()> now_ms_;
  std::unordered_map<std::string, Host> hosts_;
};

const char* circuit_state_name(CircuitBreaker::State state);  // "closed" | "open" | "half_open"

}  // namespace hookrelay
