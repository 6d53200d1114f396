// HttpServer: HTTP/1.1 with keep-alive on Boost.Beast, one event loop per thread.
//
// Each thread owns an io_context and an acceptor bound with SO_REUSEPORT to the same address, so
// the kernel spreads connections and a connection never changes thread. The handler runs on the
// connection's thread and may answer later from any thread: the Responder posts back.
//
// Bodies above `max_body_bytes` get 413 without being read further. Idle connections close after
// `idle_timeout`. stop_accepting() closes the listeners but lets open connections finish;
// stop() ends everything.
//
// Thread-safety: start/stop_accepting/stop from one controlling thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "shared/http_types.h"
#include "shared/result.h"

namespace hookrelay {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 = ephemeral (see port())
  int threads = 1;
  std::size_t max_body_bytes = 1 << 20;
  std::chrono::seconds idle_timeout{75};
  // Called when a request is refused before the handler runs (413, 400 unparsable): status, code.
  std::function<void(int, std::string_view)> on_rejected;
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Before start(): run `on_readable` on the first loop's thread whenever `fd` is readable (a
  // wake-up pipe of another library). The fd stays owned by the caller.
  void watch_fd(int fd, std::function<void()> on_readable);

  // Binds and starts the threads. Error names the address when binding fails.
  Result<void> start();
  uint16_t port() const;
  void stop_accepting();
  void stop();  // idempotent; joins the threads
  int open_connections() const;

  struct Impl;  // defined in http_server.cpp only

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace hookrelay
