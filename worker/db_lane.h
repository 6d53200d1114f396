// DbLane: runs Postgres round trips on a thread of its own, one at a time, so the worker's
// coordinator keeps polling Kafka and dispatching HTTP while Postgres works. The worker keeps
// two lanes, each with its own DeliveryStore (connection): claims and records overlap.
//
// With `threaded` false, submit() runs the task at once on the caller's thread: unit tests
// drive the coordinator step by step that way.
//
// An exception escaping a task ends the lane's thread and goes to ThreadFailures (the process
// stops and exits 1): a lane that silently stopped would leave the worker waiting for ever.
//
// Thread-safety: submit() from the coordinator thread only.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace hookrelay {

class DbLane {
 public:
  // `name`: its thread's (in /proc and profiles).
  explicit DbLane(bool threaded, std::string name = "postgres_lane");
  ~DbLane();  // finishes queued tasks, then joins
  DbLane(const DbLane&) = delete;
  DbLane& operator=(const DbLane&) = delete;

  void submit(std::function<void()> task);

 private:
  void run();

  bool threaded_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace hookrelay
