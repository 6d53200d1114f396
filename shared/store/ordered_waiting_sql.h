// The statement that makes a delivery wait behind its ordering key (migrations/0011_key_order):
// the worker's key order (worker/key_order_store.cpp) and the release of a resumed ordered route
// (shared/store/delivery_queries.cpp) append the same rows. It takes $1 source, $2 route, $3
// ordering key, $4 delivery key, $5 topic, $6 headers (text[], name, value, ...), $7 body (hex)
// and $8 the headers' exact bytes (bytea[], the same list: migrations/0024). Readers take $8's
// column; $6's (bytes that are not UTF-8 replaced) is for workers of an earlier release, and for
// hookrelay_waiting_attempts().
#pragma once

#include <string>
#include <vector>

#include "shared/kafka/message_producer.h"
#include "shared/signing/crypto.h"
#include "shared/store/pg_array.h"

namespace hookrelay::sql {

// Appends the waiting delivery. One row per delivery: a second one (its message read again after
// a crash) would outlive the first one's release and be taken for an unreleased head. A copy with
// more attempts (hr-attempt) than the row's message replaces that message in its place: the
// older one, released, would be below the delivery's fence (migrations/0020) and skipped.
inline constexpr const char* kAppendWaiting =
    "WITH found AS (SELECT id, hookrelay_waiting_attempts(headers) AS attempts"
    "   FROM ordered_waiting WHERE source = $1 AND route = $2 AND ordering_key = $3"
    "   AND delivery_key = $4),"
    " newer AS (UPDATE ordered_waiting w SET topic = $5, headers = $6::text[],"
    "   header_bytes = $8::bytea[], body = decode($7, 'hex') FROM found f"
    "   WHERE w.id = f.id AND f.attempts < hookrelay_waiting_attempts($6::text[]) RETURNING 1)"
    " INSERT INTO ordered_waiting (source, route, ordering_key, delivery_key, topic, headers,"
    " header_bytes, body) SELECT $1, $2, $3, $4, $5, $6::text[], $8::bytea[], decode($7, 'hex')"
    " WHERE NOT EXISTS (SELECT 1 FROM found)";

// kAppendWaiting's $6: the message's headers as one text[] literal, name, value, name, value, ...
inline std::string waiting_headers(const std::vector<MessageHeader>& headers) {
  PgArrayLiteral array;
  for (const auto& h : headers) {
    array.add(h.name);
    array.add(h.value);
  }
  return std::move(array).take();
}

// kAppendWaiting's $8: the same list as one bytea[] literal, each element in bytea's hex form
// (\x...), so every byte is kept as it is.
inline std::string waiting_header_bytes(const std::vector<MessageHeader>& headers) {
  PgArrayLiteral array;
  for (const auto& h : headers) {
    array.add("\\x" + hex_encode(h.name));
    array.add("\\x" + hex_encode(h.value));
  }
  return std::move(array).take();
}

// The statement that reads a waiting row's headers back: $1 its id. One row per element, in
// order: the exact bytes in hex (NULL for a row written without them, before migrations/0024 or
// by an earlier release), then the text element (worker/key_order_store.cpp reads it).
inline constexpr const char* kWaitingHeaders =
    "SELECT encode(b, 'hex'), t FROM ordered_waiting w,"
    " unnest(w.headers, w.header_bytes) WITH ORDINALITY AS u(t, b, n) WHERE w.id = $1 ORDER BY n";

}  // namespace hookrelay::sql
