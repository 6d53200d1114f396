// RouteFilter: which events of a source a route receives, as loaded from a route's `filter:`
// key (shared/config/config.cpp parses it; worker/route_filter.h evaluates it).
//
//   filter:
//     header: { X-GitHub-Event: [push, pull_request] }   # any of the values; names
//     case-insensitive body:                                               # JSON pointer (RFC
//     6901) conditions
//       - { pointer: /repository/full_name, equals: "acme/api" }
//       - { pointer: /action, in: [opened, reopened] }
//       - { pointer: /sender/type, exists: true }
//
// Every condition must hold; a route without conditions receives every event.
//
// Thread-safety: immutable values once loaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shared/result.h"

namespace hookrelay {

// One reference token of a JSON pointer, unescaped (~1 -> '/', ~0 -> '~'). `index` is the token
// read as an array index when it is one (RFC 6901: "0" or digits without a leading zero), else -1.
struct JsonPointerToken {
  std::string key;
  int64_t index = -1;
};

struct JsonPointer {
  std::string text;                      // as configured, e.g. "/repository/full_name"
  std::vector<JsonPointerToken> tokens;  // empty: the whole document
};

// RFC 6901 syntax: "" or "/"-separated tokens in which '~' is followed only by '0' or '1'.
// The error says what is wrong, quoting the pointer.
Result<JsonPointer> parse_json_pointer(std::string_view text);

// A scalar a body value is compared with. Numbers compare by value (42 equals 42.0); an integer
// that fits int64 compares exactly with an integer in the body.
struct JsonScalar {
  enum class Kind { kString, kNumber, kBool, kNull };
  Kind kind = Kind::kString;
  std::string string;
  double number = 0;
  bool integral = false;  // number is an integer given as such; `integer` holds it exactly
  int64_t integer = 0;
  bool boolean = false;
};

struct HeaderCondition {
  std::string name;                 // lower-case
  std::vector<std::string> values;  // any of them, compared exactly
};

struct BodyCondition {
  enum class Op { kEquals, kIn, kExists };
  JsonPointer pointer;
  Op op = Op::kEquals;
  std::vector<JsonScalar> values;  // kEquals: one; kIn: one or more
  bool exists = true;              // kExists: whether the value must be present or absent
};

struct RouteFilter {
  std::vector<HeaderCondition> header;
  std::vector<BodyCondition> body;

  bool empty() const { return header.empty() && body.empty(); }
};

}  // namespace hookrelay
