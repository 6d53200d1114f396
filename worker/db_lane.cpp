#include "worker/db_lane.h"

#include "shared/thread_guard.h"

namespace hookrelay {

DbLane::DbLane(bool threaded, std::string name) : threaded_(threaded) {
  if (threaded_) thread_ = start_guarded_thread(std::move(name), [this] { run(); });
}

DbLane::~DbLane() {
  if (!threaded_) return;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void DbLane::submit(std::function<void()> task) {
  if (!threaded_) {
    task();
    return;
  }
  {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void DbLane::run() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace hookrelay
