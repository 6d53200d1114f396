#include "admin/admin_service.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "admin/admin_request.h"
#include "admin/openapi_document.h"
#include "admin/replay_jobs.h"
#include "shared/json_writer.h"
#include "shared/log.h"
#include "shared/routes/route_control.h"
#include "shared/signing/crypto.h"
#include "shared/store/delivery_queries.h"
#include "shared/store/pg_connection.h"
#include "shared/utf8.h"

namespace hookrelay::admin {

struct AdminService::Connections {
  explicit Connections(const std::string& url) : queries(url), jobs(url), routes(url) {}
  DeliveryQueries queries;
  ReplayJobs jobs;
  RouteStates routes;
};

namespace {

// A whole number written as a decimal (1.0, 1e0) as the integer it is, in place, so that JSON
// values that are equal have one text.
void same_numbers_same_text(nlohmann::json& j) {
  if (j.is_structured()) {
    for (auto& v : j) same_numbers_same_text(v);
    return;
  }
  if (!j.is_number_float()) return;
  const double d = j.get<double>();
  if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) < 9.0e15) j = static_cast<int64_t>(d);
}

using nlohmann::json;

json time_or_null(int64_t ms) { return ms > 0 ? json(format_rfc3339_ms(ms)) : json(nullptr); }

json delivery_json(const DeliveryRow& d) {
  return {{"key", d.key},
          {"kind", d.kind},
          {"source", d.source},
          {"event_id", d.event_id},
          {"route", d.kind == "webhook" ? json(d.destination) : json(nullptr)},
          {"url", d.url},
          {"state", d.state},
          {"attempts", d.attempts},
          {"last_status", d.last_status > 0 ? json(d.last_status) : json(nullptr)},
          {"last_error", d.last_error.empty() ? json(nullptr) : json(d.last_error)},
          {"first_seen_at", time_or_null(d.first_seen_ms)},
          {"first_attempt_at", time_or_null(d.first_attempt_ms)},
          {"last_attempt_at", time_or_null(d.last_attempt_ms)},
          {"completed_at", time_or_null(d.completed_ms)}};
}

json attempts_json(const std::vector<AttemptRow>& attempts) {
  json out = json::array();
  for (const auto& a : attempts) {
    out.push_back({{"attempt", a.attempt},
                   {"started_at", time_or_null(a.started_ms)},
                   {"duration_ms", a.duration_ms},
                   {"http_status", a.http_status > 0 ? json(a.http_status) : json(nullptr)},
                   {"outcome", a.outcome},
                   {"error", a.error.empty() ? json(nullptr) : json(a.error)},
                   {"worker_id", a.worker_id}});
  }
  return out;
}

json detail_json(const DeliveryDetail& d) {
  json replays = json::array();
  for (const auto& r : d.replays) {
    replays.push_back({{"id", r.id},
                       {"replayed_by", r.replayed_by},
                       {"replayed_at", time_or_null(r.replayed_ms)},
                       {"reason", r.reason}});
  }
  return {{"delivery", delivery_json(d.delivery)},
          {"attempts", attempts_json(d.attempts)},
          {"replays", replays}};
}

json progress_json(const ReplayProgress& p) {
  return {{"id", std::to_string(p.id)},
          {"state", p.state},
          {"dry_run", p.dry_run},
          {"rate", p.rate},
          {"requested_by", p.requested_by},
          {"created_at", time_or_null(p.created_ms)},
          {"finished_at", time_or_null(p.finished_ms)},
          {"matched", p.matched},
          {"produced", p.produced},
          {"would_produce", p.would_produce},
          {"skipped", p.skipped},
          {"missing", p.missing},
          {"failed", p.failed},
          {"pending", p.pending}};
}

HttpResponse ok(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.body = json_text(body);
  return r;
}

// A store error as an answer: what the caller can act on is a 4xx; an unreachable database 503.
HttpResponse from_error(const Error& e) {
  if (e.code == "not_found") return json_error(404, "not_found", e.message);
  if (e.code == "bad_filter" || e.code == "bad_request") return json_error(400, e.code, e.message);
  if (e.code == "idempotency_key_reused") return json_error(422, e.code, e.message);
  if (e.code == "db_timeout") {
    auto r = json_error(503, "query_timeout",
                        "the query ran past admin.statement_timeout_ms; narrow the request "
                        "(a filter's route, since or until) or retry later");
    r.headers.emplace_back("Retry-After", "5");
    return r;
  }
  if (e.code == "idempotency_key_contended") {
    // The replay its key named was deleted again and again while the request was answered:
    // nothing is wrong with the database, and a retry takes the key (ReplayJobs::create).
    auto r = json_error(503, e.code, e.message);
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  if (e.code == "db_unavailable" || e.code == "db_busy" || e.code == "db_conflict") {
    auto r = json_error(503, "db_unavailable", "the database is not reachable; retry");
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  if (e.code == "db_misconfigured") {
    spdlog::error("msg=postgres_misconfigured error={}", log_quote(e.message));
    auto r = json_error(503, "db_misconfigured",
                        "the database refuses hookrelay's statements (schema not migrated, missing "
                        "privileges or a read-only server); see the admin log");
    r.headers.emplace_back("Retry-After", "30");
    return r;
  }
  // Bad input is refused before any statement runs (admin_request.h, valid_segment): what is
  // left is the admin's own fault. The database's text goes to the log, not to the caller.
  spdlog::error("msg=admin_internal_error code={} error={}", e.code, log_quote(e.message));
  return json_error(500, "internal", "internal error; see the admin log");
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// The path of a request target, without its query.
std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

// Whether a path needs a token: every /v1 one (the contract, the probes and the metrics need none).
bool needs_token(std::string_view path) { return starts_with(path, "/v1/"); }

// The answer to a /v1 request without a valid token, whether refused from its header
// (check_header) or by the handler; `why` names what is wrong with its Authorization.
HttpRefusal unauthorized_refusal(std::string why) {
  return {401, "unauthorized", std::move(why), {{"WWW-Authenticate", "Bearer"}}};
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The segments of `path` after `prefix`, percent-decoded; nullopt when one is malformed.
std::optional<std::vector<std::string>> segments(std::string_view path) {
  std::vector<std::string> out;
  while (!path.empty()) {
    auto slash = path.find('/');
    auto seg = percent_decode(path.substr(0, slash), false);
    if (!seg) return std::nullopt;
    out.push_back(std::move(*seg));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
    if (path.empty()) out.emplace_back();  // trailing slash: an empty last segment
  }
  return out;
}

HttpResponse method_not_allowed(std::string_view allowed) {
  auto r =
      json_error(405, "method_not_allowed", "this path accepts " + std::string(allowed) + " only");
  r.headers.emplace_back("Allow", std::string(allowed));
  return r;
}

HttpResponse no_query(std::string_view query) {
  auto q = parse_query(query, {});
  if (!q) return json_error(400, q.error().code, q.error().message);
  return HttpResponse{};
}

// A key, id or name from the path: 1-1024 bytes of text PostgreSQL takes (no invalid UTF-8 such
// as %FF, no %00), so a lookup either finds it or answers 404, never a database error.
bool valid_segment(const std::string& s) {
  return !s.empty() && s.size() <= kMaxKeyBytes && is_postgres_text(s);
}
constexpr const char* kSegmentRule = "must be 1-1024 bytes of UTF-8 text without NUL bytes";

json route_view_json(const RouteView& v) { return route_json(v, format_rfc3339_ms); }

// Route control errors: a name the config does not have, or one several sources use.
HttpResponse route_error(const Error& e) {
  if (e.code == "route_not_found") return json_error(404, e.code, e.message);
  if (e.code == "ambiguous_route") return json_error(409, e.code, e.message);
  return from_error(e);
}

}  // namespace

std::string admin_db_url(const Config& config) {
  return with_service_limits(config.postgres.url, config.admin.statement_timeout_ms);
}

std::string admin_runner_db_url(const Config& config) {
  return with_service_limits(config.postgres.url, 0);
}

std::string admin_token_name(const std::string& token_sha256) {
  return "admin-token-" + hex_encode(token_sha256.substr(0, 8));
}

Result<void> check_admin_config(const Config& config) {
  if (config.postgres.url.empty())
    return fail("config", "postgres.url: is required (or HOOKRELAY_DATABASE_URL)");
  return {};
}

AdminService::AdminService(std::function<std::shared_ptr<const Config>()> config,
                           std::string db_url, std::shared_ptr<prometheus::Registry> registry,
                           std::function<void()> on_replay)
    : config_(std::move(config)),
      db_url_(std::move(db_url)),
      registry_(std::move(registry)),
      on_replay_(std::move(on_replay)),
      requests_(prometheus::BuildCounter()
                    .Name("hookrelay_admin_requests_total")
                    .Help("Admin API requests by endpoint and status")
                    .Register(*registry_)),
      errors_(prometheus::BuildCounter()
                  .Name("hookrelay_admin_errors_total")
                  .Help("Admin API error answers by code")
                  .Register(*registry_)),
      latency_(prometheus::BuildHistogram()
                   .Name("hookrelay_admin_request_seconds")
                   .Help("Admin API request latency by endpoint")
                   .Register(*registry_)),
      replay_requests_(prometheus::BuildCounter()
                           .Name("hookrelay_admin_replay_requests_total")
                           .Help("POST /v1/replays answered, by outcome: created, existing (an "
                                 "Idempotency-Key seen before: its replay, nothing created), "
                                 "key_reused (422)")
                           .Register(*registry_)) {}

AdminService::~AdminService() = default;

std::unique_ptr<AdminService::Connections> AdminService::take_connections() {
  {
    std::lock_guard lock(pool_mu_);
    if (!pool_.empty()) {
      auto c = std::move(pool_.back());
      pool_.pop_back();
      return c;
    }
  }
  // The start-up URL with its limits (admin_db_url): each statement of a request is bounded, so a
  // filter that walks a large table cannot hold an HTTP thread (and its connection) for longer
  // than admin.statement_timeout_ms, and a silent database host no longer than the connect and
  // TCP timeouts.
  return std::make_unique<Connections>(db_url_);
}

void AdminService::give_back(std::unique_ptr<Connections> c) {
  std::lock_guard lock(pool_mu_);
  pool_.push_back(std::move(c));
}

std::string AdminService::unauthorized(const HttpRequest& request, const Config& config,
                                       std::string& who) const {
  auto auth = request.header("Authorization");
  if (!auth) return "missing Authorization: Bearer <token>";
  if (auth->size() <= 7 || lower(auth->substr(0, 7)) != "bearer ")
    return "Authorization must be 'Bearer <token>'";
  // Digests compared, so neither the content nor the length of a token shows in the timing.
  const std::string given = sha256(auth->substr(7));
  bool ok = false;
  for (const auto& token : config.admin.tokens) {
    if (constant_time_equal(given, sha256(token))) ok = true;  // no early exit
  }
  // Named by its digest, not its place in admin.tokens: the same caller after any reload.
  if (ok) who = admin_token_name(given);
  return ok ? "" : "bearer token is not valid";
}

void AdminService::handle(const HttpRequest& request, const Responder& respond) {
  const auto started = std::chrono::steady_clock::now();
  std::string_view endpoint = "other";
  HttpResponse r = route(request, endpoint);
  series_.get(requests_, {{"endpoint", endpoint}, {"status", std::to_string(r.status)}})
      .Increment();
  series_.get(latency_, {{"endpoint", endpoint}})
      .Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (r.status >= 400 && r.content_type == "application/json") {
    try {
      auto code = json::parse(r.body).at("error").at("code").get<std::string>();
      series_.get(errors_, {{"code", code}}).Increment();
    } catch (const json::exception&) {
    }
  }
  respond(std::move(r));
}

void AdminService::count_rejected(int status, std::string_view code) {
  // A 401 is check_header's (the server itself never answers one): counted with the handler's.
  const std::string_view endpoint =
      status == 401 && code == "unauthorized" ? "unauthorized" : "other";
  series_.get(requests_, {{"endpoint", endpoint}, {"status", std::to_string(status)}}).Increment();
  series_.get(errors_, {{"code", std::string(code)}}).Increment();
}

std::optional<HttpRefusal> AdminService::check_header(const HttpRequest& head) const {
  if (!needs_token(path_of(head.target))) return std::nullopt;
  std::string who;
  auto why = unauthorized(head, *config_(), who);
  if (why.empty()) return std::nullopt;
  return unauthorized_refusal(std::move(why));
}

HttpResponse AdminService::route(const HttpRequest& request, std::string_view& endpoint) {
  std::string_view target = request.target;
  std::string_view path = path_of(target);
  std::string_view query =
      path.size() == target.size() ? std::string_view{} : target.substr(path.size() + 1);
  if (path == "/openapi.yaml") {
    endpoint = "openapi";
    if (request.method != "GET" && request.method != "HEAD") return method_not_allowed("GET");
    HttpResponse r;
    r.body = std::string(openapi_document());
    r.content_type = "application/yaml";
    return r;
  }
  if (path == "/healthz" || path == "/readyz") {
    endpoint = "probe";
    return ok(200, {{"status", "ok"}});
  }
  if (path == "/metrics") {
    endpoint = "metrics";
    HttpResponse r;
    r.body = serialize_metrics(*registry_);
    r.content_type = "text/plain; version=0.0.4";
    return r;
  }
  if (!needs_token(path)) return json_error(404, "not_found", "no such path; see /openapi.yaml");
  return v1(request, path.substr(4), query, endpoint);
}

HttpResponse AdminService::v1(const HttpRequest& request, std::string_view path,
                              std::string_view query, std::string_view& endpoint) {
  auto config = config_();
  std::string who;
  // Checked again here, though check_header refused such requests from their header already:
  // the handler never relies on how the server was set up.
  if (auto why = unauthorized(request, *config, who); !why.empty()) {
    endpoint = "unauthorized";
    const HttpRefusal refusal = unauthorized_refusal(std::move(why));
    auto r = json_error(refusal.status, refusal.code, refusal.message);
    r.headers = refusal.headers;
    return r;
  }
  auto segs = segments(path);
  if (!segs) return json_error(400, "bad_parameter", "path: malformed %-escape");
  const auto& s = *segs;
  const bool get = request.method == "GET";

  // Checked before a connection is taken: bad input never waits for the database.
  std::function<HttpResponse(Connections&)> run;
  if (s.size() == 1 && s[0] == "deliveries") {
    endpoint = "list_deliveries";
    if (!get) return method_not_allowed("GET");
    auto filter = parse_delivery_query(query);
    if (!filter) return json_error(400, filter.error().code, filter.error().message);
    run = [f = *filter](Connections& c) {
      auto page = c.queries.list_deliveries(f);
      if (!page) return from_error(page.error());
      json rows = json::array();
      for (const auto& d : page->rows) rows.push_back(delivery_json(d));
      return ok(200,
                {{"deliveries", rows},
                 {"next_cursor", page->next ? json(encode_cursor(*page->next)) : json(nullptr)},
                 {"partial", page->scan_bounded}});
    };
  } else if (s.size() == 2 && s[0] == "deliveries") {
    endpoint = "get_delivery";
    if (!get) return method_not_allowed("GET");
    if (!valid_segment(s[1]))
      return json_error(400, "bad_parameter", std::string("key: ") + kSegmentRule);
    if (auto r = no_query(query); r.status != 200) return r;
    run = [key = s[1]](Connections& c) {
      auto d = c.queries.delivery_show(key);
      return d ? ok(200, detail_json(*d)) : from_error(d.error());
    };
  } else if (s.size() == 2 && s[0] == "calls") {
    endpoint = "get_call";
    if (!get) return method_not_allowed("GET");
    if (!valid_segment(s[1]))
      return json_error(400, "bad_parameter", std::string("id: ") + kSegmentRule);
    if (auto r = no_query(query); r.status != 200) return r;
    run = [id = s[1]](Connections& c) {
      auto d = c.queries.call_show(id);
      if (!d) return from_error(d.error());
      json body = detail_json(*d);
      body["id"] = id;
      return ok(200, body);
    };
  } else if (s.size() == 3 && s[0] == "events") {
    endpoint = "get_event";
    if (!get) return method_not_allowed("GET");
    if (!valid_segment(s[1]) || !valid_segment(s[2])) {
      return json_error(
          400, "bad_parameter",
          std::string(valid_segment(s[1]) ? "event_id: " : "source: ") + kSegmentRule);
    }
    if (auto r = no_query(query); r.status != 200) return r;
    run = [source = s[1], event_id = s[2]](Connections& c) {
      auto e = c.queries.event_show(source, event_id);
      if (!e) return from_error(e.error());
      json inbound = nullptr;
      if (e->inbound) {
        const auto& i = *e->inbound;
        inbound = {{"topic", i.topic},
                   {"partition", i.partition},
                   {"offset", i.offset},
                   {"received_at", time_or_null(i.received_ms)},
                   {"first_seen_at", time_or_null(i.first_seen_ms)},
                   {"body_sha256", i.body_sha256}};
      }
      json rows = json::array();
      for (const auto& d : e->deliveries) rows.push_back(delivery_json(d));
      return ok(
          200,
          {{"source", source}, {"event_id", event_id}, {"inbound", inbound}, {"deliveries", rows}});
    };
  } else if (s.size() == 1 && s[0] == "replays") {
    endpoint = "create_replay";
    if (request.method != "POST") return method_not_allowed("POST");
    if (auto r = no_query(query); r.status != 200) return r;
    auto type = request.header("Content-Type");
    std::string media = type ? lower(type->substr(0, type->find(';'))) : "";
    while (!media.empty() && media.back() == ' ') media.pop_back();
    if (media != "application/json") {
      return json_error(415, "unsupported_media_type",
                        "Content-Type must be application/json, got '" +
                            (type ? std::string(utf8_prefix(*type, 100)) : std::string("(none)")) +
                            "'");
    }
    auto key = parse_idempotency_key(request.header("Idempotency-Key"));
    if (!key) return json_error(400, key.error().code, key.error().message);
    auto parsed = parse_replay_request(request.body);
    if (!parsed) return json_error(400, parsed.error().code, parsed.error().message);
    const int max_keys = config->admin.max_replay_keys;
    // The request as stored: parsed and written again, so a retry that orders the members,
    // spaces the body or writes a number otherwise (1, 1.0, 1e0) is the same request.
    json request_value = json::parse(request.body);
    same_numbers_same_text(request_value);
    std::string request_json = json_text(request_value);
    IdempotencyKey idempotency;
    if (!key->empty()) {
      idempotency.key = std::move(*key);
      idempotency.request_sha256 = sha256(who + '\n' + request_json);
    }
    run = [this, req = *parsed, request_json = std::move(request_json), who, max_keys,
           idempotency = std::move(idempotency)](Connections& c) {
      auto created = c.jobs.create(req, request_json, who, max_keys, idempotency);
      if (!created) {
        if (created.error().code == "idempotency_key_reused")
          series_.get(replay_requests_, {{"outcome", "key_reused"}}).Increment();
        return from_error(created.error());
      }
      series_.get(replay_requests_, {{"outcome", created->existing ? "existing" : "created"}})
          .Increment();
      // A repeat (the same Idempotency-Key and request) creates nothing: 200 with the replay
      // that key's first request created, as it stands now.
      if (!created->existing && on_replay_) on_replay_();
      auto r = ok(created->existing ? 200 : 202, progress_json(created->progress));
      r.headers.emplace_back("Location", "/v1/replays/" + std::to_string(created->progress.id));
      if (created->existing) r.headers.emplace_back("Idempotent-Replayed", "true");
      return r;
    };
  } else if (s.size() == 1 && s[0] == "routes") {
    endpoint = "list_routes";
    if (!get) return method_not_allowed("GET");
    if (auto r = no_query(query); r.status != 200) return r;
    run = [config](Connections& c) {
      auto routes = list_routes(*config, c.routes);
      if (!routes) return from_error(routes.error());
      json rows = json::array();
      for (const auto& v : *routes) rows.push_back(route_view_json(v));
      return ok(200, {{"routes", rows}});
    };
  } else if (s.size() == 3 && s[0] == "routes" && (s[2] == "suspend" || s[2] == "resume")) {
    const bool suspend = s[2] == "suspend";
    endpoint = suspend ? "suspend_route" : "resume_route";
    if (request.method != "POST") return method_not_allowed("POST");
    if (!valid_segment(s[1]))
      return json_error(400, "bad_parameter", std::string("name: ") + kSegmentRule);
    auto q = parse_route_control_query(query, suspend);
    if (!q) return json_error(400, q.error().code, q.error().message);
    run = [this, config, name = s[1], q = *q, who, suspend](Connections& c) {
      if (suspend) {
        auto done = suspend_route(*config, c.routes, name, q.source, who, q.reason);
        if (!done) return route_error(done.error());
        return ok(200, {{"route", route_view_json(done->route)},
                        {"changed", done->changed},
                        {"release", nullptr}});
      }
      auto done = resume_route(*config, c.routes, name, q.source, who, /*list_parked=*/false);
      if (!done) return route_error(done.error());
      // The release runs as a replay of the route's parked deliveries, in arrival order
      // (ReplayRunner); its items are what parked_deliveries holds now, selected in Postgres by
      // create_release. A failure here leaves the route active: the resume asked again
      // (unchanged) creates the release then.
      auto stored = c.jobs.create_release(done->route.source, done->route.name, who, q.rate);
      if (!stored) return from_error(stored.error());
      std::optional<ReplayProgress> created = std::move(*stored);
      if (!created) {
        return ok(200, {{"route", route_view_json(done->route)},
                        {"changed", done->changed},
                        {"release", nullptr}});
      }
      if (on_replay_) on_replay_();
      auto r = ok(202, {{"route", route_view_json(done->route)},
                        {"changed", done->changed},
                        {"release", progress_json(*created)}});
      r.headers.emplace_back("Location", "/v1/replays/" + std::to_string(created->id));
      return r;
    };
  } else if (s.size() == 2 && s[0] == "replays") {
    endpoint = "get_replay";
    if (!get) return method_not_allowed("GET");
    if (auto r = no_query(query); r.status != 200) return r;
    int64_t id = 0;
    auto [p, ec] = std::from_chars(s[1].data(), s[1].data() + s[1].size(), id);
    // As openapi.yaml's pattern, ^[1-9][0-9]{0,17}$: "007" names no replay (one id, one path).
    if (ec != std::errc() || p != s[1].data() + s[1].size() || id < 1 || s[1].size() > 18 ||
        s[1][0] == '0') {
      return json_error(400, "bad_parameter", "id: must be a replay id (a positive integer)");
    }
    run = [id](Connections& c) {
      auto progress = c.jobs.get(id);
      return progress ? ok(200, progress_json(*progress)) : from_error(progress.error());
    };
  } else {
    return json_error(404, "not_found", "no such path; see /openapi.yaml");
  }
  auto conn = take_connections();
  HttpResponse r = run(*conn);
  give_back(std::move(conn));
  return r;
}

}  // namespace hookrelay::admin
