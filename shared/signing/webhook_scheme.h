// WebhookScheme: what each inbound signature scheme signs, with which key and algorithm, and in
// which headers. The verifier and the signer both build on these so they cannot drift apart.
//
// Timestamps and ids enter signed content as the exact text received, never reformatted:
// "0123" and "123" sign differently.
//
// Thread-safety: pure functions and constants; call from any thread.
#pragma once

#include <string>
#include <string_view>

#include "shared/config/config.h"
#include "shared/result.h"
#include "shared/signing/crypto.h"

namespace hookrelay::scheme_headers {

inline constexpr std::string_view kWebhookId = "webhook-id";
inline constexpr std::string_view kWebhookTimestamp = "webhook-timestamp";
inline constexpr std::string_view kWebhookSignature = "webhook-signature";
inline constexpr std::string_view kGithubSignature = "X-Hub-Signature-256";
inline constexpr std::string_view kGithubDelivery = "X-GitHub-Delivery";
inline constexpr std::string_view kStripeSignature = "Stripe-Signature";
inline constexpr std::string_view kSlackSignature = "X-Slack-Signature";
inline constexpr std::string_view kSlackTimestamp = "X-Slack-Request-Timestamp";
inline constexpr std::string_view kShopifyHmac = "X-Shopify-Hmac-Sha256";
inline constexpr std::string_view kShopifyWebhookId = "X-Shopify-Webhook-Id";

}  // namespace hookrelay::scheme_headers

namespace hookrelay {

// "sha256" except for the generic hmac scheme, whose `algorithm` config names it. Config
// validation guarantees the name; an unknown one falls back to sha256.
HmacAlgorithm scheme_algorithm(const SourceConfig& source);

// The HMAC key for one configured secret. Standard Webhooks secrets are "whsec_<base64>" and the
// key is the decoded part; every other scheme uses the secret string as-is (Stripe's "whsec_"
// prefix is part of its key). Error code "invalid_secret"; the message never quotes the secret.
Result<std::string> scheme_key(const SourceConfig& source, std::string_view secret);

// Decodes a Standard Webhooks "whsec_<base64>" secret to its key bytes.
Result<std::string> decode_standard_webhooks_secret(std::string_view secret);

// Text signed in front of the body: "{id}.{ts}." (standard-webhooks), "{ts}." (stripe, and
// hmac with a timestamp header), "v0:{ts}:" (slack), empty otherwise. Unused inputs are ignored.
std::string signed_prefix(const SourceConfig& source, std::string_view id, std::string_view ts);

// Raw HMAC over signed_prefix(...) followed by `body`.
std::string scheme_mac(const SourceConfig& source, std::string_view key, std::string_view id,
                       std::string_view ts, std::string_view body);

}  // namespace hookrelay
