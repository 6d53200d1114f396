// Outside bytes that used to stop or confuse a process, each checked at the function that now
// handles it: JSON writing, URL host keys, numbers in Kafka headers and hr-call envelopes, IP
// literals with a NUL, and the config warning for bodies Kafka cannot carry.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "shared/ascii.h"
#include "shared/call_request.h"
#include "shared/config/config.h"
#include "shared/http/http_types.h"
#include "shared/http/http_url.h"
#include "shared/json_writer.h"
#include "shared/kafka/wire_contract.h"
#include "shared/utf8.h"
#include "worker/message_expander.h"
#include "worker/outbound_request.h"
#include "worker/ssrf_guard.h"

namespace hookrelay {
namespace {

using json = nlohmann::json;

TEST(JsonText, ReplacesInvalidUtf8InsteadOfThrowing) {
  json j = {{"error", std::string("bad \xff\xfe byte, cut \xe2\x82")}, {"ok", "\xc3\xa9"}};
  std::string text;
  ASSERT_NO_THROW(text = json_text(j));
  ASSERT_TRUE(json::accept(text)) << text;
  auto back = json::parse(text);
  EXPECT_EQ(back["error"], "bad \xef\xbf\xbd\xef\xbf\xbd byte, cut \xef\xbf\xbd");
  EXPECT_EQ(back["ok"], "\xc3\xa9");
  EXPECT_TRUE(json::accept(json_text(j, 2)));
}

TEST(JsonText, ErrorBodiesAreValidJsonWhateverTheMessage) {
  auto r = json_error(404, "not_found", std::string("no such endpoint: /\xff\x00\x80", 22));
  ASSERT_TRUE(json::accept(r.body)) << r.body;
}

TEST(Utf8Prefix, NeverCutsACharacter) {
  std::string s = "ab\xc3\xa9\xe2\x82\xac";  // a b é €
  EXPECT_EQ(utf8_prefix(s, 2), "ab");
  EXPECT_EQ(utf8_prefix(s, 3), "ab");
  EXPECT_EQ(utf8_prefix(s, 4), "ab\xc3\xa9");
  EXPECT_EQ(utf8_prefix(s, 6), "ab\xc3\xa9");
  EXPECT_EQ(utf8_prefix(s, 7), s);
  EXPECT_EQ(utf8_prefix("\xff\xff\xff", 2), "\xff\xff") << "invalid bytes count one each";
}

TEST(HttpUrl, OneHostKeyForEverySpellingOfAHost) {
  for (const char* url : {"https://api.example.com/x", "https://API.Example.com:443/x",
                          "https://api.example.com./x", "HTTPS://api.example.com/x?y#z"}) {
    auto u = parse_http_url(url);
    ASSERT_TRUE(u) << url << ": " << u.error().message;
    EXPECT_EQ(u->host_key(), "api.example.com:443") << url;
  }
  EXPECT_EQ(parse_http_url("http://h/")->host_key(), "h:80");
  EXPECT_EQ(parse_http_url("http://h:8080/")->host_key(), "h:8080");
  EXPECT_EQ(parse_http_url("http://[::1]:9000/a")->host_key(), "[::1]:9000");
  EXPECT_EQ(parse_http_url("http://127.0.0.1:9/")->host, "127.0.0.1");
}

TEST(HttpUrl, RefusesWhatCurlWouldGuessAt) {
  for (const char* url :
       {"https:/api.example.com/x", "https:///api.example.com/x", "http:///x", "http://",
        "http://user:pw@h/", "ftp://h/", "h/x", "http://h:0/", "http://h:99999/", "http://h /"}) {
    auto u = parse_http_url(url);
    EXPECT_FALSE(u) << url << " was accepted as " << (u ? u->url : "");
    if (!u) {
      EXPECT_EQ(u.error().code, "invalid_url");
    }
  }
  EXPECT_FALSE(parse_http_url(std::string("http://a\0.example.com/", 22)))
      << "a NUL would hide the rest from curl";
  // Found by the call_request fuzzer: curl decodes the host, and the decoded byte did not
  // survive the JSON envelope, so the worker would have called another host.
  EXPECT_FALSE(parse_http_url("http://example.co%bb/x"));
  EXPECT_FALSE(parse_http_url("http://exa%0amle.com/x"));
  EXPECT_TRUE(
      parse_http_url("http://b\xc3\xbc"
                     "cher.example/x"))
      << "UTF-8 host names stay allowed";
}

TEST(CallRequest, UrlsAreStoredAsCurlNormalisesThem) {
  CallLimits limits;
  auto c = parse_call_request(R"({"url":"HTTP://example.com"})", limits);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->url, "http://example.com/");
  auto slashes = parse_call_request(R"({"url":"https:///api.example.com/x"})", limits);
  ASSERT_FALSE(slashes);
  EXPECT_EQ(slashes.error().message.rfind("url: must be https://host", 0), 0u)
      << slashes.error().message;
  // At the length limit as sent, one longer once normalised (curl adds the path's '/'): refused
  // here, not dead-lettered by the worker after a 202. Whatever is accepted, the worker takes.
  const std::string at_limit = "http://example.com?" + std::string(8192 - 19, 'a');
  ASSERT_EQ(at_limit.size(), 8192u);
  auto lengthened = parse_call_request(R"({"url":")" + at_limit + R"("})", limits);
  ASSERT_FALSE(lengthened);
  EXPECT_EQ(lengthened.error().message.rfind("url: once normalised", 0), 0u)
      << lengthened.error().message;
  auto shorter = parse_call_request(R"({"url":")" + at_limit.substr(0, 8000) + R"("})", limits);
  ASSERT_TRUE(shorter) << shorter.error().message;
  EXPECT_TRUE(parse_http_url(shorter->url));
  auto huge = parse_call_request(R"({"url":"http://h/","timeout_ms":1e300})", limits);
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().message, "timeout_ms: must be an integer");
}

TEST(CallEnvelope, NumbersOutOfRangeAreRefusedNotCast) {
  const std::string head =
      R"({"url":"http://h/","method":"POST","headers":[],"idempotency_key":"k",)";
  for (const char* tail :
       {R"("timeout_ms":1e300,"max_attempts":3,"max_age_seconds":60})",
        R"("timeout_ms":1000,"max_attempts":2147483648,"max_age_seconds":60})",
        R"("timeout_ms":1000,"max_attempts":-1,"max_age_seconds":60})",
        R"("timeout_ms":1000,"max_attempts":3,"max_age_seconds":18446744073709551615})",
        R"("timeout_ms":"1000","max_attempts":3,"max_age_seconds":60})"}) {
    auto e = parse_call_envelope(head + tail);
    ASSERT_FALSE(e) << tail;
    EXPECT_EQ(e.error().code, "bad_envelope");
  }
  auto injected = parse_call_envelope(
      R"({"url":"http://h/","method":"POST","headers":[["X-A","a\r\nB: c"]],"idempotency_key":"k",)"
      R"("timeout_ms":1000,"max_attempts":3,"max_age_seconds":60})");
  EXPECT_FALSE(injected) << "CR/LF in a header value written straight to the topic";
  // The method and the idempotency key reach the wire too (request line, Idempotency-Key).
  const std::string tail = R"("timeout_ms":1000,"max_attempts":3,"max_age_seconds":60})";
  for (const char* bad : {R"({"url":"http://h/","method":"POST\r\nX: y","headers":[],)"
                          R"("idempotency_key":"k",)",
                          R"({"url":"http://h/","method":"BREW","headers":[],)"
                          R"("idempotency_key":"k",)",
                          R"({"url":"http://h/","method":"POST","headers":[],)"
                          R"("idempotency_key":"k\r\nX-Injected: 1",)",
                          R"({"url":"http://h/","method":"POST","headers":[],)"
                          R"("idempotency_key":"",)"}) {
    auto e = parse_call_envelope(bad + tail);
    ASSERT_FALSE(e) << bad;
    EXPECT_EQ(e.error().code, "bad_envelope");
  }
  EXPECT_TRUE(parse_call_envelope(std::string(R"({"url":"http://h/","method":"PATCH",)") +
                                  R"("headers":[],"idempotency_key":"k-1",)" + tail));
}

// An hr-call envelope is held to ingest's limits on a call's headers (CallLimits::max_headers,
// 256-byte names, 8192-byte values): one written to the topic by someone else with 20,000 headers
// is a malformed message, dead-lettered, not 20,000 headers sent to a receiver.
TEST(CallEnvelope, MoreHeadersThanIngestTakesIsAMalformedMessage) {
  const auto envelope = [](std::size_t headers, const std::string& value = "v") {
    std::string list = "[";
    for (std::size_t i = 0; i < headers; ++i) {
      if (i > 0) list += ',';
      list += R"(["X-H)" + std::to_string(i) + R"(",")" + value + R"("])";
    }
    list += "]";
    return R"({"url":"http://127.0.0.1:9/","method":"POST","headers":)" + list +
           R"(,"idempotency_key":"k","timeout_ms":1000,"max_attempts":3,"max_age_seconds":60})";
  };
  const std::size_t most = CallLimits{}.max_headers;
  EXPECT_TRUE(parse_call_envelope(envelope(most))) << most << " headers, as ingest allows";
  auto over = parse_call_envelope(envelope(most + 1));
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, "bad_envelope");
  EXPECT_NE(over.error().message.find("headers: " + std::to_string(most + 1) +
                                      " headers; at most " + std::to_string(most)),
            std::string::npos)
      << over.error().message;
  EXPECT_FALSE(parse_call_envelope(envelope(1, std::string(8193, 'v'))))
      << "a value longer than ingest takes";

  ConsumedMessage m;
  m.topic = std::string(kCallsTopic);
  m.value = std::make_shared<const std::string>("");
  m.headers = {{"hr-kind", "call"},
               {"hr-event-id", "c1"},
               {"hr-received-at", "1000"},
               {"hr-call", envelope(20000)}};
  auto out = expand_message(m, Config{});
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, "malformed_message");
  EXPECT_NE(out.error().message.find("20000 headers"), std::string::npos) << out.error().message;
}

Config routed_config() {
  auto c = parse_config(R"(
sources:
  acme: { scheme: standard-webhooks, secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }
routes:
  acme: [ { name: a, url: "https://API.example.com.:443/hook" } ]
)",
                        [](const std::string&) { return std::nullopt; });
  EXPECT_TRUE(c) << c.error().message;
  return *c;
}

ConsumedMessage retry_message(const std::string& attempt) {
  ConsumedMessage m;
  m.topic = std::string(kRetryTopicPrefix) + "0";
  m.value = std::make_shared<const std::string>("{}");
  m.headers = {{"hr-kind", "webhook"},     {"hr-source", "acme"}, {"hr-event-id", "e1"},
               {"hr-received-at", "1000"}, {"hr-route", "a"},     {"hr-attempt", attempt}};
  return m;
}

TEST(MessageExpander, AttemptNumbersOutOfRangeAreMalformedNotOverflowed) {
  Config config = routed_config();
  auto ok = expand_message(retry_message("7"), config);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->at(0).attempt, 8);
  EXPECT_EQ(ok->at(0).host_key, "api.example.com:443")
      << "the route's host key, derived once at load";
  for (const char* attempt : {"2147483647", "9223372036854775807", "-1", "1e3", "", " 7"}) {
    auto bad = expand_message(retry_message(attempt), config);
    ASSERT_FALSE(bad) << "hr-attempt " << attempt;
    EXPECT_EQ(bad.error().code, "malformed_message");
  }
}

TEST(MessageExpander, ReceivedAtOutOfRangeIsMalformed) {
  Config config = routed_config();
  auto m = retry_message("1");
  for (auto& [k, v] : m.headers) {
    if (k == "hr-received-at") v = "-9223372036854775808";
  }
  EXPECT_FALSE(expand_message(m, config));
}

TEST(MessageExpander, CallWithAnUrlIngestWouldRefuseIsMalformed) {
  Config config = routed_config();
  ConsumedMessage m;
  m.topic = std::string(kCallsTopic);
  m.value = std::make_shared<const std::string>("");
  m.headers = {
      {"hr-kind", "call"},
      {"hr-event-id", "c1"},
      {"hr-received-at", "1000"},
      {"hr-call", R"({"url":"https:///x","method":"POST","headers":[],"idempotency_key":"k",)"
                  R"("timeout_ms":1000,"max_attempts":3,"max_age_seconds":60})"}};
  auto out = expand_message(m, config);
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, "malformed_message");
}

TEST(IpParser, ANulEndsNothing) {
  EXPECT_TRUE(parse_ip("10.0.0.1"));
  EXPECT_FALSE(parse_ip(std::string("8.8.8.8\0garbage", 15)));
  EXPECT_FALSE(parse_ip(std::string("::1\0", 4)));
}

TEST(ConfigWarnings, BodiesKafkaCannotCarryAreFlagged) {
  auto none = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  auto defaults = parse_config("{}", none);
  ASSERT_TRUE(defaults);
  EXPECT_TRUE(config_warnings(*defaults).empty()) << "the defaults fit together";
  auto big = parse_config("ingest: { max_body_bytes: 1048576 }", none);
  ASSERT_TRUE(big);
  auto w = config_warnings(*big);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("ingest.max_body_bytes"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("message.max.bytes"), std::string::npos) << w[0];
  auto raised = parse_config(
      "ingest: { max_body_bytes: 1048576 }\nkafka: { properties: { message.max.bytes: \"2097152\" "
      "} }",
      none);
  ASSERT_TRUE(raised);
  EXPECT_TRUE(config_warnings(*raised).empty());
}

// Topics that keep messages longer than the finished-delivery retention the CronJob runs (45
// days, less a 7-day segment): a copy read again would find no row and be delivered again.
TEST(ConfigWarnings, ATopicKeptLongerThanTheDeliveryRetentionIsFlagged) {
  auto none = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  auto long_dlq = parse_config("topics: { dlq_retention_ms: 5184000000 }", none);  // 60 days
  ASSERT_TRUE(long_dlq) << long_dlq.error().message;
  auto w = config_warnings(*long_dlq);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("topics.dlq_retention_ms keeps messages 60 days"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("older_than above 67 days"), std::string::npos) << w[0];
  auto long_tier = parse_config("retry: { schedule_seconds: [60, 432000] }", none);  // 5 days
  ASSERT_TRUE(long_tier) << long_tier.error().message;
  w = config_warnings(*long_tier);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("retry.schedule_seconds"), std::string::npos) << w[0];
  auto fits = parse_config("topics: { dlq_retention_ms: 3196800000 }", none);  // 37 days
  ASSERT_TRUE(fits) << fits.error().message;
  EXPECT_TRUE(config_warnings(*fits).empty());
}

TEST(ConfigWarnings, ARouteTimeoutTheLeaseDoesNotCoverIsFlagged) {
  auto none = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  const std::string routes =
      "sources: { gh: { scheme: github, secrets: [s] } }\n"
      "routes: { gh: [ { name: a, url: \"http://127.0.0.1:9/a\", timeout_ms: 30000 } ] }\n";
  auto covered = parse_config(routes, none);
  ASSERT_TRUE(covered) << covered.error().message;
  EXPECT_TRUE(config_warnings(*covered).empty()) << "a 120 s lease covers a 30 s call";
  auto short_lease = parse_config(routes + "worker: { claim_lease_seconds: 30 }\n", none);
  ASSERT_TRUE(short_lease) << short_lease.error().message;
  auto w = config_warnings(*short_lease);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("routes.gh[0].timeout_ms (30000)"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("worker.claim_lease_seconds (30 s)"), std::string::npos) << w[0];
  // A 30 s call with time to start it and to record its result (3.2 s each) does not fit in a
  // 32 s lease either, nor in 37 s (3.7 s each); in 38 s it does.
  auto tight = parse_config(routes + "worker: { claim_lease_seconds: 32 }\n", none);
  ASSERT_TRUE(tight) << tight.error().message;
  EXPECT_EQ(config_warnings(*tight).size(), 1u);
  auto still = parse_config(routes + "worker: { claim_lease_seconds: 37 }\n", none);
  ASSERT_TRUE(still) << still.error().message;
  ASSERT_EQ(config_warnings(*still).size(), 1u);
  EXPECT_NE(config_warnings(*still)[0].find("cut to 29600 ms"), std::string::npos)
      << config_warnings(*still)[0];
  auto fits = parse_config(routes + "worker: { claim_lease_seconds: 38 }\n", none);
  ASSERT_TRUE(fits) << fits.error().message;
  EXPECT_TRUE(config_warnings(*fits).empty());
}

}  // namespace
}  // namespace hookrelay

namespace hookrelay {
namespace {

ConsumedMessage webhook_with(std::vector<std::pair<std::string, std::string>> extra) {
  ConsumedMessage m;
  m.topic = std::string(kWebhooksTopic);
  m.value = std::make_shared<const std::string>("{}");
  m.headers = {{"hr-kind", "webhook"},
               {"hr-source", "acme"},
               {"hr-event-id", "e1"},
               {"hr-received-at", "1000"}};
  for (auto& h : extra) m.headers.push_back(std::move(h));
  return m;
}

TEST(MessageExpander, ForwardedHeadersAreHeldToWhatIngestWouldForward) {
  Config config = routed_config();
  auto ok = expand_message(webhook_with({{"hr-fwd-x-github-event", "push"}}), config);
  ASSERT_TRUE(ok) << ok.error().message;
  ASSERT_EQ(ok->size(), 1u);
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 10000; ++i) many.emplace_back("hr-fwd-x-" + std::to_string(i), "v");
  auto flood = expand_message(webhook_with(many), config);
  ASSERT_FALSE(flood) << "10,000 forwarded headers";
  EXPECT_EQ(flood.error().code, "malformed_message");
  EXPECT_FALSE(expand_message(webhook_with({{"hr-fwd-x-a", "a\r\nInjected: 1"}}), config))
      << "CR/LF";
  EXPECT_FALSE(expand_message(webhook_with({{"hr-fwd-bad name", "v"}}), config));
  EXPECT_FALSE(expand_message(webhook_with({{"hr-fwd-x-big", std::string(70000, 'a')}}), config))
      << "over 64 KiB";
  // hr-content-type becomes the Content-Type header.
  auto split = expand_message(webhook_with({{"hr-content-type", "a\r\nInjected: 1"}}), config);
  ASSERT_FALSE(split) << "CR/LF in hr-content-type";
  EXPECT_EQ(split.error().code, "malformed_message");
  EXPECT_TRUE(expand_message(webhook_with({{"hr-content-type", "application/json"}}), config));
  // As long as a header Beast parsed may be (a Content-Type of 9,000 bytes was delivered before).
  EXPECT_TRUE(expand_message(webhook_with({{"hr-content-type", std::string(9000, 't')}}), config));
}

// hr-event-id is sent as the webhook-id header. Ingest takes 1-255 bytes of printable ASCII
// without spaces as an event id; a message written to the topic some other way is held to it.
TEST(MessageExpander, AnEventIdIngestWouldNotTakeIsMalformed) {
  Config config = routed_config();
  const auto with_id = [](const std::string& id) {
    auto m = webhook_with({});
    for (auto& [k, v] : m.headers) {
      if (k == "hr-event-id") v = id;
    }
    return m;
  };
  for (const std::string& id :
       {std::string("e1\r\nX-Injected: 1"), std::string("e1\nX: y"), std::string("e 1"),
        std::string("e\t1"), std::string("e\x01"), std::string("e\x7f"), std::string("\xc3\xa9"),
        std::string("e\0x", 3), std::string(256, 'a')}) {
    auto out = expand_message(with_id(id), config);
    ASSERT_FALSE(out) << "hr-event-id of " << id.size() << " bytes";
    EXPECT_EQ(out.error().code, "malformed_message");
    EXPECT_NE(out.error().message.find("hr-event-id"), std::string::npos) << out.error().message;
  }
  auto retry = retry_message("1");
  for (auto& [k, v] : retry.headers) {
    if (k == "hr-event-id") v = "e1\r\nX-Injected: 1";
  }
  EXPECT_FALSE(expand_message(retry, config)) << "a retry's too";
  const std::string longest(255, '~');
  auto ok = expand_message(with_id(longest), config);
  ASSERT_TRUE(ok) << ok.error().message;
  HttpCall call = build_http_call(ok->at(0), 1'700'000'000'000, 5000);
  EXPECT_NE(std::find(call.headers.begin(), call.headers.end(),
                      std::pair<std::string, std::string>("webhook-id", longest)),
            call.headers.end());
}

// Ingest forwards no header that frames the request or belongs to the connection: a message
// carrying one was written to steer the worker's request, and is malformed. Proxy-* ones (ingest
// forwards most) and the headers hookrelay sets itself (ingest forwards a provider's own) are
// dropped instead.
TEST(MessageExpander, ForwardedHeadersCannotFrameOrOverrideTheRequest) {
  Config config = routed_config();
  for (const char* name :
       {"host", "Host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
        "trailer", "upgrade", "expect", "TRANSFER-ENCODING"}) {
    auto out = expand_message(webhook_with({{std::string("hr-fwd-") + name, "x"}}), config);
    ASSERT_FALSE(out) << name;
    EXPECT_EQ(out.error().code, "malformed_message");
    EXPECT_NE(out.error().message.find(name), std::string::npos) << out.error().message;
  }
  auto out = expand_message(webhook_with({{"hr-fwd-proxy-authorization", "Basic x"},
                                          {"hr-fwd-Proxy-Foo", "1"},
                                          {"hr-fwd-webhook-id", "forged"},
                                          {"hr-fwd-webhook-timestamp", "1"},
                                          {"hr-fwd-webhook-signature", "v1,forged"},
                                          {"hr-fwd-x-hookrelay-attempt", "99"},
                                          {"hr-fwd-x-github-event", "push"}}),
                            config);
  ASSERT_TRUE(out) << out.error().message;
  HttpCall call = build_http_call(out->at(0), 1'700'000'000'000, 5000);
  std::vector<std::string> names;
  for (const auto& [k, v] : call.headers) {
    names.push_back(ascii_lower(k));
    EXPECT_NE(v, "forged") << k;
    EXPECT_NE(v, "v1,forged") << k;
    EXPECT_NE(v, "99") << k;
  }
  EXPECT_EQ(std::count(names.begin(), names.end(), "proxy-authorization"), 0);
  EXPECT_EQ(std::count(names.begin(), names.end(), "proxy-foo"), 0);
  EXPECT_EQ(std::count(names.begin(), names.end(), "webhook-id"), 1);
  EXPECT_EQ(std::count(names.begin(), names.end(), "webhook-timestamp"), 1);
  EXPECT_EQ(std::count(names.begin(), names.end(), "x-hookrelay-attempt"), 1);
  EXPECT_EQ(std::count(names.begin(), names.end(), "x-github-event"), 1);
  // A call's envelope is held to what ingest takes from a caller (parse_call_envelope).
  ConsumedMessage m;
  m.topic = std::string(kCallsTopic);
  m.value = std::make_shared<const std::string>("");
  m.headers = {
      {"hr-kind", "call"},
      {"hr-event-id", "c1"},
      {"hr-received-at", "1000"},
      {"hr-call", R"({"url":"https://h/","method":"POST","headers":[["Host","evil.example"]],)"
                  R"("idempotency_key":"k","timeout_ms":1000,"max_attempts":3,)"
                  R"("max_age_seconds":60})"}};
  auto call_out = expand_message(m, config);
  ASSERT_FALSE(call_out);
  EXPECT_EQ(call_out.error().code, "malformed_message");
}

}  // namespace
}  // namespace hookrelay
