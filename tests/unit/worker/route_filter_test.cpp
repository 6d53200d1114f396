// Route filters: evaluation over headers and JSON bodies, and the expander that applies them.
#include "worker/route_filter.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "shared/config/config.h"
#include "shared/kafka/wire_contract.h"
#include "tests/unit/worker/route_test_support.h"
#include "worker/message_expander.h"

namespace hookrelay {
namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

// The filter of the one route in a config whose route carries `filter_yaml`.
RouteFilter filter_of(const std::string& filter_yaml) {
  auto c = parse_config(
      "sources: { g: { scheme: github, secrets: [s] } }\nroutes:\n  g:\n    - { name: r, url: "
      "\"http://h/\", "
      "filter: " +
          filter_yaml + " }\n",
      [](const std::string&) { return std::nullopt; });
  EXPECT_TRUE(c) << c.error().message;
  return c ? c->routes.at("g").at(0).filter : RouteFilter{};
}

bool holds(const std::string& filter_yaml, const std::string& body, const Headers& headers = {}) {
  FilterContext ctx(headers, "hr-fwd-", body);
  return ctx.matches(filter_of(filter_yaml));
}

TEST(RouteFilter, HeaderNamesAreCaseInsensitiveAndAnyValueMatches) {
  const std::string f = "{ header: { X-GitHub-Event: [push, pull_request] } }";
  EXPECT_TRUE(holds(f, "", {{"hr-fwd-x-github-event", "push"}}));
  EXPECT_TRUE(holds(f, "", {{"hr-fwd-X-GITHUB-EVENT", "pull_request"}}));
  EXPECT_FALSE(holds(f, "", {{"hr-fwd-x-github-event", "issues"}}));
  EXPECT_FALSE(holds(f, "", {{"hr-fwd-x-github-event", "Push"}})) << "values compare exactly";
  EXPECT_FALSE(holds(f, "", {{"x-github-event", "push"}}))
      << "only forwarded provider headers count";
  EXPECT_FALSE(holds(f, "", {})) << "an absent header fails";
  EXPECT_TRUE(
      holds(f, "", {{"hr-fwd-x-github-event", "issues"}, {"hr-fwd-x-github-event", "push"}}))
      << "any of the header's values";
  EXPECT_FALSE(holds("{ header: { X-A: a, X-B: b } }", "", {{"hr-fwd-x-a", "a"}}))
      << "every condition must hold";
  EXPECT_TRUE(
      holds("{ header: { X-A: a, X-B: b } }", "", {{"hr-fwd-x-a", "a"}, {"hr-fwd-x-b", "b"}}));
}

TEST(RouteFilter, EqualsComparesStringsNumbersBoolsAndNull) {
  const std::string body = R"({"s":"acme/api","i":42,"neg":-3,"d":2.5,"t":true,"f":false,"n":null,)"
                           R"("big":18446744073709551615,"exp":1e3,"str42":"42"})";
  EXPECT_TRUE(holds("{ body: [ { pointer: /s, equals: acme/api } ] }", body));
  EXPECT_FALSE(holds("{ body: [ { pointer: /s, equals: acme/web } ] }", body));
  EXPECT_TRUE(holds("{ body: [ { pointer: /i, equals: 42 } ] }", body));
  EXPECT_TRUE(holds("{ body: [ { pointer: /i, equals: 42.0 } ] }", body));
  EXPECT_FALSE(holds("{ body: [ { pointer: /i, equals: \"42\" } ] }", body))
      << "a quoted 42 is a string";
  EXPECT_FALSE(holds("{ body: [ { pointer: /str42, equals: 42 } ] }", body))
      << "a JSON string is not a number";
  EXPECT_TRUE(holds("{ body: [ { pointer: /str42, equals: \"42\" } ] }", body));
  EXPECT_TRUE(holds("{ body: [ { pointer: /neg, equals: -3 } ] }", body));
  EXPECT_TRUE(holds("{ body: [ { pointer: /d, equals: 2.5 } ] }", body));
  EXPECT_FALSE(holds("{ body: [ { pointer: /d, equals: 2 } ] }", body));
  EXPECT_TRUE(holds("{ body: [ { pointer: /exp, equals: 1000 } ] }", body));
  EXPECT_TRUE(holds("{ body: [ { pointer: /big, equals: 18446744073709551615.0 } ] }", body));
  EXPECT_FALSE(holds("{ body: [ { pointer: /big, equals: 9223372036854775807 } ] }", body));
  EXPECT_TRUE(holds("{ body: [ { pointer: /t, equals: true } ] }", body));
  EXPECT_FALSE(holds("{ body: [ { pointer: /t, equals: false } ] }", body));
  EXPECT_TRUE(holds("{ body: [ { pointer: /f, equals: false } ] }", body));
  EXPECT_FALSE(holds("{ body: [ { pointer: /t, equals: \"true\" } ] }", body));
  EXPECT_TRUE(holds("{ body: [ { pointer: /n, equals: null } ] }", body));
  EXPECT_FALSE(holds("{ body: [ { pointer: /s, equals: null } ] }", body));
  EXPECT_FALSE(holds("{ body: [ { pointer: /missing, equals: null } ] }", body))
      << "absent is not null";
}

TEST(RouteFilter, IntegersCompareExactlyBeyondDoublePrecision) {
  const std::string body = R"({"id":9007199254740993})";  // 2^53 + 1: no double holds it
  EXPECT_TRUE(holds("{ body: [ { pointer: /id, equals: 9007199254740993 } ] }", body));
  EXPECT_FALSE(holds("{ body: [ { pointer: /id, equals: 9007199254740992 } ] }", body));
}

TEST(RouteFilter, InMatchesAnyOfMixedValues) {
  const std::string f = "{ body: [ { pointer: /action, in: [opened, reopened, 3, true] } ] }";
  EXPECT_TRUE(holds(f, R"({"action":"opened"})"));
  EXPECT_TRUE(holds(f, R"({"action":"reopened"})"));
  EXPECT_TRUE(holds(f, R"({"action":3})"));
  EXPECT_TRUE(holds(f, R"({"action":true})"));
  EXPECT_FALSE(holds(f, R"({"action":"closed"})"));
  EXPECT_FALSE(holds(f, R"({"action":["opened"]})")) << "an array is not one of the scalars";
  EXPECT_FALSE(holds(f, R"({"other":"opened"})"));
}

TEST(RouteFilter, ExistsTrueAndFalse) {
  EXPECT_TRUE(holds("{ body: [ { pointer: /sender/type, exists: true } ] }",
                    R"({"sender":{"type":"User"}})"));
  EXPECT_TRUE(
      holds("{ body: [ { pointer: /sender/type, exists: true } ] }", R"({"sender":{"type":null}})"))
      << "null is present";
  EXPECT_FALSE(holds("{ body: [ { pointer: /sender/type, exists: true } ] }", R"({"sender":{}})"));
  EXPECT_TRUE(holds("{ body: [ { pointer: /sender/type, exists: false } ] }", R"({"sender":{}})"));
  EXPECT_TRUE(holds("{ body: [ { pointer: /sender/type, exists: false } ] }", R"({"sender":"x"})"))
      << "a string has no members";
  EXPECT_FALSE(holds("{ body: [ { pointer: /sender, exists: false } ] }", R"({"sender":{}})"));
  EXPECT_TRUE(holds("{ body: [ { pointer: \"\", exists: true } ] }", R"(7)"))
      << "the empty pointer is the document";
}

TEST(RouteFilter, PointerEscapesAndArrayIndices) {
  const std::string body =
      R"({"a/b":{"m~n":[10,{"k":"v"},30]},"arr":[[1,2],[3,4]],"0":"zero","":{"":"empty"}})";
  EXPECT_TRUE(holds("{ body: [ { pointer: \"/a~1b/m~0n/0\", equals: 10 } ] }", body));
  EXPECT_TRUE(holds("{ body: [ { pointer: \"/a~1b/m~0n/1/k\", equals: v } ] }", body));
  EXPECT_TRUE(holds("{ body: [ { pointer: \"/a~1b/m~0n/2\", equals: 30 } ] }", body));
  EXPECT_FALSE(holds("{ body: [ { pointer: \"/a~1b/m~0n/3\", exists: true } ] }", body))
      << "past the end";
  EXPECT_FALSE(holds("{ body: [ { pointer: \"/a~1b/m~0n/-\", exists: true } ] }", body))
      << "'-' is past the end";
  EXPECT_FALSE(holds("{ body: [ { pointer: \"/a~1b/m~0n/01\", exists: true } ] }", body))
      << "not an index";
  EXPECT_FALSE(holds("{ body: [ { pointer: \"/a/b\", exists: true } ] }", body))
      << "an unescaped / splits";
  EXPECT_TRUE(holds("{ body: [ { pointer: /arr/1/0, equals: 3 } ] }", body));
  EXPECT_TRUE(holds("{ body: [ { pointer: /0, equals: zero } ] }", body))
      << "a digit token is a key in an object";
  EXPECT_TRUE(holds("{ body: [ { pointer: \"//\", equals: empty } ] }", body)) << "empty keys";
}

TEST(RouteFilter, ABodyThatIsNotJsonFailsEveryBodyCondition) {
  const std::vector<std::string> bodies = {"",
                                           "not json",
                                           "{\"a\":1",
                                           "{\"a\":1} trailing",
                                           "\xff\xfe{}",
                                           "{\"a\":\"\xc3\x28\"}",
                                           std::string(1, '\0'),
                                           std::string(100000, '[')};
  for (const std::string& body : bodies) {
    EXPECT_FALSE(holds("{ body: [ { pointer: /a, exists: true } ] }", body)) << body.substr(0, 20);
    EXPECT_FALSE(holds("{ body: [ { pointer: /a, exists: false } ] }", body)) << body.substr(0, 20);
    EXPECT_FALSE(holds("{ body: [ { pointer: /a, equals: 1 } ] }", body)) << body.substr(0, 20);
  }
  EXPECT_TRUE(holds("{ header: { X-E: push } }", "not json", {{"hr-fwd-x-e", "push"}}))
      << "header conditions do not need a JSON body";
}

TEST(RouteFilter, TheBodyIsParsedOnceAndOnlyWhenABodyConditionIsEvaluated) {
  const Headers headers = {{"hr-fwd-x-e", "push"}};
  const std::string body = R"({"a":1,"b":2})";
  FilterContext ctx(headers, "hr-fwd-", body);
  EXPECT_TRUE(ctx.matches(filter_of("{ header: { X-E: push } }")));
  EXPECT_FALSE(
      ctx.matches(filter_of("{ header: { X-E: pull }, body: [ { pointer: /a, equals: 1 } ] }")));
  EXPECT_EQ(ctx.body_parses(), 0) << "headers ruled the route out before its body condition";
  EXPECT_TRUE(ctx.matches(filter_of("{ body: [ { pointer: /a, equals: 1 } ] }")));
  EXPECT_TRUE(ctx.matches(filter_of("{ body: [ { pointer: /b, equals: 2 } ] }")));
  EXPECT_FALSE(ctx.matches(filter_of("{ body: [ { pointer: /b, equals: 3 } ] }")));
  EXPECT_EQ(ctx.body_parses(), 1);
}

// --- the expander ---

const char* kRoutes = R"(
sources: { gh: { scheme: github, secrets: [s] } }
routes:
  gh:
    - { name: all, url: "http://127.0.0.1:9/all" }
    - name: pushes
      url: "http://127.0.0.1:9/pushes"
      filter: { header: { X-GitHub-Event: push } }
    - name: acme
      url: "http://127.0.0.1:9/acme"
      filter: { body: [ { pointer: /repository/full_name, equals: acme/api } ] }
)";

std::vector<std::string> routes_of(const std::vector<Delivery>& out) {
  std::vector<std::string> names;
  for (const auto& d : out) names.push_back(d.destination);
  return names;
}

TEST(MessageExpander, FilteredOutRoutesGetNoDeliveryAndAreReported) {
  auto config = parse_config(kRoutes, [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(config) << config.error().message;
  std::vector<const RouteConfig*> filtered;
  auto out =
      expand_message(testing::github_webhook("push", R"({"repository":{"full_name":"acme/api"}})"),
                     *config, &filtered);
  ASSERT_TRUE(out);
  EXPECT_EQ(routes_of(*out), (std::vector<std::string>{"all", "pushes", "acme"}));
  EXPECT_TRUE(filtered.empty());

  out = expand_message(
      testing::github_webhook("issues", R"({"repository":{"full_name":"acme/web"}})"), *config,
      &filtered);
  ASSERT_TRUE(out);
  EXPECT_EQ(routes_of(*out), std::vector<std::string>{"all"});
  ASSERT_EQ(filtered.size(), 2u);
  EXPECT_EQ(filtered[0]->name, "pushes");
  EXPECT_EQ(filtered[1]->name, "acme");

  filtered.clear();
  out = expand_message(testing::github_webhook("push", "<xml/>"), *config, &filtered);
  ASSERT_TRUE(out) << "a body that is not JSON is no error";
  EXPECT_EQ(routes_of(*out), (std::vector<std::string>{"all", "pushes"}));
  ASSERT_EQ(filtered.size(), 1u);
  EXPECT_EQ(filtered[0]->name, "acme");
}

TEST(MessageExpander, TheObserverCountsFilteredRoutesBySource) {
  auto config = parse_config(kRoutes, [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(config);
  std::map<std::string, int> counted;
  set_filtered_observer([&](std::string_view source, std::string_view route) {
    ++counted[std::string(source) + "/" + std::string(route)];
  });
  (void)expand_message(testing::github_webhook("issues", "{}"), *config);
  (void)expand_message(testing::github_webhook("push", "{}"), *config);
  set_filtered_observer(nullptr);
  (void)expand_message(testing::github_webhook("issues", "{}"), *config);
  EXPECT_EQ(counted, (std::map<std::string, int>{{"gh/pushes", 1}, {"gh/acme", 2}}));
}

TEST(MessageExpander, RetryMessagesAreNotFilteredAgain) {
  auto config = parse_config(kRoutes, [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(config);
  ConsumedMessage m = testing::github_webhook("issues", "not json");
  m.topic = std::string(kRetryTopicPrefix) + "0";
  m.headers.emplace_back("hr-route", "acme");
  m.headers.emplace_back("hr-attempt", "1");
  std::vector<const RouteConfig*> filtered;
  auto out = expand_message(m, *config, &filtered);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(routes_of(*out), std::vector<std::string>{"acme"});
  EXPECT_TRUE(filtered.empty());
}

}  // namespace
}  // namespace hookrelay
