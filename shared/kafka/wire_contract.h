// The wire contract between ingest, the workers and the CLI: topic names and every hr-* Kafka
// header, and the one strict parser for the numeric ones. Nothing else spells these names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hookrelay {

inline constexpr std::string_view kWebhooksTopic = "hookrelay.webhooks";
inline constexpr std::string_view kCallsTopic = "hookrelay.calls";
inline constexpr std::string_view kDlqTopic = "hookrelay.dlq";
inline constexpr std::string_view kRetryTopicPrefix = "hookrelay.retry.";
// Deliveries of suspended routes, keyed by delivery key, until a resume releases them.
inline constexpr std::string_view kParkedTopic = "hookrelay.parked";

// Every retry tier's topic, as a librdkafka subscription pattern (a regex: it starts with ^).
inline constexpr const char* kRetryTopicPattern = "^hookrelay\\.retry\\.[0-9]+$";

// Retry tier n (0-based) is "hookrelay.retry.<n>".
inline std::string retry_topic(int tier) {
  return std::string(kRetryTopicPrefix) + std::to_string(tier);
}

// Whether `topic` is a retry tier's (its messages are retries, not first copies).
inline bool is_retry_topic(std::string_view topic) {
  return topic.substr(0, kRetryTopicPrefix.size()) == kRetryTopicPrefix;
}

// Headers. Values are ASCII; times are Unix milliseconds in decimal.
namespace header {
inline constexpr std::string_view kPrefix = "hr-";  // every hookrelay header
inline constexpr std::string_view kForwardPrefix =
    "hr-fwd-";                                               // + a provider header ingest forwards
inline constexpr std::string_view kKind = "hr-kind";         // "webhook" | "call"
inline constexpr std::string_view kSource = "hr-source";     // webhook source name
inline constexpr std::string_view kEventId = "hr-event-id";  // webhook event id or call id
inline constexpr std::string_view kReceivedAt = "hr-received-at";  // ms, when ingest accepted it
inline constexpr std::string_view kContentType = "hr-content-type";
inline constexpr std::string_view kCall = "hr-call";        // call request envelope (JSON)
inline constexpr std::string_view kRoute = "hr-route";      // route name (retry/DLQ only)
inline constexpr std::string_view kAttempt = "hr-attempt";  // attempts made so far
inline constexpr std::string_view kDueAt = "hr-due-at";     // ms, earliest next attempt
inline constexpr std::string_view kFirstAttemptAt = "hr-first-attempt-at";
inline constexpr std::string_view kLastPrefix = "hr-last-";  // the last attempt's kLast* below
inline constexpr std::string_view kLastAttemptAt = "hr-last-attempt-at";
inline constexpr std::string_view kLastStatus = "hr-last-status";
inline constexpr std::string_view kLastError = "hr-last-error";
inline constexpr std::string_view kOriginTopic = "hr-origin-topic";
inline constexpr std::string_view kDeliveryKey = "hr-delivery-key";  // retry and DLQ messages
inline constexpr std::string_view kDlqReason = "hr-dlq-reason";      // why it was dead-lettered
// An ordered route's delivery: its ordering key, found when the event was first expanded and
// carried to its retry, waiting and DLQ messages (worker/key_order.h).
inline constexpr std::string_view kOrderingKey = "hr-ordering-key";
// Set by replays (`hookrelay dlq replay`, the admin API).
inline constexpr std::string_view kOriginalReceivedAt = "hr-original-received-at";
inline constexpr std::string_view kReplayedBy = "hr-replayed-by";
}  // namespace header

// Bounds of the numeric hr-* values.
inline constexpr int64_t kMaxTimestampMs = 253402300799999;  // 9999-12-31T23:59:59.999Z
inline constexpr int64_t kMaxAttemptHeader = 1000000;

// The one parser of numeric header values: decimal digits only (an optional leading '-'), no
// spaces, no sign '+', within [lo, hi]; nullopt otherwise. Header bytes come from whoever can
// write to the topic, so callers treat nullopt as a bad value to report, not as a default.
std::optional<int64_t> parse_header_int(std::string_view value, int64_t lo, int64_t hi);

// A webhook message's forwarded headers (hr-fwd-<name>), held to one rule by ingest, which writes
// them, and by the worker, which sends them: at most `max_headers` of them, of at most
// kMaxForwardedBytes of names (prefix included) and values together, each name a valid HTTP
// name (valid_header_name) and no value with CR, LF or NUL. add() takes each name without its
// prefix; problem() names the first thing broken.
inline constexpr std::size_t kMaxForwardedBytes = std::size_t{64} * 1024;
// A header value that can be sent on as it is: no CR, LF or NUL (none can split a request). What
// ingest forwards and the worker sends (forwarded headers, hr-content-type) are held to it.
inline bool forwardable_header_value(std::string_view value) {
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}
class ForwardedHeaderCheck {
 public:
  explicit ForwardedHeaderCheck(std::size_t max_headers) : max_headers_(max_headers) {}
  void add(std::string_view name, std::string_view value);
  std::optional<std::string> problem() const;

 private:
  std::size_t max_headers_;
  std::size_t count_ = 0;
  std::size_t bytes_ = 0;
  std::string invalid_;  // the first header that is not valid HTTP
};

}  // namespace hookrelay
