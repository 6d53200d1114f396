// Route filter evaluation over arbitrary message bodies (whoever can write to the topic, or any
// provider, controls them). Input:
//
//   FILTER-YAML\n\nBODY      a route's `filter:` value (flow YAML), then the body; or
//   BODY                     without the blank line: the body, against fixed filters
//
// Properties: never a crash, a hang or an exception; the body is parsed at most once per message;
// the same filter gives the same answer twice; a body simdjson refuses fails every filter with a
// body condition; a filter without body conditions never parses the body.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "shared/config/config.h"
#include "worker/route_filter.h"

using namespace hookrelay;

namespace {

std::optional<RouteFilter> filter_from(std::string_view yaml) {
  auto c = parse_config(
      "sources: { g: { scheme: github, secrets: [s] } }\nroutes:\n  g:\n    - name: r\n"
      "      url: \"http://h/\"\n      filter: " +
          std::string(yaml) + "\n",
      [](const std::string&) { return std::nullopt; });
  if (!c) return std::nullopt;
  return c->routes.at("g").at(0).filter;
}

const std::vector<RouteFilter>& fixed_filters() {
  static const std::vector<RouteFilter> filters = [] {
    std::vector<RouteFilter> out;
    for (const char* yaml : {
             "{ header: { X-Event: [push, pull_request] } }",
             "{ body: [ { pointer: /repository/full_name, equals: acme/api } ] }",
             "{ body: [ { pointer: /action, in: [opened, 1, 2.5, true, null] } ] }",
             "{ body: [ { pointer: \"/a~1b/~0c/0/-\", exists: false }, { pointer: \"\", exists: "
             "true } ] }",
             "{ body: [ { pointer: /0/1/2/3, equals: 9223372036854775807 }, { pointer: /x, equals: "
             "-1e308 } ] }",
             "{ header: { X-Event: push }, body: [ { pointer: //, exists: true } ] }",
         }) {
      auto f = filter_from(yaml);
      if (!f) fuzz::fuzz_fail("a fixed filter does not load", yaml);
      out.push_back(*f);
    }
    return out;
  }();
  return filters;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<RouteFilter> filters;
  std::string_view body = in;
  if (auto split = in.find("\n\n"); split != std::string_view::npos && split < 4096) {
    auto f = filter_from(in.substr(0, split));
    if (f) filters.push_back(std::move(*f));
    body = in.substr(split + 2);
  }
  if (filters.empty()) filters = fixed_filters();

  const std::vector<std::pair<std::string, std::string>> headers = {
      {"hr-fwd-x-event", "push"}, {"hr-fwd-X-Event", std::string(body.substr(0, 16))}};
  simdjson::dom::parser reference;
  const bool json = reference.parse(body.data(), body.size()).error() == simdjson::SUCCESS;

  FilterContext ctx(headers, "hr-fwd-", body);
  for (const auto& f : filters) {
    const bool first = ctx.matches(f);
    fuzz::check(ctx.matches(f) == first, "a filter's answer changed for the same message");
    if (!f.body.empty() && !json)
      fuzz::check(!first, "a body that is not JSON passed a body condition");
  }
  fuzz::check(ctx.body_parses() <= 1, "the body was parsed more than once");

  FilterContext headers_only(headers, "hr-fwd-", body);
  for (const auto& f : filters) {
    if (f.body.empty()) (void)headers_only.matches(f);
  }
  fuzz::check(headers_only.body_parses() == 0, "header conditions parsed the body");
  return 0;
}
