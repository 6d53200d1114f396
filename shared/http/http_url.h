// HttpUrl: an http(s) URL as libcurl's own URL parser (curl_url) reads it, so the host that
// per-destination limits and the circuit breaker key on is the host the transfer connects to.
//
// parse_http_url is strict where curl is lenient: it refuses what a person did not mean as an
// absolute http(s) URL (one or three slashes after the scheme, an empty host, credentials,
// spaces or control bytes, NUL included) instead of letting curl guess.
//
// Thread-safety: plain functions and values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shared/result.h"

namespace hookrelay {

struct HttpUrl {
  std::string scheme;  // "http" | "https"
  std::string host;    // lower case, without a trailing dot; an IPv6 literal keeps its brackets
  uint16_t port = 0;   // the explicit port, else 80 / 443
  std::string url;     // the whole URL as curl normalises it
  // "host:port": one destination for limits and the breaker, whatever spelling reached it.
  std::string host_key() const { return host + ":" + std::to_string(port); }
};

// Error code "invalid_url"; the message says what is wrong (no field name, no quoting of the
// whole URL).
Result<HttpUrl> parse_http_url(std::string_view text);

}  // namespace hookrelay
