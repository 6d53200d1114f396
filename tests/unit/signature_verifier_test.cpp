// Behaviour every scheme shares, run against each: round trip with the signer, tampering, wrong
// and rotated secrets, missing and garbage headers, and the timestamp window edges. Scheme
// specifics and published vectors are in signature_verifier_schemes_test.cpp.
#include "shared/signing/signature_verifier.h"

#include <gtest/gtest.h>

#include <cctype>
#include <ostream>

#include "shared/signing/crypto.h"
#include "shared/signing/webhook_signer.h"
#include "tests/unit/webhook_test_support.h"

namespace hookrelay {
namespace {

using testing::HeaderList;
using testing::lookup_of;
using testing::with;
using testing::without;

constexpr int64_t kNow = 1700000000;
constexpr int kTolerance = 300;
const std::string kBody = R"({"id":"evt_body","event_id":"Ev_body","n":1})";

struct SchemeCase {
  std::string label;
  SourceConfig source;  // secrets left empty; filled per test
  std::string secret_a;
  std::string secret_b;
  std::string signature_header;
  std::string timestamp_header;  // a separate header; empty when none or embedded
  bool timestamped = false;
};

void PrintTo(const SchemeCase& c, std::ostream* os) { *os << c.label; }

SourceConfig scheme_source(SchemeKind kind) {
  SourceConfig s = testing::source_of(kind);
  s.tolerance_seconds = kTolerance;
  return s;
}

std::vector<SchemeCase> all_cases() {
  const std::string whsec_a = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  const std::string whsec_b = "whsec_" + base64_encode("a second, rotated key!!");
  SourceConfig hmac_sha1 = scheme_source(SchemeKind::kHmac);
  hmac_sha1.header = "X-Signature";
  hmac_sha1.prefix = "sha1=";
  hmac_sha1.algorithm = "sha1";
  hmac_sha1.event_id_header = "X-Event-Id";
  SourceConfig hmac_ts = scheme_source(SchemeKind::kHmac);
  hmac_ts.header = "X-Signature";
  hmac_ts.encoding = "base64";
  hmac_ts.algorithm = "sha512";
  hmac_ts.timestamp_header = "X-Timestamp";
  return {
      {"standard_webhooks", scheme_source(SchemeKind::kStandardWebhooks), whsec_a, whsec_b,
       "webhook-signature", "webhook-timestamp", true},
      {"github", scheme_source(SchemeKind::kGithub), "gh-a", "gh-b", "X-Hub-Signature-256", "",
       false},
      {"stripe", scheme_source(SchemeKind::kStripe), "whsec_a", "whsec_b", "Stripe-Signature", "",
       true},
      {"slack", scheme_source(SchemeKind::kSlack), "slack-a", "slack-b", "X-Slack-Signature",
       "X-Slack-Request-Timestamp", true},
      {"shopify", scheme_source(SchemeKind::kShopify), "shop-a", "shop-b", "X-Shopify-Hmac-Sha256",
       "", false},
      {"hmac_sha1_hex", hmac_sha1, "c-a", "c-b", "X-Signature", "", false},
      {"hmac_sha512_base64_ts", hmac_ts, "c-a", "c-b", "X-Signature", "X-Timestamp", true},
  };
}

class EveryScheme : public ::testing::TestWithParam<SchemeCase> {
 protected:
  SourceConfig source(std::vector<std::string> secrets) const {
    SourceConfig s = GetParam().source;
    s.secrets = std::move(secrets);
    return s;
  }
  HeaderList sign(const std::string& secret, const std::string& body, int64_t at) const {
    return provider_headers(source({secret}), body, at, "evt-42");
  }
  Result<VerifiedWebhook> verify(const std::vector<std::string>& secrets, HeaderList headers,
                                 const std::string& body = kBody) const {
    return verify_webhook(source(secrets), lookup_of(std::move(headers)), body, kNow);
  }
  void expect_error(const Result<VerifiedWebhook>& r, const char* code) const {
    ASSERT_FALSE(r) << GetParam().label << " unexpectedly verified";
    EXPECT_EQ(r.error().code, code) << r.error().message;
    EXPECT_FALSE(r.error().message.empty());
  }
};

TEST_P(EveryScheme, RoundTripFromProviderHeadersVerifies) {
  const auto& c = GetParam();
  auto r = verify({c.secret_a}, sign(c.secret_a, kBody, kNow));
  ASSERT_TRUE(r) << r.error().code << ": " << r.error().message;
  EXPECT_FALSE(r->event_id.empty());
}

TEST_P(EveryScheme, TamperedBodyIsBadSignature) {
  const auto& c = GetParam();
  const auto headers = sign(c.secret_a, kBody, kNow);
  expect_error(verify({c.secret_a}, headers, kBody + " "), "bad_signature");
  std::string flipped = kBody;
  flipped[5] ^= 1;
  expect_error(verify({c.secret_a}, headers, flipped), "bad_signature");
}

TEST_P(EveryScheme, WrongSecretIsBadSignatureAndTheMessageLeaksNothing) {
  const auto& c = GetParam();
  const auto headers = sign(c.secret_b, kBody, kNow);
  auto r = verify({c.secret_a}, headers);
  expect_error(r, "bad_signature");
  const std::string& msg = r.error().message;
  EXPECT_EQ(msg.find(c.secret_a), std::string::npos) << msg;
  EXPECT_EQ(msg.find(c.secret_b), std::string::npos) << msg;
  // Neither the received nor the expected signature, in any encoding.
  for (const auto& expected_headers : {headers, sign(c.secret_a, kBody, kNow)}) {
    for (const auto& [name, value] : expected_headers) {
      if (name == c.signature_header) {
        EXPECT_EQ(msg.find(value), std::string::npos) << msg;
      }
    }
  }
}

// How many secrets are in rotation is the operator's business: one and three give one answer.
TEST_P(EveryScheme, TheAnswerToAWrongSecretIsTheSameWhateverTheSecretsInRotation) {
  const auto& c = GetParam();
  const auto headers = sign(c.secret_b, kBody, kNow);
  auto one = verify({c.secret_a}, headers);
  auto three = verify({c.secret_a, c.secret_a, c.secret_a}, headers);
  expect_error(one, "bad_signature");
  expect_error(three, "bad_signature");
  EXPECT_EQ(one.error().message, three.error().message);
  EXPECT_NE(one.error().message.find(c.signature_header), std::string::npos) << one.error().message;
}

TEST_P(EveryScheme, RotationAcceptsAnyConfiguredSecret) {
  const auto& c = GetParam();
  EXPECT_TRUE(verify({c.secret_a, c.secret_b}, sign(c.secret_b, kBody, kNow)));
  EXPECT_TRUE(verify({c.secret_b, c.secret_a}, sign(c.secret_b, kBody, kNow)));
  EXPECT_TRUE(verify({c.secret_a, c.secret_b}, sign(c.secret_a, kBody, kNow)));
}

TEST_P(EveryScheme, MissingSignatureHeader) {
  const auto& c = GetParam();
  auto r = verify({c.secret_a}, without(sign(c.secret_a, kBody, kNow), c.signature_header));
  expect_error(r, "missing_signature");
  EXPECT_NE(r.error().message.find(c.signature_header), std::string::npos) << r.error().message;
}

TEST_P(EveryScheme, GarbageSignatureHeaderIsMalformed) {
  const auto& c = GetParam();
  for (const char* garbage : {"garbage!!", "", "v1,", "=,=,="}) {
    expect_error(
        verify({c.secret_a}, with(sign(c.secret_a, kBody, kNow), c.signature_header, garbage)),
        "malformed_signature");
  }
}

// The header-only check refuses what verify_webhook refuses from the headers alone, with the same
// error, and lets a well-formed header through whatever the body, the secret or the clock.
TEST_P(EveryScheme, TheHeaderCheckAgreesWithVerificationOnTheHeadersAlone) {
  const auto& c = GetParam();
  const auto signed_headers = sign(c.secret_a, kBody, kNow);
  auto check = [&](HeaderList headers) {
    return check_signature_headers(source({c.secret_a}), lookup_of(std::move(headers)));
  };
  EXPECT_TRUE(check(signed_headers));
  EXPECT_TRUE(check(sign(c.secret_b, kBody, kNow))) << "a wrong secret is the body's to decide";
  EXPECT_TRUE(check(sign(c.secret_a, kBody, kNow - 86400))) << "a stale time is the clock's";
  for (const HeaderList& bad : {without(signed_headers, c.signature_header),
                                with(signed_headers, c.signature_header, "garbage!!")}) {
    auto header_only = check(bad);
    auto full = verify({c.secret_a}, bad);
    ASSERT_FALSE(header_only);
    ASSERT_FALSE(full);
    EXPECT_EQ(header_only.error().code, full.error().code);
    EXPECT_EQ(header_only.error().message, full.error().message);
  }
}

TEST_P(EveryScheme, HeaderNamesAreLookedUpCaseInsensitively) {
  const auto& c = GetParam();
  HeaderList lowered;
  for (auto [name, value] : sign(c.secret_a, kBody, kNow)) {
    for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    lowered.emplace_back(name, value);
  }
  EXPECT_TRUE(verify({c.secret_a}, lowered));
}

TEST_P(EveryScheme, TimestampWindowEdges) {
  const auto& c = GetParam();
  if (!c.timestamped) {
    // Schemes without a timestamp cannot expire: an old signature stays valid.
    EXPECT_TRUE(verify({c.secret_a}, sign(c.secret_a, kBody, kNow - 100000)));
    return;
  }
  EXPECT_TRUE(verify({c.secret_a}, sign(c.secret_a, kBody, kNow - kTolerance)));
  EXPECT_TRUE(verify({c.secret_a}, sign(c.secret_a, kBody, kNow + kTolerance)));
  auto past = verify({c.secret_a}, sign(c.secret_a, kBody, kNow - kTolerance - 1));
  expect_error(past, "stale_timestamp");
  EXPECT_NE(past.error().message.find("past"), std::string::npos) << past.error().message;
  auto future = verify({c.secret_a}, sign(c.secret_a, kBody, kNow + kTolerance + 1));
  expect_error(future, "stale_timestamp");
  EXPECT_NE(future.error().message.find("future"), std::string::npos) << future.error().message;
}

TEST_P(EveryScheme, MissingOrNonNumericTimestampHeader) {
  const auto& c = GetParam();
  if (c.timestamp_header.empty()) GTEST_SKIP() << "no separate timestamp header";
  const auto headers = sign(c.secret_a, kBody, kNow);
  expect_error(verify({c.secret_a}, without(headers, c.timestamp_header)), "missing_timestamp");
  for (const char* bad : {"", "12ab", "-5", "1.5", "99999999999999999999999"}) {
    expect_error(verify({c.secret_a}, with(headers, c.timestamp_header, bad)),
                 "malformed_signature");
  }
}

INSTANTIATE_TEST_SUITE_P(Schemes, EveryScheme, ::testing::ValuesIn(all_cases()),
                         [](const auto& param_info) { return param_info.param.label; });

}  // namespace
}  // namespace hookrelay
