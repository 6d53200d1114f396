#include "shared/kafka/wire_contract.h"

#include <charconv>

#include "shared/call_request.h"

namespace hookrelay {

std::optional<int64_t> parse_header_int(std::string_view value, int64_t lo, int64_t hi) {
  int64_t v = 0;
  const char* end = value.data() + value.size();
  auto [p, ec] = std::from_chars(value.data(), end, v);
  if (value.empty() || ec != std::errc() || p != end || v < lo || v > hi) return std::nullopt;
  return v;
}

void ForwardedHeaderCheck::add(std::string_view name, std::string_view value) {
  ++count_;
  bytes_ += header::kForwardPrefix.size() + name.size() + value.size();
  if (!invalid_.empty()) return;
  if (!valid_header_name(name)) {
    invalid_ = "header name '" + std::string(name.substr(0, 64)) +
               (name.size() > 64 ? "...'" : "'") + " (" + std::to_string(name.size()) +
               " bytes) is not one that can be forwarded (at most 256 token characters)";
  } else if (!forwardable_header_value(value)) {
    invalid_ = "header '" + std::string(name) + "' has a value that cannot be forwarded";
  }
}

std::optional<std::string> ForwardedHeaderCheck::problem() const {
  if (!invalid_.empty()) return invalid_;
  if (count_ > max_headers_ || bytes_ > kMaxForwardedBytes) {
    return std::to_string(count_) + " headers of " + std::to_string(bytes_) +
           " bytes to forward; at most " + std::to_string(max_headers_) + " and " +
           std::to_string(kMaxForwardedBytes) + " bytes (each name with its " +
           std::to_string(header::kForwardPrefix.size()) + "-byte prefix)";
  }
  return std::nullopt;
}

}  // namespace hookrelay
