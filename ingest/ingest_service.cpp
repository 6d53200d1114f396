#include "ingest/ingest_service.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <nlohmann/json.hpp>
#include <utility>

#include "shared/ascii.h"
#include "shared/json_writer.h"
#include "shared/kafka/wire_contract.h"
#include "shared/log.h"
#include "shared/metrics.h"
#include "shared/signing/crypto.h"
#include "shared/signing/signature_verifier.h"
#include "shared/utf8.h"

namespace hookrelay {
namespace {

using json = nlohmann::json;

constexpr std::string_view kWebhooksPrefix = "/webhooks/";

// Provider headers worth passing on to receivers (X-GitHub-Event, Stripe-Signature, ...), less
// hop-by-hop and credential headers that must not leave the ingest boundary. `name` is lower
// case.
bool forwardable(std::string_view name) {
  static constexpr std::array<std::string_view, 13> kBlocked = {"host",
                                                                "content-length",
                                                                "transfer-encoding",
                                                                "connection",
                                                                "keep-alive",
                                                                "te",
                                                                "trailer",
                                                                "upgrade",
                                                                "expect",
                                                                "authorization",
                                                                "cookie",
                                                                "proxy-authorization",
                                                                "proxy-connection"};
  return name.substr(0, header::kPrefix.size()) != header::kPrefix &&
         std::find(kBlocked.begin(), kBlocked.end(), name) == kBlocked.end();
}

// {"id":<id>,"status":"accepted"[,"idempotency_key":<key>]}, written directly: this is on every
// accepted request.
std::string accepted_body(const std::string& id, const std::string& idempotency_key) {
  std::string out = "{\"id\":";
  append_json_string(out, id);
  out += R"(,"status":"accepted")";
  if (!idempotency_key.empty()) {
    out += ",\"idempotency_key\":";
    append_json_string(out, idempotency_key);
  }
  out += '}';
  return out;
}

// What check_signature_headers finds wrong with a webhook's signature headers (a stale timestamp
// depends on when the body has come, a bad signature on the body: those are the handler's).
bool signature_header_failure(std::string_view code) {
  return code == "missing_signature" || code == "malformed_signature" ||
         code == "missing_timestamp";
}

// Whether `code` is one check_header() refuses with; the HTTP server never answers with these.
bool refused_from_header(std::string_view code) {
  return code == "not_found" || code == "method_not_allowed" || code == "unknown_source" ||
         code == "unauthorized" || signature_header_failure(code);
}

// Whether a request's header announces a body, which the HTTP server holds room for from the
// header on: a Transfer-Encoding, or a Content-Length other than 0.
bool announces_body(const HttpRequest& head) {
  if (head.header("Transfer-Encoding")) return true;
  const auto length = head.header("Content-Length");
  return length && length->find_first_not_of('0') != std::string_view::npos;
}

}  // namespace

// Counts a request in in_flight() (and the gauge) from before the shutting-down check until it is
// answered. Destroyed still counting (a request refused before it was produced), it stops counting;
// release() leaves the counting to the delivery report.
class IngestService::InFlight {
 public:
  explicit InFlight(IngestService& service) : service_(&service) {
    service.in_flight_.fetch_add(1);
    service.metrics_.in_flight().Increment();
  }
  InFlight(InFlight&& other) noexcept : service_(std::exchange(other.service_, nullptr)) {}
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;
  InFlight& operator=(InFlight&&) = delete;
  ~InFlight() {
    if (service_) stop(*service_);
  }
  void release() { service_ = nullptr; }
  static void stop(IngestService& service) {
    service.metrics_.in_flight().Decrement();
    service.in_flight_.fetch_sub(1);
  }

 private:
  IngestService* service_;
};

IngestService::IngestService(const Config& config, MessageProducer& producer,
                             std::shared_ptr<prometheus::Registry> registry, Clock now_ms)
    : snapshot_(make_snapshot(std::make_shared<const Config>(config))),
      max_headers_(static_cast<std::size_t>(config.ingest.max_headers)),
      metrics_on_own_listener_(!config.ingest.metrics_listen.empty()),
      producer_(producer),
      registry_(std::move(registry)),
      metrics_(*registry_,
               [&config] {
                 std::vector<std::string> names;
                 names.reserve(config.sources.size());
                 for (const auto& [name, _] : config.sources) names.push_back(name);
                 return names;
               }()),
      now_ms_(std::move(now_ms)) {}

std::shared_ptr<const IngestService::Snapshot> IngestService::make_snapshot(
    std::shared_ptr<const Config> config) {
  auto snap = std::make_shared<Snapshot>();
  snap->call_limits.default_max_attempts = config->retry.max_attempts;
  snap->call_limits.default_max_age_seconds = config->retry.max_age_seconds;
  snap->config = std::move(config);
  return snap;
}

void IngestService::reload(std::shared_ptr<const Config> config) {
  snapshot_.store(make_snapshot(std::move(config)));
}

std::string IngestService::retry_after() const {
  return std::to_string(snapshot_.load()->config->ingest.retry_after_seconds);
}

void IngestService::handle(const HttpRequest& request, Responder respond) {
  const auto snap = snapshot_.load();  // this request's config, whatever a reload does meanwhile
  Route to = route(request, *snap->config);
  switch (to.to) {
    case Route::To::kWebhook:
      return webhook(*to.source, request, std::move(respond));
    case Route::To::kCall:
      return call(*snap, request, std::move(respond));
    case Route::To::kProbe:
      return probe(to.path, respond);
    case Route::To::kRefused:
      break;
  }
  refuse(std::move(to.refusal), respond);
}

IngestService::Route IngestService::route(const HttpRequest& request, const Config& config) const {
  std::string_view path = request.target.substr(0, request.target.find('?'));
  auto refusal = [](std::string_view endpoint, std::string source, int status,
                    std::string_view code, std::string message,
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
    return Route{.refusal = {endpoint,
                             std::move(source),
                             {status, std::string(code), std::move(message), std::move(headers)}}};
  };
  if (path.rfind(kWebhooksPrefix, 0) == 0) {
    const std::string_view name = path.substr(kWebhooksPrefix.size());
    auto it = config.sources.find(std::string(name));
    if (it == config.sources.end()) {
      return refusal("webhook", "-", 404, "unknown_source",
                     "no source named '" + std::string(utf8_prefix(name, 64)) + "' is configured");
    }
    const SourceConfig& source = it->second;
    if (request.method != "POST") {
      return refusal("webhook", source.name, 405, "method_not_allowed",
                     "webhooks are delivered with POST", {{"Allow", "POST"}});
    }
    return Route{.to = Route::To::kWebhook, .source = &source};
  }
  if (path == "/v1/calls") {
    if (request.method != "POST") {
      return refusal("call", "-", 405, "method_not_allowed", "/v1/calls accepts POST",
                     {{"Allow", "POST"}});
    }
    std::string why;
    if (!authorized(request, config, why))
      return refusal("call", "-", 401, "unauthorized", why, {{"WWW-Authenticate", "Bearer"}});
    return Route{.to = Route::To::kCall};
  }
  if (path == "/metrics" && metrics_on_own_listener_) {
    return refusal("other", "-", 404, "not_found",
                   "no such endpoint: /metrics is served on the operations listener "
                   "(ingest.metrics_listen), not on this one");
  }
  return probe_route(request, path);
}

IngestService::Route IngestService::probe_route(const HttpRequest& request, std::string_view path) {
  auto refusal = [](int status, std::string_view code, std::string message,
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
    return Route{.refusal = {"other",
                             "-",
                             {status, std::string(code), std::move(message), std::move(headers)}}};
  };
  if (path == "/healthz" || path == "/readyz" || path == "/metrics") {
    if (request.method != "GET" && request.method != "HEAD") {
      return refusal(405, "method_not_allowed", std::string(path) + " accepts GET",
                     {{"Allow", "GET, HEAD"}});
    }
    return Route{.to = Route::To::kProbe, .path = path};
  }
  return refusal(404, "not_found", "no such endpoint: " + std::string(utf8_prefix(path, 256)));
}

void IngestService::handle_operations(const HttpRequest& request, const Responder& respond) {
  Route to = probe_route(request, request.target.substr(0, request.target.find('?')));
  if (to.to == Route::To::kProbe) return probe(to.path, respond);
  refuse(std::move(to.refusal), respond);
}

std::optional<HttpRefusal> IngestService::check_header(const HttpRequest& head) {
  if (!announces_body(head)) return std::nullopt;
  const auto snap = snapshot_.load();
  Route to = route(head, *snap->config);
  std::optional<Refusal> refused;
  if (to.to == Route::To::kRefused) {
    refused = std::move(to.refusal);
  } else if (to.to == Route::To::kWebhook && !shutting_down_.load()) {
    // The signature's headers are checked before the body or the clock is looked at: these
    // failures are the answer whatever the body, and whenever it would have come.
    if (auto formed = check_signature_headers(*to.source, head.header); !formed)
      refused = verification_refusal(*to.source, formed.error());
  }
  if (!refused) return std::nullopt;
  count(*refused);
  return std::move(refused->answer);
}

void IngestService::count_rejected(int status, std::string_view code) {
  if (refused_from_header(code)) return;  // counted by check_header(), as handle() counts it
  metrics_.request("other", "-", status);
  metrics_.error(code);
}

IngestService::Refusal IngestService::verification_refusal(const SourceConfig& source,
                                                           const Error& error) {
  return {"webhook", source.name, {401, error.code, error.message, {}}, true};
}

void IngestService::count(const Refusal& refusal) {
  if (refusal.verification) metrics_.verification_failure(refusal.source, refusal.answer.code);
  metrics_.request(refusal.endpoint, refusal.source, refusal.answer.status);
  metrics_.error(refusal.answer.code);
}

void IngestService::refuse(Refusal refusal, const Responder& respond) {
  count(refusal);
  auto r = json_error(refusal.answer.status, refusal.answer.code, refusal.answer.message);
  r.headers = std::move(refusal.answer.headers);
  respond(std::move(r));
}

void IngestService::answer_error(std::string_view endpoint, std::string_view source, int status,
                                 std::string_view code, std::string_view message,
                                 const Responder& respond,
                                 std::vector<std::pair<std::string, std::string>> headers) {
  refuse({endpoint,
          std::string(source),
          {status, std::string(code), std::string(message), std::move(headers)}},
         respond);
}

void IngestService::probe(std::string_view path, const Responder& respond) {
  HttpResponse r;
  // The gauge says at every scrape what /readyz would answer, whether or not anything asked it.
  const bool ready = producer_.reachable() && !write_breaker_.open() && !shutting_down_.load();
  metrics_.ready().Set(ready ? 1 : 0);
  if (path == "/metrics") {
    metrics_.in_flight().Set(in_flight_.load());
    metrics_.kafka_outstanding().Set(producer_.outstanding());
    for (const PartitionOutstanding& p : producer_.outstanding_by_partition())
      metrics_.partition_outstanding(p.topic, p.partition, p.messages);
    if (server_load_) {
      const ServerLoad load = server_load_();
      metrics_.open_connections().Set(load.open_connections);
      metrics_.buffered_body_bytes().Set(static_cast<double>(load.buffered_body_bytes));
    }
    r.content_type = "text/plain; version=0.0.4";
    r.body = serialize_metrics(*registry_);
  } else if (path == "/healthz") {
    r.body = R"({"status":"ok"})";
  } else {
    r.status = ready ? 200 : 503;
    r.body = ready                   ? R"({"status":"ready"})"
             : shutting_down_.load() ? R"({"status":"shutting_down"})"
             : producer_.fatal()     ? R"({"status":"kafka_producer_fatal"})"
             : producer_.reachable() ? R"({"status":"kafka_refusing_writes"})"
                                     : R"({"status":"kafka_unreachable"})";
  }
  respond(std::move(r));
}

bool IngestService::authorized(const HttpRequest& request, const Config& config,
                               std::string& why) const {
  auto auth = request.header("Authorization");
  if (!auth) {
    why = "missing Authorization: Bearer <token>";
    return false;
  }
  constexpr std::string_view kBearer = "Bearer ";
  if (auth->size() <= kBearer.size() || ascii_lower(auth->substr(0, kBearer.size())) != "bearer ") {
    why = "Authorization must be 'Bearer <token>'";
    return false;
  }
  auto token = auth->substr(kBearer.size());
  bool ok = false;
  for (const auto& t : config.api_tokens) ok |= constant_time_equal(token, t);  // no early exit
  if (!ok) why = "bearer token is not valid";
  return ok;
}

void IngestService::webhook(const SourceConfig& source, const HttpRequest& request,
                            Responder respond) {
  // Counted before the check: a drain that began before it is seen here, and one that begins after
  // sees this request in flight.
  InFlight counted(*this);
  if (shutting_down_.load()) {
    return answer_error("webhook", source.name, 503, "shutting_down",
                        "ingest is shutting down; retry", respond,
                        {{"Retry-After", retry_after()}});
  }
  int64_t now = now_ms_();
  auto verified = verify_webhook(source, request.header, request.body, now / 1000);
  if (!verified) return refuse(verification_refusal(source, verified.error()), respond);
  std::vector<MessageHeader> headers;
  headers.reserve(16);
  headers.push_back({std::string(header::kKind), "webhook"});
  headers.push_back({std::string(header::kSource), source.name});
  headers.push_back({std::string(header::kEventId), verified->event_id});
  headers.push_back({std::string(header::kReceivedAt), std::to_string(now)});
  // What the worker will send on: held to the rule it checks (ForwardedHeaderCheck), so nothing
  // accepted here is refused there as malformed.
  ForwardedHeaderCheck forwarded(max_headers_);
  request.for_each_header([&headers, &forwarded](std::string_view name, std::string_view value) {
    std::string forwarded_name;
    forwarded_name.reserve(header::kForwardPrefix.size() + name.size());
    forwarded_name += header::kForwardPrefix;
    for (char c : name) forwarded_name += ascii_lower(c);
    const std::string_view n =
        std::string_view(forwarded_name).substr(header::kForwardPrefix.size());
    if (n == "content-type")
      headers.push_back({std::string(header::kContentType), std::string(value)});
    if (forwardable(n)) {
      forwarded.add(n, value);
      headers.push_back({std::move(forwarded_name), std::string(value)});
    }
  });
  if (auto problem = forwarded.problem()) {
    return answer_error("webhook", source.name, 431, "headers_not_forwardable", *problem, respond);
  }
  std::string id = verified->event_id;
  produce_and_answer(std::move(counted), "webhook", source.name, kWebhooksTopic, id, id,
                     request.body, headers, "", Retry::kDeduplicated, std::move(respond));
}

void IngestService::call(const Snapshot& snap, const HttpRequest& request, Responder respond) {
  InFlight counted(*this);  // before the check, as for webhooks
  if (shutting_down_.load()) {
    return answer_error("call", "-", 503, "shutting_down", "ingest is shutting down; retry",
                        respond, {{"Retry-After", retry_after()}});
  }
  auto parsed = parse_call_request(request.body, snap.call_limits);
  if (!parsed)
    return answer_error("call", "-", 400, parsed.error().code, parsed.error().message, respond);
  const CallRequest& c = *parsed;
  std::string id = call_id_for(c.idempotency_key);
  std::vector<MessageHeader> headers = {
      {std::string(header::kKind), "call"},
      {std::string(header::kEventId), id},
      {std::string(header::kReceivedAt), std::to_string(now_ms_())},
      {std::string(header::kCall), call_envelope(c)},
  };
  const Retry retry = c.key_generated ? Retry::kMayRepeat : Retry::kSameKey;
  produce_and_answer(std::move(counted), "call", "-", kCallsTopic, id, c.idempotency_key, c.body,
                     headers, c.idempotency_key, retry, std::move(respond));
}

void IngestService::produce_and_answer(InFlight counted, std::string_view endpoint,
                                       std::string source, std::string_view topic, std::string id,
                                       std::string_view key, std::string_view value,
                                       const std::vector<MessageHeader>& headers,
                                       std::string extra_json, Retry retry, Responder respond) {
  if (!producer_.reachable()) {
    return answer_error(endpoint, source, 503, "kafka_unavailable",
                        "Kafka is unreachable; the request was not accepted, retry later", respond,
                        {{"Retry-After", retry_after()}});
  }
  uint64_t probe = 0;  // the probe's id when this request is the breaker's probe
  const KafkaWriteBreaker::Admit admitted = write_breaker_.admit(now_ms_(), &probe);
  if (admitted == KafkaWriteBreaker::Admit::kRefuse) {
    return answer_error(endpoint, source, 503, "kafka_unavailable",
                        "Kafka did not take the last writes (see the earlier 503s' messages); the "
                        "request was not accepted, retry later",
                        respond, {{"Retry-After", retry_after()}});
  }
  auto started = std::chrono::steady_clock::now();
  OutgoingMessage m{topic, key, value, &headers};
  producer_.produce(m, [this, endpoint, source = std::move(source), topic, id = std::move(id),
                        extra = std::move(extra_json), retry, started, probe,
                        respond = std::move(respond)](const Result<ProducedAt>& r) {
    metrics_.produce_latency(
        topic, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (r) {
      write_breaker_.succeeded();
    } else if (r.error().code != kMessageTooLargeCode) {
      write_breaker_.failed(now_ms_(), probe);
    } else if (probe != 0) {
      write_breaker_.probe_inconclusive(probe);  // says nothing of the cluster: probe again
    }
    if (r) {
      metrics_.request(endpoint, source, 202);
      HttpResponse ok;
      ok.status = 202;
      ok.body = accepted_body(id, extra);
      respond(std::move(ok));
    } else {
      // Counted in hookrelay_kafka_producer_errors_total by the producer itself.
      spdlog::warn("msg=produce_failed endpoint={} source={} code={} error={}", endpoint, source,
                   r.error().code, log_quote(r.error().message));
      // A broker's refusal for good keeps its own code, whatever an earlier send of the message
      // did; delivery_error() notes in its message when one went unanswered and may have stored
      // it. Such a request may have been accepted: the answer must not say it was not.
      const bool may_be_stored = r.error().message.find(kMayHaveStoredNote) != std::string::npos;
      // What sending it again does, to an answer that says it may have been accepted.
      auto retry_advice = [&] {
        switch (retry) {
          case Retry::kDeduplicated:
            return std::string(
                "Retry: a webhook stored twice is delivered once (by source and event id)");
          case Retry::kSameKey:
            return std::string(
                "Retry with the same idempotency_key: it gives at most one successful call");
          case Retry::kMayRepeat:
            break;
        }
        return "The request had no idempotency_key, so a retry may make the call twice; to retry "
               "safely, send it again with \"idempotency_key\": \"" +
               extra + "\" (the key it was given), and give every call an idempotency_key";
      };
      if (r.error().code == kMessageTooLargeCode) {
        // Permanent: the same request can never fit, so no Retry-After.
        std::string message =
            "the request is larger than a Kafka message may be (" + r.error().message + "); ";
        if (may_be_stored) {
          message +=
              "an earlier send of it went unanswered, so it may have been accepted all the same; "
              "sent again as it is, it will be refused. ";
          switch (retry) {
            case Retry::kDeduplicated:
              message += "A webhook stored twice is delivered once (by source and event id)";
              break;
            case Retry::kSameKey:
              message +=
                  "Send a smaller body with the same idempotency_key: it gives at most one "
                  "successful call";
              break;
            case Retry::kMayRepeat:
              message +=
                  "The request had no idempotency_key: a smaller one sent instead may make the "
                  "call twice, unless it carries \"idempotency_key\": \"" +
                  extra + "\" (the key it was given)";
              break;
          }
        } else {
          message += "it was not accepted and never will be: send a smaller body";
        }
        answer_error(endpoint, source, 413, "body_too_large", message, respond);
      } else if (r.error().code == kDeliveryOutcomeUnknownCode) {
        // Sent, and not acknowledged: Kafka may have stored it. The answer says what a retry does.
        answer_error(endpoint, source, 503, r.error().code,
                     "Kafka did not confirm whether it stored the request (" + r.error().message +
                         "); it may have been accepted. " + retry_advice(),
                     respond, {{"Retry-After", retry_after()}});
      } else if (may_be_stored) {
        // Refused for good now, after an earlier send went unanswered: that one may have stored
        // it. A retry succeeds once what refused it (an ACL, say) is put right.
        answer_error(endpoint, source, 503, r.error().code,
                     "Kafka refused the request (" + r.error().message +
                         "), but an earlier send of it went unanswered, so it may have been "
                         "accepted. " +
                         retry_advice(),
                     respond, {{"Retry-After", retry_after()}});
      } else {
        answer_error(endpoint, source, 503, r.error().code,
                     "Kafka did not acknowledge the request (" + r.error().message +
                         "); it was not accepted, retry later",
                     respond, {{"Retry-After", retry_after()}});
      }
    }
    InFlight::stop(*this);
  });
  counted.release();  // counted until its delivery report (which may have run inside produce())
}

}  // namespace hookrelay
