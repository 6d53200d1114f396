#include "shared/config/config_reloader.h"

#include <spdlog/spdlog.h>

#include "shared/log.h"

namespace hookrelay {
namespace {

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ",") + n;
  return out;
}

}  // namespace

std::vector<std::string> restart_only_changes(const Config& a, const Config& b) {
  std::vector<std::string> out;
  auto check = [&out](bool differs, const char* field) {
    if (differs) out.emplace_back(field);
  };
  check(a.kafka.bootstrap_servers != b.kafka.bootstrap_servers, "kafka.bootstrap_servers");
  check(a.kafka.properties != b.kafka.properties, "kafka.properties");
  check(a.kafka.producer_properties != b.kafka.producer_properties, "kafka.producer_properties");
  check(a.kafka.consumer_properties != b.kafka.consumer_properties, "kafka.consumer_properties");
  // Each producer's message.timeout.ms, set when it is made.
  check(a.kafka.produce_timeout_ms != b.kafka.produce_timeout_ms, "kafka.produce_timeout_ms");
  check(a.ingest.listen != b.ingest.listen, "ingest.listen");
  check(a.ingest.metrics_listen != b.ingest.metrics_listen, "ingest.metrics_listen");
  check(a.ingest.threads != b.ingest.threads, "ingest.threads");
  check(a.ingest.max_body_bytes != b.ingest.max_body_bytes, "ingest.max_body_bytes");
  check(a.ingest.max_connections != b.ingest.max_connections, "ingest.max_connections");
  check(a.ingest.max_buffered_body_bytes != b.ingest.max_buffered_body_bytes,
        "ingest.max_buffered_body_bytes");
  check(a.ingest.max_headers != b.ingest.max_headers, "ingest.max_headers");
  check(a.ingest.header_timeout_ms != b.ingest.header_timeout_ms, "ingest.header_timeout_ms");
  check(a.ingest.idle_timeout_ms != b.ingest.idle_timeout_ms, "ingest.idle_timeout_ms");
  check(a.postgres.url != b.postgres.url, "postgres.url");
  check(a.worker.listen != b.worker.listen, "worker.listen");
  check(a.worker.group_id != b.worker.group_id, "worker.group_id");
  check(a.worker.http_threads != b.worker.http_threads, "worker.http_threads");
  check(a.worker.worker_id != b.worker.worker_id, "worker.worker_id");
  check(a.worker.group_instance_id != b.worker.group_instance_id, "worker.group_instance_id");
  check(a.worker.static_membership != b.worker.static_membership, "worker.static_membership");
  check(a.worker.allow_private_networks != b.worker.allow_private_networks,
        "worker.allow_private_networks");
  check(a.worker.allowed_cidrs != b.worker.allowed_cidrs, "worker.allowed_cidrs");
  check(a.worker.host_states.publish_interval_ms != b.worker.host_states.publish_interval_ms,
        "worker.host_states.publish_interval_ms");
  check(a.worker.statement_timeout_ms != b.worker.statement_timeout_ms,
        "worker.statement_timeout_ms");
  // One retry topic per tier: the worker consumes the tiers it started with.
  check(a.retry.schedule_seconds.size() != b.retry.schedule_seconds.size(),
        "retry.schedule_seconds (tier count)");
  check(a.admin.listen != b.admin.listen, "admin.listen");
  check(a.admin.threads != b.admin.threads, "admin.threads");
  check(a.admin.statement_timeout_ms != b.admin.statement_timeout_ms, "admin.statement_timeout_ms");
  check(a.log_level != b.log_level, "log_level");
  return out;
}

ConfigReloader::ConfigReloader(std::string service, std::string path, Config initial,
                               prometheus::Registry& registry, EnvLookup env)
    : service_(std::move(service)),
      path_(std::move(path)),
      env_(std::move(env)),
      current_(std::make_shared<const Config>(std::move(initial))),
      applied_(prometheus::BuildCounter()
                   .Name("hookrelay_config_reloads_total")
                   .Help("Configuration reloads (SIGHUP) by result: applied or invalid (the old "
                         "config stays)")
                   .Register(registry)
                   .Add({{"result", "applied"}})),
      invalid_(prometheus::BuildCounter()
                   .Name("hookrelay_config_reloads_total")
                   .Help("Configuration reloads (SIGHUP) by result: applied or invalid (the old "
                         "config stays)")
                   .Register(registry)
                   .Add({{"result", "invalid"}})) {}

Result<std::shared_ptr<const Config>> ConfigReloader::reload() {
  auto loaded = load_config_file(path_, env_);
  if (loaded && check_) {
    if (auto checked = check_(*loaded); !checked) loaded = Unexpected{checked.error()};
  }
  if (!loaded) {
    invalid_.Increment();
    spdlog::error("msg=config_reload_refused service={} error={}", service_,
                  log_quote(loaded.error().message));
    return Unexpected{loaded.error()};
  }
  auto next = std::make_shared<const Config>(std::move(*loaded));
  auto before = current_.load();
  const auto fixed = restart_only_changes(*before, *next);
  current_.store(next);
  applied_.Increment();
  if (fixed.empty()) {
    spdlog::info("msg=config_reloaded service={}", service_);
  } else {
    spdlog::warn("msg=config_reloaded service={} restart_required_for={}", service_,
                 join_names(fixed));
  }
  for (const auto& warning : config_warnings(*next))
    spdlog::warn("msg=config_warning warning={}", log_quote(warning));
  return next;
}

}  // namespace hookrelay
