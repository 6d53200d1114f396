// http_client: blocking HTTP/1.1 requests for tests (probes, /metrics, posting to ingest), on
// libcurl. Only loopback URLs are accepted: tests never connect anywhere else.
//
// Thread-safety: every function may be called from any thread (one easy handle per call).
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "shared/result.h"

namespace hookrelay::test {

struct HttpReply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

// Fails (retryable) when nothing answered: connection refused, timeout, ...
Result<HttpReply> http_request(const std::string& method, const std::string& url,
                               const std::string& body = {},
                               const std::vector<std::pair<std::string, std::string>>& headers = {},
                               std::chrono::milliseconds timeout = std::chrono::seconds(10));

inline Result<HttpReply> http_get(const std::string& url,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  return http_request("GET", url, {}, {}, timeout);
}

// Polls GET url until it answers `status` or timeout passes.
bool wait_for_status(const std::string& url, int status, std::chrono::milliseconds timeout);

// The sum of every sample of `name` in a Prometheus text exposition whose label set contains
// each of `labels` (name="value" pairs, as written); 0 when there is none.
double metric_sum(const std::string& exposition, const std::string& name,
                  const std::vector<std::string>& labels = {});

}  // namespace hookrelay::test
