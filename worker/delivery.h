// Delivery: the unit of work downstream of Kafka: one payload, one destination, one attempt.
// A webhook event with N routes becomes N deliveries; a call request is one; a message from a
// retry tier is the one delivery it carries. Retries, DLQ, idempotency and audit are per
// delivery, so a failing route never repeats a successful one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "shared/config/config.h"

namespace hookrelay {

struct Delivery {
  std::string key;     // idempotency key: "wh:<source>:<event>:<route>" or "call:<idempotency key>"
  std::string kind;    // "webhook" | "call"
  std::string source;  // webhook source; "" for calls
  std::string event_id;     // webhook event id or call id
  std::string destination;  // route name, or "call"
  std::string url;
  std::string host_key;  // "host:port" that url connects to (HttpUrl::host_key): limits, breaker
  std::string method = "POST";
  std::vector<std::pair<std::string, std::string>> headers;  // to send (before signing)
  std::shared_ptr<const std::string> body;                   // shared by the routes of one event
  // The webhook route in the Config the delivery was expanded under (kept alive by its message:
  // MessageState::config): its extra headers and signing secrets. nullptr for calls.
  const RouteConfig* route = nullptr;
  std::string message_id;  // webhook-id / Idempotency-Key sent to the receiver
  int timeout_ms = 10000;
  bool ordered = false;  // route asks for one-at-a-time, in-offset-order first attempts
  // Ordered routes with a named key (header, JSON pointer): the event's ordering key, "" when the
  // event has none (and always for a route ordered by the Kafka key, but for a retry copy of an
  // older worker's that carries one). Later deliveries of a key wait while an earlier one waits
  // in a retry tier.
  std::string ordering_key;
  int max_attempts = 8;
  int max_age_seconds = 86400;
  int attempt = 1;                  // the attempt about to be made (1-based)
  int64_t received_at_ms = 0;       // when ingest accepted the event
  int64_t first_attempt_at_ms = 0;  // 0 until the first attempt
  std::string origin_topic;         // topic of the event's first message (webhooks/calls)
  // Kafka headers carried along to retry and DLQ messages (hr-*, hr-fwd-*).
  std::vector<std::pair<std::string, std::string>> carried_headers;
};

// One claim's lease: the delivery and the token it was claimed under (DeliveryStore::release).
struct LeaseRef {
  std::string key;
  int64_t lease_token = 0;
  bool operator==(const LeaseRef&) const = default;
};

}  // namespace hookrelay
