// What `hookrelay dlq list|show` prints, text and --json, for a dead letter whose bytes came
// from outside: header names and values (hr-last-error holds a receiver's answer; hr-fwd-* a
// provider's headers), the key and the value. Input: KEY\nname: value\n...\n\nVALUE. The same
// bytes fill a Postgres delivery record, as the worker would have written them.
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "cli/output.h"
#include "fuzz_support.h"
#include "shared/json_writer.h"
#include "shared/replay/dlq_reader.h"

using namespace hookrelay;

namespace {

int64_t number(std::string_view s) {
  int64_t v = 0;
  (void)std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

void check_json(const nlohmann::json& j, const char* what) {
  std::string text = json_text(j, 2);
  fuzz::check(nlohmann::json::accept(text), what, text);
  fuzz::check(fuzz::valid_utf8(text), what, text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto parsed = fuzz::split_headed(in);
  DlqMessage m;
  m.key = std::string(parsed.lines[0]);
  m.value = std::string(parsed.body);
  m.partition = static_cast<int32_t>(size % 12);
  m.offset = static_cast<int64_t>(size) * 1000;
  for (auto& [name, v] : parsed.headers) m.headers.push_back({std::move(name), std::move(v)});
  auto h = [&](std::string_view name) {
    const std::string* v = m.header(name);
    return v ? *v : std::string();
  };
  m.timestamp_ms = number(h("hr-last-attempt-at"));
  (void)m.delivery_key();

  // The delivery as Postgres holds it: the same outside bytes in every text column.
  DeliveryDetail d;
  d.delivery.key = m.delivery_key();
  d.delivery.kind = h("hr-kind");
  d.delivery.source = h("hr-source");
  d.delivery.event_id = h("hr-event-id");
  d.delivery.destination = h("hr-route");
  d.delivery.url = m.key;
  d.delivery.state = "dead";
  d.delivery.attempts = static_cast<int>(number(h("hr-attempt")) & 0x7fffffff);
  d.delivery.lease_owner = h("hr-fwd-x-worker");
  d.delivery.first_seen_ms = number(h("hr-received-at"));
  d.delivery.first_attempt_ms = number(h("hr-first-attempt-at"));
  d.delivery.last_attempt_ms = m.timestamp_ms;
  d.delivery.completed_ms = -m.timestamp_ms;
  d.delivery.last_status = static_cast<int>(number(h("hr-last-status")) % 1000);
  d.delivery.last_error = h("hr-last-error");
  d.delivery.origin_topic = h("hr-origin-topic");
  for (const auto& header : m.headers) {
    d.attempts.push_back({1, number(header.value), static_cast<int>(header.name.size()), 500,
                          "retryable", header.value, header.name});
  }
  d.replays.push_back({1, m.value, number(m.value), m.value});

  std::ostringstream text;
  cli::print_delivery_table(text, {d.delivery});
  cli::print_delivery_detail(text, d);
  cli::print_dlq_message(text, m);
  for (const auto& header : m.headers) {
    std::string line = cli::one_line(header.value, 200);
    fuzz::check(line.size() <= std::max<std::size_t>(header.value.size(), 200),
                "one_line grew the text");
    fuzz::check(line.find('\n') == std::string::npos && line.find('\r') == std::string::npos,
                "one_line left a line break", line);
  }

  check_json(cli::to_json(d), "dlq show --json is not valid JSON");
  check_json(cli::to_json(d.delivery), "dlq list --json is not valid JSON");
  check_json(cli::to_json(m), "dlq show --message --json is not valid JSON");
  return 0;
}
