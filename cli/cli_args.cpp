#include "cli/cli_args.h"

#include <charconv>
#include <cmath>
#include <ctime>

namespace hookrelay::cli {
namespace {

Unexpected usage(std::string_view field, const std::string& message) {
  return fail("usage", std::string(field) + ": " + message);
}

// Reads exactly `n` digits at `pos`.
bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

int days_in_month(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

std::optional<int64_t> parse_iso(std::string_view s) {
  std::tm tm{};
  int year = 0, month = 0, day = 0;
  if (!digits(s, 0, 4, year) || s.size() < 10 || s[4] != '-' || !digits(s, 5, 2, month) ||
      s[7] != '-' || !digits(s, 8, 2, day)) {
    return std::nullopt;
  }
  // timegm() would take 2024-02-31 as March 2: a date that does not exist is a typo.
  if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month)) return std::nullopt;
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  int64_t millis = 0;
  int64_t offset_seconds = 0;
  std::size_t pos = 10;
  if (pos < s.size()) {
    if (s[pos] != 'T' && s[pos] != ' ') return std::nullopt;
    if (!digits(s, pos + 1, 2, tm.tm_hour) || s.size() < pos + 9 || s[pos + 3] != ':' ||
        !digits(s, pos + 4, 2, tm.tm_min) || s[pos + 6] != ':' ||
        !digits(s, pos + 7, 2, tm.tm_sec)) {
      return std::nullopt;
    }
    if (tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) return std::nullopt;
    pos += 9;
    if (pos < s.size() && s[pos] == '.') {
      int64_t scale = 100;
      ++pos;
      std::size_t start = pos;
      while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
        millis += (s[pos] - '0') * scale;
        scale /= 10;
        ++pos;
      }
      if (pos == start) return std::nullopt;
    }
    if (pos == s.size()) return std::nullopt;  // a wall-clock time needs its zone
    const bool utc = s[pos] == 'Z' && pos + 1 == s.size();
    const bool offset =
        (s[pos] == '+' || s[pos] == '-') && s.size() == pos + 6 && s[pos + 3] == ':';
    if (!utc && !offset) return std::nullopt;
    if (offset) {
      int hh = 0, mm = 0;
      if (!digits(s, pos + 1, 2, hh) || !digits(s, pos + 4, 2, mm)) return std::nullopt;
      offset_seconds = (s[pos] == '+' ? 1 : -1) * (int64_t{hh} * 3600 + int64_t{mm} * 60);
    }
  }
  return (static_cast<int64_t>(timegm(&tm)) - offset_seconds) * 1000 + millis;
}

std::optional<int64_t> parse_ago(std::string_view s) {
  if (s.size() < 2) return std::nullopt;
  int64_t unit = 0;
  switch (s.back()) {
    case 's':
      unit = 1000;
      break;
    case 'm':
      unit = int64_t{60} * 1000;
      break;
    case 'h':
      unit = int64_t{3600} * 1000;
      break;
    case 'd':
      unit = int64_t{86400} * 1000;
      break;
    default:
      return std::nullopt;
  }
  // At most ten years, whatever the unit ("315360000d" is not): bounded before multiplying, so
  // the product cannot overflow.
  constexpr int64_t kMaxMs = int64_t{3650} * 86400 * 1000;
  int64_t n = 0;
  auto body = s.substr(0, s.size() - 1);
  auto [p, ec] = std::from_chars(body.data(), body.data() + body.size(), n);
  if (ec != std::errc() || p != body.data() + body.size() || n < 0 || n > kMaxMs / unit) {
    return std::nullopt;
  }
  return n * unit;
}

}  // namespace

bool ParsedArgs::has(std::string_view name) const { return options_.find(name) != options_.end(); }

std::optional<std::string> ParsedArgs::value(std::string_view name) const {
  auto it = options_.find(name);
  if (it == options_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::string ParsedArgs::value_or(std::string_view name, std::string fallback) const {
  auto v = value(name);
  return v ? *v : std::move(fallback);
}

std::vector<std::string> ParsedArgs::values(std::string_view name) const {
  auto it = options_.find(name);
  return it == options_.end() ? std::vector<std::string>{} : it->second;
}

Result<ParsedArgs> parse_args(const std::vector<std::string>& args,
                              const std::vector<OptionSpec>& options) {
  ParsedArgs out;
  bool options_ended = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_ended || a == "-" || a.rfind('-', 0) != 0) {
      out.positionals_.push_back(a);
      continue;
    }
    if (a == "--") {
      options_ended = true;
      continue;
    }
    if (a == "-h" || a == "--help") {
      out.options_["--help"];
      continue;
    }
    auto eq = a.find('=');
    std::string name = a.substr(0, eq);
    const OptionSpec* spec = nullptr;
    for (const auto& o : options) {
      if (o.name == name) spec = &o;
    }
    if (spec == nullptr) return fail("usage", "unknown option " + name);
    auto& slot = out.options_[name];
    if (!spec->takes_value) {
      if (eq != std::string::npos) return fail("usage", name + " takes no value");
      continue;
    }
    if (eq != std::string::npos) {
      slot.push_back(a.substr(eq + 1));
    } else if (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) {
      slot.push_back(args[++i]);
    } else {
      // "--reason --dry-run" is a forgotten value, not a reason: taken as one, the switch after
      // it would be lost (a replay meant as a dry run would run). "--reason=--x" still gives one.
      return fail("usage", name + " needs a value");
    }
    // An empty path would silently mean "none given" and hide the environment's choice too.
    if (spec->non_empty && slot.back().empty()) return fail("usage", name + ": must not be empty");
  }
  return out;
}

Result<int64_t> parse_time_arg(std::string_view text, int64_t now_ms, std::string_view field) {
  if (text == "now") return now_ms;
  if (auto ago = parse_ago(text)) return now_ms - *ago;
  if (auto at = parse_iso(text)) return *at;
  return usage(field,
               "expected a time like 2024-05-01T12:00:00Z, 2024-05-01, or a duration ago "
               "like 15m, 2h, 7d; got '" +
                   std::string(text) + "'");
}

Result<int64_t> parse_duration_arg(std::string_view text, std::string_view field) {
  if (auto ms = parse_ago(text)) return *ms;
  return usage(field, "expected a duration like 90s, 15m, 2h, 7d; got '" + std::string(text) + "'");
}

Result<double> parse_rate_arg(std::string_view text, std::string_view field) {
  double per = 1;
  std::string_view number = text;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    auto unit = text.substr(slash + 1);
    if (unit == "s") {
      per = 1;
    } else if (unit == "m") {
      per = 60;
    } else {
      return usage(field, "expected N/s or N/m, got '" + std::string(text) + "'");
    }
    number = text.substr(0, slash);
  }
  double n = 0;
  auto [p, ec] = std::from_chars(number.data(), number.data() + number.size(), n);
  if (ec != std::errc() || p != number.data() + number.size() || !std::isfinite(n) || n <= 0) {
    return usage(field, "expected a positive rate like 10/s, got '" + std::string(text) + "'");
  }
  return n / per;
}

Result<int64_t> parse_int_arg(std::string_view text, int64_t min, int64_t max,
                              std::string_view field) {
  int64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || p != text.data() + text.size() || n < min || n > max) {
    return usage(field, "expected a whole number " + std::to_string(min) + ".." +
                            std::to_string(max) + ", got '" + std::string(text) + "'");
  }
  return n;
}

}  // namespace hookrelay::cli
