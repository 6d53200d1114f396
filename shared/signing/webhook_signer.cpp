#include "shared/signing/webhook_signer.h"

#include <optional>

#include "shared/signing/crypto.h"
#include "shared/signing/webhook_scheme.h"

namespace hookrelay {
namespace {

namespace h = scheme_headers;

using Headers = std::vector<std::pair<std::string, std::string>>;

void add(Headers& out, std::string_view name, std::string value) {
  out.emplace_back(std::string(name), std::move(value));
}

}  // namespace

Result<std::string> standard_webhooks_signature(std::string_view secret, std::string_view msg_id,
                                                int64_t ts, std::string_view body) {
  auto key = decode_standard_webhooks_secret(secret);
  if (!key) return Unexpected{key.error()};
  SourceConfig source;
  source.scheme = SchemeKind::kStandardWebhooks;
  return "v1," + base64_encode(scheme_mac(source, *key, msg_id, std::to_string(ts), body));
}

Headers provider_headers(const SourceConfig& source, std::string_view body,
                         int64_t now_unix_seconds, std::string_view event_id) {
  const std::string ts = std::to_string(now_unix_seconds);
  std::optional<std::string> mac;
  if (!source.secrets.empty()) {
    if (auto key = scheme_key(source, source.secrets.front()))
      mac = scheme_mac(source, *key, event_id, ts, body);
  }
  Headers out;
  switch (source.scheme) {
    case SchemeKind::kStandardWebhooks:
      add(out, h::kWebhookId, std::string(event_id));
      add(out, h::kWebhookTimestamp, ts);
      if (mac) add(out, h::kWebhookSignature, "v1," + base64_encode(*mac));
      break;
    case SchemeKind::kGithub:
      if (mac) add(out, h::kGithubSignature, "sha256=" + hex_encode(*mac));
      add(out, h::kGithubDelivery, std::string(event_id));
      break;
    case SchemeKind::kStripe:
      if (mac) add(out, h::kStripeSignature, "t=" + ts + ",v1=" + hex_encode(*mac));
      break;
    case SchemeKind::kSlack:
      add(out, h::kSlackTimestamp, ts);
      if (mac) add(out, h::kSlackSignature, "v0=" + hex_encode(*mac));
      break;
    case SchemeKind::kShopify:
      if (mac) add(out, h::kShopifyHmac, base64_encode(*mac));
      add(out, h::kShopifyWebhookId, std::string(event_id));
      break;
    case SchemeKind::kHmac:
      if (mac) {
        add(out, source.header,
            source.prefix + (source.encoding == "base64" ? base64_encode(*mac) : hex_encode(*mac)));
      }
      if (!source.timestamp_header.empty()) add(out, source.timestamp_header, ts);
      if (!source.event_id_header.empty()) add(out, source.event_id_header, std::string(event_id));
      break;
  }
  return out;
}

}  // namespace hookrelay
