// What `dlq replay` and `routes resume` share about runs that end early.
//
// SIGINT and SIGTERM during a replay or a route's release: the key in progress is finished, then
// the run stops (ReplayOptions::stop_requested); a key waiting for its turn under --rate is not
// started (the Replayer paces in slices of a second and asks again before each mark). A key is
// marked 'retrying' before its message is produced (a worker must not find the message while the
// row is still dead or parked); ended between the two, it would stay 'retrying' with no message
// anywhere until a later run takes its unfinished replay up (`dlq replay --unfinished`, `routes
// resume`).
#pragma once

#include <csignal>
#include <cstdint>

#include "cli/cli_args.h"
#include "shared/result.h"

namespace hookrelay::cli {

// A replay mark no worker has acted on for this long is taken to be a killed run's, and its
// message is produced again (--unfinished-after): a mark younger than that may be a run still
// going elsewhere.
inline constexpr int64_t kUnfinishedAfterMs = int64_t{5} * 60 * 1000;

// --unfinished-after, at least 1s; kUnfinishedAfterMs without it.
inline Result<int64_t> unfinished_after_arg(const ParsedArgs& args) {
  auto v = args.value("--unfinished-after");
  if (!v) return kUnfinishedAfterMs;
  auto ms = parse_duration_arg(*v, "--unfinished-after");
  if (!ms) return Unexpected{ms.error()};
  if (*ms < 1000) return fail("usage", "--unfinished-after: must be at least 1s");
  return *ms;
}

inline volatile std::sig_atomic_t replay_stop_signal = 0;

inline void request_replay_stop(int sig) { replay_stop_signal = sig; }

// While it lives, SIGINT and SIGTERM set replay_stop_signal instead of ending the process.
class ReplayStopGuard {
 public:
  ReplayStopGuard() {
    replay_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = &request_replay_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~ReplayStopGuard() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  ReplayStopGuard(const ReplayStopGuard&) = delete;
  ReplayStopGuard& operator=(const ReplayStopGuard&) = delete;
  static bool stop_requested() { return replay_stop_signal != 0; }

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

}  // namespace hookrelay::cli
