// The command groups of `hookrelay`, one file each. Every entry point takes the arguments after
// its command name ("dlq list --source x" -> {"list", "--source", "x"}), writes to the CliIo
// streams and returns an ExitCode, so tests run commands in-process.
//
// Thread-safety: a command runs on the calling thread; several may run at once on separate CliIo.
#pragma once

#include <string>
#include <vector>

#include "cli/cli_context.h"

namespace hookrelay::cli {

using Args = std::vector<std::string>;

int run_migrate(const Args& args, CliIo& io);     // config_commands.cpp
int run_config(const Args& args, CliIo& io);      // config_commands.cpp
int run_dlq(const Args& args, CliIo& io);         // dlq_commands.cpp
int run_deliveries(const Args& args, CliIo& io);  // delivery_commands.cpp
int run_events(const Args& args, CliIo& io);      // delivery_commands.cpp
int run_sign(const Args& args, CliIo& io);        // sign_commands.cpp
int run_send(const Args& args, CliIo& io);        // sign_commands.cpp
int run_topics(const Args& args, CliIo& io);      // topic_commands.cpp
int run_routes(const Args& args, CliIo& io);      // route_commands.cpp

// Parses `args` against `options` (plus --help) into `parsed`. Returns kContinue when the
// command should go on; otherwise the exit code after printing `usage` to out (--help: kExitOk)
// or the error and usage to err (kExitUsage). Defined in cli_app.cpp.
inline constexpr int kContinue = -1;

// Prints "hookrelay <command>: <message>" and the usage to err; returns kExitUsage.
int usage_error(CliIo& io, std::string_view command, const char* usage, std::string_view message);
int parse_or_help(const Args& args, const std::vector<OptionSpec>& options, const char* usage,
                  std::string_view command, CliIo& io, ParsedArgs& parsed);

}  // namespace hookrelay::cli
