#include "worker/route_filter.h"

#include <algorithm>
#include <optional>

#include "shared/ascii.h"

namespace hookrelay {
namespace {

// The parser is reused across messages (its buffers grow to the largest body seen and stay).
simdjson::dom::parser& thread_parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

std::optional<simdjson::dom::element> resolve(simdjson::dom::element at,
                                              const JsonPointer& pointer) {
  for (const auto& token : pointer.tokens) {
    simdjson::dom::object object;
    simdjson::dom::array array;
    if (at.get(object) == simdjson::SUCCESS) {
      if (object.at_key(token.key).get(at) != simdjson::SUCCESS) return std::nullopt;
    } else if (at.get(array) == simdjson::SUCCESS) {
      if (token.index < 0 ||
          array.at(static_cast<std::size_t>(token.index)).get(at) != simdjson::SUCCESS) {
        return std::nullopt;
      }
    } else {
      return std::nullopt;
    }
  }
  return at;
}

}  // namespace

bool json_equals(const simdjson::dom::element& value, const JsonScalar& scalar) {
  using Type = simdjson::dom::element_type;
  const Type type = value.type();
  switch (scalar.kind) {
    case JsonScalar::Kind::kString: {
      std::string_view s;
      return value.get(s) == simdjson::SUCCESS && s == scalar.string;
    }
    case JsonScalar::Kind::kBool: {
      bool b = false;
      return value.get(b) == simdjson::SUCCESS && b == scalar.boolean;
    }
    case JsonScalar::Kind::kNull:
      return type == Type::NULL_VALUE;
    case JsonScalar::Kind::kNumber:
      if (type == Type::INT64) {
        int64_t v = value.get_int64().value_unsafe();
        return scalar.integral ? v == scalar.integer : static_cast<double>(v) == scalar.number;
      }
      if (type == Type::UINT64) {  // above INT64_MAX: no configured integer equals it
        return !scalar.integral &&
               static_cast<double>(value.get_uint64().value_unsafe()) == scalar.number;
      }
      if (type == Type::DOUBLE) return value.get_double().value_unsafe() == scalar.number;
      return false;
  }
  return false;
}

FilterContext::FilterContext(const std::vector<std::pair<std::string, std::string>>& headers,
                             std::string_view header_prefix, std::string_view body)
    : headers_(headers), prefix_(header_prefix), body_(body) {}

bool FilterContext::header_holds(const HeaderCondition& c) const {
  for (const auto& [name, value] : headers_) {
    std::string_view n(name);
    if (n.size() != prefix_.size() + c.name.size() || n.substr(0, prefix_.size()) != prefix_)
      continue;
    if (!ascii_iequals(n.substr(prefix_.size()), c.name)) continue;
    if (std::find(c.values.begin(), c.values.end(), value) != c.values.end()) return true;
  }
  return false;
}

bool FilterContext::body_holds(const BodyCondition& c) {
  if (body_state_ == Body::kUnparsed) {
    ++parses_;
    auto parsed = thread_parser().parse(body_.data(), body_.size());
    body_state_ = parsed.get(root_) == simdjson::SUCCESS ? Body::kJson : Body::kNotJson;
  }
  if (body_state_ != Body::kJson) return false;
  auto found = resolve(root_, c.pointer);
  switch (c.op) {
    case BodyCondition::Op::kExists:
      return found.has_value() == c.exists;
    case BodyCondition::Op::kEquals:
    case BodyCondition::Op::kIn:
      if (!found) return false;
      for (const auto& v : c.values) {
        if (json_equals(*found, v)) return true;
      }
      return false;
  }
  return false;
}

bool FilterContext::matches(const RouteFilter& filter) {
  // Headers first: they cost no parse, and a route they rule out never parses the body.
  for (const auto& c : filter.header) {
    if (!header_holds(c)) return false;
  }
  for (const auto& c : filter.body) {
    if (!body_holds(c)) return false;
  }
  return true;
}

}  // namespace hookrelay
