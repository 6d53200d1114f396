#include "devbroker/mock_cluster.h"

#include <spdlog/spdlog.h>

#include "shared/kafka/kafka_handles.h"
#include "shared/log.h"

namespace hookrelay::devbroker {
namespace {

// librdkafka's log lines in our format. The bookkeeping handle never connects anywhere, so its
// notices (such as "no bootstrap.servers configured") are noise: debug unless an error.
void log_from_librdkafka(const rd_kafka_t*, int level, const char* facility, const char* line) {
  const auto spd_level = level <= 3 ? spdlog::level::warn : spdlog::level::debug;
  spdlog::log(spd_level, "msg=librdkafka facility={} line={}", facility, log_quote(line));
}

Result<void> check(rd_kafka_resp_err_t err, const std::string& what) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return {};
  return fail("mock_cluster", what + ": " + rd_kafka_err2str(err));
}

}  // namespace

MockCluster::MockCluster(std::unique_ptr<rd_kafka_t, HandleDeleter> handle,
                         std::unique_ptr<rd_kafka_mock_cluster_t, ClusterDeleter> cluster,
                         int brokers)
    : handle_(std::move(handle)), cluster_(std::move(cluster)), brokers_(brokers) {}

Result<std::unique_ptr<MockCluster>> MockCluster::create(int brokers) {
  KafkaConf conf(rd_kafka_conf_new());
  rd_kafka_conf_set_log_cb(conf.get(), log_from_librdkafka);
  char errstr[512];
  std::unique_ptr<rd_kafka_t, HandleDeleter> handle(
      rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof errstr));
  if (!handle) return fail("mock_cluster", std::string("rd_kafka_new: ") + errstr);
  (void)conf.release();  // rd_kafka_new took ownership
  std::unique_ptr<rd_kafka_mock_cluster_t, ClusterDeleter> cluster(
      rd_kafka_mock_cluster_new(handle.get(), brokers));
  if (!cluster) return fail("mock_cluster", "rd_kafka_mock_cluster_new failed");
  return std::unique_ptr<MockCluster>(
      new MockCluster(std::move(handle), std::move(cluster), brokers));
}

Result<void> MockCluster::create_topic(const std::string& name, int partitions, int replication) {
  return check(rd_kafka_mock_topic_create(cluster_.get(), name.c_str(), partitions, replication),
               "create topic " + name);
}

std::string MockCluster::bootstrap() const {
  return rd_kafka_mock_cluster_bootstraps(cluster_.get());
}

Result<void> MockCluster::set_broker_down(std::int32_t broker_id) {
  return check(rd_kafka_mock_broker_set_down(cluster_.get(), broker_id),
               "broker " + std::to_string(broker_id) + " down");
}

Result<void> MockCluster::set_broker_up(std::int32_t broker_id) {
  return check(rd_kafka_mock_broker_set_up(cluster_.get(), broker_id),
               "broker " + std::to_string(broker_id) + " up");
}

Result<void> MockCluster::set_broker_rtt(std::int32_t broker_id, int rtt_ms) {
  return check(rd_kafka_mock_broker_set_rtt(cluster_.get(), broker_id, rtt_ms),
               "broker " + std::to_string(broker_id) + " rtt");
}

void MockCluster::push_request_errors(std::int16_t api_key,
                                      const std::vector<rd_kafka_resp_err_t>& errors) {
  rd_kafka_mock_push_request_errors_array(cluster_.get(), api_key, errors.size(), errors.data());
}

void MockCluster::clear_request_errors(std::int16_t api_key) {
  rd_kafka_mock_clear_request_errors(cluster_.get(), api_key);
}

}  // namespace hookrelay::devbroker
