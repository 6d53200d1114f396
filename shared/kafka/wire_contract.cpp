#include "shared/kafka/wire_contract.h"

#include <charconv>

namespace hookrelay {

std::optional<int64_t> parse_header_int(std::string_view value, int64_t lo, int64_t hi) {
  int64_t v = 0;
  const char* end = value.data() + value.size();
  auto [p, ec] = std::from_chars(value.data(), end, v);
  if (value.empty() || ec != std::errc() || p != end || v < lo || v > hi) return std::nullopt;
  return v;
}

}  // namespace hookrelay
