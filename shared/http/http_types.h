// The HTTP request/response shapes that handlers see, independent of the server library, so
// handlers are plain functions testable without sockets.
//
// Thread-safety: HttpRequest views memory owned by the connection; it stays valid until the
// Responder is called. A Responder may be called once, from any thread.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hookrelay {

// Case-insensitive header lookup; nullopt when absent.
using HeaderLookup = std::function<std::optional<std::string_view>(std::string_view name)>;

struct HttpRequest {
  std::string_view method;
  std::string_view target;  // path and query as received
  std::string_view body;
  HeaderLookup header;
  // Every header as received (name, value), for forwarding.
  std::function<void(const std::function<void(std::string_view, std::string_view)>&)>
      for_each_header;
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the connection after this response
};

using Responder = std::function<void(HttpResponse)>;
using HttpHandler = std::function<void(const HttpRequest&, Responder)>;

// {"error":{"code":...,"message":...}} with the given status.
HttpResponse json_error(int status, std::string_view code, std::string_view message);

}  // namespace hookrelay
