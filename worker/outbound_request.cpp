#include "worker/outbound_request.h"

#include <algorithm>

#include "shared/ascii.h"
#include "shared/kafka/wire_contract.h"
#include "shared/log.h"
#include "shared/signing/webhook_signer.h"

namespace hookrelay {
namespace {

// Headers hookrelay sets itself on every webhook delivery, or that belong to the provider's own
// request to ingest; a forwarded copy is dropped (ingest forwards a provider's own webhook-id,
// webhook-signature, ...: they are not a sign of a forged message).
bool replaced(std::string_view name) {
  for (std::string_view h :
       {"webhook-id", "webhook-timestamp", "webhook-signature", "idempotency-key", "user-agent",
        "accept-encoding", "x-hookrelay-attempt"}) {
    if (ascii_iequals(name, h)) return true;
  }
  return false;
}

// Headers hookrelay sets on a call. Ingest refuses a call naming one (call_request.cpp); an hr-call
// envelope from an ingest that did not refuse X-Hookrelay-Attempt may still carry it: dropped.
bool set_on_call(std::string_view name) {
  return ascii_iequals(name, "idempotency-key") || ascii_iequals(name, "x-hookrelay-attempt");
}

}  // namespace

bool proxy_header(std::string_view name) {
  constexpr std::string_view kProxy = "proxy-";
  return name.size() >= kProxy.size() && ascii_iequals(name.substr(0, kProxy.size()), kProxy);
}

bool connection_header(std::string_view name) {
  if (proxy_header(name)) return true;
  for (std::string_view h : {"host", "content-length", "transfer-encoding", "connection",
                             "keep-alive", "te", "trailer", "upgrade", "expect"}) {
    if (ascii_iequals(name, h)) return true;
  }
  return false;
}

HttpCall build_http_call(const Delivery& d, int64_t now_ms, int connect_timeout_ms) {
  HttpCall call;
  call.url = d.url;
  call.method = d.method;
  // A GET or HEAD goes out without a body. Ingest refuses a GET or HEAD call with one; a message
  // an older ingest accepted with one is sent as it always was, without it.
  if (d.method != "GET" && d.method != "HEAD") call.body = d.body;
  call.timeout_ms = d.timeout_ms;
  call.connect_timeout_ms = std::min(connect_timeout_ms, d.timeout_ms);
  const auto* route_headers = d.route ? &d.route->headers : nullptr;
  // Forwarded and route headers, then at most four of our own.
  call.headers.reserve(d.headers.size() + (route_headers ? route_headers->size() : 0) + 4);
  // A route's own header wins over a forwarded provider header of the same name.
  const auto set_by_route = [route_headers](std::string_view name) {
    if (!route_headers) return false;
    for (const auto& [k, v] : *route_headers) {
      if (ascii_iequals(k, name)) return true;
    }
    return false;
  };
  const bool is_call = d.kind == "call";
  bool content_type = false;
  for (const auto& [k, v] : d.headers) {
    // A call's own headers are sent as given but for the ones ingest refuses; a webhook's
    // forwarded ones less those hookrelay or the route sets.
    const bool dropped = is_call ? connection_header(k) || set_on_call(k)
                                 : replaced(k) || connection_header(k) || set_by_route(k);
    if (dropped) continue;
    // One Content-Type, the first (in any case): a provider's repeated one, or a call's from an
    // ingest that took two names differing in case.
    if (ascii_iequals(k, "content-type")) {
      if (content_type) continue;
      content_type = true;
    }
    call.headers.emplace_back(k, v);
  }
  if (route_headers) {
    for (const auto& h : *route_headers) call.headers.push_back(h);
  }
  if (d.kind == "call") {
    call.headers.emplace_back("Idempotency-Key", d.message_id);
  } else {
    int64_t ts = now_ms / 1000;
    call.headers.emplace_back("webhook-id", d.message_id);
    call.headers.emplace_back("webhook-timestamp", std::to_string(ts));
    if (d.route && !d.route->secrets.empty()) {
      // One signature per secret, space-separated (Standard Webhooks): a receiver that knows
      // either the new or the old secret accepts the delivery while a rotation overlaps.
      static const std::string kEmpty;
      std::string signatures;
      for (const auto& secret : d.route->secrets) {
        auto sig = standard_webhooks_signature(secret, d.message_id, ts, d.body ? *d.body : kEmpty);
        // Secrets were validated at start-up, so this cannot fail for a configured route.
        if (!sig) continue;
        if (!signatures.empty()) signatures += ' ';
        signatures += *sig;
      }
      if (!signatures.empty())
        call.headers.emplace_back("webhook-signature", std::move(signatures));
    }
  }
  call.headers.emplace_back("X-Hookrelay-Attempt", std::to_string(d.attempt));
  return call;
}

std::vector<MessageHeader> redelivery_headers(const Delivery& d, const AttemptHistory& h) {
  std::vector<MessageHeader> out;
  out.reserve(d.carried_headers.size() + 10);
  for (const auto& [k, v] : d.carried_headers) out.push_back({k, v});
  auto add = [&out](std::string_view name, std::string value) {
    out.push_back({std::string(name), std::move(value)});
  };
  if (!d.key.empty()) add(header::kDeliveryKey, d.key);  // a message that named no delivery
  if (d.kind == "webhook") add(header::kRoute, d.destination);
  add(header::kOriginTopic, d.origin_topic);
  add(header::kAttempt, std::to_string(h.attempts_made));
  if (h.first_attempt_at_ms > 0)
    add(header::kFirstAttemptAt, std::to_string(h.first_attempt_at_ms));
  if (h.last_attempt_at_ms > 0) add(header::kLastAttemptAt, std::to_string(h.last_attempt_at_ms));
  if (h.last_status > 0) add(header::kLastStatus, std::to_string(h.last_status));
  if (!h.last_error.empty()) add(header::kLastError, h.last_error.substr(0, 512));
  if (h.due_at_ms) add(header::kDueAt, std::to_string(*h.due_at_ms));
  return out;
}

}  // namespace hookrelay
