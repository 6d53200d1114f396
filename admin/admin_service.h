// AdminService: the request handler of hookrelay-admin (docs/openapi.yaml is its contract).
//
//   GET  /v1/calls/{id}                 an outbound call's delivery and attempts
//   GET  /v1/deliveries                 filtered, keyset-paginated listing
//   GET  /v1/deliveries/{key}           one delivery with its attempt trail and replays
//   GET  /v1/events/{source}/{event_id} an inbound event and its deliveries
//   POST /v1/replays                    replay dead / resend succeeded deliveries -> 202 {id};
//                                       with an Idempotency-Key seen before, the replay that
//                                       key created -> 200 (nothing new is created)
//   GET  /v1/replays/{id}               a replay's progress (also a route release's)
//   GET  /v1/routes                     every route with its state (shared/routes/route_control.h)
//   POST /v1/routes/{name}/suspend      suspend a route: its deliveries are parked
//   POST /v1/routes/{name}/resume       resume it; its parked deliveries are released in
//                                       arrival order -> 202 {release: replay progress}
//   GET  /openapi.yaml /healthz /readyz /metrics (no token)
//
// /v1 needs `Authorization: Bearer <token>` with one of admin.tokens (compared in constant
// time), checked as soon as a request's header is read (check_header), before its body. Every
// error is JSON {"error":{"code","message"}} naming the problem, counted by code; bad input is a
// 4xx, never a 5xx (a 503 means the database is unreachable).
//
// Handlers block on Postgres: each HTTP thread takes a connection of its own from a small pool.
// Every connection is opened with the URL the process started with (`db_url`, with its client-side
// limits: shared/store/pg_connection.h, with_service_limits): a reload that changes postgres.url
// or admin.statement_timeout_ms takes effect at the next restart only, for every connection.
//
// Thread-safety: handle() and check_header() run concurrently on every HTTP thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "shared/config/config.h"
#include "shared/http/http_server.h"
#include "shared/http/http_types.h"
#include "shared/metrics.h"
#include "shared/result.h"

namespace hookrelay::admin {

// The URL every Postgres connection of the admin process uses (requests, the replay runner and
// its lease heartbeat): postgres.url with the client-side limits of a long-running service
// (connect timeout, TCP keepalives and user timeout) and admin.statement_timeout_ms on each
// statement, so a database host that goes silent never holds an HTTP thread or the runner for
// longer than those bounds.
std::string admin_db_url(const Config& config);
// The replay runner's: the same limits but no statement_timeout (a release of a route that
// parked millions reads its items for longer than a request may take; the connection limits
// still end a silent server).
std::string admin_runner_db_url(const Config& config);

// How the admin names a caller in audit trails (requested_by, suspended_by "operator:<name>")
// and in its Idempotency-Key identity: "admin-token-" and the first 16 hex digits of the SHA-256
// of the token. Stable while the token is configured, wherever it stands in admin.tokens (a
// reload that adds or reorders tokens changes no caller's name), and no secret: a digest prefix.
// `token_sha256` is the raw digest.
std::string admin_token_name(const std::string& token_sha256);

// The admin's own checks of a config, at start and on every reload (ConfigReloader::set_check):
// postgres.url is required (a reload without one is refused; a changed one is applied at the
// next restart, as the reload's restart_required_for names).
Result<void> check_admin_config(const Config& config);

class AdminService {
 public:
  // `config` returns the current configuration (it may be replaced by a reload); `db_url` is the
  // connection URL of every request (admin_db_url of the start-up config); `on_replay` is called
  // after a replay was stored, to wake the runner.
  AdminService(std::function<std::shared_ptr<const Config>()> config, std::string db_url,
               std::shared_ptr<prometheus::Registry> registry, std::function<void()> on_replay);
  ~AdminService();

  void handle(const HttpRequest& request, const Responder& respond);
  // A request the HTTP server answered itself (HttpServerOptions::on_rejected: a body too large,
  // malformed HTTP, too many connections, ...): counted as a request and an error like any. A
  // check_header refusal is counted as handle()'s 401s are, under endpoint "unauthorized".
  void count_rejected(int status, std::string_view code);
  // The token check of handle(), on a request's header alone (HttpServerOptions::check_header):
  // a /v1 request without a valid token gets handle()'s 401 before any of its body is read, so
  // clients without a token cannot take the request-body memory the others need.
  std::optional<HttpRefusal> check_header(const HttpRequest& head) const;

 private:
  struct Connections;  // DeliveryQueries + ReplayJobs of one thread
  HttpResponse route(const HttpRequest& request, std::string_view& endpoint);
  HttpResponse v1(const HttpRequest& request, std::string_view path, std::string_view query,
                  std::string_view& endpoint);
  std::unique_ptr<Connections> take_connections();
  void give_back(std::unique_ptr<Connections> c);
  // Empty when allowed; else the reason, and `who` names the token (admin_token_name: the same
  // for a token wherever it stands in admin.tokens).
  std::string unauthorized(const HttpRequest& request, const Config& config,
                           std::string& who) const;

  std::function<std::shared_ptr<const Config>()> config_;
  const std::string db_url_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::function<void()> on_replay_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& errors_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Family<prometheus::Counter>& replay_requests_;  // POST /v1/replays by outcome
  SeriesCache series_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<Connections>> pool_;
};

}  // namespace hookrelay::admin
