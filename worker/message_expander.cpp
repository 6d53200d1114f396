#include "worker/message_expander.h"

#include <algorithm>

#include "shared/ascii.h"
#include "shared/call_request.h"
#include "shared/http/http_url.h"
#include "shared/kafka/wire_contract.h"
#include "worker/ordering_key.h"
#include "worker/outbound_request.h"
#include "worker/route_filter.h"

namespace hookrelay {
namespace {

using header::kForwardPrefix;

Unexpected malformed(const ConsumedMessage& m, const std::string& what) {
  return fail("malformed_message", m.topic + "/" + std::to_string(m.partition) + "@" +
                                       std::to_string(m.offset) + ": " + what);
}

// hr-* headers that travel with a delivery into retry and DLQ messages; per-attempt ones are
// rewritten each time, so they are not carried.
bool carried(std::string_view name) {
  for (auto h : {header::kAttempt, header::kDueAt, header::kLastAttemptAt, header::kLastStatus,
                 header::kLastError, header::kFirstAttemptAt, header::kRoute, header::kDeliveryKey,
                 header::kOriginTopic}) {
    if (name == h) return false;
  }
  return name.rfind(header::kPrefix, 0) == 0;
}

// Ingest forwards what ForwardedHeaderCheck allows (wire_contract.h). A message written to the
// topic some other way is held to the same, so no receiver gets thousands of headers or a CR/LF
// that would split one. The count is held to the most ingest.max_headers can allow, not to its
// value now: a message accepted before a reload lowered it is not malformed.
// Nor does ingest forward a header that frames the request or belongs to the connection (Host,
// Content-Length, Transfer-Encoding, ...: connection_header, outbound_request.h): a message that
// carries one was written some other way, to steer the request, and is malformed. Proxy-* names
// are the exception: ingest forwards most of them, so they are only dropped (build_http_call).
// The headers hookrelay sets itself (webhook-id, webhook-signature, ...) are dropped too, not
// refused: ingest forwards a provider's own.
Result<void> check_forwarded(const ConsumedMessage& m) {
  const auto max_headers = static_cast<std::size_t>(IngestConfig::kMaxMaxHeaders);
  ForwardedHeaderCheck check(max_headers);
  for (const auto& [name, value] : m.headers) {
    if (name.rfind(kForwardPrefix, 0) != 0) continue;
    const std::string_view forwarded = std::string_view(name).substr(kForwardPrefix.size());
    if (connection_header(forwarded) && !proxy_header(forwarded)) {
      return malformed(m, "forwarded headers: " + std::string(forwarded) +
                              " is set by the HTTP client, never forwarded");
    }
    check.add(forwarded, value);
  }
  if (auto problem = check.problem()) return malformed(m, "forwarded headers: " + *problem);
  return {};
}

// What ingest takes as an event id (signature_verifier.cpp usable_event_id: 1-255 bytes of
// printable ASCII, no space; otherwise it uses the body's SHA-256 in hex; a call's is
// call_<24 hex>). It is sent as webhook-id and keys the delivery: a message written to the topic
// some other way is held to the same, so no CR/LF or other control byte splits the request.
constexpr std::size_t kMaxEventIdBytes = 255;
bool valid_event_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxEventIdBytes) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
}

void fill_webhook(Delivery& d, const ConsumedMessage& m, const RouteConfig& route) {
  d.kind = "webhook";
  d.destination = route.name;
  d.url = route.url;
  d.host_key = route.host_key;
  if (d.host_key.empty()) {  // a RouteConfig built in code rather than loaded by parse_config
    auto url = parse_http_url(route.url);
    d.host_key = url ? url->host_key() : std::string("invalid-url");
  }
  d.method = "POST";
  d.timeout_ms = route.timeout_ms;
  d.ordered = route.ordered;
  d.route = &route;
  d.message_id = d.event_id;
  // The provider's first Content-Type only (in any case): one it repeated is not forwarded.
  bool forwarded_type = false;
  for (const auto& [name, value] : m.headers) {
    if (name.rfind(kForwardPrefix, 0) != 0) continue;
    const std::string_view forwarded = std::string_view(name).substr(kForwardPrefix.size());
    if (ascii_iequals(forwarded, "content-type")) {
      if (forwarded_type) continue;
      forwarded_type = true;
    }
    d.headers.emplace_back(forwarded, value);
  }
  // Ingest writes the provider's Content-Type both as hr-content-type and among the forwarded
  // headers: it is sent once. A provider that sent none gets none.
  if (const auto* ct = m.header(header::kContentType); ct && !forwarded_type)
    d.headers.emplace_back("content-type", *ct);
}

// hr-content-type is sent as the Content-Type header: held to the rule of forwarded values (a
// header Beast parsed has no CR, LF or NUL; its length is bounded by the header block's).
Result<void> check_content_type(const ConsumedMessage& m) {
  const auto* ct = m.header(header::kContentType);
  if (ct && !forwardable_header_value(*ct))
    return malformed(m, "hr-content-type is not valid HTTP");
  return {};
}

Result<void> fill_call(Delivery& d, const ConsumedMessage& m) {
  const auto* env = m.header(header::kCall);
  if (!env) return malformed(m, "call without hr-call header");
  auto call = parse_call_envelope(*env);
  if (!call) return malformed(m, call.error().message);
  // Ingest validated the URL; a message written to the topic some other way may not be.
  auto url = parse_http_url(call->url);
  if (!url) return malformed(m, std::string(header::kCall) + " url " + url.error().message);
  d.kind = "call";
  d.destination = "call";
  d.url = call->url;
  d.host_key = url->host_key();
  d.method = call->method;
  d.headers = call->headers;
  d.timeout_ms = call->timeout_ms;
  d.max_attempts = call->max_attempts;
  d.max_age_seconds = call->max_age_seconds;
  d.message_id = call->idempotency_key;
  d.key = call_delivery_key(call->idempotency_key);
  return {};
}

}  // namespace

const std::string* ConsumedMessage::header(std::string_view name) const {
  const std::string* found = nullptr;
  for (const auto& [k, v] : headers) {
    if (k == name) found = &v;
  }
  return found;
}

std::optional<int64_t> ConsumedMessage::header_int(std::string_view name, int64_t lo,
                                                   int64_t hi) const {
  const std::string* s = header(name);
  if (!s) return std::nullopt;
  return parse_header_int(*s, lo, hi);
}

std::vector<std::string_view> bad_numeric_headers(const ConsumedMessage& m) {
  std::vector<std::string_view> bad;
  for (const auto& [name, hi] : kNumericHeaders) {
    const std::string* s = m.header(name);
    if (s && !parse_header_int(*s, 0, hi)) bad.push_back(name);
  }
  return bad;
}

std::string webhook_delivery_key(std::string_view source, std::string_view event_id,
                                 std::string_view route) {
  std::string k = "wh:";
  k.append(source).append(":").append(event_id).append(":").append(route);
  return k;
}

Delivery delivery_named_by_headers(const ConsumedMessage& m) {
  Delivery d;
  auto text = [&m](std::string_view name) {
    const std::string* v = m.header(name);
    return v ? *v : std::string();
  };
  d.kind = text(header::kKind) == "call" ? "call" : "webhook";
  d.source = text(header::kSource);
  d.event_id = text(header::kEventId);
  d.destination = text(header::kRoute);
  d.key = text(header::kDeliveryKey);
  if (d.key.empty()) d.key = webhook_delivery_key(d.source, d.event_id, d.destination);
  d.body = m.value ? m.value : std::make_shared<const std::string>();
  d.received_at_ms = m.header_int(header::kReceivedAt, 0, kMaxTimestampMs).value_or(0);
  d.origin_topic = text(header::kOriginTopic);
  if (d.origin_topic.empty())
    d.origin_topic = std::string(d.kind == "call" ? kCallsTopic : kWebhooksTopic);
  d.attempt =
      static_cast<int>(m.header_int(header::kAttempt, 0, kMaxAttemptHeader).value_or(0)) + 1;
  d.first_attempt_at_ms = m.header_int(header::kFirstAttemptAt, 0, kMaxTimestampMs).value_or(0);
  d.ordering_key = storable_ordering_key(text(header::kOrderingKey));
  d.ordered = !d.ordering_key.empty();
  for (const auto& [k, v] : m.headers) {
    if (carried(k)) d.carried_headers.emplace_back(k, v);
  }
  return d;
}

std::string call_delivery_key(std::string_view idempotency_key) {
  return "call:" + std::string(idempotency_key);
}

FilteredObserver& filtered_observer() {
  static FilteredObserver observer;
  return observer;
}

void set_filtered_observer(FilteredObserver observer) { filtered_observer() = std::move(observer); }

Result<std::vector<Delivery>> expand_message(const ConsumedMessage& m, const Config& config) {
  if (!filtered_observer()) return expand_message(m, config, nullptr);
  std::vector<const RouteConfig*> filtered;
  auto out = expand_message(m, config, &filtered);
  if (out && !filtered.empty()) {
    const std::string& source = *m.header(header::kSource);  // a webhook: its routes were filtered
    for (const auto* route : filtered) filtered_observer()(source, route->name);
  }
  return out;
}

Result<std::vector<Delivery>> expand_message(const ConsumedMessage& m, const Config& config,
                                             std::vector<const RouteConfig*>* filtered_out) {
  const auto* kind = m.header(header::kKind);
  const auto* event_id = m.header(header::kEventId);
  auto received = m.header_int(header::kReceivedAt, 0, kMaxTimestampMs);
  if (!kind || (*kind != "webhook" && *kind != "call"))
    return malformed(m, "missing or unknown hr-kind");
  if (!event_id || event_id->empty()) return malformed(m, "missing hr-event-id");
  if (!valid_event_id(*event_id))
    return malformed(m, "hr-event-id is not 1-" + std::to_string(kMaxEventIdBytes) +
                            " bytes of printable ASCII without spaces");
  if (!received) return malformed(m, "missing or bad hr-received-at");

  Delivery base;
  base.event_id = *event_id;
  base.body = m.value ? m.value : std::make_shared<const std::string>();
  base.received_at_ms = *received;
  base.max_attempts = config.retry.max_attempts;
  base.max_age_seconds = config.retry.max_age_seconds;
  for (const auto& [k, v] : m.headers) {
    if (carried(k)) base.carried_headers.emplace_back(k, v);
  }

  bool is_retry = is_retry_topic(m.topic);
  std::vector<Delivery> out;
  if (*kind == "call") {
    if (auto r = fill_call(base, m); !r) return Unexpected{r.error()};
    base.origin_topic = std::string(kCallsTopic);
    out.push_back(std::move(base));
  } else {
    const auto* source = m.header(header::kSource);
    if (!source) return malformed(m, "webhook without hr-source");
    auto forwarded = check_forwarded(m);
    if (!forwarded) return Unexpected{forwarded.error()};
    if (auto ct = check_content_type(m); !ct) return Unexpected{ct.error()};
    base.source = *source;
    base.origin_topic = std::string(kWebhooksTopic);
    auto routes = config.routes.find(*source);
    if (is_retry) {
      const auto* route_name = m.header(header::kRoute);
      if (!route_name) return malformed(m, "retry without hr-route");
      const RouteConfig* route = route_config(config, *source, *route_name);
      if (!route)
        return fail("unknown_route", "route '" + *route_name + "' of source '" + *source +
                                         "' is no longer configured");
      fill_webhook(base, m, *route);
      base.key = webhook_delivery_key(*source, *event_id, route->name);
      out.push_back(std::move(base));
    } else if (routes == config.routes.end() && !config.sources.count(*source)) {
      // Not "no route takes it": this worker's config does not know the source at all, so
      // ingest accepted it under a config this worker has not got (a rollout half done, a
      // reload refused here). Finished with no delivery it would be lost; it is dead-lettered
      // whole instead, for `hookrelay dlq replay --unknown-sources` once the config knows it.
      return fail("unknown_source",
                  "source '" + *source + "' is not in this worker's configuration (sources)");
    } else if (routes != config.routes.end()) {
      std::optional<FilterContext> filters;  // made for the first route with a filter
      static const std::string kNoBody;
      const auto& source_routes = routes->second;
      for (std::size_t i = 0; i < source_routes.size(); ++i) {
        const auto& route = source_routes[i];
        if (!route.filter.empty()) {
          if (!filters)
            filters.emplace(m.headers, kForwardPrefix,
                            m.value ? std::string_view(*m.value) : kNoBody);
          if (!filters->matches(route.filter)) {
            if (filtered_out) filtered_out->push_back(&route);
            continue;
          }
        }
        // The last route takes `base` itself: one copy fewer of its strings and headers. Only the
        // loop's last pass moves it, so no pass reads it moved.
        // NOLINTNEXTLINE(bugprone-use-after-move)
        Delivery d = i + 1 == source_routes.size() ? std::move(base) : base;
        fill_webhook(d, m, route);
        d.key = webhook_delivery_key(*source, *event_id, route.name);
        // A route ordered by the Kafka key holds nothing across retries: ingest keys each event
        // by its own id, so every event would be a key of its own, and holding it (a row of
        // ordered_keys per retrying delivery) kept nothing else in order. Its order is the
        // partition's first-attempt order (Dispatcher::enqueue). A retry copy from before this
        // still carries its key, and keeps it (below): its key may be held.
        if (route.ordered && route.ordering_key.from != OrderingKey::From::kKafkaKey) {
          d.ordering_key = ordering_key_of(route, m);
          if (!d.ordering_key.empty())
            d.carried_headers.emplace_back(std::string(header::kOrderingKey), d.ordering_key);
        }
        out.push_back(std::move(d));
      }
    }
  }
  if (is_retry) {
    // 0 is valid: a delivery bounced because another worker held its lease made no attempt.
    auto attempt = m.header_int(header::kAttempt, 0, kMaxAttemptHeader);
    if (!attempt)
      return malformed(
          m, "retry without a valid hr-attempt (0-" + std::to_string(kMaxAttemptHeader) + ")");
    // Optional, but a value that is there must be a number hookrelay could have written.
    for (auto name : {header::kDueAt, header::kFirstAttemptAt}) {
      if (m.header(name) && !m.header_int(name, 0, kMaxTimestampMs)) {
        return malformed(
            m, "bad " + std::string(name) + " (0-" + std::to_string(kMaxTimestampMs) + ")");
      }
    }
    out[0].attempt = static_cast<int>(*attempt) + 1;
    out[0].first_attempt_at_ms =
        m.header_int(header::kFirstAttemptAt, 0, kMaxTimestampMs).value_or(0);
    if (const auto* origin = m.header(header::kOriginTopic)) out[0].origin_topic = *origin;
    // The key the delivery was claimed under travels with it: read, not derived again (a key
    // derived from a changed envelope or route name would be a different delivery).
    if (const auto* key = m.header(header::kDeliveryKey); key && !key->empty()) out[0].key = *key;
    // An ordered delivery keeps the ordering key it was first expanded with, also when a reload
    // made its route unordered since: its key may still be held, with deliveries waiting behind
    // it that only its own resolution releases in turn (left to the key order's look, they went
    // out one per 10 s or more). So does a copy of a route ordered by the Kafka key written by
    // an older worker (those held their key): it resolves the key it may hold.
    if (const auto* ok = m.header(header::kOrderingKey); ok && !ok->empty()) {
      out[0].ordered = true;
      out[0].ordering_key = storable_ordering_key(*ok);
    }
  }
  return out;
}

}  // namespace hookrelay
