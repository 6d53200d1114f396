// What a claim's lease leaves a call: the worker starts a delivery's call only while the lease
// still covers the whole call and the record of its result (worker/store_batcher.cpp), and the
// config check warns of route timeouts it has to cut (shared/config/config.cpp).
#pragma once

#include <algorithm>
#include <cstdint>

namespace hookrelay {

// The call starts within `send_within_ms` of the claim's first send and lasts at most
// `timeout_ms`, so it ends, with a margin (kLeaseRecordMarginMs, or a tenth of the lease if
// shorter) left to record its result, before the lease does. The window is never shorter than a
// floor (a tenth of the lease, at least 1 s, at most half the lease): a timeout too long to leave
// it is cut to what the floor and the margin leave. Without the floor a timeout just under the
// lease left a window of a few milliseconds, which the claim's own round trip used up: such a
// delivery was sent back unsent, again and again, for good.
struct LeaseWindow {
  int64_t send_within_ms = 0;
  int timeout_ms = 0;
};

inline constexpr int64_t kLeaseRecordMarginMs = 5000;

constexpr LeaseWindow lease_window(int64_t lease_ms, int timeout_ms) {
  const int64_t margin = std::min(kLeaseRecordMarginMs, lease_ms / 10);
  const int64_t floor = std::min(lease_ms / 2, std::max<int64_t>(1000, lease_ms / 10));
  if (int64_t{timeout_ms} + margin + floor <= lease_ms)
    return {lease_ms - timeout_ms - margin, timeout_ms};
  return {floor, static_cast<int>(std::max<int64_t>(1, lease_ms - floor - margin))};
}

}  // namespace hookrelay
