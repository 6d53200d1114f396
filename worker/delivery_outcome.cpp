#include "worker/delivery_outcome.h"

namespace hookrelay {
namespace {

Outcome classify_status(int status) {
  if (status >= 200 && status <= 299) return {OutcomeKind::kSuccess, "2xx"};
  if (status >= 300 && status <= 399) return {OutcomeKind::kPermanent, "3xx"};
  if (status == 408) return {OutcomeKind::kRetryable, "408"};
  if (status == 425) return {OutcomeKind::kRetryable, "425"};
  if (status == 429) return {OutcomeKind::kRetryable, "429"};
  if (status >= 400 && status <= 499) return {OutcomeKind::kPermanent, "4xx"};
  if (status >= 500 && status <= 599) return {OutcomeKind::kRetryable, "5xx"};
  return {OutcomeKind::kRetryable, "bad_status"};
}

}  // namespace

Outcome classify(TransportError err, int http_status) {
  switch (err) {
    case TransportError::kNone:
      return classify_status(http_status);
    case TransportError::kConnectFailed:
      return {OutcomeKind::kRetryable, "connect_error"};
    case TransportError::kTimeout:
      return {OutcomeKind::kRetryable, "timeout"};
    case TransportError::kDnsFailed:
      return {OutcomeKind::kRetryable, "dns_error"};
    case TransportError::kTlsFailed:
      return {OutcomeKind::kPermanent, "tls_error"};
    case TransportError::kTlsHandshakeFailed:
      // A load balancer that resets connections mid-handshake (a deploy, overload) is as
      // transient as one that refuses them.
      return {OutcomeKind::kRetryable, "tls_handshake_error"};
    case TransportError::kTlsLocalFailed:
      // The worker's own setup, not the receiver: every https delivery would be dead-lettered on
      // its first attempt; retried, they wait for an operator (the attempt budget bounds it).
      return {OutcomeKind::kRetryable, "tls_local_error"};
    case TransportError::kSendFailed:
      return {OutcomeKind::kRetryable, "send_error"};
    case TransportError::kRecvFailed:
      return {OutcomeKind::kRetryable, "recv_error"};
    case TransportError::kBlockedBySsrfGuard:
      return {OutcomeKind::kPermanent, "ssrf_blocked"};
    case TransportError::kTooManyRedirects:
      return {OutcomeKind::kPermanent, "redirect"};
    case TransportError::kCircuitOpen:
      return {OutcomeKind::kRetryable, "circuit_open"};
    case TransportError::kRateLimited:
      return {OutcomeKind::kRetryable, "rate_limited"};
    case TransportError::kOther:
      // Unknown failures are retried: the attempt budget bounds the cost, and giving up at once
      // on something transient would dead-letter deliverable work.
      return {OutcomeKind::kRetryable, "other_error"};
  }
  return {OutcomeKind::kRetryable, "other_error"};  // unreachable for valid enum values
}

const std::vector<std::string>& outcome_labels() {
  static const std::vector<std::string> kLabels = {"2xx",
                                                   "3xx",
                                                   "408",
                                                   "425",
                                                   "429",
                                                   "4xx",
                                                   "5xx",
                                                   "bad_status",
                                                   "connect_error",
                                                   "timeout",
                                                   "dns_error",
                                                   "tls_error",
                                                   "tls_handshake_error",
                                                   "tls_local_error",
                                                   "send_error",
                                                   "recv_error",
                                                   "ssrf_blocked",
                                                   "redirect",
                                                   "circuit_open",
                                                   "rate_limited",
                                                   "other_error"};
  return kLabels;
}

const char* outcome_kind_name(OutcomeKind kind) {
  switch (kind) {
    case OutcomeKind::kSuccess:
      return "success";
    case OutcomeKind::kRetryable:
      return "retryable";
    case OutcomeKind::kPermanent:
      return "permanent";
  }
  return "unknown";
}

}  // namespace hookrelay
