// ClusterControl: the fault-injection operations the control channel drives. The real adapter
// is MockCluster; unit tests use a fake so command parsing is tested without sockets.
//
// Thread-safety: implementations must accept calls from any thread.
#pragma once

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <string>
#include <vector>

#include "shared/result.h"

namespace hookrelay::devbroker {

class ClusterControl {
 public:
  virtual ~ClusterControl() = default;

  // Broker ids are 1..broker_count().
  virtual int broker_count() const = 0;
  // "127.0.0.1:p1,127.0.0.1:p2,...", one entry per broker.
  virtual std::string bootstrap() const = 0;

  // Down: existing connections are closed and new ones refused. Leadership does not move.
  virtual Result<void> set_broker_down(std::int32_t broker_id) = 0;
  virtual Result<void> set_broker_up(std::int32_t broker_id) = 0;
  virtual Result<void> set_broker_rtt(std::int32_t broker_id, int rtt_ms) = 0;

  // The next errors.size() requests of type api_key, on any broker, fail with these codes in
  // order.
  virtual void push_request_errors(std::int16_t api_key,
                                   const std::vector<rd_kafka_resp_err_t>& errors) = 0;
  virtual void clear_request_errors(std::int16_t api_key) = 0;
};

}  // namespace hookrelay::devbroker
