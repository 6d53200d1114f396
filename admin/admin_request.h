// What the admin API reads from its callers, parsed without I/O: query strings, path segments,
// RFC 3339 times, page cursors and replay requests. Every error is Error{code, message} with the
// message naming the parameter or field ("limit: must be 1..500"); the service answers it 400.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/result.h"
#include "shared/store/delivery_queries.h"

namespace hookrelay::admin {

// Percent-decoding of a path segment or query component ('+' is a space in queries only).
// "bad_parameter" for a malformed escape.
Result<std::string> percent_decode(std::string_view text, bool plus_is_space);

// "a=1&b=2" into a map; a name given twice, a malformed escape, or a name not in `allowed` is an
// Error ("unknown_parameter" names it and lists the allowed ones).
Result<std::map<std::string, std::string>> parse_query(std::string_view query,
                                                       const std::vector<std::string>& allowed);

// RFC 3339 date-time ("2026-11-26T20:00:00Z", "...T20:00:00.123+01:00") to Unix milliseconds.
// `field` names it in the error ("bad_parameter"), as it does for a date that does not exist
// (2025-02-29) and an instant before 1970-01-01T00:00:00Z. A query's or filter's `until` must be
// after that instant too: the filters take 0 as no bound.
Result<int64_t> parse_rfc3339_ms(std::string_view text, const std::string& field);
// Unix milliseconds as RFC 3339 in UTC with milliseconds.
std::string format_rfc3339_ms(int64_t ms);

// The opaque page cursor of GET /v1/deliveries: base64url (no padding) of "1|<microseconds>|<key>".
std::string encode_cursor(const DeliveryPagePosition& position);
// "bad_cursor" unless `text` is exactly what encode_cursor makes.
Result<DeliveryPagePosition> decode_cursor(std::string_view text);

// GET /v1/deliveries query parameters into a filter.
Result<DeliveryPageFilter> parse_delivery_query(std::string_view query);

// POST /v1/replays body (docs/openapi.yaml, ReplayRequest).
struct ReplayFilter {
  std::string route;     // empty = any
  std::string state;     // "dead" | "succeeded"
  int64_t since_ms = 0;  // 0 = no bound (the same as a bound at the epoch)
  int64_t until_ms = 0;  // 0 = no bound; a given until is after the epoch (parse_replay_request)
};

struct ReplayRequest {
  std::vector<std::string> keys;       // either keys ...
  std::optional<ReplayFilter> filter;  // ... or a filter
  // Keys only: resend those succeeded when the replay is requested. Without it such a key is
  // stored skipped, so a retried POST of keys the first one delivered sends nothing again.
  bool resend_succeeded = false;
  bool dry_run = false;
  double rate = 0;  // keys per second; 0 = as fast as acks come back, else kMinReplayRate..
  std::string reason;
};

inline constexpr std::size_t kMaxReplayKeysInRequest = 10000;
inline constexpr std::size_t kMaxKeyBytes = 1024;
// A paced replay's bounds, in keys per second: slower than one key every 10 s is refused (a
// replay paced by the day is a mistake, not a plan).
inline constexpr double kMinReplayRate = 0.1;
inline constexpr double kMaxReplayRate = 10000;

// "bad_json" when the body is not JSON; "bad_request" naming the field otherwise.
Result<ReplayRequest> parse_replay_request(std::string_view body);

// The Idempotency-Key header of POST /v1/replays: 1-255 printable ASCII characters (0x20-0x7E).
// Absent: an empty key (none). "bad_idempotency_key" naming the rule otherwise.
inline constexpr std::size_t kMaxIdempotencyKeyBytes = 255;
Result<std::string> parse_idempotency_key(std::optional<std::string_view> header);

// POST /v1/routes/{name}/suspend (?source=&reason=) and /resume (?source=&rate=) query strings.
struct RouteControlQuery {
  std::string source;  // empty = the one source with a route of that name
  std::string reason;  // suspend only
  double rate = 0;     // resume only: released deliveries per second; 0 = as fast as acks come back
};
inline constexpr std::size_t kMaxReasonBytes = 500;
inline constexpr double kMaxReleaseRate = 10000;
Result<RouteControlQuery> parse_route_control_query(std::string_view query, bool suspend);

}  // namespace hookrelay::admin
