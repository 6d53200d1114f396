// hookrelay-ingest as a process, against a running devbroker: what is acknowledged is in the
// topic byte for byte; a broker outage gives 503 and never a 2xx; SIGTERM answers what is in
// flight before exiting.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "shared/config/config.h"
#include "shared/kafka/wire_contract.h"
#include "shared/signing/webhook_signer.h"
#include "tests/support/devbroker.h"
#include "tests/support/free_port.h"
#include "tests/support/http_client.h"
#include "tests/support/kafka_test_client.h"
#include "tests/support/process.h"
#include "tests/support/test_dir.h"

namespace hookrelay::test {
namespace {

// A reply, or status 0 with the transport error as the body.
HttpReply call(const std::string& method, const std::string& url,
               const std::vector<std::pair<std::string, std::string>>& headers,
               const std::string& body) {
  auto r = http_request(method, url, body, headers, std::chrono::seconds(15));
  if (r) return *r;
  return HttpReply{0, r.error().message, {}};
}
HttpReply get(const std::string& url) { return call("GET", url, {}, {}); }

using namespace std::chrono_literals;

constexpr const char* kGithubSecret = "gh-integration-secret";
constexpr const char* kToken = "tok_integration_0123456789";

class IngestProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = DevBroker::start(dir_.path());
    ASSERT_TRUE(b) << b.error().message;
    broker_ = std::move(*b);
    start_ingest();
  }

  void start_ingest(int produce_timeout_ms = 3000, const std::string& producer_properties = "{}",
                    int shutdown_grace_ms = 10000, const std::string& ingest_extra = "") {
    port_ = free_port();
    auto config = dir_.file("config.yaml");
    std::ofstream(config) << "kafka:\n  bootstrap_servers: \"" << broker_->bootstrap() << "\"\n"
                          << "  produce_timeout_ms: " << produce_timeout_ms << "\n"
                          << "  properties: { reconnect.backoff.max.ms: \"200\" }\n"
                          << "  producer_properties: " << producer_properties << "\n"
                          << "ingest: { listen: \"127.0.0.1:" << port_
                          << "\", max_body_bytes: 65536, "
                          << "shutdown_grace_ms: " << shutdown_grace_ms << ingest_extra << " }\n"
                          << "sources:\n  github: { scheme: github, secrets: [\"" << kGithubSecret
                          << "\"] }\n"
                          << "api_tokens: [\"" << kToken << "\"]\n";
    auto p = ChildProcess::spawn(
        {std::string(HOOKRELAY_BIN_DIR) + "/ingest/hookrelay-ingest", "--config", config}, {},
        dir_.file("ingest.log"));
    ASSERT_TRUE(p) << p.error().message;
    ingest_.emplace(std::move(*p));
    for (int i = 0; i < 200; ++i) {
      if (get(url("/readyz")).status == 200) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "ingest never became ready:\n" << ingest_->log_tail();
  }

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  HttpReply post_webhook(const std::string& body, const std::string& event_id) {
    SourceConfig source;
    source.name = "github";
    source.scheme = SchemeKind::kGithub;
    source.secrets = {kGithubSecret};
    auto headers = provider_headers(source, body, std::time(nullptr), event_id);
    headers.emplace_back("X-GitHub-Event", "push");
    return call("POST", url("/webhooks/github"), headers, body);
  }

  TestDir dir_;
  std::unique_ptr<DevBroker> broker_;
  std::optional<ChildProcess> ingest_;
  uint16_t port_ = 0;
};

TEST_F(IngestProcess, AcknowledgedWebhooksAreInTheTopicByteForByte) {
  std::map<std::string, std::string> sent;  // event id -> body
  for (int i = 0; i < 20; ++i) {
    std::string body = "{\"n\":" + std::to_string(i) + ",\"bin\":\"";
    body += std::string("\x00\x01\xfe\xff\r\n", 6);
    body += "\"}";
    std::string id = "delivery-" + std::to_string(i);
    auto r = post_webhook(body, id);
    ASSERT_EQ(r.status, 202) << r.body;
    EXPECT_EQ(r.body, "{\"id\":\"" + id + "\",\"status\":\"accepted\"}");
    sent[id] = body;
  }
  auto consumed = consume_all(broker_->bootstrap(), std::string(kWebhooksTopic), sent.size(), 30s);
  ASSERT_TRUE(consumed) << consumed.error().message;
  ASSERT_EQ(consumed->size(), sent.size()) << "one message per 202, no more";
  for (const auto& m : *consumed) {
    auto id = m.header("hr-event-id");
    ASSERT_TRUE(id);
    ASSERT_TRUE(sent.count(*id)) << *id;
    EXPECT_EQ(m.value, sent[*id]);
    EXPECT_EQ(m.header("hr-source"), "github");
    EXPECT_EQ(m.header("hr-kind"), "webhook");
    EXPECT_TRUE(m.header("hr-received-at"));
    EXPECT_EQ(m.header("hr-fwd-x-github-event"), "push");
    EXPECT_EQ(m.key, *id);
  }
}

// librdkafka sends one produce request per partition, so ingest places webhooks in runs on one
// partition whatever their keys (PartitionSpread), the key staying the event id. A run lasts
// sticky.partitioning.linger.ms (the linger unless set) or 32 messages; 0 there: by key.
TEST_F(IngestProcess, WebhooksGoInRunsPerPartitionAndKeepTheirKeys) {
  // Partitions of the webhooks whose ids start with `prefix`, in the order they were posted.
  const auto post = [this](const std::string& prefix, int count) {
    for (int i = 0; i < count; ++i) {
      auto r = post_webhook("{\"n\":" + std::to_string(i) + "}",
                            prefix + (i < 10 ? "0" : "") + std::to_string(i));
      EXPECT_EQ(r.status, 202) << r.body;
    }
    auto consumed = consume_to_end(broker_->bootstrap(), std::string(kWebhooksTopic));
    EXPECT_TRUE(consumed) << consumed.error().message;
    std::map<std::string, int32_t> partition_of;
    for (const auto& m : consumed ? *consumed : std::vector<ConsumedMessage>{}) {
      EXPECT_EQ(m.header("hr-event-id"), m.key);
      if (m.key.starts_with(prefix)) partition_of[m.key] = m.partition;
    }
    std::vector<int32_t> partitions;
    for (const auto& [id, partition] : partition_of) partitions.push_back(partition);
    EXPECT_EQ(partitions.size(), static_cast<std::size_t>(count));
    return partitions;
  };

  // One at a time, each answered after its 1 ms linger: every webhook starts a run of its own,
  // on the partition after the last one's.
  auto turns = post("turn-", 12);
  ASSERT_EQ(turns.size(), 12u);
  for (std::size_t i = 1; i < turns.size(); ++i) EXPECT_EQ(turns[i], (turns[i - 1] + 1) % 12) << i;
  // Every webhook was answered, so each partition's count is back to zero, and each is exported.
  const auto metrics = get(url("/metrics"));
  for (int p = 0; p < 12; ++p) {
    EXPECT_NE(
        metrics.body.find("hookrelay_kafka_producer_partition_outstanding_messages{partition=\"" +
                          std::to_string(p) + "\",topic=\"hookrelay.webhooks\"} 0\n"),
        std::string::npos)
        << p << "\n"
        << metrics.body;
  }

  ingest_.reset();
  start_ingest(3000, "{ sticky.partitioning.linger.ms: \"600000\" }");
  // Ten-minute runs: 32 webhooks on one partition, then the next run on another.
  auto runs = post("run-", 40);
  ASSERT_EQ(runs.size(), 40u);
  EXPECT_EQ(std::set<int32_t>(runs.begin(), runs.begin() + 32).size(), 1u);
  EXPECT_EQ(std::set<int32_t>(runs.begin() + 32, runs.end()).size(), 1u);
  EXPECT_NE(runs[32], runs[0]);

  ingest_.reset();
  start_ingest(3000, "{ sticky.partitioning.linger.ms: \"0\" }");
  auto keyed = post("keyed-", 24);
  ASSERT_EQ(keyed.size(), 24u);
  EXPECT_GE(std::set<int32_t>(keyed.begin(), keyed.begin() + 8).size(), 3u) << "by key";
}

TEST_F(IngestProcess, CallRequestsAreProducedAfterTheAck) {
  auto r = call(
      "POST", url("/v1/calls"), {{"Authorization", std::string("Bearer ") + kToken}},
      R"({"url":"http://127.0.0.1:9/x","method":"PUT","body":"payload","idempotency_key":"k-1"})");
  ASSERT_EQ(r.status, 202) << r.body;
  auto consumed = consume_all(broker_->bootstrap(), std::string(kCallsTopic), 1, 30s);
  ASSERT_TRUE(consumed);
  ASSERT_EQ(consumed->size(), 1u);
  EXPECT_EQ(consumed->at(0).value, "payload");
  EXPECT_TRUE(consumed->at(0).header("hr-call"));
}

TEST_F(IngestProcess, BadInputGetsSpecificErrorsAndIsCounted) {
  auto r = call("POST", url("/webhooks/github"),
                {{"X-Hub-Signature-256", "sha256=" + std::string(64, '0')}}, "{}");
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.body.find("\"bad_signature\""), std::string::npos) << r.body;
  r = call("POST", url("/webhooks/nope"), {}, "{}");
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("\"unknown_source\""), std::string::npos);
  r = post_webhook(std::string(70000, 'x'), "big");
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("\"body_too_large\""), std::string::npos) << r.body;
  r = call("POST", url("/v1/calls"), {{"Authorization", std::string("Bearer ") + kToken}},
           "{\"url\":1}");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("url: must be a string"), std::string::npos) << r.body;
  auto metrics = get(url("/metrics")).body;
  EXPECT_NE(metrics.find("hookrelay_ingest_verification_failures_total{reason=\"bad_signature\","
                         "source=\"github\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("hookrelay_ingest_errors_total{code=\"body_too_large\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.find("hookrelay_ingest_errors_total{code=\"unknown_source\"} 1"),
            std::string::npos);
  EXPECT_TRUE(ingest_->running());
}

// ingest.metrics_listen: /metrics and the probes on a listener of their own; the public one
// refuses /metrics and still takes webhooks and answers its health probes.
TEST_F(IngestProcess, AMetricsListenerOfItsOwnServesMetricsAndThePublicOneRefusesThem) {
  ingest_.reset();
  const uint16_t metrics_port = free_port();
  start_ingest(3000, "{}", 10000,
               ", metrics_listen: \"127.0.0.1:" + std::to_string(metrics_port) + "\"");
  const std::string operations = "http://127.0.0.1:" + std::to_string(metrics_port);
  ASSERT_EQ(post_webhook("{}", "ops-1").status, 202);
  auto r = get(url("/metrics"));
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("\"not_found\""), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("hookrelay_ingest_requests_total"), std::string::npos) << r.body;
  EXPECT_EQ(get(url("/healthz")).status, 200);
  r = get(operations + "/metrics");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("hookrelay_ingest_requests_total{endpoint=\"webhook\",source=\"github\","
                        "status=\"202\"} 1"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("hookrelay_ingest_errors_total{code=\"not_found\"} 1"), std::string::npos)
      << r.body;
  EXPECT_EQ(get(operations + "/readyz").status, 200);
  EXPECT_EQ(get(operations + "/healthz").status, 200);
  // Nothing but the probes there.
  EXPECT_EQ(call("POST", operations + "/webhooks/github", {}, "{}").status, 404);
  EXPECT_TRUE(ingest_->running());
}

TEST_F(IngestProcess, BrokerDownIs503NeverA2xxAndAcceptedOnesAreKept) {
  ASSERT_EQ(post_webhook("{\"before\":1}", "before-1").status, 202);
  ASSERT_TRUE(broker_->all_down());
  int refused = 0;
  for (int i = 0; i < 5; ++i) {
    auto r = post_webhook("{\"during\":" + std::to_string(i) + "}", "during-" + std::to_string(i));
    EXPECT_NE(r.status / 100, 2) << "2xx while every broker is down: " << r.body;
    if (r.status == 503) {
      ++refused;
      EXPECT_TRUE(r.headers.count("retry-after"));
    }
  }
  EXPECT_EQ(refused, 5);
  EXPECT_EQ(get(url("/readyz")).status, 503);
  ASSERT_TRUE(broker_->all_up());
  int status = 0;
  for (int i = 0; i < 100 && status != 202; ++i) {
    status = post_webhook("{\"after\":1}", "after-1").status;
    if (status != 202) std::this_thread::sleep_for(200ms);
  }
  ASSERT_EQ(status, 202) << "ingest did not recover after the brokers came back";
  // Everything acknowledged is there. A refused message may or may not have been written
  // (Kafka's timeout is ambiguous); receivers dedupe by event id, so that is allowed.
  auto consumed = consume_all(broker_->bootstrap(), std::string(kWebhooksTopic), 2, 30s);
  ASSERT_TRUE(consumed);
  std::set<std::string> ids;
  for (const auto& m : *consumed) ids.insert(m.header("hr-event-id").value_or(""));
  EXPECT_TRUE(ids.count("before-1"));
  EXPECT_TRUE(ids.count("after-1"));
}

TEST_F(IngestProcess, SigtermAnswersInFlightRequestsThenExitsZero) {
  ASSERT_TRUE(broker_->control("rtt all 800"));
  std::vector<std::future<HttpReply>> replies;
  for (int i = 0; i < 8; ++i) {
    replies.push_back(std::async(std::launch::async, [this, i] {
      return post_webhook("{\"drain\":" + std::to_string(i) + "}", "drain-" + std::to_string(i));
    }));
  }
  std::this_thread::sleep_for(300ms);
  ingest_->terminate();
  int accepted = 0;
  for (auto& f : replies) {
    auto r = f.get();
    EXPECT_NE(r.status, 0) << "connection dropped without an answer: " << r.body;
    if (r.status == 202) ++accepted;
  }
  auto code = ingest_->wait_exit(15s);
  ASSERT_TRUE(code.has_value()) << "ingest did not exit";
  EXPECT_EQ(*code, 0) << ingest_->log_tail();
  EXPECT_GT(accepted, 0);
  ASSERT_TRUE(broker_->control("rtt all 0"));
  auto consumed = consume_all(broker_->bootstrap(), std::string(kWebhooksTopic), accepted, 30s);
  ASSERT_TRUE(consumed);
  EXPECT_GE(static_cast<int>(consumed->size()), accepted);
}

// SIGTERM while a produce is still out after the grace (a broker slower than the grace): it is
// purged while the HTTP loops still run, so the request is answered (503 delivery_outcome_unknown,
// not a dropped connection), no 202 is counted for an answer never written, and ingest exits 0.
TEST_F(IngestProcess, SigtermWithAProduceStillOutAfterTheGraceExitsZero) {
  ASSERT_NO_FATAL_FAILURE(start_ingest(30000, "{}", 0));
  // Twelve acknowledged first, one at a time, each on the next partition: the producer has its
  // id, the topic's partitions and a connection to every broker, so the next message is sent at
  // once and is in flight, not queued, when it is purged.
  for (int i = 0; i < 12; ++i)
    ASSERT_EQ(post_webhook("{\"early\":1}", "early-" + std::to_string(i)).status, 202);
  ASSERT_TRUE(broker_->control("rtt all 5000"));
  auto reply =
      std::async(std::launch::async, [this] { return post_webhook("{\"late\":1}", "late-1"); });
  std::this_thread::sleep_for(500ms);
  ingest_->terminate();
  auto code = ingest_->wait_exit(20s);
  ASSERT_TRUE(code.has_value()) << "ingest did not exit";
  EXPECT_EQ(*code, 0) << ingest_->log_tail();
  // Answered, while the HTTP loops still ran: it may have been stored, and the answer says so
  // (no acknowledgement can come after the loops stop, when a 202 would be counted and not sent).
  const HttpReply r = reply.get();
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.body.find("delivery_outcome_unknown"), std::string::npos) << r.body;
  EXPECT_NE(ingest_->log_tail().find("msg=ingest_drain_incomplete unanswered=1"), std::string::npos)
      << ingest_->log_tail();
  // Purged while in flight (sent, not acknowledged): it may have been stored, and is reported so.
  EXPECT_NE(ingest_->log_tail().find("msg=produce_failed endpoint=webhook source=github "
                                     "code=delivery_outcome_unknown"),
            std::string::npos)
      << ingest_->log_tail();
}

// A produce request sent and not acknowledged within kafka.produce_timeout_ms (a broker slower
// than that) may have been stored: the call is answered 503 delivery_outcome_unknown with
// Retry-After, saying it may have been accepted and, as it had no idempotency_key, that a retry
// may make it twice and which key to retry with. Counted under its own code.
TEST_F(IngestProcess, AProduceSentAndNotAcknowledgedIsAnsweredMaybeAccepted) {
  ASSERT_NO_FATAL_FAILURE(start_ingest(1500));
  // Twelve acknowledged first, one at a time, each on the next partition: the producer then has
  // its id, the topic's partitions and a connection to every broker, so the next call is sent at
  // once and times out in flight, not in the queue.
  for (int i = 0; i < 12; ++i) {
    auto r = call("POST", url("/v1/calls"), {{"Authorization", std::string("Bearer ") + kToken}},
                  R"({"url":"http://127.0.0.1:9/x","body":"first"})");
    ASSERT_EQ(r.status, 202) << r.body;
  }
  ASSERT_TRUE(broker_->control("rtt all 4000"));
  auto r = call("POST", url("/v1/calls"), {{"Authorization", std::string("Bearer ") + kToken}},
                R"({"url":"http://127.0.0.1:9/x","body":"once"})");
  ASSERT_TRUE(broker_->control("rtt all 0"));
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.body.find(R"("code":"delivery_outcome_unknown")"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("may have been accepted"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("twice"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"(\"idempotency_key\": \"hr_)"), std::string::npos) << r.body;
  EXPECT_TRUE(r.headers.count("retry-after"));
  const auto metrics = get(url("/metrics")).body;
  EXPECT_NE(metrics.find("hookrelay_ingest_errors_total{code=\"delivery_outcome_unknown\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_EQ(
      metrics.find("hookrelay_kafka_producer_errors_total{code=\"delivery_outcome_unknown\"} 0"),
      std::string::npos)
      << metrics;
}

// A fatal producer error (here the broker reports a sequence gap, which breaks the idempotent
// producer's guarantee): librdkafka's handle will never produce again. Ingest answers 503, never
// a 2xx, and exits 1 so that it is restarted with a fresh producer, instead of staying up,
// answering 503 to everything while its readiness probe said ready again.
TEST_F(IngestProcess, AFatalProducerErrorIsA503AndIngestExits1) {
  ASSERT_TRUE(broker_->control("errors Produce 1 OUT_OF_ORDER_SEQUENCE_NUMBER"));
  auto r = post_webhook("{\"fatal\":1}", "fatal-1");
  EXPECT_EQ(r.status, 503) << r.body;
  auto code = ingest_->wait_exit(20s);
  ASSERT_TRUE(code.has_value()) << "ingest is still up after a fatal producer error\n"
                                << ingest_->log_tail();
  EXPECT_EQ(*code, 1) << ingest_->log_tail();
  const std::string log = ingest_->log_tail(1 << 20);
  EXPECT_NE(log.find("msg=kafka_producer_fatal"), std::string::npos) << log;
  EXPECT_NE(log.find("msg=ingest_failed"), std::string::npos) << log;
}

}  // namespace
}  // namespace hookrelay::test
