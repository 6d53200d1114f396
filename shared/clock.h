// The wall clock as the services use it: Unix milliseconds (Kafka headers, Postgres times,
// signature timestamps), and a steady clock for spans that must not move when the wall clock is
// stepped (how much of a lease is left). Logic takes a clock function instead of calling these,
// so tests inject their own.
#pragma once

#include <chrono>
#include <cstdint>

namespace hookrelay {

inline int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Milliseconds since an arbitrary start; never goes back.
inline int64_t steady_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace hookrelay
