#include "ingest/ingest_service.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "shared/call_request.h"
#include "shared/kafka/wire_contract.h"
#include "shared/signing/webhook_signer.h"
#include "worker/message_expander.h"

namespace hookrelay {
namespace {

using json = nlohmann::json;

struct Produced {
  std::string topic, key, value;
  std::vector<MessageHeader> headers;
  MessageProducer::DoneCallback done;
  std::string header(std::string_view name) const {
    for (const auto& h : headers) {
      if (h.name == name) return h.value;
    }
    return "<absent>";
  }
};

// Holds every message until the test acknowledges or fails it, like a broker would.
class FakeProducer : public MessageProducer {
 public:
  void produce(const OutgoingMessage& m, DoneCallback done) override {
    messages.push_back({std::string(m.topic), std::string(m.key), std::string(m.value), *m.headers,
                        std::move(done)});
  }
  bool reachable() const override { return up; }
  int outstanding() const override { return static_cast<int>(messages.size()); }
  std::vector<PartitionOutstanding> outstanding_by_partition() const override {
    return by_partition;
  }
  void ack(std::size_t i) { messages.at(i).done(ProducedAt{3, 42}); }
  void nack(std::size_t i, std::string code) {
    messages.at(i).done(fail(std::move(code), "broker said no", true));
  }
  std::deque<Produced> messages;
  std::vector<PartitionOutstanding> by_partition;
  bool up = true;
};

struct Request {
  std::string method = "POST";
  std::string target{};
  std::string body{};
  std::map<std::string, std::string> headers{};
  HttpRequest view() const {
    HttpRequest r;
    r.method = method;
    r.target = target;
    r.body = body;
    r.header = [this](std::string_view name) -> std::optional<std::string_view> {
      for (const auto& [k, v] : headers) {
        if (k.size() == name.size() &&
            std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
              return std::tolower(static_cast<unsigned char>(a)) ==
                     std::tolower(static_cast<unsigned char>(b));
            })) {
          return std::string_view(v);
        }
      }
      return std::nullopt;
    };
    r.for_each_header = [this](const std::function<void(std::string_view, std::string_view)>& f) {
      for (const auto& [k, v] : headers) f(k, v);
    };
    return r;
  }
};

constexpr int64_t kNowMs = 1'700'000'000'000;

class IngestServiceTest : public ::testing::Test {
 protected:
  IngestServiceTest() {
    auto c = parse_config(R"(
sources:
  github: { scheme: github, secrets: ["It's a Secret to Everybody"] }
  acme: { scheme: standard-webhooks, secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }
api_tokens: ["tok_0123456789abcdef"]
)",
                          [](const std::string&) { return std::nullopt; });
    EXPECT_TRUE(c) << c.error().message;
    config = *c;
    service = std::make_unique<IngestService>(
        config, producer, std::make_shared<prometheus::Registry>(), [] { return kNowMs; });
  }

  // Sends and returns the answer, if one was given synchronously or by the time acks ran.
  std::optional<HttpResponse> send(const Request& r) {
    answer.reset();
    service->handle(r.view(), [this](HttpResponse resp) { answer = std::move(resp); });
    return answer;
  }

  // POST /v1/calls with `body`, under the configured API token.
  static Request authorized_call(const std::string& body) {
    Request r{.target = "/v1/calls", .body = body};
    r.headers["Authorization"] = "Bearer tok_0123456789abcdef";
    return r;
  }

  Request signed_webhook(const std::string& source, const std::string& body) {
    Request r;
    r.target = "/webhooks/" + source;
    r.body = body;
    for (auto& [k, v] : provider_headers(config.sources.at(source), body, kNowMs / 1000, "evt_1"))
      r.headers[k] = v;
    r.headers["Content-Type"] = "application/json";
    r.headers["X-GitHub-Event"] = "push";
    r.headers["Authorization"] = "Basic c2VjcmV0";
    return r;
  }

  std::string error_code() const { return json::parse(answer->body)["error"]["code"]; }

  // A service on the clock `now` whose three first webhooks (e0..e2) Kafka did not take, so that
  // it refuses writes (KafkaWriteBreaker); returns a function sending a webhook signed at `now`
  // with event id `id`.
  std::function<std::optional<HttpResponse>(const std::string&)> open_write_breaker(int64_t& now) {
    service = std::make_unique<IngestService>(
        config, producer, std::make_shared<prometheus::Registry>(), [&now] { return now; });
    auto webhook = [this, &now](const std::string& id) {
      auto r = signed_webhook("github", "{}");
      for (auto& [k, v] : provider_headers(config.sources.at("github"), "{}", now / 1000, id))
        r.headers[k] = v;
      return send(r);
    };
    for (int i = 0; i < 3; ++i) {
      EXPECT_FALSE(webhook("e" + std::to_string(i)).has_value());
      producer.nack(producer.messages.size() - 1, "delivery_outcome_unknown");
    }
    return webhook;
  }

  // One request that Kafka takes, gone from producer.messages again (the indices of the test's
  // own stay): three failed writes in a row would make ingest refuse the next request at once
  // (KafkaWriteBreaker), and the tests that fail writes one after another are about each answer.
  void keep_writes_flowing() {
    const auto kept = answer;
    send(signed_webhook("github", "{\"flowing\":1}"));
    producer.ack(producer.messages.size() - 1);
    producer.messages.pop_back();
    answer = kept;
  }

  Config config;
  FakeProducer producer;
  std::unique_ptr<IngestService> service;
  std::optional<HttpResponse> answer;
};

TEST_F(IngestServiceTest, VerifiedWebhookIsAnsweredOnlyAfterTheBrokerAck) {
  std::string body = std::string("{\"action\":\"opened\"}\0\xff", 22);
  auto r = send(signed_webhook("github", body));
  EXPECT_FALSE(r.has_value()) << "answered before the broker acknowledged";
  ASSERT_EQ(producer.messages.size(), 1u);
  const auto& m = producer.messages[0];
  EXPECT_EQ(m.topic, kWebhooksTopic);
  EXPECT_EQ(m.value, body);  // byte for byte, NULs included
  EXPECT_EQ(m.key, "evt_1");
  EXPECT_EQ(m.header("hr-kind"), "webhook");
  EXPECT_EQ(m.header("hr-source"), "github");
  EXPECT_EQ(m.header("hr-event-id"), "evt_1");
  EXPECT_EQ(m.header("hr-received-at"), std::to_string(kNowMs));
  EXPECT_EQ(m.header("hr-content-type"), "application/json");
  EXPECT_EQ(m.header("hr-fwd-x-github-event"), "push");
  EXPECT_EQ(m.header("hr-fwd-authorization"), "<absent>");
  producer.ack(0);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 202);
  EXPECT_EQ(json::parse(answer->body), json({{"id", "evt_1"}, {"status", "accepted"}}));
}

// What ingest accepts, the worker takes: a header the worker would refuse to forward (a name of
// more than 256 characters, more than 64 KiB of forwarded names and values) is refused here with
// 431, not acknowledged and then dead-lettered as malformed.
TEST_F(IngestServiceTest, HeadersTheWorkerCouldNotForwardAre431AndWhatIsAcceptedExpands) {
  auto long_name = signed_webhook("github", "{}");
  long_name.headers["X-" + std::string(300, 'n')] = "v";
  auto r = send(long_name);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
  EXPECT_EQ(error_code(), "headers_not_forwardable");
  EXPECT_NE(json::parse(answer->body)["error"]["message"].get<std::string>().find("302 bytes"),
            std::string::npos)
      << answer->body;
  EXPECT_TRUE(producer.messages.empty());

  // 98 headers of 660 bytes: under the HTTP server's limits, over 64 KiB once prefixed.
  auto many = signed_webhook("github", "{}");
  for (int i = 0; i < 98; ++i)
    many.headers["X-H" + std::to_string(100 + i)] = std::string(660, 'v');
  r = send(many);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
  EXPECT_EQ(error_code(), "headers_not_forwardable");
  EXPECT_TRUE(producer.messages.empty());

  // Just under: accepted, and the worker expands the message as written.
  auto fits = signed_webhook("github", "{}");
  for (int i = 0; i < 90; ++i)
    fits.headers["X-H" + std::to_string(100 + i)] = std::string(660, 'v');
  fits.headers["X-" + std::string(250, 'n')] = "v";
  send(fits);
  ASSERT_EQ(producer.messages.size(), 1u);
  producer.ack(0);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 202);
  ConsumedMessage m;
  m.topic = producer.messages[0].topic;
  m.value = std::make_shared<const std::string>(producer.messages[0].value);
  for (const auto& h : producer.messages[0].headers) m.headers.emplace_back(h.name, h.value);
  auto routed = parse_config(R"(
sources: { github: { scheme: github, secrets: [s] } }
routes: { github: [ { name: ci, url: "http://127.0.0.1:9/ci" } ] }
)",
                             [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(routed) << routed.error().message;
  auto expanded = expand_message(m, *routed);
  ASSERT_TRUE(expanded) << expanded.error().message;
  EXPECT_EQ(expanded->size(), 1u);
}

TEST_F(IngestServiceTest, BrokerFailureIs503WithRetryAfterNeverA2xx) {
  send(signed_webhook("github", "{}"));
  producer.nack(0, "delivery_timeout");
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 503);
  EXPECT_EQ(error_code(), "delivery_timeout");
  bool has_retry_after = false;
  for (auto& [k, v] : answer->headers) has_retry_after |= (k == "Retry-After");
  EXPECT_TRUE(has_retry_after);
}

TEST_F(IngestServiceTest, UnreachableKafkaRefusesWithoutProducing) {
  producer.up = false;
  auto r = send(signed_webhook("github", "{}"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(error_code(), "kafka_unavailable");
  EXPECT_TRUE(producer.messages.empty());
}

// A Kafka that answers but takes no writes (min.insync.replicas not met): after three failed
// reports in a row, requests are refused at once instead of each waiting produce_timeout_ms, and
// /readyz says so; after the cooldown one request probes, and its success lets all through.
TEST_F(IngestServiceTest, AKafkaThatTakesNoWritesIsRefusedAtOnceUntilAProbeGetsThrough) {
  int64_t now = kNowMs;
  const auto webhook = open_write_breaker(now);
  auto ready = [&] { return send(Request{.method = "GET", .target = "/readyz"})->status; };
  const std::size_t produced = producer.messages.size();
  auto refused = webhook("e3");
  ASSERT_TRUE(refused) << "the request waited for Kafka";
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(producer.messages.size(), produced) << "produced while Kafka takes no writes";
  EXPECT_EQ(ready(), 503);
  EXPECT_NE(answer->body.find("kafka_refusing_writes"), std::string::npos) << answer->body;

  now += KafkaWriteBreaker::kCooldownMs;
  EXPECT_FALSE(webhook("e4").has_value()) << "the probe was not let through";
  ASSERT_EQ(producer.messages.size(), produced + 1);
  auto behind = webhook("e5");
  ASSERT_TRUE(behind) << "a second request went beside the probe";
  EXPECT_EQ(behind->status, 503);
  producer.ack(producer.messages.size() - 1);
  EXPECT_EQ(ready(), 200);
  EXPECT_FALSE(webhook("e6").has_value()) << "closed again: produced and waiting for its ack";
  EXPECT_EQ(producer.messages.size(), produced + 2);
}

// A probe whose message was too large for Kafka says nothing of the cluster: the next request
// probes at once, not after another cooldown.
TEST_F(IngestServiceTest, AProbeTooLargeForKafkaLetsTheNextRequestProbe) {
  int64_t now = kNowMs;
  const auto webhook = open_write_breaker(now);
  now += KafkaWriteBreaker::kCooldownMs;
  EXPECT_FALSE(webhook("e3").has_value()) << "the probe was not let through";
  const std::size_t produced = producer.messages.size();
  producer.messages.at(produced - 1)
      .done(fail(std::string(kMessageTooLargeCode), "Broker: Message size too large", false));
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 413);
  now += 1;
  EXPECT_FALSE(webhook("e4").has_value()) << "refused for another cooldown after a too-large probe";
  EXPECT_EQ(producer.messages.size(), produced + 1);
  producer.ack(producer.messages.size() - 1);
  EXPECT_EQ(send(Request{.method = "GET", .target = "/readyz"})->status, 200);
}

// Only the report of the probe still out ends it. A probe sent in an earlier open spell, whose
// report comes after a success closed the breaker and failures opened it again, is not that
// probe: its report, too large for Kafka or failed, lets no second probe out beside the one out.
TEST_F(IngestServiceTest, AStaleProbesReportLetsNoSecondProbeOut) {
  int64_t now = kNowMs;
  service = std::make_unique<IngestService>(
      config, producer, std::make_shared<prometheus::Registry>(), [&now] { return now; });
  auto webhook = [this, &now](const std::string& id) {
    auto r = signed_webhook("github", "{}");
    for (auto& [k, v] : provider_headers(config.sources.at("github"), "{}", now / 1000, id))
      r.headers[k] = v;
    return send(r);
  };
  auto open = [&](const std::string& prefix) {
    for (int i = 0; i < KafkaWriteBreaker::kThreshold; ++i) {
      ASSERT_FALSE(webhook(prefix + std::to_string(i)).has_value());
      producer.nack(producer.messages.size() - 1, "delivery_timeout");
    }
  };
  ASSERT_FALSE(webhook("early").has_value());  // sent while closed, answered later
  const std::size_t early = producer.messages.size() - 1;
  open("a");
  now += KafkaWriteBreaker::kCooldownMs;
  ASSERT_FALSE(webhook("probe1").has_value()) << "the first probe was not let through";
  const std::size_t probe1 = producer.messages.size() - 1;
  producer.ack(early);  // closes the breaker while the first probe is still out
  open("b");
  now += KafkaWriteBreaker::kCooldownMs;
  ASSERT_FALSE(webhook("probe2").has_value()) << "the second spell's probe was not let through";
  const std::size_t produced = producer.messages.size();

  producer.messages.at(probe1).done(
      fail(std::string(kMessageTooLargeCode), "Broker: Message size too large", false));
  auto beside = webhook("beside1");
  ASSERT_TRUE(beside) << "a request went beside the probe out, after a stale too-large report";
  EXPECT_EQ(beside->status, 503);

  producer.nack(probe1, "delivery_timeout");  // the stale probe's report again, as a failure
  now += KafkaWriteBreaker::kCooldownMs;
  beside = webhook("beside2");
  ASSERT_TRUE(beside) << "a request went beside the probe out, after a stale failed report";
  EXPECT_EQ(beside->status, 503);
  EXPECT_EQ(producer.messages.size(), produced);

  producer.ack(produced - 1);  // the probe out succeeds: all go through again
  EXPECT_FALSE(webhook("after").has_value());
  EXPECT_EQ(producer.messages.size(), produced + 1);
}

TEST_F(IngestServiceTest, BadSignatureIs401AndCounted) {
  auto req = signed_webhook("github", "{\"a\":1}");
  req.body = "{\"a\":2}";
  auto r = send(req);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(error_code(), "bad_signature");
  EXPECT_TRUE(producer.messages.empty());
  Request metrics{.method = "GET", .target = "/metrics"};
  auto m = send(metrics);
  EXPECT_NE(
      m->body.find(
          R"(hookrelay_ingest_verification_failures_total{reason="bad_signature",source="github"} 1)"),
      std::string::npos)
      << m->body;
}

TEST_F(IngestServiceTest, EachPartitionsUnacknowledgedMessagesAreExportedAtEachScrape) {
  producer.by_partition = {{"hookrelay.webhooks", 0, 2}, {"hookrelay.webhooks", 7, 31}};
  Request metrics{.method = "GET", .target = "/metrics"};
  auto m = send(metrics);
  const std::string name = "hookrelay_kafka_producer_partition_outstanding_messages";
  EXPECT_NE(m->body.find(name + R"({partition="7",topic="hookrelay.webhooks"} 31)"),
            std::string::npos)
      << m->body;
  EXPECT_NE(m->body.find(name + R"({partition="0",topic="hookrelay.webhooks"} 2)"),
            std::string::npos);
  // Acknowledged since: the next scrape says so.
  producer.by_partition = {{"hookrelay.webhooks", 0, 0}, {"hookrelay.webhooks", 7, 0}};
  m = send(metrics);
  EXPECT_NE(m->body.find(name + R"({partition="7",topic="hookrelay.webhooks"} 0)"),
            std::string::npos)
      << m->body;
}

TEST_F(IngestServiceTest, StaleStandardWebhookIs401) {
  auto req = signed_webhook("acme", "{}");
  auto stale = provider_headers(config.sources.at("acme"), "{}", kNowMs / 1000 - 301, "evt_1");
  for (auto& [k, v] : stale) req.headers[k] = v;
  auto r = send(req);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(error_code(), "stale_timestamp");
}

TEST_F(IngestServiceTest, RoutingErrors) {
  auto r = send(Request{.target = "/webhooks/nosuch", .body = "{}"});
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(error_code(), "unknown_source");
  r = send(Request{.method = "GET", .target = "/webhooks/github"});
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(error_code(), "method_not_allowed");
  r = send(Request{.method = "GET", .target = "/elsewhere"});
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(error_code(), "not_found");
}

// With ingest.metrics_listen set, /metrics is answered only by the operations listener's handler;
// the public one refuses it (404) and keeps its health probes. Without it, handle() serves it.
TEST_F(IngestServiceTest, AMetricsListenerOfItsOwnTakesMetricsOffThePublicOne) {
  ASSERT_EQ(send(Request{.method = "GET", .target = "/metrics"})->status, 200);
  config.ingest.metrics_listen = "127.0.0.1:9101";
  service = std::make_unique<IngestService>(
      config, producer, std::make_shared<prometheus::Registry>(), [] { return kNowMs; });
  auto r = send(Request{.method = "GET", .target = "/metrics"});
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(error_code(), "not_found");
  EXPECT_NE(r->body.find("ingest.metrics_listen"), std::string::npos) << r->body;
  EXPECT_EQ(r->body.find("hookrelay_ingest_"), std::string::npos);
  EXPECT_EQ(send(Request{.method = "GET", .target = "/metrics?x=1"})->status, 404);
  EXPECT_EQ(send(Request{.method = "GET", .target = "/healthz"})->status, 200);
  EXPECT_EQ(send(Request{.method = "GET", .target = "/readyz"})->status, 200);

  auto operations = [this](const Request& req) {
    answer.reset();
    service->handle_operations(req.view(), [this](HttpResponse resp) { answer = std::move(resp); });
    return answer;
  };
  r = operations(Request{.method = "GET", .target = "/metrics"});
  ASSERT_EQ(r->status, 200);
  // The public listener's refusal above is counted, and shown here.
  EXPECT_NE(r->body.find("hookrelay_ingest_errors_total{code=\"not_found\"} 2"), std::string::npos)
      << r->body;
  EXPECT_EQ(operations(Request{.method = "GET", .target = "/readyz"})->status, 200);
  EXPECT_EQ(operations(Request{.method = "HEAD", .target = "/healthz"})->status, 200);
  r = operations(Request{.method = "POST", .target = "/metrics", .body = "{}"});
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(error_code(), "method_not_allowed");
  // Nothing but the probes: no webhooks or calls on the operations listener.
  r = operations(signed_webhook("github", "{}"));
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(error_code(), "not_found");
  EXPECT_TRUE(producer.messages.empty());
}

// ingest.max_headers needs a restart (the HTTP server counts header fields up to the limit it was
// built with, and a reload says "restart required"): a reload that lowers it changes nothing, not
// half of it. A webhook with more headers than the reloaded limit is still taken.
TEST_F(IngestServiceTest, AReloadLeavesTheHeaderLimitAsTheServiceStarted) {
  auto lowered = std::make_shared<Config>(config);
  lowered->ingest.max_headers = 8;
  service->reload(lowered);
  auto many = signed_webhook("github", "{}");
  for (int i = 0; i < 12; ++i) many.headers["X-H" + std::to_string(100 + i)] = "v";
  EXPECT_FALSE(send(many).has_value()) << answer->status << " " << answer->body;
  ASSERT_EQ(producer.messages.size(), 1u);
  EXPECT_EQ(producer.messages[0].header("hr-fwd-x-h111"), "v");
  producer.ack(0);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 202);

  // Started with the lower limit, the same webhook is refused: the limit is the one read at start.
  config.ingest.max_headers = 8;
  service = std::make_unique<IngestService>(
      config, producer, std::make_shared<prometheus::Registry>(), [] { return kNowMs; });
  auto r = send(many);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
  EXPECT_EQ(error_code(), "headers_not_forwardable");
}

// ingest.metrics_listen needs a restart too (the operations listener is opened at start): a
// reload that sets it leaves /metrics on the public listener, where it is still served, and one
// that clears it leaves the public listener refusing it.
TEST_F(IngestServiceTest, AReloadLeavesMetricsOnTheListenerTheServiceStartedWith) {
  auto set = std::make_shared<Config>(config);
  set->ingest.metrics_listen = "127.0.0.1:9101";
  service->reload(set);
  EXPECT_EQ(send(Request{.method = "GET", .target = "/metrics"})->status, 200);

  service = std::make_unique<IngestService>(
      *set, producer, std::make_shared<prometheus::Registry>(), [] { return kNowMs; });
  service->reload(std::make_shared<Config>(config));
  auto r = send(Request{.method = "GET", .target = "/metrics"});
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(r->body.find("ingest.metrics_listen"), std::string::npos) << r->body;
}

TEST_F(IngestServiceTest, CallsNeedAValidBearerToken) {
  Request r{.target = "/v1/calls", .body = R"({"url":"http://127.0.0.1:9/x"})"};
  EXPECT_EQ(send(r)->status, 401);
  r.headers["Authorization"] = "Bearer tok_wrong_wrong_wrong";
  EXPECT_EQ(send(r)->status, 401);
  EXPECT_EQ(error_code(), "unauthorized");
  r.headers["Authorization"] = "Basic tok_0123456789abcdef";
  EXPECT_EQ(send(r)->status, 401);
  EXPECT_TRUE(producer.messages.empty());
}

TEST_F(IngestServiceTest, ValidCallIsProducedWithItsEnvelope) {
  Request r = authorized_call(
      R"({"url":"http://127.0.0.1:9/x","body":"hello","idempotency_key":"order-7"})");
  EXPECT_FALSE(send(r).has_value());
  ASSERT_EQ(producer.messages.size(), 1u);
  const auto& m = producer.messages[0];
  EXPECT_EQ(m.topic, kCallsTopic);
  EXPECT_EQ(m.value, "hello");
  EXPECT_EQ(m.key, "order-7");
  EXPECT_EQ(m.header("hr-kind"), "call");
  EXPECT_EQ(m.header("hr-event-id"), call_id_for("order-7"));
  auto env = parse_call_envelope(m.header("hr-call"));
  ASSERT_TRUE(env);
  EXPECT_EQ(env->url, "http://127.0.0.1:9/x");
  producer.ack(0);
  EXPECT_EQ(answer->status, 202);
  auto j = json::parse(answer->body);
  EXPECT_EQ(j["id"], call_id_for("order-7"));
  EXPECT_EQ(j["idempotency_key"], "order-7");
}

TEST_F(IngestServiceTest, InvalidCallIs400NamingTheField) {
  Request r = authorized_call(R"({"url":"gopher://x"})");
  auto a = send(r);
  EXPECT_EQ(a->status, 400);
  EXPECT_EQ(error_code(), "invalid_request");
  EXPECT_NE(json::parse(a->body)["error"]["message"].get<std::string>().find("url"),
            std::string::npos);
}

// hookrelay_ingest_ready says at every scrape what /readyz would answer, whether or not anything
// asked /readyz: on Kubernetes the readiness probe asks ingest, and Prometheus asks only /metrics.
TEST_F(IngestServiceTest, TheReadyGaugeSaysAtEveryScrapeWhatReadinessIs) {
  auto ready_gauge = [this] {
    const std::string body = send(Request{.method = "GET", .target = "/metrics"})->body;
    for (const char* value : {"0", "1"}) {
      if (body.find(std::string("\nhookrelay_ingest_ready ") + value + "\n") != std::string::npos)
        return std::string(value);
    }
    return "<absent>\n" + body;
  };
  EXPECT_EQ(ready_gauge(), "1") << "ready from the first scrape";
  producer.up = false;
  EXPECT_EQ(ready_gauge(), "0") << "Kafka unreachable";
  producer.up = true;
  EXPECT_EQ(ready_gauge(), "1");
  int64_t now = kNowMs;
  open_write_breaker(now);
  EXPECT_EQ(ready_gauge(), "0") << "Kafka takes no writes";
  service->begin_shutdown();
  EXPECT_EQ(ready_gauge(), "0") << "shutting down";
}

TEST_F(IngestServiceTest, ShutdownRefusesNewWorkAndFailsReadiness) {
  EXPECT_EQ(send(Request{.method = "GET", .target = "/readyz"})->status, 200);
  service->begin_shutdown();
  EXPECT_EQ(send(Request{.method = "GET", .target = "/readyz"})->status, 503);
  EXPECT_EQ(send(Request{.method = "GET", .target = "/healthz"})->status, 200);
  auto r = send(signed_webhook("github", "{}"));
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(error_code(), "shutting_down");
}

TEST_F(IngestServiceTest, InFlightCountsUntilAnswered) {
  send(signed_webhook("github", "{}"));
  send(signed_webhook("github", "{}"));
  EXPECT_EQ(service->in_flight(), 2);
  producer.ack(0);
  producer.nack(1, "queue_full");
  EXPECT_EQ(service->in_flight(), 0);
}

// SIGTERM's drain calls begin_shutdown() and then waits while in_flight() > 0. A request that got
// past the shutting-down check is counted from then on, so the drain cannot end (and the server
// stop) while it is still to be produced and answered: either it is refused 503 shutting_down, or
// it is in flight while shutdown begins. The clock, read after the check, holds the handler there.
TEST_F(IngestServiceTest, ShutdownBeginningDuringAHandlerSeesItInFlightOrRefusesIt) {
  Request call = authorized_call(R"({"url":"http://127.0.0.1:9/x"})");
  for (const Request& request : {signed_webhook("github", "{}"), call}) {
    std::mutex mu;
    std::condition_variable cv;
    bool in_clock = false;
    bool go_on = false;
    producer.messages.clear();
    service = std::make_unique<IngestService>(config, producer,
                                              std::make_shared<prometheus::Registry>(), [&] {
                                                std::unique_lock lock(mu);
                                                in_clock = true;
                                                cv.notify_all();
                                                cv.wait(lock, [&] { return go_on; });
                                                return kNowMs;
                                              });
    std::optional<HttpResponse> answered;
    std::thread handler(
        [&] { service->handle(request.view(), [&](HttpResponse r) { answered = std::move(r); }); });
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_clock; });
    }
    service->begin_shutdown();
    const int in_flight_at_shutdown = service->in_flight();
    {
      std::lock_guard lock(mu);
      go_on = true;
    }
    cv.notify_all();
    handler.join();
    if (answered) {
      EXPECT_EQ(answered->status, 503) << request.target;
      EXPECT_EQ(json::parse(answered->body)["error"]["code"], "shutting_down");
      EXPECT_TRUE(producer.messages.empty());
    } else {
      EXPECT_GT(in_flight_at_shutdown, 0)
          << request.target << ": the drain saw nothing in flight, yet the request is produced";
      ASSERT_EQ(producer.messages.size(), 1u);
      producer.ack(0);
      ASSERT_TRUE(answered);
      EXPECT_EQ(answered->status, 202);
    }
    EXPECT_EQ(service->in_flight(), 0);
  }
}

// Early answers (refused before producing) leave nothing counted in flight.
TEST_F(IngestServiceTest, RefusedRequestsLeaveNothingInFlight) {
  auto bad = signed_webhook("github", "{\"a\":1}");
  bad.body = "{\"a\":2}";
  EXPECT_EQ(send(bad)->status, 401);
  auto too_long = signed_webhook("github", "{}");
  too_long.headers["X-" + std::string(300, 'n')] = "v";
  EXPECT_EQ(send(too_long)->status, 431);
  Request invalid = authorized_call(R"({"url":"gopher://x"})");
  EXPECT_EQ(send(invalid)->status, 400);
  producer.up = false;
  EXPECT_EQ(send(signed_webhook("github", "{}"))->status, 503);
  EXPECT_EQ(service->in_flight(), 0);
  service->begin_shutdown();
  EXPECT_EQ(send(signed_webhook("github", "{}"))->status, 503);
  EXPECT_EQ(error_code(), "shutting_down");
  EXPECT_EQ(service->in_flight(), 0);
  Request metrics{.method = "GET", .target = "/metrics"};
  EXPECT_NE(send(metrics)->body.find("hookrelay_ingest_in_flight_requests 0"), std::string::npos)
      << answer->body;
}

// A delivery whose outcome Kafka could not report (sent, then timed out or purged unanswered)
// may have been stored: 503 with Retry-After, saying it may have been accepted, and what a retry
// does: a webhook is delivered once whatever, a call with an idempotency_key is made once, a call
// without one may be made twice (the answer names the key it was given, to retry with).
TEST_F(IngestServiceTest, DeliveryOutcomeUnknownSaysTheRequestMayHaveBeenAccepted) {
  auto message_of = [this] {
    return json::parse(answer->body)["error"]["message"].get<std::string>();
  };
  auto expect_503_unknown = [this] {
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->status, 503);
    EXPECT_EQ(error_code(), kDeliveryOutcomeUnknownCode);
    bool has_retry_after = false;
    for (auto& [k, v] : answer->headers) has_retry_after |= (k == "Retry-After");
    EXPECT_TRUE(has_retry_after);
  };
  send(signed_webhook("github", "{}"));
  producer.nack(0, std::string(kDeliveryOutcomeUnknownCode));
  expect_503_unknown();
  EXPECT_NE(message_of().find("may have been accepted"), std::string::npos) << answer->body;
  EXPECT_EQ(message_of().find("not accepted"), std::string::npos) << answer->body;

  Request keyed = authorized_call(R"({"url":"http://127.0.0.1:9/x","idempotency_key":"order-7"})");
  keep_writes_flowing();
  send(keyed);
  producer.nack(1, std::string(kDeliveryOutcomeUnknownCode));
  expect_503_unknown();
  EXPECT_NE(message_of().find("may have been accepted"), std::string::npos) << answer->body;
  EXPECT_NE(message_of().find("same idempotency_key"), std::string::npos) << answer->body;
  EXPECT_EQ(message_of().find("twice"), std::string::npos) << answer->body;

  Request unkeyed = authorized_call(R"({"url":"http://127.0.0.1:9/x"})");
  keep_writes_flowing();
  send(unkeyed);
  producer.nack(2, std::string(kDeliveryOutcomeUnknownCode));
  expect_503_unknown();
  EXPECT_NE(message_of().find("may have been accepted"), std::string::npos) << answer->body;
  EXPECT_NE(message_of().find("twice"), std::string::npos) << answer->body;
  // The key the call was given: sent again with it, the call is made at most once.
  const std::string key = producer.messages[2].key;
  ASSERT_EQ(key.rfind("hr_", 0), 0u) << key;
  EXPECT_NE(message_of().find(key), std::string::npos) << answer->body;

  // A caller's key of the generated form is the caller's own.
  Request lookalike = unkeyed;
  lookalike.body = R"({"url":"http://127.0.0.1:9/x","idempotency_key":")" + key + R"("})";
  keep_writes_flowing();
  send(lookalike);
  producer.nack(3, std::string(kDeliveryOutcomeUnknownCode));
  expect_503_unknown();
  EXPECT_NE(message_of().find("same idempotency_key"), std::string::npos) << answer->body;

  // A caller's key written with JSON escapes (as PHP writes "/") is the caller's own too.
  Request escaped = unkeyed;
  escaped.body = R"({"url":"http://127.0.0.1:9/x","idempotency_key":"order\/8"})";
  keep_writes_flowing();
  send(escaped);
  producer.nack(4, std::string(kDeliveryOutcomeUnknownCode));
  expect_503_unknown();
  EXPECT_NE(message_of().find("same idempotency_key"), std::string::npos) << answer->body;
  EXPECT_EQ(message_of().find("twice"), std::string::npos) << answer->body;

  // A timeout with the message never sent is still "not accepted".
  keep_writes_flowing();
  send(signed_webhook("github", "{}"));
  producer.nack(5, "delivery_timeout");
  EXPECT_NE(message_of().find("not accepted"), std::string::npos) << answer->body;

  Request metrics{.method = "GET", .target = "/metrics"};
  EXPECT_NE(send(metrics)->body.find(
                R"(hookrelay_ingest_errors_total{code="delivery_outcome_unknown"} 5)"),
            std::string::npos)
      << answer->body;
}

// A broker's refusal for good (not authorized, too large) of a message an earlier send of it,
// unanswered, may have stored (delivery_error notes it in the message and keeps the code): the
// request may have been accepted, so the answer must not say it was not. It says it may have
// been, and what a retry does: a call with an idempotency_key is made at most once, a call
// without one may be made twice (the answer names the key it was given). Status codes are the
// refusal's: 503 with Retry-After, 413 without.
TEST_F(IngestServiceTest, APermanentRefusalAfterAnUnansweredSendSaysItMayHaveBeenAccepted) {
  // As KafkaProducer's delivery_error() words a refusal of a message possibly persisted.
  auto refuse = [this](std::size_t i, std::string code, const std::string& what) {
    producer.messages.at(i).done(
        fail(std::move(code), what + " (an earlier send of it, unanswered, may have stored it)"));
  };
  auto message_of = [this] {
    return json::parse(answer->body)["error"]["message"].get<std::string>();
  };
  auto has_retry_after = [this] {
    bool found = false;
    for (auto& [k, v] : answer->headers) found |= (k == "Retry-After");
    return found;
  };

  send(signed_webhook("github", "{}"));
  refuse(0, "not_authorized", "Kafka refused access: Broker: Topic authorization failed");
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 503);
  EXPECT_EQ(error_code(), "not_authorized");
  EXPECT_TRUE(has_retry_after());
  EXPECT_NE(message_of().find("may have been accepted"), std::string::npos) << answer->body;
  EXPECT_EQ(message_of().find("not accepted"), std::string::npos) << answer->body;
  EXPECT_NE(message_of().find("delivered once"), std::string::npos) << answer->body;

  keep_writes_flowing();
  send(authorized_call(R"({"url":"http://127.0.0.1:9/x","idempotency_key":"order-9"})"));
  refuse(1, "not_authorized", "Kafka refused access: Broker: Topic authorization failed");
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 503);
  EXPECT_EQ(message_of().find("not accepted"), std::string::npos) << answer->body;
  EXPECT_NE(message_of().find("may have been accepted"), std::string::npos) << answer->body;
  EXPECT_NE(message_of().find("same idempotency_key"), std::string::npos) << answer->body;
  EXPECT_EQ(message_of().find("twice"), std::string::npos) << answer->body;

  keep_writes_flowing();
  send(authorized_call(R"({"url":"http://127.0.0.1:9/x"})"));
  refuse(2, "not_authorized", "Kafka refused access: Broker: Topic authorization failed");
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 503);
  EXPECT_EQ(message_of().find("not accepted"), std::string::npos) << answer->body;
  EXPECT_NE(message_of().find("may have been accepted"), std::string::npos) << answer->body;
  EXPECT_NE(message_of().find("twice"), std::string::npos) << answer->body;
  const std::string key = producer.messages[2].key;
  ASSERT_EQ(key.rfind("hr_", 0), 0u) << key;
  EXPECT_NE(message_of().find(key), std::string::npos) << answer->body;

  // Too large for Kafka: still 413 without Retry-After, and still not "not accepted".
  keep_writes_flowing();
  send(authorized_call(R"({"url":"http://127.0.0.1:9/x","idempotency_key":"order-10"})"));
  refuse(3, std::string(kMessageTooLargeCode), "Broker: Message size too large");
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 413);
  EXPECT_EQ(error_code(), "body_too_large");
  EXPECT_FALSE(has_retry_after());
  EXPECT_EQ(message_of().find("not accepted"), std::string::npos) << answer->body;
  EXPECT_NE(message_of().find("may have been accepted"), std::string::npos) << answer->body;
  EXPECT_NE(message_of().find("same idempotency_key"), std::string::npos) << answer->body;

  // The same refusals with no earlier send that may have stored the message: not accepted.
  keep_writes_flowing();
  send(signed_webhook("github", "{}"));
  producer.messages.at(4).done(
      fail("not_authorized", "Kafka refused access: Broker: Topic authorization failed"));
  EXPECT_EQ(answer->status, 503);
  EXPECT_NE(message_of().find("not accepted"), std::string::npos) << answer->body;
  keep_writes_flowing();
  send(signed_webhook("github", "{}"));
  producer.messages.at(5).done(
      fail(std::string(kMessageTooLargeCode), "Broker: Message size too large"));
  EXPECT_EQ(answer->status, 413);
  EXPECT_NE(message_of().find("not accepted"), std::string::npos) << answer->body;

  // Counted by their codes, as every error answer.
  Request metrics{.method = "GET", .target = "/metrics"};
  const std::string body = send(metrics)->body;
  EXPECT_NE(body.find(R"(hookrelay_ingest_errors_total{code="not_authorized"} 4)"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find(R"(hookrelay_ingest_errors_total{code="body_too_large"} 2)"),
            std::string::npos)
      << body;
}

}  // namespace
}  // namespace hookrelay

namespace hookrelay {
namespace {

// Bytes that are not UTF-8 in the path are echoed in the error as U+FFFD: the JSON body stays
// valid and the handler returns (it used to throw from json::dump and end the process).
TEST_F(IngestServiceTest, NonUtf8PathsGetAValidJsonError) {
  for (std::string target :
       {std::string("/\xff"), std::string("/webhooks/\xff\xfe"), std::string("/v1/\xc3")}) {
    Request r;
    r.method = "GET";
    r.target = target;
    auto a = send(r);
    ASSERT_TRUE(a) << target;
    EXPECT_EQ(a->status, 404);
    ASSERT_TRUE(json::accept(a->body)) << a->body;
    EXPECT_NE(a->body.find("\xef\xbf\xbd"), std::string::npos) << "U+FFFD stands for the bad byte";
  }
}

TEST_F(IngestServiceTest, LongUtf8SourceNameIsCutOnACharacterBoundary) {
  std::string name;
  for (int i = 0; i < 40; ++i) name += "\xc3\xa9";  // 80 bytes of 'é'
  Request r;
  r.target = "/webhooks/x" + name;  // 'x' shifts every character to an odd offset
  auto a = send(r);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->status, 404);
  ASSERT_TRUE(json::accept(a->body)) << a->body;
  auto message = json::parse(a->body)["error"]["message"].get<std::string>();
  EXPECT_EQ(message.find("\xef\xbf\xbd"), std::string::npos)
      << "no character was cut in two: " << message;
}

// Kafka refusing a message as too large is permanent: 413 without Retry-After, not 503.
TEST_F(IngestServiceTest, MessageTooLargeForKafkaIs413) {
  auto r = send(signed_webhook("github", "{\"big\":true}"));
  EXPECT_FALSE(r);
  ASSERT_EQ(producer.messages.size(), 1u);
  producer.messages[0].done(
      fail(std::string(kMessageTooLargeCode), "Broker: Message size too large", false));
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 413);
  EXPECT_EQ(error_code(), "body_too_large");
  for (const auto& [k, v] : answer->headers) EXPECT_NE(k, "Retry-After");
}

}  // namespace
}  // namespace hookrelay

namespace hookrelay {
namespace {

// What the HTTP server passes check_header: the request's header, its body not yet read.
Request head_of(Request r) {
  r.body.clear();
  return r;
}

// A request to `target` announcing a body of `body`'s size, as a client sends it.
Request with_body(std::string method, std::string target, std::string body = "{}") {
  Request r{.method = std::move(method), .target = std::move(target), .body = std::move(body)};
  r.headers["Content-Length"] = std::to_string(r.body.size());
  return r;
}

// The requests handle() refuses from their header alone, whatever their body, with the answer it
// gives.
struct RefusedCase {
  Request request;
  int status;
  std::string code;
};

std::vector<RefusedCase> refused_from_their_header(const Config& config) {
  std::vector<RefusedCase> cases = {
      {with_body("POST", "/webhooks/nosuch"), 404, "unknown_source"},
      {with_body("POST", "/webhooks/nosuch?x=1"), 404, "unknown_source"},
      {with_body("GET", "/webhooks/github"), 405, "method_not_allowed"},
      {with_body("PUT", "/v1/calls"), 405, "method_not_allowed"},
      {with_body("POST", "/v1/calls"), 401, "unauthorized"},
      {with_body("POST", "/elsewhere"), 404, "not_found"},
      {with_body("POST", "/v1/calls/"), 404, "not_found"},
      {with_body("POST", "/healthz"), 405, "method_not_allowed"},
      {with_body("DELETE", "/metrics"), 405, "method_not_allowed"},
      {with_body("POST", "/webhooks/github"), 401, "missing_signature"},
  };
  for (const char* auth :
       {"Bearer tok_wrong_wrong_wrong", "Basic tok_0123456789abcdef", "Bearer "}) {
    auto r = with_body("POST", "/v1/calls", R"({"url":"http://127.0.0.1:9/x"})");
    r.headers["Authorization"] = auth;
    cases.push_back({r, 401, "unauthorized"});
  }
  auto malformed = with_body("POST", "/webhooks/github");
  malformed.headers["X-Hub-Signature-256"] = "sha256=zz";
  cases.push_back({malformed, 401, "malformed_signature"});
  // standard-webhooks signs its timestamp: without webhook-timestamp nothing can be checked.
  auto untimed = with_body("POST", "/webhooks/acme");
  for (auto& [k, v] : provider_headers(config.sources.at("acme"), "{}", kNowMs / 1000, "evt_1"))
    untimed.headers[k] = v;
  untimed.headers.erase("webhook-timestamp");
  cases.push_back({untimed, 401, "missing_timestamp"});
  auto bad_timestamp = with_body("POST", "/webhooks/acme");
  for (auto& [k, v] : provider_headers(config.sources.at("acme"), "{}", kNowMs / 1000, "evt_1"))
    bad_timestamp.headers[k] = v;
  bad_timestamp.headers["webhook-timestamp"] = "soon";
  cases.push_back({bad_timestamp, 401, "malformed_signature"});
  // A chunked body is announced by its Transfer-Encoding.
  Request chunked{.target = "/webhooks/nosuch", .body = "{}"};
  chunked.headers["Transfer-Encoding"] = "chunked";
  cases.push_back({chunked, 404, "unknown_source"});
  return cases;
}

// check_header refuses what handle() refuses from the header alone, with the same answer,
// counted the same: each request goes to handle() on one service and to check_header (then
// on_rejected, as the HTTP server calls it) on another, and their metrics are compared whole.
TEST_F(IngestServiceTest, CheckHeaderRefusesWhatTheHeaderDecidesWithTheHandlersAnswerAndCount) {
  for (const auto& c : refused_from_their_header(config)) {
    const std::string what = c.request.method + " " + c.request.target;
    auto handled_registry = std::make_shared<prometheus::Registry>();
    IngestService handler(config, producer, handled_registry, [] { return kNowMs; });
    std::optional<HttpResponse> handled;
    handler.handle(c.request.view(), [&](HttpResponse r) { handled = std::move(r); });
    ASSERT_TRUE(handled) << what;
    EXPECT_EQ(handled->status, c.status) << what;
    EXPECT_EQ(json::parse(handled->body)["error"]["code"], c.code) << what;

    auto checked_registry = std::make_shared<prometheus::Registry>();
    IngestService checker(config, producer, checked_registry, [] { return kNowMs; });
    const Request head = head_of(c.request);
    auto refusal = checker.check_header(head.view());
    ASSERT_TRUE(refusal) << what << " was let through to its body";
    checker.count_rejected(refusal->status, refusal->code);
    // The server answers json_error(status, code, message) with the refusal's headers.
    const HttpResponse sent = json_error(refusal->status, refusal->code, refusal->message);
    EXPECT_EQ(refusal->status, handled->status) << what;
    EXPECT_EQ(sent.body, handled->body) << what;
    EXPECT_EQ(refusal->headers, handled->headers) << what;
    EXPECT_EQ(serialize_metrics(*checked_registry), serialize_metrics(*handled_registry)) << what;
  }
  EXPECT_TRUE(producer.messages.empty());
}

// What the body or the clock may decide goes on to handle(), and so does a request that announces
// no body (none of it is held, and answered by handle() its connection stays open). Nothing let
// through is counted.
TEST_F(IngestServiceTest, CheckHeaderLetsThroughWhatItsBodyOrTheClockMayDecide) {
  auto registry = std::make_shared<prometheus::Registry>();
  service = std::make_unique<IngestService>(config, producer, registry, [] { return kNowMs; });
  const std::string before = serialize_metrics(*registry);
  std::vector<Request> through;
  auto add = [&](Request r) {
    r.headers["Content-Length"] = std::to_string(r.body.size());
    through.push_back(std::move(r));
  };
  add(signed_webhook("github", "{\"a\":1}"));
  add(signed_webhook("acme", "{\"a\":1}"));
  auto bad = signed_webhook("github", "{\"a\":1}");
  bad.body = "{\"a\":2}";  // bad_signature: the body decides
  add(bad);
  auto stale = signed_webhook("acme", "{}");  // stale_timestamp: the clock when the body is in
  for (auto& [k, v] : provider_headers(config.sources.at("acme"), "{}", kNowMs / 1000 - 301, "e"))
    stale.headers[k] = v;
  add(stale);
  add(authorized_call(R"({"url":"http://127.0.0.1:9/x"})"));
  add(authorized_call("not json"));  // 400: the body decides
  add(with_body("POST", "/webhooks/github?trace=1", ""));
  // No body announced: no Content-Length, a Content-Length of 0, GETs and probes.
  for (Request r : {Request{.method = "GET", .target = "/webhooks/nosuch"},
                    Request{.method = "GET", .target = "/v1/calls"},
                    Request{.method = "POST", .target = "/v1/calls"},
                    Request{.method = "POST", .target = "/webhooks/github"},
                    Request{.method = "GET", .target = "/healthz"},
                    Request{.method = "GET", .target = "/readyz"},
                    Request{.method = "HEAD", .target = "/metrics"},
                    Request{.method = "POST", .target = "/elsewhere"}}) {
    through.push_back(r);
    r.headers["Content-Length"] = "0";
    through.push_back(r);
  }
  through.back().headers["Content-Length"] = "000";
  for (const Request& r : through) {
    EXPECT_FALSE(service->check_header(head_of(r).view()))
        << r.method << " " << r.target << " was refused from its header";
  }
  EXPECT_EQ(serialize_metrics(*registry), before);

  // A source a reload adds is let through at once; one it removes is refused.
  auto next = std::make_shared<Config>(config);
  next->sources["later"] = next->sources.at("github");
  next->sources["later"].name = "later";
  next->sources.erase("github");
  service->reload(next);
  auto later = with_body("POST", "/webhooks/later");
  later.headers["X-Hub-Signature-256"] = "sha256=" + std::string(64, '0');
  EXPECT_FALSE(service->check_header(head_of(later).view()));
  auto gone = service->check_header(head_of(with_body("POST", "/webhooks/github")).view());
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->code, "unknown_source");
}

// While shutting down, handle() answers a known source's webhook 503 shutting_down before its
// signature is looked at: check_header lets such a webhook through to that answer. What is
// refused before that check (an unknown source, a call without a token) is refused as before.
TEST_F(IngestServiceTest, CheckHeaderWhileShuttingDownLeavesTheSignatureToTheHandler) {
  service->begin_shutdown();
  const auto unsigned_webhook = with_body("POST", "/webhooks/github");
  EXPECT_FALSE(service->check_header(head_of(unsigned_webhook).view()));
  EXPECT_EQ(send(unsigned_webhook)->status, 503);
  EXPECT_EQ(error_code(), "shutting_down");
  for (const Request& r : {with_body("POST", "/webhooks/nosuch"), with_body("POST", "/v1/calls")}) {
    auto refusal = service->check_header(head_of(r).view());
    ASSERT_TRUE(refusal) << r.target;
    EXPECT_EQ(send(r)->status, refusal->status) << r.target;
    EXPECT_EQ(error_code(), refusal->code) << r.target;
  }
}

// The HTTP server's own refusals (413, 408, 503 over the budget, ...) are counted under endpoint
// "other"; a check_header refusal reported to on_rejected is not counted a second time.
TEST_F(IngestServiceTest, TheServersOwnRefusalsAreCountedOnceUnderOther) {
  service->count_rejected(413, "body_too_large");
  service->count_rejected(503, "request_bodies_over_budget");
  auto refusal = service->check_header(head_of(with_body("POST", "/v1/calls")).view());
  ASSERT_TRUE(refusal);
  service->count_rejected(refusal->status, refusal->code);
  auto m = send(Request{.method = "GET", .target = "/metrics"})->body;
  for (const char* line :
       {R"(hookrelay_ingest_requests_total{endpoint="other",source="-",status="413"} 1)",
        R"(hookrelay_ingest_requests_total{endpoint="other",source="-",status="503"} 1)",
        R"(hookrelay_ingest_errors_total{code="body_too_large"} 1)",
        R"(hookrelay_ingest_errors_total{code="request_bodies_over_budget"} 1)",
        R"(hookrelay_ingest_requests_total{endpoint="call",source="-",status="401"} 1)",
        R"(hookrelay_ingest_errors_total{code="unauthorized"} 1)"}) {
    EXPECT_NE(m.find(line), std::string::npos) << line << "\n" << m;
  }
  EXPECT_EQ(m.find(R"(status="401"} 2)"), std::string::npos) << m;
  EXPECT_EQ(m.find(R"(endpoint="other",source="-",status="401")"), std::string::npos) << m;
}

}  // namespace
}  // namespace hookrelay
