// Classification of one HTTP delivery attempt: success, worth retrying, or permanent.
//
// 2xx succeeds. 408, 425, 429, 5xx and failures of the network path (connect, DNS, timeout,
// send/receive, our own circuit breaker or rate limit) are retryable. Other 4xx, any 3xx (we never
// follow redirects), a destination refused by the SSRF guard and a failed TLS verification are
// permanent: repeating them cannot help. A status outside 200..599 with no transport error is a
// broken receiver and is retried, since the attempt budget bounds the cost.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

namespace hookrelay {

enum class TransportError {
  kNone,
  kConnectFailed,
  kTimeout,
  kDnsFailed,
  kTlsFailed,           // the receiver's certificate refused (verification, issuer, pin), or no
                        // cipher in common: it stays so until someone changes it
  kTlsHandshakeFailed,  // the TLS handshake broke off (reset, closed, timed out in it): transient
  kTlsLocalFailed,      // this worker's own TLS setup (CA bundle, client certificate) is unusable
  kSendFailed,
  kRecvFailed,
  kBlockedBySsrfGuard,
  kTooManyRedirects,  // a redirect was returned; we do not follow it
  kCircuitOpen,
  kRateLimited,
  kOther,
};

enum class OutcomeKind { kSuccess, kRetryable, kPermanent };

struct Outcome {
  OutcomeKind kind = OutcomeKind::kPermanent;
  // Metric label, one of outcome_labels(): "2xx", "408", "429", "5xx", "4xx", "timeout", ...
  std::string label;

  bool operator==(const Outcome&) const = default;
};

// http_status is read only when err is kNone.
Outcome classify(TransportError err, int http_status);

// Every label classify() can return, for pre-registering metric series.
const std::vector<std::string>& outcome_labels();

const char* outcome_kind_name(OutcomeKind kind);  // "success" | "retryable" | "permanent"

}  // namespace hookrelay
