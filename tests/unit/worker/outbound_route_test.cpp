// The requests a route's deliveries make: the route's own headers and one signature per secret,
// each verified by the signature verifier as a receiver would.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "shared/ascii.h"
#include "shared/config/config.h"
#include "shared/kafka/wire_contract.h"
#include "shared/signing/signature_verifier.h"
#include "tests/unit/webhook_test_support.h"
#include "tests/unit/worker/route_test_support.h"
#include "worker/message_expander.h"
#include "worker/outbound_request.h"

namespace hookrelay {
namespace {

constexpr const char* kNew = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr const char* kOld = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

TEST(OutboundRequest, RouteHeadersAreSentAndWinOverForwardedOnes) {
  auto config = parse_config(std::string(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes:
  gh:
    - name: ci
      url: "http://127.0.0.1:9/ci"
      headers: { Authorization: "Bearer ${CI_TOKEN}", X-GitHub-Event: rewritten, User-Agent: ci-relay }
      secrets: [")") + kNew + "\", \"" +
                                 kOld + "\"]\n",
                             [](const std::string& k) -> std::optional<std::string> {
                               if (k == "CI_TOKEN") return std::string("tok-1");
                               return std::nullopt;
                             });
  ASSERT_TRUE(config) << config.error().message;
  auto out = expand_message(testing::github_webhook("push", R"({"a":1})"), *config, nullptr);
  ASSERT_TRUE(out);
  HttpCall call = build_http_call(out->at(0), 1'700'000'000'000, 5000);
  std::multimap<std::string, std::string> sent;
  for (const auto& [k, v] : call.headers) sent.emplace(k, v);
  EXPECT_EQ(sent.count("Authorization"), 1u);
  EXPECT_EQ(sent.find("Authorization")->second, "Bearer tok-1");
  EXPECT_EQ(sent.count("x-github-event"), 0u) << "the forwarded copy is dropped";
  EXPECT_EQ(sent.find("X-GitHub-Event")->second, "rewritten");
  EXPECT_EQ(sent.find("User-Agent")->second, "ci-relay");
  ASSERT_EQ(sent.count("webhook-signature"), 1u);

  // Two signatures, space-separated; a receiver that knows only one of the secrets accepts.
  const std::string signature = sent.find("webhook-signature")->second;
  EXPECT_EQ(std::count(signature.begin(), signature.end(), ' '), 1) << signature;
  testing::HeaderList received(call.headers.begin(), call.headers.end());
  for (const char* secret : {kNew, kOld}) {
    auto verified = verify_webhook(testing::source_of(SchemeKind::kStandardWebhooks, {secret}),
                                   testing::lookup_of(received), R"({"a":1})", 1'700'000'000);
    EXPECT_TRUE(verified) << secret << ": " << verified.error().message;
  }
  auto other = verify_webhook(
      testing::source_of(SchemeKind::kStandardWebhooks, {"whsec_dGVzdHRlc3R0ZXN0dGVzdA=="}),
      testing::lookup_of(received), R"({"a":1})", 1'700'000'000);
  EXPECT_FALSE(other) << "a third secret does not verify";
}

// Ingest keeps a webhook's Content-Type twice in its message: as hr-content-type and among the
// forwarded headers. The delivery sends it once; a message with only hr-content-type still
// sends it.
TEST(OutboundRequest, TheProvidersContentTypeIsSentOnce) {
  auto config = parse_config(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes: { gh: [ { name: ci, url: "http://127.0.0.1:9/ci" } ] }
)",
                             [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(config) << config.error().message;
  for (bool forwarded : {true, false}) {
    auto m = testing::github_webhook("push", R"({"a":1})");
    m.headers.emplace_back(std::string(header::kContentType), "application/json");
    if (forwarded) m.headers.emplace_back("hr-fwd-content-type", "application/json");
    auto out = expand_message(m, *config, nullptr);
    ASSERT_TRUE(out) << out.error().message;
    HttpCall call = build_http_call(out->at(0), 1'700'000'000'000, 5000);
    std::vector<std::string> types;
    for (const auto& [k, v] : call.headers) {
      if (ascii_iequals(k, "content-type")) types.push_back(v);
    }
    EXPECT_EQ(types, std::vector<std::string>{"application/json"}) << "forwarded: " << forwarded;
  }
}

Config no_routes() {
  auto config = parse_config("sources: { gh: { scheme: github, secrets: [s] } }\n",
                             [](const std::string&) { return std::nullopt; });
  EXPECT_TRUE(config) << config.error().message;
  return *config;
}

// A call as ingest writes it to hookrelay.calls: its envelope's headers are `headers`, a JSON list
// of [name, value] pairs.
ConsumedMessage call_message(const std::string& headers, const std::string& method = "POST",
                             const std::string& body = "{}") {
  ConsumedMessage m;
  m.topic = std::string(kCallsTopic);
  m.value = std::make_shared<const std::string>(body);
  m.headers = {{"hr-kind", "call"},
               {"hr-event-id", "call_1"},
               {"hr-received-at", "1000"},
               {"hr-call", R"({"url":"http://127.0.0.1:9/c","method":")" + method +
                               R"(","headers":)" + headers +
                               R"(,"idempotency_key":"order-42","timeout_ms":1000,)"
                               R"("max_attempts":3,"max_age_seconds":60})"}};
  return m;
}

std::multimap<std::string, std::string> sent_headers(const HttpCall& call) {
  std::multimap<std::string, std::string> sent;
  for (const auto& [k, v] : call.headers) sent.emplace(ascii_lower(k), v);
  return sent;
}

// hookrelay sets neither User-Agent nor any webhook-* on a call, and ingest accepts them: they are
// sent as given (User-Agent replaces the worker's own), with one Idempotency-Key and one
// X-Hookrelay-Attempt of hookrelay's.
TEST(OutboundRequest, ACallsOwnHeadersAreSentAsGiven) {
  auto out = expand_message(
      call_message(R"([["User-Agent","x"],["webhook-signature","v1,abc"],["Webhook-Id","w1"],)"
                   R"(["Accept-Encoding","gzip"],["X-Trace","t"]])"),
      no_routes(), nullptr);
  ASSERT_TRUE(out) << out.error().message;
  HttpCall call = build_http_call(out->at(0), 1'700'000'000'000, 5000);
  auto sent = sent_headers(call);
  for (const auto& [name, value] :
       std::vector<std::pair<std::string, std::string>>{{"user-agent", "x"},
                                                        {"webhook-signature", "v1,abc"},
                                                        {"webhook-id", "w1"},
                                                        {"accept-encoding", "gzip"},
                                                        {"x-trace", "t"},
                                                        {"idempotency-key", "order-42"},
                                                        {"x-hookrelay-attempt", "1"}}) {
    ASSERT_EQ(sent.count(name), 1u) << name;
    EXPECT_EQ(sent.find(name)->second, value) << name;
  }
  EXPECT_EQ(sent.count("webhook-timestamp"), 0u) << "hookrelay signs no call";
  EXPECT_EQ(call.headers.size(), 7u);
}

// Ingest refuses a call's Proxy-* and X-Hookrelay-* headers; an envelope from an ingest that took
// them is still delivered, without a Proxy-* and without a second X-Hookrelay-Attempt.
TEST(OutboundRequest, ACallEnvelopesProxyAndAttemptHeadersAreNotSent) {
  auto out = expand_message(
      call_message(R"([["Proxy-Foo","p"],["X-Hookrelay-Attempt","99"],["X-A","1"]])"), no_routes(),
      nullptr);
  ASSERT_TRUE(out) << out.error().message;
  auto sent = sent_headers(build_http_call(out->at(0), 1'700'000'000'000, 5000));
  EXPECT_EQ(sent.count("proxy-foo"), 0u);
  ASSERT_EQ(sent.count("x-hookrelay-attempt"), 1u);
  EXPECT_EQ(sent.find("x-hookrelay-attempt")->second, "1");
  EXPECT_EQ(sent.count("x-a"), 1u);
}

// Exactly one Content-Type, the first, whatever the case of its name: a webhook provider that
// repeated it, and a call from an ingest that took two names differing in case.
TEST(OutboundRequest, OneContentTypeIsSentTheFirstInAnyCase) {
  auto config = parse_config(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes: { gh: [ { name: ci, url: "http://127.0.0.1:9/ci" } ] }
)",
                             [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(config) << config.error().message;
  const auto types_of = [](const HttpCall& call) {
    std::vector<std::string> types;
    for (const auto& [k, v] : call.headers) {
      if (ascii_iequals(k, "content-type")) types.push_back(v);
    }
    return types;
  };
  auto m = testing::github_webhook("push", R"({"a":1})");
  m.headers.emplace_back(std::string(header::kContentType), "application/json");
  m.headers.emplace_back("hr-fwd-content-type", "application/json");
  m.headers.emplace_back(std::string(header::kContentType), "text/plain");
  m.headers.emplace_back("hr-fwd-content-type", "text/plain");
  m.headers.emplace_back("hr-fwd-Content-Type", "text/html");
  auto hook = expand_message(m, *config, nullptr);
  ASSERT_TRUE(hook) << hook.error().message;
  EXPECT_EQ(types_of(build_http_call(hook->at(0), 1'700'000'000'000, 5000)),
            std::vector<std::string>{"application/json"});

  // Written some other way: only a mixed-case forwarded one, and hr-content-type.
  auto mixed = testing::github_webhook("push", R"({"a":1})");
  mixed.headers.emplace_back("hr-fwd-Content-Type", "text/html");
  mixed.headers.emplace_back(std::string(header::kContentType), "text/html");
  auto mixed_out = expand_message(mixed, *config, nullptr);
  ASSERT_TRUE(mixed_out) << mixed_out.error().message;
  EXPECT_EQ(types_of(build_http_call(mixed_out->at(0), 1'700'000'000'000, 5000)),
            std::vector<std::string>{"text/html"});

  auto call = expand_message(
      call_message(R"([["Content-Type","application/json"],["content-type","text/plain"]])"),
      no_routes(), nullptr);
  ASSERT_TRUE(call) << call.error().message;
  EXPECT_EQ(types_of(build_http_call(call->at(0), 1'700'000'000'000, 5000)),
            std::vector<std::string>{"application/json"});
}

// A provider that sent no Content-Type: the delivery carries none (and CurlSender adds none).
TEST(OutboundRequest, AWebhookWithoutContentTypeCarriesNone) {
  auto config = parse_config(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes: { gh: [ { name: ci, url: "http://127.0.0.1:9/ci" } ] }
)",
                             [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(config) << config.error().message;
  auto out = expand_message(testing::github_webhook("push", "a=1"), *config, nullptr);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(
      sent_headers(build_http_call(out->at(0), 1'700'000'000'000, 5000)).count("content-type"), 0u);
}

TEST(OutboundRequest, OneSecretOneSignatureAndNoSecretNoSignature) {
  auto config = parse_config(std::string(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes:
  gh:
    - { name: signed, url: "http://127.0.0.1:9/a", secret: ")") +
                                 kNew + R"(" }
    - { name: plain, url: "http://127.0.0.1:9/b" }
)",
                             [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(config) << config.error().message;
  auto out = expand_message(testing::github_webhook("push", "{}"), *config, nullptr);
  ASSERT_TRUE(out);
  ASSERT_EQ(out->size(), 2u);
  auto signature_of = [](const HttpCall& call) {
    for (const auto& [k, v] : call.headers) {
      if (k == "webhook-signature") return v;
    }
    return std::string();
  };
  const std::string one = signature_of(build_http_call(out->at(0), 1'700'000'000'000, 5000));
  EXPECT_EQ(one.rfind("v1,", 0), 0u);
  EXPECT_EQ(one.find(' '), std::string::npos);
  EXPECT_EQ(signature_of(build_http_call(out->at(1), 1'700'000'000'000, 5000)), "");
}

}  // namespace
}  // namespace hookrelay
