#include "worker/ssrf_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
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
      {must_parse("::/96"), "reserved"},     // ::/104: not taken as IPv4-compatible (v4_embeddings)
      {must_parse("100::/64"), "reserved"},  // discard-only
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

// Where an IPv4 address sits in the 16 bytes. A layout with `zero_from` < 16 is one of the shorter
// RFC 6052 formats: it applies only when byte 8 (its "u" octet) and the bytes from zero_from on
// are zero.
struct V4Layout {
  std::array<int, 4> at;
  int zero_from = 16;
};

constexpr V4Layout kLast32{{12, 13, 14, 15}};
constexpr V4Layout k6to4{{2, 3, 4, 5}};

struct Embedding {
  Cidr cidr;
  const char* prefix;  // names the embedding in a category
  // The range's own category when every IPv4 address inside is public: "public" for the forms a
  // host reaches that IPv4 address through, "reserved" for the rest. A non-public one inside
  // always decides, so allow_private_networks opens no more than it opens for the IPv4 address.
  const char* own_category;
  // More than one: each that applies is judged, and the most closed decides (the first on a tie).
  std::vector<V4Layout> layouts;
};

const std::vector<Embedding>& v4_embeddings() {
  static const std::vector<Embedding> kEmbeddings = {
      {must_parse("::ffff:0:0/96"), "ipv4_mapped_", "public", {kLast32}},
      // IPv4-translated (SIIT, RFC 2765) and the deprecated IPv4-compatible addresses (RFC 4291):
      // named as mapped ones. ::/104 (::, ::1, ::0.x.x.x) is left to v6_ranges.
      {must_parse("::ffff:0:0:0/96"), "ipv4_mapped_", "reserved", {kLast32}},
      {must_parse("::/96"), "ipv4_mapped_", "reserved", {kLast32}},
      {must_parse("64:ff9b::/96"), "nat64_", "public", {kLast32}},
      // Local-use NAT64 (RFC 8215): a translator may use it with any RFC 6052 prefix length from
      // /48 on, so the IPv4 address may sit in any of these places. The shorter layouts first:
      // where one applies, the last 32 bits are mostly its zeros, and it names a tie.
      {must_parse("64:ff9b:1::/48"),
       "nat64_",
       "reserved",
       {{{6, 7, 9, 10}, 11},    // a /48 prefix
        {{7, 9, 10, 11}, 12},   // /56
        {{9, 10, 11, 12}, 13},  // /64
        kLast32}},              // /96
      {must_parse("2002::/16"), "6to4_", "public", {k6to4}},
  };
  return kEmbeddings;
}

const Cidr& global_unicast() {
  static const Cidr kGlobal = must_parse("2000::/3");
  return kGlobal;
}

const Cidr& not_ipv4_compatible() {
  static const Cidr kLow = must_parse("::/104");
  return kLow;
}

// The embedding an IPv6 address is in, if any, and the IPv4 address(es) it may stand for.
struct Embedded {
  const Embedding* embedding = nullptr;
  std::vector<IpAddress> v4;
};

Embedded embedded_v4(const IpAddress& ip) {
  Embedded out;
  if (!ip.v6 || not_ipv4_compatible().contains(ip)) return out;
  for (const Embedding& e : v4_embeddings()) {
    if (!e.cidr.contains(ip)) continue;
    out.embedding = &e;
    for (const V4Layout& layout : e.layouts) {
      if (layout.zero_from < 16) {
        if (ip.bytes[8] != 0) continue;
        if (std::any_of(ip.bytes.begin() + layout.zero_from, ip.bytes.end(),
                        [](uint8_t b) { return b != 0; }))
          continue;
      }
      IpAddress v4;
      for (std::size_t i = 0; i < 4; ++i)
        v4.bytes[i] = ip.bytes[static_cast<std::size_t>(layout.at[i])];
      out.v4.push_back(v4);
    }
    return out;
  }
  return out;
}

// 0 public, 1 opened by allow_private_networks, 2 never opened by it.
int closedness(std::string_view category) {
  if (category == "public") return 0;
  return SsrfGuard::opened_by_private_networks(category) ? 1 : 2;
}

std::string category_of(const IpAddress& ip) {
  if (const Embedded inner = embedded_v4(ip); inner.embedding) {
    std::string worst = "public";
    for (const IpAddress& v4 : inner.v4) {
      std::string c = category_of(v4);
      if (closedness(c) > closedness(worst)) worst = std::move(c);
    }
    return worst == "public" ? inner.embedding->own_category : inner.embedding->prefix + worst;
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
  const auto listed = [this](const IpAddress& a) {
    return std::any_of(allowlist_.begin(), allowlist_.end(),
                       [&a](const Cidr& c) { return c.contains(a); });
  };
  if (listed(ip)) return true;
  // An embedding is listed when every IPv4 address it may stand for is.
  const Embedded inner = embedded_v4(ip);
  return !inner.v4.empty() && std::all_of(inner.v4.begin(), inner.v4.end(), listed);
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
