#include "tests/kafka/shared_cluster.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "shared/kafka/topic_plan.h"
#include "tests/support/test_dir.h"

namespace hookrelay::test {
namespace {

struct Shared {
  std::unique_ptr<TestDir> dir;
  std::unique_ptr<KafkaCluster> cluster;
  std::optional<Error> failure;
};

Shared& shared() {
  static Shared s;
  return s;
}

// Stops the cluster before the program's static objects go (ChildProcess and the script need a
// live process), then removes the directory (TestDir keeps it when a test failed).
class SharedClusterEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    shared().cluster.reset();
    shared().dir.reset();
  }
};

[[maybe_unused]] const ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new SharedClusterEnvironment);

}  // namespace

Result<KafkaCluster*> shared_cluster() {
  Shared& s = shared();
  if (s.cluster) return s.cluster.get();
  if (s.failure) return Unexpected{*s.failure};
  s.dir = std::make_unique<TestDir>();
  auto started = KafkaCluster::start(s.dir->path(), 3);
  if (!started) {
    s.failure = started.error();
    return Unexpected{*s.failure};
  }
  s.cluster = std::move(*started);
  return s.cluster.get();
}

Result<StackOptions> on_cluster(KafkaCluster& kafka, StackOptions o) {
  o.kafka_bootstrap = kafka.bootstrap();
  o.group_id = std::string("hookrelay-workers-") +
               ::testing::UnitTest::GetInstance()->current_test_info()->name();
  o.kafka_properties.emplace("session.timeout.ms", "6000");
  o.kafka_properties.emplace("heartbeat.interval.ms", "500");
  // Every topic the services check for at start, as `hookrelay topics apply` would make them.
  Config config;
  config.retry.schedule_seconds = {o.schedule_seconds.begin(), o.schedule_seconds.end()};
  std::vector<std::string> topics;
  for (const auto& t : desired_topics(config)) topics.push_back(t.name);
  if (auto deleted = kafka.delete_topics(topics); !deleted) return Unexpected{deleted.error()};
  if (auto created = kafka.create_topics(topics, o.partitions); !created)
    return Unexpected{created.error()};
  return o;
}

}  // namespace hookrelay::test
