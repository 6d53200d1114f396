// parse_retry_after on a receiver's Retry-After value, and the retry plan it feeds. Input: the
// header value, then (taken from the end, FuzzedDataProvider style) the clock and the attempt
// count.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "worker/backoff.h"

using namespace hookrelay;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  // Any clock from 1970 to 2200: what a worker's system clock can say.
  const int64_t now_ms = in.ConsumeIntegralInRange<int64_t>(0, 7'258'118'400'000);
  const int attempts = in.ConsumeIntegralInRange<int>(-2, 200);
  const int64_t age_ms = in.ConsumeIntegralInRange<int64_t>(0, 30LL * 86400 * 1000);
  const double r = in.ConsumeProbability<double>();
  const std::string header = in.ConsumeRemainingBytesAsString();

  auto delay = parse_retry_after(header, now_ms);
  if (delay) {
    fuzz::check(*delay >= 0, "negative Retry-After delay", header);
    std::string_view v(header);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    bool all_digits = !v.empty() && v.find_first_not_of("0123456789") == std::string_view::npos;
    if (all_digits && v.size() <= 15) {
      fuzz::check(*delay == std::stoll(std::string(v)) * 1000, "delta-seconds not taken as seconds",
                  header);
    }
    if (!all_digits)
      fuzz::check(v.size() == 29 && v.substr(25) == " GMT",
                  "accepted a date that is not IMF-fixdate", header);
  }

  static const RetryPolicy policy = make_retry_policy(RetryConfig{});
  auto plan = plan_retry(policy, attempts, now_ms - age_ms, now_ms, delay, [r] { return r; });
  if (plan.kind == RetryPlan::Kind::kRetry) {
    fuzz::check(plan.tier >= 0 && plan.tier < static_cast<int>(policy.schedule_seconds.size()),
                "tier out of range");
    fuzz::check(plan.due_at_ms >= now_ms, "retry due before now");
    fuzz::check(plan.due_at_ms - now_ms <= int64_t{policy.schedule_seconds[plan.tier]} * 1000,
                "retry due later than its tier's delay");
    fuzz::check(plan.reason == "backoff" || plan.reason == "retry_after", "unknown retry reason",
                plan.reason);
  } else {
    fuzz::check(plan.tier == -1 && plan.due_at_ms == now_ms,
                "dead letter with a tier or a due time");
  }
  return 0;
}
