// How statements find deliveries and inbound_events rows by key (migrations/0014): the unique
// indexes hold a 128-bit hash of the text (the first 16 bytes of its SHA-256, as a uuid), not the
// text itself. A lookup names
// the hash, which the index serves, and compares the text as well, so it never depends on the
// hash alone. String literals, to be pasted into SQL text.
//
// PostgreSQL CPU per call over 55-character keys (bench/storage-variants/key-hash-cpu, medians of
// 7 rounds): this expression 864 ns: digest() 539, substr and hex 43, the text-to-uuid parse 310;
// md5(key)::uuid, what 0014 indexed first, 958; the built-in sha256() over the key's bytes 1,130
// (the immutable escape-decoding form) or 1,180 (convert_to, only stable). A delivered event costs
// five calls: the claim's ON CONFLICT computes each arbiter expression twice for a new row (the
// check, then the index insert), for its key and for its inbound event, and the record once.
#pragma once

// The expression deliveries_key_hash_idx indexes, of a delivery key column or text value.
#define HR_KEY_HASH(key) "encode(substr(digest(" key ", 'sha256'), 1, 16), 'hex')::uuid"
// A condition matching the row whose delivery key column `col` equals the text `value`.
#define HR_KEY_IS(col, value) HR_KEY_HASH(col) " = " HR_KEY_HASH(value) " AND " col " = " value
// The expression inbound_events_event_hash_idx indexes (a source name holds no ':').
#define HR_EVENT_HASH(source, event_id) \
  "encode(substr(digest(" source " || ':' || " event_id ", 'sha256'), 1, 16), 'hex')::uuid"
