// SsrfGuard: decides whether the worker may connect to a resolved address.
//
// Deliveries go to URLs chosen by configuration or by callers of /v1/calls, so a hostname that
// resolves to loopback, a private network or a cloud metadata address (169.254.169.254) must not
// be reached. The guard judges the address actually about to be connected (libcurl's
// CURLOPT_OPENSOCKETFUNCTION hands it over), not the hostname, so DNS tricks cannot slip past it.
// IPv6 forms that embed an IPv4 address (IPv4-mapped ::ffff:0:0/96, IPv4-translated
// ::ffff:0:0:0/96, IPv4-compatible ::/96, NAT64 64:ff9b::/96 and the local-use 64:ff9b:1::/48 in
// each RFC 6052 layout, 6to4 2002::/16) are judged by the IPv4 address inside: a non-public one
// gives its category, so 169.254.169.254 is cloud metadata however it is written. With a public
// one inside, the forms reached only through a translator the local network chose, or not at all
// (translated, compatible, local-use NAT64), stay "reserved". Non-public ranges are refused unless
// allow_private_networks is set, which still refuses cloud metadata, link-local, unspecified,
// multicast and broadcast addresses; addresses inside an allowlisted CIDR are always allowed.
//
// Thread-safety: immutable after construction; check() may be called from any thread.
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>
#include <vector>

#include "shared/net/ip_address.h"

namespace hookrelay {

class SsrfGuard {
 public:
  struct Decision {
    bool allowed = false;
    // The address's category: "public", or "cloud_metadata", "loopback", "private", "link_local",
    // "cgnat", "multicast", "broadcast", "documentation", "benchmarking", "reserved",
    // "unspecified", optionally prefixed "ipv4_mapped_" (also for the translated and compatible
    // forms), "nat64_" (either NAT64 prefix) or "6to4_" for an embedded IPv4 address; "allowlisted"
    // when an allowlist entry decided; "invalid_address" / "unsupported_family" when there is
    // nothing to judge. A non-public category with allowed=true means allow_private_networks let it
    // through.
    std::string reason;

    bool operator==(const Decision&) const = default;
  };

  SsrfGuard(bool allow_private_networks, std::vector<Cidr> allowlist);

  // AF_INET and AF_INET6 only; anything else (or nullptr) is refused.
  [[nodiscard]] Decision check(const sockaddr* addr) const;
  [[nodiscard]] Decision check(std::string_view ip) const;
  [[nodiscard]] Decision check(const IpAddress& ip) const;

  // Whether allow_private_networks opens a category: every non-public one but cloud metadata,
  // link-local, unspecified, multicast and broadcast addresses (in any embedding).
  [[nodiscard]] static bool opened_by_private_networks(std::string_view category);

 private:
  bool allowlisted(const IpAddress& ip) const;

  bool allow_private_networks_;
  std::vector<Cidr> allowlist_;
};

}  // namespace hookrelay
