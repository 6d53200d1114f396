// OrderedReceiver: a receiver for per-key order tests (devbroker and real Kafka). It answers
// {"customer": K, "seq": N} bodies: 500 for the stuck key until its time is up, 500 at random for
// `fail_rate` of the others' requests, else 200, recording each success per key in the order it
// answered them. keyed_events() makes such events; expect_in_sequence() checks every key's
// successes are 0, 1, ... in order.
//
// Thread-safety: the server's threads answer; every public method may be called from any thread.
#pragma once

#include <gtest/gtest.h>
#include <simdjson.h>

#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "shared/http/http_server.h"
#include "tests/support/stack.h"

namespace hookrelay::test {

using Clock = std::chrono::steady_clock;

// Answers {"customer": K, "seq": N} bodies: 500 for the stuck key until its time is up, 500 at
// random for `fail_rate` of the others' requests, else 200, recording each success.
class OrderedReceiver {
 public:
  struct Success {
    int seq;
    Clock::time_point at;
  };
  OrderedReceiver()
      : server_({}, [this](const HttpRequest& req, const Responder& respond) {
          HttpResponse r;
          r.status = answer(req.body);
          respond(std::move(r));
        }) {}
  Result<void> start() { return server_.start(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_.port()) + "/o"; }

  void configure(double fail_rate, std::string stuck_key, Clock::time_point stuck_until) {
    std::lock_guard lock(mu_);
    fail_rate_ = fail_rate;
    stuck_key_ = std::move(stuck_key);
    stuck_until_ = stuck_until;
  }
  std::size_t successes() const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& [k, list] : ok_) n += list.size();
    return n;
  }
  std::map<std::string, std::vector<Success>> by_key() const {
    std::lock_guard lock(mu_);
    return ok_;
  }
  int failures() const {
    std::lock_guard lock(mu_);
    return failed_;
  }
  void reset() {
    std::lock_guard lock(mu_);
    ok_.clear();
    failed_ = 0;
  }

 private:
  int answer(std::string_view body) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    std::string_view customer;
    int64_t seq = -1;
    if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS ||
        root["customer"].get(customer) != simdjson::SUCCESS ||
        root["seq"].get(seq) != simdjson::SUCCESS) {
      return 400;
    }
    std::lock_guard lock(mu_);
    const bool stuck = customer == stuck_key_ && Clock::now() < stuck_until_;
    if (stuck || std::uniform_real_distribution<double>(0, 1)(rng_) < fail_rate_) {
      ++failed_;
      return 500;
    }
    ok_[std::string(customer)].push_back({static_cast<int>(seq), Clock::now()});
    return 200;
  }

  mutable std::mutex mu_;
  std::mt19937_64 rng_{20261127};
  double fail_rate_ = 0;
  std::string stuck_key_;
  Clock::time_point stuck_until_;
  std::map<std::string, std::vector<Success>> ok_;
  int failed_ = 0;
  HttpServer server_;
};

inline std::string customer(int k) { return "c" + std::to_string(k); }

// `per_key` events for each of `keys` customers, interleaved: seq n of every key, then n + 1.
inline std::vector<std::pair<std::string, std::string>> keyed_events(const std::string& prefix,
                                                                     int keys, int per_key) {
  std::vector<std::pair<std::string, std::string>> events;
  for (int n = 0; n < per_key; ++n) {
    for (int k = 0; k < keys; ++k) {
      events.emplace_back(
          prefix + "-" + customer(k) + "-" + std::to_string(n),
          R"({"customer":")" + customer(k) + R"(","seq":)" + std::to_string(n) + "}");
    }
  }
  return events;
}

// Every key's successes are 0, 1, ..., per_key - 1 in that order: in sequence, each once.
inline void expect_in_sequence(
    const std::map<std::string, std::vector<OrderedReceiver::Success>>& got, int keys,
    int per_key) {
  ASSERT_EQ(got.size(), static_cast<std::size_t>(keys));
  for (const auto& [key, list] : got) {
    std::vector<int> seqs;
    for (const auto& s : list) seqs.push_back(s.seq);
    std::vector<int> want(static_cast<std::size_t>(per_key));
    for (int i = 0; i < per_key; ++i) want[static_cast<std::size_t>(i)] = i;
    EXPECT_EQ(seqs, want) << "key " << key;
  }
}

// As expect_in_sequence, for a run where a worker was killed: a request that reached the
// receiver before the kill but whose success the worker never recorded is sent again (at least
// once; a receiver drops it by its webhook-id). The first success of each seq must come in
// order, every seq once; returns how many successes repeated one already seen.
inline int expect_first_successes_in_sequence(
    const std::map<std::string, std::vector<OrderedReceiver::Success>>& got, int keys,
    int per_key) {
  EXPECT_EQ(got.size(), static_cast<std::size_t>(keys));
  int repeated = 0;
  for (const auto& [key, list] : got) {
    std::vector<int> firsts;
    std::set<int> seen;
    for (const auto& s : list) {
      if (seen.insert(s.seq).second) {
        firsts.push_back(s.seq);
      } else {
        ++repeated;
      }
    }
    std::vector<int> want(static_cast<std::size_t>(per_key));
    for (int i = 0; i < per_key; ++i) want[static_cast<std::size_t>(i)] = i;
    EXPECT_EQ(firsts, want) << "key " << key;
  }
  return repeated;
}

// The stack of the per-key order tests on either broker: one ordered route keyed by the body's
// /customer, a short retry schedule with room for many failures, and one partition, so events
// reach the worker in the order they were produced (a JSON-pointer key spans partitions
// otherwise, and first attempts would follow the order the worker reads them: docs/routes.md).
inline StackOptions ordered_route_stack(const std::string& url) {
  StackOptions o;
  o.partitions = 1;
  o.schedule_seconds = {1, 2};
  o.max_attempts = 30;
  o.routes = {{"acme", "o", url, 5000, "ordered: true, ordering_key: { json_pointer: /customer }"}};
  return o;
}

}  // namespace hookrelay::test
