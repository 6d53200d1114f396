// MockCluster: owns a librdkafka mock cluster (brokers listening on 127.0.0.1, ephemeral ports)
// and the rd_kafka_t handle it needs for bookkeeping.
//
// The mock cluster keeps everything in memory, about 5 MB per partition, and drops older data
// beyond that: it is for trials and tests only, never for data anyone wants to keep.
//
// Nor does it behave as a real cluster where durability is at stake: it acknowledges a message
// once the leader has it whatever acks and min.insync.replicas say, never moves a partition's
// leadership (a broker down leaves its partitions unavailable), and answers no CreateTopics,
// DescribeConfigs, AlterConfigs or CreatePartitions (the topics are those create_topic() makes).
//
// Thread-safety: every method may be called from any thread; librdkafka forwards each request
// to the cluster's own thread and waits for it.
#pragma once

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <memory>
#include <string>

#include "devbroker/cluster_control.h"
#include "shared/result.h"

namespace hookrelay::devbroker {

class MockCluster final : public ClusterControl {
 public:
  static Result<std::unique_ptr<MockCluster>> create(int brokers);

  Result<void> create_topic(const std::string& name, int partitions, int replication);

  int broker_count() const override { return brokers_; }
  std::string bootstrap() const override;
  Result<void> set_broker_down(std::int32_t broker_id) override;
  Result<void> set_broker_up(std::int32_t broker_id) override;
  Result<void> set_broker_rtt(std::int32_t broker_id, int rtt_ms) override;
  void push_request_errors(std::int16_t api_key,
                           const std::vector<rd_kafka_resp_err_t>& errors) override;
  void clear_request_errors(std::int16_t api_key) override;

 private:
  struct HandleDeleter {
    void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
  };
  struct ClusterDeleter {
    void operator()(rd_kafka_mock_cluster_t* mc) const { rd_kafka_mock_cluster_destroy(mc); }
  };

  MockCluster(std::unique_ptr<rd_kafka_t, HandleDeleter> handle,
              std::unique_ptr<rd_kafka_mock_cluster_t, ClusterDeleter> cluster, int brokers);

  // Declaration order matters: the cluster must be destroyed before the handle it lives on.
  std::unique_ptr<rd_kafka_t, HandleDeleter> handle_;
  std::unique_ptr<rd_kafka_mock_cluster_t, ClusterDeleter> cluster_;
  int brokers_;
};

}  // namespace hookrelay::devbroker
