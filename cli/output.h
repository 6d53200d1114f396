// How the CLI shows what it read: aligned text tables and detail views for people, JSON (one
// document per command, stable field names, times as RFC 3339 UTC strings or null) for scripts.
//
// Thread-safety: pure functions and plain values.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "shared/replay/dlq_reader.h"
#include "shared/store/delivery_queries.h"

namespace hookrelay::cli {

// "2024-05-01T12:00:00.123Z"; "-" for 0 (not set).
std::string format_time(int64_t unix_ms);

// Text safe to show on a terminal in one line: control characters (C0, DEL and C1, U+0080-U+009F)
// replaced by a space and bytes that are not UTF-8 by '?', so no escape sequence reaches the
// terminal; text longer than `max_chars` bytes cut to that many with "...", between two
// characters.
std::string one_line(const std::string& text, std::size_t max_chars);

class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void add_row(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  // Left-aligned columns two spaces apart; no trailing spaces.
  void print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// A progress line on a stream (stderr) at most once per interval, for long operations. Nothing
// shows during the first interval, so quick operations stay quiet; once a line was shown,
// finish() shows the final count too.
class ProgressPrinter {
 public:
  ProgressPrinter(std::ostream& out, std::function<int64_t()> now_ms, int64_t interval_ms = 1000);
  // Shows `line` if the interval has passed since the last line shown.
  void update(const std::string& line);
  // Shows `line` if progress was shown before and `line` differs from the last one.
  void finish(const std::string& line);

 private:
  std::ostream& out_;
  std::function<int64_t()> now_ms_;
  int64_t interval_ms_;
  int64_t last_ms_ = 0;
  bool started_ = false;
  std::string last_line_;
};

nlohmann::json to_json(const DeliveryRow& d);
nlohmann::json to_json(const AttemptRow& a);
nlohmann::json to_json(const ReplayRow& r);
nlohmann::json to_json(const DeliveryDetail& d);
nlohmann::json to_json(const EventDetail& e);
// A DLQ message's place, time, body size and headers (values as read: json_text makes any bytes
// valid JSON).
nlohmann::json to_json(const DlqMessage& m);

// The `dlq list` table: one line per delivery.
void print_delivery_table(std::ostream& out, const std::vector<DeliveryRow>& rows);
// A delivery with its attempts and replays.
void print_delivery_detail(std::ostream& out, const DeliveryDetail& detail);
// An inbound event and its deliveries.
void print_event_detail(std::ostream& out, const EventDetail& event);
// A DLQ message: where it is, when, its body size and one line per header.
void print_dlq_message(std::ostream& out, const DlqMessage& m);

}  // namespace hookrelay::cli
