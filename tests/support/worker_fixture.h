// WorkerTest: the base fixture of the worker tests (integration on the devbroker, kafka on a real
// cluster): a ScriptedReceiver started per test, and a Stack created on demand with routes
// pointing at it. Members are destroyed in reverse order, so the workers stop before the receiver
// does. Also the helpers those tests share.
//
// Thread-safety: the test thread only.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/scripted_receiver.h"
#include "tests/support/stack.h"

namespace hookrelay::test {

using namespace std::chrono_literals;

// (event id, body) pairs prefix0, prefix1, ... with bodies {"n":i}.
inline std::vector<std::pair<std::string, std::string>> numbered_events(const std::string& prefix,
                                                                        int n) {
  std::vector<std::pair<std::string, std::string>> events;
  for (int i = 0; i < n; ++i)
    events.emplace_back(prefix + std::to_string(i), R"({"n":)" + std::to_string(i) + "}");
  return events;
}

// Every delivery key has exactly one 'succeeded' attempt row.
inline void expect_each_succeeded_once(const Stack& stack, std::size_t keys) {
  auto per_key = stack.succeeded_attempts_per_key();
  EXPECT_EQ(per_key.size(), keys);
  for (const auto& [key, n] : per_key) EXPECT_EQ(n, 1) << key;
}

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = rx_.start();
    ASSERT_TRUE(started) << started.error().message;
  }

  // Call with ASSERT_NO_FATAL_FAILURE.
  void create_stack(StackOptions options) {
    auto s = Stack::create(std::move(options));
    ASSERT_TRUE(s) << s.error().message;
    stack_ = std::move(*s);
  }
  std::size_t start_worker() {
    auto w = stack_->start_worker();
    EXPECT_TRUE(w) << w.error().message;
    return w ? *w : 0;
  }
  void produce(const std::string& source, const std::string& event_id, const std::string& body) {
    auto r = stack_->produce_webhook(source, event_id, body);
    ASSERT_TRUE(r) << r.error().message;
  }
  bool deliveries_in_state(const std::string& state, int64_t n, std::chrono::milliseconds timeout) {
    return eventually([&] { return stack_->count_deliveries(state) >= n; }, timeout);
  }
  // A worker in consumer group `group`, on the stack's config otherwise: it reads every message
  // from the earliest offsets whatever the stack's group committed, as after a replay (or as a
  // copy of every message would reach it). Its index, or none (the failure reported).
  std::optional<std::size_t> start_worker_in_group(const std::string& group) {
    StackOptions options = stack_->options();
    options.group_id = group;
    auto config = stack_->write_config(options, group + ".yaml");
    EXPECT_TRUE(config) << config.error().message;
    if (!config) return std::nullopt;
    auto w = stack_->start_worker(true, *config);
    EXPECT_TRUE(w) << w.error().message;
    if (!w) return std::nullopt;
    return *w;
  }
  // Attempts recorded as duplicate_success: a second success of one delivery.
  int64_t duplicate_successes() const {
    return std::stoll(stack_->scalar(
        "SELECT count(*) FROM delivery_attempts_all WHERE outcome = 'duplicate_success'"));
  }
  double worker_metric(std::size_t worker, const std::string& name,
                       const std::vector<std::string>& labels = {}) {
    return metric_sum(stack_->worker_metrics(worker), name, labels);
  }

  ScriptedReceiver rx_;
  std::unique_ptr<Stack> stack_;
};

}  // namespace hookrelay::test
