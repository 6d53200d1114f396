// http_post: one blocking HTTP POST with libcurl, for `hookrelay send`. http and https only, no
// redirects followed (a test sender should see exactly what ingest answered), bounded by a
// total timeout.
//
// Thread-safety: safe from any thread once libcurl's global init has run (curl_easy_init does
// it on first use, which is fine in the single-threaded CLI).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "shared/result.h"

namespace hookrelay::cli {

struct HttpReply {
  int status = 0;
  std::string body;
};

// Error "http" (retryable) when no response arrived: connect failure, timeout, bad URL.
Result<HttpReply> http_post(const std::string& url,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            const std::string& body, int timeout_ms);

}  // namespace hookrelay::cli
