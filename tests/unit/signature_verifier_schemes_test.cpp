// Per-scheme specifics: published vectors, header grammar, and where each scheme's event id is.
// Known values for Stripe, Shopify and generic hmac were computed independently (Python hmac).
#include <gtest/gtest.h>

#include "shared/signing/crypto.h"
#include "shared/signing/signature_verifier.h"
#include "tests/unit/webhook_test_support.h"

namespace hookrelay {
namespace {

using testing::HeaderList;
using testing::lookup_of;
using testing::source_of;

Result<VerifiedWebhook> verify(const SourceConfig& s, HeaderList headers, std::string_view body,
                               int64_t now) {
  return verify_webhook(s, lookup_of(std::move(headers)), body, now);
}

std::string code_of(const Result<VerifiedWebhook>& r) { return r ? "ok" : r.error().code; }

// --- Standard Webhooks -----------------------------------------------------------------------

const SourceConfig kStandard =
    source_of(SchemeKind::kStandardWebhooks, {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"});
constexpr const char* kStdBody = R"({"test": 2432232314})";
constexpr const char* kStdSig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

HeaderList std_headers(std::string signature) {
  return {{"webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"},
          {"webhook-timestamp", "1614265330"},
          {"webhook-signature", std::move(signature)}};
}

TEST(StandardWebhooks, PublishedSpecExampleVerifiesAndYieldsTheWebhookId) {
  auto r = verify(kStandard, std_headers(kStdSig), kStdBody, 1614265330);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->event_id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
}

TEST(StandardWebhooks, SignatureListSkipsOtherVersionsAndUnmatchedEntries) {
  const std::string other = "v1," + base64_encode(std::string(32, 'x'));
  EXPECT_EQ(code_of(verify(kStandard, std_headers("v1a,abcd " + other + "  " + kStdSig), kStdBody,
                           1614265330)),
            "ok");
  EXPECT_EQ(
      code_of(verify(kStandard, std_headers("v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
                     kStdBody, 1614265330)),
      "malformed_signature");
  EXPECT_EQ(code_of(verify(kStandard, std_headers(other), kStdBody, 1614265330)), "bad_signature");
  EXPECT_EQ(code_of(verify(kStandard, std_headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE"),
                           kStdBody, 1614265330)),
            "malformed_signature");  // unpadded base64
}

TEST(StandardWebhooks, MissingIdIsMalformedAndTheIdIsSigned) {
  HeaderList no_id = {{"webhook-timestamp", "1614265330"}, {"webhook-signature", kStdSig}};
  auto r = verify(kStandard, no_id, kStdBody, 1614265330);
  EXPECT_EQ(code_of(r), "malformed_signature");
  HeaderList other_id = testing::with(std_headers(kStdSig), "webhook-id", "msg_other");
  EXPECT_EQ(code_of(verify(kStandard, other_id, kStdBody, 1614265330)), "bad_signature");
}

TEST(StandardWebhooks, UndecodableSecretIsNotUsedButOthersAre) {
  SourceConfig s = kStandard;
  s.secrets.insert(s.secrets.begin(), "whsec_not base64!");
  EXPECT_EQ(code_of(verify(s, std_headers(kStdSig), kStdBody, 1614265330)), "ok");
  s.secrets = {"whsec_not base64!"};
  auto r = verify(s, std_headers(kStdSig), kStdBody, 1614265330);
  EXPECT_EQ(code_of(r), "bad_signature");
  EXPECT_EQ(r.error().message.find("whsec_"), std::string::npos) << r.error().message;
}

// --- GitHub ----------------------------------------------------------------------------------

const SourceConfig kGithub = source_of(SchemeKind::kGithub, {"It's a Secret to Everybody"});
constexpr const char* kGithubSig =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

TEST(Github, PublishedDocsExampleVerifies) {
  auto r = verify(kGithub, {{"X-Hub-Signature-256", kGithubSig}}, "Hello, World!", 0);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->event_id, fallback_event_id("Hello, World!"));
  auto with_delivery = verify(kGithub,
                              {{"X-Hub-Signature-256", kGithubSig},
                               {"X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"}},
                              "Hello, World!", 0);
  ASSERT_TRUE(with_delivery);
  EXPECT_EQ(with_delivery->event_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
}

TEST(Github, HeaderGrammar) {
  const std::string hex = std::string(kGithubSig).substr(7);
  auto code = [](std::string value) {
    return code_of(
        verify(kGithub, {{"X-Hub-Signature-256", std::move(value)}}, "Hello, World!", 0));
  };
  EXPECT_EQ(code(hex), "malformed_signature");  // no sha256=
  EXPECT_EQ(code("sha1=" + hex), "malformed_signature");
  EXPECT_EQ(code("sha256=" + hex.substr(1)), "malformed_signature");  // odd length
  EXPECT_EQ(code("sha256=" + hex.substr(2)), "malformed_signature");  // 31 bytes
  EXPECT_EQ(code("sha256=zz" + hex.substr(2)), "malformed_signature");
  EXPECT_EQ(code(" " + std::string(kGithubSig) + " "), "ok");  // surrounding OWS
  // The old SHA-1 header alone is not accepted.
  EXPECT_EQ(code_of(verify(kGithub, {{"X-Hub-Signature", "sha1=abcd"}}, "Hello, World!", 0)),
            "missing_signature");
}

// --- Stripe ----------------------------------------------------------------------------------

const SourceConfig kStripe = source_of(SchemeKind::kStripe, {"whsec_test_secret"});
constexpr const char* kStripeBody = R"({"id":"evt_123","object":"event"})";
constexpr const char* kStripeV1 =
    "dd87ab365008cd15388d35ae8467b42bbc97bb9efe68060ed81e123be0e21c6e";

std::string stripe_code(const std::string& header) {
  return code_of(verify(kStripe, {{"Stripe-Signature", header}}, kStripeBody, 1700000000));
}

TEST(Stripe, KnownValueVerifiesWithSecretUsedAsIsAndEventIdFromBody) {
  auto r = verify(kStripe, {{"Stripe-Signature", std::string("t=1700000000,v1=") + kStripeV1}},
                  kStripeBody, 1700000000);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->event_id, "evt_123");
}

TEST(Stripe, SeveralV1ElementsAnyMatchPasses) {
  const std::string wrong(64, 'a');
  EXPECT_EQ(stripe_code("t=1700000000,v1=" + wrong + ",v1=" + kStripeV1 + ",v0=" + wrong), "ok");
  EXPECT_EQ(stripe_code("t=1700000000, v1=nothex, v1=" + std::string(kStripeV1)), "ok");
  EXPECT_EQ(stripe_code("t=1700000000,v1=" + wrong + ",v1=" + wrong), "bad_signature");
}

TEST(Stripe, MalformedHeaders) {
  const std::string v1 = std::string("v1=") + kStripeV1;
  EXPECT_EQ(stripe_code(v1), "malformed_signature");              // no t=
  EXPECT_EQ(stripe_code("t=1700000000"), "malformed_signature");  // no v1=
  EXPECT_EQ(stripe_code("t=1700000000,v0=" + std::string(kStripeV1)), "malformed_signature");
  EXPECT_EQ(stripe_code("t=1700000000,v1=xyz"), "malformed_signature");
  EXPECT_EQ(stripe_code("t=abc," + v1), "malformed_signature");
  EXPECT_EQ(stripe_code("t=," + v1), "malformed_signature");
  EXPECT_EQ(stripe_code(";;;"), "malformed_signature");
  auto r = verify(kStripe, {{"Stripe-Signature", "t=1700000000"}}, kStripeBody, 1700000000);
  EXPECT_EQ(r.error().message, "Stripe-Signature has no v1= element");
}

TEST(Stripe, TimestampIsSignedAndChecked) {
  EXPECT_EQ(stripe_code("t=1700000001,v1=" + std::string(kStripeV1)), "bad_signature");
  auto stale = verify(kStripe, {{"Stripe-Signature", std::string("t=1700000000,v1=") + kStripeV1}},
                      kStripeBody, 1700000301);
  EXPECT_EQ(code_of(stale), "stale_timestamp");
}

// --- Slack -----------------------------------------------------------------------------------

// The worked example in Slack's "Verifying requests from Slack" documentation.
constexpr const char* kSlackBody =
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%"
    "2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

TEST(Slack, DocumentedExampleVerifiesAndFormBodyFallsBackToHash) {
  const SourceConfig s = source_of(SchemeKind::kSlack, {"8f742231b10e8888abcd99yyyzzz85a5"});
  const HeaderList headers = {
      {"X-Slack-Request-Timestamp", "1531420618"},
      {"X-Slack-Signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"}};
  auto r = verify(s, headers, kSlackBody, 1531420618);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->event_id, fallback_event_id(kSlackBody));
  auto wrong_version =
      testing::with(headers, "X-Slack-Signature",
                    "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503");
  EXPECT_EQ(code_of(verify(s, wrong_version, kSlackBody, 1531420618)), "malformed_signature");
}

// --- Shopify ---------------------------------------------------------------------------------

TEST(Shopify, KnownValueAndBadBase64) {
  const SourceConfig s = source_of(SchemeKind::kShopify, {"shpss_secret"});
  auto r = verify(s,
                  {{"X-Shopify-Hmac-Sha256", "xocA3LkeJ/RvNrkxep1EUtFHuj7rIoIqZYaLU26LyPQ="},
                   {"X-Shopify-Webhook-Id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"}},
                  R"({"id":1})", 0);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->event_id, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043");
  EXPECT_EQ(
      code_of(verify(s, {{"X-Shopify-Hmac-Sha256", "xocA3LkeJ/RvNrkxep1EUtFHuj7rIoIqZYaLU26LyPQ"}},
                     R"({"id":1})", 0)),
      "malformed_signature");
  EXPECT_EQ(
      code_of(verify(s, {{"X-Shopify-Hmac-Sha256", "xocA3LkeJ_RvNrkxep1EUtFHuj7rIoIqZYaLU26LyPQ="}},
                     R"({"id":1})", 0)),
      "malformed_signature");
}

// --- Generic hmac ----------------------------------------------------------------------------

TEST(GenericHmac, Sha1HexWithPrefixAndSha512Base64WithTimestamp) {
  SourceConfig sha1 = source_of(SchemeKind::kHmac, {"c"});
  sha1.header = "X-Sig";
  sha1.prefix = "sha1=";
  sha1.algorithm = "sha1";
  EXPECT_EQ(code_of(verify(sha1, {{"X-Sig", "sha1=3d1e8d9fbef2dbef35d6f7facda5273db0112cb8"}},
                           "hello", 0)),
            "ok");
  EXPECT_EQ(
      code_of(verify(sha1, {{"X-Sig", "3d1e8d9fbef2dbef35d6f7facda5273db0112cb8"}}, "hello", 0)),
      "malformed_signature");

  SourceConfig sha512 = source_of(SchemeKind::kHmac, {"c"});
  sha512.header = "X-Sig";
  sha512.encoding = "base64";
  sha512.algorithm = "sha512";
  sha512.timestamp_header = "X-Ts";
  const HeaderList h = {
      {"X-Ts", "1700000000"},
      {"X-Sig",
       "l16p+WMhN1vUXFlMc0jJLFmOyw0ym6ZDPm95yPlkcGeH7sKTE5K1X2fW+zcB/vegrWNeRh0s5KL+HPvr5IZlfA=="}};
  EXPECT_EQ(code_of(verify(sha512, h, "hello", 1700000000)), "ok");
  EXPECT_EQ(code_of(verify(sha512, testing::with(h, "X-Ts", "1700000001"), "hello", 1700000000)),
            "bad_signature");
}

// --- Event ids -------------------------------------------------------------------------------

TEST(EventId, FromEachNaturalPlace) {
  const std::string json = R"({"id":"evt_9","event_id":"Ev9","type":"x"})";
  auto id = [&](SourceConfig s, HeaderList h) {
    return extract_event_id(s, lookup_of(std::move(h)), json);
  };
  EXPECT_EQ(id(source_of(SchemeKind::kStandardWebhooks, {}), {{"webhook-id", "msg_1"}}), "msg_1");
  EXPECT_EQ(id(source_of(SchemeKind::kGithub, {}), {{"x-github-delivery", "d-1"}}), "d-1");
  EXPECT_EQ(id(source_of(SchemeKind::kStripe, {}), {}), "evt_9");
  EXPECT_EQ(id(source_of(SchemeKind::kSlack, {}), {}), "Ev9");
  EXPECT_EQ(id(source_of(SchemeKind::kShopify, {}), {{"X-Shopify-Webhook-Id", "s-1"}}), "s-1");
  SourceConfig hmac = source_of(SchemeKind::kHmac, {});
  hmac.event_id_header = "X-Event";
  EXPECT_EQ(id(hmac, {{"X-Event", "e-1"}}), "e-1");
}

TEST(EventId, FallsBackToSha256OfTheBody) {
  EXPECT_EQ(fallback_event_id(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  auto id = [](SchemeKind k, std::string_view body, HeaderList h = {}) {
    return extract_event_id(source_of(k, {}), lookup_of(std::move(h)), body);
  };
  const std::string body = "not json";
  for (SchemeKind k : {SchemeKind::kStandardWebhooks, SchemeKind::kGithub, SchemeKind::kStripe,
                       SchemeKind::kSlack, SchemeKind::kShopify, SchemeKind::kHmac}) {
    EXPECT_EQ(id(k, body), fallback_event_id(body)) << scheme_name(k);
  }
  // JSON, but the id is missing, not a string, nested, or empty.
  for (const char* b : {R"({"object":"event"})", R"({"id":12})", R"({"data":{"id":"evt_x"}})",
                        R"({"id":""})", R"(["id","evt_x"])", R"({"id":"evt_1")"}) {
    EXPECT_EQ(id(SchemeKind::kStripe, b), fallback_event_id(b)) << b;
  }
  // Ids that would poison a database key or a Kafka header are not used.
  const std::string nul_id = std::string(R"({"id":"evt)") + "\\u0000" + R"("})";
  EXPECT_EQ(id(SchemeKind::kStripe, nul_id), fallback_event_id(nul_id));
  EXPECT_EQ(id(SchemeKind::kGithub, body, {{"X-GitHub-Delivery", std::string(256, 'a')}}),
            fallback_event_id(body));
  EXPECT_EQ(id(SchemeKind::kGithub, body, {{"X-GitHub-Delivery", "a b"}}), fallback_event_id(body));
  EXPECT_EQ(id(SchemeKind::kGithub, body, {{"X-GitHub-Delivery", std::string(255, 'a')}}),
            std::string(255, 'a'));
}

}  // namespace
}  // namespace hookrelay
