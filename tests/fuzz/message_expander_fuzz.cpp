// expand_message on a consumed Kafka message made from the input, against a config with routes.
// A producer with write access to the topics controls every byte of it. Input:
//
//   TOPIC\nname: value\n...\n\nVALUE
//
// (hr-kind, hr-source, hr-event-id, hr-received-at, hr-call, hr-route, hr-attempt, ...). The
// Kafka key is the hr-event-id, as ingest sets it; ordered routes find their ordering key in it,
// a forwarded header or a JSON pointer into the value.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "shared/kafka/wire_contract.h"
#include "worker/message_expander.h"

using namespace hookrelay;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto parsed = fuzz::split_headed(in);
  std::string_view value = parsed.body;
  ConsumedMessage m;
  m.topic = std::string(parsed.lines[0]);
  m.partition = 3;
  m.offset = 42;
  m.value = std::make_shared<const std::string>(value);
  m.headers = std::move(parsed.headers);
  if (const auto* id = m.header(header::kEventId)) m.key = *id;  // as ingest keys webhooks

  auto out = expand_message(m, fuzz::fuzz_config());
  if (!out) {
    const auto& code = out.error().code;
    // unknown_source: a first copy of a source the config does not know (dead-lettered whole).
    fuzz::check(code == "malformed_message" || code == "unknown_route" || code == "unknown_source",
                "unexpected error code", code);
    return 0;
  }
  bool retry = m.topic.rfind(kRetryTopicPrefix, 0) == 0;
  if (retry) fuzz::check(out->size() == 1, "a retry message is one delivery");
  for (const auto& d : *out) {
    fuzz::check(!d.key.empty(), "delivery without a key");
    fuzz::check(d.kind == "webhook" || d.kind == "call", "unknown kind", d.kind);
    fuzz::check(!d.url.empty(), "delivery without a url");
    fuzz::check(d.body != nullptr && *d.body == value,
                "body is not the message value byte for byte");
    fuzz::check(d.attempt >= 1, "attempt below 1", std::to_string(d.attempt));
    fuzz::check(d.timeout_ms > 0, "timeout_ms not positive", std::to_string(d.timeout_ms));
    fuzz::check(d.max_attempts > 0, "max_attempts not positive", std::to_string(d.max_attempts));
    for (const auto& [k, v] : d.carried_headers) {
      fuzz::check(k.rfind("hr-", 0) == 0, "carried a header that is not hr-*", k);
    }
    fuzz::check(d.ordered || d.ordering_key.empty(), "an ordering key on an unordered route");
    if (!retry && !d.ordering_key.empty()) {
      bool carried = false;
      for (const auto& [k, v] : d.carried_headers)
        carried = carried || (k == header::kOrderingKey && v == d.ordering_key);
      fuzz::check(carried, "the ordering key is not carried to the retry message");
    }
  }
  return 0;
}
