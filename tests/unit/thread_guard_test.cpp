// Thread entry points: an exception escaping a thread is logged, counted and handed to the main
// thread instead of ending the process without a word.
#include "shared/thread_guard.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <stdexcept>
#include <string>

#include "worker/db_lane.h"

namespace hookrelay {
namespace {

double failures(prometheus::Registry& registry, const std::string& thread) {
  for (const auto& family : registry.Collect()) {
    if (family.name != "hookrelay_thread_failures_total") continue;
    for (const auto& m : family.metric) {
      for (const auto& l : m.label) {
        if (l.name == "thread" && l.value == thread) return m.counter.value;
      }
    }
  }
  return 0;
}

class ThreadGuard : public ::testing::Test {
 protected:
  ThreadGuard() {
    ThreadFailures::instance().reset_for_tests();
    ThreadFailures::instance().register_metric(registry);
    ThreadFailures::instance().set_handler([this] { handled.fetch_add(1); });
  }
  ~ThreadGuard() override { ThreadFailures::instance().reset_for_tests(); }

  prometheus::Registry registry;
  std::atomic<int> handled{0};
};

TEST_F(ThreadGuard, AnEscapingExceptionIsCountedAndHandedToTheMainThread) {
  auto t = start_guarded_thread("worker_test", [] { throw std::runtime_error("out of luck"); });
  t.join();  // the thread ended normally: no std::terminate
  auto first = ThreadFailures::instance().first();
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, "thread worker_test failed: out of luck");
  EXPECT_EQ(handled.load(), 1);
  EXPECT_EQ(failures(registry, "worker_test"), 1);

  auto second = start_guarded_thread("other", [] { throw 42; });
  second.join();
  EXPECT_EQ(handled.load(), 1) << "the main thread is told once";
  EXPECT_EQ(failures(registry, "other"), 1);
  EXPECT_EQ(*ThreadFailures::instance().first(), "thread worker_test failed: out of luck");
}

TEST_F(ThreadGuard, AThreadThatReturnsReportsNothing) {
  start_guarded_thread("fine", [] {}).join();
  EXPECT_FALSE(ThreadFailures::instance().first());
  EXPECT_EQ(handled.load(), 0);
}

TEST_F(ThreadGuard, APostgresLaneTaskThatThrowsStopsTheProcessLoudly) {
  {
    DbLane lane(true);
    lane.submit([] { throw std::runtime_error("lane task broke"); });
  }  // joins the lane's thread
  auto first = ThreadFailures::instance().first();
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, "thread postgres_lane failed: lane task broke");
  EXPECT_EQ(failures(registry, "postgres_lane"), 1);
}

TEST_F(ThreadGuard, AThreadCarriesItsNameForProfilesAndProc) {
  std::string seen;
  start_guarded_thread("a_rather_long_thread_name", [&seen] {
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof name);
    seen = name;
  }).join();
  EXPECT_EQ(seen, "a_rather_long_t") << "the first 15 characters, the kernel's limit";
}

TEST(ThreadFailuresMetric, FailuresBeforeRegistrationAreCountedWhenItComes) {
  ThreadFailures::instance().reset_for_tests();
  run_guarded("early", [] { throw std::runtime_error("x"); });
  prometheus::Registry registry;
  ThreadFailures::instance().register_metric(registry);
  EXPECT_EQ(failures(registry, "early"), 1);
  ThreadFailures::instance().reset_for_tests();
}

}  // namespace
}  // namespace hookrelay
