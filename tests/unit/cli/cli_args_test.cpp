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

TEST(ParseArgs, AnOptionThatMustNotBeEmptyRefusesAnEmptyValueEitherWay) {
  const std::vector<OptionSpec> specs = {{"--config", true, true}, {"--reason", true}};
  for (const auto& args : std::vector<std::vector<std::string>>{{"--config", ""}, {"--config="}}) {
    auto a = parse_args(args, specs);
    ASSERT_FALSE(a) << args[0];
    EXPECT_EQ(a.error().code, "usage");
    EXPECT_EQ(a.error().message, "--config: must not be empty");
  }
  EXPECT_TRUE(parse_args({"--reason="}, specs));  // an option not marked may be empty
  auto given = parse_args({"--config=a.yaml"}, specs);
  ASSERT_TRUE(given);
  EXPECT_EQ(given->value("--config"), "a.yaml");
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

// "--reason --dry-run" took "--dry-run" as the reason: the switch was lost and a replay meant as
// a dry run ran for real.
TEST(ParseArgs, AValueThatIsTheNextOptionIsAMissingValue) {
  const std::vector<OptionSpec> specs = {{"--reason", true}, {"--dry-run", false}};
  auto next = parse_args({"replay", "--reason", "--dry-run"}, specs);
  ASSERT_FALSE(next);
  EXPECT_EQ(next.error().code, "usage");
  EXPECT_EQ(next.error().message, "--reason needs a value");
  auto unknown = parse_args({"--reason", "--anything"}, specs);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message, "--reason needs a value");
  // The = form still gives such a value; a single dash is a value too.
  auto with_eq = parse_args({"--reason=--dry-run"}, specs);
  ASSERT_TRUE(with_eq) << with_eq.error().message;
  EXPECT_EQ(with_eq->value("--reason"), "--dry-run");
  EXPECT_FALSE(with_eq->has("--dry-run"));
  auto dash = parse_args({"--reason", "-", "--dry-run"}, specs);
  ASSERT_TRUE(dash) << dash.error().message;
  EXPECT_EQ(dash->value("--reason"), "-");
  EXPECT_TRUE(dash->has("--dry-run"));
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

// The ten-year bound was applied to the number before its unit: 315360000d (864,000 years) passed.
TEST(ParseTimeArg, ADurationAgoIsAtMostTenYearsWhateverItsUnit) {
  constexpr int64_t kTenYearsMs = 3650LL * 86400 * 1000;
  for (const char* most : {"3650d", "87600h", "5256000m", "315360000s"})
    EXPECT_EQ(*parse_time_arg(most, kNow, "--since"), kNow - kTenYearsMs) << most;
  for (const char* bad : {"3651d", "87601h", "5256001m", "315360001s", "315360000d",
                          "9223372036854775807s", "9223372036854775807d"}) {
    auto t = parse_time_arg(bad, kNow, "--since");
    ASSERT_FALSE(t) << bad;
    EXPECT_EQ(t.error().message.rfind("--since: ", 0), 0u) << t.error().message;
    EXPECT_FALSE(parse_duration_arg(bad, "--unfinished-after")) << bad;
  }
}

// timegm() normalised 2024-02-31 to March 2.
TEST(ParseTimeArg, RejectsADayTheMonthDoesNotHave) {
  for (const char* bad : {"2024-02-30", "2024-02-31", "2023-02-29", "1900-02-29", "2024-04-31",
                          "2024-06-31T12:00:00Z", "2024-11-31T00:00:00+02:00"}) {
    auto t = parse_time_arg(bad, kNow, "--since");
    ASSERT_FALSE(t) << bad;
    EXPECT_EQ(t.error().code, "usage");
  }
  EXPECT_EQ(*parse_time_arg("2024-02-29", 0, "--since"), 1709164800000);  // a leap year
  EXPECT_EQ(*parse_time_arg("2000-02-29", 0, "--since"), 951782400000);   // divisible by 400
  EXPECT_EQ(*parse_time_arg("2024-12-31T00:00:00Z", 0, "--since"), 1735603200000);
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
