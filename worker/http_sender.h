// HttpSender: the worker's I/O boundary for outbound HTTP. The real adapter is CurlSender
// (libcurl multi); unit tests use a fake.
//
// Contract: `done` is called exactly once per send(), on the sender's own thread; it must not
// block. No redirects are followed; only http and https are spoken.
//
// Thread-safety: send() from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "worker/delivery_outcome.h"

namespace hookrelay {

struct HttpCall {
  std::string url;
  std::string method = "POST";
  std::vector<std::pair<std::string, std::string>> headers;
  std::shared_ptr<const std::string> body;
  int timeout_ms = 10000;
  int connect_timeout_ms = 5000;
};

struct HttpResult {
  TransportError error = TransportError::kNone;
  int status = 0;                          // HTTP status when error == kNone
  std::optional<std::string> retry_after;  // Retry-After header, verbatim
  int64_t duration_ms = 0;
  std::string message;  // transport error text, or a short body excerpt on non-2xx
};

class HttpSender {
 public:
  using Done = std::function<void(HttpResult)>;
  virtual ~HttpSender() = default;
  virtual void send(HttpCall call, Done done) = 0;
};

}  // namespace hookrelay
