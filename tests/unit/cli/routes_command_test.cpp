// `hookrelay routes` without Postgres or Kafka: what must fail before the route is touched. The
// route lifecycle against real services is tests/integration/route_lifecycle_test.cpp.
#include <gtest/gtest.h>

#include "cli/cli_context.h"
#include "tests/unit/cli/cli_test_io.h"

namespace hookrelay::cli {
namespace {

using testing::TempFile;
using testing::TestIo;

constexpr const char* kRouteConfig = R"(
sources:
  github: { scheme: github, secrets: [s] }
routes:
  github:
    - { name: ci, url: "http://127.0.0.1:9000/ci", ordered: true }
)";

// resume made the route active in Postgres before it opened Kafka: with Kafka down it exited 1
// with the route active and nothing released, so new deliveries overtook the parked ones. Kafka
// is now checked first; nothing listens on port 1 for Postgres either, so an error about the
// database would mean the route was reached before Kafka was.
TEST(RoutesCommand, ResumeChecksKafkaBeforeTheRouteIsMadeActive) {
  TempFile config(kRouteConfig);
  TestIo t;
  EXPECT_EQ(t.run({"routes", "resume", "ci", "--config", config.path(), "--database-url",
                   "postgresql://hookrelay@127.0.0.1:1/hookrelay", "--bootstrap", "127.0.0.1:1",
                   "--timeout", "1"}),
            kExitFailed);
  const std::string err = t.err.str();
  EXPECT_EQ(err.rfind("hookrelay routes resume: Kafka at 127.0.0.1:1 did not answer within 1 s", 0),
            0u)
      << err;
  EXPECT_NE(err.find("the route was left as it was (not resumed), nothing released"),
            std::string::npos)
      << err;
  EXPECT_EQ(t.out.str(), "");
}

TEST(RoutesCommand, HelpSaysAResumeThatCannotReachKafkaLeavesTheRoute) {
  TestIo t;
  EXPECT_EQ(t.run({"help", "routes"}), kExitOk);
  EXPECT_NE(t.out.str().find("the route is left as it was"), std::string::npos) << t.out.str();
}

}  // namespace
}  // namespace hookrelay::cli
