// IngestService: the request handler of hookrelay-ingest. Routes, verifies, validates, produces
// and answers; no sockets here, so it is tested with a fake MessageProducer.
//
//   POST /webhooks/{source}  verify the source's signature over the raw body, produce to
//                            hookrelay.webhooks, 202 after the broker's ack
//   POST /v1/calls           bearer token, strict JSON validation, produce to hookrelay.calls
//   GET  /healthz /readyz /metrics  (/metrics on ingest.metrics_listen instead, when it is set)
//
// A 2xx is sent only from a successful delivery report. Every error answer is JSON
// {"error":{"code","message"}} and counted by code. What a request's header alone decides (an
// unknown path or source, a method its path does not take, /v1/calls without a valid token, a
// webhook without its signature headers) check_header() answers before the body is held or read.
//
// Thread-safety: handle() and check_header() run concurrently on every HTTP thread; the Responder
// may be invoked from the producer's thread; reload() from any thread.
#pragma once

#include <prometheus/registry.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "ingest/ingest_metrics.h"
#include "ingest/kafka_write_breaker.h"
#include "shared/call_request.h"
#include "shared/config/config.h"
#include "shared/http/http_server.h"
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
  // config it started with. What needs a restart (restart_only_changes: ingest.max_headers,
  // ingest.metrics_listen) stays as the service started. Any thread.
  void reload(std::shared_ptr<const Config> config);

  void handle(const HttpRequest& request, Responder respond);
  // The handler of the operations listener (ingest.metrics_listen): GET /metrics, /healthz and
  // /readyz, as handle() answers them; anything else 404 (405 for another method).
  void handle_operations(const HttpRequest& request, const Responder& respond);
  // The answer handle() would give a request from its header alone, given from the header
  // (HttpServerOptions::check_header) so that requests refused anyway never hold or wait for
  // the body budget: the same status, code, message and headers, counted as handle() counts
  // them. nullopt when the body may change the answer, for a webhook's signature while shutting
  // down (handle() answers 503 then), and for a request that announces no body (nothing of it
  // is held; handle() answers it and the connection stays open).
  std::optional<HttpRefusal> check_header(const HttpRequest& head);
  // A request the HTTP server answered without handle() (HttpServerOptions::on_rejected): counted
  // under endpoint "other", except check_header()'s refusals, counted when they were made.
  void count_rejected(int status, std::string_view code);

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
  // What a request reads, swapped whole by reload(): one atomic load per request.
  struct Snapshot {
    std::shared_ptr<const Config> config;
    CallLimits call_limits;
  };
  // An error answer, and what it is counted under.
  struct Refusal {
    std::string_view endpoint;  // "webhook" | "call" | "other"
    std::string source;         // a configured name or "-"
    HttpRefusal answer;
    bool verification = false;  // a failed signature check, also counted by source and reason
  };
  // Where a request goes, from its method, path and Authorization: what handle() and
  // check_header() both decide with.
  struct Route {
    enum class To { kWebhook, kCall, kProbe, kRefused };
    To to = To::kRefused;
    const SourceConfig* source = nullptr;  // kWebhook: in the config route() was given
    std::string_view path{};               // kProbe
    Refusal refusal{};                     // kRefused
  };
  Route route(const HttpRequest& request, const Config& config) const;
  static Route probe_route(const HttpRequest& request, std::string_view path);
  static Refusal verification_refusal(const SourceConfig& source, const Error& error);
  void count(const Refusal& refusal);
  void refuse(Refusal refusal, const Responder& respond);

  void webhook(const SourceConfig& source, const HttpRequest& request, Responder respond);
  void call(const Snapshot& snap, const HttpRequest& request, Responder respond);
  void probe(std::string_view path, const Responder& respond);
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

  static std::shared_ptr<const Snapshot> make_snapshot(std::shared_ptr<const Config> config);
  std::string retry_after() const;

  std::atomic<std::shared_ptr<const Snapshot>> snapshot_;
  // Restart-only settings, as the service started: the HTTP server counts header fields up to the
  // max_headers it was built with, and the operations listener exists or not.
  const std::size_t max_headers_;
  const bool metrics_on_own_listener_;
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
