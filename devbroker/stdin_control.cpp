#include "devbroker/stdin_control.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "shared/thread_guard.h"

namespace hookrelay::devbroker {
namespace {
// Bounds how long shutdown waits for the reader to notice stop_.
constexpr int kPollIntervalMs = 100;
}  // namespace

StdinControl::StdinControl(ControlHandler& handler) : handler_(handler) {
  thread_ = start_guarded_thread("stdin_control", [this] { run(); });
}

StdinControl::~StdinControl() {
  stop_ = true;
  thread_.join();
}

void StdinControl::run() {
  std::string pending;
  char chunk[4096];
  while (!stop_) {
    pollfd pfd{STDIN_FILENO, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, kPollIntervalMs);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      spdlog::warn("msg=stdin_control_poll_failed errno={}", errno);
      return;
    }
    if (ready == 0) continue;
    const ssize_t n = ::read(STDIN_FILENO, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      spdlog::debug("msg=stdin_control_closed");
      return;
    }
    pending.append(chunk, static_cast<std::size_t>(n));
    for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;  // a bare Enter at a terminal is not a command
      const std::string reply = handler_.handle(line) + "\n";
      std::fwrite(reply.data(), 1, reply.size(), stdout);
      std::fflush(stdout);
    }
  }
}

}  // namespace hookrelay::devbroker
