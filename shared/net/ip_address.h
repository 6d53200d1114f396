// IP addresses and CIDR ranges as configuration and the SSRF guard use them: parsed from text
// (inet_pton), printed back, and matched by prefix.
//
// Thread-safety: values and pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shared/result.h"

namespace hookrelay {

struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // network order; IPv4 uses the first 4

  bool operator==(const IpAddress&) const = default;
};

// Accepts dotted-quad IPv4 and textual IPv6 (no brackets, no zone); nullopt otherwise.
std::optional<IpAddress> parse_ip(std::string_view text);

std::string ip_to_string(const IpAddress& ip);

struct Cidr {
  IpAddress base;      // host bits are zero
  int prefix_len = 0;  // 0..32 for IPv4, 0..128 for IPv6

  // Same family and same leading prefix_len bits.
  bool contains(const IpAddress& ip) const;
  bool operator==(const Cidr&) const = default;
  std::string to_string() const;
};

// "10.0.0.0/8", "fc00::/7", or a bare address (a /32 or /128). Host bits after the prefix must
// be zero, which catches typos such as "10.0.0.1/8". The error message quotes the text.
Result<Cidr> parse_cidr(std::string_view text);

}  // namespace hookrelay
