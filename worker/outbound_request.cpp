#include "worker/outbound_request.h"

#include <algorithm>

#include "shared/log.h"
#include "shared/wire_contract.h"
#include "shared/webhook_signer.h"

namespace hookrelay {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Headers hookrelay sets itself on every delivery; a forwarded copy is dropped.
bool replaced(std::string_view name) {
  for (std::string_view h : {"webhook-id", "webhook-timestamp", "webhook-signature", "idempotency-key",
                             "user-agent", "accept-encoding", "x-hookrelay-attempt"}) {
    if (iequals(name, h)) return true;
  }
  return false;
}

}  // namespace

HttpCall build_http_call(const Delivery& d, int64_t now_ms, int connect_timeout_ms) {
  HttpCall call;
  call.url = d.url;
  call.method = d.method;
  call.body = d.body;
  call.timeout_ms = d.timeout_ms;
  call.connect_timeout_ms = std::min(connect_timeout_ms, d.timeout_ms);
  for (const auto& [k, v] : d.headers) {
    if (!replaced(k)) call.headers.emplace_back(k, v);
  }
  if (d.kind == "call") {
    call.headers.emplace_back("Idempotency-Key", d.message_id);
  } else {
    int64_t ts = now_ms / 1000;
    call.headers.emplace_back("webhook-id", d.message_id);
    call.headers.emplace_back("webhook-timestamp", std::to_string(ts));
    if (!d.signing_secret.empty()) {
      static const std::string kEmpty;
      auto sig = standard_webhooks_signature(d.signing_secret, d.message_id, ts, d.body ? *d.body : kEmpty);
      // The secret was validated at start-up, so this cannot fail for a configured route.
      if (sig) call.headers.emplace_back("webhook-signature", *sig);
    }
  }
  call.headers.emplace_back("X-Hookrelay-Attempt", std::to_string(d.attempt));
  return call;
}

std::vector<MessageHeader> redelivery_headers(const Delivery& d, const AttemptHistory& h) {
  std::vector<MessageHeader> out;
  out.reserve(d.carried_headers.size() + 10);
  for (const auto& [k, v] : d.carried_headers) out.push_back({k, v});
  auto add = [&out](std::string_view name, std::string value) { out.push_back({std::string(name), std::move(value)}); };
  add(header::kDeliveryKey, d.key);
  if (d.kind == "webhook") add(header::kRoute, d.destination);
  add(header::kOriginTopic, d.origin_topic);
  add(header::kAttempt, std::to_string(h.attempts_made));
  if (h.first_attempt_at_ms > 0) add(header::kFirstAttemptAt, std::to_string(h.first_attempt_at_ms));
  if (h.last_attempt_at_ms > 0) add(header::kLastAttemptAt, std::to_string(h.last_attempt_at_ms));
  if (h.last_status > 0) add(header::kLastStatus, std::to_string(h.last_status));
  if (!h.last_error.empty()) add(header::kLastError, h.last_error.substr(0, 512));
  if (h.due_at_ms) add(header::kDueAt, std::to_string(*h.due_at_ms));
  return out;
}

}  // namespace hookrelay
