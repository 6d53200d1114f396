// The wall clock as the services use it: Unix milliseconds (Kafka headers, Postgres times,
// signature timestamps). Logic takes a clock function instead of calling this, so tests inject
// their own.
#pragma once

#include <chrono>
#include <cstdint>

namespace hookrelay {

inline int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace hookrelay
