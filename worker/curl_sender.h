// CurlSender: HttpSender on libcurl multi handles (a few, transfers spread round-robin) driven
// by one thread of its own through curl's socket interface and one epoll set. Connections are
// reused across deliveries to the same host. Every socket curl wants to open is first shown to
// the SsrfGuard (CURLOPT_OPENSOCKETFUNCTION), so the decision is made on the resolved address,
// after DNS, which is where rebinding tricks would otherwise slip through.
//
// TLS verification is on; redirects are not followed (a 3xx is the attempt's answer); only http
// and https are allowed; proxy environment variables are ignored (the guard must see the
// destination's own address).
//
// Thread-safety: send() from any thread; completion callbacks run on the sender thread.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "shared/http/curl_handles.h"
#include "shared/net/unique_fd.h"
#include "worker/http_sender.h"
#include "worker/ssrf_guard.h"

namespace hookrelay {

class CurlSender final : public HttpSender {
 public:
  explicit CurlSender(SsrfGuard guard, std::string user_agent = "hookrelay/0.1");
  ~CurlSender() override;  // fails outstanding calls with kOther ("shutting down")
  CurlSender(const CurlSender&) = delete;
  CurlSender& operator=(const CurlSender&) = delete;

  void send(HttpCall call, Done done) override;
  int in_flight() const { return in_flight_.load(); }

  struct Transfer;  // defined in curl_sender.cpp

 private:
  void run();
  void wake();

  SsrfGuard guard_;
  std::string user_agent_;
  std::vector<CurlMulti> multis_;  // one per shard
  std::mutex mu_;
  std::deque<std::unique_ptr<Transfer>> inbox_;
  std::atomic<bool> running_{true};
  std::atomic<int> in_flight_{0};
  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;  // eventfd: send() and the destructor wake the sender thread
  std::thread thread_;
};

}  // namespace hookrelay
