#include "worker/ordering_key.h"

#include <simdjson.h>

#include "shared/ascii.h"
#include "shared/kafka/wire_contract.h"
#include "shared/routes/ordering_key_text.h"

namespace hookrelay {
namespace {

std::string json_pointer_key(const JsonPointer& pointer, const std::string* body) {
  if (!body || body->empty()) return "";
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body->data(), body->size()).get(root) != simdjson::SUCCESS) return "";
  simdjson::dom::element at;
  if (root.at_pointer(pointer.text).get(at) != simdjson::SUCCESS) return "";
  std::string_view text;
  if (at.get(text) == simdjson::SUCCESS) return std::string(text);
  if (at.is_object() || at.is_array()) return "";
  return simdjson::minify(at);
}

std::string raw_ordering_key(const RouteConfig& route, const ConsumedMessage& m) {
  const OrderingKey& k = route.ordering_key;
  switch (k.from) {
    case OrderingKey::From::kKafkaKey:
      return m.key;
    case OrderingKey::From::kHeader: {
      const std::string* found = nullptr;
      for (const auto& [name, value] : m.headers) {
        std::string_view n = name;
        if (n.substr(0, header::kForwardPrefix.size()) == header::kForwardPrefix &&
            ascii_iequals(n.substr(header::kForwardPrefix.size()), k.header)) {
          found = &value;
        }
      }
      return found ? *found : "";
    }
    case OrderingKey::From::kJsonPointer:
      return json_pointer_key(k.pointer, m.value.get());
  }
  return "";
}

}  // namespace

std::string ordering_key_of(const RouteConfig& route, const ConsumedMessage& m) {
  return storable_ordering_key(raw_ordering_key(route, m));
}

}  // namespace hookrelay
