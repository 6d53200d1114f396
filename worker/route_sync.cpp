#include "worker/route_sync.h"

#include <chrono>

#include "shared/log.h"
#include "shared/thread_guard.h"

namespace hookrelay {

RouteSync::RouteSync(RouteStateStore& store, WorkerMetrics& metrics,
                     std::function<int64_t()> now_ms, RouteSyncOptions options)
    : store_(store), metrics_(metrics), now_ms_(std::move(now_ms)), options_(std::move(options)) {}

RouteSync::~RouteSync() { stop(); }

void RouteSync::start() {
  thread_ = start_guarded_thread("route_sync", [this] { loop(); });
}

void RouteSync::stop() {
  stop_.store(true);
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool RouteSync::suspended(const std::string& source, const std::string& route) const {
  std::lock_guard lock(mu_);
  if (suspended_.empty()) return false;
  return suspended_.count({source, route}) > 0;
}

std::optional<int64_t> RouteSync::suspension(const std::string& source,
                                             const std::string& route) const {
  std::lock_guard lock(mu_);
  auto it = suspended_.find({source, route});
  if (it == suspended_.end()) return std::nullopt;
  return it->second;
}

void RouteSync::suspend_locally(const RouteKey& route, const std::string& reason) {
  if (suspended_.emplace(route, 0).second) generation_.fetch_add(1);
  to_suspend_.emplace(route, reason);
}

bool RouteSync::attempt(const std::string& source, const std::string& route,
                        const std::optional<SuspendAfter>& rule, std::optional<bool> success,
                        int http_status, int64_t now_ms) {
  if (!success) return false;
  bool gone = false;
  {
    std::lock_guard lock(mu_);
    RouteKey key{source, route};
    rules_[key] = rule;
    activity_.record(source, route, *success, now_ms);
    SuspendCause cause = suspend_cause_of_answer(http_status);
    if (cause != SuspendCause::kNone && !suspended_.count(key)) {
      suspend_locally(key, suspend_reason(cause, 0, 0, now_ms, rule));
      metrics_.route_suspension(source, route, suspend_cause_name(cause));
      wake_ = true;
      gone = true;
    }
  }
  if (gone) {
    spdlog::warn(
        "msg=route_suspended source={} route={} cause=gone action=\"parking its deliveries\"",
        source, route);
    cv_.notify_all();
  }
  return gone;
}

bool RouteSync::sync() {
  std::vector<RouteActivity> activity;
  std::map<RouteKey, std::string> to_suspend;
  std::map<RouteKey, std::optional<SuspendAfter>> rules;
  {
    std::lock_guard lock(mu_);
    activity = activity_.take();
    to_suspend.swap(to_suspend_);
    rules = rules_;
  }
  bool ok = true;
  auto reported = store_.report(activity);
  if (!reported) {
    ok = false;
    spdlog::warn("msg=route_report_failed error={}", log_quote(reported.error().message));
    std::lock_guard lock(mu_);
    activity_.restore(std::move(activity));  // kept for the next round
  } else {
    const int64_t now = now_ms_();
    for (const auto& row : *reported) {
      RouteKey key{row.source, row.route};
      auto rule = rules.find(key);
      if (rule == rules.end()) continue;
      SuspendCause cause =
          suspend_cause_of_streak(rule->second, row.failure_streak, row.failing_since_ms, now);
      if (cause == SuspendCause::kNone || row.state == "suspended" || to_suspend.count(key))
        continue;
      to_suspend.emplace(
          key, suspend_reason(cause, row.failure_streak, row.failing_since_ms, now, rule->second));
      metrics_.route_suspension(row.source, row.route, suspend_cause_name(cause));
    }
  }
  for (auto it = to_suspend.begin(); it != to_suspend.end();) {
    const auto& [key, reason] = *it;
    auto r = store_.suspend(key.first, key.second, reason, options_.worker_id);
    if (!r) {
      ok = false;
      spdlog::warn("msg=route_suspend_failed source={} route={} error={}", key.first, key.second,
                   log_quote(r.error().message));
      ++it;
      continue;
    }
    if (*r) {
      spdlog::warn("msg=route_suspended source={} route={} reason={} by={}", key.first, key.second,
                   log_quote(reason), options_.worker_id);
    }
    it = to_suspend.erase(it);
  }
  auto rows = ok ? store_.suspended() : Result<std::vector<RouteStateRow>>(fail("skipped", ""));
  std::lock_guard lock(mu_);
  // Not yet in Postgres: stays suspended here and is tried again next round.
  for (auto& [key, reason] : to_suspend) to_suspend_.emplace(key, std::move(reason));
  if (!rows) return false;
  std::map<RouteKey, int64_t> now_suspended;
  for (const auto& row : *rows) now_suspended[{row.source, row.route}] = row.suspended_at_ms;
  for (const auto& [key, reason] : to_suspend_) now_suspended.emplace(key, 0);
  bool grew = false;
  for (const auto& [key, since] : now_suspended) {
    if (!suspended_.count(key)) grew = true;
    metrics_.route_suspended(key.first, key.second, true);
  }
  for (const auto& [key, since] : suspended_) {
    if (!now_suspended.count(key)) {
      spdlog::info("msg=route_resumed source={} route={}", key.first, key.second);
      metrics_.route_suspended(key.first, key.second, false);
    }
  }
  suspended_ = std::move(now_suspended);
  if (grew) generation_.fetch_add(1);
  return true;
}

void RouteSync::loop() {
  while (!stop_.load()) {
    sync();
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(options_.refresh_ms),
                 [this] { return wake_ || stop_.load(); });
    wake_ = false;
  }
}

}  // namespace hookrelay
