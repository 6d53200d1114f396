#include "worker/delivery_store.h"

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
  }
  return "unknown";
}

int64_t make_lease_token(uint32_t run, uint32_t seq) {
  return static_cast<int64_t>((uint64_t{run} << 32) | seq);
}

}  // namespace hookrelay
