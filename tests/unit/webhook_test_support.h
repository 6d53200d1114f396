// Test helpers for the signature tests: sources, and header lists as an HTTP layer would hand
// them to verify_webhook.
#pragma once

#include <algorithm>
#include <cctype>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "shared/config/config.h"
#include "shared/signing/signature_verifier.h"

namespace hookrelay::testing {

inline SourceConfig source_of(SchemeKind kind, std::vector<std::string> secrets = {}) {
  SourceConfig s;
  s.name = "src";
  s.scheme = kind;
  s.secrets = std::move(secrets);
  return s;
}

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Case-insensitive lookup over a copy of `list`; the returned views stay valid while the
// lookup object lives.
inline HeaderLookup lookup_of(HeaderList list) {
  auto owned = std::make_shared<HeaderList>(std::move(list));
  return [owned](std::string_view name) -> std::optional<std::string_view> {
    for (const auto& [k, v] : *owned) {
      if (std::equal(k.begin(), k.end(), name.begin(), name.end(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) ==
                   std::tolower(static_cast<unsigned char>(b));
          })) {
        return std::string_view(v);
      }
    }
    return std::nullopt;
  };
}

inline HeaderList without(HeaderList list, std::string_view name) {
  std::erase_if(list, [&](const auto& kv) { return kv.first == name; });
  return list;
}

inline HeaderList with(HeaderList list, const std::string& name, std::string value) {
  list = without(std::move(list), name);
  list.emplace_back(name, std::move(value));
  return list;
}

}  // namespace hookrelay::testing
