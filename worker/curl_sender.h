// CurlSender: HttpSender on libcurl multi handles driven through curl's socket interface by
// event loops, each a thread of its own with its own epoll set and multi handles (a few, calls
// spread round-robin). Calls are spread round-robin over the loops (worker.http_threads), so the
// HTTP work of a busy worker is not bound to one core, nor to one thread's share of a machine
// whose cores are shared. Connections are reused across deliveries to the same host, within a
// loop. Every socket curl wants to open is first shown to
// the SsrfGuard (CURLOPT_OPENSOCKETFUNCTION), so the decision is made on the resolved address,
// after DNS, which is where rebinding tricks would otherwise slip through.
//
// TLS verification is on; redirects are not followed (a 3xx is the attempt's answer); only http
// and https are allowed; proxy environment variables are ignored (the guard must see the
// destination's own address).
//
// What a receiver sends back is bounded (limits in curl_sender.cpp): a 2xx body is read to
// 1 MiB, any other to 64 KiB, and a call's header lines (interim responses', the final header's
// and a chunked body's trailers) to 300 lines and 64 KiB; past a limit the call ends there and is
// judged by its status line (a 2xx is a success: it was taken), or as a receive error before a
// final status line. A call ended while its host's name is still resolving does not wait for the
// resolver (CURLOPT_QUICK_EXIT).
//
// Thread-safety: send() from any thread; completion callbacks run on the thread of the loop that
// made the call.
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
  // `threads`: event loops (at least 1). Throws std::runtime_error when a loop's epoll set or
  // eventfd cannot be made.
  explicit CurlSender(SsrfGuard guard, int threads = 1, std::string user_agent = "hookrelay/0.1");
  ~CurlSender() override;  // fails outstanding calls with kOther ("shutting down")
  CurlSender(const CurlSender&) = delete;
  CurlSender& operator=(const CurlSender&) = delete;

  void send(HttpCall call, Done done) override;
  int threads() const { return static_cast<int>(loops_.size()); }
  int in_flight() const;            // calls sent and not answered, over all loops
  int in_flight(int thread) const;  // the same for one loop

  struct Transfer;     // defined in curl_sender.cpp
  struct SocketTable;  // the same: a loop's epoll registrations, by descriptor

 private:
  // One event loop: its thread, epoll set, multi handles and the calls handed to it.
  struct Loop {
    Loop();
    ~Loop();
    // Declared before the multi handles: their cleanup closes sockets through it.
    std::unique_ptr<SocketTable> sockets;
    std::vector<CurlMulti> multis;  // one per shard
    std::mutex mu;
    std::deque<std::unique_ptr<Transfer>> inbox;
    std::atomic<int> in_flight{0};
    UniqueFd epoll_fd;
    UniqueFd wake_fd;  // eventfd: send() and the destructor wake the loop's thread
    std::thread thread;
  };
  void run(Loop& loop);
  static void wake(Loop& loop);

  SsrfGuard guard_;
  std::string user_agent_;
  std::atomic<bool> running_{true};
  std::atomic<unsigned> next_loop_{0};
  std::vector<std::unique_ptr<Loop>> loops_;
};

}  // namespace hookrelay
