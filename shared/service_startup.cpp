#include "shared/service_startup.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace hookrelay {

Result<StartupOptions> parse_startup_args(int argc, char** argv) {
  StartupOptions o;
  if (const char* env = std::getenv("HOOKRELAY_CONFIG")) o.config_path = env;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      o.help = true;
    } else if (a == "--config" && i + 1 < argc) {
      o.config_path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      o.config_path = std::string(a.substr(9));
    } else {
      return fail("usage", "unknown argument '" + std::string(a) + "'");
    }
  }
  return o;
}

std::optional<Config> load_service_config(const std::string& service,
                                          const StartupOptions& options) {
  if (options.config_path.empty()) {
    std::fprintf(stderr,
                 "%s: config error: no config file (use --config PATH or HOOKRELAY_CONFIG)\n",
                 service.c_str());
    return std::nullopt;
  }
  auto c = load_config_file(options.config_path, process_env());
  if (!c) {
    std::fprintf(stderr, "%s: config error: %s\n", service.c_str(), c.error().message.c_str());
    return std::nullopt;
  }
  return std::move(*c);
}

ServiceStart start_service(const std::string& service, int argc, char** argv, const char* usage) {
  block_termination_signals();
  auto args = parse_startup_args(argc, argv);
  if (!args) {
    std::fprintf(stderr, "%s: %s\n%s", service.c_str(), args.error().message.c_str(), usage);
    return {std::nullopt, 2, {}};
  }
  if (args->help) {
    std::fputs(usage, stdout);
    return {std::nullopt, 0, {}};
  }
  auto config = load_service_config(service, *args);
  if (!config) return {std::nullopt, 2, {}};
  return {std::move(config), 0, args->config_path};
}

namespace {
sigset_t termination_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}
}  // namespace

void block_termination_signals() {
  sigset_t set = termination_set();
  sigaddset(&set, SIGPIPE);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int wait_for_termination_signal() {
  sigset_t set = termination_set();
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

int wait_for_signal() {
  sigset_t set = termination_set();
  sigaddset(&set, SIGHUP);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace hookrelay
