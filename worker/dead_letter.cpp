#include "worker/dead_letter.h"

#include "shared/kafka/wire_contract.h"

namespace hookrelay {

bool is_dead_letter(const Decision& decision) { return decision.next == NextState::kDead; }

std::string redelivery_topic(const Decision& decision) {
  if (decision.next == NextState::kParked) return std::string(kParkedTopic);
  return is_dead_letter(decision) ? std::string(kDlqTopic) : retry_topic(decision.tier);
}

std::vector<MessageHeader> redelivery_message_headers(const Job& job) {
  auto headers = redelivery_headers(job.d, job.history);
  if (is_dead_letter(job.decision)) {
    headers.push_back({std::string(header::kDlqReason), dead_reason_name(job.decision.reason)});
  }
  return headers;
}

}  // namespace hookrelay
