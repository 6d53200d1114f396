#include "shared/delivery_store.h"

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

}  // namespace hookrelay
