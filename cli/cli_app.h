// `hookrelay`, the operator CLI: dispatches the first argument to its command group and prints
// the top-level help (commands and exit codes). main() only builds a CliIo on the process's
// streams and calls run_cli.
//
// Thread-safety: run_cli runs on the calling thread; it touches nothing global except what the
// libraries it calls do (libcurl's global init on first `send`).
#pragma once

#include <string>
#include <vector>

#include "cli/cli_context.h"

namespace hookrelay::cli {

// `args` excludes the program name. Returns the process exit code.
int run_cli(const std::vector<std::string>& args, CliIo& io);

// The top-level usage text.
const char* top_level_usage();

}  // namespace hookrelay::cli
