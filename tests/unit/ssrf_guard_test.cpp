#include "worker/ssrf_guard.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>

namespace hookrelay {
namespace {

using GuardDecision = SsrfGuard::Decision;

struct Row {
  const char* ip;
  bool allowed;
  const char* reason;
};

// Default guard: private networks refused, no allowlist.
const Row kDefaultTable[] = {
    // IPv4 public
    {"8.8.8.8", true, "public"},
    {"1.1.1.1", true, "public"},
    {"93.184.216.34", true, "public"},
    {"9.255.255.255", true, "public"},
    {"11.0.0.0", true, "public"},
    {"100.63.255.255", true, "public"},
    {"100.128.0.0", true, "public"},
    {"172.15.255.255", true, "public"},
    {"172.32.0.0", true, "public"},
    {"192.0.1.1", true, "public"},
    {"192.167.255.255", true, "public"},
    {"192.169.0.0", true, "public"},
    {"198.17.255.255", true, "public"},
    {"198.20.0.0", true, "public"},
    {"223.255.255.255", true, "public"},
    // IPv4 blocked
    {"0.0.0.0", false, "unspecified"},
    {"0.1.2.3", false, "reserved"},
    {"10.0.0.1", false, "private"},
    {"10.255.255.255", false, "private"},
    {"100.64.0.0", false, "cgnat"},
    {"100.127.255.255", false, "cgnat"},
    {"127.0.0.1", false, "loopback"},
    {"127.255.255.254", false, "loopback"},
    {"169.254.169.254", false, "cloud_metadata"},
    {"169.254.1.1", false, "link_local"},
    {"100.100.100.200", false, "cloud_metadata"},
    {"fd00:ec2::254", false, "cloud_metadata"},
    {"172.16.0.1", false, "private"},
    {"172.31.255.255", false, "private"},
    {"192.0.0.8", false, "reserved"},
    {"192.0.2.1", false, "documentation"},
    {"192.168.1.1", false, "private"},
    {"198.18.0.1", false, "benchmarking"},
    {"198.19.255.255", false, "benchmarking"},
    {"198.51.100.7", false, "documentation"},
    {"203.0.113.9", false, "documentation"},
    {"224.0.0.1", false, "multicast"},
    {"239.255.255.250", false, "multicast"},
    {"240.0.0.1", false, "reserved"},
    {"255.255.255.254", false, "reserved"},
    {"255.255.255.255", false, "broadcast"},
    // IPv6 public
    {"2606:4700:4700::1111", true, "public"},
    {"2a00:1450:4001:80b::200e", true, "public"},
    {"2001:200::1", true, "public"},  // just past 2001::/23
    // IPv6 blocked
    {"::", false, "unspecified"},
    {"::1", false, "loopback"},
    {"::2", false, "reserved"},
    {"::10.0.0.1", false, "ipv4_mapped_private"},  // deprecated IPv4-compatible
    {"::0.255.255.255", false, "reserved"},        // ::/104 is not taken as IPv4-compatible
    {"fc00::1", false, "private"},
    {"fd12:3456:789a::1", false, "private"},
    {"fe80::1", false, "link_local"},
    {"febf:ffff::1", false, "link_local"},
    {"fec0::1", false, "private"},
    {"ff02::1", false, "multicast"},
    {"ff05::2", false, "multicast"},
    {"2001:db8::1", false, "documentation"},
    {"3fff::1", false, "documentation"},
    {"100::1", false, "reserved"},
    {"2001::1", false, "reserved"},  // Teredo
    {"2001:1ff:ffff::1", false, "reserved"},
    {"64:ff9b:1::1", false, "nat64_reserved"},  // local-use NAT64, 0.0.0.1 inside
    {"4000::1", false, "reserved"},             // outside global unicast
    // IPv6 embedding IPv4: judged by the IPv4 inside
    {"::ffff:8.8.8.8", true, "public"},
    {"::ffff:127.0.0.1", false, "ipv4_mapped_loopback"},
    {"::ffff:10.1.2.3", false, "ipv4_mapped_private"},
    {"::ffff:169.254.169.254", false, "ipv4_mapped_cloud_metadata"},
    {"::ffff:0.0.0.0", false, "ipv4_mapped_unspecified"},
    {"64:ff9b::8.8.8.8", true, "public"},
    {"64:ff9b::192.168.0.1", false, "nat64_private"},
    {"64:ff9b::7f00:1", false, "nat64_loopback"},
    {"2002:0808:0808::1", true, "public"},
    {"2002:7f00:0001::1", false, "6to4_loopback"},
    {"2002:a9fe:a9fe::", false, "6to4_cloud_metadata"},
    {"2002:a9fe:101::", false, "6to4_link_local"},
    // ... in the forms a host reaches only through a translator of its network's choosing, or not
    // at all: reserved when the IPv4 address inside is public, its category when it is not.
    {"::a9fe:a9fe", false, "ipv4_mapped_cloud_metadata"},  // IPv4-compatible
    {"::169.254.1.1", false, "ipv4_mapped_link_local"},
    {"::8.8.8.8", false, "reserved"},
    {"::ffff:0:a9fe:a9fe", false, "ipv4_mapped_cloud_metadata"},  // IPv4-translated
    {"::ffff:0:7f00:1", false, "ipv4_mapped_loopback"},
    {"::ffff:0:808:808", false, "reserved"},
    {"64:ff9b::a9fe:a9fe", false, "nat64_cloud_metadata"},
    {"64:ff9b:1::a9fe:a9fe", false, "nat64_cloud_metadata"},  // local-use NAT64, a /96
    {"64:ff9b:1:ab:cd:ef01:a9fe:a9fe", false, "nat64_cloud_metadata"},
    {"64:ff9b:1::a9fe:101", false, "nat64_link_local"},
    {"64:ff9b:1::c0a8:1", false, "nat64_private"},
    {"64:ff9b:1:0:a9:fea9:fe00:0", false, "nat64_cloud_metadata"},  // the RFC 6052 /64 layout
    {"64:ff9b:1:a9:fe:a9fe::", false, "nat64_cloud_metadata"},      // /56
    {"64:ff9b:1:a9fe:a9:fe00::", false, "nat64_cloud_metadata"},    // /48
    {"64:ff9b:1::808:808", false, "reserved"},
    // Not an address
    {"localhost", false, "invalid_address"},
    {"", false, "invalid_address"},
    {"10.0.0.1/8", false, "invalid_address"},
    {"0x7f.0.0.1", false, "invalid_address"},
    {"127.1", false, "invalid_address"},
    {"[::1]", false, "invalid_address"},
};

TEST(SsrfGuard, DefaultDecisionTable) {
  SsrfGuard guard(false, {});
  for (const Row& r : kDefaultTable) {
    EXPECT_EQ(guard.check(std::string_view(r.ip)), (GuardDecision{r.allowed, r.reason})) << r.ip;
  }
}

// Private networks open every range a receiver can live on, but not link-local (the cloud
// metadata address), unspecified, multicast or broadcast addresses, in any embedding.
TEST(SsrfGuard, AllowPrivateNetworksAllowsEveryReceiverRangeButKeepsTheCategory) {
  SsrfGuard guard(true, {});
  for (const Row& r : kDefaultTable) {
    const std::string_view reason = r.reason;
    const bool never = reason.find("cloud_metadata") != std::string_view::npos ||
                       reason.find("link_local") != std::string_view::npos ||
                       reason.find("unspecified") != std::string_view::npos ||
                       reason.find("multicast") != std::string_view::npos ||
                       reason.find("broadcast") != std::string_view::npos;
    EXPECT_EQ(guard.check(std::string_view(r.ip)),
              (GuardDecision{reason != "invalid_address" && !never, r.reason}))
        << r.ip;
  }
  EXPECT_EQ(guard.check(std::string_view("169.254.169.254")),
            (GuardDecision{false, "cloud_metadata"}));
  EXPECT_EQ(guard.check(std::string_view("::ffff:169.254.169.254")),
            (GuardDecision{false, "ipv4_mapped_cloud_metadata"}));
  EXPECT_EQ(guard.check(std::string_view("64:ff9b::a9fe:101")),
            (GuardDecision{false, "nat64_link_local"}));
  EXPECT_EQ(guard.check(std::string_view("10.1.2.3")), (GuardDecision{true, "private"}));
  EXPECT_EQ(guard.check(std::string_view("127.0.0.1")), (GuardDecision{true, "loopback"}));
  // An allowlisted CIDR still opens them.
  SsrfGuard listed(true, {parse_cidr("169.254.10.0/24").value()});
  EXPECT_EQ(listed.check(std::string_view("169.254.10.7")), (GuardDecision{true, "allowlisted"}));
}

// allow_private_networks opens "reserved"; an IPv6 form of the metadata address used to be only
// that, whatever the IPv4 address inside.
TEST(SsrfGuard, AllowPrivateNetworksNeverOpensMetadataInAnyIpv6Embedding) {
  const SsrfGuard lenient(true, {});
  const SsrfGuard strict(false, {});
  for (const char* ip :
       {"::ffff:169.254.169.254", "::ffff:0:a9fe:a9fe", "::a9fe:a9fe", "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a9fe:a9fe", "64:ff9b:1:0:a9:fea9:fe00:0",
        "64:ff9b:1:a9:fe:a9fe::", "64:ff9b:1:a9fe:a9:fe00::", "2002:a9fe:a9fe::"}) {
    const auto decision = lenient.check(std::string_view(ip));
    EXPECT_FALSE(decision.allowed) << ip << ": " << decision.reason;
    EXPECT_TRUE(decision.reason.ends_with("cloud_metadata")) << ip << ": " << decision.reason;
    EXPECT_FALSE(strict.check(std::string_view(ip)).allowed) << ip;
  }
  for (const char* ip : {"::a9fe:101", "::ffff:0:a9fe:101", "64:ff9b:1::a9fe:101"}) {
    EXPECT_FALSE(lenient.check(std::string_view(ip)).allowed) << ip << " (link-local inside)";
    EXPECT_FALSE(strict.check(std::string_view(ip)).allowed) << ip;
  }
  // What these forms held before stays as it was: a private or public IPv4 address inside.
  EXPECT_EQ(lenient.check(std::string_view("64:ff9b:1::a00:1")),
            (GuardDecision{true, "nat64_private"}));
  EXPECT_EQ(lenient.check(std::string_view("64:ff9b:1::808:808")),
            (GuardDecision{true, "reserved"}));
  EXPECT_EQ(strict.check(std::string_view("64:ff9b:1::808:808")),
            (GuardDecision{false, "reserved"}));
  EXPECT_EQ(lenient.check(std::string_view("::2")), (GuardDecision{true, "reserved"}));
  EXPECT_EQ(lenient.check(std::string_view("::1")), (GuardDecision{true, "loopback"}));
  EXPECT_EQ(lenient.check(std::string_view("::")), (GuardDecision{false, "unspecified"}));
  // As libcurl's open-socket callback hands the address over.
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  ASSERT_EQ(inet_pton(AF_INET6, "64:ff9b:1::a9fe:a9fe", &v6.sin6_addr), 1);
  EXPECT_EQ(lenient.check(reinterpret_cast<const sockaddr*>(&v6)),
            (GuardDecision{false, "nat64_cloud_metadata"}));
  // An allowlist entry opens an embedding only when it holds every IPv4 address that may be inside.
  const SsrfGuard listed(false, {parse_cidr("169.254.169.254").value()});
  EXPECT_EQ(listed.check(std::string_view("::a9fe:a9fe")), (GuardDecision{true, "allowlisted"}));
  EXPECT_EQ(listed.check(std::string_view("64:ff9b:1:0:a9:fea9:fe00:0")),
            (GuardDecision{false, "nat64_cloud_metadata"}))
      << "254.0.0.0, its last 32 bits, is not listed";
}

TEST(SsrfGuard, AllowlistAllowsMatchingAddressesOnly) {
  SsrfGuard guard(false, {parse_cidr("10.1.0.0/16").value(), parse_cidr("fd00:1::/32").value(),
                          parse_cidr("127.0.0.1").value()});
  const Row rows[] = {
      {"10.1.0.1", true, "allowlisted"},
      {"10.1.255.255", true, "allowlisted"},
      {"10.2.0.1", false, "private"},
      {"127.0.0.1", true, "allowlisted"},
      {"127.0.0.2", false, "loopback"},
      {"fd00:1::5", true, "allowlisted"},
      {"fd00:2::5", false, "private"},
      {"::ffff:10.1.2.3", true, "allowlisted"},  // same destination as 10.1.2.3
      {"::ffff:10.2.2.3", false, "ipv4_mapped_private"},
      {"8.8.8.8", true, "public"},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(guard.check(std::string_view(r.ip)), (GuardDecision{r.allowed, r.reason})) << r.ip;
  }
}

TEST(SsrfGuard, ChecksSockaddrOfEitherFamily) {
  SsrfGuard guard(false, {});
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_port = htons(443);
  ASSERT_EQ(inet_pton(AF_INET, "169.254.169.254", &v4.sin_addr), 1);
  EXPECT_EQ(guard.check(reinterpret_cast<const sockaddr*>(&v4)),
            (GuardDecision{false, "cloud_metadata"}));
  ASSERT_EQ(inet_pton(AF_INET, "8.8.4.4", &v4.sin_addr), 1);
  EXPECT_EQ(guard.check(reinterpret_cast<const sockaddr*>(&v4)), (GuardDecision{true, "public"}));

  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  ASSERT_EQ(inet_pton(AF_INET6, "::ffff:192.168.0.10", &v6.sin6_addr), 1);
  EXPECT_EQ(guard.check(reinterpret_cast<const sockaddr*>(&v6)),
            (GuardDecision{false, "ipv4_mapped_private"}));
  ASSERT_EQ(inet_pton(AF_INET6, "2606:4700::1", &v6.sin6_addr), 1);
  EXPECT_EQ(guard.check(reinterpret_cast<const sockaddr*>(&v6)), (GuardDecision{true, "public"}));

  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_EQ(guard.check(reinterpret_cast<const sockaddr*>(&un)),
            (GuardDecision{false, "unsupported_family"}));
  EXPECT_EQ(guard.check(static_cast<const sockaddr*>(nullptr)),
            (GuardDecision{false, "unsupported_family"}));
}

TEST(Cidr, ParsesBothFamiliesAndBareAddresses) {
  auto v4 = parse_cidr("10.0.0.0/8");
  ASSERT_TRUE(v4) << v4.error().message;
  EXPECT_EQ(v4->to_string(), "10.0.0.0/8");
  auto v6 = parse_cidr("fd00::/8");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->to_string(), "fd00::/8");
  EXPECT_EQ(parse_cidr("192.0.2.7").value().prefix_len, 32);
  EXPECT_EQ(parse_cidr("2001:db8::1").value().prefix_len, 128);
  EXPECT_EQ(parse_cidr("0.0.0.0/0").value().prefix_len, 0);
  EXPECT_EQ(parse_cidr("::/0").value().prefix_len, 0);
}

TEST(Cidr, ContainsRespectsPrefixAndFamily) {
  Cidr c = parse_cidr("172.16.0.0/12").value();
  EXPECT_TRUE(c.contains(*parse_ip("172.16.0.0")));
  EXPECT_TRUE(c.contains(*parse_ip("172.31.255.255")));
  EXPECT_FALSE(c.contains(*parse_ip("172.32.0.0")));
  EXPECT_FALSE(c.contains(*parse_ip("::ffff:172.16.0.1")));  // the guard unwraps, Cidr does not
  Cidr all = parse_cidr("0.0.0.0/0").value();
  EXPECT_TRUE(all.contains(*parse_ip("255.255.255.255")));
  EXPECT_FALSE(all.contains(*parse_ip("::1")));
  Cidr odd = parse_cidr("fe80::/10").value();
  EXPECT_TRUE(odd.contains(*parse_ip("febf::1")));
  EXPECT_FALSE(odd.contains(*parse_ip("fec0::1")));
}

TEST(Cidr, RejectsBadTextAndNamesIt) {
  for (const char* bad :
       {"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/8/8",
        "10.0.0.0/ 8", "10.0.0.1/8", "fe80::1/10", "example.com/8", "10.0.0/8", "1.2.3.4/0008"}) {
    auto r = parse_cidr(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, "bad_cidr");
    EXPECT_NE(r.error().message.find('"' + std::string(bad) + '"'), std::string::npos)
        << r.error().message;
  }
}

}  // namespace
}  // namespace hookrelay
