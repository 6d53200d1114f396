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

std::optional<int> prefix_number(std::string_view s) {
  if (s.empty() || s.size() > 3) return std::nullopt;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

// `ip` with every bit after the first prefix_len zeroed.
IpAddress keep_prefix(const IpAddress& ip, int prefix_len) {
  IpAddress out;
  out.v6 = ip.v6;
  const auto full_bytes = static_cast<std::size_t>(prefix_len / 8);
  std::memcpy(out.bytes.data(), ip.bytes.data(), full_bytes);
  if (prefix_len % 8 != 0) {
    const auto mask = static_cast<uint8_t>(0xFF << (8 - prefix_len % 8));
    out.bytes[full_bytes] = ip.bytes[full_bytes] & mask;
  }
  return out;
}

}  // namespace

std::optional<IpAddress> parse_ip(std::string_view text) {
  // inet_pton reads a C string: a NUL inside would hide whatever follows it.
  if (text.find('\0') != std::string_view::npos) return std::nullopt;
  const std::string s(text);
  IpAddress ip;
  if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) == 1) return ip;
  ip.v6 = true;
  if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) == 1) return ip;
  return std::nullopt;
}

std::string ip_to_string(const IpAddress& ip) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(ip.v6 ? AF_INET6 : AF_INET, ip.bytes.data(), buf, sizeof(buf));
  return buf;
}

bool Cidr::contains(const IpAddress& ip) const {
  return ip.v6 == base.v6 && keep_prefix(ip, prefix_len) == base;
}

std::string Cidr::to_string() const {
  return ip_to_string(base) + "/" + std::to_string(prefix_len);
}

Result<Cidr> parse_cidr(std::string_view text) {
  auto bad = [&](const char* why) {
    return fail("bad_cidr", "invalid CIDR \"" + std::string(text) + "\": " + why);
  };
  const std::size_t slash = text.find('/');
  auto ip = parse_ip(text.substr(0, slash));
  if (!ip) return bad("not an IPv4 or IPv6 address");
  const int max_len = ip->v6 ? 128 : 32;
  Cidr cidr{*ip, max_len};
  if (slash != std::string_view::npos) {
    auto len = prefix_number(text.substr(slash + 1));
    if (!len || *len > max_len)
      return bad(ip->v6 ? "prefix length must be 0..128" : "prefix length must be 0..32");
    cidr.prefix_len = *len;
  }
  if (keep_prefix(cidr.base, cidr.prefix_len) != cidr.base) {
    return bad("address has bits set after the prefix");
  }
  return cidr;
}

SsrfGuard::SsrfGuard(bool allow_private_networks, std::vector<Cidr> allowlist)
    : allow_private_networks_(allow_private_networks), allowlist_(std::move(allowlist)) {}

bool SsrfGuard::allowlisted(const IpAddress& ip) const {
  auto inner = embedded_v4(ip);
  for (const Cidr& c : allowlist_) {
    if (c.contains(ip) || (inner && c.contains(inner->first))) return true;
  }
  return false;
}

SsrfGuard::Decision SsrfGuard::check(const IpAddress& ip) const {
  if (allowlisted(ip)) return {true, "allowlisted"};
  std::string category = category_of(ip);
  const bool allowed = category == "public" || allow_private_networks_;
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
