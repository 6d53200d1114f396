#include "shared/signing/webhook_signer.h"

#include <gtest/gtest.h>

#include <map>

#include "tests/unit/webhook_test_support.h"

namespace hookrelay {
namespace {

using testing::source_of;

std::map<std::string, std::string> as_map(
    const std::vector<std::pair<std::string, std::string>>& v) {
  return {v.begin(), v.end()};
}

TEST(StandardWebhooksSignature, MatchesThePublishedSpecExample) {
  auto sig = standard_webhooks_signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                         "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                                         R"({"test": 2432232314})");
  ASSERT_TRUE(sig) << sig.error().message;
  EXPECT_EQ(*sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST(StandardWebhooksSignature, RejectsSecretsNotOfTheWhsecForm) {
  for (const char* bad :
       {"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_not base64", "whsec_abc"}) {
    auto sig = standard_webhooks_signature(bad, "msg", 1, "{}");
    ASSERT_FALSE(sig) << bad;
    EXPECT_EQ(sig.error().code, "invalid_secret");
    if (std::string_view(bad).size() > 8) {
      EXPECT_EQ(sig.error().message.find(bad), std::string::npos) << sig.error().message;
    }
  }
}

TEST(ProviderHeaders, StandardWebhooksSpecExample) {
  auto h = as_map(provider_headers(
      source_of(SchemeKind::kStandardWebhooks, {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
      R"({"test": 2432232314})", 1614265330, "msg_p5jXN8AQM9LWM0D4loKWxJek"));
  EXPECT_EQ(h, (std::map<std::string, std::string>{
                   {"webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"},
                   {"webhook-timestamp", "1614265330"},
                   {"webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}}));
}

TEST(ProviderHeaders, GithubDocsExampleSignsWithTheFirstSecret) {
  auto h = as_map(
      provider_headers(source_of(SchemeKind::kGithub, {"It's a Secret to Everybody", "other"}),
                       "Hello, World!", 0, "delivery-1"));
  EXPECT_EQ(h, (std::map<std::string, std::string>{
                   {"X-Hub-Signature-256",
                    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"},
                   {"X-GitHub-Delivery", "delivery-1"}}));
}

TEST(ProviderHeaders, StripeKnownValue) {
  auto h = as_map(provider_headers(source_of(SchemeKind::kStripe, {"whsec_test_secret"}),
                                   R"({"id":"evt_123","object":"event"})", 1700000000, "ignored"));
  EXPECT_EQ(
      h,
      (std::map<std::string, std::string>{
          {"Stripe-Signature",
           "t=1700000000,v1=dd87ab365008cd15388d35ae8467b42bbc97bb9efe68060ed81e123be0e21c6e"}}));
}

TEST(ProviderHeaders, SlackDocumentedExample) {
  const std::string body =
      "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
      "G8PSS9T3V"
      "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
      "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%"
      "2F96rGlfmibIGlgcZRskXaIFfN"
      "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
  auto h =
      as_map(provider_headers(source_of(SchemeKind::kSlack, {"8f742231b10e8888abcd99yyyzzz85a5"}),
                              body, 1531420618, "ignored"));
  EXPECT_EQ(h, (std::map<std::string, std::string>{
                   {"X-Slack-Request-Timestamp", "1531420618"},
                   {"X-Slack-Signature",
                    "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"}}));
}

TEST(ProviderHeaders, ShopifyKnownValue) {
  auto h = as_map(provider_headers(source_of(SchemeKind::kShopify, {"shpss_secret"}), R"({"id":1})",
                                   0, "wh-1"));
  EXPECT_EQ(h, (std::map<std::string, std::string>{
                   {"X-Shopify-Hmac-Sha256", "xocA3LkeJ/RvNrkxep1EUtFHuj7rIoIqZYaLU26LyPQ="},
                   {"X-Shopify-Webhook-Id", "wh-1"}}));
}

TEST(ProviderHeaders, GenericHmacUsesConfiguredHeadersEncodingAndAlgorithm) {
  SourceConfig s = source_of(SchemeKind::kHmac, {"c"});
  s.header = "X-Sig";
  s.encoding = "base64";
  s.algorithm = "sha512";
  s.timestamp_header = "X-Ts";
  s.event_id_header = "X-Id";
  EXPECT_EQ(as_map(provider_headers(s, "hello", 1700000000, "e-1")),
            (std::map<std::string, std::string>{
                {"X-Sig",
                 "l16p+WMhN1vUXFlMc0jJLFmOyw0ym6ZDPm95yPlkcGeH7sKTE5K1X2fW+zcB/"
                 "vegrWNeRh0s5KL+HPvr5IZlfA=="},
                {"X-Ts", "1700000000"},
                {"X-Id", "e-1"}}));
  s = source_of(SchemeKind::kHmac, {"c"});
  s.header = "X-Sig";
  s.prefix = "sha1=";
  s.algorithm = "sha1";
  EXPECT_EQ(as_map(provider_headers(s, "hello", 0, "e-1")),
            (std::map<std::string, std::string>{
                {"X-Sig", "sha1=3d1e8d9fbef2dbef35d6f7facda5273db0112cb8"}}));
}

TEST(ProviderHeaders, NoUsableSecretLeavesTheSignatureOut) {
  auto none = as_map(provider_headers(source_of(SchemeKind::kGithub, {}), "x", 0, "d"));
  EXPECT_EQ(none, (std::map<std::string, std::string>{{"X-GitHub-Delivery", "d"}}));
  auto bad =
      as_map(provider_headers(source_of(SchemeKind::kStandardWebhooks, {"whsec_!!"}), "x", 5, "m"));
  EXPECT_EQ(bad.count("webhook-signature"), 0u);
  EXPECT_EQ(bad.at("webhook-id"), "m");
}

}  // namespace
}  // namespace hookrelay
