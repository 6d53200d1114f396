#include "worker/worker_app.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <random>
#include <thread>

#include "shared/clock.h"
#include "shared/config/config_reloader.h"
#include "shared/http/http_server.h"
#include "shared/kafka/kafka_producer.h"
#include "shared/kafka/topic_check.h"
#include "shared/log.h"
#include "shared/metrics.h"
#include "shared/service_startup.h"
#include "shared/store/migrator.h"
#include "shared/store/pg_connection.h"
#include "shared/thread_guard.h"
#include "worker/curl_sender.h"
#include "worker/host_state_publisher.h"
#include "worker/kafka_consumer.h"
#include "worker/key_order_store.h"
#include "worker/message_expander.h"
#include "worker/postgres_delivery_store.h"
#include "worker/route_sync.h"
#include "worker/worker.h"

namespace hookrelay {
namespace {

constexpr const char* kUsage =
    "usage: hookrelay-worker [--config PATH]\n"
    "  Consumes hookrelay.webhooks, hookrelay.calls and the retry tiers; delivers over HTTP with\n"
    "  retries, dead letters, and Postgres idempotency and audit. Config: --config or\n"
    "  HOOKRELAY_CONFIG (SIGHUP reloads it). Overrides: HOOKRELAY_KAFKA_BOOTSTRAP, "
    "HOOKRELAY_DATABASE_URL,\n"
    "  HOOKRELAY_WORKER_LISTEN.\n";

// What the worker needs of a config beyond parse_config's checks, at start and on reload.
Result<void> check_worker_config(const Config& config) {
  if (config.postgres.url.empty())
    return fail("config", "postgres.url: is required (or HOOKRELAY_DATABASE_URL)");
  return {};
}

std::string default_worker_id() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return std::string(host) + "-" + std::to_string(getpid());
}

}  // namespace

int run_worker(int argc, char** argv) {
  auto start = start_service("hookrelay-worker", argc, argv, kUsage);
  if (!start.config) return start.exit_code;
  auto& config = start.config;
  if (auto checked = check_worker_config(*config); !checked) {
    std::fprintf(stderr, "hookrelay-worker: config error: %s\n", checked.error().message.c_str());
    return 2;
  }
  auto listen = parse_host_port(config->worker.listen, "worker.listen");
  if (!listen) {
    std::fprintf(stderr, "hookrelay-worker: config error: %s\n", listen.error().message.c_str());
    return 2;
  }
  init_logging("worker", config->log_level);
  if (!check_topics_at_start("hookrelay-worker", *config, ServiceKind::kWorker)) return 2;
  std::string worker_id =
      config->worker.worker_id.empty() ? default_worker_id() : config->worker.worker_id;

  auto registry = std::make_shared<prometheus::Registry>();
  ConfigReloader reloader("hookrelay-worker", start.config_path, *config, *registry);
  reloader.set_check(check_worker_config);
  WorkerMetrics metrics(*registry, static_cast<int>(config->retry.schedule_seconds.size()));
  metrics.filtered_routes(*config);
  set_filtered_observer([&metrics](std::string_view source, std::string_view route) {
    metrics.filtered(source, route);
  });
  struct ObserverReset {  // before `metrics` goes
    ~ObserverReset() { set_filtered_observer(nullptr); }
  } observer_reset;
  // A thread ended by an exception stops the worker like SIGTERM does, and it exits 1.
  ThreadFailures::instance().register_metric(*registry);
  ThreadFailures::instance().set_handler([] { kill(getpid(), SIGTERM); });
  auto producer = KafkaProducer::create(
      config->kafka, "hookrelay-worker-" + worker_id,
      {.on_error = [&metrics](std::string_view code) { metrics.kafka_error(code); }});
  if (!producer) {
    std::fprintf(stderr, "hookrelay-worker: %s\n", producer.error().message.c_str());
    return 2;
  }
  auto consumer = KafkaConsumer::create(*config, "hookrelay-worker-" + worker_id);
  if (!consumer) {
    std::fprintf(stderr, "hookrelay-worker: %s\n", consumer.error().message.c_str());
    return 2;
  }
  // A fatal consumer error (fenced by a second live worker with this group.instance.id) ends
  // the process like SIGTERM does, and it exits 1.
  std::atomic<bool> consumer_fatal{false};
  (*consumer)->set_on_fatal([&consumer_fatal](const std::string&) {
    consumer_fatal.store(true);
    kill(getpid(), SIGTERM);  // to the process: the signal thread's sigwait takes it
  });
  // Every connection of the worker: no statement, connect or silent server holds a lane (and
  // with it the worker's stop) for ever.
  const std::string db_url =
      with_service_limits(config->postgres.url, config->worker.statement_timeout_ms);
  // A schema behind this build is named now; its refused statements hold the work meanwhile.
  (void)check_schema_version(db_url);
  // Three connections: claims, records and the inbound-event audit run on lanes of their own
  // and overlap.
  PostgresDeliveryStore store(db_url);
  PostgresDeliveryStore record_store(db_url);
  PostgresDeliveryStore inbound_store(db_url);
  // Which routes are suspended, shared with every worker through Postgres; read once before
  // consuming, then every second on its own thread and connection.
  RouteStates route_states(db_url);
  RouteSync routes(route_states, metrics, unix_now_ms, {.worker_id = worker_id});
  routes.sync();
  routes.start();
  // Circuits and adaptive limits of the routes' hosts, for `hookrelay routes list`: written
  // every worker.host_states.publish_interval_ms (read at start) on a thread and connection of
  // their own; withdrawn at a clean stop.
  RouteStates host_state_store(db_url);
  HostStatePublisher host_states(
      host_state_store, &metrics,
      {.worker_id = worker_id, .interval_ms = config->worker.host_states.publish_interval_ms});
  host_states.start();
  // Per-key order of ordered routes: the held keys are read before consuming; round trips then
  // run on a thread and connection of their own.
  PostgresKeyOrderStore key_order_store(db_url);
  MessageConsumer* wake_target = consumer->get();
  KeyOrder key_order(key_order_store, **producer, *registry,
                     [wake_target] { wake_target->wake(); });
  key_order.start();  // a failed read of the held keys is logged, and tried again as it runs
  // Optional so it can be destroyed before the worker: see the end of this function.
  std::optional<CurlSender> sender;
  try {
    sender.emplace(SsrfGuard(config->worker.allow_private_networks, config->worker.allowed_cidrs),
                   config->worker.http_threads);
  } catch (const std::exception& e) {  // out of file descriptors for its epoll and eventfd
    std::fprintf(stderr, "hookrelay-worker: %s\n", e.what());
    return 2;
  }
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> uniform(0.0, 1.0);

  Worker worker({.config = &*config,
                 .consumer = consumer->get(),
                 .producer = producer->get(),
                 .sender = &*sender,
                 .store = &store,
                 .record_store = &record_store,
                 .inbound_store = &inbound_store,
                 .threaded_db = true,
                 .metrics = &metrics,
                 .now_ms = unix_now_ms,
                 .steady_ms = steady_clock_ms,
                 .rand01 = [&] { return uniform(rng); },
                 .worker_id = worker_id,
                 .routes = &routes,
                 .key_order = &key_order,
                 .host_states = &host_states});

  HttpServerOptions http;
  http.host = listen->host;
  http.port = listen->port;
  HttpServer server(http, [&](const HttpRequest& req, const Responder& respond) {
    std::string_view path = req.target.substr(0, req.target.find('?'));
    HttpResponse r;
    if (path == "/metrics") {
      for (int t = 0; t < sender->threads(); ++t) metrics.http_in_flight(t, sender->in_flight(t));
      r.content_type = "text/plain; version=0.0.4";
      r.body = serialize_metrics(*registry);
    } else if (path == "/healthz") {
      r.body = R"({"status":"ok"})";
    } else if (path == "/readyz") {
      bool ready = worker.ready();
      r.status = ready ? 200 : 503;
      r.body = ready ? R"({"status":"ready"})" : R"({"status":"not_ready"})";
    } else {
      r = json_error(404, "not_found", "no such endpoint: " + std::string(path));
    }
    respond(std::move(r));
  });
  if (auto started = server.start(); !started) {
    spdlog::critical("msg=listen_failed error={}", log_quote(started.error().message));
    return 1;
  }
  spdlog::info(
      "msg=worker_started id={} listen={}:{} group={} group_instance_id={} kafka={} "
      "max_in_flight={}",
      worker_id, listen->host, server.port(), config->worker.group_id,
      config->worker.static_membership ? config->worker.group_instance_id : "(dynamic)",
      log_quote(config->kafka.bootstrap_servers), config->worker.max_in_flight);

  // SIGHUP: the config file again (ConfigReloader); the worker installs a valid one at its next
  // loop step (Worker::reconfigure says what changes and when).
  std::thread signals = start_guarded_thread("signals", [&worker, &reloader, &metrics] {
    int sig = 0;
    while ((sig = wait_for_signal()) == SIGHUP) {
      if (auto next = reloader.reload()) {
        metrics.filtered_routes(**next);
        worker.reconfigure(*next);
      }
    }
    spdlog::info("msg=worker_stop_requested signal={}", sig);
    worker.request_stop();
  });
  worker.run();
  // run() returns after a stop request, or when the worker stopped itself (fatal_error()); then
  // the signal thread still waits, and this signal ends its wait.
  std::string fatal = worker.fatal_error();
  if (auto failed = ThreadFailures::instance().first()) {
    fatal = *failed;  // its handler already raised SIGTERM
    spdlog::critical("msg=worker_failed error={} action=\"exiting with status 1\"",
                     log_quote(fatal));
  } else if (!fatal.empty()) {
    spdlog::critical("msg=worker_failed error={} action=\"exiting with status 1\"",
                     log_quote(fatal));
    kill(getpid(), SIGTERM);
  }
  signals.join();
  (*producer)->flush(5000);
  server.stop();
  // Calls and produces still outstanding are failed by these destructors, and their callbacks
  // post to the worker: it must still exist then (declared later, it would be destroyed first).
  sender.reset();
  producer->reset();
  const int status = consumer_fatal.load() || !fatal.empty() ? 1 : 0;
  if ((*consumer)->abandoned()) {
    // Its librdkafka threads still run (KafkaConsumer::close): end here, without the exit
    // handlers and destructors they could race with.
    spdlog::shutdown();
    std::fflush(nullptr);
    std::_Exit(status);
  }
  return status;
}

}  // namespace hookrelay
