#include "worker/delivery_outcome.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace hookrelay {
namespace {

constexpr OutcomeKind kOk = OutcomeKind::kSuccess;
constexpr OutcomeKind kRetry = OutcomeKind::kRetryable;
constexpr OutcomeKind kPerm = OutcomeKind::kPermanent;

struct StatusRow {
  int status;
  OutcomeKind kind;
  const char* label;
};

TEST(DeliveryOutcome, StatusClassBoundaries) {
  const StatusRow rows[] = {
      {0, kRetry, "bad_status"},  {100, kRetry, "bad_status"}, {199, kRetry, "bad_status"},
      {200, kOk, "2xx"},          {204, kOk, "2xx"},           {299, kOk, "2xx"},
      {300, kPerm, "3xx"},        {302, kPerm, "3xx"},         {399, kPerm, "3xx"},
      {400, kPerm, "4xx"},        {404, kPerm, "4xx"},         {407, kPerm, "4xx"},
      {408, kRetry, "408"},       {409, kPerm, "4xx"},         {424, kPerm, "4xx"},
      {425, kRetry, "425"},       {428, kPerm, "4xx"},         {429, kRetry, "429"},
      {430, kPerm, "4xx"},        {499, kPerm, "4xx"},         {500, kRetry, "5xx"},
      {503, kRetry, "5xx"},       {599, kRetry, "5xx"},        {600, kRetry, "bad_status"},
      {-1, kRetry, "bad_status"},
  };
  for (const StatusRow& r : rows) {
    EXPECT_EQ(classify(TransportError::kNone, r.status), (Outcome{r.kind, r.label}))
        << "status " << r.status;
  }
}

struct ErrorRow {
  TransportError err;
  OutcomeKind kind;
  const char* label;
};

const ErrorRow kErrorRows[] = {
    {TransportError::kConnectFailed, kRetry, "connect_error"},
    {TransportError::kTimeout, kRetry, "timeout"},
    {TransportError::kDnsFailed, kRetry, "dns_error"},
    {TransportError::kTlsFailed, kPerm, "tls_error"},
    {TransportError::kTlsHandshakeFailed, kRetry, "tls_handshake_error"},
    {TransportError::kTlsLocalFailed, kRetry, "tls_local_error"},
    {TransportError::kSendFailed, kRetry, "send_error"},
    {TransportError::kRecvFailed, kRetry, "recv_error"},
    {TransportError::kBlockedBySsrfGuard, kPerm, "ssrf_blocked"},
    {TransportError::kTooManyRedirects, kPerm, "redirect"},
    {TransportError::kCircuitOpen, kRetry, "circuit_open"},
    {TransportError::kRateLimited, kRetry, "rate_limited"},
    {TransportError::kOther, kRetry, "other_error"},
};

TEST(DeliveryOutcome, EveryTransportError) {
  for (const ErrorRow& r : kErrorRows) {
    EXPECT_EQ(classify(r.err, 0), (Outcome{r.kind, r.label})) << r.label;
  }
}

TEST(DeliveryOutcome, TransportErrorWinsOverAnyStatus) {
  // A status left over from a partial response must not turn a failed transfer into a success.
  for (const ErrorRow& r : kErrorRows) {
    for (int status : {200, 302, 404, 503}) {
      EXPECT_EQ(classify(r.err, status).label, r.label) << r.label << " " << status;
    }
  }
}

TEST(DeliveryOutcome, LabelsAreABoundedKnownSet) {
  const auto& labels = outcome_labels();
  auto known = [&](const std::string& l) {
    return std::find(labels.begin(), labels.end(), l) != labels.end();
  };
  for (int status = -1; status <= 700; ++status) {
    EXPECT_TRUE(known(classify(TransportError::kNone, status).label)) << status;
  }
  for (const ErrorRow& r : kErrorRows) EXPECT_TRUE(known(r.label)) << r.label;
  std::vector<std::string> sorted = labels;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
}

TEST(DeliveryOutcome, KindNames) {
  EXPECT_STREQ(outcome_kind_name(kOk), "success");
  EXPECT_STREQ(outcome_kind_name(kRetry), "retryable");
  EXPECT_STREQ(outcome_kind_name(kPerm), "permanent");
}

}  // namespace
}  // namespace hookrelay
