// hookrelay-e2e-loadgen: open-loop HTTP load at a fixed rate, for bench/e2e.
//
//   hookrelay-e2e-loadgen --target 127.0.0.1:PORT --rate R --duration S --body-file F --out FILE
//                         [--path /webhooks/github] [--header "Name: value"]... [--id-header NAME]
//                         [--id-prefix P] [--connections 1000] [--drain-timeout S]
//
// Request i is due at start + i / R whatever happened to the earlier ones (the schedule does not
// wait for answers, unlike wrk). A due request goes out on an idle keep-alive connection; when
// none is idle a new one is opened, up to --connections, and past that the request waits for the
// first connection to free up (its send time then lags its due time, and both are recorded, so
// a server that stops answering shows up as late sends, not as a lower offered rate).
//
// Request i carries the id "<prefix>-<i>" in --id-header (X-GitHub-Delivery by default) and in
// the path where it contains "{id}". Every request sends the same body with the same extra
// headers (a signature computed once by the caller fits, as the id is not part of it).
//
// FILE gets one line per request: i, due, sent and answered times (µs since the Unix epoch,
// CLOCK_REALTIME, comparable with other processes' clocks on the machine) and the HTTP status
// (0: connection error or no answer before --drain-timeout). stdout gets one JSON summary line.
// One thread, Boost.Asio; HTTP/1.1 responses with Content-Length (no chunked bodies).
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>  // before Boost.Asio, whose awaitable.hpp uses std::exchange without it
#include <vector>

#include <boost/asio.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;
using Steady = std::chrono::steady_clock;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  std::string port;
  std::string path = "/webhooks/github";
  std::vector<std::string> headers;
  std::string id_header = "X-GitHub-Delivery";
  std::string id_prefix = "e2e";
  std::string body;
  std::string out;
  double rate = 1000;
  double duration_s = 10;
  double drain_timeout_s = 30;
  int max_connections = 1000;
};

struct Record {
  int64_t due_us = 0;
  int64_t sent_us = 0;
  int64_t done_us = 0;
  int status = 0;
};

class LoadGen {
 public:
  explicit LoadGen(Options o) : o_(std::move(o)), timer_(io_), retry_timer_(io_), resolver_(io_) {
    total_ = static_cast<int64_t>(o_.rate * o_.duration_s);
    records_.resize(static_cast<std::size_t>(total_));
    endpoints_ = resolver_.resolve(o_.host, o_.port);
    std::string fixed;
    for (const auto& h : o_.headers) fixed += h + "\r\n";
    fixed += "Content-Length: " + std::to_string(o_.body.size()) + "\r\n\r\n";
    fixed_tail_ = std::move(fixed);
    auto pos = o_.path.find("{id}");
    if (pos != std::string::npos) {
      path_head_ = o_.path.substr(0, pos);
      path_tail_ = o_.path.substr(pos + 4);
      id_in_path_ = true;
    } else {
      path_head_ = o_.path;
    }
  }

  int run() {
    // CLOCK_REALTIME at a steady instant: every recorded time is steady time shifted by this.
    auto s0 = Steady::now();
    auto r0 = std::chrono::system_clock::now();
    epoch_offset_us_ =
        std::chrono::duration_cast<std::chrono::microseconds>(r0.time_since_epoch()).count() -
        to_us(s0);
    start_ = s0 + std::chrono::milliseconds(50);
    schedule();
    io_.run();
    return write_out();
  }

 private:
  struct Conn {
    explicit Conn(asio::io_context& io) : sock(io) {}
    tcp::socket sock;
    std::string out;
    asio::streambuf in;
    int64_t seq = -1;
  };

  static int64_t to_us(Steady::time_point t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  }
  int64_t now_us() const { return to_us(Steady::now()) + epoch_offset_us_; }
  Steady::time_point due_time(int64_t seq) const {
    return start_ +
           std::chrono::nanoseconds(static_cast<int64_t>(static_cast<double>(seq) * 1e9 / o_.rate));
  }

  void schedule() {
    auto now = Steady::now();
    while (next_ < total_ && due_time(next_) <= now) {
      records_[static_cast<std::size_t>(next_)].due_us = to_us(due_time(next_)) + epoch_offset_us_;
      pending_.push_back(next_++);
    }
    dispatch();
    if (next_ < total_) {
      timer_.expires_at(due_time(next_));
      timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) schedule();
      });
    } else {
      // Everything is due: give the answers --drain-timeout to come in, then stop.
      timer_.expires_after(
          std::chrono::milliseconds(static_cast<int64_t>(o_.drain_timeout_s * 1000)));
      timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) finish();
      });
    }
  }

  void maybe_finish() {
    if (next_ == total_ && answered_ == total_) finish();
  }

  void finish() {
    timer_.cancel();
    retry_timer_.cancel();
    for (auto& c : conns_) {
      boost::system::error_code ignored;
      c->sock.close(ignored);
    }
    io_.stop();
  }

  void dispatch() {
    while (!pending_.empty() && !idle_.empty()) {
      Conn* c = idle_.back();
      idle_.pop_back();
      int64_t seq = pending_.front();
      pending_.pop_front();
      send(c, seq);
    }
    // Connections being opened will each take one pending request. After a refused connect,
    // new ones wait 10 ms (retry_timer_) rather than spin while the server is down.
    if (Steady::now() < retry_at_) return;
    while (static_cast<int64_t>(pending_.size()) > connecting_ && open_ < o_.max_connections)
      open_one();
  }

  void open_one() {
    ++open_;
    ++connecting_;
    peak_open_ = std::max(peak_open_, open_);
    conns_.push_back(std::make_unique<Conn>(io_));
    Conn* c = conns_.back().get();
    asio::async_connect(c->sock, endpoints_,
                        [this, c](boost::system::error_code ec, const tcp::endpoint&) {
                          --connecting_;
                          if (ec) {
                            ++connect_errors_;
                            retry_at_ = Steady::now() + std::chrono::milliseconds(10);
                            retry_timer_.expires_at(retry_at_);
                            retry_timer_.async_wait([this](boost::system::error_code ec2) {
                              if (!ec2) dispatch();
                            });
                            drop(c);
                            return;
                          }
                          c->sock.set_option(tcp::no_delay(true));
                          idle_.push_back(c);
                          dispatch();
                        });
  }

  void drop(Conn* c) {
    boost::system::error_code ignored;
    c->sock.close(ignored);
    --open_;
    // The Conn object stays in conns_ (a handler may still refer to it); it is never reused.
    dispatch();
  }

  void send(Conn* c, int64_t seq) {
    c->seq = seq;
    std::string id = o_.id_prefix + "-" + std::to_string(seq);
    std::string& out = c->out;
    out.clear();
    out += "POST ";
    out += path_head_;
    if (id_in_path_) {
      out += id;
      out += path_tail_;
    }
    out += " HTTP/1.1\r\nHost: ";
    out += o_.host;
    out += "\r\n";
    out += o_.id_header;
    out += ": ";
    out += id;
    out += "\r\n";
    out += fixed_tail_;
    out += o_.body;
    records_[static_cast<std::size_t>(seq)].sent_us = now_us();
    asio::async_write(
        c->sock, asio::buffer(out), [this, c](boost::system::error_code ec, std::size_t) {
          if (ec) return failed(c);
          asio::async_read_until(
              c->sock, c->in, "\r\n\r\n",
              [this, c](boost::system::error_code ec2, std::size_t n) { on_header(c, ec2, n); });
        });
  }

  void on_header(Conn* c, boost::system::error_code ec, std::size_t header_len) {
    if (ec) return failed(c);
    std::string_view head(static_cast<const char*>(c->in.data().data()), header_len);
    int status = 0;
    if (head.size() > 12 && head.substr(0, 5) == "HTTP/") {
      std::from_chars(head.data() + 9, head.data() + 12, status);
    }
    std::size_t content_length = 0;
    bool close = false;
    // Header names compared case-insensitively, line by line.
    std::size_t pos = head.find("\r\n");
    while (pos != std::string_view::npos && pos + 2 < head.size()) {
      std::size_t end = head.find("\r\n", pos + 2);
      std::string_view line = head.substr(pos + 2, end - pos - 2);
      auto colon = line.find(':');
      if (colon != std::string_view::npos) {
        std::string name(line.substr(0, colon));
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char ch) { return std::tolower(ch); });
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        if (name == "content-length") {
          std::from_chars(value.data(), value.data() + value.size(), content_length);
        } else if (name == "connection" && (value == "close" || value == "Close")) {
          close = true;
        } else if (name == "transfer-encoding") {
          status = 0;  // chunked bodies are not read: count it as a failure, loudly
          ++chunked_;
        }
      }
      pos = end;
    }
    c->in.consume(header_len);
    auto complete = [this, c, status, close, content_length] {
      c->in.consume(content_length);
      finish_request(c, status);
      if (close || status == 0) {
        drop(c);
      } else {
        idle_.push_back(c);
        dispatch();
      }
    };
    if (c->in.size() >= content_length) return complete();
    asio::async_read(c->sock, c->in, asio::transfer_exactly(content_length - c->in.size()),
                     [this, c, complete](boost::system::error_code ec2, std::size_t) {
                       if (ec2) return failed(c);
                       complete();
                     });
  }

  void finish_request(Conn* c, int status) {
    Record& r = records_[static_cast<std::size_t>(c->seq)];
    r.done_us = now_us();
    r.status = status;
    c->seq = -1;
    ++answered_;
    ++statuses_[status];
    maybe_finish();
  }

  void failed(Conn* c) {
    ++io_errors_;
    if (c->seq >= 0) finish_request(c, 0);
    drop(c);
  }

  int write_out() {
    std::ofstream f(o_.out);
    if (!f) {
      std::fprintf(stderr, "hookrelay-e2e-loadgen: cannot write %s\n", o_.out.c_str());
      return 1;
    }
    std::vector<int64_t> lag;
    lag.reserve(records_.size());
    int64_t first_sent = 0;
    int64_t unsent = 0;
    int64_t last_sent = 0;
    for (std::size_t i = 0; i < records_.size(); ++i) {
      const Record& r = records_[i];
      f << i << '\t' << r.due_us << '\t' << r.sent_us << '\t' << r.done_us << '\t' << r.status
        << '\n';
      if (!r.sent_us) ++unsent;
      if (r.sent_us) {
        lag.push_back(r.sent_us - r.due_us);
        if (!first_sent) first_sent = r.sent_us;
        last_sent = std::max(last_sent, r.sent_us);
      }
    }
    std::sort(lag.begin(), lag.end());
    auto pct = [&lag](double p) {
      return lag.empty()
                 ? 0
                 : lag[std::min(lag.size() - 1,
                                static_cast<std::size_t>(p * static_cast<double>(lag.size())))];
    };
    std::ostringstream st;
    bool first = true;
    for (auto [s, n] : statuses_) {
      st << (first ? "" : ",") << '"' << s << "\":" << n;
      first = false;
    }
    double span = last_sent > first_sent ? static_cast<double>(last_sent - first_sent) / 1e6 : 0;
    std::printf(
        "{\"requests\":%lld,\"unsent\":%lld,\"answered\":%lld,\"statuses\":{%s},\"io_errors\":%lld,"
        "\"connect_errors\":%lld,"
        "\"chunked\":%lld,\"peak_connections\":%d,\"send_span_s\":%.3f,\"send_lag_p50_us\":%lld,"
        "\"send_lag_p99_us\":%lld,\"send_lag_max_us\":%lld}\n",
        static_cast<long long>(total_), static_cast<long long>(unsent),
        static_cast<long long>(answered_), st.str().c_str(), static_cast<long long>(io_errors_),
        static_cast<long long>(connect_errors_), static_cast<long long>(chunked_), peak_open_, span,
        static_cast<long long>(pct(0.5)), static_cast<long long>(pct(0.99)),
        static_cast<long long>(lag.empty() ? 0 : lag.back()));
    return 0;
  }

  Options o_;
  asio::io_context io_;
  asio::steady_timer timer_;
  asio::steady_timer retry_timer_;
  Steady::time_point retry_at_{};
  tcp::resolver resolver_;
  tcp::resolver::results_type endpoints_;
  std::string fixed_tail_, path_head_, path_tail_;
  bool id_in_path_ = false;
  int64_t epoch_offset_us_ = 0;
  Steady::time_point start_;
  int64_t total_ = 0, next_ = 0, answered_ = 0;
  std::vector<Record> records_;
  std::deque<int64_t> pending_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> idle_;
  int open_ = 0, peak_open_ = 0;
  int64_t connecting_ = 0, io_errors_ = 0, connect_errors_ = 0, chunked_ = 0;
  std::map<int, int64_t> statuses_;
};

[[noreturn]] void usage(int code) {
  std::fprintf(stderr,
               "usage: hookrelay-e2e-loadgen --target HOST:PORT --rate R --duration S --body-file "
               "F --out FILE\n"
               "       [--path /webhooks/github] [--header 'Name: value']... [--id-header "
               "X-GitHub-Delivery]\n"
               "       [--id-prefix e2e] [--connections 1000] [--drain-timeout 30]\n");
  std::exit(code);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string target, body_file;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(2);
      return argv[++i];
    };
    if (a == "--target") {
      target = value();
    } else if (a == "--rate") {
      o.rate = std::atof(value().c_str());
    } else if (a == "--duration") {
      o.duration_s = std::atof(value().c_str());
    } else if (a == "--body-file") {
      body_file = value();
    } else if (a == "--out") {
      o.out = value();
    } else if (a == "--path") {
      o.path = value();
    } else if (a == "--header") {
      o.headers.push_back(value());
    } else if (a == "--id-header") {
      o.id_header = value();
    } else if (a == "--id-prefix") {
      o.id_prefix = value();
    } else if (a == "--connections") {
      o.max_connections = std::atoi(value().c_str());
    } else if (a == "--drain-timeout") {
      o.drain_timeout_s = std::atof(value().c_str());
    } else {
      usage(a == "--help" ? 0 : 2);
    }
  }
  auto colon = target.rfind(':');
  if (colon == std::string::npos || o.rate <= 0 || o.duration_s <= 0 || o.out.empty() ||
      body_file.empty() || o.max_connections < 1) {
    std::fprintf(
        stderr,
        "hookrelay-e2e-loadgen: --target HOST:PORT, --rate > 0, --duration > 0, --body-file, --out "
        "and --connections >= 1 are required\n");
    return 2;
  }
  o.host = target.substr(0, colon);
  o.port = target.substr(colon + 1);
  std::ifstream bf(body_file, std::ios::binary);
  if (!bf) {
    std::fprintf(stderr, "hookrelay-e2e-loadgen: cannot read --body-file %s\n", body_file.c_str());
    return 2;
  }
  o.body.assign(std::istreambuf_iterator<char>(bf), std::istreambuf_iterator<char>());
  try {
    return LoadGen(std::move(o)).run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hookrelay-e2e-loadgen: %s\n", e.what());
    return 1;
  }
}
