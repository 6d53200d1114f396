// `hookrelay migrate` and `hookrelay config check`.
#include <filesystem>
#include <ostream>

#include "cli/commands.h"
#include "shared/kafka/kafka_handles.h"
#include "shared/store/migrator.h"

#ifndef HOOKRELAY_SOURCE_MIGRATIONS_DIR
#define HOOKRELAY_SOURCE_MIGRATIONS_DIR "migrations"
#endif

namespace hookrelay::cli {
namespace {

constexpr const char* kMigrateUsage =
    "usage: hookrelay migrate [--dir DIR] [--database-url URL] [--config PATH]\n"
    "  Applies the migrations/NNNN_name.sql files the database has not applied yet, in order,\n"
    "  each in its own transaction, under an advisory lock (concurrent runs wait). Safe to\n"
    "  run again: an up-to-date schema is a no-op.\n"
    "  --dir DIR   migrations directory; default $HOOKRELAY_MIGRATIONS_DIR, else ./migrations,\n"
    "              else the source tree's migrations/\n"
    "  exit: 0 applied or up to date, 1 database error or failed migration, 2 usage/config\n";

constexpr const char* kConfigUsage =
    "usage: hookrelay config check [FILE]\n"
    "  Loads FILE (default --config or $HOOKRELAY_CONFIG) exactly as hookrelay-ingest and\n"
    "  hookrelay-worker do at start: ${VAR} expansion from the environment, the HOOKRELAY_*\n"
    "  address overrides, full validation. Prints 'FILE: ok (...)' or the offending field.\n"
    "  exit: 0 valid, 2 invalid or unreadable (the message names the field)\n";

std::string migrations_dir(const ParsedArgs& args, const CliIo& io) {
  if (auto dir = args.value("--dir")) return *dir;
  if (auto env = io.env("HOOKRELAY_MIGRATIONS_DIR"); env && !env->empty()) return *env;
  std::error_code ec;
  if (std::filesystem::is_directory("migrations", ec)) return "migrations";
  return HOOKRELAY_SOURCE_MIGRATIONS_DIR;
}

// What the services check after parsing: the Kafka clients refuse unknown librdkafka properties
// or values when they are built.
Result<void> check_service_rules(const Config& config) {
  return check_kafka_properties(config.kafka);
}

int config_check(const ParsedArgs& args, CliIo& io) {
  const auto& pos = args.positionals();
  if (pos.size() > 2) {
    io.err << "hookrelay config check: expected at most one FILE\n" << kConfigUsage;
    return kExitUsage;
  }
  std::optional<std::string> path;
  if (pos.size() == 2) path = pos[1];
  if (!path) path = args.value("--config");
  if (!path) path = io.env("HOOKRELAY_CONFIG");
  if (!path || path->empty()) {
    io.err << "hookrelay config check: no FILE given and HOOKRELAY_CONFIG is not set\n"
           << kConfigUsage;
    return kExitUsage;
  }
  auto config = load_config_file(*path, io.env);
  if (!config) {
    io.err << *path << ": config error: " << config.error().message << "\n";
    return kExitUsage;
  }
  if (auto rules = check_service_rules(*config); !rules) {
    io.err << *path << ": config error: " << rules.error().message << "\n";
    return kExitUsage;
  }
  std::size_t routes = 0, filtered = 0;
  for (const auto& [source, list] : config->routes) {
    routes += list.size();
    for (const auto& route : list) filtered += route.filter.empty() ? 0 : 1;
  }
  io.out << *path << ": ok (" << config->sources.size() << " sources, " << routes << " routes, ";
  if (filtered > 0) io.out << filtered << " with filters, ";
  io.out << config->retry.schedule_seconds.size() << " retry tiers, max "
         << config->retry.max_attempts << " attempts)\n";
  if (config->postgres.url.empty()) {
    io.err << "warning: postgres.url is empty: hookrelay-worker will not start unless "
              "HOOKRELAY_DATABASE_URL is set\n";
  }
  for (const auto& warning : config_warnings(*config)) io.err << "warning: " << warning << "\n";
  for (const auto& [name, source] : config->sources) {
    if (config->routes.count(name) == 0) {
      io.err << "warning: source '" << name
             << "' has no routes: its webhooks are accepted and "
                "then dropped\n";
    }
  }
  return kExitOk;
}

}  // namespace

int run_migrate(const Args& args, CliIo& io) {
  ParsedArgs parsed;
  int rc = parse_or_help(args, {kConfigOption, kDatabaseOption, {"--dir", true}}, kMigrateUsage,
                         "migrate", io, parsed);
  if (rc != kContinue) return rc;
  if (!parsed.positionals().empty()) {
    io.err << "hookrelay migrate: unexpected argument '" << parsed.positionals()[0] << "'\n"
           << kMigrateUsage;
    return kExitUsage;
  }
  auto url = resolve_database_url(parsed, io);
  if (!url) return report_error(io, "migrate", url.error());
  const std::string dir = migrations_dir(parsed, io);
  auto applied = migrate(*url, dir);
  if (!applied) return report_error(io, "migrate", applied.error());
  if (applied->empty()) {
    io.out << "schema up to date (" << dir << ")\n";
  } else {
    for (const auto& version : *applied) io.out << "applied " << version << "\n";
    io.out << applied->size() << " migration(s) applied from " << dir << "\n";
  }
  return kExitOk;
}

int run_config(const Args& args, CliIo& io) {
  ParsedArgs parsed;
  int rc = parse_or_help(args, {kConfigOption}, kConfigUsage, "config", io, parsed);
  if (rc != kContinue) return rc;
  if (parsed.positionals().empty() || parsed.positionals()[0] != "check") {
    io.err << "hookrelay config: expected the subcommand 'check'\n" << kConfigUsage;
    return kExitUsage;
  }
  return config_check(parsed, io);
}

}  // namespace hookrelay::cli
