#include "shared/http/http_server.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "shared/ascii.h"
#include "shared/http/growing_body.h"
#include "shared/log.h"
#include "shared/thread_guard.h"
#include "shared/utf8.h"

namespace hookrelay {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using ReusePort = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

namespace {
constexpr std::uint32_t kHeaderLimit = 64 * 1024;
// The bytes read and not yet parsed: a request's header (at most kHeaderLimit) and what follows
// it. The parser (Beast 1.74) bounds neither a chunk-size line with its extensions nor the
// trailer after the last chunk: each stays in this buffer until its line ends, so without a
// bound one endless line would grow it until the body deadline (at line rate, per connection).
constexpr std::size_t kReadBufferLimit = std::size_t{128} * 1024;
constexpr std::size_t kFirstRead = 4096;
// A connection going idle keeps at most this much room in its read buffer and its response
// buffer: what a large header (or answer) grew them to goes back, so idle keep-alive connections
// hold a few KiB each, not the 128 KiB a header of nearly 64 KiB leaves.
constexpr std::size_t kIdleBufferRoom = std::size_t{16} * 1024;
// After refusing a request whose body was not read, what the client still sends is read and
// dropped for up to this long and this much, so that the close does not reset the connection
// (unread data makes the kernel send RST) before the client has read the answer.
constexpr std::chrono::milliseconds kLingerTime{2000};
constexpr std::size_t kLingerBytes = std::size_t{64} * 1024 * 1024;
constexpr std::size_t kLingerRead = std::size_t{16} * 1024;
// accept() failing (descriptors exhausted) is retried after a delay that doubles up to the max.
constexpr std::chrono::milliseconds kAcceptRetryMin{10};
constexpr std::chrono::milliseconds kAcceptRetryMax{1000};
constexpr std::chrono::milliseconds kWatchSweep{100};
// Empty lines (CRLF or a bare LF) skipped before a request line (RFC 7230 3.5), such as the CRLF
// some clients send after a body. More than this are left to the parser, which refuses them.
constexpr int kMaxEmptyLines = 4;

std::string_view accept_error_reason(const beast::error_code& ec) {
  if (ec.category() != net::error::get_system_category()) return "other";
  switch (ec.value()) {
    case EMFILE:
      return "emfile";
    case ENFILE:
      return "enfile";
    case ENOBUFS:
      return "enobufs";
    case ENOMEM:
      return "enomem";
    default:
      return "other";
  }
}

// The request's Transfer-Encoding fields (all of them, in order, as one list). A body is framed
// only by chunked as its final coding (RFC 9112 6.3): any other final coding leaves the body's
// length unknown. Chunked is the only coding this server decodes: a body under another one too
// (gzip, deflate, compress, or one it does not know) would be taken for its encoded bytes.
// Empty list elements are allowed by the list syntax.
struct TransferCodings {
  std::string_view last;   // the final coding (empty: none)
  std::string_view other;  // the first coding that is not chunked (empty: none)
  int chunked = 0;         // how many times chunked is listed
};

template <class Fields>
TransferCodings transfer_codings(const Fields& fields) {
  TransferCodings codings;
  for (const auto& f : fields) {
    if (f.name() != http::field::transfer_encoding) continue;
    std::string_view list(f.value().data(), f.value().size());
    while (!list.empty()) {
      const auto comma = list.find(',');
      std::string_view element = list.substr(0, comma);
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      while (!element.empty() && (element.front() == ' ' || element.front() == '\t'))
        element.remove_prefix(1);
      while (!element.empty() && (element.back() == ' ' || element.back() == '\t'))
        element.remove_suffix(1);
      if (element.empty()) continue;
      codings.last = element;
      if (ascii_iequals(element, "chunked")) {
        ++codings.chunked;
      } else if (codings.other.empty()) {
        codings.other = element;
      }
    }
  }
  return codings;
}

// What the application sees of a parsed request (it views `req`, which must outlive it): the
// handler's with its body, check_header's with its header alone.
template <class Request>
HttpRequest request_view(const Request& req, std::string_view body) {
  HttpRequest view;
  view.method = std::string_view(req.method_string().data(), req.method_string().size());
  view.target = std::string_view(req.target().data(), req.target().size());
  view.body = body;
  view.header = [r = &req](std::string_view name) -> std::optional<std::string_view> {
    auto it = r->find(beast::string_view(name.data(), name.size()));
    if (it == r->end()) return std::nullopt;
    return std::string_view(it->value().data(), it->value().size());
  };
  view.for_each_header =
      [r = &req](const std::function<void(std::string_view, std::string_view)>& f) {
        for (const auto& h : *r) {
          f(std::string_view(h.name_string().data(), h.name_string().size()),
            std::string_view(h.value().data(), h.value().size()));
        }
      };
  return view;
}
}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  HttpHandler handler;
  struct Loop {
    net::io_context ioc{1};
    net::steady_timer accept_retry{ioc};
    std::chrono::milliseconds accept_delay{0};  // > 0 while accept() keeps failing
    std::uint64_t accept_failures = 0;
    // Sessions waiting for an asynchronous answer (a Kafka ack) have no I/O pending; the guard
    // keeps the loop alive for them after the acceptor closes, until stop().
    net::executor_work_guard<net::io_context::executor_type> work{ioc.get_executor()};
    std::optional<tcp::acceptor> acceptor;
    std::thread thread;
  };
  // Before the loops: a session still queued on a loop is destroyed with it, and counts itself out.
  std::atomic<int> connections{0};
  // Bytes of request bodies held by sessions (each its request's reservation).
  std::atomic<std::size_t> buffered_body_bytes{0};
  bool reserve_body(std::size_t n) {
    if (options.max_buffered_body_bytes == 0) {
      buffered_body_bytes.fetch_add(n, std::memory_order_relaxed);
      return true;
    }
    std::size_t held = buffered_body_bytes.load(std::memory_order_relaxed);
    do {
      if (n > options.max_buffered_body_bytes - std::min(held, options.max_buffered_body_bytes))
        return false;
    } while (!buffered_body_bytes.compare_exchange_weak(held, held + n, std::memory_order_relaxed));
    return true;
  }
  void release_body(std::size_t n) { buffered_body_bytes.fetch_sub(n, std::memory_order_relaxed); }
  std::vector<std::unique_ptr<Loop>> loops;
  // A watched fd (another library's wake-up pipe). Its handler also runs every kWatchSweep
  // whether or not the fd woke: a wake-up the library never wrote (an event queued before its
  // pipe was enabled, say) then costs that long, never a stall of everything waiting on it.
  struct Watch {
    int fd;
    std::function<void()> on_readable;
    std::unique_ptr<net::posix::stream_descriptor> descriptor;
    std::unique_ptr<net::steady_timer> sweep;
  };
  std::vector<Watch> watches;
  // Each wait re-arms before it calls the handler, so a handler that throws (run_loop logs it and
  // the loop goes on) cannot end the watch.
  void arm(Watch& w) {
    w.descriptor->async_wait(
        net::posix::stream_descriptor::wait_read, [this, &w](beast::error_code ec) {
          if (ec) {
            // The fd is unusable (not merely stopping): waiting on it again would spin. The sweep
            // still serves the handler.
            if (ec != net::error::operation_aborted)
              spdlog::error("msg=watch_failed error={}", log_quote(ec.message()));
            return;
          }
          arm(w);
          w.on_readable();
        });
  }
  void arm_sweep(Watch& w) {
    w.sweep->expires_after(kWatchSweep);
    w.sweep->async_wait([this, &w](beast::error_code ec) {
      if (ec) return;  // stopping
      arm_sweep(w);
      w.on_readable();
    });
  }
  uint16_t bound_port = 0;
  bool stopped = false;

  void accept(Loop& loop);
  void accept_failed(Loop& loop, const beast::error_code& ec);
  static void run_loop(Loop& loop);
  void rejected(int status, std::string_view code) {
    if (options.on_rejected) options.on_rejected(status, code);
  }
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl& server, net::io_context& loop)
      : stream_(std::move(socket)), server_(server), loop_(loop) {
    server_.connections.fetch_add(1, std::memory_order_relaxed);
    // write() tries one send that must not block; the asynchronous operations are unaffected.
    beast::error_code ignored;
    stream_.socket().non_blocking(true, ignored);
  }
  ~Session() {
    server_.release_body(reserved_);
    server_.connections.fetch_sub(1, std::memory_order_relaxed);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // A new connection: its first request must start within header_timeout.
  void start() { wait_for_request(server_.options.header_timeout); }

  // Over the connection cap: a short 503, then close.
  // Not lingering: a flood past the cap must not hold its sockets any longer.
  void refuse_over_capacity() {
    refuse(503, "too_many_connections",
           "the server has " + std::to_string(server_.options.max_connections) +
               " open connections, its limit; retry later",
           false);
  }

 private:
  // Waits up to `timeout` for the first byte of the next request (none may be buffered yet), then
  // gives the rest of the header its own deadline. Empty lines before the request line are
  // skipped (at most kMaxEmptyLines) and do not start the header's deadline.
  // A request already buffered (pipelined) is parsed from a posted call: this may run inside the
  // handler (an answer written at once), whose request must stay intact until it returns.
  void wait_for_request(std::chrono::milliseconds timeout) {
    if (out_.capacity() > kIdleBufferRoom) std::string().swap(out_);
    if (buffer_.size() > 0) {
      net::post(loop_, [self = shared_from_this(), timeout] {
        const bool request = self->skip_empty_lines();
        // The bytes buffered are kept: shrink_to_fit moves them into a buffer their size.
        if (self->buffer_.capacity() > kIdleBufferRoom) self->buffer_.shrink_to_fit();
        if (request) return self->read_header();
        self->stream_.expires_after(timeout);
        self->read_request_start();
      });
      return;
    }
    if (buffer_.capacity() > kIdleBufferRoom) buffer_.shrink_to_fit();
    stream_.expires_after(timeout);
    read_request_start();
  }

  // Reads until a request's first byte is buffered, within the deadline already set.
  void read_request_start() {
    stream_.async_read_some(buffer_.prepare(kFirstRead),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              if (ec) return self->close();  // idle, or the peer left
                              self->buffer_.commit(n);
                              if (!self->skip_empty_lines()) return self->read_request_start();
                              self->read_header();
                            });
  }

  // Drops the empty lines (CRLF or LF) that start the buffer, up to kMaxEmptyLines per request.
  // Whether what is left is for the parser: false when nothing is, or only a CR that may be the
  // start of another empty line.
  bool skip_empty_lines() {
    const auto* p = static_cast<const char*>(buffer_.data().data());
    const std::size_t size = buffer_.size();
    std::size_t at = 0;
    while (empty_lines_ < kMaxEmptyLines) {
      if (at < size && p[at] == '\n') {
        at += 1;
      } else if (at + 1 < size && p[at] == '\r' && p[at + 1] == '\n') {
        at += 2;
      } else {
        break;
      }
      ++empty_lines_;
    }
    const bool lone_cr = at + 1 == size && p[at] == '\r';
    buffer_.consume(at);
    if (buffer_.size() == 0) return false;
    return !(lone_cr && empty_lines_ < kMaxEmptyLines);
  }

  void read_header() {
    answered_ = false;
    head_ = false;
    empty_lines_ = 0;
    header_used_ = 0;
    header_seen_ = 0;
    header_lines_ = 0;
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(server_.options.max_body_bytes);
    parser_->get().body().limit = server_.options.max_body_bytes;
    stream_.expires_after(server_.options.header_timeout);
    parse_header();
  }

  // The parser (Beast 1.74) stores each field as soon as its line is parsed, and its header limit
  // bounds only the bytes one put() leaves unparsed, not the header: fed all that arrives, a
  // header that never ends would take memory until its deadline. So it is given at most
  // kHeaderLimit bytes and max_header_count + 2 lines (the request line, the fields, the empty
  // line) of the whole header; a header that needs more is refused (431) as it arrives.
  void parse_header() {
    const std::size_t max_lines =
        std::min<std::size_t>(server_.options.max_header_count, kHeaderLimit) + 2;
    const auto* data = static_cast<const char*>(buffer_.data().data());
    // The lines of the bytes not counted yet, up to the allowance: the view ends after the last
    // line allowed, or kHeaderLimit bytes into the header.
    std::size_t end = header_seen_ - header_used_;
    const std::size_t last = std::min<std::size_t>(buffer_.size(), kHeaderLimit - header_used_);
    while (end < last && header_lines_ < max_lines) {
      const auto* line_end = static_cast<const char*>(std::memchr(data + end, '\n', last - end));
      if (line_end == nullptr) {
        end = last;
        break;
      }
      end = static_cast<std::size_t>(line_end - data) + 1;
      ++header_lines_;
    }
    header_seen_ = header_used_ + end;
    beast::error_code ec;
    const std::size_t used = parser_->put(net::buffer(data, end), ec);
    header_used_ += used;
    buffer_.consume(used);
    if (parser_->is_header_done() || (ec && ec != http::error::need_more)) return on_header(ec);
    // The parser needs more than it was given: past the allowance, the header is refused.
    if (header_lines_ >= max_lines) {
      head_ = request_is_head();
      return too_many_headers();
    }
    if (header_seen_ >= kHeaderLimit) return on_header(http::error::header_limit);
    // Read more, as http::async_read_header would (its errors are the ones on_header expects).
    const std::size_t room = beast::read_size(buffer_, 65536);
    if (room == 0) return on_header(http::error::buffer_overflow);
    stream_.async_read_some(buffer_.prepare(room),
                            [self = shared_from_this()](beast::error_code read_ec, std::size_t n) {
                              self->header_read(read_ec, n);
                            });
  }

  void header_read(beast::error_code ec, std::size_t n) {
    buffer_.commit(n);
    if (ec == net::error::eof) {
      // The peer closed: before a request (end of stream) or within one (a partial message).
      if (!parser_->got_some()) return on_header(http::error::end_of_stream);
      ec = {};
      parser_->put_eof(ec);
      if (!ec) ec = http::error::partial_message;  // put_eof within a header always says so
    }
    if (ec) return on_header(ec);
    parse_header();
  }

  // Whether the request being refused or answered is a HEAD. The parser (Beast 1.74) may hold a
  // request line that arrived cut mid-line until more of the header comes, so a refusal of the
  // header (too many fields, 64 KiB) can come before it has read the method. Until it takes the
  // request line, the buffer starts with that line: parsed alone, it tells (a refusal only).
  bool request_is_head() const {
    if (parser_->get().method() == http::verb::head) return true;
    if (header_used_ != 0) return false;  // the parser took the request line: its method stands
    const auto* data = static_cast<const char*>(buffer_.data().data());
    const auto* line_end = static_cast<const char*>(std::memchr(data, '\n', buffer_.size()));
    if (line_end == nullptr) return false;
    std::string line(data, line_end + 1);
    line += "\r\n";
    http::request_parser<http::empty_body> request_line;
    beast::error_code ec;
    request_line.put(net::buffer(line), ec);
    return !ec && request_line.is_header_done() && request_line.get().method() == http::verb::head;
  }

  void too_many_headers() {
    refuse(431, "too_many_headers",
           "request has more than " + std::to_string(server_.options.max_header_count) +
               " header fields");
  }

  void on_header(beast::error_code ec) {
    // The answer to a HEAD, even a refusal, has no body. The method is known once the request line
    // is parsed, or its first bytes are seen, even when the rest of the header then fails.
    head_ = request_is_head();
    if (ec) return on_read_error(ec);
    const auto& req = parser_->get();
    std::size_t fields = 0;
    for (auto it = req.begin(); it != req.end() && fields <= server_.options.max_header_count; ++it)
      ++fields;
    if (fields > server_.options.max_header_count) return too_many_headers();
    header_fields_ = fields;
    // A Transfer-Encoding that does not end in chunked leaves the body's length unknown: read by
    // Content-Length or as no body, its bytes would be taken for the next request (smuggling).
    // Chunked twice is never sent (RFC 9112 7): decoded once, a framing would be left in the body.
    if (req.find(http::field::transfer_encoding) != req.end()) {
      const TransferCodings codings = transfer_codings(req);
      if (codings.chunked > 1) {
        return refuse(400, "malformed_http",
                      "malformed HTTP request: Transfer-Encoding lists chunked more than once");
      }
      if (!parser_->chunked() || !ascii_iequals(codings.last, "chunked")) {
        return refuse(400, "malformed_http",
                      "malformed HTTP request: Transfer-Encoding does not end in chunked, so the "
                      "body's length is unknown");
      }
      // Framed by chunked, and under another coding too: Beast decodes only the chunking, so the
      // handler would get the encoded bytes as the body (a signature that never matches, JSON
      // that never parses). A coding the server does not decode is answered 501 (RFC 9112 6.1).
      if (!codings.other.empty()) {
        return refuse(501, "transfer_coding_not_supported",
                      "Transfer-Encoding '" + std::string(utf8_prefix(codings.other, 64)) +
                          "' is not supported: chunked is the only transfer coding accepted; "
                          "send the body without other transfer codings");
      }
    }
    auto length = parser_->content_length();
    if (length && *length > server_.options.max_body_bytes) {
      return refuse(413, "body_too_large",
                    "request body of " + std::to_string(*length) + " bytes exceeds the limit of " +
                        std::to_string(server_.options.max_body_bytes));
    }
    // The application's own checks of the header (check_header), before the body takes any of
    // the budget: a request it refuses never holds memory that requests it lets through need.
    if (header_refused(req)) return;
    // The body's first step is held now (chunked: the body's length is known only at its end);
    // the rest as it arrives (account_body). A body that cannot have its first step is refused
    // before it is read.
    const std::size_t first =
        std::min(GrowingBody::kStep, length               ? static_cast<std::size_t>(*length)
                                     : parser_->chunked() ? server_.options.max_body_bytes
                                                          : std::size_t{0});
    if (first > 0) {
      if (!server_.reserve_body(first)) return over_budget(first);
      reserved_ = first;
    }
    // An HTTP/1.0 client does not wait for 100 Continue, nor can it read one: the expectation is
    // ignored (RFC 9110 10.1.1).
    auto expect = req[http::field::expect];
    if (req.version() >= 11 && beast::iequals(expect, "100-continue")) {
      continue_.emplace(http::status::continue_, req.version());
      http::async_write(stream_, *continue_,
                        [self = shared_from_this()](beast::error_code wec, std::size_t) {
                          if (wec) return self->close();
                          self->read_body();
                        });
      return;
    }
    read_body();
  }

  // Whether check_header refused the request whose header was just parsed; if so it has been
  // answered, and the connection closes without its body being read.
  template <class Request>
  bool header_refused(const Request& req) {
    if (!server_.options.check_header) return false;
    std::optional<HttpRefusal> refusal;
    try {
      refusal = server_.options.check_header(request_view(req, {}));
    } catch (const std::exception& e) {
      return header_check_failed(e.what());
    } catch (...) {
      return header_check_failed("non-standard exception");
    }
    if (!refusal) return false;
    refuse(refusal->status, refusal->code, refusal->message, true, refusal->headers);
    return true;
  }

  bool header_check_failed(std::string_view what) {
    spdlog::error("msg=check_header_failed error={}", log_quote(what));
    refuse(500, "internal_error", "the request could not be handled; it was not accepted");
    return true;
  }

  void read_body() {
    stream_.expires_after(server_.options.idle_timeout);
    // Parse all that is read each time (the header was parsed with the parser stopping after
    // it): a body of many small chunks is one completion per read, not one per chunk.
    parser_->eager(true);
    read_more_body();
  }

  // The body is read piece by piece: after each piece, the memory it took is accounted.
  void read_more_body() {
    if (parser_->is_done()) return on_body({});  // no body, or all of it came with the header
    http::async_read_some(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, std::size_t) {
                            if (ec) return self->on_read_error(ec);
                            if (!self->account_body()) return;
                            if (self->parser_->is_done()) return self->on_body(ec);
                            self->read_more_body();
                          });
  }

  // The body's memory (its capacity) is this request's share of max_buffered_body_bytes: what it
  // grew by is taken from the budget, or the request is refused now (its memory freed with it).
  bool account_body() {
    const std::size_t held = parser_->get().body().capacity();
    if (held <= reserved_) return true;
    if (!server_.reserve_body(held - reserved_)) {
      over_budget(held);
      return false;
    }
    reserved_ = held;
    return true;
  }

  void over_budget(std::size_t body) {
    refuse(503, "request_bodies_over_budget",
           "the server holds " + std::to_string(server_.options.max_buffered_body_bytes) +
               " bytes of request bodies at most, and this one's " + std::to_string(body) +
               " do not fit now; retry later");
  }

  void on_read_error(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      return refuse(413, "body_too_large",
                    "request body exceeds the limit of " +
                        std::to_string(server_.options.max_body_bytes) + " bytes");
    }
    if (ec == http::error::header_limit) {
      return refuse(431, "headers_too_large", "request headers exceed 64 KiB");
    }
    if (ec == http::error::buffer_overflow) {
      // A chunk-size line (with its extensions) or the trailer that never ends: kReadBufferLimit.
      return refuse(400, "chunk_metadata_too_large",
                    "a chunk-size line with its extensions, or the trailer after the last "
                    "chunk, exceeds 128 KiB");
    }
    if (ec == beast::error::timeout) {
      // tcp_stream has closed the socket already: nothing can be answered.
      server_.rejected(408, "request_timeout");
      return close();
    }
    if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return refuse(400, "malformed_http", "malformed HTTP request: " + ec.message());
    }
    close();
  }

  void on_body(beast::error_code ec) {
    if (ec) return on_read_error(ec);
    auto& req = parser_->get();
    // The parser adds a chunked body's trailer fields to the header's: past max_header_count
    // unchecked, and looked up and forwarded as if they were the header's. A request with any is
    // refused (RFC 9110 6.5.2: trailer fields are not merged into the header).
    if (parser_->chunked() && has_trailer(req)) {
      return refuse(400, "trailer_not_supported",
                    "trailer fields after a chunked body are not accepted; send them in the "
                    "header");
    }
    keep_alive_ = req.keep_alive();
    const HttpRequest view = request_view(req, req.body());
    stream_.expires_never();
    auto self = shared_from_this();
    auto answered = std::make_shared<std::atomic<bool>>(false);
    Responder respond = [self, answered](HttpResponse r) {
      if (answered->exchange(true)) return;  // a second answer would corrupt the stream
      // On the connection's own loop (an answer from the handler, or a delivery report served
      // on this loop) the answer is written at once; from another thread it is posted. Either
      // way the request stays readable until the handler returns: the next one is parsed only
      // from a posted call or a read's completion (wait_for_request), never inside this call.
      if (self->loop_.get_executor().running_in_this_thread()) return self->write(r);
      net::post(self->loop_, [self, r = std::move(r)] { self->write(r); });
    };
    // The exception boundary of a request: whatever the handler throws is this request's 500,
    // never the process's end.
    in_handler_ = true;
    try {
      server_.handler(view, std::move(respond));
    } catch (const std::exception& e) {
      handler_failed(*answered, e.what());
    } catch (...) {
      handler_failed(*answered, "non-standard exception");
    }
    in_handler_ = false;
    if (answered_) drop_request();
  }

  // Whether the request has more fields than its header had: a chunked body's trailer.
  template <class Request>
  bool has_trailer(const Request& req) const {
    std::size_t fields = 0;
    for (auto it = req.begin(); it != req.end(); ++it) {
      if (++fields > header_fields_) return true;
    }
    return false;
  }

  // The request is answered and its handler has returned: its memory and its share of
  // max_buffered_body_bytes go now, not when the next request arrives. Only while no read is
  // parsing into it (before the next read_header, which runs from a posted call or a completion).
  void drop_request() {
    parser_.reset();
    server_.release_body(reserved_);
    reserved_ = 0;
  }

  void handler_failed(std::atomic<bool>& answered, std::string_view what) {
    spdlog::error("msg=handler_failed error={}", log_quote(what));
    if (answered.exchange(true)) return;
    refuse(500, "internal_error", "the request could not be handled; it was not accepted");
  }

  // An answer that ends the connection; the rest of the request is not read (see linger()).
  // `headers` are added to the JSON error's fields.
  void refuse(int status, std::string_view code, const std::string& message, bool linger = true,
              const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    server_.rejected(status, code);
    keep_alive_ = false;
    linger_ = linger;
    auto r = json_error(status, code, message);
    r.headers = headers;
    if (status == 503) r.headers.emplace_back("Retry-After", "1");
    write(r);
  }

  // The response is formatted into one buffer and sent with one write: status line, Server,
  // Content-Type, the handler's headers, Connection: close when the connection ends, and
  // Content-Length (the bytes Beast's serializer wrote for the same response, without its
  // per-field buffer sequence).
  void write(const HttpResponse& r) {
    if (writing_) return close();  // a response is still being written: never interleave two
    answered_ = true;
    if (!in_handler_) drop_request();
    const bool keep_alive = keep_alive_ && !r.close;
    out_.clear();
    out_ += "HTTP/1.1 ";
    out_ += std::to_string(r.status);
    out_ += ' ';
    const auto reason = http::obsolete_reason(static_cast<http::status>(r.status));
    out_.append(reason.data(), reason.size());
    out_ += "\r\nServer: hookrelay\r\nContent-Type: ";
    append_field_value(r.content_type);
    out_ += "\r\n";
    for (const auto& [name, value] : r.headers) {
      if (!settable_field(name)) continue;
      out_ += name;
      out_ += ": ";
      append_field_value(value);
      out_ += "\r\n";
    }
    if (!keep_alive) out_ += "Connection: close\r\n";
    out_ += "Content-Length: ";
    out_ += std::to_string(r.body.size());
    out_ += "\r\n\r\n";
    // The answer to HEAD has the length the body would have, and no body: a keep-alive client
    // would read one as the start of its next response.
    if (!head_) out_ += r.body;
    // An answer nearly always fits the socket's send buffer: one send, and the connection goes
    // on without an asynchronous write and its timer. The rest of a partial send (a client that
    // does not read) is written asynchronously within idle_timeout.
    beast::error_code ec;
    const std::size_t sent = stream_.socket().write_some(net::buffer(out_), ec);
    if (ec && ec != net::error::would_block && ec != net::error::try_again) return close();
    if (!ec && sent == out_.size()) return written(keep_alive);
    writing_ = true;
    stream_.expires_after(server_.options.idle_timeout);
    net::async_write(stream_, net::buffer(out_) + (ec ? 0 : sent),
                     [self = shared_from_this(), keep_alive](beast::error_code wec, std::size_t) {
                       if (wec) return self->close();
                       self->writing_ = false;
                       self->written(keep_alive);
                     });
  }

  void written(bool keep_alive) {
    if (!keep_alive) return linger_ ? linger() : close();
    wait_for_request(server_.options.idle_timeout);
  }

  // A refused request's client may still be sending its body (a 413 before the body, a header
  // refused mid-request): closing a socket with unread data resets the connection, and the
  // client may lose the answer it has not read yet. So the sending side is shut (the client
  // reads the answer, then end of stream), and what arrives is read and dropped until the client
  // closes, kLingerBytes or kLingerTime, whichever comes first.
  void linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(kLingerTime);
    drain();
  }

  void drain() {
    buffer_.clear();
    stream_.async_read_some(buffer_.prepare(kLingerRead),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->lingered_ += n;
                              if (ec || self->lingered_ >= kLingerBytes) return self->close();
                              self->drain();
                            });
  }

  // A handler's header is a token name that is none of the fields the server writes itself.
  static bool settable_field(std::string_view name) {
    if (name.empty()) return false;
    for (char c : name) {
      if (c <= ' ' || c >= 0x7f || c == ':') return false;
    }
    for (std::string_view own :
         {"server", "content-type", "content-length", "connection", "transfer-encoding"}) {
      if (ascii_iequals(name, own)) return false;
    }
    return true;
  }

  // A value never ends the header early: CR and LF are written as spaces.
  void append_field_value(std::string_view value) {
    if (value.find_first_of("\r\n") == std::string_view::npos) {
      out_ += value;
      return;
    }
    for (char c : value) out_ += (c == '\r' || c == '\n') ? ' ' : c;
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  HttpServer::Impl& server_;
  beast::flat_buffer buffer_{kReadBufferLimit};
  std::optional<http::request_parser<GrowingBody>> parser_;
  net::io_context& loop_;  // the loop this connection lives on
  std::optional<http::response<http::empty_body>> continue_;
  std::string out_;  // the response being written; its capacity (to kIdleBufferRoom) is kept
  bool writing_ = false;
  bool keep_alive_ = true;
  bool head_ = false;         // the request being answered is a HEAD
  int empty_lines_ = 0;       // empty lines skipped before the request being read
  bool in_handler_ = false;   // the handler of the current request has not returned yet
  bool answered_ = false;     // the current request has its answer
  std::size_t reserved_ = 0;  // the current request's share of max_buffered_body_bytes (its
                              // body's capacity, or its first step before any of it is read)
  bool linger_ = false;       // close through linger(): the request was refused unread
  std::size_t lingered_ = 0;  // bytes dropped while lingering
  // The fields in the header of the request being read (a chunked body's trailer adds more).
  std::size_t header_fields_ = 0;
  // The header being read: the bytes the parser has used, the bytes counted for its allowance
  // (those and the start of buffer_), and the lines in the bytes counted.
  std::size_t header_used_ = 0;
  std::size_t header_seen_ = 0;
  std::size_t header_lines_ = 0;
};

}  // namespace

void HttpServer::Impl::accept(Loop& loop) {
  loop.acceptor->async_accept(loop.ioc, [this, &loop](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !loop.acceptor->is_open()) return;
    if (ec) return accept_failed(loop, ec);
    if (loop.accept_delay.count() > 0) {
      spdlog::info("msg=accept_recovered failures={}", loop.accept_failures);
      loop.accept_delay = std::chrono::milliseconds{0};
      loop.accept_failures = 0;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto session = std::make_shared<Session>(std::move(socket), *this, loop.ioc);
    // The new session counts itself, so the cap compares against the others.
    if (static_cast<std::size_t>(connections.load(std::memory_order_relaxed)) >
        options.max_connections) {
      session->refuse_over_capacity();
    } else {
      session->start();
    }
    accept(loop);
  });
}

// Retrying at once would spin: the pending connection stays in the backlog and accept() fails
// again until a descriptor frees up. One log line per episode; every failure is counted.
void HttpServer::Impl::accept_failed(Loop& loop, const beast::error_code& ec) {
  if (options.on_accept_error) options.on_accept_error(accept_error_reason(ec));
  ++loop.accept_failures;
  if (loop.accept_delay.count() == 0) {
    spdlog::warn("msg=accept_failed error={} retry=backoff", log_quote(ec.message()));
    loop.accept_delay = kAcceptRetryMin;
  } else {
    loop.accept_delay = std::min(loop.accept_delay * 2, kAcceptRetryMax);
  }
  loop.accept_retry.expires_after(loop.accept_delay);
  loop.accept_retry.async_wait([this, &loop](beast::error_code wait_ec) {
    if (wait_ec || !loop.acceptor || !loop.acceptor->is_open()) return;
    accept(loop);
  });
}

// A loop's thread entry: an exception that escapes a completion handler is logged and the loop
// runs on; io_context::run may be called again after it throws.
void HttpServer::Impl::run_loop(Loop& loop) {
  for (;;) {
    try {
      loop.ioc.run();
      return;
    } catch (const std::exception& e) {
      spdlog::error("msg=event_loop_exception error={}", log_quote(e.what()));
    } catch (...) {
      spdlog::error("msg=event_loop_exception error=non-standard");
    }
  }
}

HttpServer::HttpServer(HttpServerOptions options, HttpHandler handler)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
}

HttpServer::~HttpServer() { stop(); }

Result<void> HttpServer::start() {
  auto& o = impl_->options;
  beast::error_code ec;
  auto address = net::ip::make_address(o.host, ec);
  if (ec) return fail("listen", "cannot parse listen address '" + o.host + "'");
  uint16_t port = o.port;
  int threads = std::max(1, o.threads);
  for (int i = 0; i < threads; ++i) {
    auto loop = std::make_unique<Impl::Loop>();
    auto& acc = loop->acceptor.emplace(loop->ioc);
    tcp::endpoint ep(address, port);
    acc.open(ep.protocol(), ec);
    if (!ec) acc.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acc.set_option(ReusePort(true), ec);
    if (!ec) acc.bind(ep, ec);
    if (!ec) acc.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return fail("listen",
                  "cannot listen on " + o.host + ":" + std::to_string(port) + ": " + ec.message());
    }
    port = acc.local_endpoint().port();
    impl_->loops.push_back(std::move(loop));
  }
  impl_->bound_port = port;
  for (auto& w : impl_->watches) {
    // A duplicate, so closing the descriptor never closes the owner's fd.
    w.descriptor =
        std::make_unique<net::posix::stream_descriptor>(impl_->loops.front()->ioc, ::dup(w.fd));
    w.sweep = std::make_unique<net::steady_timer>(impl_->loops.front()->ioc);
    impl_->arm(w);
    impl_->arm_sweep(w);
  }
  for (auto& loop : impl_->loops) {
    impl_->accept(*loop);
    loop->thread = start_guarded_thread("http_loop", [l = loop.get()] { Impl::run_loop(*l); });
  }
  return {};
}

void HttpServer::watch_fd(int fd, std::function<void()> on_readable) {
  impl_->watches.push_back({fd, std::move(on_readable), nullptr, nullptr});
}

uint16_t HttpServer::port() const { return impl_->bound_port; }

int HttpServer::open_connections() const { return impl_->connections.load(); }

std::size_t HttpServer::buffered_body_bytes() const {
  return impl_->buffered_body_bytes.load(std::memory_order_relaxed);
}

void HttpServer::stop_accepting() {
  for (auto& loop : impl_->loops) {
    net::post(loop->ioc, [l = loop.get()] {
      beast::error_code ignored;
      l->accept_retry.cancel();
      if (l->acceptor) l->acceptor->close(ignored);
    });
  }
}

void HttpServer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  for (auto& loop : impl_->loops) {
    loop->work.reset();
    loop->ioc.stop();
  }
  for (auto& loop : impl_->loops) {
    if (loop->thread.joinable()) loop->thread.join();
  }
}

}  // namespace hookrelay
