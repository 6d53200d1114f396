#include "worker/curl_sender.h"

#include <curl/curl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "shared/ascii.h"
#include "shared/log.h"
#include "shared/thread_guard.h"

namespace hookrelay {

// The epoll registrations of one loop's sockets, by descriptor. A connection curl keeps for
// reuse stays registered between its calls: curl lets go of the socket when a call ends
// (CURL_POLL_REMOVE) and asks for it again when the next call on that connection starts, and
// without this each delivery cost an EPOLL_CTL_DEL and an EPOLL_CTL_ADD. Only sockets curl opened
// and closes through our callbacks (open_socket, close_socket) are kept so: their descriptor
// cannot be closed and reused behind the table's back. A kept socket that turns readable while
// curl is not watching it (the receiver closed the connection) is taken out of the set then, so
// it cannot wake the loop again; curl finds the connection dead when it next looks at it.
struct CurlSender::SocketTable {
  struct Entry {
    uint64_t tag = 0;     // epoll_event.data of the registration
    uint32_t events = 0;  // of the registration
    bool in_epoll = false;
    bool owned = false;   // opened by open_socket: its close comes through close_socket
    bool parked = false;  // registered while curl does not watch it
  };
  std::vector<Entry> entries;

  Entry& at(curl_socket_t s) {
    const auto i = static_cast<std::size_t>(s);
    if (i >= entries.size()) entries.resize(std::max(i + 1, entries.size() * 2));
    return entries[i];
  }
  bool parked(curl_socket_t s) const {
    const auto i = static_cast<std::size_t>(s);
    return s >= 0 && i < entries.size() && entries[i].parked;
  }
};

CurlSender::Loop::Loop() : sockets(std::make_unique<SocketTable>()) {}
CurlSender::Loop::~Loop() = default;

struct CurlSender::Transfer {
  HttpCall call;
  Done done;
  CurlEasy easy;
  CurlSlist headers;
  const SsrfGuard* guard = nullptr;
  SocketTable* sockets = nullptr;  // its loop's
  // Why the guard refused an address of the call's host (libcurl then tries the next one), and
  // whether any address got a socket: the call is blocked only when none did.
  std::string blocked_reason;
  bool opened_socket = false;
  std::optional<std::string> retry_after;
  std::string body_excerpt;
  // The final response's header ended with a 2xx status: the receiver took the call, whatever
  // becomes of its body (see on_body).
  bool answered_2xx = false;
  std::size_t body_bytes = 0;
  // The body ran past what is read of it (kMaxSuccessBodyBytes for a 2xx, kMaxErrorBodyBytes
  // for any other answer) and was not read to its end.
  bool body_cut = false;
  // Header lines of the call: interim (1xx) responses', the final one's and its trailers'.
  std::size_t header_lines = 0;
  std::size_t header_bytes = 0;
  bool header_cut = false;  // past kMaxHeaderLines or kMaxHeaderBytes: the call was ended there
  std::chrono::steady_clock::time_point started;
  std::size_t shard = 0;  // which multi handle runs it
};

namespace {

constexpr std::size_t kExcerptBytes = 256;
// A 2xx answer's body is not needed: past this much of it the transfer ends (a receiver that
// streams its body for ever would otherwise hold the call until its timeout, and the timeout
// would retry a call the receiver had taken).
constexpr std::size_t kMaxSuccessBodyBytes = 1 << 20;
// Any other answer's body is read up to this much (the attempt keeps kExcerptBytes of it), then
// the call ends and is judged by its status, with its Retry-After. A receiver streaming an error
// body for ever would otherwise turn a 404 or 410 into a timeout to retry, and lose a 503's
// Retry-After. One that trickles it slower, so that the call's timeout comes first, is a timeout.
constexpr std::size_t kMaxErrorBodyBytes = std::size_t{64} * 1024;
// The header lines of one call, all counted: interim (1xx) responses, the final response's
// header and the trailers after a chunked body. libcurl 7.88 keeps every header line of a call
// in the easy handle (about 64 bytes for a 5-byte "a:b"), and its own cap on a response's header
// does not cover trailers: a receiver sending trailer lines for ever took gigabytes until the
// call's timeout. Past either limit the call ends there, and is judged like a body cut short (a
// 2xx is a success; any other final status is the answer; before one, a receive error).
constexpr std::size_t kMaxHeaderLines = 300;
constexpr std::size_t kMaxHeaderBytes = std::size_t{64} * 1024;
// A finished handle keeps its call's header lines (libcurl frees them when the handle's next
// call starts) and its header buffer at the size of its longest line, so a handle whose call had
// more than this is freed instead of kept for reuse.
constexpr std::size_t kMaxRecycledHeaderLines = 100;
constexpr std::size_t kMaxRecycledHeaderBytes = std::size_t{16} * 1024;

// The result of a call whose final header said 2xx and whose body was not read to its end
// (`why`): the receiver took the call.
HttpResult answered_result(CurlSender::Transfer& t, const std::string& why) {
  long status = 0;
  curl_easy_getinfo(t.easy.get(), CURLINFO_RESPONSE_CODE, &status);
  HttpResult r;
  r.status = static_cast<int>(status);
  r.retry_after = t.retry_after;
  r.message =
      "answered " + std::to_string(status) + "; its body was not read to its end (" + why + ")";
  return r;
}

HttpResult shutting_down_result() {
  HttpResult r;
  r.error = TransportError::kOther;
  r.message = "worker shutting down";
  return r;
}

curl_socket_t open_socket(void* data, curlsocktype purpose, curl_sockaddr* address) {
  auto* t = static_cast<CurlSender::Transfer*>(data);
  if (purpose == CURLSOCKTYPE_IPCXN) {
    auto decision = t->guard->check(&address->addr);
    if (!decision.allowed) {
      t->blocked_reason = decision.reason;
      return CURL_SOCKET_BAD;
    }
  }
  curl_socket_t s = socket(address->family, address->socktype, address->protocol);
  if (s != CURL_SOCKET_BAD) {
    t->sockets->at(s) = {.owned = true};
    if (purpose == CURLSOCKTYPE_IPCXN) t->opened_socket = true;
  }
  return s;
}

// Every socket open_socket made is closed here (libcurl closes a socket it opened through
// CURLOPT_OPENSOCKETFUNCTION through CURLOPT_CLOSESOCKETFUNCTION), so its entry is forgotten
// before the descriptor can be reused. The kernel drops the epoll registration with the socket.
int close_socket(void* data, curl_socket_t s) {
  static_cast<CurlSender::SocketTable*>(data)->at(s) = {};
  return close(s);
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<CurlSender::Transfer*>(user);
  std::size_t bytes = size * n;
  if (t->body_excerpt.size() < kExcerptBytes) {
    t->body_excerpt.append(data, std::min(bytes, kExcerptBytes - t->body_excerpt.size()));
  }
  t->body_bytes += bytes;
  if (t->body_bytes > (t->answered_2xx ? kMaxSuccessBodyBytes : kMaxErrorBodyBytes)) {
    t->body_cut = true;
    return 0;  // ends the transfer (CURLE_WRITE_ERROR), judged by its status (see complete)
  }
  return bytes;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<CurlSender::Transfer*>(user);
  std::string_view line(data, size * n);
  // libcurl has already kept this line; past the limits no more are taken.
  t->header_bytes += line.size();
  if (++t->header_lines > kMaxHeaderLines || t->header_bytes > kMaxHeaderBytes) {
    t->header_cut = true;
    return 0;  // ends the transfer (CURLE_WRITE_ERROR), judged by its status (see complete)
  }
  if (line == "\r\n" || line == "\n") {  // the end of a response's header (not of trailers)
    long status = 0;
    curl_easy_getinfo(t->easy.get(), CURLINFO_RESPONSE_CODE, &status);
    t->answered_2xx = status >= 200 && status < 300;  // a 1xx header is followed by another
    return size * n;
  }
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size() && ascii_iequals(line.substr(0, kName.size()), kName)) {
    auto v = line.substr(kName.size());
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' '))
      v.remove_suffix(1);
    t->retry_after = std::string(v);
  }
  return size * n;
}

// libcurl has ~100 result codes; the ones that say something about the destination get their
// own class, everything else is kOther (retryable: the attempt budget bounds the cost).
TransportError transport_error(CURLcode code) {
  switch (code) {
    case CURLE_OK:
      return TransportError::kNone;
    case CURLE_COULDNT_CONNECT:
      return TransportError::kConnectFailed;
    case CURLE_OPERATION_TIMEDOUT:
      return TransportError::kTimeout;
    case CURLE_COULDNT_RESOLVE_HOST:
      return TransportError::kDnsFailed;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return TransportError::kTlsFailed;
    case CURLE_SSL_CONNECT_ERROR:  // "SSL_connect: Connection reset by peer", and the like
      return TransportError::kTlsHandshakeFailed;
    case CURLE_SSL_CERTPROBLEM:     // our client certificate
    case CURLE_SSL_CACERT_BADFILE:  // our CA bundle
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
      return TransportError::kTlsLocalFailed;
    case CURLE_SEND_ERROR:
      return TransportError::kSendFailed;
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
      return TransportError::kRecvFailed;
    default:
      return TransportError::kOther;
  }
}

// Each multi handle is driven by its socket interface: curl says which sockets to watch
// (on_socket) and when it next needs a timeout call (on_timer), and the loop's thread waits in
// epoll_wait for exactly those. Work per wake-up is proportional to the sockets that are ready,
// not to the transfers in flight.
//
// A loop's transfers are spread round-robin over its multi handles (kShards in all, divided
// among the loops, at least one each), each with its own connection cache. To find a reusable
// connection, libcurl (7.88) walks the host's connections in its cache, in use or not; with one
// handle and 256 connections to a busy receiver that walk cost about 8 µs of CPU per delivery
// (bench/worker: worker CPU 63 µs per delivery at per_host_max_in_flight 256, 55 at 96). Split
// kShards ways, each walk is that much shorter.
constexpr std::size_t kShards = 8;

// A parsed URL (CURLOPT_CURLU) is handed to every call to the same URL instead of the string:
// given a string, libcurl 7.88 parses it for each call and builds its normalized form again with
// its own printf, about a tenth of its instructions per call (callgrind). The loop keeps one per
// URL, up to kMaxParsedUrls; a URL beyond those, or one curl_url_set refuses, goes as a string,
// so curl judges it exactly as before.
struct CurlUrlFree {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
using ParsedUrl = std::unique_ptr<CURLU, CurlUrlFree>;
constexpr std::size_t kMaxParsedUrls = 4096;

CURLU* parsed_url(std::unordered_map<std::string, ParsedUrl>& urls, const std::string& url) {
  if (auto it = urls.find(url); it != urls.end()) return it->second.get();
  if (urls.size() >= kMaxParsedUrls) return nullptr;
  ParsedUrl u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return nullptr;
  return urls.emplace(url, std::move(u)).first->second.get();
}

// libcurl 7.88 adds "Expect: 100-continue" to a POST whose body is larger than 1 MiB (a
// 1,048,577-byte body gets it, 1,048,576 does not). Below that the empty "Expect:" that
// suppresses it changes nothing and is left out: one list entry fewer for curl to walk each time
// it looks for a header. Older versions get it on every call, as before.
std::size_t expect_threshold() {
  const curl_version_info_data* v = curl_version_info(CURLVERSION_NOW);
  return v && v->version_num >= 0x075800 ? std::size_t{1024} * 1024 : 0;
}

struct LoopState {
  CURLM* multi = nullptr;
  std::size_t shard = 0;
  int epoll_fd = -1;
  CurlSender::SocketTable* sockets = nullptr;  // shared by the loop's shards
  long timeout_ms = -1;                        // from on_timer: -1 none, 0 now, > 0 in that many ms
  std::chrono::steady_clock::time_point timer_set_at;
};

// An epoll registration names the shard and the socket; the wake-up eventfd has its own tag.
constexpr uint64_t kWakeTag = ~uint64_t{0};
uint64_t epoll_tag(std::size_t shard, curl_socket_t s) {
  return (uint64_t{shard} << 32) | static_cast<uint32_t>(s);
}

// Each change is one epoll_ctl at most: ADD the first time, MOD after, none when a kept
// connection's socket is asked for again as it is registered (SocketTable). For a socket curl
// did not open through open_socket, curl keeps `registered` (set with curl_multi_assign) for as
// long as it watches the socket, and its registration ends with curl's interest.
int on_socket(CURL*, curl_socket_t s, int what, void* user, void* registered) {
  auto* loop = static_cast<LoopState*>(user);
  auto& entry = loop->sockets->at(s);
  if (what == CURL_POLL_REMOVE) {
    if (entry.owned && entry.in_epoll && entry.events == EPOLLIN) {
      entry.parked = true;  // curl's connection cache keeps it: its next call wants it again
      return 0;
    }
    epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, s, nullptr);  // may already be closed: fine
    entry.in_epoll = false;
    entry.parked = false;
    return 0;
  }
  epoll_event ev{};
  ev.data.u64 = epoll_tag(loop->shard, s);
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) ev.events |= EPOLLIN;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) ev.events |= EPOLLOUT;
  entry.parked = false;
  const bool known = entry.owned ? entry.in_epoll : registered != nullptr;
  if (entry.owned && known && entry.events == ev.events && entry.tag == ev.data.u64) {
    curl_multi_assign(loop->multi, s, loop);
    return 0;
  }
  entry.in_epoll = true;
  entry.events = ev.events;
  entry.tag = ev.data.u64;
  if (known) {
    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, s, &ev) == 0 || errno != ENOENT) {
      curl_multi_assign(loop->multi, s, loop);
      return 0;
    }
  }
  // A socket number curl closed and reopened between two calls is new to epoll as well.
  if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST) {
    epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, s, &ev);
  }
  curl_multi_assign(loop->multi, s, loop);
  return 0;
}

int on_timer(CURLM*, long timeout_ms, void* user) {
  auto* loop = static_cast<LoopState*>(user);
  loop->timeout_ms = timeout_ms;
  loop->timer_set_at = std::chrono::steady_clock::now();
  return 0;
}

// Milliseconds until curl's timer on this handle is due (0: due now), or -1 when none is set.
long remaining_ms(const LoopState& loop) {
  if (loop.timeout_ms < 0) return -1;
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - loop.timer_set_at)
                     .count();
  return std::max<long>(loop.timeout_ms - elapsed, 0);
}

// How long epoll_wait may sleep: until the first of the handles' timers is due, and at most a
// second.
int wait_ms(const std::vector<LoopState>& loops) {
  long ms = 1000;
  for (const LoopState& loop : loops) {
    if (long r = remaining_ms(loop); r >= 0) ms = std::min(ms, r);
  }
  return static_cast<int>(ms);
}

// The options every call shares, set once when an easy handle is made. A finished handle goes
// back to the idle list as it is, so a reused one keeps them (curl_easy_reset and setting them
// again for each delivery showed in profiles); what differs per call is set when it starts.
void set_fixed_options(CURL* e, const std::string& user_agent, CurlSender::SocketTable& sockets) {
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700  // 7.87.0
  // A call ended while its name is still being resolved (its timeout, a stop) leaves the
  // resolver's thread behind to finish on its own. Without this, libcurl waits for the thread
  // (pthread_join) until getaddrinfo gives up, which for a DNS server that never answers is
  // glibc's timeout (5 s a try, several tries): the loop's thread, and every call on it, stopped.
  curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
#endif
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, user_agent.c_str());
  // No proxy, whatever http_proxy/https_proxy/all_proxy say: through a proxy the SSRF guard
  // would judge the proxy's address, not the destination's.
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  // No host is reached through one either: libcurl then skips reading no_proxy/NO_PROXY from the
  // environment on every call.
  curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, &open_socket);
  // A connection closes its socket through the callback of the handle that opened it, so each
  // loop's handles name that loop's table, which outlives the multi handles' connection caches.
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, &close_socket);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, &sockets);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &on_header);
}

}  // namespace

CurlSender::CurlSender(SsrfGuard guard, int threads, std::string user_agent)
    : guard_(std::move(guard)), user_agent_(std::move(user_agent)) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const std::size_t loops = static_cast<std::size_t>(std::max(1, threads));
  // kShards multi handles in all, at least one per loop: each loop's connections are its own.
  const std::size_t shards = std::max<std::size_t>(1, kShards / loops);
  for (std::size_t i = 0; i < loops; ++i) {
    auto loop = std::make_unique<Loop>();
    for (std::size_t s = 0; s < shards; ++s) {
      CurlMulti m(curl_multi_init());
      curl_multi_setopt(m.get(), CURLMOPT_MAXCONNECTS, 1024L);
      loop->multis.push_back(std::move(m));
    }
    loop->epoll_fd.reset(epoll_create1(EPOLL_CLOEXEC));
    int epoll_errno = errno;
    loop->wake_fd.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!loop->epoll_fd.valid() || !loop->wake_fd.valid()) {
      int err = loop->epoll_fd.valid() ? errno : epoll_errno;
      throw std::runtime_error(std::string("cannot create the HTTP sender's epoll or eventfd: ") +
                               std::strerror(err));
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeTag;
    epoll_ctl(loop->epoll_fd.get(), EPOLL_CTL_ADD, loop->wake_fd.get(), &ev);
    loops_.push_back(std::move(loop));
  }
  // Started once every loop exists: a failure above leaves no thread behind.
  for (auto& loop : loops_) {
    Loop* l = loop.get();
    l->thread = start_guarded_thread("http_sender", [this, l] { run(*l); });
  }
}

CurlSender::~CurlSender() {
  running_ = false;
  for (auto& loop : loops_) wake(*loop);
  for (auto& loop : loops_) {
    if (loop->thread.joinable()) loop->thread.join();
  }
  // The multi handles and descriptors are closed by their owners, after the threads are gone.
}

void CurlSender::wake(Loop& loop) {
  uint64_t one = 1;
  (void)!write(loop.wake_fd.get(), &one, sizeof one);
}

int CurlSender::in_flight() const {
  int n = 0;
  for (const auto& loop : loops_) n += loop->in_flight.load();
  return n;
}

int CurlSender::in_flight(int thread) const {
  return loops_.at(static_cast<std::size_t>(thread))->in_flight.load();
}

void CurlSender::send(HttpCall call, Done done) {
  Loop& loop = *loops_[next_loop_.fetch_add(1, std::memory_order_relaxed) % loops_.size()];
  auto t = std::make_unique<Transfer>();
  t->call = std::move(call);
  t->done = std::move(done);
  loop.in_flight.fetch_add(1);
  bool first;
  {
    std::lock_guard lock(loop.mu);
    first = loop.inbox.empty();
    loop.inbox.push_back(std::move(t));
  }
  // The loop empties its inbox on every wake-up, so only the first of a burst wakes it.
  if (first) wake(loop);
}

void CurlSender::run(Loop& self) {
  std::vector<LoopState> loops(self.multis.size());  // never resized: curl holds pointers into it
  for (std::size_t i = 0; i < loops.size(); ++i) {
    LoopState& loop = loops[i];
    loop.multi = self.multis[i].get();
    loop.shard = i;
    loop.epoll_fd = self.epoll_fd.get();
    loop.sockets = self.sockets.get();
    curl_multi_setopt(loop.multi, CURLMOPT_SOCKETFUNCTION, &on_socket);
    curl_multi_setopt(loop.multi, CURLMOPT_SOCKETDATA, &loop);
    curl_multi_setopt(loop.multi, CURLMOPT_TIMERFUNCTION, &on_timer);
    curl_multi_setopt(loop.multi, CURLMOPT_TIMERDATA, &loop);
  }
  std::size_t next_shard = 0;
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  // Before the transfers and idle handles, which may point into it: destroyed after them.
  std::unordered_map<std::string, ParsedUrl> urls;
  const std::size_t expect_above = expect_threshold();
  std::vector<std::unique_ptr<Transfer>> fresh;
  // Added to a multi handle, not yet finished: owned here (curl's CURLOPT_PRIVATE carries the
  // key back), so a transfer can only be freed by taking it out.
  std::unordered_map<Transfer*, std::unique_ptr<Transfer>> active;
  // Finished easy handles, reset and ready: creating one per delivery showed up in profiles.
  std::vector<CurlEasy> idle;
  constexpr std::size_t kMaxIdle = 1024;
  std::string header_line;  // "Name: value" of the header being added, its buffer reused
  auto finish = [&self](std::unique_ptr<Transfer> t, HttpResult r) {
    r.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - t->started)
                        .count();
    self.in_flight.fetch_sub(1);
    t->done(std::move(r));
  };
  // A finished transfer: its result goes to the caller, its easy handle back to `idle`.
  auto complete = [&](CURLM* multi, CURLMsg* msg) {
    char* priv = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
    auto node = active.extract(reinterpret_cast<Transfer*>(priv));
    curl_multi_remove_handle(multi, msg->easy_handle);
    if (node.empty()) {
      // curl reports each transfer done once; anything else is a broken invariant.
      spdlog::critical("msg=curl_done_for_unknown_transfer");
      std::abort();
    }
    std::unique_ptr<Transfer> t = std::move(node.mapped());
    // Not curl_easy_reset: the handle keeps its fixed options; the next call sets the rest.
    // One whose call had a large header is freed with its transfer instead (it would keep it).
    auto recycle = [&idle](Transfer& done) {
      if (idle.size() >= kMaxIdle || done.header_lines > kMaxRecycledHeaderLines ||
          done.header_bytes > kMaxRecycledHeaderBytes)
        return;
      idle.push_back(std::move(done.easy));
    };
    HttpResult r;
    CURLcode code = msg->data.result;
    // A refused address followed by one that connected is the connected one's result: the
    // call may have been sent and answered.
    if (!t->blocked_reason.empty() && !t->opened_socket) {
      r.error = TransportError::kBlockedBySsrfGuard;
      r.message = "destination address refused by the SSRF guard (" + t->blocked_reason + ")";
    } else if (code != CURLE_OK && t->answered_2xx) {
      // Taken: the body or its trailers broke off, timed out or ran past what is read of them
      // after a 2xx header.
      r = answered_result(*t, t->header_cut ? "trailers past the sender's limit"
                              : t->body_cut ? "longer than 1 MiB"
                                            : curl_easy_strerror(code));
    } else if (code != CURLE_OK && (t->header_cut || t->body_cut)) {
      // Ended here, past what is read of a response: judged by its status line. A header cut
      // short before its end is judged by its status too (a 2xx one was taken), with the
      // Retry-After if it came before the cut; before any final status line, a receive error.
      long status = 0;
      curl_easy_getinfo(t->easy.get(), CURLINFO_RESPONSE_CODE, &status);
      const std::string why = t->body_cut ? "its body was longer than 64 KiB"
                                          : "its header lines went past the sender's limit";
      if (status >= 200) {
        r.status = static_cast<int>(status);
        r.retry_after = t->retry_after;
        r.message = t->body_excerpt.empty() ? "answered " + std::to_string(status) + "; " + why
                                            : t->body_excerpt + " [" + why + "]";
      } else {
        r.error = TransportError::kRecvFailed;
        r.message = "response refused: " + why;
      }
    } else {
      r.error = transport_error(code);
      if (r.error == TransportError::kNone) {
        long status = 0;
        curl_easy_getinfo(t->easy.get(), CURLINFO_RESPONSE_CODE, &status);
        r.status = static_cast<int>(status);
        r.retry_after = t->retry_after;
        if (status < 200 || status >= 300) r.message = t->body_excerpt;
      } else {
        r.message = curl_easy_strerror(code);
      }
    }
    recycle(*t);
    finish(std::move(t), std::move(r));
  };
  while (true) {
    {
      std::lock_guard lock(self.mu);
      while (!self.inbox.empty()) {
        fresh.push_back(std::move(self.inbox.front()));
        self.inbox.pop_front();
      }
    }
    bool stopping = !running_.load();
    for (auto& t : fresh) {
      t->started = std::chrono::steady_clock::now();
      if (stopping) {
        finish(std::move(t), shutting_down_result());
        continue;
      }
      t->guard = &guard_;
      t->sockets = self.sockets.get();
      if (!idle.empty()) {
        t->easy = std::move(idle.back());
        idle.pop_back();
      } else {
        t->easy.reset(curl_easy_init());
        set_fixed_options(t->easy.get(), user_agent_, *self.sockets);
      }
      CURL* e = t->easy.get();
      const auto& c = t->call;
      if (CURLU* u = parsed_url(urls, c.url)) {
        curl_easy_setopt(e, CURLOPT_CURLU, u);
      } else {
        curl_easy_setopt(e, CURLOPT_CURLU, nullptr);
        curl_easy_setopt(e, CURLOPT_URL, c.url.c_str());
      }
      curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(c.timeout_ms));
      curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(c.connect_timeout_ms));
      curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t.get());
      curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
      curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
      curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
      // The method from a plain GET without a body: a reused handle still carries its last
      // call's (POSTFIELDS makes it a POST, so HTTPGET comes after; HTTPGET also clears NOBODY).
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, nullptr);
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, nullptr);
      if (c.method == "HEAD") {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
      } else if (c.method != "GET") {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c.method.c_str());
      }
      if (c.body && !c.body->empty() && c.method != "GET" && c.method != "HEAD") {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c.body->data());
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(c.body->size()));
      } else if (c.method == "POST" || c.method == "PUT" || c.method == "PATCH") {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));
      }
      // No 100-continue round trip.
      if (c.body && c.body->size() > expect_above) curl_slist_add(t->headers, "Expect:");
      bool content_type = false;
      for (const auto& [k, v] : c.headers) {
        // libcurl sends no "Name:" with an empty value (and drops its own header of that name);
        // "Name;" is how it is told to send the header empty.
        if (v.empty()) {
          header_line.assign(k).append(";");
        } else {
          header_line.assign(k).append(": ").append(v);
        }
        curl_slist_add(t->headers, header_line.c_str());
        content_type = content_type || ascii_iequals(k, "content-type");
      }
      // A body goes out with the Content-Type the request has, or with none: without this,
      // libcurl labels a POSTFIELDS body application/x-www-form-urlencoded.
      if (!content_type) curl_slist_add(t->headers, "Content-Type:");
      curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers.get());
      t->shard = next_shard++ % loops.size();
      if (CURLMcode added = curl_multi_add_handle(loops[t->shard].multi, e); added != CURLM_OK) {
        // Never started (out of memory, in practice): answered now, or it would wait for good,
        // holding its host's slot and its key's order.
        HttpResult r;
        r.error = TransportError::kOther;
        r.message = std::string("the call could not start: ") + curl_multi_strerror(added);
        finish(std::move(t), std::move(r));
        continue;
      }
      Transfer* key = t.get();
      active.emplace(key, std::move(t));
    }
    fresh.clear();

    for (LoopState& loop : loops) {
      int queued = 0;
      while (CURLMsg* msg = curl_multi_info_read(loop.multi, &queued)) {
        if (msg->msg == CURLMSG_DONE) complete(loop.multi, msg);
      }
    }
    if (stopping) {
      // The owner already waited as long as it wanted to; what is left is abandoned (its
      // message's offset is not stored, so it is replayed later).
      for (auto& [key, t] : active) {
        curl_multi_remove_handle(loops[t->shard].multi, t->easy.get());
        // A call answered 2xx whose body is still coming was taken all the same.
        HttpResult r =
            t->answered_2xx ? answered_result(*t, "worker shutting down") : shutting_down_result();
        finish(std::move(t), std::move(r));
      }
      active.clear();
      std::lock_guard lock(self.mu);
      if (self.inbox.empty()) {
        idle.clear();
        break;
      }
      continue;
    }
    int n = epoll_wait(self.epoll_fd.get(), events, kMaxEvents, wait_ms(loops));
    int running = 0;
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) {
        uint64_t count = 0;
        (void)!read(self.wake_fd.get(), &count, sizeof count);
        continue;
      }
      const auto s = static_cast<curl_socket_t>(tag & 0xffffffffu);
      if (self.sockets->parked(s)) {
        // A kept connection's socket turned readable (closed by the receiver, or bytes nobody
        // asked for): out of the set, so it cannot wake the loop again.
        epoll_ctl(self.epoll_fd.get(), EPOLL_CTL_DEL, s, nullptr);
        self.sockets->at(s) = {.owned = true};
        continue;
      }
      int flags = 0;
      if (events[i].events & EPOLLIN) flags |= CURL_CSELECT_IN;
      if (events[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
      if (events[i].events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
      curl_multi_socket_action(loops[tag >> 32].multi, s, flags, &running);
    }
    for (LoopState& loop : loops) {
      if (remaining_ms(loop) != 0) continue;
      loop.timeout_ms = -1;  // curl sets it again from inside the call if it still needs one
      curl_multi_socket_action(loop.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
  }
}

}  // namespace hookrelay
