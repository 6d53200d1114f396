// The wire contract: the one numeric header parser, and the worker reading what it wrote.
#include "shared/kafka/wire_contract.h"

#include <gtest/gtest.h>

#include "worker/message_expander.h"
#include "worker/outbound_request.h"

namespace hookrelay {
namespace {

TEST(ParseHeaderInt, TakesOnlyPlainDecimalsInRange) {
  EXPECT_EQ(parse_header_int("0", 0, 10), 0);
  EXPECT_EQ(parse_header_int("10", 0, 10), 10);
  EXPECT_EQ(parse_header_int("1700000000000", 0, kMaxTimestampMs), 1700000000000);
  for (const char* bad :
       {"", " 1", "1 ", "+1", "1e3", "0x10", "11", "-1", "9223372036854775808", "soon", "1.5"}) {
    EXPECT_FALSE(parse_header_int(bad, 0, 10)) << "'" << bad << "'";
  }
}

Config one_route() {
  auto c = parse_config(R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes:
  gh:
    - { name: a, url: "http://127.0.0.1:9/a" }
)",
                        [](const std::string&) { return std::nullopt; });
  EXPECT_TRUE(c) << c.error().message;
  return *c;
}

ConsumedMessage retry(std::vector<std::pair<std::string, std::string>> extra) {
  ConsumedMessage m;
  m.topic = retry_topic(0);
  m.value = std::make_shared<const std::string>("{}");
  m.headers = {{std::string(header::kKind), "webhook"}, {std::string(header::kSource), "gh"},
               {std::string(header::kEventId), "e1"},   {std::string(header::kReceivedAt), "1000"},
               {std::string(header::kRoute), "a"},      {std::string(header::kAttempt), "1"}};
  for (auto& h : extra) m.headers.push_back(std::move(h));
  return m;
}

TEST(WireContract, ARetryKeepsTheDeliveryKeyItWasClaimedUnder) {
  auto d = expand_message(retry({{"hr-delivery-key", "wh:gh:e1:a-as-first-claimed"}}), one_route());
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->at(0).key, "wh:gh:e1:a-as-first-claimed");
  auto derived = expand_message(retry({}), one_route());
  ASSERT_TRUE(derived);
  EXPECT_EQ(derived->at(0).key, "wh:gh:e1:a") << "without the header the key is derived as before";
}

TEST(WireContract, AFirstMessageIgnoresACarriedDeliveryKey) {
  // A replayed webhook goes to every route: one carried key must not become all of theirs.
  auto m = retry({{"hr-delivery-key", "wh:gh:e1:other"}});
  m.topic = std::string(kWebhooksTopic);
  auto d = expand_message(m, one_route());
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->at(0).key, "wh:gh:e1:a");
}

TEST(WireContract, ABadDueOrFirstAttemptTimeIsMalformedAndNamed) {
  for (const char* name : {"hr-due-at", "hr-first-attempt-at"}) {
    auto m = retry({{name, "soon"}});
    auto d = expand_message(m, one_route());
    ASSERT_FALSE(d) << name;
    EXPECT_EQ(d.error().code, "malformed_message");
    EXPECT_NE(d.error().message.find(name), std::string::npos) << d.error().message;
    auto bad = bad_numeric_headers(m);
    ASSERT_EQ(bad.size(), 1u);
    EXPECT_EQ(bad[0], name);
  }
  EXPECT_TRUE(bad_numeric_headers(retry({{"hr-due-at", "1000"}})).empty());
}

// Ingest now refuses a GET or HEAD call with a body; one an older ingest accepted is delivered as
// it always was, without the body (libcurl sends none), not dead-lettered after its 202.
TEST(WireContract, AGetOrHeadCallWithABodyFromAnOlderIngestIsSentWithoutIt) {
  for (const char* method : {"GET", "HEAD"}) {
    ConsumedMessage m;
    m.topic = std::string(kCallsTopic);
    m.value = std::make_shared<const std::string>("dropped");
    m.headers = {{"hr-kind", "call"},
                 {"hr-event-id", "call_1"},
                 {"hr-received-at", "1000"},
                 {"hr-call", std::string(R"({"url":"http://127.0.0.1:9/c","method":")") + method +
                                 R"(","headers":[],"idempotency_key":"k","timeout_ms":1000,)"
                                 R"("max_attempts":3,"max_age_seconds":60})"}};
    auto d = expand_message(m, one_route());
    ASSERT_TRUE(d) << d.error().message;
    HttpCall call = build_http_call(d->at(0), 1'700'000'000'000, 5000);
    EXPECT_EQ(call.method, method);
    EXPECT_EQ(call.body, nullptr) << method;
  }
}

}  // namespace
}  // namespace hookrelay
