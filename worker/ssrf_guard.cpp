#include "worker/ssrf_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <utility>

namespace hookrelay {
namespace {

struct Range {
  Cidr cidr;
  const char* category;
};

Cidr must_parse(std::string_view text) { return parse_cidr(text).value(); }

// Most specific first: the first match names the category.
const std::vector<Range>& v4_ranges() {
  static const std::vector<Range> kRanges = {
      // Cloud instance metadata (AWS, GCP, Azure, ...; Alibaba Cloud's sits inside CGNAT space).
      {must_parse("169.254.169.254/32"), "cloud_metadata"},
      {must_parse("100.100.100.200/32"), "cloud_metadata"},
      {must_parse("0.0.0.0/32"), "unspecified"},
      {must_parse("0.0.0.0/8"), "reserved"},
      {must_parse("10.0.0.0/8"), "private"},
      {must_parse("100.64.0.0/10"), "cgnat"},
      {must_parse("127.0.0.0/8"), "loopback"},
      {must_parse("169.254.0.0/16"), "link_local"},
      {must_parse("172.16.0.0/12"), "private"},
      {must_parse("192.0.0.0/24"), "reserved"},
      {must_parse("192.0.2.0/24"), "documentation"},
      {must_parse("192.168.0.0/16"), "private"},
      {must_parse("198.18.0.0/15"), "benchmarking"},
      {must_parse("198.51.100.0/24"), "documentation"},
      {must_parse("203.0.113.0/24"), "documentation"},
      {must_parse("224.0.0.0/4"), "multicast"},
      {must_parse("255.255.255.255/32"), "broadcast"},
      {must_parse("240.0.0.0/4"), "reserved"},
  };
  return kRanges;
}

const std::vector<Range>& v6_ranges() {
  static const std::vector<Range> kRanges = {
      {must_parse("fd00:ec2::254/128"), "cloud_metadata"},  // AWS over IPv6
      {must_parse("::/128"), "unspecified"},
      {must_parse("::1/128"), "loopback"},
      {must_parse("::/96"), "reserved"},           // deprecated IPv4-compatible addresses
      {must_parse("64:ff9b:1::/48"), "reserved"},  // local-use NAT64
      {must_parse("100::/64"), "reserved"},        // discard-only
      {must_parse("2001:db8::/32"), "documentation"},
      {must_parse("2001::/23"), "reserved"},
      {must_parse("3fff::/20"), "documentation"},
      {must_parse("fc00::/7"), "private"},
      {must_parse("fe80::/10"), "link_local"},
      {must_parse("fec0::/10"), "private"},  // deprecated site-local
      {must_parse("ff00::/8"), "multicast"},
  };
  return kRanges;
}

struct Embedding {
  Cidr cidr;
  int v4_offset;  // where the IPv4 address sits in the 16 bytes
  const char* prefix;
};

const std::vector<Embedding>& v4_embeddings() {
  static const std::vector<Embedding> kEmbeddings = {
      {must_parse("::ffff:0:0/96"), 12, "ipv4_mapped_"},
      {must_parse("64:ff9b::/96"), 12, "nat64_"},
      {must_parse("2002::/16"), 2, "6to4_"},
  };
  return kEmbeddings;
}

const Cidr& global_unicast() {
  static const Cidr kGlobal = must_parse("2000::/3");
  return kGlobal;
}

// The IPv4 address embedded in an IPv6 one, and the category prefix naming the embedding.
std::optional<std::pair<IpAddress, const char*>> embedded_v4(const IpAddress& ip) {
  if (!ip.v6) return std::nullopt;
  for (const Embedding& e : v4_embeddings()) {
    if (!e.cidr.contains(ip)) continue;
    IpAddress v4;
    std::memcpy(v4.bytes.data(), ip.bytes.data() + e.v4_offset, 4);
    return std::make_pair(v4, e.prefix);
  }
  return std::nullopt;
}

std::string category_of(const IpAddress& ip) {
  if (auto inner = embedded_v4(ip)) {
    std::string c = category_of(inner->first);
    return c == "public" ? c : inner->second + c;
  }
  for (const Range& r : ip.v6 ? v6_ranges() : v4_ranges()) {
    if (r.cidr.contains(ip)) return r.category;
  }
  // Outside 2000::/3 nothing is assigned for global unicast.
  if (ip.v6 && !global_unicast().contains(ip)) return "reserved";
  return "public";
}

}  // namespace

SsrfGuard::SsrfGuard(bool allow_private_networks, std::vector<Cidr> allowlist)
    : allow_private_networks_(allow_private_networks), allowlist_(std::move(allowlist)) {}

bool SsrfGuard::allowlisted(const IpAddress& ip) const {
  auto inner = embedded_v4(ip);
  for (const Cidr& c : allowlist_) {
    if (c.contains(ip) || (inner && c.contains(inner->first))) return true;
  }
  return false;
}

// Not a network a receiver lives on: cloud metadata endpoints (they hand out the instance's
// credentials), link-local addresses around them, and addresses that are not one host.
// allow_private_networks does not open them; an allowlisted CIDR does.
bool SsrfGuard::opened_by_private_networks(std::string_view category) {
  for (std::string_view c :
       {"cloud_metadata", "link_local", "unspecified", "multicast", "broadcast"}) {
    if (category.size() >= c.size() && category.substr(category.size() - c.size()) == c)
      return false;
  }
  return true;
}

SsrfGuard::Decision SsrfGuard::check(const IpAddress& ip) const {
  if (allowlisted(ip)) return {true, "allowlisted"};
  std::string category = category_of(ip);
  const bool allowed =
      category == "public" || (allow_private_networks_ && opened_by_private_networks(category));
  return {allowed, std::move(category)};
}

SsrfGuard::Decision SsrfGuard::check(std::string_view ip) const {
  auto parsed = parse_ip(ip);
  if (!parsed) return {false, "invalid_address"};
  return check(*parsed);
}

SsrfGuard::Decision SsrfGuard::check(const sockaddr* addr) const {
  if (addr == nullptr) return {false, "unsupported_family"};
  IpAddress ip;
  // memcpy rather than a pointer cast: the caller's sockaddr need not be aligned for the
  // family-specific struct.
  if (addr->sa_family == AF_INET) {
    sockaddr_in in{};
    std::memcpy(&in, addr, sizeof(in));
    std::memcpy(ip.bytes.data(), &in.sin_addr, 4);
    return check(ip);
  }
  if (addr->sa_family == AF_INET6) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, addr, sizeof(in6));
    ip.v6 = true;
    std::memcpy(ip.bytes.data(), &in6.sin6_addr, 16);
    return check(ip);
  }
  return {false, "unsupported_family"};
}

}  // namespace hookrelay
