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

#include "shared/result.h"
#include "tests/support/kafka_cluster.h"

namespace hookrelay::test {

Result<KafkaCluster*> shared_cluster();

}  // namespace hookrelay::test
