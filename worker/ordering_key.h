// The ordering key of an event for an ordered route (RouteConfig::ordering_key): what "one key"
// is for per-key ordering across retries (worker/key_order.h).
//
// Thread-safety: pure function (a JSON pointer parses the body with a thread-local parser).
#pragma once

#include <string>

#include "shared/config/config.h"
#include "shared/routes/ordering_key_text.h"
#include "worker/message_expander.h"

namespace hookrelay {

// The message's Kafka key, the configured header's last value (names case-insensitive), or the
// JSON value at the configured pointer (a string as is; a number, true, false or null as its
// JSON text). "" when the event has none (no Kafka key, no such header, a body that is not
// JSON, a pointer that does not resolve or names an object or array): such a delivery is never
// held back, and holds nothing back. A key Postgres could not store as it is (not UTF-8, a NUL,
// over 1024 bytes) is "sha256:" and the hex SHA-256 of its bytes.
std::string ordering_key_of(const RouteConfig& route, const ConsumedMessage& message);

}  // namespace hookrelay
