// HttpServer::watch_fd: another library's wake-up pipe served on the event loop. A wake-up that
// never comes (librdkafka queued an event before its pipe was enabled) must not strand what waits
// on it, and a handler that throws must not end the watch.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "shared/http/http_server.h"

namespace hookrelay {
namespace {

using namespace std::chrono_literals;

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  return done();
}

class WatchedPipe : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(pipe2(fds_, O_NONBLOCK | O_CLOEXEC), 0); }
  void TearDown() override {
    close(fds_[0]);
    close(fds_[1]);
  }
  int fds_[2] = {-1, -1};
};

TEST_F(WatchedPipe, HandlerRunsWithoutAWakeUpWithinTheSweep) {
  std::atomic<int> served{0};
  HttpServer server({}, [](const HttpRequest&, Responder) {});
  server.watch_fd(fds_[0], [&] { served.fetch_add(1); });
  ASSERT_TRUE(server.start());
  // Nothing is ever written to the pipe: the sweep alone serves it, about every 100 ms.
  EXPECT_TRUE(wait_for([&] { return served.load() >= 3; }, 2s)) << served.load();
  server.stop();
}

TEST_F(WatchedPipe, ThrowingHandlerKeepsTheWatchAndTheWakeUps) {
  std::atomic<int> served{0};
  std::atomic<int> woken{0};
  HttpServer server({}, [](const HttpRequest&, Responder) {});
  server.watch_fd(fds_[0], [&] {
    char buf[16];
    if (read(fds_[0], buf, sizeof buf) > 0) woken.fetch_add(1);
    if (served.fetch_add(1) == 0) throw std::runtime_error("first call fails");
  });
  ASSERT_TRUE(server.start());
  ASSERT_TRUE(wait_for([&] { return served.load() >= 2; }, 2s));
  ASSERT_EQ(write(fds_[1], "1", 1), 1);
  EXPECT_TRUE(wait_for([&] { return woken.load() >= 1; }, 2s)) << "the pipe is no longer watched";
  server.stop();
}

}  // namespace
}  // namespace hookrelay
