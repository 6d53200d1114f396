// SIGHUP reload of hookrelay-ingest on the devbroker (tests/support/ingest_reload_scenario.h; the
// same scenario runs on real Kafka in tests/kafka/ingest_reload_kafka_test.cpp).
#include <gtest/gtest.h>

#include "tests/support/ingest_reload_scenario.h"

namespace hookrelay::test {
namespace {

TEST(IngestReload, ASecretChangedBySighupRefusesNothingEitherSecretSigns) {
  auto stack = Stack::create({});
  ASSERT_TRUE(stack) << stack.error().message;
  ASSERT_TRUE((*stack)->start_ingest());
  std::vector<std::string> accepted;
  ASSERT_NO_FATAL_FAILURE(sighup_secret_rotation_refuses_nothing(**stack, accepted));
  EXPECT_GT(accepted.size(), 20u);
}

}  // namespace
}  // namespace hookrelay::test
