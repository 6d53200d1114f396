// hookrelay-ingest on a real three-node Apache Kafka cluster (KRaft, RF 3, min.insync.replicas
// 2), the one this binary's suites share (shared_cluster.h): what is acknowledged is in the topic
// byte for byte, one message per 202; the partition leader SIGKILLed while 64 connections post
// loses no acknowledged write; with two of three brokers down nothing is acknowledged (503), and
// once they are back ingest accepts again.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "shared/config/config.h"
#include "shared/kafka/wire_contract.h"
#include "shared/signing/webhook_signer.h"
#include "tests/kafka/shared_cluster.h"
#include "tests/support/free_port.h"
#include "tests/support/http_client.h"
#include "tests/support/kafka_cluster.h"
#include "tests/support/kafka_test_client.h"
#include "tests/support/process.h"
#include "tests/support/test_dir.h"

namespace hookrelay::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kSecret = "gh-kafka-secret";
constexpr int kIngestPartitions = 4;

class IngestOnKafka : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto k = shared_cluster();
    ASSERT_TRUE(k) << k.error().message;
    auto topics = (*k)->create_topics({std::string(kWebhooksTopic), std::string(kCallsTopic)},
                                      kIngestPartitions);
    ASSERT_TRUE(topics) << topics.error().message;
    kafka_ = *k;
  }
  static void TearDownTestSuite() { kafka_ = nullptr; }

  void SetUp() override {
    ASSERT_NE(kafka_, nullptr) << "the cluster did not start";
    port_ = free_port();
    auto config = test_dir_.file("config.yaml");
    std::ofstream(config) << "kafka:\n  bootstrap_servers: \"" << kafka_->bootstrap() << "\"\n"
                          << "  produce_timeout_ms: 8000\n"
                          << "  properties: { reconnect.backoff.max.ms: \"200\" }\n"
                          << "ingest: { listen: \"127.0.0.1:" << port_
                          << "\", threads: 2, max_body_bytes: 65536 }\n"
                          << "sources:\n  github: { scheme: github, secrets: [\"" << kSecret
                          << "\"] }\n";
    auto p = ChildProcess::spawn(
        {std::string(HOOKRELAY_BIN_DIR) + "/ingest/hookrelay-ingest", "--config", config}, {},
        test_dir_.file("ingest.log"));
    ASSERT_TRUE(p) << p.error().message;
    ingest_.emplace(std::move(*p));
    ASSERT_TRUE(wait_for_status(url("/readyz"), 200, 30s)) << ingest_->log_tail();
  }

  // Every node runs again after each test, whatever the test stopped.
  void TearDown() override {
    if (kafka_) {
      auto back = kafka_->start_stopped();
      EXPECT_TRUE(back) << back.error().message;
    }
  }

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  int post(const std::string& id, const std::string& body,
           std::chrono::milliseconds timeout = 15s) {
    SourceConfig source;
    source.name = "github";
    source.scheme = SchemeKind::kGithub;
    source.secrets = {kSecret};
    auto r = http_request("POST", url("/webhooks/github"), body,
                          provider_headers(source, body, std::time(nullptr), id), timeout);
    return r ? r->status : 0;
  }

  // Event ids in hookrelay.webhooks, read from offset 0 to the end, with their bodies.
  std::map<std::string, std::string> in_topic() {
    auto consumed = consume_to_end(kafka_->bootstrap(), std::string(kWebhooksTopic), 90s);
    EXPECT_TRUE(consumed) << consumed.error().message;
    std::map<std::string, std::string> out;
    if (!consumed) return out;
    for (const auto& m : *consumed) {
      auto id = m.header("hr-event-id");
      if (id) out[*id] = m.value;
    }
    return out;
  }

  static inline KafkaCluster* kafka_ = nullptr;
  TestDir test_dir_;
  std::optional<ChildProcess> ingest_;
  uint16_t port_ = 0;
};

TEST_F(IngestOnKafka, AcknowledgedWebhooksAreInTheTopicByteForByte) {
  std::map<std::string, std::string> sent;
  for (int i = 0; i < 40; ++i) {
    std::string body = "{\"n\":" + std::to_string(i) + ",\"bin\":\"" +
                       std::string("\x00\x01\xfe\xff\r\n", 6) + "\"}";
    std::string id = "bytes-" + std::to_string(i);
    ASSERT_EQ(post(id, body), 202);
    sent[id] = body;
  }
  auto consumed = consume_to_end(kafka_->bootstrap(), std::string(kWebhooksTopic));
  ASSERT_TRUE(consumed) << consumed.error().message;
  std::map<std::string, int> copies;
  for (const auto& m : *consumed) {
    auto id = m.header("hr-event-id").value_or("");
    if (!sent.count(id)) continue;
    ++copies[id];
    EXPECT_EQ(m.value, sent[id]) << id;
    EXPECT_EQ(m.key, id);
  }
  EXPECT_EQ(copies.size(), sent.size());
  for (const auto& [id, n] : copies) EXPECT_EQ(n, 1) << id << ": one message per 202";
}

TEST_F(IngestOnKafka, LeaderKilledWhile64ConnectionsPostLosesNoAcknowledgedWrite) {
  auto leader = kafka_->leader(std::string(kWebhooksTopic), 0);
  ASSERT_TRUE(leader) << leader.error().message;
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::set<std::string> accepted;
  std::atomic<int> refused{0}, other{0};
  std::vector<std::thread> senders;
  for (int t = 0; t < 64; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        std::string id = "kill-" + std::to_string(t) + "-" + std::to_string(i);
        int status =
            post(id, "{\"sender\":" + std::to_string(t) + ",\"i\":" + std::to_string(i) + "}", 20s);
        if (status == 202) {
          std::lock_guard lock(mu);
          accepted.insert(id);
        } else if (status == 503) {
          ++refused;
          std::this_thread::sleep_for(50ms);
        } else {
          ++other;
        }
      }
    });
  }
  std::this_thread::sleep_for(2s);
  auto killed = kafka_->kill_node(*leader);
  std::this_thread::sleep_for(8s);
  stop = true;
  for (auto& s : senders) s.join();
  ASSERT_TRUE(killed) << killed.error().message;
  EXPECT_EQ(other.load(), 0) << "only 202 and 503 are acceptable answers";
  ASSERT_GT(accepted.size(), 100u) << "too little traffic to prove anything";
  auto back = kafka_->start_stopped();
  ASSERT_TRUE(back) << back.error().message;
  auto topic = in_topic();
  std::size_t lost = 0;
  for (const auto& id : accepted) lost += topic.count(id) ? 0 : 1;
  EXPECT_EQ(lost, 0u) << lost << " of " << accepted.size()
                      << " acknowledged webhooks are not in Kafka";
  std::printf("leader %d SIGKILLed: %zu acknowledged (all in the topic), %d refused with 503\n",
              *leader, accepted.size(), refused.load());
}

TEST_F(IngestOnKafka, TwoOfThreeBrokersDownIs503NeverA2xxThen202Again) {
  ASSERT_EQ(post("before-outage", "{\"before\":1}"), 202);
  ASSERT_TRUE(kafka_->kill_node(2));
  ASSERT_TRUE(kafka_->kill_node(3));
  int refused = 0;
  for (int i = 0; i < 3; ++i) {
    int status = post("during-" + std::to_string(i), "{\"during\":" + std::to_string(i) + "}", 30s);
    EXPECT_NE(status / 100, 2)
        << "acknowledged with two of three brokers down (min.insync.replicas 2)";
    refused += status == 503 ? 1 : 0;
  }
  EXPECT_EQ(refused, 3);
  auto back = kafka_->start_stopped();
  ASSERT_TRUE(back) << back.error().message;
  int status = 0;
  for (int i = 0; i < 60 && status != 202; ++i) {
    status = post("after-outage", "{\"after\":1}");
    if (status != 202) std::this_thread::sleep_for(500ms);
  }
  EXPECT_EQ(status, 202) << "ingest did not accept again after the brokers came back\n"
                         << ingest_->log_tail();
  auto topic = in_topic();
  EXPECT_TRUE(topic.count("before-outage"));
  EXPECT_TRUE(topic.count("after-outage"));
}

}  // namespace
}  // namespace hookrelay::test
