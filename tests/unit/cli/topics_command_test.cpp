// `hookrelay topics apply|check` without a cluster: usage and config errors (exit 2), and a
// clear error when Kafka does not answer (exit 1). The real-Kafka test is
// tests/kafka/topics_test.cpp.
#include <gtest/gtest.h>

#include "cli/cli_context.h"
#include "tests/unit/cli/cli_test_io.h"

namespace hookrelay::cli {
namespace {

using testing::TempFile;
using testing::TestIo;

TEST(TopicsCommand, NeedsApplyOrCheck) {
  TestIo t;
  EXPECT_EQ(t.run({"topics"}), kExitUsage);
  EXPECT_NE(t.err.str().find("expected the subcommand 'apply' or 'check'"), std::string::npos)
      << t.err.str();
  TestIo other;
  EXPECT_EQ(other.run({"topics", "create"}), kExitUsage);
}

TEST(TopicsCommand, OptionsOfTheOtherSubcommandAreUsageErrors) {
  TestIo t;
  EXPECT_EQ(t.run({"topics", "check", "--dry-run", "--bootstrap", "127.0.0.1:1"}), kExitUsage);
  TestIo u;
  EXPECT_EQ(u.run({"topics", "apply", "--json", "--bootstrap", "127.0.0.1:1"}), kExitUsage);
  TestIo v;
  EXPECT_EQ(v.run({"topics", "check", "--timeout", "0", "--bootstrap", "127.0.0.1:1"}), kExitUsage);
}

TEST(TopicsCommand, HelpDescribesBothSubcommands) {
  TestIo t;
  EXPECT_EQ(t.run({"help", "topics"}), kExitOk);
  EXPECT_NE(t.out.str().find("topics apply|check"), std::string::npos);
  EXPECT_NE(t.out.str().find("--dry-run"), std::string::npos);
  // apply creates it and check compares it, as for the other topics (shared/kafka/topic_plan.cpp).
  EXPECT_NE(t.out.str().find("hookrelay.parked"), std::string::npos);
}

TEST(TopicsCommand, AnInvalidTopicsSectionIsAConfigErrorNamingTheField) {
  TempFile file("topics: { replication_factor: 2, min_insync_replicas: 2 }\n");
  TestIo t;
  EXPECT_EQ(t.run({"topics", "check", "--config", file.path(), "--bootstrap", "127.0.0.1:1"}),
            kExitUsage);
  EXPECT_NE(t.err.str().find("topics.min_insync_replicas"), std::string::npos) << t.err.str();
}

// An empty --config meant "no config" and hid HOOKRELAY_CONFIG: apply then made the built-in
// defaults (12 partitions, replication factor 3) on whatever cluster --bootstrap named.
TEST(TopicsCommand, AnEmptyConfigPathIsRefusedEvenWithHookrelayConfigSet) {
  TempFile file("topics: { partitions: 1, replication_factor: 1, min_insync_replicas: 1 }\n");
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"topics", "apply", "--config", "", "--bootstrap", "127.0.0.1:1", "--timeout", "1"},
           {"topics", "apply", "--config=", "--bootstrap", "127.0.0.1:1", "--timeout", "1"},
           {"topics", "check", "--config", "", "--bootstrap", "127.0.0.1:1", "--timeout", "1"},
           {"routes", "list", "--config="},
           {"config", "check", "--config", ""}}) {
    TestIo t;
    t.env["HOOKRELAY_CONFIG"] = file.path();
    EXPECT_EQ(t.run(args), kExitUsage) << args[0] << " " << args[2];
    EXPECT_NE(t.err.str().find("--config: must not be empty"), std::string::npos) << t.err.str();
    EXPECT_EQ(t.out.str(), "") << args[0] << " " << args[2];
  }
}

TEST(TopicsCommand, TheFlagsThatAllowDestructiveChangesBelongToApply) {
  for (const char* flag : {"--allow-retention-decrease", "--allow-partition-increase"}) {
    TestIo t;
    EXPECT_EQ(t.run({"topics", "check", flag, "--bootstrap", "127.0.0.1:1"}), kExitUsage);
    EXPECT_NE(t.err.str().find(std::string(flag) + " applies to apply only"), std::string::npos)
        << t.err.str();
    TestIo help;
    EXPECT_EQ(help.run({"help", "topics"}), kExitOk);
    EXPECT_NE(help.out.str().find(flag), std::string::npos) << flag;
  }
}

TEST(TopicsCommand, NoBrokersNamedIsAUsageError) {
  TestIo t;
  EXPECT_EQ(t.run({"topics", "check"}), kExitUsage);
  EXPECT_NE(t.err.str().find("no Kafka brokers"), std::string::npos) << t.err.str();
}

TEST(TopicsCommand, UnreachableKafkaIsAClearErrorWithinTheTimeout) {
  TestIo t;
  EXPECT_EQ(t.run({"topics", "check", "--bootstrap", "127.0.0.1:1", "--timeout", "1"}),
            kExitFailed);
  EXPECT_NE(
      t.err.str().find("hookrelay topics check: Kafka at 127.0.0.1:1 did not answer within 1 s"),
      std::string::npos)
      << t.err.str();
  EXPECT_EQ(t.out.str(), "");
}

}  // namespace
}  // namespace hookrelay::cli
