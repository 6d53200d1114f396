// WorkerTest: the base fixture of the worker integration tests: a ScriptedReceiver started per
// test, and a Stack created on demand with routes pointing at it. Members are destroyed in
// reverse order, so the workers stop before the receiver does.
//
// Thread-safety: the test thread only.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "tests/support/scripted_receiver.h"
#include "tests/support/stack.h"

namespace hookrelay::test {

using namespace std::chrono_literals;

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
  double worker_metric(std::size_t worker, const std::string& name, const std::vector<std::string>& labels = {}) {
    return metric_sum(stack_->worker_metrics(worker), name, labels);
  }

  ScriptedReceiver rx_;
  std::unique_ptr<Stack> stack_;
};

}  // namespace hookrelay::test
