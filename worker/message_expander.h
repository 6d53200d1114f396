// Expands one consumed Kafka message into the deliveries it stands for.
//
//   hookrelay.webhooks  one delivery per route configured for the hr-source (none: no work)
//   hookrelay.calls     one delivery to the call's own url (hr-call envelope)
//   hookrelay.retry.N   the single delivery it carries (hr-delivery-key, hr-route, hr-attempt);
//                       its key is hr-delivery-key when present
//
// A webhook route with a `filter` gets the event only when the filter holds (worker/route_filter.h:
// headers, then the body parsed once per message and only if some route's body condition is
// evaluated); a route filtered out gets no delivery at all. Retry messages are not filtered again.
//
// Malformed messages (missing headers, unknown route) are an Error with a code used as a metric
// label; the worker sends them to the DLQ rather than dropping them.
//
// Thread-safety: pure function of its arguments.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/config/config.h"
#include "shared/kafka/wire_contract.h"
#include "shared/result.h"
#include "worker/delivery.h"

namespace hookrelay {

struct ConsumedMessage {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::shared_ptr<const std::string> value;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string key;            // the Kafka message key; "" when it has none
  int64_t timestamp_ms = -1;  // the Kafka message timestamp (Unix ms); -1 when it has none

  // Last value of a header, or nullptr.
  const std::string* header(std::string_view name) const;
  // Last value of a header as a decimal integer within [lo, hi] (parse_header_int); nullopt
  // when absent, not a number, or out of range. Header bytes come from whoever can write to the
  // topic.
  std::optional<int64_t> header_int(std::string_view name, int64_t lo, int64_t hi) const;
};

// The numeric hr-* headers the worker reads, with their upper bounds (the lower is 0).
inline constexpr std::pair<std::string_view, int64_t> kNumericHeaders[] = {
    {header::kReceivedAt, kMaxTimestampMs},
    {header::kAttempt, kMaxAttemptHeader},
    {header::kDueAt, kMaxTimestampMs},
    {header::kFirstAttemptAt, kMaxTimestampMs},
};

// Names of the numeric headers present with a value parse_header_int refuses: the caller logs
// and counts them (the message itself is malformed, see expand_message).
std::vector<std::string_view> bad_numeric_headers(const ConsumedMessage& message);

// `filtered_out`, when given, receives the routes the event was filtered out of.
Result<std::vector<Delivery>> expand_message(const ConsumedMessage& message, const Config& config,
                                             std::vector<const RouteConfig*>* filtered_out);

// As above, reporting each route filtered out to the process's filtered-route observer.
Result<std::vector<Delivery>> expand_message(const ConsumedMessage& message, const Config& config);

// Where expand_message(message, config) reports a route an event was filtered out of (the
// worker counts hookrelay_deliveries_filtered_total). Set once at start, before any expansion.
using FilteredObserver = std::function<void(std::string_view source, std::string_view route)>;
void set_filtered_observer(FilteredObserver observer);

// The idempotency key of a webhook route delivery and of a call.
// A retry that cannot be delivered: its route is no longer configured (expand_message's
// "unknown_route"), or the message is malformed but names its delivery (hr-delivery-key). The
// delivery as its headers name it (key, kind, source, route, ordering key, attempt), without a
// route, so that it is recorded dead under its own key, its dead letter carries its own identity
// (dlq list and replay find it) and, on a route that was ordered, the key it heads is released
// to what waits behind it (KeyOrder::resolved) instead of held for ever.
Delivery delivery_named_by_headers(const ConsumedMessage& message);

std::string webhook_delivery_key(std::string_view source, std::string_view event_id,
                                 std::string_view route);
std::string call_delivery_key(std::string_view idempotency_key);

}  // namespace hookrelay
