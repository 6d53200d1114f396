#include "worker/backoff.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <limits>
#include <utility>

namespace hookrelay {
namespace {

constexpr int64_t kMsPerSecond = 1000;

RetryPlan dead_letter(int64_t now_ms, std::string reason, RetryPlan::Why why) {
  return RetryPlan{RetryPlan::Kind::kDeadLetter, -1, now_ms, std::move(reason), why};
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Parses exactly s.size() decimal digits.
std::optional<int64_t> digits(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

// Index of `name` in `names`, or -1.
template <std::size_t N>
int index_of(const std::array<std::string_view, N>& names, std::string_view name) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == name) return static_cast<int>(i);
  }
  return -1;
}

// IMF-fixdate, RFC 9110 section 5.6.7: "Sun, 06 Nov 1994 08:49:37 GMT". Returns Unix ms.
std::optional<int64_t> parse_imf_fixdate(std::string_view s) {
  static constexpr std::array<std::string_view, 7> kDays = {"Mon", "Tue", "Wed", "Thu",
                                                            "Fri", "Sat", "Sun"};
  static constexpr std::array<std::string_view, 12> kMonths = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  // Fixed layout: positions of the separators and fields.
  if (s.size() != 29 || s.substr(3, 2) != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
      s[19] != ':' || s[22] != ':' || s.substr(25) != " GMT") {
    return std::nullopt;
  }
  if (index_of(kDays, s.substr(0, 3)) < 0) return std::nullopt;
  int month = index_of(kMonths, s.substr(8, 3));
  auto day = digits(s.substr(5, 2));
  auto year = digits(s.substr(12, 4));
  auto hour = digits(s.substr(17, 2));
  auto minute = digits(s.substr(20, 2));
  auto second = digits(s.substr(23, 2));
  if (month < 0 || !day || !year || !hour || !minute || !second) return std::nullopt;
  if (*hour > 23 || *minute > 59 || *second > 60) return std::nullopt;  // 60: leap second
  std::chrono::year_month_day ymd{std::chrono::year{static_cast<int>(*year)},
                                  std::chrono::month{static_cast<unsigned>(month + 1)},
                                  std::chrono::day{static_cast<unsigned>(*day)}};
  if (!ymd.ok()) return std::nullopt;
  int64_t days = std::chrono::sys_days{ymd}.time_since_epoch().count();
  return ((days * 24 + *hour) * 60 + *minute) * 60 * kMsPerSecond + *second * kMsPerSecond;
}

}  // namespace

RetryPolicy make_retry_policy(const RetryConfig& config) {
  return RetryPolicy{config.schedule_seconds, config.max_attempts, config.max_age_seconds, {}};
}

std::optional<RetryPolicy> route_retry_policy(const RetryPolicy& global, const RouteConfig* route) {
  if (!route || !route->retry) return std::nullopt;
  RetryPolicy p = make_retry_policy(*route->retry);
  p.tier_seconds = global.tier_seconds.empty() ? global.schedule_seconds : global.tier_seconds;
  return p;
}

int tier_for_delay(const RetryPolicy& policy, int64_t delay_ms) {
  const std::vector<int>& tiers =
      policy.tier_seconds.empty() ? policy.schedule_seconds : policy.tier_seconds;
  if (tiers.empty()) return -1;
  std::size_t tier = 0;
  while (tier + 1 < tiers.size() && int64_t{tiers[tier]} * kMsPerSecond < delay_ms) ++tier;
  return static_cast<int>(tier);
}

RetryPlan plan_retry(const RetryPolicy& policy, int attempts_made, int64_t first_received_ms,
                     int64_t now_ms, std::optional<int64_t> retry_after_ms,
                     const std::function<double()>& rand01) {
  if (policy.schedule_seconds.empty())
    return dead_letter(now_ms, "no_schedule", RetryPlan::Why::kNoSchedule);
  attempts_made = std::max(attempts_made, 1);
  if (attempts_made >= policy.max_attempts)
    return dead_letter(now_ms, "max_attempts", RetryPlan::Why::kMaxAttempts);

  const std::vector<int>& tiers = policy.schedule_seconds;
  const std::size_t last = tiers.size() - 1;
  const int64_t ceiling_ms =
      int64_t{tiers[std::min(static_cast<std::size_t>(attempts_made - 1), last)]} * kMsPerSecond;
  // Clamp a misbehaving source so the delay stays within [0, ceiling).
  const double r = std::clamp(rand01(), 0.0, std::nextafter(1.0, 0.0));
  auto delay_ms = static_cast<int64_t>(std::floor(r * static_cast<double>(ceiling_ms)));
  std::string reason = "backoff";
  RetryPlan::Why why = RetryPlan::Why::kBackoff;
  if (retry_after_ms) {
    const int64_t asked =
        std::clamp(*retry_after_ms, int64_t{0}, int64_t{tiers[last]} * kMsPerSecond);
    if (asked > delay_ms) {
      delay_ms = asked;
      reason = "retry_after";
      why = RetryPlan::Why::kRetryAfter;
    }
  }

  const int64_t deadline_ms = first_received_ms + int64_t{policy.max_age_seconds} * kMsPerSecond;
  if (now_ms + delay_ms > deadline_ms)
    return dead_letter(now_ms, "max_age", RetryPlan::Why::kMaxAge);

  // The smallest tier whose delay covers ours; the last one always does, since neither the
  // jittered delay nor Retry-After exceeds the schedule's last delay, and config keeps a route's
  // schedule within the tier topics' longest delay.
  return RetryPlan{RetryPlan::Kind::kRetry, tier_for_delay(policy, delay_ms), now_ms + delay_ms,
                   std::move(reason), why};
}

std::optional<int64_t> parse_retry_after(std::string_view header, int64_t now_ms) {
  std::string_view v = trim(header);
  if (v.empty()) return std::nullopt;
  if (is_digit(v.front())) {
    auto seconds = digits(v);
    if (!seconds || *seconds > std::numeric_limits<int64_t>::max() / kMsPerSecond) {
      return std::nullopt;
    }
    return *seconds * kMsPerSecond;
  }
  auto at_ms = parse_imf_fixdate(v);
  if (!at_ms) return std::nullopt;
  return std::max<int64_t>(0, *at_ms - now_ms);
}

}  // namespace hookrelay
