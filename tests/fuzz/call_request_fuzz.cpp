// parse_call_request (POST /v1/calls bodies) and parse_call_envelope (the hr-call header the
// worker reads) on the same bytes. Whatever either accepts must survive the trip through
// call_envelope() and parse_call_envelope() with every field intact (the body is not part of
// the envelope: it travels as the Kafka message value).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "shared/call_request.h"

using namespace hookrelay;

namespace {

std::string describe(const CallRequest& c) {
  std::string s = c.method + " " + c.url + " key=" + c.idempotency_key +
                  " timeout=" + std::to_string(c.timeout_ms) +
                  " attempts=" + std::to_string(c.max_attempts) +
                  " age=" + std::to_string(c.max_age_seconds);
  for (const auto& [k, v] : c.headers) s += " [" + k + ": " + v + "]";
  return s;
}

void check_round_trip(const CallRequest& call, const char* what) {
  std::string envelope = call_envelope(call);
  fuzz::check(nlohmann::json::accept(envelope), "call_envelope is not JSON", envelope);
  auto back = parse_call_envelope(envelope);
  if (!back) fuzz::fuzz_fail(what, "envelope refused: " + back.error().message + " in " + envelope);
  bool same = back->url == call.url && back->method == call.method &&
              back->headers == call.headers && back->idempotency_key == call.idempotency_key &&
              back->timeout_ms == call.timeout_ms && back->max_attempts == call.max_attempts &&
              back->max_age_seconds == call.max_age_seconds;
  if (!same) fuzz::fuzz_fail(what, describe(call) + "  became  " + describe(*back));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  static const CallLimits limits;

  if (auto call = parse_call_request(input, limits)) {
    fuzz::check(call->url.rfind("http://", 0) == 0 || call->url.rfind("https://", 0) == 0,
                "accepted a URL that is not http(s)", call->url);
    for (const auto& [k, v] : call->headers) {
      fuzz::check(valid_header_name(k) && valid_header_value(v), "accepted an invalid header",
                  k + ": " + v);
    }
    fuzz::check(call->timeout_ms > 0 && call->timeout_ms <= limits.max_timeout_ms,
                "timeout_ms out of limits");
    fuzz::check(call->max_attempts > 0 && call->max_attempts <= limits.max_max_attempts,
                "max_attempts out of limits");
    fuzz::check(call->max_age_seconds > 0 && call->max_age_seconds <= limits.max_max_age_seconds,
                "max_age_seconds out of limits");
    std::string id = call_id_for(call->idempotency_key);
    fuzz::check(id.size() == 29 && id.rfind("call_", 0) == 0, "call id is not call_<24 hex>", id);
    check_round_trip(*call, "parse_call_request -> envelope round trip");
  } else {
    const auto& code = call.error().code;
    fuzz::check(code == "malformed_json" || code == "invalid_request", "unexpected error code",
                code);
  }

  if (auto env = parse_call_envelope(input)) {
    check_round_trip(*env, "parse_call_envelope -> envelope round trip");
  }
  return 0;
}
