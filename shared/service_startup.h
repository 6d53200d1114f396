// What every hookrelay service does before its own work: read --config / HOOKRELAY_CONFIG,
// validate it (exit 2 with the field named), and block termination signals so one thread can
// wait for them.
#pragma once

#include <optional>
#include <string>

#include "shared/config/config.h"

namespace hookrelay {

struct StartupOptions {
  std::string config_path;
  bool help = false;
};

// Parses `--config PATH` / `--config=PATH` / `--help`; the path defaults to HOOKRELAY_CONFIG.
// Error names the bad argument.
Result<StartupOptions> parse_startup_args(int argc, char** argv);

// Loads the config or prints "<service>: config error: ..." to stderr and returns nullopt.
std::optional<Config> load_service_config(const std::string& service,
                                          const StartupOptions& options);

// What every service's run_*() does first: blocks termination signals, parses the arguments,
// prints `usage` for --help (exit 0) or with a bad argument (exit 2), and loads the config
// (exit 2, the field named). `config` is set when the service should go on; otherwise the
// process ends with `exit_code`.
struct ServiceStart {
  std::optional<Config> config;
  int exit_code = 0;
  std::string config_path;  // where it was read from: what a reload (SIGHUP) reads again
};
ServiceStart start_service(const std::string& service, int argc, char** argv, const char* usage);

// Blocks SIGTERM, SIGINT, SIGHUP and SIGPIPE for this thread and the threads it starts
// afterwards. Call first thing in main, before any thread exists. A service that does not wait
// for SIGHUP (wait_for_signal) leaves it pending: it neither reloads nor dies of it.
void block_termination_signals();

// Waits for SIGTERM or SIGINT; returns its number.
int wait_for_termination_signal();

// Waits for SIGTERM, SIGINT or SIGHUP (reload); returns its number.
int wait_for_signal();

}  // namespace hookrelay
