// Evaluation of route filters (shared/routes/route_filter.h) against one consumed webhook message.
//
// Header conditions look at the provider's headers as ingest forwarded them (names compared
// case-insensitively, any of the listed values, values exactly). Body conditions look at the
// body parsed with simdjson, once per message and only when some route's body condition is
// evaluated. A body that is not JSON (or is empty) fails every body condition, `exists: false`
// included; it never throws.
//
// Thread-safety: a FilterContext belongs to one thread. The body is parsed into that thread's
// parser, so a thread evaluates body conditions of one FilterContext at a time (expand_message
// makes one per message and drops it before returning).
#pragma once

#include <simdjson.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/routes/route_filter.h"

namespace hookrelay {

class FilterContext {
 public:
  // `headers` whose names start with `header_prefix` are the request's headers (the prefix is
  // stripped before comparing); others are ignored. Both must outlive the context.
  FilterContext(const std::vector<std::pair<std::string, std::string>>& headers,
                std::string_view header_prefix, std::string_view body);

  // Whether every condition of `filter` holds.
  bool matches(const RouteFilter& filter);

  // Whether the body was parsed (for tests: it is parsed at most once, and only when needed).
  int body_parses() const { return parses_; }

 private:
  bool header_holds(const HeaderCondition& c) const;
  bool body_holds(const BodyCondition& c);

  const std::vector<std::pair<std::string, std::string>>& headers_;
  std::string_view prefix_;
  std::string_view body_;
  enum class Body { kUnparsed, kJson, kNotJson } body_state_ = Body::kUnparsed;
  simdjson::dom::element root_;
  int parses_ = 0;
};

// Whether a JSON value equals a configured scalar: strings, booleans and null by value; numbers by
// numeric value (an integer of the body compares exactly with an integral configured number).
bool json_equals(const simdjson::dom::element& value, const JsonScalar& scalar);

}  // namespace hookrelay
