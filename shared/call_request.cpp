#include "shared/call_request.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <vector>

#include "shared/ascii.h"
#include "shared/http/http_url.h"
#include "shared/json_writer.h"
#include "shared/signing/crypto.h"

namespace hookrelay {
namespace {

using json = nlohmann::json;

Unexpected invalid(const std::string& field, const std::string& what) {
  return fail("invalid_request", field + ": " + what);
}

// The URL as curl normalises it, so the worker calls exactly what was validated here.
Result<std::string> check_url(const std::string& url) {
  auto parsed = parse_http_url(url);
  if (!parsed) return invalid("url", parsed.error().message);
  // The worker checks the normalised URL again: what it would refuse (a URL at the length limit
  // that normalising lengthens) is refused here, not dead-lettered after a 202.
  if (auto again = parse_http_url(parsed->url); !again)
    return invalid("url", "once normalised: " + again.error().message);
  return std::move(parsed->url);
}

// What a worker accepts in an hr-call envelope: wider than what ingest lets a caller ask for, so a
// limit lowered later does not strand messages already in Kafka.
constexpr int kEnvelopeMaxTimeoutMs = 3600 * 1000;
constexpr int kEnvelopeMaxAttempts = 1000;
constexpr int kEnvelopeMaxAgeSeconds = 366 * 86400;

// A whole number in [lo, hi]. The parser keeps a non-negative number unsigned (up to 2^64-1) and
// a negative one signed: each is compared as it is, never cast first, and a refusal quotes the
// number as it was sent (18446744073709551615 is not "-1").
int bounded_int(const json& j, const char* field, int lo, int hi) {
  if (!j.is_number_integer())
    throw std::invalid_argument(std::string(field) + ": must be an integer");
  const bool in_range =
      j.is_number_unsigned()
          ? hi >= 0 && j.get<json::number_unsigned_t>() <= static_cast<std::uint64_t>(hi) &&
                (lo <= 0 || j.get<json::number_unsigned_t>() >= static_cast<std::uint64_t>(lo))
          : j.get<json::number_integer_t>() >= lo && j.get<json::number_integer_t>() <= hi;
  if (!in_range) {
    throw std::invalid_argument(std::string(field) + ": must be between " + std::to_string(lo) +
                                " and " + std::to_string(hi) + ", got " + j.dump());
  }
  return j.is_number_unsigned() ? static_cast<int>(j.get<json::number_unsigned_t>())
                                : static_cast<int>(j.get<json::number_integer_t>());
}

// The request body as json::parse builds it (the same non-recursive parser, the same values),
// except that a key given twice in one object is noticed instead of the last silently replacing
// the first, and that containers deeper than the request reads are kept empty (kBuiltDepth). The
// first one in the request object or in its "headers" object (where the request is read) is kept to
// be named; one deeper down is in a value the request refuses anyway. Duplicates cost no memory: a
// key is looked up in the object being built as it is inserted.
class RequestJson {
 public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  explicit RequestJson(json& root) : root_(root) {}

  bool null() { return value(nullptr); }
  bool boolean(bool v) { return value(v); }
  bool number_integer(number_integer_t v) { return value(v); }
  bool number_unsigned(number_unsigned_t v) { return value(v); }
  bool number_float(number_float_t v, const string_t& /*text*/) { return value(v); }
  bool string(string_t& v) { return value(v); }
  bool binary(binary_t& /*v*/) { return false; }  // never in JSON text
  bool start_object(std::size_t /*size*/) { return open(json::value_t::object); }
  bool key(string_t& k) {
    if (skipping_ > 0) return true;
    auto& members = open_.back()->get_ref<json::object_t&>();
    auto [it, fresh] = members.try_emplace(k);
    if (!fresh && !duplicate_) {
      if (open_.size() == 1) {
        duplicate_ = k;
      } else if (open_.size() == 2 && top_key_ != nullptr && *top_key_ == "headers") {
        duplicate_ = "headers." + k;
      }
    }
    if (open_.size() == 1) top_key_ = &it->first;
    member_ = &it->second;
    return true;
  }
  bool end_object() { return close(); }
  bool start_array(std::size_t /*size*/) { return open(json::value_t::array); }
  bool end_array() { return close(); }
  template <class Exception>
  bool parse_error(std::size_t /*position*/, const std::string& /*token*/,
                   const Exception& /*error*/) {
    errored_ = true;
    return false;
  }

  bool errored() const { return errored_; }
  // The first key given twice, as a field name ("url", "headers.X-Trace").
  const std::optional<std::string>& duplicate() const { return duplicate_; }

 private:
  // The request is read two levels deep: its object, and the objects and arrays that are its
  // members' values (the headers). A container one level further down is kept empty, which is
  // all its parent's check needs (a header value must be a string), and what it holds is only
  // walked through: built, a body of 900 KB of '[' held about 60 MB.
  static constexpr std::size_t kBuiltDepth = 2;

  bool open(json::value_t kind) {
    if (skipping_ > 0) {
      ++skipping_;
      return true;
    }
    json* container = place(kind);
    if (open_.size() >= kBuiltDepth) {
      skipping_ = 1;
    } else {
      open_.push_back(container);
    }
    return true;
  }
  bool close() {
    if (skipping_ > 0) {
      --skipping_;
    } else {
      open_.pop_back();
    }
    return true;
  }
  template <class V>
  bool value(V&& v) {
    if (skipping_ == 0) place(std::forward<V>(v));
    return true;
  }
  // Where a value goes: the root, the end of the open array, or the member whose key came last.
  // A pointer into its container stays valid while it is open: nothing is added to the container
  // until it is closed.
  template <class V>
  json* place(V&& v) {
    if (open_.empty()) {
      root_ = json(std::forward<V>(v));
      return &root_;
    }
    if (open_.back()->is_array()) {
      auto& elements = open_.back()->get_ref<json::array_t&>();
      elements.emplace_back(std::forward<V>(v));
      return &elements.back();
    }
    *member_ = json(std::forward<V>(v));
    return member_;
  }

  json& root_;
  std::vector<json*> open_;               // the objects and arrays open, outermost first
  json* member_ = nullptr;                // the member whose key came last
  const std::string* top_key_ = nullptr;  // the request object's last key (in the object itself)
  std::size_t skipping_ = 0;              // containers open below kBuiltDepth (not built)
  std::optional<std::string> duplicate_;
  bool errored_ = false;
};

const std::set<std::string>& managed_headers() {
  // Set by the HTTP client or by hookrelay itself; a caller may not override them. An hr-call
  // envelope naming one is refused too (parse_call_envelope): ingest never wrote one.
  static const std::set<std::string> names = {"host",
                                              "content-length",
                                              "transfer-encoding",
                                              "connection",
                                              "keep-alive",
                                              "upgrade",
                                              "te",
                                              "trailer",
                                              "expect",
                                              "idempotency-key",
                                              "proxy-authorization",
                                              "proxy-connection"};
  return names;
}

// Why a call may not carry the header `name` (any case), or "" when it is sent as given. The
// worker sends every header of a call but these (build_http_call, worker/outbound_request.h):
// what it would not send is refused here, never accepted and dropped.
std::string refused_call_header(const std::string& name) {
  const std::string n = ascii_lower(name);
  if (managed_headers().count(n)) return "is set by hookrelay and cannot be overridden";
  if (n.rfind("proxy-", 0) == 0)
    return "Proxy-* headers are hop-by-hop: they are never sent to the receiver";
  if (n == "x-hookrelay-attempt")
    return "is set by hookrelay (the attempt's number) and cannot be overridden";
  return {};
}

// What an Idempotency-Key value may be: 1-255 bytes, no control character, and neither blank nor
// beginning or ending with a space or tab (a receiver reads the value without them, and libcurl
// sends no header at all for a blank one).
std::string idempotency_key_problem(std::string_view key) {
  if (key.empty() || key.size() > 255) return "must be 1-255 characters";
  if (!valid_header_value(key)) return "contains control characters";
  const auto blank = [](char c) { return c == ' ' || c == '\t'; };
  if (blank(key.front()) || blank(key.back())) return "must not begin or end with a space or tab";
  return {};
}

}  // namespace

bool known_call_method(const std::string& method) {
  static const std::set<std::string> methods = {"GET",    "POST", "PUT",    "PATCH",
                                                "DELETE", "HEAD", "OPTIONS"};
  return methods.count(method) > 0;
}

bool valid_header_name(std::string_view name) {
  if (name.empty() || name.size() > 256) return false;
  static const std::string_view specials = "!#$%&'*+-.^_`|~";
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           specials.find(c) != std::string_view::npos;
  });
}

bool valid_header_value(std::string_view value) {
  if (value.size() > 8192) return false;
  return std::none_of(value.begin(), value.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return c == '\r' || c == '\n' || c == '\0' || (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

std::string call_id_for(std::string_view idempotency_key) {
  return "call_" + hex_encode(sha256(idempotency_key).substr(0, 12));
}

Result<CallRequest> parse_call_request(std::string_view text, const CallLimits& limits) {
  json j;
  RequestJson reader(j);
  bool parsed = false;
  try {
    parsed = json::sax_parse(text.begin(), text.end(), &reader) && !reader.errored();
  } catch (const json::exception&) {
    parsed = false;
  }
  if (!parsed) return fail("malformed_json", "request body is not valid JSON");
  if (!j.is_object()) return fail("malformed_json", "request body must be a JSON object");
  // Read one way here and perhaps another by whatever checked or logged the body before (last
  // wins here, first wins elsewhere): a key given twice is refused, not guessed.
  if (reader.duplicate()) return invalid(*reader.duplicate(), "given twice");
  static const std::set<std::string> known = {"url",        "method",       "headers",
                                              "body",       "body_base64",  "idempotency_key",
                                              "timeout_ms", "max_attempts", "max_age_seconds"};
  for (const auto& [k, v] : j.items()) {
    if (!known.count(k)) return invalid(k, "unknown field");
  }
  CallRequest c;
  c.timeout_ms = limits.default_timeout_ms;
  c.max_attempts = limits.default_max_attempts;
  c.max_age_seconds = limits.default_max_age_seconds;
  try {
    if (!j.contains("url")) return invalid("url", "is required");
    if (!j["url"].is_string()) return invalid("url", "must be a string");
    auto url = check_url(j["url"].get<std::string>());
    if (!url) return Unexpected{url.error()};
    c.url = *url;

    if (j.contains("method")) {
      if (!j["method"].is_string()) return invalid("method", "must be a string");
      c.method = j["method"].get<std::string>();
      if (!known_call_method(c.method))
        return invalid("method", "must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS");
    }
    if (j.contains("headers")) {
      const auto& h = j["headers"];
      if (!h.is_object())
        return invalid("headers", "must be an object of header name to string value");
      if (h.size() > limits.max_headers)
        return invalid("headers", "at most " + std::to_string(limits.max_headers) + " headers");
      std::optional<std::string> content_type;  // the name it was given under
      for (const auto& [name, value] : h.items()) {
        if (!valid_header_name(name))
          return invalid("headers." + name, "is not a valid header name");
        if (auto why = refused_call_header(name); !why.empty())
          return invalid("headers." + name, why);
        if (!value.is_string()) return invalid("headers." + name, "value must be a string");
        auto v = value.get<std::string>();
        if (!valid_header_value(v))
          return invalid("headers." + name, "value contains CR, LF or control characters");
        // One Content-Type is sent: two whose names differ only in case are two JSON keys, but
        // which one the receiver would read is anyone's guess.
        if (ascii_iequals(name, "content-type")) {
          if (content_type) {
            return invalid("headers." + name, "Content-Type is given twice (as " + *content_type +
                                                  " and " + name + ")");
          }
          content_type = name;
        }
        c.headers.emplace_back(name, std::move(v));
      }
    }
    if (j.contains("body") && j.contains("body_base64"))
      return invalid("body", "give body or body_base64, not both");
    if (j.contains("body")) {
      if (!j["body"].is_string())
        return invalid("body", "must be a string (use body_base64 for bytes)");
      c.body = j["body"].get<std::string>();
    } else if (j.contains("body_base64")) {
      std::optional<std::string> bytes;
      if (j["body_base64"].is_string()) bytes = base64_decode(j["body_base64"].get<std::string>());
      if (!bytes) return invalid("body_base64", "is not valid base64");
      c.body = std::move(*bytes);
    }
    // libcurl sends no body with GET or HEAD: refused rather than accepted and dropped.
    if (!c.body.empty() && (c.method == "GET" || c.method == "HEAD"))
      return invalid(j.contains("body") ? "body" : "body_base64", "a GET or HEAD call has no body");
    if (j.contains("idempotency_key")) {
      if (!j["idempotency_key"].is_string()) return invalid("idempotency_key", "must be a string");
      c.idempotency_key = j["idempotency_key"].get<std::string>();
      if (auto problem = idempotency_key_problem(c.idempotency_key); !problem.empty())
        return invalid("idempotency_key", problem);
    } else {
      c.idempotency_key = "hr_" + hex_encode(random_bytes(16));
      c.key_generated = true;
    }
    if (j.contains("timeout_ms"))
      c.timeout_ms = bounded_int(j["timeout_ms"], "timeout_ms", 100, limits.max_timeout_ms);
    if (j.contains("max_attempts"))
      c.max_attempts = bounded_int(j["max_attempts"], "max_attempts", 1, limits.max_max_attempts);
    if (j.contains("max_age_seconds"))
      c.max_age_seconds =
          bounded_int(j["max_age_seconds"], "max_age_seconds", 1, limits.max_max_age_seconds);
  } catch (const std::invalid_argument& e) {
    return fail("invalid_request", e.what());
  }
  return c;
}

std::string call_envelope(const CallRequest& c) {
  json h = json::array();
  for (const auto& [k, v] : c.headers) h.push_back({k, v});
  json j = {{"url", c.url},
            {"method", c.method},
            {"headers", h},
            {"idempotency_key", c.idempotency_key},
            {"timeout_ms", c.timeout_ms},
            {"max_attempts", c.max_attempts},
            {"max_age_seconds", c.max_age_seconds}};
  return json_text(j);
}

Result<CallRequest> parse_call_envelope(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return fail("bad_envelope", "hr-call header is not a JSON object");
  try {
    CallRequest c;
    c.url = j.at("url").get<std::string>();
    c.method = j.at("method").get<std::string>();
    // Held to ingest's limits on a call's headers (CallLimits::max_headers of at most 256 + 8192
    // bytes each, below): a message written to the topic some other way sends no receiver
    // thousands of headers.
    const auto& headers = j.at("headers");
    if (!headers.is_array()) return fail("bad_envelope", "hr-call header: headers is not a list");
    if (const std::size_t most = CallLimits{}.max_headers; headers.size() > most) {
      return fail("bad_envelope", "hr-call header: headers: " + std::to_string(headers.size()) +
                                      " headers; at most " + std::to_string(most));
    }
    for (const auto& h : headers)
      c.headers.emplace_back(h.at(0).get<std::string>(), h.at(1).get<std::string>());
    c.idempotency_key = j.at("idempotency_key").get<std::string>();
    // Both reach the wire (the request line, the Idempotency-Key header): held to what ingest
    // accepts, so a message written to the topic some other way cannot split a request.
    if (!known_call_method(c.method))
      return fail("bad_envelope", "hr-call header: method is not one ingest accepts");
    if (c.idempotency_key.empty() || c.idempotency_key.size() > 255 ||
        !valid_header_value(c.idempotency_key)) {
      return fail("bad_envelope", "hr-call header: idempotency_key is not a valid header value");
    }
    for (const auto& [name, value] : c.headers) {
      if (!valid_header_name(name) || !valid_header_value(value)) {
        return fail("bad_envelope", "hr-call header: a header name or value is not valid HTTP");
      }
      // Nor may it name a header the caller cannot set (Host, Content-Length, ...): ingest
      // refuses those, so an envelope naming one was written some other way.
      if (managed_headers().count(ascii_lower(name))) {
        return fail("bad_envelope",
                    "hr-call header: headers." + name + " is set by hookrelay and cannot be given");
      }
    }
    // Whoever can write to the topic writes these numbers: range-checked, never cast blindly.
    c.timeout_ms = bounded_int(j.at("timeout_ms"), "timeout_ms", 1, kEnvelopeMaxTimeoutMs);
    c.max_attempts = bounded_int(j.at("max_attempts"), "max_attempts", 1, kEnvelopeMaxAttempts);
    c.max_age_seconds =
        bounded_int(j.at("max_age_seconds"), "max_age_seconds", 1, kEnvelopeMaxAgeSeconds);
    return c;
  } catch (const json::exception& e) {
    return fail("bad_envelope", std::string("hr-call header: ") + e.what());
  } catch (const std::invalid_argument& e) {
    return fail("bad_envelope", std::string("hr-call header: ") + e.what());
  }
}

}  // namespace hookrelay
