// SsrfGuard: decides whether the worker may connect to a resolved address.
//
// Deliveries go to URLs chosen by configuration or by callers of /v1/calls, so a hostname that
// resolves to loopback, a private network or a cloud metadata address (169.254.169.254) must not
// be reached. The guard judges the address actually about to be connected (libcurl's
// CURLOPT_OPENSOCKETFUNCTION hands it over), not the hostname, so DNS tricks cannot slip past it.
// IPv6 forms that embed an IPv4 address (::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16) are
// judged by the IPv4 address inside. Non-public ranges are refused unless allow_private_networks
// is set; addresses inside an allowlisted CIDR are always allowed.
//
// Thread-safety: immutable after construction; check() may be called from any thread.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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
  std::string to_string() const;
};

// "10.0.0.0/8", "fc00::/7", or a bare address (a /32 or /128). Host bits after the prefix must
// be zero, which catches typos such as "10.0.0.1/8". The error message quotes the text.
Result<Cidr> parse_cidr(std::string_view text);

class SsrfGuard {
 public:
  struct Decision {
    bool allowed = false;
    // The address's category: "public", or "loopback", "private", "link_local", "cgnat",
    // "multicast", "broadcast", "documentation", "benchmarking", "reserved", "unspecified",
    // optionally prefixed "ipv4_mapped_", "nat64_" or "6to4_" for an embedded IPv4 address;
    // "allowlisted" when an allowlist entry decided; "invalid_address" / "unsupported_family"
    // when there is nothing to judge. A non-public category with allowed=true means
    // allow_private_networks let it through.
    std::string reason;

    bool operator==(const Decision&) const = default;
  };

  SsrfGuard(bool allow_private_networks, std::vector<Cidr> allowlist);

  // AF_INET and AF_INET6 only; anything else (or nullptr) is refused.
  [[nodiscard]] Decision check(const sockaddr* addr) const;
  [[nodiscard]] Decision check(std::string_view ip) const;
  [[nodiscard]] Decision check(const IpAddress& ip) const;

 private:
  bool allowlisted(const IpAddress& ip) const;

  bool allow_private_networks_;
  std::vector<Cidr> allowlist_;
};

}  // namespace hookrelay
