// ScriptedReceiver: an in-process HTTP receiver on 127.0.0.1 standing in for the services the
// worker delivers to. Each path has a script: a queue of responses consumed one per request,
// then that path's default (or the receiver's default, 200). Every request is recorded.
//
// A response with delay_ms > 0 is answered from a timer thread, so a slow answer on one
// connection never holds up requests on others (the HttpServer runs 2 threads; the Responder may
// be called from any thread).
//
// Typical use:
//   ScriptedReceiver rx;
//   ASSERT_TRUE(rx.start());
//   rx.script("/b", {{500}, {500}});           // then the default: 200
//   ... rx.url("/b") in a route ...
//   ASSERT_TRUE(rx.wait_for_count("/b", 3, 20s));
//
// Thread-safety: every method from any thread; start/stop/destruction on one thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "shared/http/http_server.h"
#include "shared/http/http_types.h"
#include "shared/result.h"

namespace hookrelay::test {

struct ScriptedResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers = {};  // e.g. {"Retry-After", "2"}
  int delay_ms = 0;
  std::string body = {};
};

struct ReceivedRequest {
  std::string method;
  std::string path;                                          // without the query
  std::string target;                                        // as received
  std::vector<std::pair<std::string, std::string>> headers;  // names as received
  std::string body;
  std::chrono::steady_clock::time_point at;
  int64_t unix_ms = 0;

  // Case-insensitive; the first header with this name.
  std::optional<std::string> header(std::string_view name) const;
  // The same lookup in the form the signature verifier takes; views into `headers`.
  HeaderLookup lookup() const;
};

class ScriptedReceiver {
 public:
  // port 0: an ephemeral one; another: that one (a receiver coming back where one stopped).
  // `host`: the loopback address to bind ("::1" for IPv6; url() names 127.0.0.1 only).
  explicit ScriptedReceiver(uint16_t port = 0, const std::string& host = "127.0.0.1");
  ~ScriptedReceiver();  // stop()
  ScriptedReceiver(const ScriptedReceiver&) = delete;
  ScriptedReceiver& operator=(const ScriptedReceiver&) = delete;

  Result<void> start();  // binds 127.0.0.1 on an ephemeral port
  void stop();           // answers delayed responses at once, then stops the server
  uint16_t port() const;
  std::string url(const std::string& path) const;  // "http://127.0.0.1:<port><path>"

  // Appends to the path's queue.
  void script(const std::string& path, std::vector<ScriptedResponse> responses);
  // What the path answers once its queue is empty.
  void set_default(const std::string& path, ScriptedResponse response);
  // What paths without a default of their own answer (initially 200, no delay).
  void set_default(ScriptedResponse response);

  // A receiver with room for `max` requests of `path` at once: a request that arrives while `max`
  // are still unanswered (delayed) gets `over` at once (e.g. a 429), counted in refused().
  void limit_concurrency(const std::string& path, int max, ScriptedResponse over);
  // When each request refused by limit_concurrency arrived, in order.
  std::vector<std::chrono::steady_clock::time_point> refused(const std::string& path) const;
  // The most requests of `path` unanswered at once (limited paths only).
  int peak_concurrency(const std::string& path) const;

  std::size_t count(const std::string& path) const;
  std::size_t total_count() const;
  std::vector<ReceivedRequest> requests(const std::string& path) const;
  std::vector<ReceivedRequest> all_requests() const;
  // webhook-id -> how many requests carried it, over every path ("" for a path: all paths).
  std::map<std::string, int> webhook_id_counts(const std::string& path = "") const;
  std::size_t distinct_webhook_ids(const std::string& path = "") const;

  // True once `path` has received at least n requests; false after timeout.
  bool wait_for_count(const std::string& path, std::size_t n,
                      std::chrono::milliseconds timeout) const;
  // True once `path` has answered at least n requests ("" for all paths): a delayed answer
  // counts when it has been handed to the server.
  bool wait_for_answered(const std::string& path, std::size_t n,
                         std::chrono::milliseconds timeout) const;

 private:
  struct Timer {
    Responder respond;
    HttpResponse response;
    std::string path;
    bool counted = false;  // in its path's ConcurrencyLimit::in_flight
  };
  struct ConcurrencyLimit {
    int max = 0;
    ScriptedResponse over;
    int in_flight = 0;
    int peak = 0;
    std::vector<std::chrono::steady_clock::time_point> refused;
  };
  void leave(const std::string& path);  // a counted request was answered

  void handle(const HttpRequest& request, Responder respond);
  void answered(const std::string& path);
  void run_timers();

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  std::map<std::string, std::deque<ScriptedResponse>> scripts_;
  std::map<std::string, ScriptedResponse> defaults_;
  std::map<std::string, ConcurrencyLimit> limits_;
  ScriptedResponse default_;
  std::vector<ReceivedRequest> received_;
  std::map<std::string, std::size_t> answered_;
  std::multimap<std::chrono::steady_clock::time_point, Timer> timers_;  // by due time
  bool stopping_ = false;
  std::condition_variable timer_cv_;
  std::thread timer_thread_;
  std::unique_ptr<HttpServer> server_;
};

}  // namespace hookrelay::test
