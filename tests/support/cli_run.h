// run_cli_in_process: a `hookrelay` command run in this process (cli::run_cli) with the process
// environment, the real clock and real sleeps; what it printed and its exit code.
//
// Thread-safety: one command per call; calls on separate threads do not share streams.
#pragma once

#include <chrono>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_app.h"
#include "shared/clock.h"

namespace hookrelay::test {

struct CliRun {
  int code = -1;
  std::string out;
  std::string err;
};

inline CliRun run_cli_in_process(const std::vector<std::string>& args) {
  std::istringstream in;
  std::ostringstream out, err;
  cli::CliIo io{
      in,          out,
      err,         process_env(),
      unix_now_ms, [](int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }};
  CliRun r;
  r.code = cli::run_cli(args, io);
  r.out = out.str();
  r.err = err.str();
  return r;
}

}  // namespace hookrelay::test
