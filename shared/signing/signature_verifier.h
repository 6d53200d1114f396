// SignatureVerifier: checks an inbound webhook against its source's signature scheme and
// yields the event id it will be known by downstream (idempotency keys, hr-event-id).
//
// Contract:
//  - The body is verified byte for byte as received; nothing is parsed before it is verified.
//  - Every configured secret is tried (rotation); digests are compared in constant time.
//  - Timestamped schemes (standard-webhooks, stripe, slack, hmac with timestamp_header) reject
//    |now - ts| > tolerance_seconds, in both directions.
//  - Error.code is exactly one of missing_signature, malformed_signature, bad_signature,
//    missing_timestamp, stale_timestamp (the HTTP layer answers 401 and labels a metric with
//    it). A timestamp that is present but not a decimal integer is malformed_signature. Messages
//    name the header and what is wrong, never a secret or an expected signature.
//
// Thread-safety: pure functions; call from any thread. `headers` is called only during the call.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "shared/config/config.h"
#include "shared/http/http_types.h"
#include "shared/result.h"

namespace hookrelay {

struct VerifiedWebhook {
  std::string event_id;
};

Result<VerifiedWebhook> verify_webhook(const SourceConfig& source, const HeaderLookup& headers,
                                       std::string_view raw_body, int64_t now_unix_seconds);

// What verify_webhook checks before it looks at the clock or the body: that the signature's
// headers are there and well formed, a signed timestamp a decimal number (missing_signature,
// malformed_signature, missing_timestamp).
// No digest is computed. For refusing a request from its header, before its body is read.
Result<void> check_signature_headers(const SourceConfig& source, const HeaderLookup& headers);

// The id an event is known by, from where its scheme puts it: webhook-id (standard-webhooks),
// X-GitHub-Delivery (github), top-level JSON "id" (stripe), top-level JSON "event_id" (slack),
// X-Shopify-Webhook-Id (shopify), the configured event_id_header (hmac). When that is absent,
// empty, longer than 255 bytes or not printable ASCII without spaces (it becomes a database key
// and a Kafka header), the fallback_event_id of the body. Does not verify anything.
std::string extract_event_id(const SourceConfig& source, const HeaderLookup& headers,
                             std::string_view raw_body);

// Lowercase hex SHA-256 of the raw body: identical redeliveries share it.
std::string fallback_event_id(std::string_view raw_body);

}  // namespace hookrelay
