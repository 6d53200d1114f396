#include "shared/routes/route_control.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>
#include <utility>

namespace hookrelay {
namespace {

RouteView view_of(const std::string& source, const RouteConfig& r) {
  RouteView v;
  v.source = source;
  v.name = r.name;
  v.url = r.url;
  v.suspend_after = r.suspend_after;
  v.destination.host = r.host_key;
  v.state.source = source;
  v.state.route = r.name;
  return v;
}

// A route the config no longer has, as Postgres remembers it.
RouteView unconfigured_view(RouteStateRow row) {
  RouteView v;
  v.source = row.source;
  v.name = row.route;
  v.configured = false;
  v.state = std::move(row);
  return v;
}

// The one route found by name, or "ambiguous_route" naming the sources that have one.
Result<RouteView> only_route(std::vector<RouteView> found, const std::string& name,
                             const char* how) {
  if (found.size() > 1) {
    std::string sources;
    for (const auto& v : found) sources += (sources.empty() ? "" : ", ") + v.source;
    return fail("ambiguous_route", "route name '" + name + "' is " + how + " several sources (" +
                                       sources + "): name the source too");
  }
  return std::move(found.front());
}

// The configured route, without its state.
Result<RouteView> configured_route(const Config& config, const std::string& name,
                                   const std::string& source) {
  std::vector<RouteView> found;
  for (const auto& [src, routes] : config.routes) {
    if (!source.empty() && src != source) continue;
    for (const auto& r : routes) {
      if (r.name == name) found.push_back(view_of(src, r));
    }
  }
  if (found.empty()) {
    return fail("route_not_found",
                source.empty() ? "no configured route named '" + name + "'"
                               : "source '" + source + "' has no route named '" + name + "'");
  }
  return only_route(std::move(found), name, "used by");
}

// A route the config no longer has but Postgres remembers (suspended, or with deliveries parked
// before it was removed or renamed), found as configured_route finds one.
Result<RouteView> remembered_route(RouteStates& states, const std::string& name,
                                   const std::string& source, const Error& not_configured) {
  auto rows = states.all();
  if (!rows) return Unexpected{rows.error()};
  std::vector<RouteView> found;
  for (auto& row : *rows) {
    if (row.route != name || (!source.empty() && row.source != source)) continue;
    found.push_back(unconfigured_view(std::move(row)));
  }
  if (found.empty()) return Unexpected{not_configured};
  return only_route(std::move(found), name, "remembered for");
}

int circuit_rank(const std::string& circuit) {
  if (circuit == "open") return 2;
  if (circuit == "half_open") return 1;
  return 0;
}

Result<RouteView> with_state(RouteView view, const Config& config, RouteStates& states) {
  auto row = states.get(view.source, view.name);
  if (row) {
    view.state = std::move(*row);
  } else if (row.error().code != "not_found") {
    return Unexpected{row.error()};
  }
  auto hosts = states.host_states();
  if (!hosts) return Unexpected{hosts.error()};
  view.destination =
      destination_of(view.destination.host, *hosts, config.worker.host_states.stale_after_ms);
  return view;
}

}  // namespace

RouteDestination destination_of(const std::string& host, const std::vector<HostStateRow>& rows,
                                int64_t stale_after_ms) {
  RouteDestination d;
  d.host = host;
  d.stale_after_ms = stale_after_ms;
  if (host.empty()) return d;
  int rank = -1;
  for (const auto& r : rows) {
    if (r.host != host) continue;
    d.workers.push_back(r);
    if (r.age_ms > stale_after_ms) continue;
    ++d.fresh_workers;
    if (circuit_rank(r.circuit) > rank) {
      rank = circuit_rank(r.circuit);
      d.circuit = r.circuit;
    }
    if (r.circuit == "open") d.open_until_ms = std::max(d.open_until_ms, r.open_until_ms);
    d.adaptive_limit = std::min(d.adaptive_limit.value_or(r.adaptive_limit), r.adaptive_limit);
    d.max_limit = std::max(d.max_limit.value_or(r.max_limit), r.max_limit);
    d.paused_until_ms = std::max(d.paused_until_ms, r.paused_until_ms);
  }
  return d;
}

Result<std::vector<RouteView>> list_routes(const Config& config, RouteStates& states) {
  auto rows = states.all();
  if (!rows) return Unexpected{rows.error()};
  auto hosts = states.host_states();
  if (!hosts) return Unexpected{hosts.error()};
  std::map<std::pair<std::string, std::string>, RouteStateRow> by_route;
  for (auto& row : *rows) by_route.emplace(std::pair{row.source, row.route}, std::move(row));
  std::vector<RouteView> out;
  for (const auto& [source, routes] : config.routes) {
    for (const auto& r : routes) {
      RouteView v = view_of(source, r);
      v.destination = destination_of(r.host_key, *hosts, config.worker.host_states.stale_after_ms);
      if (auto it = by_route.find({source, r.name}); it != by_route.end()) {
        v.state = std::move(it->second);
        by_route.erase(it);
      }
      out.push_back(std::move(v));
    }
  }
  for (auto& [key, row] : by_route) out.push_back(unconfigured_view(std::move(row)));
  return out;
}

Result<RouteView> find_route(const Config& config, RouteStates& states, const std::string& name,
                             const std::string& source) {
  auto view = configured_route(config, name, source);
  if (!view) return view;
  return with_state(std::move(*view), config, states);
}

Result<RouteChange> suspend_route(const Config& config, RouteStates& states,
                                  const std::string& name, const std::string& source,
                                  const std::string& who, const std::string& reason) {
  auto view = configured_route(config, name, source);
  if (!view) return Unexpected{view.error()};
  auto changed =
      states.suspend(view->source, view->name, reason.empty() ? "suspended by an operator" : reason,
                     "operator:" + who);
  if (!changed) return Unexpected{changed.error()};
  auto after = with_state(std::move(*view), config, states);
  if (!after) return Unexpected{after.error()};
  return RouteChange{std::move(*after), *changed, {}};
}

Result<RouteChange> resume_route(const Config& config, RouteStates& states, const std::string& name,
                                 const std::string& source, const std::string& who,
                                 bool list_parked) {
  auto view = configured_route(config, name, source);
  // A route removed from the config while suspended: resuming it ends its suspension and
  // releases its parked deliveries, which workers then dead-letter as unknown_route (recorded
  // dead, in the DLQ, replayable once a route takes them again) instead of leaving them parked
  // until the parked topic's retention drops their messages.
  if (!view && view.error().code == "route_not_found")
    view = remembered_route(states, name, source, view.error());
  if (!view) return Unexpected{view.error()};
  auto changed = states.resume(view->source, view->name, "operator:" + who);
  if (!changed) return Unexpected{changed.error()};
  if (*changed) std::this_thread::sleep_for(std::chrono::milliseconds(kRouteSettleMs));
  std::vector<std::string> keys;
  if (list_parked) {
    auto listed = states.parked_keys(view->source, view->name);
    if (!listed) return Unexpected{listed.error()};
    keys = std::move(*listed);
  }
  auto after = with_state(std::move(*view), config, states);
  if (!after) return Unexpected{after.error()};
  return RouteChange{std::move(*after), *changed, std::move(keys)};
}

nlohmann::json destination_json(const RouteDestination& d,
                                const std::function<std::string(int64_t)>& time) {
  using nlohmann::json;
  if (d.host.empty()) return nullptr;
  auto at = [&time](int64_t ms) { return ms > 0 ? json(time(ms)) : json(nullptr); };
  auto limit = [](const std::optional<int>& n) { return n ? json(*n) : json(nullptr); };
  json workers = json::array();
  for (const auto& w : d.workers) {
    workers.push_back({{"worker_id", w.worker_id},
                       {"circuit", w.circuit},
                       {"open_until", at(w.open_until_ms)},
                       {"adaptive_limit", w.adaptive_limit},
                       {"max_in_flight", w.max_limit},
                       {"paused_until", at(w.paused_until_ms)},
                       {"updated_at", at(w.updated_at_ms)},
                       {"stale", w.age_ms > d.stale_after_ms}});
  }
  return {{"host", d.host},
          {"circuit", d.circuit},
          {"open_until", at(d.open_until_ms)},
          {"adaptive_limit", limit(d.adaptive_limit)},
          {"max_in_flight", limit(d.max_limit)},
          {"paused_until", at(d.paused_until_ms)},
          {"workers", workers}};
}

nlohmann::json route_json(const RouteView& v, const std::function<std::string(int64_t)>& time) {
  using nlohmann::json;
  auto at = [&time](int64_t ms) { return ms > 0 ? json(time(ms)) : json(nullptr); };
  const RouteStateRow& s = v.state;
  json suspend_after = nullptr;
  if (v.suspend_after) {
    auto bound = [](int n) { return n > 0 ? json(n) : json(nullptr); };
    suspend_after = {{"consecutive_failures", bound(v.suspend_after->consecutive_failures)},
                     {"or_failing_for_seconds", bound(v.suspend_after->or_failing_for_seconds)}};
  }
  return {{"source", v.source},
          {"name", v.name},
          {"url", v.configured ? json(v.url) : json(nullptr)},
          {"configured", v.configured},
          {"state", s.state},
          {"reason", s.reason.empty() ? json(nullptr) : json(s.reason)},
          {"failure_streak", s.failure_streak},
          {"failing_since", at(s.failing_since_ms)},
          {"suspended_at", at(s.suspended_at_ms)},
          {"suspended_by", s.suspended_by.empty() ? json(nullptr) : json(s.suspended_by)},
          {"resumed_at", at(s.resumed_at_ms)},
          {"parked", s.parked},
          {"suspend_after", suspend_after},
          {"destination", destination_json(v.destination, time)}};
}

ReplayOptions release_options(const RouteView& route, const std::string& who, double rate) {
  ReplayOptions o;
  o.from_state = "parked";
  o.rate_per_second = rate;
  o.who = who;
  o.reason = "release of route " + route.source + "/" + route.name + " (resumed)";
  return o;
}

bool route_is_ordered(const Config& config, const std::string& source, const std::string& name) {
  const RouteConfig* route = route_config(config, source, name);
  return route && route->ordered;
}

}  // namespace hookrelay
