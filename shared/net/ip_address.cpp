#include "shared/net/ip_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace hookrelay {
namespace {

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

}  // namespace hookrelay
