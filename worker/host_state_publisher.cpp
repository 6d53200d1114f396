#include "worker/host_state_publisher.h"

#include <chrono>
#include <utility>

#include "shared/log.h"
#include "shared/thread_guard.h"

namespace hookrelay {

HostStatePublisher::HostStatePublisher(HostStateStore& store, WorkerMetrics* metrics,
                                       HostStatePublisherOptions options)
    : store_(store), metrics_(metrics), options_(std::move(options)) {}

HostStatePublisher::~HostStatePublisher() { stop(); }

void HostStatePublisher::start() {
  thread_ = start_guarded_thread("host_states", [this] { loop(); });
}

void HostStatePublisher::stop() {
  if (stopped_) return;
  stopped_ = true;
  stop_.store(true);
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  bool offered = false;
  {
    std::lock_guard lock(mu_);
    offered = latest_.has_value();
  }
  if (!offered) return;  // nothing of ours to withdraw
  if (auto done = store_.withdraw(options_.worker_id); !done) {
    spdlog::warn("msg=host_states_withdraw_failed worker_id={} error={}", options_.worker_id,
                 log_quote(done.error().message));
  }
}

void HostStatePublisher::offer(std::vector<HostStateRow> rows) {
  std::lock_guard lock(mu_);
  latest_ = std::move(rows);
}

bool HostStatePublisher::publish() {
  std::vector<HostStateRow> rows;
  {
    std::lock_guard lock(mu_);
    if (!latest_) return true;
    rows = *latest_;
  }
  const auto started = std::chrono::steady_clock::now();
  auto done = store_.publish(options_.worker_id, rows, options_.forget_after_s);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (metrics_) metrics_->postgres("host_states", seconds, done ? "" : done.error().code);
  if (!done) {
    spdlog::warn("msg=host_states_publish_failed hosts={} error={}", rows.size(),
                 log_quote(done.error().message));
    return false;
  }
  return true;
}

void HostStatePublisher::loop() {
  while (!stop_.load()) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(options_.interval_ms),
                   [this] { return stop_.load(); });
    }
    if (stop_.load()) break;
    publish();
  }
}

}  // namespace hookrelay
