// Route control: what operators do with routes, one implementation for the CLI (`hookrelay
// routes list|suspend|resume`) and the admin API (GET /v1/routes, POST
// /v1/routes/{name}/suspend|resume).
//
// A route is named by its `name`; names are unique within one source only, so a name that two
// sources use needs the source too ("ambiguous_route" otherwise). Routes come from the config;
// their state from Postgres (RouteStates). A resume makes the route active at once (workers see
// it within a second) and hands back the keys of its parked deliveries, oldest arrival first:
// the caller releases them into the retry flow with the shared Replayer
// (shared/replay/dlq_replay.h, release_options() below), at a rate, with progress, reading their
// messages from hookrelay.parked. Deliveries arriving after the resume are attempted at once and
// may overtake parked ones still being released.
//
// Errors: "route_not_found", "ambiguous_route", and RouteStates' database errors.
//
// Thread-safety: functions of their arguments; RouteStates is one per thread.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "shared/config/config.h"
#include "shared/replay/dlq_replay.h"
#include "shared/routes/route_states.h"

namespace hookrelay {

// The route's destination host as the workers see it (published every
// worker.host_states.publish_interval_ms, see worker/host_state_publisher.h): the combined view
// of the workers that published within worker.host_states.stale_after_ms, and every worker's own
// row (older ones flagged stale).
struct RouteDestination {
  std::string host;                   // "host:port"; empty when the route is not configured
  std::string circuit = "unknown";    // the worst fresh one: open > half_open > closed; unknown
                                      // when no worker published within stale_after_ms
  int64_t open_until_ms = 0;          // the latest open_until of the workers whose circuit is open
  std::optional<int> adaptive_limit;  // the lowest fresh limit
  std::optional<int> max_limit;       // the highest fresh configured maximum
  int64_t paused_until_ms = 0;        // the latest fresh Retry-After pause
  std::vector<HostStateRow> workers;  // by worker id
  int fresh_workers = 0;
  int64_t stale_after_ms = HostStatesConfig{}.stale_after_ms;  // older rows are stale
};

// Combines the workers' rows of one host (`rows` may hold other hosts: they are skipped); rows
// older than `stale_after_ms` are listed but not combined.
RouteDestination destination_of(const std::string& host, const std::vector<HostStateRow>& rows,
                                int64_t stale_after_ms);

struct RouteView {
  std::string source;
  std::string name;
  std::string url;  // empty when no longer configured
  std::optional<SuspendAfter> suspend_after;
  bool configured = true;  // false: Postgres remembers a route the config no longer has
  RouteStateRow state;     // "active" with no failures when Postgres has no row for it
  RouteDestination destination;
};

// Every configured route (by source, then config order), then rows for routes no longer
// configured.
Result<std::vector<RouteView>> list_routes(const Config& config, RouteStates& states);

// The configured route `name` (of `source`, when given) with its state.
Result<RouteView> find_route(const Config& config, RouteStates& states, const std::string& name,
                             const std::string& source);

// Suspends the route (an operator's: suspended_by "operator:<who>"). `changed` false: it was
// suspended already.
struct RouteChange {
  RouteView route;
  bool changed = false;
  std::vector<std::string> parked_keys;  // resume only: to release, oldest arrival first
};
Result<RouteChange> suspend_route(const Config& config, RouteStates& states,
                                  const std::string& name, const std::string& source,
                                  const std::string& who, const std::string& reason);
// Makes the route active and, with `list_parked`, lists its parked deliveries (also when it was
// active already: deliveries parked by a worker that had not yet seen an earlier resume are
// released too). The list is read whole: the admin API, whose release selects them in Postgres
// (ReplayJobs::create_release), does without it, so a route with millions parked is resumed and
// released without the read (which could outlast its statement timeout, after the route was
// already active, and leave nothing to release them). A
// route no longer configured is resumed too when Postgres remembers it (list_routes'
// configured=false): workers dead-letter its released deliveries as unknown_route.
// After a change it waits kRouteSettleMs before listing, so deliveries that workers parked
// before they saw the resume (they read route states every second) are in the list.
inline constexpr int kRouteSettleMs = 2500;
Result<RouteChange> resume_route(const Config& config, RouteStates& states, const std::string& name,
                                 const std::string& source, const std::string& who,
                                 bool list_parked = true);

// A route as the CLI's --json and the admin API show it (docs/openapi.yaml, Route); `time`
// formats a Unix-ms time (never called with 0, which is null).
nlohmann::json route_json(const RouteView& route, const std::function<std::string(int64_t)>& time);
// Its `destination` member (null for a route no longer configured).
nlohmann::json destination_json(const RouteDestination& destination,
                                const std::function<std::string(int64_t)>& time);

// The Replayer options of a release: parked deliveries back into the retry flow at `rate` per
// second (0 = as fast as acks come back).
ReplayOptions release_options(const RouteView& route, const std::string& who, double rate);

// Whether `config` has route `name` of `source` with `ordered: true` (ReplayOptions::ordered_route
// of a release).
bool route_is_ordered(const Config& config, const std::string& source, const std::string& name);

}  // namespace hookrelay
