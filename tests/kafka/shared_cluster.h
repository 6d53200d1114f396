// The three-node Apache Kafka cluster (KRaft, replication factor 3, min.insync.replicas 2) that
// every suite of kafka_tests shares: started at the first call, in a directory of its own, and
// SIGKILLed when the test program ends (a gtest Environment). Starting one costs 10-20 s, so the
// suites share it; a test that stops nodes starts them again (KafkaCluster::start_stopped) in its
// TearDown, and each suite makes the topics it needs (create_topics keeps existing ones;
// delete_topics first for empty ones).
//
// A failed start is remembered: every later call returns the same error at once.
//
// Thread-safety: the test thread only.
#pragma once

#include <gtest/gtest.h>

#include "shared/result.h"
#include "tests/support/kafka_cluster.h"
#include "tests/support/stack.h"

namespace hookrelay::test {

Result<KafkaCluster*> shared_cluster();

// `o` made to run on `kafka`: its bootstrap, a consumer group named after the running test, group
// timings a real broker accepts (its group.min.session.timeout.ms is 6 s), and the topics its
// config asks for (desired_topics: webhooks, calls, DLQ, a retry tier per schedule step, ...)
// deleted and created again, empty, with o.partitions partitions.
Result<StackOptions> on_cluster(KafkaCluster& kafka, StackOptions o);

// `Fixture` on the shared cluster (kafka_): a test fails at once when the cluster did not start,
// and every node runs again after each test, whatever the test stopped.
template <class Fixture>
class OnSharedCluster : public Fixture {
 protected:
  static void SetUpTestSuite() {
    auto k = shared_cluster();
    ASSERT_TRUE(k) << k.error().message;
    kafka_ = *k;
  }
  static void TearDownTestSuite() { kafka_ = nullptr; }

  void SetUp() override {
    ASSERT_NE(kafka_, nullptr) << "the cluster did not start";
    Fixture::SetUp();
  }
  void TearDown() override {
    if (kafka_) {
      auto back = kafka_->start_stopped();
      EXPECT_TRUE(back) << back.error().message;
    }
    Fixture::TearDown();
  }

  static inline KafkaCluster* kafka_ = nullptr;
};

}  // namespace hookrelay::test
