// Topic and Kafka header names: the wire contract between ingest, workers and the CLI.
#pragma once

#include <string>
#include <string_view>

namespace hookrelay {

inline constexpr std::string_view kWebhooksTopic = "hookrelay.webhooks";
inline constexpr std::string_view kCallsTopic = "hookrelay.calls";
inline constexpr std::string_view kDlqTopic = "hookrelay.dlq";
inline constexpr std::string_view kRetryTopicPrefix = "hookrelay.retry.";

// Retry tier n (0-based) is "hookrelay.retry.<n>".
inline std::string retry_topic(int tier) {
  return std::string(kRetryTopicPrefix) + std::to_string(tier);
}

// Headers. Values are ASCII; times are Unix milliseconds in decimal.
namespace header {
inline constexpr std::string_view kKind = "hr-kind";              // "webhook" | "call"
inline constexpr std::string_view kSource = "hr-source";          // webhook source name
inline constexpr std::string_view kEventId = "hr-event-id";       // webhook event id or call id
inline constexpr std::string_view kReceivedAt = "hr-received-at"; // ms, when ingest accepted it
inline constexpr std::string_view kContentType = "hr-content-type";
inline constexpr std::string_view kCall = "hr-call";              // call request envelope (JSON)
inline constexpr std::string_view kRoute = "hr-route";            // route name (retry/DLQ only)
inline constexpr std::string_view kAttempt = "hr-attempt";        // attempts made so far
inline constexpr std::string_view kDueAt = "hr-due-at";           // ms, earliest next attempt
inline constexpr std::string_view kFirstAttemptAt = "hr-first-attempt-at";
inline constexpr std::string_view kLastAttemptAt = "hr-last-attempt-at";
inline constexpr std::string_view kLastStatus = "hr-last-status";
inline constexpr std::string_view kLastError = "hr-last-error";
inline constexpr std::string_view kOriginTopic = "hr-origin-topic";
inline constexpr std::string_view kDeliveryKey = "hr-delivery-key";
inline constexpr std::string_view kDlqReason = "hr-dlq-reason";   // why it was dead-lettered
}  // namespace header

}  // namespace hookrelay
