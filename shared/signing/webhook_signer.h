// WebhookSigner: produces signatures the way a sender would. The worker signs outbound
// deliveries in the Standard Webhooks format; the CLI `sign` command and the benchmarks use
// provider_headers to imitate what a provider of any supported scheme would send, so that
// verify_webhook accepts it.
//
// Thread-safety: pure functions; call from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/config/config.h"
#include "shared/result.h"

namespace hookrelay {

// "v1,<base64>" for Standard Webhooks: HMAC-SHA256 of "{msg_id}.{ts}.{body}" under the decoded
// "whsec_<base64>" secret. Error "invalid_secret" when the secret is not of that form.
Result<std::string> standard_webhooks_signature(std::string_view secret, std::string_view msg_id,
                                                int64_t ts, std::string_view body);

// Headers a provider of this scheme would send for `body`, signed with the first configured
// secret at time `now_unix_seconds`; e.g. for github {"X-Hub-Signature-256","sha256=..."},
// {"X-GitHub-Delivery", event_id}. Where a scheme carries the event id in a header (webhook-id,
// X-GitHub-Delivery, X-Shopify-Webhook-Id, the hmac event_id_header) it is `event_id`; Stripe and
// Slack carry it in the body, so `event_id` is unused for them. With no secret, or a first
// secret that is not usable (an invalid whsec_ secret), the signature header is left out.
std::vector<std::pair<std::string, std::string>> provider_headers(const SourceConfig& source,
                                                                  std::string_view body,
                                                                  int64_t now_unix_seconds,
                                                                  std::string_view event_id);

}  // namespace hookrelay
