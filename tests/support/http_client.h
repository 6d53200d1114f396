// Blocking HTTP client for tests (libcurl easy). Tests talk to 127.0.0.1 only.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace hookrelay::test {

struct HttpReply {
  long status = 0;  // 0: no answer (connection refused, reset, timeout)
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string error;                            // curl's message when status == 0
};

HttpReply http_request(const std::string& method, const std::string& url,
                       const std::vector<std::pair<std::string, std::string>>& headers = {},
                       const std::string& body = {}, long timeout_ms = 15000);

inline HttpReply http_get(const std::string& url) { return http_request("GET", url); }

}  // namespace hookrelay::test
