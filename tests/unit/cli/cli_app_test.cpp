#include "cli/cli_app.h"

#include <gtest/gtest.h>

#include "cli/cli_context.h"
#include "tests/unit/cli/cli_test_io.h"

namespace hookrelay::cli {
namespace {

using testing::TestIo;

TEST(CliApp, TopLevelHelpListsCommandsAndExitCodes) {
  TestIo t;
  EXPECT_EQ(t.run({"--help"}), kExitOk);
  const std::string help = t.out.str();
  for (const char* s :
       {"migrate", "config check", "dlq list", "dlq show", "dlq replay", "deliveries show",
        "events show", "sign", "send", "exit codes:", "3  not found"}) {
    EXPECT_NE(help.find(s), std::string::npos) << s;
  }
}

TEST(CliApp, EveryCommandHasHelpThatExitsZero) {
  for (std::vector<std::string> cmd : std::vector<std::vector<std::string>>{{"migrate"},
                                                                            {"config"},
                                                                            {"config", "check"},
                                                                            {"dlq"},
                                                                            {"dlq", "replay"},
                                                                            {"deliveries"},
                                                                            {"events"},
                                                                            {"sign"},
                                                                            {"send"}}) {
    TestIo t;
    cmd.push_back("--help");
    EXPECT_EQ(t.run(cmd), kExitOk) << cmd[0];
    EXPECT_EQ(t.out.str().rfind("usage: hookrelay " + cmd[0], 0), 0u) << t.out.str();
    EXPECT_NE(t.out.str().find("exit:"), std::string::npos) << cmd[0];
    EXPECT_EQ(t.err.str(), "");
  }
}

TEST(CliApp, HelpCommandShowsACommandsHelp) {
  TestIo t;
  EXPECT_EQ(t.run({"help", "dlq"}), kExitOk);
  EXPECT_EQ(t.out.str().rfind("usage: hookrelay dlq", 0), 0u);
}

TEST(CliApp, NoCommandOrAnUnknownOneIsAUsageError) {
  TestIo none;
  EXPECT_EQ(none.run({}), kExitUsage);
  EXPECT_NE(none.err.str().find("usage: hookrelay COMMAND"), std::string::npos);
  TestIo unknown;
  EXPECT_EQ(unknown.run({"replay"}), kExitUsage);
  EXPECT_NE(unknown.err.str().find("unknown command 'replay'"), std::string::npos);
}

TEST(CliApp, UsageErrorsExitTwoBeforeConnectingAnywhere) {
  // No database or Kafka is configured: these must fail on the arguments alone.
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"dlq", "replay"},
                                             {"dlq", "replay", "k1", "--source", "github"},
                                             {"dlq", "replay", "--all", "--status", "dead"},
                                             {"dlq", "replay", "--since", "yesterday"},
                                             {"dlq", "list", "--limit", "0"},
                                             {"dlq", "list", "--bogus"},
                                             {"dlq", "show"},
                                             {"dlq", "purge"},
                                             {"deliveries", "show"},
                                             {"events", "show", "github"},
                                             {"migrate", "extra"},
                                             {"config", "validate"},
                                             {"sign", "--source", "x"}}) {
    TestIo t;
    EXPECT_EQ(t.run(args), kExitUsage) << args[0] << " " << args[1];
    EXPECT_NE(t.err.str(), "") << args[0];
  }
}

// `dlq replay --all --reason --dry-run` stored the reason "--dry-run" and replayed for real.
TEST(CliApp, AnOptionFollowedByAnotherOptionIsAMissingValueNotAValue) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"dlq", "replay", "--all", "--reason", "--dry-run"},
       "hookrelay dlq: --reason needs a value"},
      {{"dlq", "replay", "--all", "--by", "--dry-run"}, "hookrelay dlq: --by needs a value"},
      {{"dlq", "replay", "--source", "--dry-run"}, "hookrelay dlq: --source needs a value"},
      {{"dlq", "replay", "--destination", "--all"}, "hookrelay dlq: --destination needs a value"},
      {{"routes", "suspend", "ci", "--reason", "--json"},
       "hookrelay routes: --reason needs a value"},
  };
  for (const auto& [args, message] : cases) {
    TestIo t;
    EXPECT_EQ(t.run(args), kExitUsage) << message;
    EXPECT_EQ(t.err.str().rfind(message + "\n", 0), 0u) << t.err.str();
  }
}

// With delivery keys every key named is replayed: a --limit beside them was silently ignored.
TEST(CliApp, DlqReplayRefusesALimitBesideDeliveryKeys) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"dlq", "replay", "k1", "k2", "--limit", "1"},
           {"dlq", "replay", "--id", "k1", "--limit", "1", "--dry-run"}}) {
    TestIo t;
    EXPECT_EQ(t.run(args), kExitUsage);
    EXPECT_NE(t.err.str().find("hookrelay dlq: --limit bounds a selection"), std::string::npos)
        << t.err.str();
  }
  TestIo help;
  EXPECT_EQ(help.run({"dlq", "--help"}), kExitOk);
  EXPECT_NE(help.out.str().find("--limit is 1..10000"), std::string::npos);
  EXPECT_NE(help.out.str().find("--limit 1..100000"), std::string::npos);
}

TEST(CliApp, NoDatabaseConfiguredIsAUsageErrorThatSaysWhereToSetIt) {
  TestIo t;
  EXPECT_EQ(t.run({"dlq", "list"}), kExitUsage);
  EXPECT_NE(t.err.str().find("--database-url"), std::string::npos);
  EXPECT_NE(t.err.str().find("HOOKRELAY_DATABASE_URL"), std::string::npos);
}

TEST(ExitCodeFor, MapsLibraryErrorCodes) {
  EXPECT_EQ(exit_code_for(Error{"not_found", "", false}), kExitNotFound);
  EXPECT_EQ(exit_code_for(Error{"bad_filter", "", false}), kExitUsage);
  EXPECT_EQ(exit_code_for(Error{"config", "", false}), kExitUsage);
  EXPECT_EQ(exit_code_for(Error{"migrations_dir", "", false}), kExitUsage);
  EXPECT_EQ(exit_code_for(Error{"db_unavailable", "", true}), kExitFailed);
  EXPECT_EQ(exit_code_for(Error{"kafka", "", true}), kExitFailed);
}

TEST(ResolveDatabaseUrl, FlagBeatsConfigBeatsEnvironment) {
  testing::TempFile config("postgres: { url: \"postgresql://cfg@127.0.0.1/db\" }\n");
  TestIo t;
  t.env["HOOKRELAY_DATABASE_URL_UNUSED"] = "x";
  auto with_flag =
      parse_args({"--database-url", "postgresql://flag@127.0.0.1/db", "--config", config.path()},
                 {kDatabaseOption, kConfigOption});
  ASSERT_TRUE(with_flag);
  EXPECT_EQ(*resolve_database_url(*with_flag, t.io), "postgresql://flag@127.0.0.1/db");
  auto with_config = parse_args({"--config", config.path()}, {kDatabaseOption, kConfigOption});
  EXPECT_EQ(*resolve_database_url(*with_config, t.io), "postgresql://cfg@127.0.0.1/db");
  t.env["HOOKRELAY_DATABASE_URL"] = "postgresql://env@127.0.0.1/db";
  // The config loader applies HOOKRELAY_DATABASE_URL as an override, as the services do.
  EXPECT_EQ(*resolve_database_url(*with_config, t.io), "postgresql://env@127.0.0.1/db");
  auto bare = parse_args({}, {kDatabaseOption, kConfigOption});
  EXPECT_EQ(*resolve_database_url(*bare, t.io), "postgresql://env@127.0.0.1/db");
}

}  // namespace
}  // namespace hookrelay::cli
