#include "cli/cli_context.h"

#include <ostream>

#include "shared/store/pg_connection.h"

namespace hookrelay::cli {

int exit_code_for(const Error& error) {
  if (error.code == "not_found") return kExitNotFound;
  if (error.code == "usage" || error.code == "config" || error.code == "bad_filter" ||
      error.code == "migrations_dir") {
    return kExitUsage;
  }
  return kExitFailed;
}

int report_error(const CliIo& io, std::string_view command, const Error& error) {
  io.err << "hookrelay " << command << ": " << error.message << "\n";
  // PostgreSQL's words for the CLI's own limits (with_cli_limits), with what to do about them.
  if (error.message.find("canceling statement due to lock timeout") != std::string::npos) {
    io.err << "hookrelay " << command << ": gave up after waiting " << kCliLockTimeoutMs / 1000
           << " s for a row another transaction holds (a worker, an open psql session: see "
              "pg_locks); nothing was changed, try again\n";
  }
  return exit_code_for(error);
}

Result<std::optional<Config>> load_cli_config(const ParsedArgs& args, const CliIo& io) {
  std::optional<std::string> path = args.value("--config");
  if (path && path->empty()) return fail("usage", "--config: must not be empty");
  if (!path) path = io.env("HOOKRELAY_CONFIG");
  if (!path || path->empty()) return std::optional<Config>{};
  auto config = load_config_file(*path, io.env);
  if (!config) return fail("config", *path + ": config error: " + config.error().message);
  return std::optional<Config>{std::move(*config)};
}

Result<Config> require_cli_config(const ParsedArgs& args, const CliIo& io) {
  auto config = load_cli_config(args, io);
  if (!config) return Unexpected{config.error()};
  if (!*config)
    return fail("config", "no configuration: pass --config PATH or set HOOKRELAY_CONFIG");
  return std::move(**config);
}

Result<std::string> resolve_database_url(const ParsedArgs& args, const CliIo& io) {
  if (auto url = args.value("--database-url"); url && !url->empty()) return *url;
  auto config = load_cli_config(args, io);
  if (!config) return Unexpected{config.error()};
  if (*config && !(*config)->postgres.url.empty()) return (*config)->postgres.url;
  if (auto url = io.env("HOOKRELAY_DATABASE_URL"); url && !url->empty()) return *url;
  return fail("usage",
              "no database: pass --database-url, set HOOKRELAY_DATABASE_URL, or postgres.url in "
              "the config");
}

std::string with_cli_limits(const std::string& url) {
  return with_session_setting(with_service_limits(url, 0), "lock_timeout",
                              std::to_string(kCliLockTimeoutMs));
}

Result<KafkaConfig> resolve_kafka(const ParsedArgs& args, const CliIo& io) {
  auto config = load_cli_config(args, io);
  if (!config) return Unexpected{config.error()};
  KafkaConfig kafka = *config ? (*config)->kafka : KafkaConfig{};
  if (auto b = args.value("--bootstrap"); b && !b->empty()) {
    kafka.bootstrap_servers = *b;
  } else if (!*config) {
    auto env = io.env("HOOKRELAY_KAFKA_BOOTSTRAP");
    if (!env || env->empty()) {
      return fail("usage",
                  "no Kafka brokers: pass --bootstrap, set HOOKRELAY_KAFKA_BOOTSTRAP, or "
                  "kafka.bootstrap_servers in the config");
    }
    kafka.bootstrap_servers = *env;
  }
  return kafka;
}

}  // namespace hookrelay::cli
