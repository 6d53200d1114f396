// Thread entry points. Every std::thread a service starts runs its body through
// start_guarded_thread (or run_guarded), so an exception escaping the body is not the silent
// std::terminate it would otherwise be: it is logged with the thread's name, counted in
// hookrelay_thread_failures_total{thread}, and handed to the main thread through
// ThreadFailures, whose handler (set by the service's main: it raises SIGTERM to the process)
// stops the service; main then exits with status 1 and says why (ThreadFailures::first()).
//
// Thread-safety: every function from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace hookrelay {

class ThreadFailures {
 public:
  static ThreadFailures& instance();

  // Exports hookrelay_thread_failures_total in `registry` (the service's). Failures reported
  // before are counted there too.
  void register_metric(prometheus::Registry& registry);
  // Called once, on the first failure, from the failing thread. Must not block.
  void set_handler(std::function<void()> on_first_failure);
  void report(std::string_view thread, std::string_view what);
  // "thread <name> failed: <what>" of the first failure, if any.
  std::optional<std::string> first() const;
  void reset_for_tests();

 private:
  mutable std::mutex mu_;
  prometheus::Family<prometheus::Counter>* family_ = nullptr;
  std::function<void()> handler_;
  std::optional<std::string> first_;
  std::vector<std::string> reported_;  // thread names, for a metric registered later
};

// Runs body; an exception escaping it goes to ThreadFailures::instance().report(name, ...).
void run_guarded(std::string_view name, const std::function<void()>& body);

// std::thread running body under run_guarded.
std::thread start_guarded_thread(std::string name, std::function<void()> body);

}  // namespace hookrelay
