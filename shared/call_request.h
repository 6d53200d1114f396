// CallRequest: an outbound call an internal service asks hookrelay to make, its strict
// validation at ingest, and the envelope that carries it through Kafka to the worker.
//
// The call's body travels as the Kafka message value, byte for byte; everything else rides in
// the `hr-call` header as a compact JSON envelope.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/result.h"

namespace hookrelay {

struct CallRequest {
  std::string url;
  std::string method = "POST";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;             // bytes to send (decoded from body_base64 when given)
  std::string idempotency_key;  // caller's, or generated
  bool key_generated = false;   // the request had no idempotency_key: this one was made up
  int timeout_ms = 10000;
  int max_attempts = 8;
  int max_age_seconds = 86400;
};

struct CallLimits {
  int default_timeout_ms = 10000;
  int default_max_attempts = 8;
  int default_max_age_seconds = 86400;
  int max_timeout_ms = 120000;
  int max_max_attempts = 100;
  int max_max_age_seconds = 7 * 86400;
  std::size_t max_headers = 64;
};

// Parses the JSON body of POST /v1/calls. Error codes: "malformed_json", "invalid_request";
// the message names the field ("url: only http and https are allowed").
//
// A call's headers are sent as given (names as spelt, User-Agent and webhook-* included: hookrelay
// sets neither on a call), so what the worker would not send is refused here, naming the header:
// the ones that frame the request or belong to one connection (Host, Content-Length,
// Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer, Expect, every Proxy-*), and
// the ones hookrelay sets on a call (Idempotency-Key, from idempotency_key; X-Hookrelay-Attempt).
// Other X-Hookrelay-* names are a caller's own and sent. At most one Content-Type: two names
// differing only in case are refused. A GET or HEAD call has no body. idempotency_key is 1-255
// bytes, no control character, and does not begin or end with a space or tab.
Result<CallRequest> parse_call_request(std::string_view json, const CallLimits& limits);

// Stable id for a call: "call_" + 24 hex of SHA-256(idempotency key).
std::string call_id_for(std::string_view idempotency_key);

// Envelope (everything but the body) for the hr-call header, and its inverse for the worker. The
// inverse holds what reaches the wire (method, idempotency key, headers) to what
// parse_call_request accepts, a header hookrelay or the HTTP client sets (Host, Content-Length,
// ...) included, and to ingest's limit on their number (CallLimits::max_headers): a message written
// to the topic some other way is refused ("bad_envelope"). Headers ingest refuses now but accepted
// before are not refused here, so a message an older ingest accepted is still delivered: the
// worker drops Proxy-* and X-Hookrelay-Attempt (build_http_call) and sends the rest as before.
std::string call_envelope(const CallRequest& call);
Result<CallRequest> parse_call_envelope(std::string_view json);

// GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS: the methods a call may use.
bool known_call_method(const std::string& method);
// Header name/value checks shared with the worker's outbound requests.
bool valid_header_name(std::string_view name);
bool valid_header_value(std::string_view value);

}  // namespace hookrelay
