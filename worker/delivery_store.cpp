#include "worker/delivery_store.h"

#include <algorithm>

namespace hookrelay {

const char* claim_status_name(ClaimStatus status) {
  switch (status) {
    case ClaimStatus::kClaimed:
      return "claimed";
    case ClaimStatus::kAlreadySucceeded:
      return "already_succeeded";
    case ClaimStatus::kAlreadyDead:
      return "already_dead";
    case ClaimStatus::kLeasedElsewhere:
      return "leased_elsewhere";
    case ClaimStatus::kSuperseded:
      return "superseded";
  }
  return "unknown";
}

Result<std::vector<ClaimStatus>> DeliveryStore::claim_and_audit(
    const std::vector<DeliveryRef>& deliveries, const std::vector<InboundEventRecord>& audit,
    const std::string& worker_id, int lease_seconds) {
  if (!audit.empty()) {
    if (auto r = record_inbound(audit); !r) return Unexpected{r.error()};
  }
  return claim(deliveries, worker_id, lease_seconds);
}

int64_t make_lease_token(uint32_t run, uint32_t seq) {
  return static_cast<int64_t>((uint64_t{run} << 32) | seq);
}

}  // namespace hookrelay
