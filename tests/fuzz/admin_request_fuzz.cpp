// The admin API's parsers of outside bytes on the same input: decode_cursor (a cursor decoded
// must re-encode to the same text), parse_delivery_query (query strings, with cursors and times
// inside), parse_replay_request (POST /v1/replays bodies), parse_idempotency_key (its
// Idempotency-Key header) and parse_route_control_query (route suspend/resume query strings). None
// may crash; whatever they accept must be within the documented bounds, and every text they accept
// must be text PostgreSQL takes (valid UTF-8, no NUL): the statements it goes into would fail with
// a 500.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "admin/admin_request.h"
#include "fuzz_support.h"
#include "shared/utf8.h"

using namespace hookrelay;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto c = admin::decode_cursor(in)) {
    fuzz::check(admin::encode_cursor(*c) == in, "cursor does not re-encode to itself",
                std::string(in));
    fuzz::check(!c->key.empty() && c->key.size() <= admin::kMaxKeyBytes, "cursor key out of bounds",
                c->key);
    fuzz::check(is_postgres_text(c->key), "cursor key is not text", c->key);
    fuzz::check(c->first_seen_us >= 0 && c->first_seen_us <= 253402300799999999,
                "cursor time out of bounds", std::string(in));
  }
  if (auto f = admin::parse_delivery_query(in)) {
    fuzz::check(f->limit >= 1 && f->limit <= kMaxDeliveryPage, "limit out of bounds",
                std::string(in));
    for (const std::string* t : {&f->source, &f->route, &f->state, &f->event_id}) {
      fuzz::check(is_postgres_text(*t), "query value is not text", std::string(in));
    }
    if (f->after)
      fuzz::check(is_postgres_text(f->after->key), "cursor key is not text", f->after->key);
  }
  if (auto r = admin::parse_replay_request(in)) {
    fuzz::check(r->keys.empty() != !r->filter, "neither or both of keys and filter",
                std::string(in));
    fuzz::check(r->rate >= 0 && r->rate <= 10000, "rate out of bounds", std::string(in));
    fuzz::check(r->keys.size() <= admin::kMaxReplayKeysInRequest, "too many keys", std::string(in));
    for (const auto& k : r->keys) fuzz::check(is_postgres_text(k), "key is not text", k);
    fuzz::check(is_postgres_text(r->reason), "reason is not text", r->reason);
    if (r->filter) {
      fuzz::check(is_postgres_text(r->filter->route), "route is not text", r->filter->route);
    }
  }
  if (auto k = admin::parse_idempotency_key(in)) {
    fuzz::check(*k == in, "idempotency key changed", std::string(in));
    fuzz::check(!k->empty() && k->size() <= admin::kMaxIdempotencyKeyBytes,
                "idempotency key out of bounds", std::string(in));
    for (const char c : *k) fuzz::check(c >= 0x20 && c <= 0x7E, "key not printable ASCII", *k);
  }
  for (bool suspend : {true, false}) {
    if (auto q = admin::parse_route_control_query(in, suspend)) {
      fuzz::check(q->rate >= 0 && q->rate <= admin::kMaxReleaseRate, "rate out of bounds",
                  std::string(in));
      fuzz::check(q->reason.size() <= admin::kMaxReasonBytes, "reason too long", std::string(in));
      fuzz::check(suspend || q->reason.empty(), "reason accepted on resume", std::string(in));
      fuzz::check(is_postgres_text(q->source) && is_postgres_text(q->reason),
                  "source or reason is not text", std::string(in));
    }
  }
  return 0;
}
