// The SSRF guard's decisions on literal addresses, and the IP and CIDR parsers behind it. Pure:
// nothing is resolved or connected. Input: ADDRESS\nCIDR\nRAW, where RAW fills a sockaddr as
// libcurl would hand one over.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "worker/ssrf_guard.h"

using namespace hookrelay;

namespace {

bool known_reason(const std::string& reason) {
  static const std::set<std::string> kBase = {
      "public",    "loopback",      "private",      "link_local", "cgnat",       "multicast",
      "broadcast", "documentation", "benchmarking", "reserved",   "unspecified", "cloud_metadata"};
  if (reason == "allowlisted" || reason == "invalid_address" || reason == "unsupported_family")
    return true;
  for (std::string_view prefix : {"", "ipv4_mapped_", "nat64_", "6to4_"}) {
    if (reason.rfind(prefix, 0) == 0 && kBase.count(reason.substr(prefix.size()))) return true;
  }
  return false;
}

void check_decision(const SsrfGuard::Decision& d, bool allow_private, std::string_view what) {
  fuzz::check(known_reason(d.reason), "unknown decision reason", d.reason);
  if (!allow_private && d.reason != "public" && d.reason != "allowlisted") {
    fuzz::check(!d.allowed, "a non-public address was allowed", what);
  }
}

// ip as the sockaddr libcurl's open-socket callback would pass.
SsrfGuard::Decision check_as_sockaddr(const SsrfGuard& guard, const IpAddress& ip) {
  sockaddr_storage ss{};
  if (ip.v6) {
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    std::memcpy(&in6.sin6_addr, ip.bytes.data(), 16);
    std::memcpy(&ss, &in6, sizeof in6);
  } else {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    std::memcpy(&in.sin_addr, ip.bytes.data(), 4);
    std::memcpy(&ss, &in, sizeof in);
  }
  return guard.check(reinterpret_cast<const sockaddr*>(&ss));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto parts = fuzz::split(in, '\n');
  std::string address(parts[0]);
  std::string cidr_text(parts.size() > 1 ? parts[1] : std::string_view());
  std::string_view raw =
      parts.size() > 2 ? in.substr(address.size() + cidr_text.size() + 2) : std::string_view();

  static const SsrfGuard strict(false, {});
  static const SsrfGuard lenient(true, {});

  auto ip = parse_ip(address);
  if (ip) {
    fuzz::check(address.find('\0') == std::string::npos, "parse_ip accepted text with a NUL in it",
                address);
    fuzz::check(address.find('/') == std::string::npos && address.find('%') == std::string::npos,
                "parse_ip accepted a prefix or a zone", address);
    std::string text = ip_to_string(*ip);
    auto back = parse_ip(text);
    fuzz::check(back && *back == *ip, "ip_to_string does not parse back to the same address", text);
    auto d = strict.check(*ip);
    check_decision(d, false, address);
    fuzz::check(strict.check(std::string_view(address)) == d,
                "check(text) differs from check(parsed)", address);
    fuzz::check(check_as_sockaddr(strict, *ip) == d, "check(sockaddr) differs from check(parsed)",
                address);
    auto l = lenient.check(*ip);
    check_decision(l, true, address);
    fuzz::check(l.reason == d.reason, "allow_private_networks changed the category", address);
    fuzz::check(l.allowed == SsrfGuard::opened_by_private_networks(l.reason),
                "allow_private_networks opened a category it keeps shut, or kept one shut",
                address);
    if (!ip->v6) {
      // The IPv4 address inside IPv6 forms is judged like the address itself.
      for (std::string_view prefix : {"::ffff:", "64:ff9b::"}) {
        auto wrapped = parse_ip(std::string(prefix) + text);
        fuzz::check(wrapped.has_value(), "wrapped IPv4 does not parse", text);
        auto w = strict.check(*wrapped);
        fuzz::check(w.allowed == d.allowed, "an embedded IPv4 address is judged differently",
                    std::string(prefix) + text);
      }
    }
  } else {
    fuzz::check(
        strict.check(std::string_view(address)) == SsrfGuard::Decision{false, "invalid_address"},
        "an unparsable address was not refused as invalid_address", address);
  }

  if (auto cidr = parse_cidr(cidr_text)) {
    fuzz::check(cidr->prefix_len >= 0 && cidr->prefix_len <= (cidr->base.v6 ? 128 : 32),
                "prefix out of range");
    fuzz::check(cidr->contains(cidr->base), "a CIDR does not contain its own base", cidr_text);
    auto again = parse_cidr(cidr->to_string());
    fuzz::check(again && again->base == cidr->base && again->prefix_len == cidr->prefix_len,
                "Cidr::to_string does not parse back", cidr->to_string());
    SsrfGuard allow(false, {*cidr});
    fuzz::check(allow.check(cidr->base) == SsrfGuard::Decision{true, "allowlisted"},
                "an allowlisted CIDR's base was not allowed", cidr_text);
    if (ip && cidr->contains(*ip))
      fuzz::check(allow.check(*ip).allowed, "an address in the allowlist was refused");
  } else {
    fuzz::check(cidr.error().code == "bad_cidr", "unexpected error code", cidr.error().code);
  }

  // Any bytes as a sockaddr: decided without reading past the structure.
  sockaddr_storage ss{};
  if (!raw.empty()) std::memcpy(&ss, raw.data(), std::min(raw.size(), sizeof ss));
  check_decision(strict.check(reinterpret_cast<const sockaddr*>(&ss)), false, "raw sockaddr");
  fuzz::check(strict.check(static_cast<const sockaddr*>(nullptr)).reason == "unsupported_family",
              "nullptr accepted");
  return 0;
}
