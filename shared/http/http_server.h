// HttpServer: HTTP/1.1 with keep-alive on Boost.Beast, one event loop per thread.
//
// Each thread owns an io_context and an acceptor bound with SO_REUSEPORT to the same address, so
// the kernel spreads connections and a connection never changes thread. The handler runs on the
// connection's thread and may answer later from any thread: the Responder posts back.
//
// Hostile clients are bounded: bodies above `max_body_bytes` get 413 without being read further;
// a request's header must arrive whole within `header_timeout` (else 408) and its body within
// `idle_timeout`; a keep-alive connection idle for `idle_timeout` is closed; the bodies held at
// once, across connections, stay under `max_buffered_body_bytes` (a request holds the memory its
// body has taken: 64 KiB, or its smaller declared length, from its header, growing as its bytes
// arrive and never past its declared length, until it is answered and its handler has returned;
// a request that would pass the budget gets 503, before its body is read if its first 64 KiB do
// not fit, so announcing a large body and sending nothing holds 64 KiB); more than
// `max_header_count` header fields get 431; past `max_connections` open connections a new one is
// answered 503 and closed. A header is bounded as it arrives, not only once whole: at most 64 KiB
// and `max_header_count` fields of it are parsed, and one that goes past either is answered 431
// then, so a header that never ends holds no more memory than that. A request with a
// Transfer-Encoding whose final coding is not chunked (its body's length unknown, RFC 7230 3.3.3)
// gets 400 and the connection is closed, and so does a chunked request with trailer fields (never
// merged into its header). A connection going idle keeps at most 16 KiB of read and response
// buffers, whatever its last request took. Up to four empty lines before a request line are ignored
// (RFC 7230 3.5). The answer to a HEAD, refusals included, has no body; every other answer on the
// connection has its body. A handler that throws is answered 500 (once) and the loop goes on.
// `check_header` lets the application refuse a request from its header alone (a missing or wrong
// token): it is called on the connection's thread once the header is parsed and has passed the
// server's own checks (431, Transfer-Encoding, 413), before any of the body is held against
// `max_buffered_body_bytes`, read, or asked for with 100 Continue. A refusal it returns is
// answered as the server's own are (a JSON error, counted through on_rejected) and the connection
// is closed without the body being read, so clients it refuses cannot take the body budget from
// the requests it lets through. One that throws is answered 500.
// When accept() fails (descriptors exhausted), accepting pauses with a growing delay instead of
// spinning. stop_accepting() closes the listeners but lets open connections finish; stop() ends
// everything.
//
// Thread-safety: start/stop_accepting/stop from one controlling thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shared/http/http_types.h"
#include "shared/result.h"

namespace hookrelay {

// A request refused from its header (HttpServerOptions::check_header): answered
// json_error(status, code, message) with `headers` added.
struct HttpRefusal {
  int status = 400;
  std::string code;
  std::string message;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 = ephemeral (see port())
  int threads = 1;
  std::size_t max_body_bytes = 1 << 20;
  // Request bodies held in memory at once, over all connections; 0 = no bound.
  std::size_t max_buffered_body_bytes = std::size_t{64} << 20;
  std::size_t max_connections = 4096;  // open connections; more are refused with 503
  std::size_t max_header_count = 100;  // header fields per request; more get 431
  std::chrono::milliseconds header_timeout{
      10000};                                     // from a request's first byte to its last header
  std::chrono::milliseconds idle_timeout{60000};  // keep-alive idle time; also the body's deadline
  // Called when a request is answered without the handler (413, 400 unparsable, 408, 431, 503
  // over the connection cap, a check_header refusal) or the handler threw (500): status, code.
  std::function<void(int, std::string_view)> on_rejected;
  // Called with each request's header (method, target and header fields; the body empty), on the
  // connection's thread, before any of its body is held or read (see above). nullopt lets the
  // request go on; a refusal is answered and the connection closed. Empty: every request goes on.
  std::function<std::optional<HttpRefusal>(const HttpRequest& head)> check_header;
  // Called when accept() fails; reason is the errno name in lower case ("emfile", ...).
  std::function<void(std::string_view)> on_accept_error;
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Before start(): run `on_readable` on the first loop's thread whenever `fd` is readable (a
  // wake-up pipe of another library), and at least every 100 ms in any case, so a wake-up the
  // library failed to write delays its events, never strands them. An exception from
  // `on_readable` is logged and the watch goes on. The fd stays owned by the caller.
  void watch_fd(int fd, std::function<void()> on_readable);

  // Binds and starts the threads. Error names the address when binding fails.
  Result<void> start();
  uint16_t port() const;
  void stop_accepting();
  void stop();  // idempotent; joins the threads
  int open_connections() const;
  std::size_t buffered_body_bytes() const;  // held now under max_buffered_body_bytes

  struct Impl;  // defined in http_server.cpp only

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace hookrelay
