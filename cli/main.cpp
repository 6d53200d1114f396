#include <chrono>
#include <csignal>
#include <iostream>
#include <thread>

#include "cli/cli_app.h"
#include "shared/clock.h"
#include "shared/log.h"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // `hookrelay dlq list | head` must not kill a replay midway
  // Library warnings (Kafka reconnects, ...) go to stderr, never into --json output on stdout.
  hookrelay::init_logging("hookrelay", "warn");
  hookrelay::cli::CliIo io{
      std::cin,
      std::cout,
      std::cerr,
      hookrelay::process_env(),
      hookrelay::unix_now_ms,
      [](int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }};
  int code = hookrelay::cli::run_cli(std::vector<std::string>(argv + 1, argv + argc), io);
  std::cout.flush();
  return code;
}
