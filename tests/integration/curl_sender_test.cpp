// CurlSender against a real HTTP receiver on 127.0.0.1: many transfers at once across its multi
// handles, each answered once, and curl's timers (timeouts) firing on every handle.
#include "worker/curl_sender.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "shared/ascii.h"
#include "shared/net/ip_address.h"
#include "tests/support/scripted_receiver.h"
#include "worker/delivery_outcome.h"

namespace hookrelay {
namespace {

using namespace std::chrono_literals;

// Collects results from the sender thread.
class Results {
 public:
  HttpSender::Done sink(int id) {
    return [this, id](HttpResult r) {
      std::lock_guard lock(mu_);
      by_id_.emplace(id, std::move(r));
      cv_.notify_all();
    };
  }
  bool wait_for(std::size_t n, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return by_id_.size() >= n; });
  }
  std::map<int, HttpResult> take() {
    std::lock_guard lock(mu_);
    return by_id_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int, HttpResult> by_id_;
};

HttpCall post(const std::string& url, int id, int timeout_ms = 10000) {
  HttpCall c;
  c.url = url;
  c.headers = {{"Content-Type", "application/json"}, {"X-Id", std::to_string(id)}};
  c.body = std::make_shared<const std::string>("{\"n\":" + std::to_string(id) + "}");
  c.timeout_ms = timeout_ms;
  return c;
}

// One call through a sender of its own, and its result (a transport error if none in 30 s).
HttpResult send_one(SsrfGuard guard, HttpCall call) {
  Results results;
  {
    CurlSender sender(std::move(guard));
    sender.send(std::move(call), results.sink(1));
    if (!results.wait_for(1, 30s)) {
      HttpResult none;
      none.error = TransportError::kOther;
      none.message = "no result within 30 s";
      return none;
    }
  }
  return results.take().at(1);
}

// A listening socket on 127.0.0.1, an ephemeral port (in `port`); -1 (the failure reported) if
// none.
int listen_on_loopback(uint16_t& port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "cannot listen on 127.0.0.1";
    if (fd >= 0) close(fd);
    return -1;
  }
  port = ntohs(a.sin_port);
  return fd;
}

// A receiver on 127.0.0.1 that answers each request with `head`, then writes `chunk` every
// `every` until the caller goes away: a body that never ends. With `max_bytes`, it stops writing
// after that many bytes of chunks and holds the connection open, silent, until the caller goes
// away. An empty `chunk`: the connection is closed after `head`. One connection at a time.
class StreamingReceiver {
 public:
  StreamingReceiver(std::string head, std::string chunk, std::chrono::milliseconds every,
                    std::size_t max_bytes = std::numeric_limits<std::size_t>::max())
      : head_(std::move(head)), chunk_(std::move(chunk)), every_(every), max_bytes_(max_bytes) {
    fd_ = listen_on_loopback(port_);
    if (fd_ < 0) return;
    thread_ = std::thread([this] { serve(); });
  }
  ~StreamingReceiver() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/stream"; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string request;
      char buf[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        request.append(buf, static_cast<std::size_t>(n));
      }
      bool open = send(c, head_.data(), head_.size(), MSG_NOSIGNAL) > 0;
      std::size_t sent = 0;
      while (open && !stop_) {
        if (sent >= max_bytes_) {  // silent until the caller closes
          pollfd q{c, POLLIN, 0};
          if (poll(&q, 1, 50) > 0) open = recv(c, buf, sizeof buf, MSG_DONTWAIT) > 0;
          continue;
        }
        open = send(c, chunk_.data(), chunk_.size(), MSG_NOSIGNAL) > 0;
        sent += chunk_.size();
        std::this_thread::sleep_for(every_);
      }
      close(c);
    }
  }
  std::string head_, chunk_;
  std::chrono::milliseconds every_;
  std::size_t max_bytes_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The bytes the process has taken from malloc and not given back (all arenas, and the chunks
// mapped on their own). Not its resident memory: memory freed by an earlier test stays resident
// and would hide what a later one takes.
std::size_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

// The most the heap in use grew above what it was at construction, sampled every 5 ms until
// growth().
class HeapPeak {
 public:
  HeapPeak() : base_(heap_in_use()), peak_(base_) {
    thread_ = std::thread([this] {
      while (!stop_) {
        peak_ = std::max(peak_.load(), heap_in_use());
        std::this_thread::sleep_for(5ms);
      }
    });
  }
  ~HeapPeak() { (void)growth(); }
  // The heap in use now, above what it was at construction.
  std::size_t now() const {
    const std::size_t n = heap_in_use();
    return n > base_ ? n - base_ : 0;
  }
  std::size_t growth() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    const std::size_t peak = std::max(peak_.load(), heap_in_use());
    return peak > base_ ? peak - base_ : 0;
  }

 private:
  const std::size_t base_;
  std::atomic<std::size_t> peak_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

constexpr std::size_t kMiB = std::size_t{1024} * 1024;

// `line` repeated to about `bytes`.
std::string repeated(const std::string& line, std::size_t bytes) {
  std::string out;
  out.reserve(bytes + line.size());
  while (out.size() < bytes) out += line;
  return out;
}

TEST(CurlSenderTest, ManyConcurrentTransfersEachCompleteOnce) {
  test::ScriptedReceiver rx;
  ASSERT_TRUE(rx.start());
  rx.set_default("/slow", test::ScriptedResponse{.status = 200, .delay_ms = 200});
  CurlSender sender(SsrfGuard(true, {}));
  Results results;
  constexpr int kCalls = 600;
  for (int wave = 0; wave < 2; ++wave) {  // the second wave runs on reused connections
    for (int i = 0; i < kCalls / 2; ++i) {
      int id = wave * (kCalls / 2) + i;
      sender.send(post(rx.url("/slow"), id), results.sink(id));
    }
    ASSERT_TRUE(results.wait_for(static_cast<std::size_t>((wave + 1) * kCalls / 2), 60s));
  }
  auto got = results.take();
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kCalls));
  for (const auto& [id, r] : got) {
    EXPECT_EQ(r.error, TransportError::kNone) << id << ": " << r.message;
    EXPECT_EQ(r.status, 200) << id;
  }
  EXPECT_EQ(rx.count("/slow"), static_cast<std::size_t>(kCalls));
  std::map<std::string, int> ids;
  for (const auto& req : rx.requests("/slow")) ids[req.header("X-Id").value_or("")]++;
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kCalls));  // each call arrived exactly once
  EXPECT_EQ(sender.in_flight(), 0);
}

// Several event loops (worker.http_threads): calls are spread evenly over them, each answered
// once, and a loop's timers end its own calls.
TEST(CurlSenderTest, SeveralLoopsShareTheCallsAndEachIsAnsweredOnce) {
  test::ScriptedReceiver rx;
  ASSERT_TRUE(rx.start());
  rx.set_default("/slow", test::ScriptedResponse{.status = 200, .delay_ms = 300});
  rx.set_default("/hang", test::ScriptedResponse{.status = 200, .delay_ms = 5000});
  CurlSender sender(SsrfGuard(true, {}), 3);
  ASSERT_EQ(sender.threads(), 3);
  Results results;
  constexpr int kCalls = 300;
  constexpr int kHanging = 12;
  for (int i = 0; i < kCalls; ++i) sender.send(post(rx.url("/slow"), i), results.sink(i));
  for (int i = kCalls; i < kCalls + kHanging; ++i)
    sender.send(post(rx.url("/hang"), i, 300), results.sink(i));
  for (int t = 0; t < 3; ++t) EXPECT_EQ(sender.in_flight(t), (kCalls + kHanging) / 3) << t;
  ASSERT_TRUE(results.wait_for(kCalls + kHanging, 60s));
  auto got = results.take();
  for (const auto& [id, r] : got) {
    if (id < kCalls) {
      EXPECT_EQ(r.error, TransportError::kNone) << id << ": " << r.message;
      EXPECT_EQ(r.status, 200) << id;
    } else {
      EXPECT_EQ(r.error, TransportError::kTimeout) << id << ": " << r.message;
    }
  }
  std::map<std::string, int> ids;
  for (const auto& req : rx.requests("/slow")) ids[req.header("X-Id").value_or("")]++;
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kCalls));
  for (const auto& [id, n] : ids) EXPECT_EQ(n, 1) << id;
  for (int t = 0; t < 3; ++t) EXPECT_EQ(sender.in_flight(t), 0) << t;
  rx.stop();
}

TEST(CurlSenderTest, TimeoutsFireOnEveryMultiHandle) {
  test::ScriptedReceiver rx;
  ASSERT_TRUE(rx.start());
  rx.set_default("/hang", test::ScriptedResponse{.status = 200, .delay_ms = 5000});
  CurlSender sender(SsrfGuard(true, {}));
  Results results;
  // More calls than the sender has multi handles, so each handle's timer has a transfer to end.
  constexpr int kCalls = 24;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kCalls; ++i) sender.send(post(rx.url("/hang"), i, 300), results.sink(i));
  ASSERT_TRUE(results.wait_for(kCalls, 30s));
  auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(elapsed, 4s);  // ended by the 300 ms timeouts, not by the 5 s answers
  for (const auto& [id, r] : results.take()) {
    EXPECT_EQ(r.error, TransportError::kTimeout) << id << ": " << r.message;
  }
  rx.stop();
}

TEST(CurlSenderTest, ProxyEnvironmentIsIgnored) {
  test::ScriptedReceiver rx;
  ASSERT_TRUE(rx.start());
  // A proxy nothing listens on: used, it would fail every call with a connect error.
  ::setenv("http_proxy", "http://127.0.0.1:9", 1);
  ::setenv("all_proxy", "http://127.0.0.1:9", 1);
  const HttpResult got = send_one(SsrfGuard(true, {}), post(rx.url("/direct"), 1));
  ::unsetenv("http_proxy");
  ::unsetenv("all_proxy");
  EXPECT_EQ(got.error, TransportError::kNone) << got.message;
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(rx.count("/direct"), 1u);
}

// A name with one address the guard refuses and one it allows: the call goes to the allowed one,
// and its answer is the call's result. (It was reported refused by the guard: permanent, to the
// dead-letter topic, while the receiver had taken it, so a replay would have sent it again.)
// `localhost` is 127.0.0.1 and ::1 to libcurl without a resolver; the guard allows ::1 only.
TEST(CurlSenderTest, AnAddressTheGuardRefusesDoesNotOverrideTheOneThatAnswered) {
  test::ScriptedReceiver rx(0, "::1");
  if (!rx.start()) GTEST_SKIP() << "no IPv6 loopback (::1) to listen on";
  const HttpResult got =
      send_one(SsrfGuard(false, {parse_cidr("::1/128").value()}),
               post("http://localhost:" + std::to_string(rx.port()) + "/mixed", 1));
  EXPECT_EQ(got.error, TransportError::kNone) << got.message;
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(rx.count("/mixed"), 1u);
}

// Every address refused: the guard's refusal is the result, and nothing was sent.
TEST(CurlSenderTest, ANameWhoseAddressesAreAllRefusedIsBlockedByTheGuard) {
  test::ScriptedReceiver rx(0, "::1");
  if (!rx.start()) GTEST_SKIP() << "no IPv6 loopback (::1) to listen on";
  const HttpResult got = send_one(
      SsrfGuard(false, {}), post("http://localhost:" + std::to_string(rx.port()) + "/refused", 1));
  EXPECT_EQ(got.error, TransportError::kBlockedBySsrfGuard) << got.message;
  EXPECT_EQ(rx.count("/refused"), 0u);
}

// A listener on 127.0.0.1 that takes each connection's first bytes (a TLS ClientHello) and resets
// it: a load balancer dropping connections mid-handshake (a deploy, overload).
class HandshakeResetter {
 public:
  HandshakeResetter() {
    fd_ = listen_on_loopback(port_);
    if (fd_ < 0) return;
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        char buf[4096];
        (void)recv(c, buf, sizeof buf, 0);
        linger reset{1, 0};
        setsockopt(c, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
        close(c);
      }
    });
  }
  ~HandshakeResetter() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    close(fd_);
  }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_) + "/hook"; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A TLS handshake reset by the receiver's side is transient: retried, not dead-lettered on its
// first attempt as a refused certificate is.
TEST(CurlSenderTest, AHandshakeResetByTheReceiverIsRetryable) {
  HandshakeResetter rx;
  HttpResult r = send_one(SsrfGuard(true, {}), post(rx.url(), 1, 5000));
  EXPECT_EQ(r.error, TransportError::kTlsHandshakeFailed) << r.message;
  EXPECT_EQ(classify(r.error, r.status).kind, OutcomeKind::kRetryable) << r.message;
}

// A header with an empty value goes out empty; libcurl drops "Name:" with nothing after it.
TEST(CurlSenderTest, AHeaderWithAnEmptyValueIsSent) {
  test::ScriptedReceiver rx;
  ASSERT_TRUE(rx.start());
  HttpCall c = post(rx.url("/empty"), 1);
  c.headers.emplace_back("X-Empty", "");
  HttpResult r = send_one(SsrfGuard(true, {}), std::move(c));
  ASSERT_EQ(r.error, TransportError::kNone) << r.message;
  auto got = rx.requests("/empty");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].header("X-Empty"), std::optional<std::string>("")) << "the header was dropped";
}

// A body goes out with the Content-Type the request names, or with none: libcurl, left alone,
// labels it application/x-www-form-urlencoded. So for a call without one, for a webhook whose
// provider sent none (its forwarded headers, no Content-Type among them), and for each method
// that carries a body; a Content-Type given, in any case, goes out once as given.
TEST(CurlSenderTest, ABodyWithoutContentTypeGoesOutWithNone) {
  test::ScriptedReceiver rx;
  ASSERT_TRUE(rx.start());
  CurlSender sender(SsrfGuard(true, {}));
  Results results;
  struct Step {
    std::string method;
    std::vector<std::pair<std::string, std::string>> headers;
    std::optional<std::string> content_type;  // what the receiver should see
  };
  const std::vector<Step> steps = {
      {"POST", {}, std::nullopt},
      {"POST", {{"x-github-event", "push"}, {"webhook-id", "e1"}}, std::nullopt},
      {"PUT", {}, std::nullopt},
      {"PATCH", {}, std::nullopt},
      {"DELETE", {}, std::nullopt},
      {"POST", {{"content-type", "application/json"}}, "application/json"},
      {"POST", {}, std::nullopt},  // the handle the labelled call used, reused
  };
  for (std::size_t i = 0; i < steps.size(); ++i) {
    HttpCall c;
    c.url = rx.url("/untyped");
    c.method = steps[i].method;
    c.headers = steps[i].headers;
    c.headers.emplace_back("X-Id", std::to_string(i));
    c.body = std::make_shared<const std::string>("a=1&b=2");
    sender.send(std::move(c), results.sink(static_cast<int>(i)));
    ASSERT_TRUE(results.wait_for(i + 1, 30s));
  }
  for (const auto& [id, r] : results.take()) {
    EXPECT_EQ(r.error, TransportError::kNone) << id << ": " << r.message;
  }
  auto got = rx.requests("/untyped");
  ASSERT_EQ(got.size(), steps.size());
  for (const auto& req : got) {
    std::size_t i = std::stoul(req.header("X-Id").value_or("99"));
    ASSERT_LT(i, steps.size());
    EXPECT_EQ(req.body, "a=1&b=2") << i;
    EXPECT_EQ(req.header("Content-Type"), steps[i].content_type) << i << " " << steps[i].method;
    std::size_t types = 0;
    for (const auto& [k, v] : req.headers) types += ascii_iequals(k, "content-type") ? 1 : 0;
    EXPECT_LE(types, 1u) << i;
  }
}

// Easy handles are reused from call to call without a reset: each call still goes out with its
// own method, body and headers, nothing left over from the call before it on the same handle.
TEST(CurlSenderTest, AReusedHandleSendsEachCallsOwnMethodBodyAndHeaders) {
  test::ScriptedReceiver rx;
  ASSERT_TRUE(rx.start());
  CurlSender sender(SsrfGuard(true, {}));
  Results results;
  struct Step {
    std::string method;
    std::string body;  // "" = none
  };
  const std::vector<Step> steps = {{"POST", "{\"a\":1}"}, {"GET", ""},    {"HEAD", ""},
                                   {"PUT", ""},           {"DELETE", ""}, {"PATCH", "{\"b\":2}"},
                                   {"POST", ""},          {"GET", ""}};
  // One at a time, so each call takes the handle the one before it gave back.
  for (std::size_t i = 0; i < steps.size(); ++i) {
    HttpCall c;
    c.url = rx.url("/reuse");
    c.method = steps[i].method;
    c.headers = {{"X-Id", std::to_string(i)}};
    if (i == 0) c.headers.emplace_back("X-Only-First", "yes");
    if (!steps[i].body.empty()) c.body = std::make_shared<const std::string>(steps[i].body);
    sender.send(std::move(c), results.sink(static_cast<int>(i)));
    ASSERT_TRUE(results.wait_for(i + 1, 30s));
  }
  for (const auto& [id, r] : results.take()) {
    EXPECT_EQ(r.error, TransportError::kNone) << id << ": " << r.message;
    EXPECT_EQ(r.status, 200) << id;
  }
  auto got = rx.requests("/reuse");
  ASSERT_EQ(got.size(), steps.size());
  for (const auto& req : got) {
    std::size_t i = std::stoul(req.header("X-Id").value_or("99"));
    ASSERT_LT(i, steps.size());
    EXPECT_EQ(req.method, steps[i].method) << i;
    EXPECT_EQ(req.body, steps[i].body) << i;
    EXPECT_EQ(req.header("X-Only-First").has_value(), i == 0) << i;
  }
}

// Each loop keeps a parsed URL per distinct URL and hands it to the calls instead of the string:
// calls in turn to two receivers, to paths with and without a query, and a URL repeated, each go
// to their own address and target; a URL curl's parser refuses still fails as a malformed URL.
// A body above 1 MiB goes out without "Expect: 100-continue", like the small ones.
TEST(CurlSenderTest, EachCallGoesToItsOwnUrlAndNoneExpectsAContinue) {
  test::ScriptedReceiver a;
  test::ScriptedReceiver b;
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  CurlSender sender(SsrfGuard(true, {}));
  Results results;
  const std::vector<std::string> urls = {a.url("/p?x=1"), b.url("/p?x=2"),    a.url("/q"),
                                         a.url("/p?x=1"), b.url("/q?y=%20z"), b.url("/p?x=2")};
  for (std::size_t i = 0; i < urls.size(); ++i) {
    sender.send(post(urls[i], static_cast<int>(i)), results.sink(static_cast<int>(i)));
    ASSERT_TRUE(results.wait_for(i + 1, 30s));  // one at a time: the handles are reused
  }
  HttpCall big = post(a.url("/big"), 100);
  big.body = std::make_shared<const std::string>(std::size_t{1024} * 1024 + 1, 'x');
  sender.send(std::move(big), results.sink(100));
  HttpCall bad = post("http://127.0.0.1:99999/p", 101);  // no such port
  sender.send(std::move(bad), results.sink(101));
  ASSERT_TRUE(results.wait_for(urls.size() + 2, 30s));
  auto got = results.take();
  for (std::size_t i = 0; i < urls.size(); ++i) {
    EXPECT_EQ(got.at(static_cast<int>(i)).error, TransportError::kNone)
        << i << ": " << got.at(static_cast<int>(i)).message;
  }
  EXPECT_EQ(got.at(100).status, 200) << got.at(100).message;
  EXPECT_NE(got.at(101).error, TransportError::kNone);
  std::map<std::string, int> targets_a, targets_b;
  for (const auto& r : a.all_requests()) {
    ++targets_a[r.target];
    EXPECT_FALSE(r.header("Expect").has_value()) << r.target;
  }
  for (const auto& r : b.all_requests()) ++targets_b[r.target];
  EXPECT_EQ(targets_a, (std::map<std::string, int>{{"/p?x=1", 2}, {"/q", 1}, {"/big", 1}}));
  EXPECT_EQ(targets_b, (std::map<std::string, int>{{"/p?x=2", 2}, {"/q?y=%20z", 1}}));
  ASSERT_EQ(a.requests("/big").size(), 1u);
  EXPECT_EQ(a.requests("/big")[0].body.size(), std::size_t{1024} * 1024 + 1);
}

// A connection kept for reuse stays in its loop's epoll set between calls. When the receiver
// closes it while it is idle, the loop takes it out of the set instead of waking on the closed
// socket again and again, and the next call goes out on a new connection.
TEST(CurlSenderTest, AKeptConnectionTheReceiverClosesNeitherSpinsTheLoopNorFailsTheNextCall) {
  auto rx = std::make_unique<test::ScriptedReceiver>();
  ASSERT_TRUE(rx->start());
  const uint16_t port = rx->port();
  CurlSender sender(SsrfGuard(true, {}));
  Results results;
  sender.send(post(rx->url("/kept"), 1), results.sink(1));
  ASSERT_TRUE(results.wait_for(1, 30s));
  rx.reset();  // stopped and gone: the idle connection is closed, its socket turns readable
  const auto cpu_ms = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
  };
  const double cpu_before = cpu_ms();
  std::this_thread::sleep_for(500ms);
  EXPECT_LT(cpu_ms() - cpu_before, 150.0) << "ms of CPU in 500 ms with nothing to send";

  test::ScriptedReceiver again(port);
  ASSERT_TRUE(again.start());
  sender.send(post(again.url("/kept"), 2), results.sink(2));
  ASSERT_TRUE(results.wait_for(2, 30s));
  auto got = results.take();
  EXPECT_EQ(got.at(1).status, 200) << got.at(1).message;
  EXPECT_EQ(got.at(2).error, TransportError::kNone) << got.at(2).message;
  EXPECT_EQ(got.at(2).status, 200);
  EXPECT_EQ(again.count("/kept"), 1u);
  EXPECT_EQ(sender.in_flight(), 0);
}

// A receiver that answers 2xx has taken the call, whatever its body does next: a body that never
// ends is not a timeout to retry (the receiver would get the call again), and one longer than
// the sender reads ends the call at once.
TEST(CurlSenderTest, A2xxWhoseBodyNeverEndsIsASuccessAtTheCallsTimeout) {
  StreamingReceiver rx("HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n", "x", 20ms);
  HttpResult r = send_one(SsrfGuard(true, {}), post(rx.url(), 1, 500));
  EXPECT_EQ(r.error, TransportError::kNone) << r.message;
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.message.find("not read to its end"), std::string::npos) << r.message;
}

TEST(CurlSenderTest, A2xxBodyLongerThanTheSenderReadsEndsTheCallAtOnce) {
  StreamingReceiver rx("HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n",
                       "10000\r\n" + std::string(0x10000, 'x') + "\r\n", 1ms);
  const auto t0 = std::chrono::steady_clock::now();
  HttpResult r = send_one(SsrfGuard(true, {}), post(rx.url(), 1, 20000));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "waited for the call's timeout";
  EXPECT_EQ(r.error, TransportError::kNone) << r.message;
  EXPECT_EQ(r.status, 202);
  EXPECT_NE(r.message.find("longer than 1 MiB"), std::string::npos) << r.message;
}

// A worker stopping with such a call still reading its body: the call was taken, and is not
// given up as unanswered (its message would be delivered again).
TEST(CurlSenderTest, A2xxStillReadingItsBodyAtAStopIsASuccess) {
  StreamingReceiver rx("HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n", "x", 20ms);
  Results results;
  {
    CurlSender sender(SsrfGuard(true, {}));
    sender.send(post(rx.url(), 1, 20000), results.sink(1));
    std::this_thread::sleep_for(500ms);
  }  // stopped
  ASSERT_TRUE(results.wait_for(1, 10s));
  const HttpResult r = results.take().at(1);
  EXPECT_EQ(r.error, TransportError::kNone) << r.message;
  EXPECT_EQ(r.status, 200);
}

// Any other answer whose body outlasts the call's timeout before it passes what the sender reads
// of it is judged by its end: a 503 whose body trickles for ever is a timeout (the receiver is
// too slow to answer within the timeout, which the adaptive host limit hears as such).
TEST(CurlSenderTest, ANon2xxWhoseBodyNeverEndsTimesOut) {
  StreamingReceiver rx("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000000000\r\n\r\n",
                       "x", 20ms);
  HttpResult r = send_one(SsrfGuard(true, {}), post(rx.url(), 1, 500));
  EXPECT_EQ(r.error, TransportError::kTimeout) << r.message;
}

// ...but one whose body runs past what the sender reads of it (64 KiB) is judged by its status at
// once, with its Retry-After: a 410 is not turned into a timeout to retry, a 503's Retry-After
// is not lost.
TEST(CurlSenderTest, ANon2xxWhoseBodyRunsPastTheCapIsJudgedByItsStatusAtOnce) {
  const std::string chunk = "10000\r\n" + std::string(0x10000, 'x') + "\r\n";
  {
    StreamingReceiver rx("HTTP/1.1 410 Gone\r\nTransfer-Encoding: chunked\r\n\r\n", chunk, 1ms);
    const auto t0 = std::chrono::steady_clock::now();
    const HttpResult r = send_one(SsrfGuard(true, {}), post(rx.url(), 1, 20000));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s) << "waited for the call's timeout";
    EXPECT_EQ(r.error, TransportError::kNone) << r.message;
    EXPECT_EQ(r.status, 410) << r.message;
    EXPECT_EQ(classify(r.error, r.status).kind, OutcomeKind::kPermanent) << r.message;
  }
  {
    StreamingReceiver rx(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: "
        "1000000000000\r\n\r\n",
        std::string(0x10000, 'x'), 1ms);
    const auto t0 = std::chrono::steady_clock::now();
    const HttpResult r = send_one(SsrfGuard(true, {}), post(rx.url(), 1, 20000));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s) << "waited for the call's timeout";
    EXPECT_EQ(r.error, TransportError::kNone) << r.message;
    EXPECT_EQ(r.status, 503) << r.message;
    EXPECT_EQ(r.retry_after, std::optional<std::string>("7"));
  }
}

// Trailer lines after a chunked body are header lines to libcurl: 7.88 keeps each one (about 64
// bytes for a 5-byte "a:b\r\n"), and its cap on the size of a response's header does not cover
// them. A receiver that answers 200 and then sends trailer lines for ever would take the worker's
// memory until the call's timeout. The sender counts every header line of a call, trailers
// included, and ends the call past its cap: a 2xx is a success (it was taken: a retry would send
// it twice), any other answer is judged by its status.
TEST(CurlSenderTest, TrailersThatNeverEndEndTheCallAtOnceHoldingLittleMemory) {
  // 16 MiB of trailer lines, then silence: without the cap, libcurl would keep ~200 MB of them
  // until the timeout (a flood without end would take it all).
  const std::string flood = repeated("a:b\r\n", 64 * 1024);
  {
    StreamingReceiver rx("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", flood, 0ms,
                         16 * kMiB);
    HeapPeak heap;
    const auto t0 = std::chrono::steady_clock::now();
    const HttpResult r = send_one(SsrfGuard(true, {}), post(rx.url(), 1, 20000));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s) << "waited for the call's timeout";
    EXPECT_LT(heap.growth(), 64 * kMiB) << "bytes of memory taken by the trailers";
    EXPECT_EQ(r.error, TransportError::kNone) << r.message;
    EXPECT_EQ(r.status, 200) << r.message;
    EXPECT_EQ(classify(r.error, r.status).kind, OutcomeKind::kSuccess) << r.message;
  }
  {
    StreamingReceiver rx(
        "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nnah\r\n0\r\n", flood, 0ms,
        16 * kMiB);
    HeapPeak heap;
    const auto t0 = std::chrono::steady_clock::now();
    const HttpResult r = send_one(SsrfGuard(true, {}), post(rx.url(), 1, 20000));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s) << "waited for the call's timeout";
    EXPECT_LT(heap.growth(), 64 * kMiB) << "bytes of memory taken by the trailers";
    EXPECT_EQ(r.error, TransportError::kNone) << r.message;
    EXPECT_EQ(r.status, 404) << r.message;
    EXPECT_EQ(classify(r.error, r.status).kind, OutcomeKind::kPermanent) << r.message;
  }
}

// A header of ~58,000 short lines (290 KB, under libcurl's own cap on a response's header) costs
// libcurl ~4 MB per call, and a finished call's easy handle kept for reuse keeps it until its next
// call: 32 such calls held ~130 MB after they ended. The sender ends such a call at its cap on
// header lines and judges it by its status line (a 404 here), and frees a handle whose response
// had a large header instead of keeping it.
TEST(CurlSenderTest, HeaderFloodsAreCutAndTheirHandlesAreNotKept) {
  const std::string head =
      "HTTP/1.1 404 Not Found\r\n" + repeated("a:b\r\n", 290 * 1000) + "Content-Length: 0\r\n\r\n";
  StreamingReceiver rx(head, "", 0ms);
  CurlSender sender(SsrfGuard(true, {}));
  Results results;
  HeapPeak heap;
  constexpr int kCalls = 32;
  for (int i = 0; i < kCalls; ++i) sender.send(post(rx.url(), i, 20000), results.sink(i));
  ASSERT_TRUE(results.wait_for(kCalls, 60s));
  EXPECT_LT(heap.now(), 32 * kMiB) << "bytes still held after the calls ended";
  EXPECT_LT(heap.growth(), 64 * kMiB) << "bytes held at the peak";
  for (const auto& [id, r] : results.take()) {
    EXPECT_EQ(r.error, TransportError::kNone) << id << ": " << r.message;
    EXPECT_EQ(r.status, 404) << id << ": " << r.message;
    EXPECT_EQ(classify(r.error, r.status).kind, OutcomeKind::kPermanent) << id;
  }
  EXPECT_EQ(sender.in_flight(), 0);
}

// A name whose DNS server never answers. libcurl resolves in a thread of its own; at the call's
// timeout, unless told it may leave that thread behind (CURLOPT_QUICK_EXIT), libcurl 7.88 waits
// for it (pthread_join) until the resolver gives up, which glibc does after its own timeout: the
// whole event loop, with every other call on it, stopped meanwhile, and so did a stop.
//
// The silent DNS server needs a resolver configuration of its own: the test runs itself again in
// namespaces of its own (`unshare -rmn`: user, mount, network), where /etc/resolv.conf is a bind
// mount naming 127.0.0.1:53 (a UDP socket nobody reads; glibc's timeout 30 s) and only the
// namespace's loopback exists. Skipped where such namespaces cannot be made.
constexpr const char* kSilentDnsChild = "HOOKRELAY_TEST_SILENT_DNS_CHILD";

std::string namespace_id(const char* kind) {
  char buf[128] = {};
  const std::string link = std::string("/proc/self/ns/") + kind;
  const ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

// In the child, in namespaces of its own: the loopback up, a resolv.conf naming a DNS server that
// never answers. Empty when done, else why not.
std::string make_silent_dns(const std::string& parent_namespaces, int& dns_fd) {
  // Never touch the machine's own resolv.conf: this must be another mount and network namespace.
  const std::string mnt = namespace_id("mnt"), net = namespace_id("net");
  if (mnt.empty() || net.empty() || parent_namespaces.find(mnt) != std::string::npos ||
      parent_namespaces.find(net) != std::string::npos)
    return "not in mount and network namespaces of its own";
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return std::string("mount --make-rprivate /: ") + std::strerror(errno);
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0) return "no loopback interface";
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) return std::string("lo up: ") + std::strerror(errno);
  close(s);
  dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(53);
  if (dns_fd < 0 || bind(dns_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return std::string("bind 127.0.0.1:53: ") + std::strerror(errno);
  const std::string conf = "/tmp/hookrelay-silent-dns-" + std::to_string(getpid()) + ".conf";
  {
    std::ofstream f(conf);
    f << "nameserver 127.0.0.1\noptions timeout:30 attempts:1\n";
  }
  const int mounted = mount(conf.c_str(), "/etc/resolv.conf", nullptr, MS_BIND, nullptr);
  const int err = errno;
  unlink(conf.c_str());
  if (mounted != 0) return std::string("bind mount over /etc/resolv.conf: ") + std::strerror(err);
  return {};
}

void a_silent_dns_holds_up_no_other_call(const std::string& parent_namespaces) {
  int dns_fd = -1;
  if (std::string why = make_silent_dns(parent_namespaces, dns_fd); !why.empty())
    GTEST_SKIP() << why;
  const std::string silent = "http://hook.silent-dns.test/hook";
  test::ScriptedReceiver rx;
  ASSERT_TRUE(rx.start());
  Results results;
  auto sender = std::make_unique<CurlSender>(SsrfGuard(true, {}));
  HttpCall a = post(silent, 1, 500);
  a.connect_timeout_ms = 300;
  sender->send(std::move(a), results.sink(1));
  std::this_thread::sleep_for(1s);  // its timeout is past
  auto t0 = std::chrono::steady_clock::now();
  sender->send(post(rx.url("/fast"), 2, 5000), results.sink(2));
  EXPECT_TRUE(results.wait_for(2, 10s)) << "the loop is stuck";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s) << "a call to a live receiver waited";
  // A stop while a resolve hangs does not wait for it either.
  sender->send(post(silent, 3, 20000), results.sink(3));
  std::this_thread::sleep_for(300ms);
  t0 = std::chrono::steady_clock::now();
  sender.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s) << "the stop waited for the resolver";
  ASSERT_TRUE(results.wait_for(3, 60s));
  auto got = results.take();
  EXPECT_EQ(got.at(1).error, TransportError::kTimeout) << got.at(1).message;
  EXPECT_EQ(got.at(2).error, TransportError::kNone) << got.at(2).message;
  EXPECT_EQ(got.at(2).status, 200);
  EXPECT_EQ(got.at(3).error, TransportError::kOther) << got.at(3).message;
  close(dns_fd);
}

TEST(CurlSenderTest, AHostWhoseDnsNeverAnswersHoldsUpNoOtherCall) {
  if (const char* parent = std::getenv(kSilentDnsChild)) {
    a_silent_dns_holds_up_no_other_call(parent);
    return;
  }
  if (std::system("unshare -rmn true >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "cannot make user, mount and network namespaces (unshare -rmn)";
  char self[4096] = {};
  ASSERT_GT(readlink("/proc/self/exe", self, sizeof self - 1), 0);
  const std::string cmd =
      std::string("env -u GTEST_SHARD_INDEX -u GTEST_TOTAL_SHARDS -u GTEST_OUTPUT ") +
      kSilentDnsChild + "='" + namespace_id("mnt") + " " + namespace_id("net") +
      "' unshare -rmn '" + self +
      "' --gtest_color=no "
      "--gtest_filter=CurlSenderTest.AHostWhoseDnsNeverAnswersHoldsUpNoOtherCall "
      "2>&1";
  FILE* child = popen(cmd.c_str(), "r");
  ASSERT_NE(child, nullptr);
  std::string out;
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, child)) out.append(buf, n);
  const int status = pclose(child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  if (out.find("[  SKIPPED ]") != std::string::npos) GTEST_SKIP() << out;
  EXPECT_NE(out.find("[  PASSED  ] 1 test"), std::string::npos) << out;
}

}  // namespace
}  // namespace hookrelay
