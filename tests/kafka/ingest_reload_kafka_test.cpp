// SIGHUP reload of hookrelay-ingest on the real three-node Apache Kafka cluster this binary shares
// (shared_cluster.h): a source's secret replaced while webhooks flow refuses none that either
// secret signs, an invalid file is refused and counted, and every webhook answered 202 during
// the switch is in hookrelay.webhooks, once.
#include <gtest/gtest.h>

#include <map>

#include "shared/kafka/wire_contract.h"
#include "tests/kafka/shared_cluster.h"
#include "tests/support/ingest_reload_scenario.h"
#include "tests/support/kafka_test_client.h"

namespace hookrelay::test {
namespace {

using namespace std::chrono_literals;

class IngestReloadOnKafka : public OnSharedCluster<::testing::Test> {};

TEST_F(IngestReloadOnKafka, ASecretChangedBySighupRefusesNothingAndLosesNothing) {
  auto options = on_cluster(*kafka_, {});
  ASSERT_TRUE(options) << options.error().message;
  auto stack = Stack::create(std::move(*options));
  ASSERT_TRUE(stack) << stack.error().message;
  ASSERT_TRUE((*stack)->start_ingest());
  std::vector<std::string> accepted;
  ASSERT_NO_FATAL_FAILURE(sighup_secret_rotation_refuses_nothing(**stack, accepted));
  ASSERT_GT(accepted.size(), 20u);

  auto messages = consume_to_end(kafka_->bootstrap(), std::string(kWebhooksTopic), 60s);
  ASSERT_TRUE(messages) << messages.error().message;
  std::map<std::string, int> in_topic;
  for (const auto& m : *messages) {
    if (auto id = m.header(header::kEventId)) ++in_topic[*id];
  }
  for (const auto& id : accepted) EXPECT_EQ(in_topic[id], 1) << id;
  EXPECT_EQ(in_topic.size(), accepted.size());
}

}  // namespace
}  // namespace hookrelay::test
