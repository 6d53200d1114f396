#include "cli/output.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>

#include "shared/kafka/wire_contract.h"

namespace hookrelay::cli {
namespace {

using nlohmann::json;

json time_or_null(int64_t ms) { return ms == 0 ? json(nullptr) : json(format_time(ms)); }

std::string or_dash(const std::string& s) { return s.empty() ? "-" : s; }

std::string status_text(int status) { return status == 0 ? "-" : std::to_string(status); }

void field(std::ostream& out, const char* name, const std::string& value) {
  out << "  " << name;
  for (std::size_t i = std::char_traits<char>::length(name); i < 16; ++i) out << ' ';
  out << value << "\n";
}

}  // namespace

std::string format_time(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  auto secs = static_cast<std::time_t>(unix_ms / 1000);
  int64_t millis = unix_ms % 1000;
  if (millis < 0) {
    millis += 1000;
    secs -= 1;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buf;
}

namespace {

// The length of the valid UTF-8 sequence starting at text[i] (1-4), or 0 when the bytes there
// are not one (a stray continuation byte, an overlong form, a surrogate, a sequence cut short).
// Sets `code_point`.
std::size_t utf8_sequence(const std::string& text, std::size_t i, uint32_t& code_point) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b0 = byte(i);
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
  if (b0 < 0x80) {
    code_point = b0;
    return 1;
  } else if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    code_point = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    code_point = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    code_point = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (i + len > text.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const unsigned char b = byte(i + k);
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
    code_point = (code_point << 6) | (b & 0x3F);
  }
  return len;
}

}  // namespace

std::string one_line(const std::string& text, std::size_t max_chars) {
  std::string out;
  out.reserve(std::min(text.size(), max_chars));
  for (std::size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const std::size_t len = utf8_sequence(text, i, cp);
    if (len == 0) {
      // Not UTF-8: a terminal in an 8-bit mode would take 0x9B for CSI.
      out += '?';
      ++i;
      continue;
    }
    // C0, DEL and C1 (U+0080-U+009F: CSI, OSC... in two bytes) start terminal escapes.
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
      out += ' ';
    } else {
      out.append(text, i, len);
    }
    i += len;
  }
  if (out.size() > max_chars && max_chars >= 3) {
    // Cut between characters, never inside one.
    std::size_t cut = max_chars - 3;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out = out.substr(0, cut) + "...";
  }
  return out;
}

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::add_row(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

void Table::print(std::ostream& out) const {
  std::vector<std::size_t> width(headers_.size());
  for (std::size_t c = 0; c < headers_.size(); ++c) {
    width[c] = headers_[c].size();
    for (const auto& row : rows_) width[c] = std::max(width[c], row[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      s += cells[c];
      if (c + 1 < cells.size()) s.append(width[c] - cells[c].size() + 2, ' ');
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    out << s << "\n";
  };
  line(headers_);
  for (const auto& row : rows_) line(row);
}

ProgressPrinter::ProgressPrinter(std::ostream& out, std::function<int64_t()> now_ms,
                                 int64_t interval_ms)
    : out_(out), now_ms_(std::move(now_ms)), interval_ms_(interval_ms) {}

void ProgressPrinter::update(const std::string& line) {
  int64_t now = now_ms_();
  if (started_ && now - last_ms_ < interval_ms_) return;
  if (!started_) {  // the first interval starts now: nothing is shown for quick operations
    started_ = true;
    last_ms_ = now;
    return;
  }
  last_ms_ = now;
  last_line_ = line;
  out_ << line << "\n" << std::flush;
}

void ProgressPrinter::finish(const std::string& line) {
  if (last_line_.empty() || line == last_line_) return;
  last_line_ = line;
  out_ << line << "\n" << std::flush;
}

json to_json(const DeliveryRow& d) {
  return json{{"key", d.key},
              {"kind", d.kind},
              {"source", d.source},
              {"event_id", d.event_id},
              {"destination", d.destination},
              {"url", d.url},
              {"state", d.state},
              {"attempts", d.attempts},
              {"lease_owner", d.lease_owner.empty() ? json(nullptr) : json(d.lease_owner)},
              {"lease_until", time_or_null(d.lease_until_ms)},
              {"first_seen_at", time_or_null(d.first_seen_ms)},
              {"first_attempt_at", time_or_null(d.first_attempt_ms)},
              {"last_attempt_at", time_or_null(d.last_attempt_ms)},
              {"completed_at", time_or_null(d.completed_ms)},
              {"last_status", d.last_status == 0 ? json(nullptr) : json(d.last_status)},
              {"last_error", d.last_error},
              {"origin_topic", d.origin_topic}};
}

json to_json(const AttemptRow& a) {
  return json{{"attempt", a.attempt},
              {"started_at", time_or_null(a.started_ms)},
              {"duration_ms", a.duration_ms},
              {"http_status", a.http_status == 0 ? json(nullptr) : json(a.http_status)},
              {"outcome", a.outcome},
              {"error", a.error},
              {"worker_id", a.worker_id}};
}

json to_json(const ReplayRow& r) {
  return json{{"id", r.id},
              {"replayed_by", r.replayed_by},
              {"replayed_at", time_or_null(r.replayed_ms)},
              {"reason", r.reason}};
}

json to_json(const DeliveryDetail& d) {
  json out = to_json(d.delivery);
  out["attempt_history"] = json::array();
  for (const auto& a : d.attempts) out["attempt_history"].push_back(to_json(a));
  out["replays"] = json::array();
  for (const auto& r : d.replays) out["replays"].push_back(to_json(r));
  return out;
}

json to_json(const EventDetail& e) {
  json out = json::object();
  if (e.inbound) {
    const auto& i = *e.inbound;
    out["inbound"] = json{{"source", i.source},
                          {"event_id", i.event_id},
                          {"topic", i.topic},
                          {"partition", i.partition},
                          {"offset", i.offset},
                          {"received_at", time_or_null(i.received_ms)},
                          {"first_seen_at", time_or_null(i.first_seen_ms)},
                          {"body_sha256", i.body_sha256}};
  } else {
    out["inbound"] = nullptr;
  }
  out["deliveries"] = json::array();
  for (const auto& d : e.deliveries) out["deliveries"].push_back(to_json(d));
  return out;
}

void print_delivery_table(std::ostream& out, const std::vector<DeliveryRow>& rows) {
  Table t({"KEY", "SOURCE", "DESTINATION", "STATE", "ATTEMPTS", "LAST ATTEMPT", "STATUS", "ERROR"});
  for (const auto& d : rows) {
    t.add_row({d.key, or_dash(d.source), d.destination, d.state, std::to_string(d.attempts),
               format_time(d.last_attempt_ms), status_text(d.last_status),
               or_dash(one_line(d.last_error, 60))});
  }
  t.print(out);
}

void print_delivery_detail(std::ostream& out, const DeliveryDetail& detail) {
  const DeliveryRow& d = detail.delivery;
  out << "delivery " << d.key << "\n";
  field(out, "kind", d.kind);
  field(out, "source", or_dash(d.source));
  field(out, "event id", d.event_id);
  field(out, "destination", d.destination);
  field(out, "url", d.url);
  field(out, "state", d.state);
  field(out, "attempts", std::to_string(d.attempts));
  field(out, "first seen", format_time(d.first_seen_ms));
  field(out, "first attempt", format_time(d.first_attempt_ms));
  field(out, "last attempt", format_time(d.last_attempt_ms));
  field(out, "completed", format_time(d.completed_ms));
  field(out, "last status", status_text(d.last_status));
  field(out, "last error", or_dash(one_line(d.last_error, 200)));
  if (!d.lease_owner.empty()) {
    field(out, "lease", one_line(d.lease_owner, 120) + " until " + format_time(d.lease_until_ms));
  }
  field(out, "origin topic", d.origin_topic);
  out << "\nattempts (" << detail.attempts.size() << ")\n";
  if (!detail.attempts.empty()) {
    Table t({"#", "STARTED", "DURATION", "STATUS", "OUTCOME", "WORKER", "ERROR"});
    for (const auto& a : detail.attempts) {
      t.add_row({std::to_string(a.attempt), format_time(a.started_ms),
                 std::to_string(a.duration_ms) + "ms", status_text(a.http_status), a.outcome,
                 or_dash(one_line(a.worker_id, 60)), or_dash(one_line(a.error, 60))});
    }
    t.print(out);
  }
  if (!detail.replays.empty()) {
    out << "\nreplays (" << detail.replays.size() << ")\n";
    Table t({"ID", "AT", "BY", "REASON"});
    for (const auto& r : detail.replays) {
      t.add_row({std::to_string(r.id), format_time(r.replayed_ms), one_line(r.replayed_by, 60),
                 or_dash(one_line(r.reason, 80))});
    }
    t.print(out);
  }
}

void print_event_detail(std::ostream& out, const EventDetail& event) {
  if (event.inbound) {
    const auto& i = *event.inbound;
    out << "event " << i.source << "/" << i.event_id << "\n";
    field(out, "received", format_time(i.received_ms));
    field(out, "first seen", format_time(i.first_seen_ms));
    field(out, "kafka",
          i.topic + "/" + std::to_string(i.partition) + "@" + std::to_string(i.offset));
    field(out, "body sha256", i.body_sha256);
  } else {
    out << "event: no inbound record (a call, or not consumed yet)\n";
  }
  out << "\ndeliveries (" << event.deliveries.size() << ")\n";
  if (!event.deliveries.empty()) print_delivery_table(out, event.deliveries);
}

nlohmann::json to_json(const DlqMessage& m) {
  json headers = json::array();
  for (const auto& h : m.headers) headers.push_back({{"name", h.name}, {"value", h.value}});
  return {{"partition", m.partition},
          {"offset", m.offset},
          {"timestamp", time_or_null(m.timestamp_ms)},
          {"body_bytes", m.value.size()},
          {"headers", headers}};
}

void print_dlq_message(std::ostream& out, const DlqMessage& m) {
  out << "dlq message " << kDlqTopic << "/" << m.partition << "@" << m.offset << " at "
      << format_time(m.timestamp_ms) << ", " << m.value.size() << " body bytes\n";
  // Names come from whoever wrote to the topic, like values: no control bytes reach the terminal.
  for (const auto& h : m.headers)
    out << "  " << one_line(h.name, 200) << ": " << one_line(h.value, 200) << "\n";
}

}  // namespace hookrelay::cli
