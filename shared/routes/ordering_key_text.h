// The text an ordered route's ordering key is stored and compared as (ordered_keys,
// ordered_waiting: a text primary key). Every reader of a key (the worker expanding a message, a
// release of parked deliveries) goes through it, so one key is one row whichever read it.
//
// Thread-safety: pure function.
#pragma once

#include <cstddef>
#include <string>

#include "shared/signing/crypto.h"
#include "shared/utf8.h"

namespace hookrelay {

// A key PostgreSQL could not store as it is (bytes that are not UTF-8, a NUL, more than a btree
// index row holds) failed every hold and wait of its deliveries, so its order was off. Such a key
// is "sha256:" and the hex SHA-256 of its bytes instead: as distinct, and any row takes it.
inline constexpr std::size_t kMaxStoredOrderingKeyBytes = 1024;

inline std::string storable_ordering_key(std::string key) {
  if (key.size() <= kMaxStoredOrderingKeyBytes && is_postgres_text(key)) return key;
  return "sha256:" + hex_encode(sha256(key));
}

}  // namespace hookrelay
