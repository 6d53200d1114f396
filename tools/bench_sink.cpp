// hookrelay-bench-sink: an HTTP receiver that answers 200 to every request after a fixed delay,
// for measuring how a worker behaves with many slow deliveries in flight (bench/worker).
//
//   hookrelay-bench-sink --listen 127.0.0.1:PORT [--delay-ms 3000] [--threads 1]
//
// Requests are not held by sleeping threads: each Responder waits in a FIFO on one timer thread
// (the delay is constant, so arrival order is due order) and is called when due; the connection's
// event loop then writes the answer. Ten thousand open connections cost a queue entry each.
// Needs a file-descriptor limit above the number of concurrent connections.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "shared/config/config.h"
#include "shared/http/http_server.h"
#include "shared/service_startup.h"

using namespace hookrelay;

namespace {

using Clock = std::chrono::steady_clock;

// Calls each Responder `delay` after it was added, on its own thread.
class DelayedResponder {
 public:
  explicit DelayedResponder(std::chrono::milliseconds delay)
      : delay_(delay), thread_([this] { loop(); }) {}
  ~DelayedResponder() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  DelayedResponder(const DelayedResponder&) = delete;
  DelayedResponder& operator=(const DelayedResponder&) = delete;

  void add(Responder respond) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.emplace_back(Clock::now() + delay_, std::move(respond));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      if (queue_.empty()) {
        cv_.wait(lock);
        continue;
      }
      auto due = queue_.front().first;
      if (Clock::now() < due) {
        cv_.wait_until(lock, due);
        continue;
      }
      Responder respond = std::move(queue_.front().second);
      queue_.pop_front();
      lock.unlock();
      HttpResponse r;
      r.body = R"({"ok":true})";
      respond(std::move(r));
      lock.lock();
    }
  }

  const std::chrono::milliseconds delay_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Clock::time_point, Responder>> queue_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members it uses exist
};

}  // namespace

static int run(int argc, char** argv) {
  block_termination_signals();
  std::string listen = "127.0.0.1:9300";
  int delay_ms = 3000;
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--listen" && i + 1 < argc) {
      listen = argv[++i];
    } else if (a == "--delay-ms" && i + 1 < argc) {
      delay_ms = std::atoi(argv[++i]);
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else {
      std::fprintf(
          stderr,
          "usage: hookrelay-bench-sink [--listen HOST:PORT] [--delay-ms MS] [--threads N]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  auto hp = parse_host_port(listen, "--listen");
  if (!hp || delay_ms < 0 || threads < 1) {
    std::fprintf(stderr, "hookrelay-bench-sink: bad --listen, --delay-ms or --threads\n");
    return 2;
  }
  DelayedResponder delayed{std::chrono::milliseconds(delay_ms)};
  HttpServerOptions options;
  options.host = hp->host;
  options.port = hp->port;
  options.threads = threads;
  // A sink for benchmarks: the memory test holds 10,000 connections open at once, past the
  // server's default cap of 4096 (which answers 503 and would turn the test into retries).
  options.max_connections = 1000000;
  HttpServer server(options, [&delayed](const HttpRequest&, Responder respond) {
    delayed.add(std::move(respond));
  });
  if (auto s = server.start(); !s) {
    std::fprintf(stderr, "hookrelay-bench-sink: %s\n", s.error().message.c_str());
    return 1;
  }
  std::printf("bench sink listening on %s:%u delay_ms=%d\n", hp->host.c_str(), server.port(),
              delay_ms);
  std::fflush(stdout);
  wait_for_termination_signal();
  server.stop();
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
}
