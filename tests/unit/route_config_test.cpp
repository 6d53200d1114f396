// The per-route keys of routes.<source>[i]: filter, headers, secrets, retry, max_in_flight,
// rate_per_second, suspend_after; each refusal names its field and never shows a header value.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "shared/config/config.h"

namespace hookrelay {
namespace {

constexpr const char* kNew = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr const char* kOld = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// A config with one route of source g whose extra keys are `route_keys` (YAML flow mapping body).
std::string with_route(const std::string& route_keys, const std::string& top = "") {
  return "sources: { g: { scheme: github, secrets: [s] } }\n" + top +
         "routes:\n  g:\n    - { name: ci, url: \"http://h/\", " + route_keys + " }\n";
}

Result<Config> parse(const std::string& yaml, std::map<std::string, std::string> env = {}) {
  return parse_config(yaml, env_of(std::move(env)));
}

TEST(RouteConfig, ParsesEveryKeyOfTheDocumentedRoute) {
  const std::string yaml = R"(
sources: { github: { scheme: github, secrets: [s] } }
retry: { schedule_seconds: [5, 60, 600, 3600], max_attempts: 8, max_age_seconds: 86400 }
routes:
  github:
    - name: ci
      url: "https://ci.internal/hooks"
      filter:
        header: { X-GitHub-Event: [push, pull_request], X-Single: one }
        body:
          - { pointer: /repository/full_name, equals: "acme/api" }
          - { pointer: /action, in: [opened, reopened] }
          - { pointer: /sender/type, exists: true }
          - { pointer: "/a~1b/~0c/0", equals: 42 }
      headers: { Authorization: "Bearer ${CI_TOKEN}", X-Team: build }
      secrets: [")" + std::string(kNew) +
                           R"(", ")" + kOld + R"("]
      timeout_ms: 10000
      retry: { schedule_seconds: [5, 60, 600], max_attempts: 6, max_age_seconds: 3600 }
      max_in_flight: 64
      rate_per_second: 200
      suspend_after: { consecutive_failures: 500, or_failing_for_seconds: 86400 }
)";
  auto c = parse(yaml, {{"CI_TOKEN", "tok-123"}});
  ASSERT_TRUE(c) << c.error().message;
  const RouteConfig& r = c->routes.at("github").at(0);
  ASSERT_EQ(r.filter.header.size(), 2u);
  EXPECT_EQ(r.filter.header[0].name, "x-github-event");
  EXPECT_EQ(r.filter.header[0].values, (std::vector<std::string>{"push", "pull_request"}));
  EXPECT_EQ(r.filter.header[1].values, (std::vector<std::string>{"one"}));
  ASSERT_EQ(r.filter.body.size(), 4u);
  EXPECT_EQ(r.filter.body[0].op, BodyCondition::Op::kEquals);
  EXPECT_EQ(r.filter.body[0].values.at(0).string, "acme/api");
  EXPECT_EQ(r.filter.body[1].op, BodyCondition::Op::kIn);
  EXPECT_EQ(r.filter.body[1].values.size(), 2u);
  EXPECT_EQ(r.filter.body[2].op, BodyCondition::Op::kExists);
  EXPECT_TRUE(r.filter.body[2].exists);
  const auto& tokens = r.filter.body[3].pointer.tokens;
  ASSERT_EQ(tokens.size(), 3u);
  EXPECT_EQ(tokens[0].key, "a/b");
  EXPECT_EQ(tokens[1].key, "~c");
  EXPECT_EQ(tokens[2].index, 0);
  EXPECT_EQ(r.filter.body[3].values.at(0).kind, JsonScalar::Kind::kNumber);
  EXPECT_TRUE(r.filter.body[3].values.at(0).integral);
  EXPECT_EQ(r.headers, (std::vector<std::pair<std::string, std::string>>{
                           {"Authorization", "Bearer tok-123"}, {"X-Team", "build"}}));
  EXPECT_EQ(r.secrets, (std::vector<std::string>{kNew, kOld}));
  ASSERT_TRUE(r.retry);
  EXPECT_EQ(r.retry->schedule_seconds, (std::vector<int>{5, 60, 600}));
  EXPECT_EQ(r.retry->max_attempts, 6);
  EXPECT_EQ(r.retry->max_age_seconds, 3600);
  EXPECT_EQ(r.max_in_flight, 64);
  EXPECT_EQ(r.rate_per_second, 200);
  ASSERT_TRUE(r.suspend_after);
  EXPECT_EQ(r.suspend_after->consecutive_failures, 500);
  EXPECT_EQ(r.suspend_after->or_failing_for_seconds, 86400);
}

TEST(RouteConfig, AbsentKeysKeepTheOldBehaviour) {
  auto c = parse(with_route(std::string("secret: \"") + kNew + "\""));
  ASSERT_TRUE(c) << c.error().message;
  const RouteConfig& r = c->routes.at("g").at(0);
  EXPECT_EQ(r.secrets, std::vector<std::string>{kNew}) << "the single secret key still signs";
  EXPECT_TRUE(r.filter.empty());
  EXPECT_TRUE(r.headers.empty());
  EXPECT_FALSE(r.retry);
  EXPECT_EQ(r.max_in_flight, 0);
  EXPECT_EQ(r.rate_per_second, 0);
  EXPECT_FALSE(r.suspend_after);
}

TEST(RouteConfig, RetryPolicyOrFallsBackToTheGlobalOneAndMergesOverIt) {
  const std::string top =
      "retry: { schedule_seconds: [5, 30, 120], max_attempts: 9, max_age_seconds: 7200 }\n";
  auto c = parse(with_route("retry: { max_attempts: 3 }", top));
  ASSERT_TRUE(c) << c.error().message;
  const RouteConfig& r = c->routes.at("g").at(0);
  const RetryConfig& policy = r.retry_policy_or(c->retry);
  EXPECT_NE(&policy, &c->retry);
  EXPECT_EQ(policy.max_attempts, 3);
  EXPECT_EQ(policy.schedule_seconds, (std::vector<int>{5, 30, 120}))
      << "keys not given come from retry:";
  EXPECT_EQ(policy.max_age_seconds, 7200);

  auto plain = parse(with_route("timeout_ms: 1000", top));
  ASSERT_TRUE(plain);
  const RouteConfig& p = plain->routes.at("g").at(0);
  EXPECT_EQ(&p.retry_policy_or(plain->retry), &plain->retry)
      << "no retry key: the global policy itself";

  RouteConfig in_code;  // built without parse_config
  RetryConfig global;
  global.max_attempts = 2;
  EXPECT_EQ(in_code.retry_policy_or(global).max_attempts, 2);
  in_code.retry = RetryConfig{{1, 2}, 4, 60};
  EXPECT_EQ(in_code.retry_policy_or(global).max_attempts, 4);
}

struct Refusal {
  std::string route_keys;
  std::string field;  // the error message starts with it
  std::string top = "";
};

class RouteConfigRefusal : public ::testing::TestWithParam<Refusal> {};

TEST_P(RouteConfigRefusal, NamesTheField) {
  auto c =
      parse(with_route(GetParam().route_keys, GetParam().top), {{"TOKEN", "s3cret-token-value"}});
  ASSERT_FALSE(c) << GetParam().route_keys;
  EXPECT_EQ(c.error().message.rfind(GetParam().field + ": ", 0), 0u) << c.error().message;
  EXPECT_EQ(c.error().message.find("s3cret-token-value"), std::string::npos) << c.error().message;
}

const std::string kR = "routes.g[0].";

INSTANTIATE_TEST_SUITE_P(
    Fields, RouteConfigRefusal,
    ::testing::Values(
        // filter
        Refusal{"filter: []", kR + "filter"}, Refusal{"filter: { query: {} }", kR + "filter.query"},
        Refusal{"filter: { header: [a] }", kR + "filter.header"},
        Refusal{"filter: { header: { X-E: [] } }", kR + "filter.header.X-E"},
        Refusal{"filter: { header: { X-E: { a: b } } }", kR + "filter.header.X-E"},
        Refusal{"filter: { header: { \"bad name\": a } }", kR + "filter.header.bad name"},
        Refusal{"filter: { header: { X-E: a, x-e: b } }", kR + "filter.header.x-e"},
        Refusal{"filter: { body: { pointer: /a } }", kR + "filter.body"},
        Refusal{"filter: { body: [ { equals: 1 } ] }", kR + "filter.body[0].pointer"},
        Refusal{"filter: { body: [ { pointer: a, equals: 1 } ] }", kR + "filter.body[0].pointer"},
        Refusal{"filter: { body: [ { pointer: /a~2, equals: 1 } ] }",
                kR + "filter.body[0].pointer"},
        Refusal{"filter: { body: [ { pointer: /a~, equals: 1 } ] }", kR + "filter.body[0].pointer"},
        Refusal{"filter: { body: [ { pointer: [a], equals: 1 } ] }", kR + "filter.body[0].pointer"},
        Refusal{"filter: { body: [ { pointer: /a, contains: x } ] }",
                kR + "filter.body[0].contains"},
        Refusal{"filter: { body: [ { pointer: /a } ] }", kR + "filter.body[0]"},
        Refusal{"filter: { body: [ { pointer: /ok, exists: true }, { pointer: /a, equals: 1, in: "
                "[1] } ] }",
                kR + "filter.body[1].in"},
        Refusal{"filter: { body: [ { pointer: /a, equals: [1] } ] }", kR + "filter.body[0].equals"},
        Refusal{"filter: { body: [ { pointer: /a, equals: { b: 1 } } ] }",
                kR + "filter.body[0].equals"},
        Refusal{"filter: { body: [ { pointer: /a, in: [] } ] }", kR + "filter.body[0].in"},
        Refusal{"filter: { body: [ { pointer: /a, in: x } ] }", kR + "filter.body[0].in"},
        Refusal{"filter: { body: [ { pointer: /a, in: [1, [2]] } ] }", kR + "filter.body[0].in[1]"},
        Refusal{"filter: { body: [ { pointer: /a, exists: maybe } ] }",
                kR + "filter.body[0].exists"},
        // headers
        Refusal{"headers: [a]", kR + "headers"},
        Refusal{"headers: { \"X Bad\": v }", kR + "headers.X Bad"},
        Refusal{"headers: { webhook-signature: v }", kR + "headers.webhook-signature"},
        Refusal{"headers: { Webhook-Id: v }", kR + "headers.Webhook-Id"},
        Refusal{"headers: { Idempotency-Key: v }", kR + "headers.Idempotency-Key"},
        Refusal{"headers: { content-length: \"${TOKEN}\" }", kR + "headers.content-length"},
        Refusal{"headers: { Connection: close }", kR + "headers.Connection"},
        Refusal{"headers: { Keep-Alive: x }", kR + "headers.Keep-Alive"},
        Refusal{"headers: { Transfer-Encoding: chunked }", kR + "headers.Transfer-Encoding"},
        Refusal{"headers: { TE: trailers }", kR + "headers.TE"},
        Refusal{"headers: { Trailer: x }", kR + "headers.Trailer"},
        Refusal{"headers: { Upgrade: h2c }", kR + "headers.Upgrade"},
        Refusal{"headers: { Proxy-Authorization: \"${TOKEN}\" }",
                kR + "headers.Proxy-Authorization"},
        Refusal{"headers: { Host: example.com }", kR + "headers.Host"},
        Refusal{"headers: { X-Hookrelay-Attempt: \"1\" }", kR + "headers.X-Hookrelay-Attempt"},
        Refusal{"headers: { X-A: \"${TOKEN}\", x-a: \"${TOKEN}\" }", kR + "headers.x-a"},
        Refusal{"headers: { Authorization: \"${TOKEN}\\r\\nX-Injected: 1\" }",
                kR + "headers.Authorization"},
        Refusal{"headers: { Authorization: \"Bearer ${MISSING}\" }", kR + "headers.Authorization"},
        Refusal{"headers: { Authorization: [\"${TOKEN}\"] }", kR + "headers.Authorization"},
        // secrets
        Refusal{"secrets: []", kR + "secrets"},
        Refusal{"secrets: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", kR + "secrets"},
        Refusal{"secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, \"${TOKEN}\"]",
                kR + "secrets[1]"},
        Refusal{"secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, secrets: "
                "[whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]",
                kR + "secrets"},
        // retry
        Refusal{"retry: 3", kR + "retry"}, Refusal{"retry: { attempts: 3 }", kR + "retry.attempts"},
        Refusal{"retry: { max_attempts: 0 }", kR + "retry.max_attempts"},
        Refusal{"retry: { max_age_seconds: -1 }", kR + "retry.max_age_seconds"},
        Refusal{"retry: { schedule_seconds: [] }", kR + "retry.schedule_seconds"},
        Refusal{"retry: { schedule_seconds: [10, 5] }", kR + "retry.schedule_seconds[1]"},
        Refusal{"retry: { schedule_seconds: [5, 600] }", kR + "retry.schedule_seconds[1]",
                "retry: { schedule_seconds: [5, 60] }\n"},
        // limits
        Refusal{"max_in_flight: 0", kR + "max_in_flight"},
        Refusal{"max_in_flight: lots", kR + "max_in_flight"},
        Refusal{"rate_per_second: -1", kR + "rate_per_second"},
        Refusal{"timeout_ms: 10", kR + "timeout_ms"},
        // suspend_after
        Refusal{"suspend_after: {}", kR + "suspend_after"},
        Refusal{"suspend_after: 5", kR + "suspend_after"},
        Refusal{"suspend_after: { failures: 5 }", kR + "suspend_after.failures"},
        Refusal{"suspend_after: { consecutive_failures: 0 }",
                kR + "suspend_after.consecutive_failures"},
        Refusal{"suspend_after: { or_failing_for_seconds: x }",
                kR + "suspend_after.or_failing_for_seconds"}));

TEST(RouteConfig, FilterValuesKeepTheirYamlTypes) {
  auto c =
      parse(with_route("filter: { body: [ { pointer: /a, in: [1, 2.5, \"3\", true, \"true\", null, "
                       "~, x, -7, 1e3] } ] }"));
  ASSERT_TRUE(c) << c.error().message;
  const auto& v = c->routes.at("g").at(0).filter.body.at(0).values;
  ASSERT_EQ(v.size(), 10u);
  using K = JsonScalar::Kind;
  EXPECT_EQ(v[0].kind, K::kNumber);
  EXPECT_TRUE(v[0].integral);
  EXPECT_EQ(v[1].kind, K::kNumber);
  EXPECT_FALSE(v[1].integral);
  EXPECT_EQ(v[1].number, 2.5);
  EXPECT_EQ(v[2].kind, K::kString) << "quoted: a string";
  EXPECT_EQ(v[3].kind, K::kBool);
  EXPECT_TRUE(v[3].boolean);
  EXPECT_EQ(v[4].kind, K::kString);
  EXPECT_EQ(v[5].kind, K::kNull);
  EXPECT_EQ(v[6].kind, K::kNull);
  EXPECT_EQ(v[7].kind, K::kString);
  EXPECT_EQ(v[8].integer, -7);
  EXPECT_EQ(v[9].number, 1000);
}

// libcurl writes Expect itself (hookrelay sends "Expect:" to skip 100-continue); a route's own
// would replace that, and a receiver would wait for a body that is not announced as coming.
TEST(RouteConfig, ARouteCannotSetExpectInAnyCase) {
  for (const char* name : {"Expect", "expect", "EXPECT"}) {
    auto c = parse(with_route(std::string("headers: { ") + name + ": 100-continue }"));
    ASSERT_FALSE(c) << name;
    EXPECT_EQ(c.error().message.rfind(kR + "headers." + name + ": cannot be set per route", 0), 0u)
        << c.error().message;
  }
  EXPECT_TRUE(parse(with_route("headers: { X-Expect: yes }"))) << "only Expect itself is refused";
}

TEST(RouteConfig, HeaderValuesNeverAppearInErrors) {
  // An error after the headers were read (a bad key later in the route) shows no value either.
  auto c = parse(with_route("headers: { Authorization: \"Bearer ${TOKEN}\" }, max_in_flight: -5"),
                 {{"TOKEN", "s3cret-token-value"}});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message.find("s3cret"), std::string::npos) << c.error().message;
  EXPECT_EQ(c.error().message.rfind("routes.g[0].max_in_flight: ", 0), 0u) << c.error().message;
}

TEST(JsonPointer, ParsesPerRfc6901) {
  auto root = parse_json_pointer("");
  ASSERT_TRUE(root);
  EXPECT_TRUE(root->tokens.empty());
  auto p = parse_json_pointer("/a~1b/m~0n/0/01/-//10");
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_EQ(p->tokens.size(), 7u);
  EXPECT_EQ(p->tokens[0].key, "a/b");
  EXPECT_EQ(p->tokens[1].key, "m~n");
  EXPECT_EQ(p->tokens[2].index, 0);
  EXPECT_EQ(p->tokens[3].index, -1) << "a leading zero is not an index";
  EXPECT_EQ(p->tokens[4].index, -1);
  EXPECT_EQ(p->tokens[5].key, "");
  EXPECT_EQ(p->tokens[6].index, 10);
  EXPECT_EQ(parse_json_pointer("/~01")->tokens[0].key, "~1") << "~0 first, so ~01 is ~1 and not /";
  for (const char* bad : {"a", "/~", "/~2", "/a~x", "#/a"})
    EXPECT_FALSE(parse_json_pointer(bad)) << bad;
}

}  // namespace
}  // namespace hookrelay
