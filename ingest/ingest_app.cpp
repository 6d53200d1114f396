#include "ingest/ingest_app.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>

#include "ingest/ingest_service.h"
#include "shared/clock.h"
#include "shared/config/config_reloader.h"
#include "shared/http/http_server.h"
#include "shared/kafka/kafka_producer.h"
#include "shared/kafka/topic_check.h"
#include "shared/log.h"
#include "shared/service_startup.h"
#include "shared/thread_guard.h"

namespace hookrelay {
namespace {

constexpr const char* kUsage =
    "usage: hookrelay-ingest [--config PATH]\n"
    "  Accepts signed webhooks (POST /webhooks/{source}) and outbound call requests (POST "
    "/v1/calls)\n"
    "  and publishes them to Kafka. Config: --config or HOOKRELAY_CONFIG (SIGHUP reloads it). "
    "Overrides:\n"
    "  HOOKRELAY_KAFKA_BOOTSTRAP, HOOKRELAY_INGEST_LISTEN, HOOKRELAY_INGEST_METRICS_LISTEN.\n";

// Each connection holds a descriptor; past the process limit accept() fails (counted, backed
// off) before the connection cap can answer 503.
void warn_if_descriptors_short(int max_connections) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return;
  constexpr rlim_t kReserve = 64;  // Kafka sockets, the report pipe, logs
  if (static_cast<rlim_t>(max_connections) + kReserve > limit.rlim_cur) {
    spdlog::warn("msg=descriptor_limit_below_max_connections nofile={} max_connections={}",
                 limit.rlim_cur, max_connections);
  }
}

}  // namespace

int run_ingest(int argc, char** argv) {
  auto start = start_service("hookrelay-ingest", argc, argv, kUsage);
  if (!start.config) return start.exit_code;
  auto& config = start.config;
  init_logging("ingest", config->log_level);
  auto listen = parse_host_port(config->ingest.listen, "ingest.listen");
  if (!listen) {
    std::fprintf(stderr, "hookrelay-ingest: config error: %s\n", listen.error().message.c_str());
    return 2;
  }
  std::optional<HostPort> operations;
  if (!config->ingest.metrics_listen.empty()) {
    auto parsed = parse_host_port(config->ingest.metrics_listen, "ingest.metrics_listen");
    if (!parsed) {
      std::fprintf(stderr, "hookrelay-ingest: config error: %s\n", parsed.error().message.c_str());
      return 2;
    }
    operations = *parsed;
  }

  for (const auto& warning : config_warnings(*config))
    spdlog::warn("msg=config_warning warning={}", log_quote(warning));
  warn_if_descriptors_short(config->ingest.max_connections);
  if (!check_topics_at_start("hookrelay-ingest", *config, ServiceKind::kIngest)) return 2;

  auto registry = std::make_shared<prometheus::Registry>();
  // A thread ended by an exception stops ingest like SIGTERM does, and it exits 1.
  ThreadFailures::instance().register_metric(*registry);
  ThreadFailures::instance().set_handler([] { kill(getpid(), SIGTERM); });
  IngestMetrics* metrics = nullptr;
  auto producer =
      KafkaProducer::create(config->kafka, "hookrelay-ingest-" + std::to_string(getpid()),
                            {.on_error =
                                 [&metrics](std::string_view code) {
                                   if (metrics) metrics->kafka_error(code);
                                 },
                             .external_poll = true,
                             // Each request waits for its acknowledgement, so a sender with N
                             // connections gets at most N / (linger + produce round trip)
                             // answers a second: on one Kafka broker, 64 connections got
                             // 10,351/s at 5 ms and 27,517/s at 1 ms (bench/ingest). The price
                             // is smaller batches: at a steady 4,000/s (bench/e2e) ingest used
                             // about 12 µs more CPU per event, the worker about 10.
                             .default_linger_ms = 1,
                             // librdkafka sends a produce request per partition: with event ids
                             // hashed over 12 partitions, each linger's few messages went out as
                             // about as many requests. Runs of one linger on one partition keep a
                             // steady stream's in one (PartitionSpread; docs/operations.md,
                             // Scaling).
                             .sticky_partitions = true,
                             // Nothing will be produced again: stop as SIGTERM does (what is
                             // in flight gets its 503) and exit 1, so the process is restarted.
                             .on_fatal = [](const std::string&) { kill(getpid(), SIGTERM); }});
  if (!producer) {
    std::fprintf(stderr, "hookrelay-ingest: %s\n", producer.error().message.c_str());
    return 2;
  }
  IngestService service(*config, **producer, registry, unix_now_ms);
  metrics = &service.metrics();

  HttpServerOptions http;
  http.host = listen->host;
  http.port = listen->port;
  http.threads = config->ingest.threads > 0
                     ? config->ingest.threads
                     : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  http.max_body_bytes = config->ingest.max_body_bytes;
  http.max_connections = static_cast<std::size_t>(config->ingest.max_connections);
  http.max_buffered_body_bytes = config->ingest.max_buffered_body_bytes;
  http.max_header_count = static_cast<std::size_t>(config->ingest.max_headers);
  http.header_timeout = std::chrono::milliseconds(config->ingest.header_timeout_ms);
  http.idle_timeout = std::chrono::milliseconds(config->ingest.idle_timeout_ms);
  http.on_rejected = [&service](int status, std::string_view code) {
    service.count_rejected(status, code);
  };
  // What the handler refuses from a request's header alone (an unknown path or source, a wrong
  // method, /v1/calls without a valid token, a webhook without its signature headers) is refused
  // before the body is held or read: such clients cannot fill max_buffered_body_bytes and make
  // every webhook get 503.
  http.check_header = [&service](const HttpRequest& head) { return service.check_header(head); };
  http.on_accept_error = [&service](std::string_view reason) {
    service.metrics().accept_error(reason);
  };
  HttpServer server(http, [&service](const HttpRequest& req, Responder respond) {
    service.handle(req, std::move(respond));
  });
  // Delivery reports run on an HTTP loop thread: the answer to a request on that loop is
  // written without another thread hand-off.
  service.set_server_load([&server] {
    return IngestService::ServerLoad{server.open_connections(), server.buffered_body_bytes()};
  });
  server.watch_fd((*producer)->event_fd(), [p = producer->get()] { p->serve_reports(); });
  // ingest.metrics_listen: /metrics (and the health probes) on a listener of their own, which
  // the public one does not serve, so that what the metrics name (sources, error counts, load)
  // is not open to whoever can send a webhook. One thread and a few connections: scrapers and
  // probes only.
  std::optional<HttpServer> operations_server;
  if (operations) {
    HttpServerOptions ops;
    ops.host = operations->host;
    ops.port = operations->port;
    ops.threads = 1;
    ops.max_body_bytes = 4096;
    ops.max_buffered_body_bytes = std::size_t{64} * 4096;
    ops.max_connections = 64;
    ops.max_header_count = http.max_header_count;
    ops.header_timeout = http.header_timeout;
    ops.idle_timeout = http.idle_timeout;
    ops.on_rejected = http.on_rejected;
    operations_server.emplace(ops, [&service](const HttpRequest& req, const Responder& respond) {
      service.handle_operations(req, respond);
    });
    if (auto started = operations_server->start(); !started) {
      spdlog::critical("msg=listen_failed listener=metrics_listen error={}",
                       log_quote(started.error().message));
      return 1;
    }
  }
  if (auto started = server.start(); !started) {
    spdlog::critical("msg=listen_failed error={}", log_quote(started.error().message));
    return 1;
  }
  spdlog::info("msg=ingest_started listen={}:{} metrics_listen={} threads={} sources={} kafka={}",
               listen->host, server.port(),
               operations_server
                   ? operations->host + ":" + std::to_string(operations_server->port())
                   : std::string("(listen)"),
               http.threads, config->sources.size(), log_quote(config->kafka.bootstrap_servers));

  // SIGHUP: the config file again; sources, secrets, tokens and retry defaults take effect for
  // the next request, requests in flight finish under the config they started with.
  ConfigReloader reloader("hookrelay-ingest", start.config_path, *config, *registry);
  int sig = 0;
  while ((sig = wait_for_signal()) == SIGHUP) {
    if (auto next = reloader.reload()) service.reload(*next);
  }
  spdlog::info("msg=ingest_draining signal={} in_flight={}", sig, service.in_flight());
  service.begin_shutdown();
  server.stop_accepting();
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(reloader.current()->ingest.shutdown_grace_ms);
  while (service.in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  int unanswered = service.in_flight();
  if (unanswered > 0) {
    // What is still out (a broker slower than the grace) is purged now, while the HTTP loops
    // still run: each request is answered through them (503, and delivery_outcome_unknown with
    // what a retry does when the message was sent), and no acknowledgement can come after the
    // loops stop, when a 202 would be counted and never written.
    (*producer)->purge_outstanding();
    const auto answered_by = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (service.in_flight() > 0 && std::chrono::steady_clock::now() < answered_by) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  // Give the HTTP threads a moment to write the last answers before the loops stop.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server.stop();
  if (operations_server) operations_server->stop();
  (*producer)->flush(1000);  // serves any last reports itself now that the loops are gone
  // Anything left is reported now, while the service and the server its callbacks answer
  // through still exist.
  (*producer)->close();
  if (unanswered > 0) {
    spdlog::error("msg=ingest_drain_incomplete unanswered={}", unanswered);
  }
  spdlog::info("msg=ingest_stopped unanswered={}", unanswered);
  if ((*producer)->fatal()) {
    spdlog::critical(
        "msg=ingest_failed error=\"the Kafka producer hit a fatal error (logged as "
        "kafka_producer_fatal)\" action=\"exiting with status 1\"");
    return 1;
  }
  if (auto failed = ThreadFailures::instance().first()) {
    spdlog::critical("msg=ingest_failed error={} action=\"exiting with status 1\"",
                     log_quote(*failed));
    return 1;
  }
  return 0;
}

}  // namespace hookrelay
