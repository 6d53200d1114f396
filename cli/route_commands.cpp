// `hookrelay routes list|suspend|resume`: route lifecycle (shared/routes/route_control.h, the same
// implementation as the admin API's /v1/routes).
#include <memory>
#include <ostream>
#include <set>

#include "cli/commands.h"
#include "cli/output.h"
#include "cli/replay_stop.h"
#include "shared/json_writer.h"
#include "shared/kafka/kafka_admin.h"
#include "shared/kafka/kafka_producer.h"
#include "shared/kafka/wire_contract.h"
#include "shared/replay/dlq_reader.h"
#include "shared/replay/dlq_replay.h"
#include "shared/routes/route_control.h"
#include "shared/store/delivery_queries.h"

namespace hookrelay::cli {
namespace {

constexpr const char* kUsage =
    "usage: hookrelay routes list [--json]\n"
    "       hookrelay routes suspend NAME [--source S] [--reason TEXT] [--by WHO] [--json]\n"
    "       hookrelay routes resume NAME [--source S] [--rate N/s] [--by WHO]\n"
    "                               [--unfinished-after DURATION] [--json]\n"
    "\n"
    "  list     every configured route: state (active or suspended, why, since when, by whom),\n"
    "           failure streak across all workers, deliveries parked, and its destination\n"
    "           host as the workers see it: circuit (closed, open until when, half_open;\n"
    "           unknown when no worker published in the last 15 s) and adaptive in-flight\n"
    "           limit (the lowest of the workers / the configured maximum).\n"
    "  suspend  suspends the route: workers park its deliveries (state parked, message in\n"
    "           hookrelay.parked) within a second, instead of attempting them. A 410 Gone or the\n"
    "           route's suspend_after bound does the same by itself.\n"
    "  resume   makes the route active again and releases its parked deliveries into the retry\n"
    "           flow in the order they arrived, each once, at --rate (default unpaced), with\n"
    "           progress on stderr. Kafka must answer, with hookrelay.parked, within --timeout\n"
    "           first: if not, the route is left as it was (exit 1), so new deliveries do not\n"
    "           overtake the parked ones. Run it again to release deliveries a failed release\n"
    "           left; a key a release marked and did not produce (it was killed between the two) "
    "is\n"
    "           produced again once its mark is --unfinished-after old (default 5m). SIGINT or\n"
    "           SIGTERM stops it after the key in progress (exit 130).\n"
    "  NAME is the route's name; --source is needed when several sources have a route of that\n"
    "  name. --by names who did it (default $USER).\n"
    "\n"
    "  common: --config PATH (required: routes come from it), --database-url URL,\n"
    "          --bootstrap HOSTS (resume), --timeout SECONDS (Kafka, default 30)\n"
    "  exit: 0 ok; 1 database/Kafka error or a release failed; 2 usage/config;\n"
    "        3 no such route, or a parked delivery's message is missing;\n"
    "        130 resume interrupted (SIGINT, SIGTERM): run it again\n";

const std::vector<OptionSpec> kRouteOptions = {
    kConfigOption,       kDatabaseOption,
    kBootstrapOption,    kJsonOption,
    {"--source", true},  {"--reason", true},
    {"--rate", true},    {"--by", true},
    {"--timeout", true}, {"--unfinished-after", true},
};

// A release killed between marking a key and producing its message leaves the key 'retrying'
// with its message in hookrelay.parked; a later resume takes up at most this many such keys once
// their mark is --unfinished-after old (cli/replay_stop.h).
constexpr int kMaxUnfinishedTakenUp = 100000;

// The route errors as exit codes: an unknown route is "not found"; a name two sources use is
// a usage error.
int route_error(CliIo& io, std::string_view command, const Error& e) {
  if (e.code == "route_not_found") {
    io.err << "hookrelay " << command << ": " << e.message << "\n";
    return kExitNotFound;
  }
  if (e.code == "ambiguous_route") {
    io.err << "hookrelay " << command << ": " << e.message << " (--source)\n";
    return kExitUsage;
  }
  return report_error(io, command, e);
}

std::string streak_text(const RouteStateRow& s) {
  if (s.failure_streak == 0) return "0";
  return std::to_string(s.failure_streak) + " since " + format_time(s.failing_since_ms);
}

std::string circuit_text(const RouteDestination& d) {
  if (d.host.empty()) return "-";
  std::string text = d.circuit;
  if (d.circuit == "open" && d.open_until_ms > 0) text += " until " + format_time(d.open_until_ms);
  if (d.paused_until_ms > 0) text += ", paused until " + format_time(d.paused_until_ms);
  return text;
}

std::string limit_text(const RouteDestination& d) {
  if (!d.adaptive_limit || !d.max_limit) return "-";
  if (*d.max_limit <= 0) return "unlimited";
  return std::to_string(*d.adaptive_limit) + "/" + std::to_string(*d.max_limit);
}

void print_route(std::ostream& out, const RouteView& v) {
  out << v.source << "/" << v.name << ": " << v.state.state;
  if (v.state.state == "suspended") {
    // Both come from the database (an operator's --by and --reason, a worker's words): no
    // escape sequence reaches the terminal.
    out << " since " << format_time(v.state.suspended_at_ms) << " by "
        << one_line(v.state.suspended_by, 80) << " (" << one_line(v.state.reason, 200) << ")";
  }
  out << ", failure streak " << streak_text(v.state) << ", " << v.state.parked << " parked";
  if (!v.destination.host.empty()) {
    out << ", host " << v.destination.host << " circuit " << circuit_text(v.destination)
        << ", limit " << limit_text(v.destination);
  }
  out << "\n";
}

int routes_list(const ParsedArgs& args, CliIo& io, const Config& config, RouteStates& states) {
  auto routes = list_routes(config, states);
  if (!routes) return report_error(io, "routes list", routes.error());
  if (args.has("--json")) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& v : *routes) rows.push_back(route_json(v, format_time));
    io.out << json_text({{"routes", rows}}, 2) << "\n";
    return kExitOk;
  }
  Table t({"SOURCE", "ROUTE", "STATE", "SINCE", "REASON", "FAILURE STREAK", "PARKED", "CIRCUIT",
           "LIMIT", "URL"});
  for (const auto& v : *routes) {
    const auto& s = v.state;
    const bool suspended = s.state == "suspended";
    t.add_row({v.source, v.name, v.configured ? s.state : s.state + " (not configured)",
               suspended ? format_time(s.suspended_at_ms) : "-",
               suspended ? one_line(s.reason, 60) : "-", streak_text(s), std::to_string(s.parked),
               circuit_text(v.destination), limit_text(v.destination), v.configured ? v.url : "-"});
  }
  if (t.empty()) {
    io.out << "no routes configured\n";
  } else {
    t.print(io.out);
  }
  return kExitOk;
}

int routes_suspend(const ParsedArgs& args, CliIo& io, const Config& config, RouteStates& states,
                   const std::string& name, const std::string& who) {
  auto done = suspend_route(config, states, name, args.value_or("--source", ""), who,
                            args.value_or("--reason", ""));
  if (!done) return route_error(io, "routes suspend", done.error());
  if (args.has("--json")) {
    io.out << json_text(
                  {{"route", route_json(done->route, format_time)}, {"changed", done->changed}}, 2)
           << "\n";
  } else {
    if (!done->changed) io.out << "already suspended\n";
    print_route(io.out, done->route);
  }
  return kExitOk;
}

// The Kafka clients of a release, made before the route is resumed.
struct ReleaseClients {
  KafkaConfig kafka;
  std::unique_ptr<KafkaDlqReader> reader;  // of hookrelay.parked
  std::unique_ptr<KafkaProducer> producer;
};

// Builds the release's reader and producer and checks that Kafka answers and has
// hookrelay.parked, within `seconds`. Run before the route is made active: once active, new
// deliveries go ahead of the parked ones (an ordered route's would be delivered out of order),
// so a release that cannot start must leave the route as it was.
Result<ReleaseClients> release_clients(const ParsedArgs& args, const CliIo& io, int seconds) {
  auto kafka = resolve_kafka(args, io);
  if (!kafka) return Unexpected{kafka.error()};
  auto admin = KafkaAdmin::create(*kafka, std::chrono::seconds(seconds));
  if (!admin) return Unexpected{admin.error()};
  auto topics = (*admin)->topic_names();
  if (!topics) return Unexpected{topics.error()};
  if (topics->count(std::string(kParkedTopic)) == 0) {
    return fail("kafka", "Kafka at " + kafka->bootstrap_servers + " has no topic " +
                             std::string(kParkedTopic) + " (hookrelay topics apply creates it)");
  }
  auto reader = KafkaDlqReader::create(*kafka, seconds * 1000, "hookrelay-cli", kParkedTopic);
  if (!reader) return Unexpected{reader.error()};
  auto producer = KafkaProducer::create(*kafka, "hookrelay-cli");
  if (!producer) return Unexpected{producer.error()};
  return ReleaseClients{std::move(*kafka), std::move(*reader), std::move(*producer)};
}

// Produces the parked deliveries' messages again, to hookrelay.retry.0, in `keys` order.
// A key a release of this command marked and did not produce (killed between the two) is 'retrying'
// with its message still in hookrelay.parked: it is among `keys` and taken up again once its mark
// is options.unfinished_after_ms old.
Result<ReplaySummary> release(CliIo& io, ReleaseClients& clients, const RouteView& route,
                              const std::string& url, const std::vector<std::string>& keys,
                              ReplayOptions options) {
  options.ack_timeout_ms = clients.kafka.produce_timeout_ms + 5000;  // the producer reports first
  std::set<std::string> wanted(keys.begin(), keys.end());
  KafkaDlqReader& reader = *clients.reader;
  reader.set_max_held_bytes(kReplayMaxHeldBytes);  // past it, fetched one at a time
  ProgressPrinter read_progress(io.err, io.now_ms);
  const auto keep = [&wanted](const std::string& k) { return wanted.count(k) != 0; };
  const int64_t read_start_ms = io.now_ms();
  auto messages = reader.read(keep, [&](int64_t done, int64_t total) {
    read_progress.update("reading " + std::string(kParkedTopic) + ": " + std::to_string(done) +
                         "/" + std::to_string(total));
  });
  if (!messages) return Unexpected{messages.error()};
  PostgresReplayStore store(url, 0, "parked");
  Replayer replayer(store, *clients.producer, ReplayClock{io.now_ms, io.sleep_ms}, &reader);
  // A key recorded parked whose message was not yet acknowledged when the read began.
  replayer.reread_from(reader, keep, read_start_ms);
  ProgressPrinter progress(io.err, io.now_ms);
  ReplaySummary summary;
  {
    ReplayStopGuard guard;
    options.stop_requested = &ReplayStopGuard::stop_requested;
    summary = replayer.run(keys, *messages, options, [&](const ReplaySummary& s) {
      progress.update(route.source + "/" + route.name + ": " + progress_line(s, false));
    });
  }
  progress.finish(route.source + "/" + route.name + ": " + progress_line(summary, false));
  return summary;
}

int routes_resume(const ParsedArgs& args, CliIo& io, const Config& config, RouteStates& states,
                  const std::string& name, const std::string& who) {
  double rate = 0;
  if (auto r = args.value("--rate")) {
    auto parsed = parse_rate_arg(*r, "--rate");
    if (!parsed) return report_error(io, "routes resume", parsed.error());
    rate = *parsed;
  }
  // Checked before the route is resumed: a bad value must not leave it active, nothing released.
  auto seconds = parse_int_arg(args.value_or("--timeout", "30"), 1, 3600, "--timeout");
  if (!seconds) return report_error(io, "routes resume", seconds.error());
  auto unfinished_after = unfinished_after_arg(args);
  if (!unfinished_after) return report_error(io, "routes resume", unfinished_after.error());
  const int64_t unfinished_after_ms = *unfinished_after;
  auto url = resolve_database_url(args, io);
  if (!url) return report_error(io, "routes resume", url.error());
  *url = with_cli_limits(*url);  // no wait on Postgres lasts for ever
  auto clients = release_clients(args, io, static_cast<int>(*seconds));
  if (!clients) {
    Error e = clients.error();
    e.message += "; the route was left as it was (not resumed), nothing released";
    return report_error(io, "routes resume", e);
  }
  auto done = resume_route(config, states, name, args.value_or("--source", ""), who);
  if (!done) return route_error(io, "routes resume", done.error());
  // Those an earlier release marked and did not produce (parked before the ones still parked),
  // then the parked deliveries.
  ReplayOptions options = release_options(done->route, who, rate);
  auto unfinished = DeliveryQueries(*url).unfinished_route_replays(
      done->route.source, done->route.name, options.reason, unfinished_after_ms,
      kMaxUnfinishedTakenUp);
  if (!unfinished) return report_error(io, "routes resume", unfinished.error());
  std::vector<std::string> keys;
  std::set<std::string> listed;
  for (const auto& u : *unfinished) {
    if (listed.insert(u.key).second) keys.push_back(u.key);
  }
  for (const auto& k : done->parked_keys) {
    if (listed.insert(k).second) keys.push_back(k);
  }
  ReplaySummary summary;
  if (!keys.empty()) {
    options.ordered_route = [&config](const std::string& source, const std::string& route) {
      return route_is_ordered(config, source, route);
    };
    options.unfinished_after_ms = unfinished_after_ms;
    auto released = release(io, *clients, done->route, *url, keys, std::move(options));
    if (!released) return report_error(io, "routes resume", released.error());
    summary = std::move(*released);
  }
  if (args.has("--json")) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& i : summary.items) {
      items.push_back(
          {{"key", i.key}, {"outcome", replay_outcome_name(i.outcome)}, {"detail", i.detail}});
    }
    io.out << json_text({{"route", route_json(done->route, format_time)},
                         {"changed", done->changed},
                         {"release",
                          {{"total", summary.total},
                           {"released", summary.replayed},
                           {"skipped", summary.skipped},
                           {"missing", summary.missing},
                           {"failed", summary.failed},
                           {"items", items}}}},
                        2)
           << "\n";
  } else {
    if (!done->changed) io.out << "was active already\n";
    print_route(io.out, done->route);
    io.out << "released " << summary.replayed << "/" << summary.total
           << " parked deliveries, skipped " << summary.skipped << ", missing " << summary.missing
           << ", failed " << summary.failed << "\n";
  }
  if (summary.interrupted) {
    io.err << "interrupted: " << summary.total - static_cast<int>(summary.items.size()) << " of "
           << summary.total
           << " keys not tried (the one in progress was finished); run it again to release them\n";
    return kExitInterrupted;
  }
  if (summary.failed > 0) return kExitFailed;
  if (summary.missing > 0) return kExitNotFound;
  return kExitOk;
}

}  // namespace

int run_routes(const Args& args, CliIo& io) {
  ParsedArgs parsed;
  int rc = parse_or_help(args, kRouteOptions, kUsage, "routes", io, parsed);
  if (rc != kContinue) return rc;
  const auto& pos = parsed.positionals();
  if (pos.empty()) return usage_error(io, "routes", kUsage, "expected list, suspend or resume");
  const std::string& sub = pos[0];
  if (sub != "list" && sub != "suspend" && sub != "resume") {
    return usage_error(io, "routes", kUsage,
                       "unknown subcommand '" + sub + "' (expected list, suspend or resume)");
  }
  if (sub == "list" ? pos.size() != 1 : pos.size() != 2) {
    return usage_error(io, "routes", kUsage,
                       sub == "list" ? "list takes no arguments" : sub + " takes one route NAME");
  }
  const std::string who = parsed.value_or("--by", io.env("USER").value_or("unknown"));
  if (who.empty()) return usage_error(io, "routes", kUsage, "--by must not be empty");
  auto config = require_cli_config(parsed, io);
  if (!config) return report_error(io, "routes " + sub, config.error());
  auto url = resolve_database_url(parsed, io);
  if (!url) return report_error(io, "routes " + sub, url.error());
  *url = with_cli_limits(*url);  // no wait on Postgres lasts for ever
  RouteStates states(*url);
  if (sub == "list") return routes_list(parsed, io, *config, states);
  if (sub == "suspend") return routes_suspend(parsed, io, *config, states, pos[1], who);
  return routes_resume(parsed, io, *config, states, pos[1], who);
}

}  // namespace hookrelay::cli
