// IngestService: the request handler of hookrelay-ingest. Routes, verifies, validates, produces
// and answers; no sockets here, so it is tested with a fake MessageProducer.
//
//   POST /webhooks/{source}  verify the source's signature over the raw body, produce to
//                            hookrelay.webhooks, 202 after the broker's ack
//   POST /v1/calls           bearer token, strict JSON validation, produce to hookrelay.calls
//   GET  /healthz /readyz /metrics
//
// A 2xx is sent only from a successful delivery report. Every error answer is JSON
// {"error":{"code","message"}} and counted by code.
//
// Thread-safety: handle() runs concurrently on every HTTP thread; the Responder may be invoked
// from the producer's thread; reload() from any thread.
#pragma once

#include <prometheus/registry.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "ingest/ingest_metrics.h"
#include "ingest/kafka_write_breaker.h"
#include "shared/call_request.h"
#include "shared/config/config.h"
#include "shared/http/http_types.h"
#include "shared/kafka/message_producer.h"

namespace hookrelay {

class IngestService {
 public:
  using Clock = std::function<int64_t()>;  // Unix milliseconds

  IngestService(const Config& config, MessageProducer& producer,
                std::shared_ptr<prometheus::Registry> registry, Clock now_ms);

  // A reloaded config (sources, secrets, api_tokens, retry defaults, retry_after_seconds): new
  // requests use it from the next one on; a request already being handled finishes under the
  // config it started with. Any thread.
  void reload(std::shared_ptr<const Config> config);

  void handle(const HttpRequest& request, Responder respond);

  // New work gets 503 "shutting_down"; /readyz fails. In-flight requests still get their answer.
  void begin_shutdown() { shutting_down_.store(true); }
  // Requests past the shutting-down check (counted before it) and not answered yet. Once
  // begin_shutdown() has returned, a request not counted here is refused, so a drain that waits
  // until this is 0 misses no request that will be produced.
  int in_flight() const { return in_flight_.load(); }
  IngestMetrics& metrics() { return metrics_; }
  // Before serving: where /metrics reads the HTTP server's load (open client connections, bytes
  // of request bodies held).
  struct ServerLoad {
    int open_connections = 0;
    std::size_t buffered_body_bytes = 0;
  };
  void set_server_load(std::function<ServerLoad()> load) { server_load_ = std::move(load); }

 private:
  void webhook(std::string_view source, const HttpRequest& request, Responder respond);
  void call(const HttpRequest& request, Responder respond);
  void probe(std::string_view path, const HttpRequest& request, const Responder& respond);
  // One request counted in in_flight(); defined in ingest_service.cpp.
  class InFlight;
  // What a retry of a request whose delivery outcome is unknown does.
  enum class Retry {
    kDeduplicated,  // a webhook: delivered once, by its source and event id
    kSameKey,       // a call with the caller's idempotency_key: made at most once
    kMayRepeat,     // a call without one (its key was generated): may be made twice
  };
  // Produces, then answers 202 {"id": id} or 503, and stops counting the request.
  void produce_and_answer(InFlight counted, std::string_view endpoint, std::string source,
                          std::string_view topic, std::string id, std::string_view key,
                          std::string_view value, const std::vector<MessageHeader>& headers,
                          std::string idempotency_key, Retry retry, Responder respond);
  void answer_error(std::string_view endpoint, std::string_view source, int status,
                    std::string_view code, std::string_view message, const Responder& respond,
                    std::vector<std::pair<std::string, std::string>> headers = {});
  bool authorized(const HttpRequest& request, const Config& config, std::string& why) const;

  // What a request reads, swapped whole by reload(): one atomic load per request.
  struct Snapshot {
    std::shared_ptr<const Config> config;
    CallLimits call_limits;
  };
  static std::shared_ptr<const Snapshot> make_snapshot(std::shared_ptr<const Config> config);
  std::string retry_after() const;

  std::atomic<std::shared_ptr<const Snapshot>> snapshot_;
  MessageProducer& producer_;
  std::shared_ptr<prometheus::Registry> registry_;
  IngestMetrics metrics_;
  Clock now_ms_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<int> in_flight_{0};
  std::function<ServerLoad()> server_load_;
  KafkaWriteBreaker write_breaker_;
};

}  // namespace hookrelay
