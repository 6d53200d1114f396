// What every `hookrelay` command shares: its streams and environment (injected, so commands are
// testable without a process), the documented exit codes, and where the configuration, the
// database and Kafka come from.
//
//   config    --config PATH, else $HOOKRELAY_CONFIG, else none (commands that need it say so)
//   database  --database-url, else postgres.url of the config (which HOOKRELAY_DATABASE_URL
//             already overrides), else $HOOKRELAY_DATABASE_URL
//   kafka     --bootstrap, else the config's kafka section (HOOKRELAY_KAFKA_BOOTSTRAP
//             overrides), else $HOOKRELAY_KAFKA_BOOTSTRAP
//
// Thread-safety: a CliIo belongs to the command running on it.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>

#include "cli/cli_args.h"
#include "shared/config/config.h"
#include "shared/result.h"

namespace hookrelay::cli {

// The exit codes of every command (also in `hookrelay --help` and docs/cli.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitFailed = 1,         // the operation failed: database, Kafka or HTTP error
  kExitUsage = 2,          // bad arguments or an invalid configuration
  kExitNotFound = 3,       // the delivery, event or DLQ message does not exist
  kExitInterrupted = 130,  // SIGINT or SIGTERM ended a replay between two keys
};

struct CliIo {
  std::istream& in;
  std::ostream& out;
  std::ostream& err;
  EnvLookup env;
  std::function<int64_t()> now_ms;
  std::function<void(int64_t ms)> sleep_ms;
};

// Options every command that talks to a service accepts.
inline const OptionSpec kConfigOption{"--config", true, true};  // never empty
inline const OptionSpec kDatabaseOption{"--database-url", true};
inline const OptionSpec kBootstrapOption{"--bootstrap", true};
inline const OptionSpec kJsonOption{"--json", false};

// The exit code an Error from a library call stands for.
int exit_code_for(const Error& error);

// Prints "hookrelay <command>: <message>" to err and returns exit_code_for(error).
int report_error(const CliIo& io, std::string_view command, const Error& error);

// The config named by --config or $HOOKRELAY_CONFIG; nullopt when neither is set. Error code
// "config" (exit 2) when the file is unreadable or invalid; the message names the field; "usage"
// (exit 2) when --config is given empty (it does not mean "none").
Result<std::optional<Config>> load_cli_config(const ParsedArgs& args, const CliIo& io);

// The config, required: Error "config" when none is named.
Result<Config> require_cli_config(const ParsedArgs& args, const CliIo& io);

// Error "usage" (exit 2) when no source names a database.
Result<std::string> resolve_database_url(const ParsedArgs& args, const CliIo& io);

// The URL the CLI's database commands connect with (not migrate, whose statements may rightly
// run long): `url` with the services' connection limits (shared/store/pg_connection.h,
// with_service_limits: a connect gives up after 10 s, a silent server is dropped) and each lock
// wait ended after kCliLockTimeoutMs (SQLSTATE 55P03), so that a command never hangs on a row
// another transaction holds. No statement timeout: a read of a large table (`dlq list --status
// succeeded`, the parked keys of a route resumed after a long suspension) may rightly take long,
// and a command cut there could not be finished by running it again. Connection keywords in
// `url` (connect_timeout...) win.
inline constexpr int kCliLockTimeoutMs = 5000;
std::string with_cli_limits(const std::string& url);

// Kafka client settings; Error "usage" when no source names the brokers.
Result<KafkaConfig> resolve_kafka(const ParsedArgs& args, const CliIo& io);

}  // namespace hookrelay::cli
