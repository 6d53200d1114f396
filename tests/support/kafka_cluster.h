// KafkaCluster: real Apache Kafka (KRaft) for tests: 1 or 3 combined broker+controller nodes on
// 127.0.0.1, run by scripts/kafka in a test's directory (the pinned Kafka is fetched into the
// Maven-built cache on first use, offline afterwards). Node i (1-based) has node.id i and its
// data in dir/kafka/node-<i>/data, so a node killed and started again keeps its log.
//
// start() returns once every node is registered; failures carry the script's output and the
// nodes' log tails. Destruction SIGKILLs every node (the data belongs to the test directory).
//
// Typical use:
//   auto kafka = KafkaCluster::start(dir.path(), 3);
//   ASSERT_TRUE(kafka) << kafka.error().message;
//   ASSERT_TRUE((*kafka)->create_topics({"hookrelay.webhooks"}, 4));  // RF = nodes, min ISR 2
//   ... (*kafka)->kill_node(*(*kafka)->leader("hookrelay.webhooks", 0)) ...
//
// Thread-safety: one test thread.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "shared/result.h"

namespace hookrelay::test {

class KafkaCluster {
 public:
  static Result<std::unique_ptr<KafkaCluster>> start(const std::filesystem::path& dir, int nodes);
  ~KafkaCluster();
  KafkaCluster(const KafkaCluster&) = delete;
  KafkaCluster& operator=(const KafkaCluster&) = delete;

  const std::string& bootstrap() const { return bootstrap_; }
  int nodes() const { return nodes_; }

  // Creates topics (replication factor = nodes, min.insync.replicas = min(2, nodes)) and waits
  // until every partition has a leader.
  Result<void> create_topics(const std::vector<std::string>& names, int partitions);
  // Deletes the topics that exist among `names` and waits until metadata no longer lists them, so
  // create_topics() then makes them anew (empty, and without the committed offsets of any group).
  Result<void> delete_topics(const std::vector<std::string>& names);
  // The node id leading a partition, from metadata.
  Result<int> leader(const std::string& topic, int partition) const;

  Result<void> kill_node(int node);  // SIGKILL, as a crash would
  Result<void> stop_node(int node);  // SIGTERM, a clean shutdown
  Result<void> stop_all();           // SIGTERM every node
  // Starts every node that is not running (data kept) and waits until all are registered; a
  // no-op when none was stopped through this object.
  Result<void> start_stopped();

 private:
  KafkaCluster(std::filesystem::path dir, int nodes) : dir_(std::move(dir)), nodes_(nodes) {}
  Result<std::string> script(const std::vector<std::string>& args,
                             std::chrono::seconds timeout) const;

  std::filesystem::path dir_;
  int nodes_;
  std::string bootstrap_;
  bool stopped_ = false;  // a node was stopped or killed since the last start
};

}  // namespace hookrelay::test
