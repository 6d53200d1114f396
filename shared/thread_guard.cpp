#include "shared/thread_guard.h"

#include <pthread.h>

#include <exception>

#include "shared/log.h"

namespace hookrelay {

ThreadFailures& ThreadFailures::instance() {
  static ThreadFailures failures;
  return failures;
}

void ThreadFailures::register_metric(prometheus::Registry& registry) {
  std::lock_guard lock(mu_);
  family_ =
      &prometheus::BuildCounter()
           .Name("hookrelay_thread_failures_total")
           .Help("Threads ended by an exception, by thread; the process then stops and exits 1")
           .Register(registry);
  for (const auto& name : reported_) family_->Add({{"thread", name}}).Increment();
}

void ThreadFailures::set_handler(std::function<void()> on_first_failure) {
  std::lock_guard lock(mu_);
  handler_ = std::move(on_first_failure);
}

void ThreadFailures::report(std::string_view thread, std::string_view what) {
  spdlog::critical("msg=thread_failed thread={} error={} action=\"stopping the process\"", thread,
                   log_quote(what));
  std::function<void()> handler;
  {
    std::lock_guard lock(mu_);
    reported_.emplace_back(thread);
    if (family_) family_->Add({{"thread", std::string(thread)}}).Increment();
    if (first_) return;
    first_ = "thread " + std::string(thread) + " failed: " + std::string(what);
    handler = handler_;
  }
  if (handler) handler();
}

std::optional<std::string> ThreadFailures::first() const {
  std::lock_guard lock(mu_);
  return first_;
}

void ThreadFailures::reset_for_tests() {
  std::lock_guard lock(mu_);
  family_ = nullptr;
  handler_ = nullptr;
  first_.reset();
  reported_.clear();
}

void run_guarded(std::string_view name, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    ThreadFailures::instance().report(name, e.what());
  } catch (...) {
    ThreadFailures::instance().report(name, "an exception that is not a std::exception");
  }
}

std::thread start_guarded_thread(std::string name, std::function<void()> body) {
  return std::thread([name = std::move(name), body = std::move(body)] {
    // The thread's name in /proc/<pid>/task/*/comm, perf and top (at most 15 characters).
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    run_guarded(name, body);
  });
}

}  // namespace hookrelay
