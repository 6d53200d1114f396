// The real HttpServer (shared/http/http_server.cpp) on 127.0.0.1, fed over TCP: its own reading of
// a request's header (read_header, parse_header, header_read: at most 64 KiB and max_header_count
// + 2 lines given to Beast's parser, 431 past either), its checks of the header (too many fields,
// Transfer-Encoding, 413), IngestService::check_header before the body, the body budget, 100
// Continue, keep-alive and pipelining, lingering after a refusal, its timeouts and its connection
// cap. raw_http_fuzz feeds Beast's parser directly and never runs this code.
//
// One server per process (the ingest fixture of fuzz_support.h behind it, as ingest_app.cpp wires
// it), with small limits: 8 header fields, 4 KiB bodies, a 6 KiB body budget, 3 connections,
// 100 ms header and idle timeouts. Input:
//
//   byte 0  mode: bits 0-1 how the request bytes are cut into writes: 0 one write, 1 pieces of
//           (byte 1 % 64) + 1 bytes, 2 after every LF (byte 1 odd: after every CR too, so CRLF
//           is split), 3 pieces whose lengths (each byte + 1) are the (byte 1 % 16) bytes after
//           byte 1, the rest in one last piece;
//           bits 2-3 how the client ends: 0 shuts its sending side (the server sees end of
//           stream), 1 keeps it open until the server closes (its own timeouts), 2 keeps it open
//           and closes once nothing has come for 20 ms, 3 resets the connection (SO_LINGER 0)
//           right after the last write, reading nothing;
//           bit 4: first, another connection announces a 4 KiB body to /v1/calls and sends none
//           of it, holding 4 KiB of the 6 KiB budget;
//           bit 5: first, idle connections fill the server's connection cap;
//           bits 6-7: pause between writes: none, 0.2 ms, 1 ms, 3 ms (40 ms in all at most).
//   byte 1  the parameter of the cut (above).
//   rest    the bytes written (after the lengths of cut 3).
//
// Properties: the server closes the connection within a 2 s deadline of the last write when the
// client shuts its side or waits (never hangs past its own timeouts); what it sends is a sequence
// of whole HTTP/1.1 responses with a status in 100-599 and a Content-Length (1xx excepted),
// nothing after one that says Connection: close; a 4xx/5xx JSON body parses and names
// error.code; a response to a HEAD (found by parsing the bytes sent as the server does) has no
// body; no more answers than requests; when the server closed before any of its timeouts could
// have ended the connection (sooner than 100 ms after it was made), having had all the client
// sent and its end of stream or wait, then every request it had whole is answered unless an
// earlier answer closed the connection, and a header whose first max_header_count + 2 lines parse
// without ending it is answered 431 too_many_headers; once every connection is closed, the
// server's open-connection count and its body bytes held (open_connections(),
// buffered_body_bytes()) return to 0 within 3 s; the next connection is served (GET /healthz
// answers 200). Only 127.0.0.1 is ever connected to.
//
// HTTP_SERVER_FUZZ_TRACE=1 prints each input's mode, writes and answers (status, error code).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>

#include "fuzz_support.h"
#include "shared/http/http_server.h"
#include "shared/signing/crypto.h"

using namespace hookrelay;
namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr std::size_t kMaxHeaderCount = 8;
constexpr std::size_t kMaxBodyBytes = 4096;
constexpr std::size_t kBodyBudget = 6144;
constexpr std::size_t kMaxConnections = 3;
constexpr milliseconds kHeaderTimeout{100};
constexpr milliseconds kIdleTimeout{100};
// After the last write: the server must have closed by then (it sees end of stream, or its own
// timeouts, 100 ms, end the connection); generous for a sanitized build on a loaded machine.
constexpr milliseconds kCloseDeadline{2000};
// After the client closed every connection: the counts are back to 0 by then (the server's
// linger after a refusal ends when the client closes, at most 2 s otherwise).
constexpr milliseconds kSettleDeadline{3000};
constexpr milliseconds kQuiet{20};
constexpr std::chrono::microseconds kMaxPauses{40000};
constexpr std::size_t kMaxPieces = 512;
constexpr const char* kToken = "tok_0123456789abcdef";  // fuzz_support.h's api_tokens

HttpServer* g_server = nullptr;

HttpServer& server() {
  static HttpServer* s = [] {
    auto& fixture = fuzz::ingest_fixture();  // quiets the logs too
    // OpenSSL initialises itself on its first use; on the loop thread, the error state that
    // initialisation leaves on its thread is never freed (LeakSanitizer reports 904 bytes from
    // ERR_set_mark in CONF_modules_load_file_ex at exit). Used here first, it is the main thread's.
    static_cast<void>(hmac(HmacAlgorithm::kSha256, "key", "data"));
    HttpServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.threads = 1;
    o.max_body_bytes = kMaxBodyBytes;
    o.max_buffered_body_bytes = kBodyBudget;
    o.max_connections = kMaxConnections;
    o.max_header_count = kMaxHeaderCount;
    o.header_timeout = kHeaderTimeout;
    o.idle_timeout = kIdleTimeout;
    o.on_rejected = [&fixture](int status, std::string_view code) {
      fixture.service.count_rejected(status, code);
    };
    o.check_header = [&fixture](const HttpRequest& head) {
      return fixture.service.check_header(head);
    };
    auto* created = new HttpServer(o, [&fixture](const HttpRequest& req, Responder respond) {
      fixture.service.handle(req, std::move(respond));
    });
    fixture.service.set_server_load([created] {
      return IngestService::ServerLoad{created->open_connections(), created->buffered_body_bytes()};
    });
    if (auto started = created->start(); !started)
      fuzz::fuzz_fail("the server does not start", started.error().message);
    g_server = created;
    // Its thread stops before the statics it may use (the logger) are destroyed.
    std::atexit([] { g_server->stop(); });
    return created;
  }();
  return *s;
}

std::string hex(std::string_view s, std::size_t max = 512) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    out += kDigits[static_cast<unsigned char>(s[i]) >> 4];
    out += kDigits[static_cast<unsigned char>(s[i]) & 15];
  }
  if (s.size() > max) out += "...";
  return out;
}

// A socket closed when it goes out of scope.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset();
    fd = std::exchange(o.fd, -1);
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  // Closes with a reset (RST), not an orderly FIN.
  void abort() {
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    reset();
  }
};

Fd connect_to_server() {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.fd < 0) fuzz::fuzz_fail("socket()", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server().port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // 127.0.0.1 only
  if (::connect(s.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    // A signal (libFuzzer's timer) may interrupt the connect; it then goes on by itself, and its
    // outcome is the socket's error once it is writable.
    if (errno != EINTR)
      fuzz::fuzz_fail("the server does not take a connection", std::strerror(errno));
    pollfd p{s.fd, POLLOUT, 0};
    int polled = 0;
    while ((polled = ::poll(&p, 1, 2000)) < 0 && errno == EINTR) {
    }
    int error = polled == 1 ? 0 : ETIMEDOUT;
    socklen_t len = sizeof error;
    if (polled == 1) ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) fuzz::fuzz_fail("the server does not take a connection", std::strerror(error));
  }
  int one = 1;
  ::setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(s.fd, F_SETFL, ::fcntl(s.fd, F_GETFL) | O_NONBLOCK);
  return s;
}

// Sends all of `bytes` (the socket is non-blocking); false when the server has closed.
bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 100);
    } else {
      return false;
    }
  }
  return true;
}

// Waits until `done` holds, up to `deadline`.
template <class Done>
bool wait_for(Done done, milliseconds deadline) {
  const auto until = Clock::now() + deadline;
  while (!done()) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

void check_settled(const char* when) {
  auto& s = server();
  if (!wait_for([&] { return s.open_connections() == 0 && s.buffered_body_bytes() == 0; },
                kSettleDeadline)) {
    fuzz::fuzz_fail(when, "open_connections=" + std::to_string(s.open_connections()) +
                              " buffered_body_bytes=" + std::to_string(s.buffered_body_bytes()) +
                              " (both must be back to 0)");
  }
}

enum class Ending { kShutdown = 0, kWaitForServer = 1, kCloseWhenQuiet = 2, kReset = 3 };

struct Exchange {
  std::string sent;      // the bytes written
  std::string received;  // the bytes read
  bool closed = false;   // the server closed (end of stream or reset)
  Clock::time_point closed_at;
};

// Writes the pieces (pausing between them), reads all the while, then ends as `ending` says.
Exchange exchange(Fd& conn, const std::vector<std::string_view>& pieces,
                  std::chrono::microseconds pause, Ending ending) {
  Exchange ex;
  std::size_t piece = 0;
  std::size_t offset = 0;
  auto paused = std::chrono::microseconds(0);
  auto now = Clock::now();
  auto next_write = now;
  auto last_write = now;
  auto last_read = now;
  bool writing = !pieces.empty();
  bool shut = false;
  char buf[16384];
  for (;;) {
    now = Clock::now();
    if (!writing) {
      if (ending == Ending::kReset) return ex;
      if (ending == Ending::kShutdown && !shut) {
        ::shutdown(conn.fd, SHUT_WR);
        shut = true;
      }
      if (ending == Ending::kCloseWhenQuiet && now - std::max(last_read, last_write) >= kQuiet)
        return ex;
      if (now - last_write > kCloseDeadline) {
        fuzz::fuzz_fail(
            ending == Ending::kShutdown
                ? "the server did not close within 2 s of the client's end of stream"
                : "the server did not close within 2 s of the last write (its timeouts are 100 ms)",
            "sent " + hex(ex.sent) + " received " + hex(ex.received));
      }
    }
    pollfd p{conn.fd, POLLIN, 0};
    // ppoll: a pause of 0.2 ms is not rounded up to poll()'s milliseconds.
    std::chrono::nanoseconds wait = milliseconds(10);
    if (writing) {
      if (now >= next_write) {
        p.events |= POLLOUT;
      } else {
        wait = next_write - now;
      }
    }
    const timespec timeout{static_cast<time_t>(wait.count() / 1000000000),
                           static_cast<long>(wait.count() % 1000000000)};
    if (::ppoll(&p, 1, &timeout, nullptr) < 0 && errno != EINTR)
      fuzz::fuzz_fail("poll()", std::strerror(errno));
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      for (;;) {
        const ssize_t n = ::recv(conn.fd, buf, sizeof buf, 0);
        if (n > 0) {
          ex.received.append(buf, static_cast<std::size_t>(n));
          last_read = Clock::now();
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        ex.closed = true;  // end of stream, or a reset
        ex.closed_at = Clock::now();
        return ex;
      }
    }
    if (writing && (p.revents & POLLOUT)) {
      const std::string_view rest = pieces[piece].substr(offset);
      const ssize_t n = ::send(conn.fd, rest.data(), rest.size(), MSG_NOSIGNAL);
      if (n > 0) {
        ex.sent.append(rest.data(), static_cast<std::size_t>(n));
        offset += static_cast<std::size_t>(n);
        last_write = Clock::now();
        if (offset == pieces[piece].size()) {
          offset = 0;
          if (++piece == pieces.size()) {
            writing = false;
          } else if (paused + pause <= kMaxPauses) {
            paused += pause;
            next_write = last_write + pause;
          }
        }
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        writing = false;  // the server closed: what it sent is still read
        shut = true;
      }
    }
  }
}

// A request in the bytes sent, as the server finds it.
struct SentRequest {
  bool head = false;  // a HEAD (its answer has no body)
  // Complete: the server answers it (when no timeout ends the connection first), unless it
  // refused an earlier one.
  bool answerable = false;
  // Its first max_header_count + 2 lines parse and do not end its header: the server answers
  // 431 too_many_headers once they have come, whatever follows (http_server.cpp, parse_header).
  bool past_line_allowance = false;
};

// Whether the header starting `request` goes past the server's allowance of lines: the bytes the
// server gives the parser (up to its max_header_count + 2nd LF) parse, and the header is not done.
bool past_line_allowance(std::string_view request) {
  std::size_t end = 0;
  for (std::size_t lines = 0; lines < kMaxHeaderCount + 2; ++lines) {
    const auto lf = request.find('\n', end);
    if (lf == std::string_view::npos) return false;  // the allowance is not used up
    end = lf + 1;
  }
  http::request_parser<http::string_body> parser;
  parser.header_limit(64 * 1024);
  boost::beast::error_code ec;
  std::size_t used = 0;
  while (!parser.is_header_done() && used < end) {
    const std::size_t n = parser.put(boost::asio::buffer(request.data() + used, end - used), ec);
    used += n;
    if (ec == http::error::need_more) ec = {};
    if (ec || n == 0) break;
  }
  return !ec && !parser.is_header_done();
}

// The requests in `sent`, in order, found as the server finds them: up to four empty lines
// skipped before each, then Beast's parser with the server's limits. One the parser refuses ends
// the list (the server answers it, if at all, and closes), and so does one cut short.
std::vector<SentRequest> sent_requests(std::string_view sent) {
  std::vector<SentRequest> requests;
  while (!sent.empty() && requests.size() < 1024) {
    for (int empty = 0; empty < 4; ++empty) {
      if (sent.substr(0, 1) == "\n") {
        sent.remove_prefix(1);
      } else if (sent.substr(0, 2) == "\r\n") {
        sent.remove_prefix(2);
      } else {
        break;
      }
    }
    if (sent.empty()) break;
    http::request_parser<http::string_body> parser;
    parser.header_limit(64 * 1024);
    parser.body_limit(kMaxBodyBytes);
    parser.eager(true);
    boost::beast::error_code ec;
    std::size_t used = 0;
    while (!parser.is_done() && used < sent.size()) {
      const std::size_t n =
          parser.put(boost::asio::buffer(sent.data() + used, sent.size() - used), ec);
      used += n;
      if (ec == http::error::need_more) ec = {};
      if (ec || n == 0) break;
    }
    SentRequest r;
    r.head = parser.get().method() == http::verb::head;
    // Only a complete request: one the parser refuses whole may, given in pieces, just wait for
    // more (Beast 1.74 parses a header again only once CRLF CRLF has come, and takes a version
    // with fewer than 8 bytes after it for one cut short), so whether it is refused depends on
    // how the bytes came, and at the client's end of stream it is a partial message.
    r.answerable = parser.is_done();
    r.past_line_allowance = past_line_allowance(sent);
    requests.push_back(r);
    if (ec || !parser.is_done()) break;
    sent.remove_prefix(used);
  }
  return requests;
}

// Parses one response from the start of `bytes` (skip: a response to a HEAD, without a body);
// how many bytes it took.
std::size_t parse_response(http::response_parser<http::string_body>& parser, std::string_view bytes,
                           bool skip, boost::beast::error_code& ec) {
  parser.header_limit(64 * 1024);
  parser.body_limit(64 * 1024 * 1024);
  parser.eager(true);
  if (skip) parser.skip(true);
  std::size_t used = 0;
  while (!parser.is_done() && used < bytes.size()) {
    const std::size_t n =
        parser.put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    used += n;
    if (ec == http::error::need_more) ec = {};
    if (ec || n == 0) break;
  }
  return used;
}

// Whether `bytes` start with the server's refusal of a connection over its cap, which it sends
// before reading anything (so with a body whatever the request's method).
bool over_cap_refusal(std::string_view bytes) {
  http::response_parser<http::string_body> parser;
  boost::beast::error_code ec;
  parse_response(parser, bytes, false, ec);
  if (ec || !parser.is_done() || parser.get().result_int() != 503) return false;
  return fuzz::json_error_code(parser.get().body()) == "too_many_connections";
}

// The responses in `received` to `requests`. `whole`: the connection was read to its end, so
// a response cut short is a fault. `maybe_over_cap`: the connection may have been refused over
// the cap (its first response, then, has a body whatever the request). `timely`: the server
// closed sooner after the connection was made than any of its timeouts could end it, having had
// every byte and the client's end of stream or wait: then each request it reached has its answer
// (all up to one it refused), and one past the allowance of header lines has 431.
void check_responses(std::string_view received, const std::vector<SentRequest>& requests,
                     bool whole, const std::string& sent, bool maybe_over_cap, bool timely) {
  const auto context = [&] { return " sent " + hex(sent) + " received " + hex(received); };
  std::string_view rest = received;
  std::size_t request = 0;  // final responses so far
  bool after_head = false;
  bool after_close = false;
  bool over_cap = false;
  while (!rest.empty()) {
    fuzz::check(!after_close,
                after_head ? "a response to a HEAD has a body (bytes after it, which said "
                             "Connection: close)"
                           : "bytes after a response with Connection: close",
                context());
    http::response_parser<http::string_body> parser;
    over_cap = over_cap || (request == 0 && maybe_over_cap && over_cap_refusal(rest));
    const bool head = !over_cap && request < requests.size() && requests[request].head;
    boost::beast::error_code ec;
    const std::size_t used = parse_response(parser, rest, head, ec);
    if (ec) {
      fuzz::fuzz_fail(
          after_head ? "a response to a HEAD has a body (what follows it is no response)"
                     : "a response does not parse as HTTP",
          ec.message() + " at " + std::to_string(received.size() - rest.size()) + context());
    }
    if (!parser.is_done()) {
      if (whole) fuzz::fuzz_fail("a response is cut short", context());
      return;  // the client stopped reading mid-response
    }
    const auto& res = parser.get();
    fuzz::check(res.version() == 11, "a response is not HTTP/1.1", context());
    const unsigned status = res.result_int();
    fuzz::check(status >= 100 && status <= 599, "status out of 100-599", context());
    rest.remove_prefix(used);
    if (status < 200) continue;  // 100 Continue: the final response follows
    fuzz::check(res.find(http::field::content_length) != res.end(),
                "a response without Content-Length", context());
    fuzz::check(over_cap || request < requests.size(), "more answers than requests", context());
    if (timely && !over_cap && requests[request].past_line_allowance) {
      fuzz::check(
          status == 431 && (head || res.body().find("\"too_many_headers\"") != std::string::npos),
          "a header past max_header_count + 2 lines is not answered 431 too_many_headers",
          context());
    }
    after_head = head;
    after_close = !res.keep_alive();
    ++request;
    if (head) continue;  // no body to look at (skip: what follows must be a response)
    const auto type = res[http::field::content_type];
    if (status >= 400 && type.substr(0, 16) == "application/json") {
      const auto code = fuzz::json_error_code(res.body());
      fuzz::check(code && !code->empty(), "a 4xx/5xx JSON body does not name error.code",
                  res.body() + context());
    }
  }
  if (timely && !after_close) {
    // No answer closed the connection, so the server closed it on the client's end of stream:
    // every request it had whole (or could not parse), and every one past the allowance of lines,
    // must have been answered first.
    for (std::size_t i = request; i < requests.size(); ++i) {
      fuzz::check(
          !requests[i].answerable && !requests[i].past_line_allowance,
          requests[i].past_line_allowance
              ? "a header past max_header_count + 2 lines is not answered (431) as it arrives"
              : "a request the server had whole is not answered before it closed",
          "request " + std::to_string(i) + context());
    }
  }
}

// A connection that announces a 4 KiB body to /v1/calls (check_header lets it through) and sends
// none of it: the server holds 4 KiB of its 6 KiB budget for it until its body deadline.
Fd hold_body_budget() {
  Fd conn = connect_to_server();
  const std::string head =
      std::string("POST /v1/calls HTTP/1.1\r\nHost: f\r\nAuthorization: Bearer ") + kToken +
      "\r\nContent-Length: 4096\r\n\r\n";
  send_all(conn.fd, head);
  // Not a property: on a loaded machine the body deadline (100 ms) may pass first.
  wait_for([] { return server().buffered_body_bytes() >= kMaxBodyBytes; }, milliseconds(500));
  return conn;
}

// The next connection is served: GET /healthz answers 200.
void check_served() {
  Fd conn = connect_to_server();
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: f\r\n\r\n";
  const Exchange ex = exchange(conn, {request}, {}, Ending::kShutdown);
  fuzz::check(ex.received.rfind("HTTP/1.1 200 ", 0) == 0,
              "the server does not serve the next connection (GET /healthz)", hex(ex.received));
  check_responses(ex.received, sent_requests(ex.sent), true, ex.sent, false, false);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  server();
  check_settled("connections or body bytes still held before the input");
  const uint8_t mode = data[0];
  const uint8_t param = data[1];
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);

  // The writes.
  std::vector<std::string_view> pieces;
  switch (mode & 3) {
    case 0:
      if (!in.empty()) pieces.push_back(in);
      break;
    case 1: {
      const std::size_t n = param % 64 + 1;
      for (std::size_t at = 0; at < in.size(); at += n) pieces.push_back(in.substr(at, n));
      break;
    }
    case 2: {
      const bool at_cr = (param & 1) != 0;
      std::size_t start = 0;
      for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] == '\n' || (at_cr && in[i] == '\r')) {
          pieces.push_back(in.substr(start, i + 1 - start));
          start = i + 1;
        }
      }
      if (start < in.size()) pieces.push_back(in.substr(start));
      break;
    }
    case 3: {
      const std::size_t count = std::min<std::size_t>(param % 16, in.size());
      const std::string_view lengths = in.substr(0, count);
      in.remove_prefix(count);
      for (const char c : lengths) {
        if (in.empty()) break;
        const std::size_t n = std::min<std::size_t>(static_cast<unsigned char>(c) + 1, in.size());
        pieces.push_back(in.substr(0, n));
        in.remove_prefix(n);
      }
      if (!in.empty()) pieces.push_back(in);
      break;
    }
  }
  if (pieces.size() > kMaxPieces) {
    // The rest in one last write.
    const char* tail = pieces[kMaxPieces - 1].data();
    const std::string_view last = pieces.back();
    pieces.resize(kMaxPieces - 1);
    pieces.emplace_back(tail, static_cast<std::size_t>(last.data() + last.size() - tail));
  }
  const auto ending = static_cast<Ending>((mode >> 2) & 3);
  static constexpr std::chrono::microseconds kPauses[] = {
      std::chrono::microseconds(0), std::chrono::microseconds(200), std::chrono::microseconds(1000),
      std::chrono::microseconds(3000)};
  const auto pause = kPauses[(mode >> 6) & 3];

  // Other connections first, when the input asks.
  std::vector<Fd> others;
  if (mode & 0x10) others.push_back(hold_body_budget());
  if (mode & 0x20) {
    while (static_cast<std::size_t>(server().open_connections()) < kMaxConnections &&
           others.size() < kMaxConnections + 1) {
      const int before = server().open_connections();
      others.push_back(connect_to_server());
      wait_for([&] { return server().open_connections() > before; }, milliseconds(500));
    }
  }

  const auto connected = Clock::now();
  Fd conn = connect_to_server();
  const Exchange ex = exchange(conn, pieces, pause, ending);
  // No timeout of the server's can have ended the connection (each starts when the connection is
  // accepted or later), and it had all the client sent, then its end of stream or a wait.
  const bool timely = ex.closed &&
                      ex.closed_at - connected < std::min(kHeaderTimeout, kIdleTimeout) &&
                      (ending == Ending::kShutdown || ending == Ending::kWaitForServer);
  if (std::getenv("HTTP_SERVER_FUZZ_TRACE") != nullptr) {
    // The status line and error code of each response, to see what seeds reach.
    std::string trace;
    for (std::size_t at = 0; (at = ex.received.find("HTTP/1.1 ", at)) != std::string::npos; ++at)
      trace += " [" + ex.received.substr(at + 9, 3) + "]";
    for (std::size_t at = 0; (at = ex.received.find("\"code\":\"", at)) != std::string::npos; ++at)
      trace += " " + ex.received.substr(at + 8, ex.received.find('"', at + 8) - at - 8);
    std::fprintf(stderr, "trace: mode %02x sent %zu in %zu writes, received %zu%s%s%s\n", mode,
                 ex.sent.size(), pieces.size(), ex.received.size(), ex.closed ? " closed" : "",
                 timely ? " timely" : "", trace.c_str());
  }
  if (ending == Ending::kReset) {
    conn.abort();
  } else {
    check_responses(ex.received, sent_requests(ex.sent), ex.closed, ex.sent, (mode & 0x20) != 0,
                    timely);
    conn.reset();
  }
  others.clear();

  check_settled("connections or body bytes still held after every connection closed");
  check_served();
  return 0;
}
