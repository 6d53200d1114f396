#include "shared/call_request.h"

#include <gtest/gtest.h>

namespace hookrelay {
namespace {

CallLimits limits() { return CallLimits{}; }

TEST(CallRequest, ParsesAFullRequestWithDefaults) {
  auto c = parse_call_request(R"({"url":"https://api.example.com/v1/x?y=1","method":"PUT",
      "headers":{"X-Trace":"abc","Content-Type":"application/json"},"body":"{\"a\":1}",
      "idempotency_key":"order-42","timeout_ms":2500})",
                              limits());
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->url, "https://api.example.com/v1/x?y=1");
  EXPECT_EQ(c->method, "PUT");
  ASSERT_EQ(c->headers.size(), 2u);
  EXPECT_EQ(c->body, "{\"a\":1}");
  EXPECT_EQ(c->idempotency_key, "order-42");
  EXPECT_EQ(c->timeout_ms, 2500);
  EXPECT_EQ(c->max_attempts, 8);
  EXPECT_EQ(c->max_age_seconds, 86400);
}

TEST(CallRequest, DecodesBase64BodyByteForByte) {
  auto c = parse_call_request(R"({"url":"http://h/","body_base64":"AAEC/w=="})", limits());
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->body, std::string("\x00\x01\x02\xff", 4));
}

TEST(CallRequest, GeneratesAnIdempotencyKeyWhenMissing) {
  auto a = parse_call_request(R"({"url":"http://h/"})", limits());
  auto b = parse_call_request(R"({"url":"http://h/"})", limits());
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(a->idempotency_key.empty());
  EXPECT_NE(a->idempotency_key, b->idempotency_key);
}

TEST(CallRequest, CallIdIsStablePerIdempotencyKey) {
  EXPECT_EQ(call_id_for("k1"), call_id_for("k1"));
  EXPECT_NE(call_id_for("k1"), call_id_for("k2"));
  EXPECT_EQ(call_id_for("k1").size(), 5u + 24u);
}

TEST(CallRequest, EnvelopeRoundTrips) {
  auto c = parse_call_request(R"({"url":"http://h/p","method":"PATCH","headers":{"A":"1"},
      "idempotency_key":"k","max_attempts":3,"max_age_seconds":60,"timeout_ms":1000})",
                              limits());
  ASSERT_TRUE(c);
  auto back = parse_call_envelope(call_envelope(*c));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->url, "http://h/p");
  EXPECT_EQ(back->method, "PATCH");
  EXPECT_EQ(back->headers, c->headers);
  EXPECT_EQ(back->max_attempts, 3);
  EXPECT_EQ(back->max_age_seconds, 60);
  EXPECT_EQ(back->timeout_ms, 1000);
  EXPECT_FALSE(parse_call_envelope("nope"));
}

struct Bad {
  const char* json;
  const char* code;
  const char* message_prefix;
};

class CallRequestErrors : public ::testing::TestWithParam<Bad> {};

TEST_P(CallRequestErrors, NameTheProblem) {
  auto c = parse_call_request(GetParam().json, limits());
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, GetParam().code);
  EXPECT_EQ(c.error().message.rfind(GetParam().message_prefix, 0), 0u) << c.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Validation, CallRequestErrors,
    ::testing::Values(
        Bad{"{not json", "malformed_json", "request body is not valid JSON"},
        Bad{"[1,2]", "malformed_json", "request body must be a JSON object"},
        Bad{R"({})", "invalid_request", "url: is required"},
        Bad{R"({"url":5})", "invalid_request", "url: must be a string"},
        Bad{R"({"url":"ftp://h/x"})", "invalid_request", "url: only http and https"},
        Bad{R"({"url":"file:///etc/passwd"})", "invalid_request", "url: "},
        Bad{R"({"url":"not a url"})", "invalid_request", "url: contains spaces"},
        Bad{R"({"url":"http://user:pw@h/"})", "invalid_request", "url: must not carry credentials"},
        Bad{R"({"url":"http://h/","method":"TRACE"})", "invalid_request", "method: must be one of"},
        Bad{R"({"url":"http://h/","headers":{"X-A":"a\r\nInjected: 1"}})", "invalid_request",
            "headers.X-A: value contains CR"},
        Bad{R"({"url":"http://h/","headers":{"Bad Name":"a"}})", "invalid_request",
            "headers.Bad Name: is not a valid"},
        Bad{R"({"url":"http://h/","headers":{"Host":"evil"}})", "invalid_request",
            "headers.Host: is set by hookrelay"},
        Bad{R"({"url":"http://h/","headers":{"X":1}})", "invalid_request",
            "headers.X: value must be a string"},
        Bad{R"({"url":"http://h/","headers":[]})", "invalid_request", "headers: must be an object"},
        Bad{R"({"url":"http://h/","body":"a","body_base64":"YQ=="})", "invalid_request",
            "body: give body or"},
        Bad{R"({"url":"http://h/","body_base64":"!!!"})", "invalid_request",
            "body_base64: is not valid"},
        Bad{R"({"url":"http://h/","timeout_ms":5})", "invalid_request",
            "timeout_ms: must be between"},
        Bad{R"({"url":"http://h/","timeout_ms":"fast"})", "invalid_request",
            "timeout_ms: must be an integer"},
        Bad{R"({"url":"http://h/","max_attempts":0})", "invalid_request",
            "max_attempts: must be between"},
        Bad{R"({"url":"http://h/","max_age_seconds":99999999})", "invalid_request",
            "max_age_seconds: must be between"},
        Bad{R"({"url":"http://h/","idempotency_key":""})", "invalid_request",
            "idempotency_key: must be 1-255"},
        Bad{R"({"url":"http://h/","surprise":true})", "invalid_request",
            "surprise: unknown field"}));

}  // namespace
}  // namespace hookrelay
