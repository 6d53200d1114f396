#include "cli/cli_args.h"

#include <gtest/gtest.h>

namespace hookrelay::cli {
namespace {

const std::vector<OptionSpec> kSpecs = {{"--rate", true}, {"--id", true}, {"--dry-run", false}};

TEST(ParseArgs, ReadsValuesSwitchesRepeatsAndPositionals) {
  auto a = parse_args({"replay", "--rate", "5/s", "--id=a", "--dry-run", "--id", "b", "k1", "-"},
                      kSpecs);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->value("--rate"), "5/s");
  EXPECT_TRUE(a->has("--dry-run"));
  EXPECT_EQ(a->values("--id"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(a->positionals(), (std::vector<std::string>{"replay", "k1", "-"}));
  EXPECT_FALSE(a->has("--help"));
}

TEST(ParseArgs, DoubleDashEndsOptionsAndDashHIsHelp) {
  auto a = parse_args({"-h", "--", "--rate"}, kSpecs);
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->has("--help"));
  EXPECT_EQ(a->positionals(), (std::vector<std::string>{"--rate"}));
}

TEST(ParseArgs, RejectsUnknownOptionsMissingValuesAndValuedSwitches) {
  auto unknown = parse_args({"--rat", "1"}, kSpecs);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, "usage");
  EXPECT_EQ(unknown.error().message, "unknown option --rat");
  auto missing = parse_args({"--rate"}, kSpecs);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "--rate needs a value");
  auto valued = parse_args({"--dry-run=yes"}, kSpecs);
  ASSERT_FALSE(valued);
  EXPECT_EQ(valued.error().message, "--dry-run takes no value");
}

constexpr int64_t kNow = 1714564800000;  // 2024-05-01T12:00:00Z

TEST(ParseTimeArg, AcceptsRfc3339DatesDurationsAgoAndNow) {
  EXPECT_EQ(*parse_time_arg("2024-05-01T12:00:00Z", 0, "--since"), kNow);
  EXPECT_EQ(*parse_time_arg("2024-05-01T12:00:00.250Z", 0, "--since"), kNow + 250);
  EXPECT_EQ(*parse_time_arg("2024-05-01T14:00:00+02:00", 0, "--since"), kNow);
  EXPECT_EQ(*parse_time_arg("2024-05-01T10:30:00-01:30", 0, "--since"), kNow);
  EXPECT_EQ(*parse_time_arg("2024-05-01", 0, "--since"), kNow - 12 * 3600 * 1000);
  EXPECT_EQ(*parse_time_arg("15m", kNow, "--since"), kNow - 15 * 60 * 1000);
  EXPECT_EQ(*parse_time_arg("2h", kNow, "--since"), kNow - 2 * 3600 * 1000);
  EXPECT_EQ(*parse_time_arg("7d", kNow, "--since"), kNow - 7LL * 86400 * 1000);
  EXPECT_EQ(*parse_time_arg("now", kNow, "--since"), kNow);
}

TEST(ParseTimeArg, RejectsAmbiguousOrMalformedTimesNamingTheField) {
  for (const char* bad : {"2024-05-01T12:00:00", "2024-13-01", "yesterday", "5w", "-5m",
                          "2024-05-01T25:00:00Z", ""}) {
    auto t = parse_time_arg(bad, kNow, "--until");
    ASSERT_FALSE(t) << bad;
    EXPECT_EQ(t.error().code, "usage");
    EXPECT_EQ(t.error().message.rfind("--until: ", 0), 0u) << t.error().message;
  }
}

TEST(ParseRateArg, PerSecondAndPerMinute) {
  EXPECT_DOUBLE_EQ(*parse_rate_arg("10/s", "--rate"), 10);
  EXPECT_DOUBLE_EQ(*parse_rate_arg("10", "--rate"), 10);
  EXPECT_DOUBLE_EQ(*parse_rate_arg("0.5/s", "--rate"), 0.5);
  EXPECT_DOUBLE_EQ(*parse_rate_arg("120/m", "--rate"), 2);
  for (const char* bad : {"0/s", "-1/s", "10/h", "fast", "/s", "nan"})
    EXPECT_FALSE(parse_rate_arg(bad, "--rate")) << bad;
}

TEST(ParseIntArg, EnforcesTheRange) {
  EXPECT_EQ(*parse_int_arg("100", 1, 10000, "--limit"), 100);
  EXPECT_FALSE(parse_int_arg("0", 1, 10000, "--limit"));
  EXPECT_FALSE(parse_int_arg("10001", 1, 10000, "--limit"));
  auto bad = parse_int_arg("12x", 1, 10000, "--limit");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "--limit: expected a whole number 1..10000, got '12x'");
}

}  // namespace
}  // namespace hookrelay::cli
