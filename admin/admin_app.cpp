#include "admin/admin_app.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <random>

#include "admin/admin_service.h"
#include "admin/replay_runner.h"
#include "shared/config/config_reloader.h"
#include "shared/http/http_server.h"
#include "shared/kafka/kafka_producer.h"
#include "shared/log.h"
#include "shared/service_startup.h"
#include "shared/store/migrator.h"

namespace hookrelay {
namespace {

constexpr const char* kUsage =
    "usage: hookrelay-admin [--config PATH]\n"
    "  The admin API (docs/openapi.yaml): deliveries, events, calls, replays and resends.\n"
    "  Config: --config or HOOKRELAY_CONFIG (SIGHUP reloads it). Overrides: "
    "HOOKRELAY_ADMIN_LISTEN,\n"
    "  HOOKRELAY_DATABASE_URL, HOOKRELAY_KAFKA_BOOTSTRAP.\n";

}  // namespace

int run_admin(int argc, char** argv) {
  auto start = start_service("hookrelay-admin", argc, argv, kUsage);
  if (!start.config) return start.exit_code;
  const Config& initial = *start.config;
  init_logging("admin", initial.log_level);
  auto listen = parse_host_port(initial.admin.listen, "admin.listen");
  if (!listen) {
    std::fprintf(stderr, "hookrelay-admin: config error: %s\n", listen.error().message.c_str());
    return 2;
  }
  if (auto checked = admin::check_admin_config(initial); !checked) {
    std::fprintf(stderr, "hookrelay-admin: config error: %s\n", checked.error().message.c_str());
    return 2;
  }
  if (initial.admin.tokens.empty())
    spdlog::warn("msg=admin_without_tokens every /v1 request is refused with 401");
  // Every connection of the process (requests, the replay runner and its heartbeat) uses the
  // start-up postgres.url and admin.statement_timeout_ms, with client-side limits: a reload
  // changing either is applied at the next restart (its log line names them), never half-way.
  const std::string db_url = admin::admin_db_url(initial);
  (void)check_schema_version(db_url);

  auto registry = std::make_shared<prometheus::Registry>();
  ConfigReloader reloader("hookrelay-admin", start.config_path, initial, *registry);
  reloader.set_check(admin::check_admin_config);
  auto producer =
      KafkaProducer::create(initial.kafka, "hookrelay-admin-" + std::to_string(getpid()));
  if (!producer) {
    std::fprintf(stderr, "hookrelay-admin: %s\n", producer.error().message.c_str());
    return 2;
  }
  char host[256] = "admin";
  gethostname(host, sizeof host - 1);
  admin::ReplayRunnerOptions runner_options;
  runner_options.runner_id = std::string(host) + "/" + std::to_string(getpid()) + "/" +
                             std::to_string(std::random_device{}());
  // The runner's Kafka and Postgres settings are the start-up ones (they need a restart); which
  // routes are ordered it reads from the current config, key by key (a reload applies at once).
  admin::ReplayRunner runner(
      initial, admin::admin_runner_db_url(initial), [&reloader] { return reloader.current(); },
      **producer, *registry, runner_options);
  admin::AdminService service([&reloader] { return reloader.current(); }, db_url, registry,
                              [&runner] { runner.notify(); });

  HttpServerOptions http;
  http.host = listen->host;
  http.port = listen->port;
  http.threads = initial.admin.threads;
  http.max_body_bytes = 16u << 20;  // a replay of 10,000 keys of up to 1 KiB each
  http.max_connections = 1024;
  // Four of the largest replay requests at once; more wait for a 503's Retry-After.
  http.max_buffered_body_bytes = std::size_t{64} << 20;
  http.on_rejected = [&service](int status, std::string_view code) {
    service.count_rejected(status, code);
  };
  // A /v1 request without a valid token is refused from its header, before its body is held or
  // read: clients without a token cannot fill max_buffered_body_bytes and make the rest get 503.
  http.check_header = [&service](const HttpRequest& head) { return service.check_header(head); };
  HttpServer server(http, [&service](const HttpRequest& req, const Responder& respond) {
    service.handle(req, respond);
  });
  if (auto started = server.start(); !started) {
    spdlog::critical("msg=listen_failed error={}", log_quote(started.error().message));
    return 1;
  }
  runner.start();
  spdlog::info("msg=admin_started listen={}:{} threads={} runner={}", listen->host, server.port(),
               http.threads, runner_options.runner_id);

  int sig = 0;
  while ((sig = wait_for_signal()) == SIGHUP) (void)reloader.reload();
  spdlog::info("msg=admin_stopping signal={}", sig);
  server.stop_accepting();
  runner.stop();
  server.stop();
  (*producer)->flush(5000);
  spdlog::info("msg=admin_stopped");
  return 0;
}

}  // namespace hookrelay
