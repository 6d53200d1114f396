// What the worker sends and what it re-publishes, as pure functions of a Delivery.
//
// build_http_call: the receiver's request. Webhooks carry the provider's forwarded headers but
// webhook-id, webhook-timestamp, webhook-signature, Idempotency-Key, User-Agent, Accept-Encoding
// and X-Hookrelay-Attempt (dropped: a provider's own are not the delivery's), then the route's own
// `headers` (which replace a forwarded header of the same name), then webhook-id (stable across
// attempts), webhook-timestamp and, when the route has secrets, webhook-signature (Standard
// Webhooks: one "v1,<base64>" per secret, space-separated). Provider signature headers that the
// receiver cannot check are replaced, never duplicated. Calls carry their own headers as given,
// User-Agent (it replaces the worker's) and webhook-* included, then Idempotency-Key. Ingest
// refuses what would not be sent (call_request.h): a connection header (below), Idempotency-Key,
// X-Hookrelay-*; one an hr-call envelope from an older ingest carries anyway (Proxy-*,
// X-Hookrelay-Attempt) is dropped here. Every delivery then carries X-Hookrelay-Attempt, and at
// most one Content-Type (the first given, any case); with none, none is sent (CurlSender adds no
// default). A GET or HEAD has no body.
//
// redelivery_headers: the Kafka headers of the retry-tier or DLQ message that carries a delivery
// on, with its attempt history.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/kafka/message_producer.h"
#include "worker/delivery.h"
#include "worker/http_sender.h"

namespace hookrelay {

HttpCall build_http_call(const Delivery& delivery, int64_t now_ms, int connect_timeout_ms);

// A header that frames the request or belongs to one connection (hop-by-hop): Host,
// Content-Length, Transfer-Encoding, Connection, Keep-Alive, TE, Trailer, Upgrade, Expect and every
// Proxy-* (any case). libcurl writes these itself, and one it is handed replaces its own: Host
// would pick another virtual host behind the address the SSRF guard judged, Content-Length or
// Transfer-Encoding would frame the body otherwise than it is sent. So build_http_call never sends
// one a delivery carries, and a message naming one is malformed (expand_message; Proxy-* ones are
// only dropped: ingest forwards those but Proxy-Authorization and Proxy-Connection). The worker's
// rule, next to ingest's (ingest_service.cpp forwardable: these and credentials are not forwarded),
// the /v1/calls parser's (call_request.cpp refused_call_header: all of these; its
// managed_headers, all but Proxy-* other than those two, applied to hr-call envelopes too) and
// the routes' (config.cpp refused_header).
bool connection_header(std::string_view name);
// Proxy-*, any case: the connection headers ingest forwards (but Proxy-Authorization and
// Proxy-Connection).
bool proxy_header(std::string_view name);

struct AttemptHistory {
  int attempts_made = 0;
  int64_t first_attempt_at_ms = 0;
  int64_t last_attempt_at_ms = 0;
  int last_status = 0;               // 0 when there was no HTTP answer
  std::string last_error;            // truncated to 512 bytes
  std::optional<int64_t> due_at_ms;  // retry only
};

std::vector<MessageHeader> redelivery_headers(const Delivery& delivery,
                                              const AttemptHistory& history);

}  // namespace hookrelay
