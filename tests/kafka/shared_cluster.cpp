#include "tests/kafka/shared_cluster.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>

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

}  // namespace hookrelay::test
