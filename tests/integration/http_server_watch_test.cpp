// HttpServer::watch_fd: another library's wake-up pipe served on the event loop. A wake-up that
// never comes (librdkafka queued an event before its pipe was enabled) must not strand what waits
// on it, and a handler that throws must not end the watch. Below them, HttpServer's answers on
// the wire.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "shared/http/http_server.h"
#include "tests/support/raw_client.h"

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

// HttpServer's answers on the wire: the status line, the server's own fields, the handler's
// headers and Content-Length, keep-alive or Connection: close, and an answer given from the
// connection's loop, from the handler itself, or from another thread.

// Posts `body` on the connection and returns the whole response that answers it.
std::string post_and_read(test::RawClient& c, std::string_view body = "") {
  const std::string request =
      "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
      std::string(body);
  if (!c.send(request)) return {};
  return c.read_until_close(5s, /*one_response=*/true);
}

// Whether the server closes the connection within `timeout` (nothing else arriving).
bool closed_by_server(test::RawClient& c, std::chrono::milliseconds timeout) {
  return c.read_until_close(timeout).empty() && c.closed();
}

class HttpServerResponse : public ::testing::Test {
 protected:
  void start(HttpHandler handler, int threads = 2, HttpServerOptions o = {}) {
    o.threads = threads;
    server_ = std::make_unique<HttpServer>(o, std::move(handler));
    ASSERT_TRUE(server_->start());
  }
  void TearDown() override {
    if (server_) server_->stop();
  }
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerResponse, StatusFieldsAndBodyAreWrittenAndTheConnectionIsKept) {
  start([](const HttpRequest& req, Responder respond) {
    HttpResponse r;
    r.status = 202;
    r.body = "{\"echo\":\"" + std::string(req.body) + "\"}";
    r.headers = {{"Retry-After", "7"}, {"X-Two", "a b"}};
    respond(std::move(r));
  });
  test::RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  for (std::string body : {"first", "second, on the same connection"}) {
    std::string expected_body = "{\"echo\":\"" + body + "\"}";
    EXPECT_EQ(post_and_read(c, body),
              "HTTP/1.1 202 Accepted\r\nServer: hookrelay\r\nContent-Type: application/json\r\n"
              "Retry-After: 7\r\nX-Two: a b\r\nContent-Length: " +
                  std::to_string(expected_body.size()) + "\r\n\r\n" + expected_body);
  }
  EXPECT_FALSE(closed_by_server(c, 100ms));
}

// HEAD: the same status and fields, the length the body would have, and no body, so the next
// answer on the connection is read as itself.
TEST_F(HttpServerResponse, AHeadAnswerHasNoBodyAndTheConnectionGoesOn) {
  start([](const HttpRequest&, Responder respond) {
    HttpResponse r;
    r.body = R"({"status":"ok"})";
    respond(std::move(r));
  });
  test::RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(
      c.send("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string head =
      "HTTP/1.1 200 OK\r\nServer: hookrelay\r\nContent-Type: application/json\r\n"
      "Content-Length: 15\r\n\r\n";
  std::string got;
  for (int i = 0; i < 50 && got.size() < 2 * head.size() + 15; ++i)
    got += c.read_until_close(100ms, false);
  EXPECT_EQ(got, head + head + R"({"status":"ok"})");
}

// Only the answer to the HEAD itself goes without its body: a refusal of the next request on the
// connection (413 on its Content-Length, 400 unparsable, 431 too many fields) carries its JSON
// body, as long as its Content-Length says. A refused HEAD has no body either.
TEST_F(HttpServerResponse, ARefusalAfterAHeadAnswerCarriesItsBody) {
  start([](const HttpRequest&, Responder respond) {
    HttpResponse r;
    r.body = R"({"status":"ok"})";
    respond(std::move(r));
  });
  const std::string head_answer =
      "HTTP/1.1 200 OK\r\nServer: hookrelay\r\nContent-Type: application/json\r\n"
      "Content-Length: 15\r\n\r\n";
  std::string many_fields = "GET /x HTTP/1.1\r\nHost: t\r\n";
  for (int i = 0; i < 150; ++i) many_fields += "f" + std::to_string(i) + ": v\r\n";
  many_fields += "\r\n";
  struct Case {
    std::string request;
    std::string status_line;
    std::string code;
  };
  for (const auto& [request, status_line, code] : std::vector<Case>{
           {"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999\r\n\r\n",
            "HTTP/1.1 413 Payload Too Large\r\n", "body_too_large"},
           {"NOT A REQUEST\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n", "malformed_http"},
           {many_fields, "HTTP/1.1 431 Request Header Fields Too Large\r\n", "too_many_headers"},
       }) {
    test::RawClient c(server_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send("HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n" + request));
    const std::string bytes = c.read_until_close(5s);
    ASSERT_TRUE(bytes.starts_with(head_answer)) << code << ": " << bytes;
    const std::string refusal = bytes.substr(head_answer.size());
    EXPECT_TRUE(refusal.starts_with(status_line)) << code << ": " << refusal;
    const auto end = refusal.find("\r\n\r\n");
    ASSERT_NE(end, std::string::npos) << code << ": " << refusal;
    const std::string body = refusal.substr(end + 4);
    EXPECT_NE(refusal.find("Content-Length: " + std::to_string(body.size()) + "\r\n"),
              std::string::npos)
        << code << ": " << refusal;
    EXPECT_NE(body.find("\"code\":\"" + code + "\""), std::string::npos)
        << code << ": no JSON body after the HEAD answer: " << refusal;
    EXPECT_TRUE(c.closed()) << code;
  }
  test::RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("HEAD /x HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999\r\n\r\n"));
  const std::string bytes = c.read_until_close(5s);
  EXPECT_TRUE(bytes.starts_with("HTTP/1.1 413 Payload Too Large\r\n")) << bytes;
  EXPECT_TRUE(bytes.ends_with("\r\n\r\n")) << "a body after the answer to HEAD: " << bytes;
  EXPECT_TRUE(c.closed());
}

// Empty lines before a request line (RFC 7230 3.5), such as the CRLF some clients send after a
// body, are skipped: the request that follows them is answered, whether they arrive with the
// previous request, alone, or before the connection's first request. A few are skipped; past
// that the bytes are a malformed request.
TEST_F(HttpServerResponse, EmptyLinesBeforeARequestLineAreIgnored) {
  start([](const HttpRequest& req, Responder respond) {
    HttpResponse r;
    r.body = std::string(req.body);
    respond(std::move(r));
  });
  auto post = [](std::string_view body) {
    return "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + std::string(body);
  };
  test::RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  // Before the first request, and a CRLF after the body, in the same packet.
  ASSERT_TRUE(c.send("\r\n" + post("one") + "\r\n"));
  EXPECT_TRUE(c.read_until_close(5s, /*one_response=*/true).ends_with("\r\n\r\none"));
  ASSERT_TRUE(c.send(post("two")));
  EXPECT_TRUE(c.read_until_close(5s, /*one_response=*/true).ends_with("\r\n\r\ntwo"));
  // Pipelined behind an empty line, and a bare LF.
  ASSERT_TRUE(c.send(post("three") + "\r\n" + post("four") + "\n" + post("five")));
  std::string answers;
  for (int i = 0; i < 50 && answers.find("five") == std::string::npos; ++i)
    answers += c.read_until_close(100ms);
  EXPECT_NE(answers.find("\r\n\r\nthree"), std::string::npos) << answers;
  EXPECT_NE(answers.find("\r\n\r\nfour"), std::string::npos) << answers;
  EXPECT_NE(answers.find("\r\n\r\nfive"), std::string::npos) << answers;
  EXPECT_EQ(answers.find("400 Bad Request"), std::string::npos) << answers;
  // Alone, split between its CR and its LF, and then the request.
  ASSERT_TRUE(c.send("\r"));
  std::this_thread::sleep_for(30ms);
  ASSERT_TRUE(c.send("\n"));
  std::this_thread::sleep_for(30ms);
  ASSERT_TRUE(c.send(post("six")));
  EXPECT_TRUE(c.read_until_close(5s, /*one_response=*/true).ends_with("\r\n\r\nsix"));
  EXPECT_FALSE(closed_by_server(c, 100ms));

  // Endless empty lines are not a request.
  test::RawClient flood(server_->port());
  ASSERT_TRUE(flood.connected());
  std::string lines;
  for (int i = 0; i < 100; ++i) lines += "\r\n";
  ASSERT_TRUE(flood.send(lines + post("seven")));
  const std::string refused = flood.read_until_close(5s);
  EXPECT_TRUE(refused.starts_with("HTTP/1.1 400 Bad Request\r\n")) << refused;
  EXPECT_NE(refused.find("\"code\":\"malformed_http\""), std::string::npos) << refused;
  EXPECT_TRUE(flood.closed());
}

TEST_F(HttpServerResponse, CloseIsAnnouncedAndDone) {
  start([](const HttpRequest&, Responder respond) {
    HttpResponse r;
    r.status = 503;
    r.body = "{}";
    r.close = true;
    respond(std::move(r));
  });
  test::RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  EXPECT_EQ(post_and_read(c),
            "HTTP/1.1 503 Service Unavailable\r\nServer: hookrelay\r\nContent-Type: "
            "application/json\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_TRUE(closed_by_server(c, 2s));
}

TEST_F(HttpServerResponse, HandlerHeadersCannotSplitTheResponseNorReplaceTheServersFields) {
  start([](const HttpRequest&, Responder respond) {
    HttpResponse r;
    r.body = "ok";
    r.content_type = "text/plain\r\nX-Injected: 1";
    r.headers = {{"X-A", "a\r\nX-Injected: 2"},
                 {"Content-Length", "999"},
                 {"Connection", "close"},
                 {"Bad Name", "x"},
                 {"X-B", "b"}};
    respond(std::move(r));
  });
  test::RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  EXPECT_EQ(post_and_read(c),
            "HTTP/1.1 200 OK\r\nServer: hookrelay\r\nContent-Type: text/plain  X-Injected: 1\r\n"
            "X-A: a  X-Injected: 2\r\nX-B: b\r\nContent-Length: 2\r\n\r\nok");
  EXPECT_FALSE(closed_by_server(c, 100ms));
}

// An answer larger than the socket takes at once (the client reads only later) is finished
// asynchronously and arrives whole; the connection then serves the next request.
TEST_F(HttpServerResponse, AnAnswerTheSocketCannotTakeAtOnceArrivesWhole) {
  const std::string big = [] {
    std::string b(8 << 20, '\0');
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<char>('a' + i % 26);
    return b;
  }();
  start([&big](const HttpRequest& req, Responder respond) {
    HttpResponse r;
    r.body = req.body == "big" ? big : std::string(req.body);
    respond(std::move(r));
  });
  test::RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nbig"));
  std::this_thread::sleep_for(200ms);  // the server's send fills the socket meanwhile
  auto answer = c.read_until_close(10s, /*one_response=*/true);
  ASSERT_TRUE(answer.starts_with("HTTP/1.1 200 OK\r\n")) << answer.substr(0, 200);
  EXPECT_TRUE(answer.ends_with("\r\n\r\n" + big)) << answer.size();
  EXPECT_TRUE(post_and_read(c, "next").ends_with("\r\n\r\nnext"));
}

// Requests sent back to back in one packet are each answered, in order.
TEST_F(HttpServerResponse, PipelinedRequestsAreAnsweredInOrder) {
  start([](const HttpRequest& req, Responder respond) {
    HttpResponse r;
    r.body = std::string(req.body);
    respond(std::move(r));
  });
  test::RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  std::string requests;
  for (const char* body : {"one", "two", "six"})
    requests += "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n" + std::string(body);
  ASSERT_TRUE(c.send(requests));
  std::string answers;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (answers.find("six") == std::string::npos && std::chrono::steady_clock::now() < deadline)
    answers += c.read_until_close(100ms);
  const auto one = answers.find("\r\n\r\none"), two = answers.find("\r\n\r\ntwo"),
             six = answers.find("\r\n\r\nsix");
  ASSERT_NE(six, std::string::npos) << answers;
  EXPECT_LT(one, two);
  EXPECT_LT(two, six);
}

// A request is the same request whether it arrives whole (parsed from the first read) or in
// pieces (the rest read as it comes): split inside the request line, inside the header, between
// header and body and inside the body; chunked; and after a 100-continue.
TEST_F(HttpServerResponse, RequestsArrivingInPiecesAreTheSameRequests) {
  start([](const HttpRequest& req, Responder respond) {
    HttpResponse r;
    r.body = std::string(req.method) + " " + std::string(req.target) + " " +
             std::string(req.header("X-Tag").value_or("-")) + " " + std::string(req.body);
    respond(std::move(r));
  });
  const std::string whole =
      "POST /piece?q=1 HTTP/1.1\r\nHost: t\r\nX-Tag: tagged\r\nContent-Length: 11\r\n\r\n"
      "hello world";
  const std::string expected = "\r\n\r\nPOST /piece?q=1 tagged hello world";
  test::RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(whole));
  EXPECT_TRUE(c.read_until_close(5s, /*one_response=*/true).ends_with(expected));
  // The same bytes cut at every kind of boundary, each piece sent after a pause, on the same
  // connection.
  for (std::size_t cut :
       {std::size_t{3}, std::size_t{20}, whole.find("X-Tag") + 4, whole.find("\r\n\r\n") + 2,
        whole.find("\r\n\r\n") + 4, whole.size() - 5}) {
    ASSERT_TRUE(c.send(whole.substr(0, cut)));
    std::this_thread::sleep_for(30ms);
    ASSERT_TRUE(c.send(whole.substr(cut)));
    EXPECT_TRUE(c.read_until_close(5s, /*one_response=*/true).ends_with(expected)) << cut;
  }
  const std::string chunked =
      "POST /piece?q=1 HTTP/1.1\r\nHost: t\r\nX-Tag: tagged\r\nTransfer-Encoding: chunked\r\n\r\n"
      "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
  ASSERT_TRUE(c.send(chunked.substr(0, chunked.size() - 12)));
  std::this_thread::sleep_for(30ms);
  ASSERT_TRUE(c.send(chunked.substr(chunked.size() - 12)));
  EXPECT_TRUE(c.read_until_close(5s, /*one_response=*/true).ends_with(expected));
  const std::string head =
      "POST /piece?q=1 HTTP/1.1\r\nHost: t\r\nX-Tag: tagged\r\nExpect: 100-continue\r\n"
      "Content-Length: 11\r\n\r\n";
  ASSERT_TRUE(c.send(head));
  EXPECT_EQ(c.read_until_close(5s, /*one_response=*/true), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(c.send("hello world"));
  EXPECT_TRUE(c.read_until_close(5s, /*one_response=*/true).ends_with(expected));
  EXPECT_FALSE(closed_by_server(c, 100ms));
}

// RFC 9110 10.1.1: a server must ignore a 100-continue expectation in an HTTP/1.0 request. Such a
// client does not wait for an interim answer and cannot read one: it would take "100 Continue"
// for the answer. The body is read as it comes and the request answered, once.
TEST_F(HttpServerResponse, AnHttp10ExpectationOf100ContinueIsIgnored) {
  start([](const HttpRequest& req, Responder respond) {
    HttpResponse r;
    r.body = std::string(req.method) + " " + std::string(req.body);
    respond(std::move(r));
  });
  const std::string head =
      "POST /x HTTP/1.0\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n";
  {
    // The header alone: nothing is sent back while the body has not come.
    test::RawClient c(server_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send(head));
    EXPECT_FALSE(c.readable(300ms)) << "an answer before the body";
    ASSERT_TRUE(c.send("hello world"));
    const std::string answer = c.read_until_close(5s);
    EXPECT_EQ(answer.find("100 Continue"), std::string::npos) << answer;
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 200 OK\r\n")) << answer;
    EXPECT_TRUE(answer.ends_with("\r\n\r\nPOST hello world")) << answer;
    EXPECT_TRUE(c.closed()) << "HTTP/1.0 without keep-alive: closed after the answer";
  }
  {
    // Header and body at once.
    test::RawClient c(server_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send(head + "hello world"));
    const std::string answer = c.read_until_close(5s);
    EXPECT_EQ(answer.find("100 Continue"), std::string::npos) << answer;
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 200 OK\r\n")) << answer;
    EXPECT_TRUE(answer.ends_with("\r\n\r\nPOST hello world")) << answer;
  }
}

// An answer from another thread, later (a Kafka acknowledgement), reaches its connection; the
// connection then serves the next request. One loop and several, so the answer comes both from
// the connection's own loop thread and from a thread of another loop or none.
TEST_F(HttpServerResponse, AnswersFromOtherThreadsReachTheirConnection) {
  for (int threads : {1, 2}) {
    std::mutex mu;
    std::vector<std::thread> answering;
    start(
        [&](const HttpRequest& req, Responder respond) {
          std::lock_guard lock(mu);
          answering.emplace_back([body = std::string(req.body), respond = std::move(respond)] {
            std::this_thread::sleep_for(5ms);
            HttpResponse r;
            r.body = body;
            respond(std::move(r));
          });
        },
        threads);
    test::RawClient c(server_->port());
    ASSERT_TRUE(c.connected());
    for (int i = 0; i < 20; ++i) {
      auto body = "request " + std::to_string(i);
      auto answer = post_and_read(c, body);
      EXPECT_TRUE(answer.starts_with("HTTP/1.1 200 OK\r\n")) << answer;
      EXPECT_TRUE(answer.ends_with("\r\n\r\n" + body)) << answer;
    }
    for (auto& t : answering) t.join();  // each holds its connection until it ends
    server_->stop();
    server_.reset();
  }
}

// Trailer fields after a chunked body are not taken into the request, where they would pass
// max_header_count and be looked up and forwarded as if they had come in the header: a request
// with any is answered 400 trailer_not_supported, without the handler, and the connection closes.
// The same body without a trailer is served.
TEST_F(HttpServerResponse, ChunkedTrailerFieldsAreRefusedNotMergedIntoTheHeader) {
  std::atomic<int> handled{0};
  std::mutex mu;
  std::vector<std::pair<int, std::string>> rejected;
  HttpServerOptions o;
  o.max_header_count = 10;
  o.on_rejected = [&](int status, std::string_view code) {
    std::lock_guard lock(mu);
    rejected.emplace_back(status, std::string(code));
  };
  start(
      [&](const HttpRequest& req, Responder respond) {
        handled.fetch_add(1);
        HttpResponse r;
        r.body = std::string(req.header("X-T0").value_or("-")) + " " + std::string(req.body);
        respond(std::move(r));
      },
      1, o);
  const std::string head =
      "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n";
  for (int trailers : {50, 1}) {
    std::string request = head;
    for (int i = 0; i < trailers; ++i) request += "X-T" + std::to_string(i) + ": v\r\n";
    request += "\r\n";
    test::RawClient c(server_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send(request));
    const std::string answer = c.read_until_close(5s);
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 400 ")) << trailers << ": " << answer;
    EXPECT_NE(answer.find(R"("code":"trailer_not_supported")"), std::string::npos) << answer;
    EXPECT_NE(answer.find("Connection: close\r\n"), std::string::npos) << answer;
    EXPECT_TRUE(c.closed());
  }
  EXPECT_EQ(handled.load(), 0);
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(rejected, (std::vector<std::pair<int, std::string>>{{400, "trailer_not_supported"},
                                                                  {400, "trailer_not_supported"}}));
  }
  test::RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(head + "\r\n"));
  EXPECT_TRUE(c.read_until_close(5s, /*one_response=*/true).ends_with("\r\n\r\n- {}"));
  EXPECT_EQ(handled.load(), 1);
}

// check_header refuses a request from its header alone: the answer comes before any of the body
// is sent (a declared 10 MB that never comes), none of max_buffered_body_bytes is held, the
// handler never runs, and the connection closes; the refusal is counted through on_rejected. A
// refused HEAD has no body, and an Expect: 100-continue is answered with the refusal, never with
// 100 Continue. A check that throws is a 500. A request it lets through is served with its body,
// and the check sees each request's method, target and header, with an empty body.
TEST_F(HttpServerResponse, CheckHeaderRefusesARequestBeforeItsBodyIsSentOrHeld) {
  std::atomic<int> handled{0};
  std::mutex mu;
  std::vector<std::pair<int, std::string>> rejected;
  std::vector<std::string> seen;
  HttpServerOptions o;
  o.max_body_bytes = 16u << 20;
  o.on_rejected = [&](int status, std::string_view code) {
    std::lock_guard lock(mu);
    rejected.emplace_back(status, std::string(code));
  };
  o.check_header = [&](const HttpRequest& head) -> std::optional<HttpRefusal> {
    const std::string key(head.header("X-Key").value_or("-"));
    {
      std::lock_guard lock(mu);
      seen.push_back(std::string(head.method) + " " + std::string(head.target) + " " + key + " " +
                     std::to_string(head.body.size()));
    }
    if (key == "open") return std::nullopt;
    if (key == "throw") throw std::runtime_error("the check failed");
    return HttpRefusal{401, "unauthorized", "no key", {{"WWW-Authenticate", "Bearer"}}};
  };
  start(
      [&](const HttpRequest& req, Responder respond) {
        handled.fetch_add(1);
        HttpResponse r;
        r.body = std::string(req.body);
        respond(std::move(r));
      },
      1, o);
  const std::string refused_body = R"({"error":{"code":"unauthorized","message":"no key"}})";
  for (const std::string request :
       {"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 10000000\r\n\r\n",
        "HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n"}) {
    const bool head = request.starts_with("HEAD");
    test::RawClient c(server_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send(request));
    const std::string answer = c.read_until_close(5s, /*one_response=*/!head);
    EXPECT_EQ(answer,
              "HTTP/1.1 401 Unauthorized\r\nServer: hookrelay\r\nContent-Type: "
              "application/json\r\nWWW-Authenticate: Bearer\r\nConnection: close\r\n"
              "Content-Length: " +
                  std::to_string(refused_body.size()) + "\r\n\r\n" + (head ? "" : refused_body))
        << request;
    EXPECT_EQ(server_->buffered_body_bytes(), 0u) << request;
    EXPECT_TRUE(head ? c.closed() : closed_by_server(c, 5s)) << request;
  }
  {
    test::RawClient c(server_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send("POST /x HTTP/1.1\r\nHost: t\r\nX-Key: throw\r\nContent-Length: 9\r\n\r\n"));
    const std::string answer = c.read_until_close(5s, /*one_response=*/true);
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 500 Internal Server Error\r\n")) << answer;
    EXPECT_NE(answer.find(R"("code":"internal_error")"), std::string::npos) << answer;
    EXPECT_TRUE(closed_by_server(c, 5s));
  }
  EXPECT_EQ(handled.load(), 0);
  test::RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(
      c.send("POST /y?q=1 HTTP/1.1\r\nHost: t\r\nX-Key: open\r\nContent-Length: 5\r\n\r\nhello"));
  EXPECT_TRUE(c.read_until_close(5s, /*one_response=*/true).ends_with("\r\n\r\nhello"));
  EXPECT_EQ(handled.load(), 1);
  std::lock_guard lock(mu);
  EXPECT_EQ(rejected, (std::vector<std::pair<int, std::string>>{{401, "unauthorized"},
                                                                {401, "unauthorized"},
                                                                {401, "unauthorized"},
                                                                {500, "internal_error"}}));
  EXPECT_EQ(seen, (std::vector<std::string>{"POST /x - 0", "POST /x - 0", "HEAD /x - 0",
                                            "POST /x throw 0", "POST /y?q=1 open 0"}));
}

// Bytes the allocator has handed out and not had back, over all its arenas; 0 under an allocator
// mallinfo2 does not describe (a sanitizer's).
std::size_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

void answer_empty_json(const HttpRequest&, Responder respond) {
  HttpResponse r;
  r.body = "{}";
  respond(std::move(r));
}

// How much more heap the server holds once `n` connections of their own have each sent `request`
// and read its 200 (and `settle` has passed), all of them still open; one connection before them
// takes what the loop allocates once.
std::size_t heap_held_by_open_connections(uint16_t port, const std::string& request, int n,
                                          std::chrono::milliseconds settle) {
  std::vector<std::unique_ptr<test::RawClient>> open;
  open.reserve(n + 1);
  auto one = [&] {
    open.push_back(std::make_unique<test::RawClient>(port));
    EXPECT_TRUE(open.back()->connected());
    EXPECT_TRUE(open.back()->send(request));
    const std::string answer = open.back()->read_until_close(5s, true);
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 200 "))
        << open.size() << ": " << answer.substr(0, 200);
  };
  one();
  const std::size_t before = heap_in_use();
  for (int i = 0; i < n; ++i) one();
  std::this_thread::sleep_for(settle);
  // Every connection is still open: each answer came back on a kept connection.
  for (auto& c : open) EXPECT_FALSE(c->closed());
  const std::size_t after = heap_in_use();
  return after > before ? after - before : 0;
}

// A keep-alive connection that goes idle keeps no more than a small read buffer: one whose request
// had a header of nearly 64 KiB (read with the start of its body) held the buffer they grew to
// (128 KiB) for as long as it stayed open, outside max_buffered_body_bytes (4,096 such
// connections: 500 MiB). Counted in the heap, not the RSS, so nothing else in the process moves
// the figure by much.
TEST_F(HttpServerResponse, IdleConnectionsDoNotKeepTheRoomTheirLastHeaderTook) {
  if (heap_in_use() == 0) GTEST_SKIP() << "mallinfo2 does not describe this allocator";
  constexpr int kConnections = 256;
  start(answer_empty_json, 1);
  const std::size_t grown = heap_held_by_open_connections(
      server_->port(),
      "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 8192\r\nX-Pad: " + std::string(65000, 'p') +
          "\r\n\r\n" + std::string(8192, 'b'),
      kConnections, 0ms);
  EXPECT_LT(grown, std::size_t{kConnections} * 16 * 1024)
      << kConnections << " idle connections hold " << grown / 1024 << " KiB more ("
      << grown / kConnections << " bytes each)";
}

// The same when the next request is already arriving behind the large one: while its header is
// read, its connection keeps the bytes it has sent, not the room the previous header took.
TEST_F(HttpServerResponse, ARequestBehindALargeHeaderDoesNotKeepTheRoomThatHeaderTook) {
  if (heap_in_use() == 0) GTEST_SKIP() << "mallinfo2 does not describe this allocator";
  constexpr int kConnections = 64;
  start(answer_empty_json, 1);
  const std::size_t grown = heap_held_by_open_connections(
      server_->port(),
      "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 8192\r\nX-Pad: " + std::string(65000, 'p') +
          "\r\n\r\n" + std::string(8192, 'b') + "GET /next HTTP/1.1\r\nHost: t\r\n",
      kConnections, 100ms);  // each next header is being read
  EXPECT_LT(grown, std::size_t{kConnections} * 16 * 1024)
      << kConnections << " connections reading their next header hold " << grown / 1024
      << " KiB more (" << grown / kConnections << " bytes each)";
}

// What a refused request's connection held, taken when the refusal is counted (on_rejected runs
// before the request's parser and its fields are dropped), and the refusals.
struct Refusals {
  std::mutex mu;
  std::vector<std::pair<int, std::string>> seen;
  std::size_t heap = 0;  // heap_in_use() at the last refusal
  std::function<void(int, std::string_view)> callback() {
    return [this](int status, std::string_view code) {
      const std::size_t now = heap_in_use();
      std::lock_guard lock(mu);
      seen.emplace_back(status, std::string(code));
      heap = now;
    };
  }
};

HttpHandler answer_ok() {
  return [](const HttpRequest& req, Responder respond) {
    HttpResponse r;
    r.body = std::string(req.method) + " " + std::string(req.target) + " " + std::string(req.body);
    respond(std::move(r));
  };
}

// A header is bounded as it arrives: each field is stored as soon as its line is parsed, so a
// client streaming field lines (`a:`, 4 bytes each) without end had the server store every one
// until the header deadline (about 80 bytes of heap a line, 10 s at the line rate). It is answered
// 431 once it passes max_header_count fields, at once, and the heap does not grow with what it
// sends.
TEST_F(HttpServerResponse, AHeaderThatNeverEndsIsRefusedAtMaxHeaderCountWithoutGrowingTheHeap) {
  if (heap_in_use() == 0) GTEST_SKIP() << "mallinfo2 does not describe this allocator";
  Refusals refusals;
  HttpServerOptions o;  // max_header_count 100 and header_timeout 10 s: the defaults
  o.on_rejected = refusals.callback();
  start(answer_ok(), 1, o);
  {
    test::RawClient warm(server_->port());  // what the loop allocates once is not counted
    ASSERT_TRUE(post_and_read(warm, "x").starts_with("HTTP/1.1 200 "));
  }
  const std::size_t before = heap_in_use();
  test::RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("GET /x HTTP/1.1\r\nHost: t\r\na:"));
  // 4,000 bytes at a time, each write ending inside a line and read on its own: fed all that was
  // read, the parser stored the fields of every read that did not end right after a line.
  std::string lines;
  for (int i = 0; i < 1000; ++i) lines += "\r\na:";
  constexpr std::size_t kMost = std::size_t{20} << 20;
  std::size_t sent = 0;
  std::size_t peak = before;
  const auto started = std::chrono::steady_clock::now();
  while (sent < kMost && !c.readable(1ms) && c.send(lines)) {
    sent += lines.size();
    peak = std::max(peak, heap_in_use());
  }
  const auto streamed = std::chrono::steady_clock::now() - started;
  const std::string answer = c.read_until_close(5s, /*one_response=*/true);
  peak = std::max(peak, heap_in_use());
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
      << "after " << sent << " bytes of field lines: " << answer.substr(0, 200);
  EXPECT_NE(answer.find(R"("code":"too_many_headers")"), std::string::npos) << answer;
  EXPECT_NE(answer.find("request has more than 100 header fields"), std::string::npos) << answer;
  EXPECT_LT(sent, std::size_t{1} << 20) << "the header was read for " << sent << " bytes";
  EXPECT_LT(streamed, 2s);
  EXPECT_LT(peak - before, std::size_t{1} << 20)
      << "the heap grew by " << (peak - before) / 1024 << " KiB while " << sent / 1024
      << " KiB of field lines were sent";
  std::lock_guard lock(refusals.mu);
  EXPECT_EQ(refusals.seen, (std::vector<std::pair<int, std::string>>{{431, "too_many_headers"}}));
  EXPECT_LT(refusals.heap - std::min(refusals.heap, before), std::size_t{1} << 20)
      << "held at the refusal: " << (refusals.heap - std::min(refusals.heap, before)) / 1024
      << " KiB";
}

// A request pipelined behind another arrives with it, its header already read: it is parsed up
// to max_header_count fields, not all 16,000 of its lines (fed to the parser at once, 64 KiB of
// `a:` lines were all stored before they were counted). The first request is answered, the
// second refused.
TEST_F(HttpServerResponse, APipelinedHeaderOfManyFieldsIsParsedOnlyToMaxHeaderCount) {
  if (heap_in_use() == 0) GTEST_SKIP() << "mallinfo2 does not describe this allocator";
  Refusals refusals;
  HttpServerOptions o;
  o.on_rejected = refusals.callback();
  start(answer_ok(), 1, o);
  {
    test::RawClient warm(server_->port());
    ASSERT_TRUE(post_and_read(warm, "x").starts_with("HTTP/1.1 200 "));
  }
  std::string second = "GET /second HTTP/1.1\r\n";
  for (int i = 0; i < 16000; ++i) second += "a:\r\n";
  second += "\r\n";
  ASSERT_LT(second.size(), 64u * 1024);
  const std::size_t before = heap_in_use();
  test::RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("GET /first HTTP/1.1\r\nHost: t\r\n\r\n" + second));
  const std::string bytes = c.read_until_close(5s);
  const auto first_end = bytes.find("\r\n\r\nGET /first ");
  ASSERT_TRUE(bytes.starts_with("HTTP/1.1 200 OK\r\n")) << bytes.substr(0, 300);
  ASSERT_NE(first_end, std::string::npos) << bytes.substr(0, 300);
  const std::string refusal = bytes.substr(bytes.find("HTTP/1.1 ", first_end));
  EXPECT_TRUE(refusal.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n")) << refusal;
  EXPECT_NE(refusal.find(R"("code":"too_many_headers")"), std::string::npos) << refusal;
  EXPECT_TRUE(c.closed());
  std::lock_guard lock(refusals.mu);
  EXPECT_EQ(refusals.seen, (std::vector<std::pair<int, std::string>>{{431, "too_many_headers"}}));
  // 16,000 fields would be over 1 MiB; the read buffer and 100 fields are far less.
  const std::size_t held = refusals.heap - std::min(refusals.heap, before);
  EXPECT_LT(held, std::size_t{512} * 1024) << "held at the refusal: " << held / 1024 << " KiB";
}

// The allowance is exact: a header of max_header_count fields is served, whether it arrives
// whole with its body or a line at a time, and one field more is 431 too_many_headers; a header
// of 64 KiB is served and one byte more is 431 headers_too_large.
TEST_F(HttpServerResponse, AHeaderOfExactlyTheAllowedFieldsAndBytesIsServedAndOneMoreIsRefused) {
  Refusals refusals;
  HttpServerOptions o;
  o.max_header_count = 10;
  o.on_rejected = refusals.callback();
  start(answer_ok(), 1, o);
  // Host, Content-Length, and fields F2... to `fields` in all.
  auto request = [](int fields, std::string_view body) {
    std::string r =
        "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    for (int i = 2; i < fields; ++i) r += "F" + std::to_string(i) + ": v\r\n";
    return r + "\r\n" + std::string(body);
  };
  // A line at a time, each after a pause, so each is read on its own.
  auto send_by_lines = [](test::RawClient& c, const std::string& bytes) {
    for (std::size_t at = 0; at < bytes.size();) {
      const auto line_end = bytes.find('\n', at);
      const std::size_t next = line_end == std::string::npos ? bytes.size() : line_end + 1;
      if (!c.send(std::string_view(bytes).substr(at, next - at))) return false;
      std::this_thread::sleep_for(3ms);
      at = next;
    }
    return true;
  };
  {
    test::RawClient c(server_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send(request(10, "whole")));
    EXPECT_TRUE(c.read_until_close(5s, true).ends_with("\r\n\r\nPOST /x whole"));
    ASSERT_TRUE(send_by_lines(c, request(10, "lines")));
    EXPECT_TRUE(c.read_until_close(5s, true).ends_with("\r\n\r\nPOST /x lines"));
    EXPECT_FALSE(closed_by_server(c, 100ms));
  }
  for (bool by_lines : {false, true}) {
    test::RawClient c(server_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(by_lines ? send_by_lines(c, request(11, "more")) : c.send(request(11, "more")));
    const std::string answer = c.read_until_close(5s);
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        << by_lines << ": " << answer;
    EXPECT_NE(answer.find("request has more than 10 header fields"), std::string::npos) << answer;
    EXPECT_TRUE(c.closed());
  }
  // The request line, Host, X-Pad and the empty line: 65,536 bytes, then one more.
  const std::string start = "GET /x HTTP/1.1\r\nHost: t\r\nX-Pad: ";
  const std::size_t pad = 64 * 1024 - start.size() - 4;
  for (std::size_t extra : {0, 1}) {
    const std::string header = start + std::string(pad + extra, 'p') + "\r\n\r\n";
    ASSERT_EQ(header.size(), 64u * 1024 + extra);
    test::RawClient c(server_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send(header));
    const std::string answer = c.read_until_close(5s, true);
    if (extra == 0) {
      EXPECT_TRUE(answer.starts_with("HTTP/1.1 200 OK\r\n")) << answer.substr(0, 300);
    } else {
      EXPECT_TRUE(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
          << answer.substr(0, 300);
      EXPECT_NE(answer.find(R"("code":"headers_too_large")"), std::string::npos) << answer;
    }
  }
  std::lock_guard lock(refusals.mu);
  EXPECT_EQ(refusals.seen,
            (std::vector<std::pair<int, std::string>>{
                {431, "too_many_headers"}, {431, "too_many_headers"}, {431, "headers_too_large"}}));
}

// A HEAD refused for its header (too many fields, or more than 64 KiB) gets no body, even when its
// request line arrives cut before its line feed: the parser then holds the whole line until more
// of the header comes, and the refusal comes before it has read the method.
TEST_F(HttpServerResponse, AHeadRefusedForItsHeaderHasNoBodyEvenWhenItsRequestLineArrivedCut) {
  HttpServerOptions o;
  o.max_header_count = 8;
  start(answer_ok(), 1, o);
  std::string many_fields;
  for (int i = 0; i < 9; ++i) many_fields += "a" + std::to_string(i) + ":1\r\n";
  const std::string large_field = "X-Pad: " + std::string(64 * 1024, 'p') + "\r\n";
  for (const auto& [rest, code] : std::vector<std::pair<std::string, std::string>>{
           {many_fields, "too_many_headers"}, {large_field, "headers_too_large"}}) {
    test::RawClient c(server_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send("HEAD / HTTP/1.1\r"));
    std::this_thread::sleep_for(50ms);
    ASSERT_TRUE(c.send("\n" + rest));
    const std::string answer = c.read_until_close(5s);
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        << code << ": " << answer.substr(0, 300);
    EXPECT_TRUE(answer.ends_with("\r\n\r\n"))
        << code << ": a body after the answer to HEAD: " << answer.substr(0, 300);
    EXPECT_TRUE(c.closed()) << code;
  }
}

}  // namespace
}  // namespace hookrelay
