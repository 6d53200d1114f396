#include "shared/signing/signature_verifier.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <nlohmann/json.hpp>
#include <system_error>
#include <vector>

#include "shared/signing/crypto.h"
#include "shared/signing/webhook_scheme.h"

namespace hookrelay {
namespace {

namespace h = scheme_headers;

constexpr std::size_t kMaxEventIdBytes = 255;

// What a scheme's headers yield before any cryptography: the inputs to the signed content and
// the decoded candidate digests, any one of which may match.
struct SignedRequest {
  std::string signature_header;  // for messages
  std::string_view id;           // standard-webhooks only
  std::optional<std::string_view> timestamp;
  std::string timestamp_header;  // for messages
  std::vector<std::string> candidates;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<std::string_view> header(const HeaderLookup& headers, std::string_view name) {
  auto v = headers(name);
  if (!v) return std::nullopt;
  return trim(*v);
}

// Calls fn(piece) for each `sep`-separated piece of `s`, trimmed, skipping empty ones.
template <class Fn>
void for_each_piece(std::string_view s, char sep, Fn fn) {
  while (true) {
    const auto pos = s.find(sep);
    const std::string_view piece = trim(s.substr(0, pos));
    if (!piece.empty()) fn(piece);
    if (pos == std::string_view::npos) return;
    s.remove_prefix(pos + 1);
  }
}

std::optional<std::string> decode(std::string_view text, bool base64) {
  return base64 ? base64_decode(text) : hex_decode(text);
}

Unexpected missing_signature(std::string_view name) {
  return fail("missing_signature", std::string(name) + " header is absent");
}

Unexpected malformed(std::string_view name, std::string_view what) {
  return fail("malformed_signature", std::string(name) + " " + std::string(what));
}

Result<SignedRequest> parse_standard_webhooks(const HeaderLookup& headers) {
  SignedRequest r{std::string(h::kWebhookSignature), {}, {}, std::string(h::kWebhookTimestamp), {}};
  auto sig = header(headers, h::kWebhookSignature);
  if (!sig) return missing_signature(h::kWebhookSignature);
  auto id = header(headers, h::kWebhookId);
  if (!id) return malformed(h::kWebhookId, "header is absent (it is part of the signed content)");
  r.id = *id;
  r.timestamp = header(headers, h::kWebhookTimestamp);
  if (!r.timestamp) return fail("missing_timestamp", "webhook-timestamp header is absent");
  bool saw_v1 = false;
  for_each_piece(*sig, ' ', [&](std::string_view entry) {
    const auto comma = entry.find(',');
    if (comma == std::string_view::npos || entry.substr(0, comma) != "v1") return;
    saw_v1 = true;
    auto raw = base64_decode(entry.substr(comma + 1));
    if (raw && raw->size() == hmac_size(HmacAlgorithm::kSha256))
      r.candidates.push_back(std::move(*raw));
  });
  if (!saw_v1) return malformed(h::kWebhookSignature, "has no v1,<base64> entry");
  if (r.candidates.empty())
    return malformed(h::kWebhookSignature, "v1 entries are not base64 of 32 bytes");
  return r;
}

Result<SignedRequest> parse_stripe(const HeaderLookup& headers) {
  SignedRequest r{std::string(h::kStripeSignature), {}, {}, "Stripe-Signature t=", {}};
  auto sig = header(headers, h::kStripeSignature);
  if (!sig) return missing_signature(h::kStripeSignature);
  bool saw_v1 = false;
  for_each_piece(*sig, ',', [&](std::string_view element) {
    const auto eq = element.find('=');
    if (eq == std::string_view::npos) return;
    const std::string_view key = element.substr(0, eq);
    const std::string_view value = element.substr(eq + 1);
    if (key == "t" && !r.timestamp) {
      r.timestamp = value;
    } else if (key == "v1") {
      saw_v1 = true;
      auto raw = hex_decode(value);
      if (raw && raw->size() == hmac_size(HmacAlgorithm::kSha256))
        r.candidates.push_back(std::move(*raw));
    }
  });
  if (!r.timestamp) return malformed(h::kStripeSignature, "has no t= element");
  if (!saw_v1) return malformed(h::kStripeSignature, "has no v1= element");
  if (r.candidates.empty())
    return malformed(h::kStripeSignature, "v1= elements are not 64 hex digits");
  return r;
}

// One header holding `prefix` then one encoded digest: github, slack, shopify, generic hmac.
Result<SignedRequest> parse_single(const HeaderLookup& headers, std::string_view name,
                                   std::string_view prefix, bool base64, std::size_t digest_size) {
  SignedRequest r{std::string(name), {}, {}, {}, {}};
  auto sig = header(headers, name);
  if (!sig) return missing_signature(name);
  if (sig->substr(0, prefix.size()) != prefix) {
    return malformed(name, "does not start with \"" + std::string(prefix) + "\"");
  }
  auto raw = decode(sig->substr(prefix.size()), base64);
  if (!raw) return malformed(name, base64 ? "is not valid base64" : "is not valid hex");
  if (raw->size() != digest_size) {
    return malformed(name, "holds " + std::to_string(raw->size()) + " bytes, expected " +
                               std::to_string(digest_size));
  }
  r.candidates.push_back(std::move(*raw));
  return r;
}

Result<void> require_timestamp(const HeaderLookup& headers, std::string_view name,
                               SignedRequest& r) {
  r.timestamp = header(headers, name);
  r.timestamp_header = std::string(name);
  if (!r.timestamp) return fail("missing_timestamp", std::string(name) + " header is absent");
  return {};
}

Result<SignedRequest> parse(const SourceConfig& source, const HeaderLookup& headers) {
  constexpr std::size_t kSha256Size = 32;
  switch (source.scheme) {
    case SchemeKind::kStandardWebhooks:
      return parse_standard_webhooks(headers);
    case SchemeKind::kStripe:
      return parse_stripe(headers);
    case SchemeKind::kGithub:
      return parse_single(headers, h::kGithubSignature, "sha256=", false, kSha256Size);
    case SchemeKind::kShopify:
      return parse_single(headers, h::kShopifyHmac, "", true, kSha256Size);
    case SchemeKind::kSlack: {
      auto r = parse_single(headers, h::kSlackSignature, "v0=", false, kSha256Size);
      if (!r) return r;
      if (auto ts = require_timestamp(headers, h::kSlackTimestamp, *r); !ts)
        return Unexpected{ts.error()};
      return r;
    }
    case SchemeKind::kHmac: {
      auto r = parse_single(headers, source.header, source.prefix, source.encoding == "base64",
                            hmac_size(scheme_algorithm(source)));
      if (!r || source.timestamp_header.empty()) return r;
      if (auto ts = require_timestamp(headers, source.timestamp_header, *r); !ts) {
        return Unexpected{ts.error()};
      }
      return r;
    }
  }
  return fail("malformed_signature", "unknown signature scheme");
}

// The signed timestamp's value: decimal digits only, in range.
Result<int64_t> timestamp_of(const SignedRequest& r) {
  const std::string_view text = *r.timestamp;
  int64_t ts = 0;
  const char* end = text.data() + text.size();
  // Digits only: from_chars would also take a sign, and a negative time is never legitimate.
  bool valid = !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
  if (valid) {
    const auto [ptr, ec] = std::from_chars(text.data(), end, ts);
    valid = ec == std::errc() && ptr == end;  // out of range is malformed too
  }
  if (!valid) {
    return malformed(r.timestamp_header, "is not a decimal Unix timestamp");
  }
  return ts;
}

Result<void> check_timestamp(const SignedRequest& r, int tolerance_seconds, int64_t now) {
  const auto parsed = timestamp_of(r);
  if (!parsed) return Unexpected{parsed.error()};
  const int64_t ts = *parsed;
  // ts >= 0 here, so neither subtraction can overflow for any plausible clock.
  const bool future = ts > now;
  const int64_t skew = future ? ts - now : now - ts;
  if (skew > tolerance_seconds) {
    return fail("stale_timestamp", r.timestamp_header + " is " + std::to_string(skew) +
                                       " s in the " + (future ? "future" : "past") +
                                       " (tolerance " + std::to_string(tolerance_seconds) + " s)");
  }
  return {};
}

Result<void> match_any_secret(const SourceConfig& source, const SignedRequest& r,
                              std::string_view body) {
  std::size_t usable = 0;
  bool matched = false;
  for (const std::string& secret : source.secrets) {
    auto key = scheme_key(source, secret);
    if (!key) continue;
    ++usable;
    const std::string expected = scheme_mac(source, *key, r.id, r.timestamp.value_or(""), body);
    // Every candidate is compared even after a match so timing does not reveal which matched.
    for (const std::string& candidate : r.candidates)
      matched |= constant_time_equal(candidate, expected);
  }
  if (matched) return {};
  // The answer goes to whoever sent the request: it says what failed, not how many secrets are
  // in rotation or that none is usable (config validation refuses such a source anyway).
  if (usable == 0) spdlog::error("msg=source_without_usable_secret source={}", source.name);
  return fail("bad_signature", r.signature_header +
                                   " does not match this body: it was signed with another secret, "
                                   "or the body changed after it was signed");
}

bool usable_event_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxEventIdBytes) return false;
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

std::optional<std::string> json_string_field(std::string_view body, const char* field) {
  const auto doc =
      nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::nullopt;
  const auto it = doc.find(field);
  if (it == doc.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::optional<std::string> natural_event_id(const SourceConfig& source, const HeaderLookup& headers,
                                            std::string_view body) {
  auto from_header = [&](std::string_view name) -> std::optional<std::string> {
    if (name.empty()) return std::nullopt;
    auto v = header(headers, name);
    if (!v) return std::nullopt;
    return std::string(*v);
  };
  switch (source.scheme) {
    case SchemeKind::kStandardWebhooks:
      return from_header(h::kWebhookId);
    case SchemeKind::kGithub:
      return from_header(h::kGithubDelivery);
    case SchemeKind::kStripe:
      return json_string_field(body, "id");
    case SchemeKind::kSlack:
      return json_string_field(body, "event_id");
    case SchemeKind::kShopify:
      return from_header(h::kShopifyWebhookId);
    case SchemeKind::kHmac:
      return from_header(source.event_id_header);
  }
  return std::nullopt;
}

}  // namespace

std::string fallback_event_id(std::string_view raw_body) { return hex_encode(sha256(raw_body)); }

std::string extract_event_id(const SourceConfig& source, const HeaderLookup& headers,
                             std::string_view raw_body) {
  auto id = natural_event_id(source, headers, raw_body);
  if (id && usable_event_id(*id)) return std::move(*id);
  return fallback_event_id(raw_body);
}

Result<void> check_signature_headers(const SourceConfig& source, const HeaderLookup& headers) {
  auto request = parse(source, headers);
  if (!request) return Unexpected{request.error()};
  if (request->timestamp) {
    if (auto ts = timestamp_of(*request); !ts) return Unexpected{ts.error()};
  }
  return {};
}

Result<VerifiedWebhook> verify_webhook(const SourceConfig& source, const HeaderLookup& headers,
                                       std::string_view raw_body, int64_t now_unix_seconds) {
  auto request = parse(source, headers);
  if (!request) return Unexpected{request.error()};
  // Timestamp before HMAC: a replay is refused without hashing its body.
  if (request->timestamp) {
    if (auto fresh = check_timestamp(*request, source.tolerance_seconds, now_unix_seconds);
        !fresh) {
      return Unexpected{fresh.error()};
    }
  }
  if (auto match = match_any_secret(source, *request, raw_body); !match)
    return Unexpected{match.error()};
  return VerifiedWebhook{extract_event_id(source, headers, raw_body)};
}

}  // namespace hookrelay
