#include "devbroker/options.h"

#include <gtest/gtest.h>

namespace hookrelay::devbroker {
namespace {

TEST(DevBrokerOptions, DefaultsMatchTheDocumentedOnes) {
  auto o = parse_options({});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->brokers, 3);
  EXPECT_EQ(o->partitions, 12);
  EXPECT_EQ(o->retry_tiers, 6);
  EXPECT_EQ(o->effective_replication(), 3);
  EXPECT_EQ(o->control_host, "127.0.0.1");
  EXPECT_EQ(o->control_port, 0);
  EXPECT_FALSE(o->help);
}

TEST(DevBrokerOptions, ReplicationDefaultsToAtMostTheBrokerCount) {
  auto o = parse_options({"--brokers", "2"});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->effective_replication(), 2);
}

TEST(DevBrokerOptions, AcceptsSpaceAndEqualsForms) {
  auto o = parse_options({"--partitions=4", "--retry-tiers", "0", "--bootstrap-file", "/tmp/b",
                          "--control", "[::1]:7000", "--control-file=/tmp/c", "--stdin-control"});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->partitions, 4);
  EXPECT_EQ(o->retry_tiers, 0);
  EXPECT_EQ(o->bootstrap_file, "/tmp/b");
  EXPECT_EQ(o->control_host, "::1");
  EXPECT_EQ(o->control_port, 7000);
  EXPECT_EQ(o->control_file, "/tmp/c");
  EXPECT_TRUE(o->stdin_control);
}

TEST(DevBrokerOptions, ErrorsNameTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--bogus"}, "--bogus"},
      {{"--brokers", "0"}, "--brokers"},
      {{"--partitions", "12x"}, "--partitions"},
      {{"--partitions"}, "--partitions"},
      {{"--brokers", "2", "--replication", "3"}, "--replication"},
      {{"--control", "0.0.0.0:9000"}, "--control"},
      {{"--control", "127.0.0.1:70000"}, "--control"},
      {{"--control", "nocolon"}, "--control"},
      {{"--bootstrap-file="}, "--bootstrap-file"},
      {{"--log-level", "loud"}, "--log-level"},
  };
  for (const auto& [args, flag] : cases) {
    auto o = parse_options(args);
    ASSERT_FALSE(o) << flag;
    EXPECT_EQ(o.error().code, "bad_flag");
    EXPECT_NE(o.error().message.find(flag), std::string::npos) << o.error().message;
  }
}

TEST(DevBrokerOptions, HelpIsARequestNotAnError) {
  auto o = parse_options({"--help"});
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->help);
  EXPECT_NE(usage_text().find("5 MB per partition"), std::string::npos);
}

}  // namespace
}  // namespace hookrelay::devbroker
