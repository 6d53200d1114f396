#include "shared/call_request.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

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

// An envelope written to hookrelay.calls some other way than by ingest may not name a header
// that ingest refuses a caller (Host, Content-Length, Transfer-Encoding, ...), in any case.
TEST(CallEnvelope, AHeaderHookrelaySetsIsRefused) {
  const auto envelope = [](const std::string& name) {
    return R"({"url":"http://h/","method":"POST","headers":[[")" + name +
           R"(","x"]],"idempotency_key":"k","timeout_ms":1000,"max_attempts":3,)"
           R"("max_age_seconds":60})";
  };
  for (const char* name : {"Host", "host", "Content-Length", "Transfer-Encoding", "connection",
                           "Keep-Alive", "TE", "Trailer", "Upgrade", "Expect", "Idempotency-Key",
                           "Proxy-Authorization", "Proxy-Connection"}) {
    auto e = parse_call_envelope(envelope(name));
    ASSERT_FALSE(e) << name;
    EXPECT_EQ(e.error().code, "bad_envelope");
    EXPECT_NE(e.error().message.find(std::string("headers.") + name + " is set by hookrelay"),
              std::string::npos)
        << e.error().message;
  }
  auto ok = parse_call_envelope(envelope("X-Trace"));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->headers, (std::vector<std::pair<std::string, std::string>>{{"X-Trace", "x"}}));
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

// A key given twice is read as the last by this parser and as the first by others (a proxy, a
// log, a signature check that looked at the body): refused, naming it, in the request object and
// in its headers object, whichever value each copy has.
TEST(CallRequest, AKeyGivenTwiceIsRefusedNamingIt) {
  for (const auto& [body, message] : std::vector<std::pair<std::string, std::string>>{
           {R"({"url":"http://a/","url":"http://b/"})", "url: given twice"},
           {R"({"url":"http://a/","idempotency_key":"k1","idempotency_key":"k2"})",
            "idempotency_key: given twice"},
           {R"({"url":"http://a/","idempotency_key":"k","idempotency_key":"k"})",
            "idempotency_key: given twice"},
           {R"({"url":"http://a/","timeout_ms":1000,"method":"GET","timeout_ms":2000})",
            "timeout_ms: given twice"},
           {R"({"url":"http://a/","headers":{"X-A":"1"},"headers":{"X-B":"2"}})",
            "headers: given twice"},
           {R"({"url":"http://a/","headers":{"X-A":"1","X-B":"2","X-A":"3"}})",
            "headers.X-A: given twice"},
           // After a nested value inside the headers, the headers object's own keys still count.
           {R"({"url":"http://a/","headers":{"X-A":"1","X-N":{"a":[{}]},"X-A":"1"}})",
            "headers.X-A: given twice"},
       }) {
    auto c = parse_call_request(body, limits());
    ASSERT_FALSE(c) << body;
    EXPECT_EQ(c.error().code, "invalid_request") << body;
    EXPECT_EQ(c.error().message, message) << body;
  }
  // Header names differing in case are different JSON keys: each is its own header (but
  // Content-Type, which is sent once: TwoContentTypesDifferingOnlyInCaseAreRefused).
  auto cased =
      parse_call_request(R"({"url":"http://a/","headers":{"X-A":"1","x-a":"2"}})", limits());
  ASSERT_TRUE(cased) << cased.error().message;
  EXPECT_EQ(cased->headers.size(), 2u);
  // The same key in different objects, or inside a value the request does not read as an object
  // of its own, is not given twice in one object.
  auto nested = parse_call_request(R"({"url":"http://a/","headers":{"url":"x"}})", limits());
  ASSERT_TRUE(nested) << nested.error().message;
  // Invalid JSON is malformed_json whatever keys came before the fault.
  auto broken = parse_call_request(R"({"url":"http://a/","url":)", limits());
  ASSERT_FALSE(broken);
  EXPECT_EQ(broken.error().code, "malformed_json");
}

// A call's headers are sent as given: what the worker would not send (a header that frames the
// request or belongs to one connection, every Proxy-*, the ones hookrelay sets on a call) is
// answered 400 naming it, never accepted and dropped.
TEST(CallRequest, AHeaderTheWorkerWouldNotSendIsRefusedNamingIt) {
  for (const char* name :
       {"Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Upgrade", "TE",
        "Trailer", "Expect", "expect", "Idempotency-Key", "Proxy-Authorization", "Proxy-Connection",
        "Proxy-Foo", "proxy-bar", "X-Hookrelay-Attempt", "x-hookrelay-attempt"}) {
    auto c = parse_call_request(
        std::string(R"({"url":"http://a/","headers":{"X-Ok":"1",")") + name + R"(":"v"}})",
        limits());
    ASSERT_FALSE(c) << name;
    EXPECT_EQ(c.error().code, "invalid_request") << name;
    EXPECT_EQ(c.error().message.rfind(std::string("headers.") + name + ": ", 0), 0u)
        << c.error().message;
  }
  // hookrelay sets neither User-Agent nor any webhook-* on a call: the caller's are sent.
  auto sent = parse_call_request(
      R"({"url":"http://a/","headers":{"User-Agent":"x","webhook-signature":"v1,abc",)"
      R"("Webhook-Id":"w1","Accept-Encoding":"gzip","Authorization":"Bearer t","X-Proxy":"p",)"
      R"("X-Hookrelay-Tenant":"t1"}})",
      limits());
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_EQ(sent->headers.size(), 7u);
}

// One Content-Type is sent: two whose names differ only in case are refused, naming the second.
TEST(CallRequest, TwoContentTypesDifferingOnlyInCaseAreRefused) {
  auto c = parse_call_request(
      R"({"url":"http://a/","headers":{"Content-Type":"a/b","content-type":"c/d"}})", limits());
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, "invalid_request");
  EXPECT_EQ(c.error().message.rfind("headers.content-type: Content-Type is given twice", 0), 0u)
      << c.error().message;
  auto one =
      parse_call_request(R"({"url":"http://a/","headers":{"CONTENT-TYPE":"a/b"}})", limits());
  ASSERT_TRUE(one) << one.error().message;
}

// libcurl sends no body with GET or HEAD: such a call with one is refused, naming the rule.
TEST(CallRequest, AGetOrHeadCallWithABodyIsRefused) {
  for (const char* method : {"GET", "HEAD"}) {
    auto text = parse_call_request(
        std::string(R"({"url":"http://a/","method":")") + method + R"(","body":"x"})", limits());
    ASSERT_FALSE(text) << method;
    EXPECT_EQ(text.error().code, "invalid_request");
    EXPECT_EQ(text.error().message, "body: a GET or HEAD call has no body");
    auto bytes = parse_call_request(
        std::string(R"({"url":"http://a/","method":")") + method + R"(","body_base64":"AAE="})",
        limits());
    ASSERT_FALSE(bytes) << method;
    EXPECT_EQ(bytes.error().message, "body_base64: a GET or HEAD call has no body");
    // An empty body is no body: nothing is dropped.
    auto empty = parse_call_request(
        std::string(R"({"url":"http://a/","method":")") + method + R"(","body":""})", limits());
    ASSERT_TRUE(empty) << empty.error().message;
  }
  auto del = parse_call_request(R"({"url":"http://a/","method":"DELETE","body":"x"})", limits());
  ASSERT_TRUE(del) << del.error().message;
}

// The key is sent as the Idempotency-Key header: a receiver reads it without leading or trailing
// spaces and tabs, and libcurl sends no header for a blank one. Refused, naming the field.
TEST(CallRequest, ABlankOrPaddedIdempotencyKeyIsRefused) {
  // JSON text: each \\t below is the escape of a tab in the request.
  for (const char* key : {" ", "   ", "\\t", " \\t ", " k", "k ", "\\tk", "k\\t", " k "}) {
    auto c = parse_call_request(
        std::string(R"({"url":"http://a/","idempotency_key":")") + key + R"("})", limits());
    ASSERT_FALSE(c) << "'" << key << "'";
    EXPECT_EQ(c.error().code, "invalid_request");
    EXPECT_EQ(c.error().message, "idempotency_key: must not begin or end with a space or tab")
        << "'" << key << "'";
  }
  auto inner = parse_call_request(R"({"url":"http://a/","idempotency_key":"order 42"})", limits());
  ASSERT_TRUE(inner) << inner.error().message;
  EXPECT_EQ(inner->idempotency_key, "order 42");
}

// Deep nesting is parsed without recursion (and freed without it), duplicates or not.
TEST(CallRequest, DeeplyNestedBodiesAreRefusedWithoutCrashing) {
  const std::size_t depth = 100000;
  std::string arrays =
      R"({"url":"http://a/","body":)" + std::string(depth, '[') + std::string(depth, ']') + "}";
  auto a = parse_call_request(arrays, limits());
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().message.rfind("body: must be a string", 0), 0u) << a.error().message;
  std::string objects = R"({"url":"http://a/","headers":)";
  for (std::size_t i = 0; i < depth; ++i) objects += R"({"k":1,"k":)";
  objects += "0" + std::string(depth, '}') + "}";
  auto o = parse_call_request(objects, limits());
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().code, "invalid_request");
}

// Containers below the two levels the request reads are walked, not built: what they hold changes
// no answer, and a key given twice is still found where the request reads it.
TEST(CallRequest, WhatLiesBelowTheLevelsReadChangesNoAnswer) {
  auto nested = parse_call_request(
      R"({"url":"http://a/","headers":{"X":{"a":[1,2,{"b":[[3]]}]},"Y":"2"}})", limits());
  ASSERT_FALSE(nested);
  EXPECT_EQ(nested.error().message.rfind("headers.X: value must be a string", 0), 0u)
      << nested.error().message;
  auto twice = parse_call_request(R"({"url":"http://a/","headers":{"X":{"X":1,"X":[2]},"X":"a"}})",
                                  limits());
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().message.rfind("headers.X: given twice", 0), 0u) << twice.error().message;
  auto wide = parse_call_request(R"({"url":"http://a/","body":[)" + std::string(200000, '[') +
                                     std::string(200000, ']') + R"(,{"k":[1]}],"method":"PUT"})",
                                 limits());
  ASSERT_FALSE(wide);
  EXPECT_EQ(wide.error().message.rfind("body: must be a string", 0), 0u) << wide.error().message;
  auto fine = parse_call_request(
      R"({"url":"http://a/","method":"PUT","headers":{"X":"1"},"body":"x"})", limits());
  ASSERT_TRUE(fine) << fine.error().message;
  EXPECT_EQ(fine->method, "PUT");
  EXPECT_EQ(fine->body, "x");
}

// A number past what a signed 64-bit integer holds is kept unsigned by the parser: compared as it
// is and quoted as it was sent, never cast to -1 first.
TEST(CallRequest, AnOutOfRangeNumberIsQuotedAsSent) {
  for (const auto& [body, message] : std::vector<std::pair<std::string, std::string>>{
           {R"({"url":"http://a/","timeout_ms":18446744073709551615})",
            "timeout_ms: must be between 100 and 120000, got 18446744073709551615"},
           {R"({"url":"http://a/","timeout_ms":9223372036854775808})",
            "timeout_ms: must be between 100 and 120000, got 9223372036854775808"},
           {R"({"url":"http://a/","timeout_ms":4294967396})",
            "timeout_ms: must be between 100 and 120000, got 4294967396"},
           {R"({"url":"http://a/","max_attempts":-9223372036854775808})",
            "max_attempts: must be between 1 and 100, got -9223372036854775808"},
           {R"({"url":"http://a/","max_age_seconds":-1})",
            "max_age_seconds: must be between 1 and 604800, got -1"},
       }) {
    auto c = parse_call_request(body, limits());
    ASSERT_FALSE(c) << body;
    EXPECT_EQ(c.error().code, "invalid_request") << body;
    EXPECT_EQ(c.error().message, message) << body;
  }
  auto edge =
      parse_call_request(R"({"url":"http://a/","timeout_ms":120000,"max_attempts":1})", limits());
  ASSERT_TRUE(edge) << edge.error().message;
  EXPECT_EQ(edge->timeout_ms, 120000);
  EXPECT_EQ(edge->max_attempts, 1);
  // The worker's envelope reader holds the same numbers to its own range.
  auto envelope = parse_call_envelope(
      R"({"url":"http://a/","method":"GET","headers":[],"idempotency_key":"k",)"
      R"("timeout_ms":18446744073709551615,"max_attempts":1,"max_age_seconds":1})");
  ASSERT_FALSE(envelope);
  EXPECT_NE(envelope.error().message.find("got 18446744073709551615"), std::string::npos)
      << envelope.error().message;
}

}  // namespace
}  // namespace hookrelay
