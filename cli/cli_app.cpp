#include "cli/cli_app.h"

#include <ostream>

#include "cli/commands.h"

namespace hookrelay::cli {
namespace {

constexpr const char* kUsage =
    "usage: hookrelay COMMAND [ARGS...]   (hookrelay COMMAND --help for details)\n"
    "\n"
    "Operator tool for hookrelay: schema, configuration, dead letters and audit.\n"
    "\n"
    "commands:\n"
    "  migrate                      apply pending SQL migrations\n"
    "  config check [FILE]          validate a configuration file as the services do\n"
    "  topics apply                 create the Kafka topics, raise partitions, set configs;\n"
    "                               lowering retention or raising hookrelay.webhooks from one\n"
    "                               partition with ordered routes needs "
    "--allow-retention-decrease\n"
    "                               / --allow-partition-increase\n"
    "  topics check                 report how the Kafka topics differ from the config\n"
    "  dlq list                     list dead deliveries (filters, table or --json)\n"
    "  dlq show KEY                 one dead delivery: state, attempts, replays\n"
    "  dlq replay KEY... | FILTERS  put dead deliveries back into the retry flow\n"
    "  deliveries show KEY          one delivery with its attempt audit trail\n"
    "  events show SOURCE EVENT_ID  an inbound event and its deliveries\n"
    "  routes list                  routes with their state, failure streak, parked deliveries\n"
    "  routes suspend|resume NAME   park a route's deliveries / release them in order\n"
    "  sign --source NAME FILE      print the headers a provider would send for FILE\n"
    "  send --source NAME FILE      post a signed test webhook to a running ingest\n"
    "  help [COMMAND]               this text, or a command's\n"
    "\n"
    "common options: --config PATH (or HOOKRELAY_CONFIG; never empty), --database-url URL (or\n"
    "HOOKRELAY_DATABASE_URL, or postgres.url), --bootstrap HOSTS (or HOOKRELAY_KAFKA_BOOTSTRAP,\n"
    "or kafka.bootstrap_servers), --json. Database commands give up on a lock held elsewhere\n"
    "after 5 s and on a statement after 60 s.\n"
    "\n"
    "exit codes:\n"
    "  0  success\n"
    "  1  the operation failed (database, Kafka or HTTP error; replay failures; topics apply:\n"
    "     a difference left or a change refused)\n"
    "  2  usage error or invalid configuration\n"
    "  3  not found (delivery, event, route, or DLQ message)\n"
    "  130  dlq replay interrupted (SIGINT, SIGTERM) between two keys\n";

using Runner = int (*)(const Args&, CliIo&);

struct Command {
  const char* name;
  Runner run;
};

constexpr Command kCommands[] = {
    {"migrate", run_migrate}, {"config", run_config},
    {"dlq", run_dlq},         {"deliveries", run_deliveries},
    {"events", run_events},   {"sign", run_sign},
    {"send", run_send},       {"topics", run_topics},
    {"routes", run_routes},
};

Runner find(const std::string& name) {
  for (const auto& c : kCommands) {
    if (name == c.name) return c.run;
  }
  return nullptr;
}

}  // namespace

const char* top_level_usage() { return kUsage; }

int usage_error(CliIo& io, std::string_view command, const char* usage, std::string_view message) {
  io.err << "hookrelay " << command << ": " << message << "\n" << usage;
  return kExitUsage;
}

int parse_or_help(const Args& args, const std::vector<OptionSpec>& options, const char* usage,
                  std::string_view command, CliIo& io, ParsedArgs& parsed) {
  auto r = parse_args(args, options);
  if (!r) return usage_error(io, command, usage, r.error().message);
  parsed = std::move(*r);
  if (parsed.has("--help")) {
    io.out << usage;
    return kExitOk;
  }
  return kContinue;
}

int run_cli(const std::vector<std::string>& args, CliIo& io) {
  if (args.empty()) {
    io.err << kUsage;
    return kExitUsage;
  }
  const std::string& command = args[0];
  if (command == "--help" || command == "-h") {
    io.out << kUsage;
    return kExitOk;
  }
  if (command == "help") {
    if (args.size() == 1) {
      io.out << kUsage;
      return kExitOk;
    }
    Args rest(args.begin() + 1, args.end());
    rest.emplace_back("--help");
    if (Runner run = find(rest[0])) return run(Args(rest.begin() + 1, rest.end()), io);
    io.err << "hookrelay: unknown command '" << rest[0] << "'\n" << kUsage;
    return kExitUsage;
  }
  if (Runner run = find(command)) return run(Args(args.begin() + 1, args.end()), io);
  io.err << "hookrelay: unknown command '" << command << "'\n" << kUsage;
  return kExitUsage;
}

}  // namespace hookrelay::cli
