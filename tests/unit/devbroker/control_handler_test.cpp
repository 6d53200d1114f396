#include "devbroker/control_handler.h"

#include <gtest/gtest.h>

#include <map>
#include <utility>

namespace hookrelay::devbroker {
namespace {

// Records what the handler asked the cluster to do.
class FakeCluster : public ClusterControl {
 public:
  int broker_count() const override { return 3; }
  std::string bootstrap() const override { return "127.0.0.1:1001,127.0.0.1:1002,127.0.0.1:1003"; }
  Result<void> set_broker_down(std::int32_t id) override {
    up[id] = false;
    return {};
  }
  Result<void> set_broker_up(std::int32_t id) override {
    up[id] = true;
    return {};
  }
  Result<void> set_broker_rtt(std::int32_t id, int ms) override {
    rtt[id] = ms;
    return {};
  }
  void push_request_errors(std::int16_t key, const std::vector<rd_kafka_resp_err_t>& e) override {
    pushed.emplace_back(key, e);
  }
  void clear_request_errors(std::int16_t key) override { cleared.push_back(key); }

  std::map<int, bool> up;
  std::map<int, int> rtt;
  std::vector<std::pair<std::int16_t, std::vector<rd_kafka_resp_err_t>>> pushed;
  std::vector<std::int16_t> cleared;
};

class ControlHandlerTest : public ::testing::Test {
 protected:
  FakeCluster cluster_;
  ControlHandler handler_{cluster_};
};

TEST_F(ControlHandlerTest, PingAndBootstrap) {
  EXPECT_EQ(handler_.handle("ping"), "ok pong");
  EXPECT_EQ(handler_.handle("  bootstrap \r"), "ok " + cluster_.bootstrap());
}

TEST_F(ControlHandlerTest, SingleAndAllBrokersDownUp) {
  EXPECT_EQ(handler_.handle("broker down 2"), "ok broker 2 down");
  EXPECT_EQ(cluster_.up, (std::map<int, bool>{{2, false}}));
  EXPECT_EQ(handler_.handle("brokers up"), "ok brokers 1-3 up");
  EXPECT_EQ(cluster_.up, (std::map<int, bool>{{1, true}, {2, true}, {3, true}}));
  EXPECT_EQ(handler_.handle("brokers down"), "ok brokers 1-3 down");
  EXPECT_FALSE(cluster_.up[1] || cluster_.up[2] || cluster_.up[3]);
}

TEST_F(ControlHandlerTest, BrokerIdsOutsideTheClusterAreRefused) {
  EXPECT_EQ(handler_.handle("broker down 4").rfind("error broker id must be 1..3", 0), 0u);
  EXPECT_EQ(handler_.handle("broker up 0").rfind("error ", 0), 0u);
  EXPECT_EQ(handler_.handle("broker up x").rfind("error ", 0), 0u);
  EXPECT_TRUE(cluster_.up.empty());
}

TEST_F(ControlHandlerTest, RttForOneOrAllBrokers) {
  EXPECT_EQ(handler_.handle("rtt 2 50"), "ok rtt 2 50ms");
  EXPECT_EQ(handler_.handle("rtt all 7"), "ok rtt all 7ms");
  EXPECT_EQ(cluster_.rtt, (std::map<int, int>{{1, 7}, {2, 7}, {3, 7}}));
  EXPECT_EQ(handler_.handle("rtt all -1").rfind("error ", 0), 0u);
}

TEST_F(ControlHandlerTest, ErrorsCycleThroughTheGivenCodes) {
  EXPECT_EQ(
      handler_.handle("errors Produce 3 NOT_LEADER_FOR_PARTITION RD_KAFKA_RESP_ERR__TRANSPORT"),
      "ok 3 Produce errors queued");
  ASSERT_EQ(cluster_.pushed.size(), 1u);
  EXPECT_EQ(cluster_.pushed[0].first, 0);
  EXPECT_EQ(cluster_.pushed[0].second,
            (std::vector<rd_kafka_resp_err_t>{RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                              RD_KAFKA_RESP_ERR__TRANSPORT,
                                              RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION}));
}

TEST_F(ControlHandlerTest, ClearErrorsClearsEveryApiKeyUsed) {
  ASSERT_EQ(handler_.handle("errors Produce 1 6").rfind("ok", 0), 0u);
  ASSERT_EQ(handler_.handle("errors 22 2 _TRANSPORT").rfind("ok", 0), 0u);
  EXPECT_EQ(handler_.handle("clear-errors"), "ok cleared errors for 2 ApiKey(s)");
  EXPECT_EQ(cluster_.cleared, (std::vector<std::int16_t>{0, 22}));
}

TEST_F(ControlHandlerTest, BadErrorsCommandsInjectNothing) {
  for (const char* line : {"errors Produce", "errors Produce 0 6", "errors Nope 1 6",
                           "errors Produce 1 NOPE", "errors Produce 1 6 NOPE"}) {
    EXPECT_EQ(handler_.handle(line).rfind("error ", 0), 0u) << line;
  }
  EXPECT_TRUE(cluster_.pushed.empty());
}

TEST_F(ControlHandlerTest, UnknownAndMalformedCommands) {
  EXPECT_EQ(handler_.handle("frobnicate now"), "error unknown command 'frobnicate'");
  EXPECT_EQ(handler_.handle(""), "error empty command");
  EXPECT_EQ(handler_.handle("broker sideways 1"), "error usage: broker down|up <id>");
  EXPECT_EQ(handler_.handle("ping extra"), "error usage: ping");
}

}  // namespace
}  // namespace hookrelay::devbroker
