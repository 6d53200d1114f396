#include "admin/admin_request.h"

#include <charconv>
#include <ctime>
#include <nlohmann/json.hpp>
#include <set>

#include "shared/signing/crypto.h"
#include "shared/utf8.h"

namespace hookrelay::admin {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Digits only, exactly `n` of them, starting at text[pos].
bool digits(std::string_view text, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > text.size()) return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    out = out * 10 + (text[i] - '0');
  }
  return true;
}

bool parse_int64(std::string_view text, int64_t& out) {
  if (text.empty() || text.size() > 19) return false;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && p == text.data() + text.size();
}

Unexpected bad_param(const std::string& field, const std::string& what) {
  return fail("bad_parameter", field + ": " + what);
}

// What a value that is not text PostgreSQL takes (shared/utf8.h) is told; the message names the
// parameter or field in front of it.
constexpr const char* kNotText = "must be UTF-8 text without NUL bytes";

// The latest first-seen time a cursor may hold: the end of 9999, as in RFC 3339 (since, until).
constexpr int64_t kMaxCursorUs = 253402300799999999;

// The reason of an nlohmann parse error ("...: syntax error while parsing value - invalid string:
// missing closing quote; last read: '...'"): the words between " - " and the first ';', which the
// parser takes from a fixed list; never the text it read.
std::string json_error_reason(std::string_view what) {
  const auto dash = what.find(" - ");
  if (dash == std::string_view::npos) return "syntax error";
  std::string_view reason = what.substr(dash + 3);
  reason = reason.substr(0, reason.find(';'));
  if (reason.empty()) return "syntax error";
  return std::string(utf8_prefix(reason, 80));
}

// An upper time bound (until): after the epoch. One at it bounds nothing that exists (no
// delivery is first seen before 1970), and the filters take 0 as "no bound"
// (DeliveryPageFilter, ReplayFilter): refused, so an explicit bound never widens to everything.
Result<int64_t> parse_until_ms(std::string_view text, const std::string& field) {
  auto ms = parse_rfc3339_ms(text, field);
  if (ms && *ms <= 0)
    return bad_param(field, "must be after 1970-01-01T00:00:00Z (nothing is first seen before it)");
  return ms;
}

}  // namespace

Result<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return fail("bad_parameter", "truncated %-escape");
      int hi = hex_value(text[i + 1]);
      int lo = hex_value(text[i + 2]);
      if (hi < 0 || lo < 0) return fail("bad_parameter", "malformed %-escape");
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

Result<std::map<std::string, std::string>> parse_query(std::string_view query,
                                                       const std::vector<std::string>& allowed) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (part.empty()) continue;
    auto eq = part.find('=');
    auto name = percent_decode(part.substr(0, eq), true);
    if (!name) return Unexpected{name.error()};
    auto value = percent_decode(
        eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1), true);
    if (!value) return fail("bad_parameter", *name + ": " + value.error().message);
    bool known = false;
    for (const auto& a : allowed) known |= a == *name;
    if (!known) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return fail("unknown_parameter",
                  "unknown query parameter '" + name->substr(0, 64) + "' (expected: " + list + ")");
    }
    if (!out.emplace(*name, std::move(*value)).second) {
      return fail("bad_parameter", *name + ": given more than once");
    }
  }
  return out;
}

Result<RouteControlQuery> parse_route_control_query(std::string_view query, bool suspend) {
  auto q = parse_query(query, suspend ? std::vector<std::string>{"source", "reason"}
                                      : std::vector<std::string>{"source", "rate"});
  if (!q) return Unexpected{q.error()};
  RouteControlQuery out;
  if (auto it = q->find("source"); it != q->end()) {
    if (it->second.empty() || it->second.size() > kMaxKeyBytes)
      return fail("bad_parameter", "source: must be 1-1024 bytes");
    if (!is_postgres_text(it->second)) return bad_param("source", kNotText);
    out.source = it->second;
  }
  if (auto it = q->find("reason"); it != q->end()) {
    if (it->second.size() > kMaxReasonBytes)
      return fail("bad_parameter", "reason: at most 500 bytes");
    if (!is_postgres_text(it->second)) return bad_param("reason", kNotText);
    out.reason = it->second;
  }
  if (auto it = q->find("rate"); it != q->end()) {
    const std::string& v = it->second;
    double rate = -1;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), rate);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size() ||
        !(rate == 0 || (rate >= kMinReplayRate && rate <= kMaxReleaseRate))) {
      // A release at a crawl would keep its place among the runner's few held replays for days.
      return fail("bad_parameter",
                  "rate: must be a number of deliveries per second: 0 (unpaced), or from 0.1 "
                  "(one every 10 s) to 10000");
    }
    out.rate = rate;
  }
  return out;
}

Result<int64_t> parse_rfc3339_ms(std::string_view t, const std::string& field) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM); 'T'/'Z' in either case (RFC 3339 section 5.6).
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  const char* shape = "must be an RFC 3339 date-time such as 2026-11-26T20:00:00Z";
  if (!digits(t, 0, 4, year) || t.size() < 20 || t[4] != '-' || !digits(t, 5, 2, month) ||
      t[7] != '-' || !digits(t, 8, 2, day) || (t[10] != 'T' && t[10] != 't' && t[10] != ' ') ||
      !digits(t, 11, 2, hour) || t[13] != ':' || !digits(t, 14, 2, minute) || t[16] != ':' ||
      !digits(t, 17, 2, second)) {
    return bad_param(field, shape);
  }
  std::size_t pos = 19;
  int64_t millis = 0;
  if (pos < t.size() && t[pos] == '.') {
    ++pos;
    std::size_t start = pos;
    while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') {
      if (pos - start < 3) millis = millis * 10 + (t[pos] - '0');
      ++pos;
    }
    if (pos == start) return bad_param(field, shape);
    for (std::size_t n = pos - start; n < 3; ++n) millis *= 10;
  }
  int offset_minutes = 0;
  if (pos < t.size() && (t[pos] == 'Z' || t[pos] == 'z')) {
    ++pos;
  } else if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) {
    int oh = 0, om = 0;
    if (!digits(t, pos + 1, 2, oh) || pos + 3 >= t.size() || t[pos + 3] != ':' ||
        !digits(t, pos + 4, 2, om) || oh > 23 || om > 59) {
      return bad_param(field, shape);
    }
    offset_minutes = (oh * 60 + om) * (t[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return bad_param(field, shape);
  }
  if (pos != t.size()) return bad_param(field, shape);
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  // February 29 of a year that has none is refused: timegm would make it March 1.
  const auto days_in = [&](int m) { return kDays[m - 1] + (m == 2 && leap ? 1 : 0); };
  if (year < 1970 || month < 1 || month > 12 || day < 1 || day > days_in(month) || hour > 23 ||
      minute > 59 || second > 60) {
    return bad_param(
        field, "is not a valid date-time at or after 1970 (" + std::string(shape).substr(8) + ")");
  }
  if (second == 60) second = 59;  // a leap second: the instant before the next minute
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const int64_t seconds = static_cast<int64_t>(timegm(&tm)) - int64_t{offset_minutes} * 60;
  // 1970-01-01T00:30:00+01:00: refused, not taken as the epoch (a bound at 0 would be no bound).
  if (seconds < 0) return bad_param(field, "is before 1970-01-01T00:00:00Z");
  return seconds * 1000 + millis;
}

std::string format_rfc3339_ms(int64_t ms) {
  auto seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

std::string encode_cursor(const DeliveryPagePosition& p) {
  std::string b64 = base64_encode("1|" + std::to_string(p.first_seen_us) + "|" + p.key);
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  for (char& c : b64) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return b64;
}

Result<DeliveryPagePosition> decode_cursor(std::string_view text) {
  const auto bad = [] {
    return fail("bad_cursor", "cursor: not a cursor this API issued (pass next_cursor as given)");
  };
  if (text.empty() || text.size() > 2048) return bad();
  std::string b64(text);
  for (char& c : b64) {
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
    else if (c == '+' || c == '/' || c == '=')
      return bad();
  }
  if (b64.size() % 4 == 1) return bad();
  while (b64.size() % 4 != 0) b64 += '=';
  auto raw = base64_decode(b64);
  if (!raw) return bad();
  std::string_view r(*raw);
  if (r.substr(0, 2) != "1|") return bad();
  r.remove_prefix(2);
  auto bar = r.find('|');
  if (bar == std::string_view::npos) return bad();
  DeliveryPagePosition p;
  // Within what since and until take, so the page's statement can compute with it.
  if (!parse_int64(r.substr(0, bar), p.first_seen_us) || p.first_seen_us < 0 ||
      p.first_seen_us > kMaxCursorUs) {
    return bad();
  }
  p.key = std::string(r.substr(bar + 1));
  if (p.key.empty() || p.key.size() > kMaxKeyBytes || !is_postgres_text(p.key)) return bad();
  // Canonical only: one cursor text per position.
  if (encode_cursor(p) != text) return bad();
  return p;
}

Result<DeliveryPageFilter> parse_delivery_query(std::string_view query) {
  auto q = parse_query(
      query, {"source", "route", "state", "event_id", "since", "until", "limit", "cursor"});
  if (!q) return Unexpected{q.error()};
  DeliveryPageFilter f;
  for (const auto& [name, value] : *q) {
    if (name == "limit") {
      int64_t limit = 0;
      if (!parse_int64(value, limit) || limit < 1 || limit > kMaxDeliveryPage) {
        return bad_param("limit",
                         "must be an integer from 1 to " + std::to_string(kMaxDeliveryPage));
      }
      f.limit = static_cast<int>(limit);
    } else if (name == "cursor") {
      auto c = decode_cursor(value);
      if (!c) return Unexpected{c.error()};
      f.after = *c;
    } else if (name == "since" || name == "until") {
      auto ms = name == "since" ? parse_rfc3339_ms(value, name) : parse_until_ms(value, name);
      if (!ms) return Unexpected{ms.error()};
      (name == "since" ? f.since_ms : f.until_ms) = *ms;
    } else {
      if (value.empty() || value.size() > kMaxKeyBytes) {
        return bad_param(name, "must be 1-" + std::to_string(kMaxKeyBytes) + " bytes");
      }
      if (!is_postgres_text(value)) return bad_param(name, kNotText);
      if (name == "state" && value != "in_flight" && value != "retrying" && value != "succeeded" &&
          value != "dead" && value != "parked") {
        return bad_param("state", "must be in_flight, retrying, succeeded, dead or parked");
      }
      (name == "source"  ? f.source
       : name == "route" ? f.route
       : name == "state" ? f.state
                         : f.event_id) = value;
    }
  }
  return f;
}

Result<std::string> parse_idempotency_key(std::optional<std::string_view> header) {
  if (!header) return std::string();
  const std::string_view key = *header;
  if (key.empty() || key.size() > kMaxIdempotencyKeyBytes) {
    return fail("bad_idempotency_key",
                "Idempotency-Key: must be 1-" + std::to_string(kMaxIdempotencyKeyBytes) +
                    " printable ASCII characters, got " + std::to_string(key.size()));
  }
  for (const char c : key) {
    if (c < 0x20 || c > 0x7E) {
      return fail("bad_idempotency_key", "Idempotency-Key: must be 1-" +
                                             std::to_string(kMaxIdempotencyKeyBytes) +
                                             " printable ASCII characters (0x20-0x7E)");
    }
  }
  return std::string(key);
}

Result<ReplayRequest> parse_replay_request(std::string_view body) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const nlohmann::json::parse_error& e) {
    // The parser's reason and where, but not the rest of its message: that quotes the whole
    // token it last read, which may be most of the body (an unterminated string of 16 MiB).
    return fail("bad_json", "body is not valid JSON: " + json_error_reason(e.what()) + " at byte " +
                                std::to_string(e.byte));
  } catch (const nlohmann::json::exception&) {
    return fail("bad_json", "body is not valid JSON");
  }
  const auto bad = [](const std::string& field, const std::string& what) {
    return fail("bad_request", field + ": " + what);
  };
  if (!j.is_object()) return bad("(body)", "must be a JSON object");
  ReplayRequest r;
  bool resend_given = false;
  for (const auto& [name, value] : j.items()) {
    if (name == "keys") {
      if (!value.is_array()) return bad("keys", "must be an array of delivery keys");
      if (value.empty() || value.size() > kMaxReplayKeysInRequest) {
        return bad("keys", "must hold 1 to " + std::to_string(kMaxReplayKeysInRequest) + " keys");
      }
      std::set<std::string> seen;
      for (std::size_t i = 0; i < value.size(); ++i) {
        const std::string f = "keys[" + std::to_string(i) + "]";
        if (!value[i].is_string()) return bad(f, "must be a string");
        auto key = value[i].get<std::string>();
        if (key.empty() || key.size() > kMaxKeyBytes)
          return bad(f, "must be 1-" + std::to_string(kMaxKeyBytes) + " bytes");
        if (!is_postgres_text(key)) return bad(f, kNotText);
        if (seen.insert(key).second) r.keys.push_back(std::move(key));
      }
    } else if (name == "filter") {
      if (!value.is_object()) return bad("filter", "must be an object");
      ReplayFilter f;
      for (const auto& [fname, fvalue] : value.items()) {
        const std::string field = "filter." + fname;
        if (fname == "route" || fname == "state" || fname == "since" || fname == "until") {
          if (!fvalue.is_string()) return bad(field, "must be a string");
          auto v = fvalue.get<std::string>();
          if (fname == "route") {
            if (v.empty() || v.size() > 64) return bad(field, "must be 1-64 bytes");
            if (!is_postgres_text(v)) return bad(field, kNotText);
            f.route = std::move(v);
          } else if (fname == "state") {
            if (v != "dead" && v != "succeeded") return bad(field, "must be dead or succeeded");
            f.state = std::move(v);
          } else {
            auto ms = fname == "since" ? parse_rfc3339_ms(v, field) : parse_until_ms(v, field);
            if (!ms) return fail("bad_request", ms.error().message);
            (fname == "since" ? f.since_ms : f.until_ms) = *ms;
          }
        } else {
          return bad(field, "unknown field (expected route, state, since, until)");
        }
      }
      if (f.state.empty()) return bad("filter.state", "is required (dead or succeeded)");
      r.filter = std::move(f);
    } else if (name == "dry_run") {
      if (!value.is_boolean()) return bad("dry_run", "must be true or false");
      r.dry_run = value.get<bool>();
    } else if (name == "resend_succeeded") {
      if (!value.is_boolean()) return bad("resend_succeeded", "must be true or false");
      r.resend_succeeded = value.get<bool>();
      resend_given = true;
    } else if (name == "rate") {
      if (!value.is_number()) return bad("rate", "must be a number of keys per second");
      r.rate = value.get<double>();
      if (!(r.rate == 0 || (r.rate >= kMinReplayRate && r.rate <= kMaxReplayRate))) {
        return bad("rate",
                   "must be 0 (unpaced) or from 0.1 (one key every 10 s, the minimum) to 10000 "
                   "keys per second");
      }
    } else if (name == "reason") {
      if (!value.is_string()) return bad("reason", "must be a string");
      r.reason = value.get<std::string>();
      if (r.reason.size() > 512) return bad("reason", "must be at most 512 bytes");
      if (!is_postgres_text(r.reason)) return bad("reason", kNotText);
    } else {
      return bad(std::string(utf8_prefix(name, 64)),
                 "unknown field (expected keys, filter, resend_succeeded, dry_run, rate, "
                 "reason)");
    }
  }
  if (r.keys.empty() == !r.filter) return bad("(body)", "give exactly one of keys or filter");
  if (resend_given && r.filter) {
    return bad("resend_succeeded",
               "only with keys (a filter's state says whether it replays or resends)");
  }
  return r;
}

}  // namespace hookrelay::admin
