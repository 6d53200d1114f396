#include "shared/signing/webhook_scheme.h"

namespace hookrelay {
namespace {

constexpr std::string_view kWhsecPrefix = "whsec_";

}  // namespace

HmacAlgorithm scheme_algorithm(const SourceConfig& source) {
  if (source.scheme == SchemeKind::kHmac) {
    if (source.algorithm == "sha1") return HmacAlgorithm::kSha1;
    if (source.algorithm == "sha512") return HmacAlgorithm::kSha512;
  }
  return HmacAlgorithm::kSha256;
}

Result<std::string> decode_standard_webhooks_secret(std::string_view secret) {
  if (secret.substr(0, kWhsecPrefix.size()) != kWhsecPrefix) {
    return fail("invalid_secret", "Standard Webhooks secret does not start with whsec_");
  }
  auto key = base64_decode(secret.substr(kWhsecPrefix.size()));
  if (!key || key->empty()) {
    return fail("invalid_secret",
                "Standard Webhooks secret is not whsec_ followed by non-empty base64");
  }
  return std::move(*key);
}

Result<std::string> scheme_key(const SourceConfig& source, std::string_view secret) {
  switch (source.scheme) {
    case SchemeKind::kStandardWebhooks:
      return decode_standard_webhooks_secret(secret);
    case SchemeKind::kGithub:
    case SchemeKind::kStripe:
    case SchemeKind::kSlack:
    case SchemeKind::kShopify:
    case SchemeKind::kHmac:
      return std::string(secret);
  }
  return fail("invalid_secret", "unknown scheme");
}

std::string signed_prefix(const SourceConfig& source, std::string_view id, std::string_view ts) {
  std::string out;
  switch (source.scheme) {
    case SchemeKind::kStandardWebhooks:
      out.reserve(id.size() + ts.size() + 2);
      out.append(id).append(".").append(ts).append(".");
      break;
    case SchemeKind::kStripe:
      out.append(ts).append(".");
      break;
    case SchemeKind::kSlack:
      out.append("v0:").append(ts).append(":");
      break;
    case SchemeKind::kHmac:
      if (!source.timestamp_header.empty()) out.append(ts).append(".");
      break;
    case SchemeKind::kGithub:
    case SchemeKind::kShopify:
      break;
  }
  return out;
}

std::string scheme_mac(const SourceConfig& source, std::string_view key, std::string_view id,
                       std::string_view ts, std::string_view body) {
  const std::string prefix = signed_prefix(source, id, ts);
  return hmac_parts(scheme_algorithm(source), key, {prefix, body});
}

}  // namespace hookrelay
