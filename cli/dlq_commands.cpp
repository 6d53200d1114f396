// `hookrelay dlq list|show|replay`: dead deliveries as Postgres records them, and their messages
// in hookrelay.dlq.
#include <ostream>
#include <set>

#include "cli/commands.h"
#include "cli/output.h"
#include "cli/replay_stop.h"
#include "shared/json_writer.h"
#include "shared/kafka/kafka_producer.h"
#include "shared/kafka/wire_contract.h"
#include "shared/replay/dlq_reader.h"
#include "shared/replay/dlq_replay.h"
#include "shared/replay/unknown_source_replay.h"

namespace hookrelay::cli {
namespace {

constexpr const char* kDlqUsage =
    "usage: hookrelay dlq list [--source S] [--destination D] [--status STATE|any]\n"
    "                          [--since TIME] [--until TIME] [--limit N] [--json]\n"
    "       hookrelay dlq show KEY [--message] [--json]\n"
    "       hookrelay dlq replay (KEY... | --id KEY... | FILTERS | --all | --unfinished)\n"
    "                          [--dry-run] [--rate N/s] [--by WHO] [--reason TEXT]\n"
    "                          [--unfinished-after DURATION] [--json]\n"
    "       hookrelay dlq replay --unknown-sources --config PATH [--source S] [--limit N]\n"
    "                          [--dry-run] [--json]\n"
    "\n"
    "  list    deliveries by last attempt, newest first. --status defaults to dead (the DLQ);\n"
    "          'any' lists every state. TIME: 2024-05-01T12:00:00Z, 2024-05-01, or a duration\n"
    "          ago (90s, 15m, 2h, 7d); --since is inclusive, --until exclusive. --limit 1..10000\n"
    "          (default 100).\n"
    "  show    one delivery with its attempts and replays; --message also reads its latest\n"
    "          message from hookrelay.dlq (headers, body size).\n"
    "  replay  puts dead deliveries back into the retry flow (hookrelay.retry.0, due now, with a\n"
    "          fresh attempt budget and max age), each once, newest DLQ message per key.\n"
    "          Deliveries that succeeded since, or are no longer dead, are skipped. Select by\n"
    "          key, or by FILTERS (--source, --destination, --since, --until, --limit), or --all\n"
    "          dead deliveries (up to --limit). --limit is 1..10000 (default 1000) and bounds a\n"
    "          selection: it takes no delivery keys. --dry-run shows what would be replayed.\n"
    "          --rate 10/s throttles. --by names who replays (default $USER), recorded with\n"
    "          --reason in the audit table. Progress on stderr every second.\n"
    "          A replay killed (SIGKILL) between marking a key and the broker's ack leaves it\n"
    "          'retrying' with possibly no message: a key whose replay no worker has taken up\n"
    "          --unfinished-after (default 5m) after it was marked is produced again when\n"
    "          named, and --unfinished selects every such key (up to --limit).\n"
    "          --unknown-sources: webhooks a worker dead-lettered as unknown_source (its config\n"
    "          did not know the source ingest accepted them for) are produced again to\n"
    "          hookrelay.webhooks, once the config (--config, as the workers now run it) knows\n"
    "          their source; routes that already received one skip it. --limit 1..100000\n"
    "          (default 1000) bounds the events of one run.\n"
    "\n"
    "  common: --database-url URL, --config PATH, --bootstrap HOSTS (show --message, replay),\n"
    "          --timeout SECONDS (Kafka, default 30)\n"
    "  exit: 0 ok; 1 database/Kafka error or a replay failed; 2 usage/config;\n"
    "        3 not found (show: no such delivery; replay: a key has no delivery or DLQ message);\n"
    "        130 replay interrupted (SIGINT, SIGTERM): the key in progress was finished, the\n"
    "        rest were not tried (run it again)\n";

const std::vector<OptionSpec> kDlqOptions = {
    kConfigOption,
    kDatabaseOption,
    kBootstrapOption,
    kJsonOption,
    {"--source", true},
    {"--destination", true},
    {"--status", true},
    {"--since", true},
    {"--until", true},
    {"--limit", true},
    {"--id", true},
    {"--all", false},
    {"--dry-run", false},
    {"--rate", true},
    {"--by", true},
    {"--reason", true},
    {"--message", false},
    {"--timeout", true},
    {"--unfinished", false},
    {"--unfinished-after", true},
    {"--unknown-sources", false},
};

Result<DlqFilter> filter_from(const ParsedArgs& args, const CliIo& io, int default_limit) {
  DlqFilter f;
  f.source = args.value_or("--source", "");
  f.destination = args.value_or("--destination", "");
  f.status = args.value_or("--status", "dead");
  if (f.status == "any") f.status.clear();
  f.limit = default_limit;
  if (auto v = args.value("--since")) {
    auto t = parse_time_arg(*v, io.now_ms(), "--since");
    if (!t) return Unexpected{t.error()};
    f.since_ms = *t;
  }
  if (auto v = args.value("--until")) {
    auto t = parse_time_arg(*v, io.now_ms(), "--until");
    if (!t) return Unexpected{t.error()};
    f.until_ms = *t;
  }
  if (auto v = args.value("--limit")) {
    auto n = parse_int_arg(*v, 1, 10000, "--limit");
    if (!n) return Unexpected{n.error()};
    f.limit = static_cast<int>(*n);
  }
  return f;
}

Result<int> timeout_ms(const ParsedArgs& args) {
  auto n = parse_int_arg(args.value_or("--timeout", "30"), 1, 3600, "--timeout");
  if (!n) return Unexpected{n.error()};
  return static_cast<int>(*n * 1000);
}

int dlq_list(const ParsedArgs& args, CliIo& io) {
  if (args.positionals().size() != 1)
    return usage_error(io, "dlq", kDlqUsage, "list takes no arguments, only options");
  auto filter = filter_from(args, io, 100);
  if (!filter) return report_error(io, "dlq list", filter.error());
  auto url = resolve_database_url(args, io);
  if (!url) return report_error(io, "dlq list", url.error());
  *url = with_cli_limits(*url);  // no wait on Postgres lasts for ever
  DeliveryQueries queries(*url);
  auto rows = queries.dlq_list(*filter);
  if (!rows) return report_error(io, "dlq list", rows.error());
  if (args.has("--json")) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& d : *rows) out.push_back(to_json(d));
    io.out << json_text(out, 2) << "\n";
    return kExitOk;
  }
  print_delivery_table(io.out, *rows);
  if (static_cast<int>(rows->size()) == filter->limit) {
    io.err << "(limit " << filter->limit << " reached: more may match; use --limit)\n";
  }
  return kExitOk;
}

// The latest DLQ message of one key, or nullopt.
Result<std::optional<DlqMessage>> read_latest(const ParsedArgs& args, CliIo& io,
                                              const std::string& key) {
  auto kafka = resolve_kafka(args, io);
  if (!kafka) return Unexpected{kafka.error()};
  auto timeout = timeout_ms(args);
  if (!timeout) return Unexpected{timeout.error()};
  auto reader = KafkaDlqReader::create(*kafka, *timeout);
  if (!reader) return Unexpected{reader.error()};
  auto messages = (*reader)->read([&](const std::string& k) { return k == key; }, {});
  if (!messages) return Unexpected{messages.error()};
  auto latest = latest_by_key(*messages);
  if (latest.empty()) return std::optional<DlqMessage>{};
  return std::optional<DlqMessage>{*latest.begin()->second};
}

int dlq_show(const ParsedArgs& args, CliIo& io) {
  if (args.positionals().size() != 2)
    return usage_error(io, "dlq", kDlqUsage, "show needs exactly one KEY");
  const std::string& key = args.positionals()[1];
  auto url = resolve_database_url(args, io);
  if (!url) return report_error(io, "dlq show", url.error());
  *url = with_cli_limits(*url);  // no wait on Postgres lasts for ever
  DeliveryQueries queries(*url);
  auto detail = queries.delivery_show(key);
  if (!detail) return report_error(io, "dlq show", detail.error());
  std::optional<DlqMessage> message;
  if (args.has("--message")) {
    auto m = read_latest(args, io, key);
    if (!m) return report_error(io, "dlq show", m.error());
    message = std::move(*m);
  }
  if (args.has("--json")) {
    auto out = to_json(*detail);
    if (args.has("--message")) out["dlq_message"] = message ? to_json(*message) : nullptr;
    io.out << json_text(out, 2) << "\n";
    return kExitOk;
  }
  print_delivery_detail(io.out, *detail);
  if (detail->delivery.state != "dead") {
    io.out << "\nnote: state is " << detail->delivery.state << ": not in the DLQ now\n";
  }
  if (args.has("--message")) {
    if (!message) {
      io.out << "\nno message for this key in " << kDlqTopic << "\n";
    } else {
      io.out << "\n";
      print_dlq_message(io.out, *message);
    }
  }
  return kExitOk;
}

// What `dlq replay` was asked to replay: explicit keys, a filter, or the unfinished replays.
// Checked before anything connects, so usage errors come back at once.
struct ReplaySelection {
  std::vector<std::string> ids;
  DlqFilter filter;
  bool unfinished = false;  // the keys of unfinished replays (UnfinishedReplay)
  int64_t unfinished_after_ms = kUnfinishedAfterMs;
};

Result<ReplaySelection> replay_selection(const ParsedArgs& args, const CliIo& io) {
  ReplaySelection sel;
  sel.ids = args.values("--id");
  sel.ids.insert(sel.ids.end(), args.positionals().begin() + 1, args.positionals().end());
  bool filtered = args.has("--source") || args.has("--destination") || args.has("--since") ||
                  args.has("--until");
  if (args.has("--status"))
    return fail("usage", "replay takes no --status: only dead deliveries replay");
  sel.unfinished = args.has("--unfinished");
  if (!sel.ids.empty() && (filtered || args.has("--all") || sel.unfinished)) {
    return fail("usage",
                "give delivery keys or a selection (filters, --all, --unfinished), not both");
  }
  // Every key named is replayed: a --limit there would be ignored, not applied.
  if (!sel.ids.empty() && args.has("--limit")) {
    return fail("usage",
                "--limit bounds a selection (filters, --all, --unfinished), not delivery keys");
  }
  if (sel.unfinished && (filtered || args.has("--all"))) {
    return fail("usage", "--unfinished takes no filters and no --all");
  }
  if (sel.ids.empty() && !filtered && !args.has("--all") && !sel.unfinished) {
    return fail("usage", "replay what? give KEY..., --id KEY, filters, --all or --unfinished");
  }
  auto after = unfinished_after_arg(args);
  if (!after) return Unexpected{after.error()};
  sel.unfinished_after_ms = *after;
  auto filter = filter_from(args, io, 1000);
  if (!filter) return Unexpected{filter.error()};
  sel.filter = *filter;
  return sel;
}

// The keys to replay: the ids, the dead deliveries the filter matches (newest first), or the
// unfinished replays (oldest first).
Result<std::vector<std::string>> replay_keys(const ReplaySelection& sel, CliIo& io,
                                             const std::string& db_url) {
  if (!sel.ids.empty()) return sel.ids;
  DeliveryQueries queries(db_url);
  if (sel.unfinished) {
    auto marks = queries.unfinished_replays(sel.unfinished_after_ms, sel.filter.limit);
    if (!marks) return Unexpected{marks.error()};
    std::vector<std::string> keys;
    for (const auto& m : *marks) keys.push_back(m.key);
    return keys;
  }
  auto rows = queries.dlq_list(sel.filter);
  if (!rows) return Unexpected{rows.error()};
  if (static_cast<int>(rows->size()) == sel.filter.limit) {
    io.err << "(limit " << sel.filter.limit
           << " reached: run again for the rest, or raise --limit)\n";
  }
  std::vector<std::string> keys;
  for (const auto& d : *rows) keys.push_back(d.key);
  return keys;
}

void print_replay(CliIo& io, const ReplaySummary& summary, bool dry_run, bool json) {
  if (json) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& i : summary.items) {
      items.push_back(
          {{"key", i.key},
           {"outcome", replay_outcome_name(i.outcome)},
           {"detail", i.detail},
           {"partition", i.partition < 0 ? nlohmann::json(nullptr) : nlohmann::json(i.partition)},
           {"offset", i.offset < 0 ? nlohmann::json(nullptr) : nlohmann::json(i.offset)}});
    }
    io.out << json_text({{"dry_run", dry_run},
                         {"total", summary.total},
                         {"replayed", summary.replayed},
                         {"skipped", summary.skipped},
                         {"missing", summary.missing},
                         {"failed", summary.failed},
                         {"items", items}},
                        2)
           << "\n";
    return;
  }
  Table t({"KEY", "OUTCOME", "DLQ MESSAGE", "DETAIL"});
  for (const auto& i : summary.items) {
    t.add_row({i.key, replay_outcome_name(i.outcome),
               i.partition < 0 ? "-" : std::to_string(i.partition) + "@" + std::to_string(i.offset),
               one_line(i.detail, 100)});
  }
  if (!t.empty()) t.print(io.out);
  io.out << progress_line(summary, dry_run) << "\n";
}

// A dry run produces nothing; it still needs a producer to hand the replay.
struct DryRunProducer final : MessageProducer {
  void produce(const OutgoingMessage&, DoneCallback done) override {
    done(fail("dry_run", "dry run: nothing is produced"));
  }
  bool reachable() const override { return false; }
  int outstanding() const override { return 0; }
};

void print_unknown_sources(CliIo& io, const UnknownSourceSummary& summary, bool dry_run,
                           bool json) {
  if (json) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& i : summary.items) {
      items.push_back({{"source", i.source},
                       {"event_id", i.event_id},
                       {"outcome", i.outcome},
                       {"detail", i.detail},
                       {"partition", i.partition},
                       {"offset", i.offset}});
    }
    io.out << json_text({{"dry_run", dry_run},
                         {"total", summary.total},
                         {"replayed", summary.replayed},
                         {"skipped", summary.skipped},
                         {"failed", summary.failed},
                         {"limited", summary.limited},
                         {"items", items}},
                        2)
           << "\n";
    return;
  }
  Table t({"SOURCE", "EVENT ID", "OUTCOME", "DLQ MESSAGE", "DETAIL"});
  for (const auto& i : summary.items) {
    t.add_row({i.source, i.event_id, i.outcome,
               std::to_string(i.partition) + "@" + std::to_string(i.offset),
               one_line(i.detail, 100)});
  }
  if (!t.empty()) t.print(io.out);
  io.out << unknown_source_progress_line(summary, dry_run) << "\n";
}

int dlq_replay_unknown_sources(const ParsedArgs& args, CliIo& io) {
  for (const char* other : {"--id", "--all", "--unfinished", "--unfinished-after", "--destination",
                            "--since", "--until", "--status", "--rate", "--by", "--reason"}) {
    if (args.has(other)) {
      return usage_error(io, "dlq", kDlqUsage,
                         std::string("--unknown-sources takes no ") + other +
                             " (only --source, --limit, --dry-run, --json)");
    }
  }
  if (args.positionals().size() != 1)
    return usage_error(io, "dlq", kDlqUsage, "--unknown-sources takes no delivery keys");
  UnknownSourceOptions options;
  options.dry_run = args.has("--dry-run");
  options.source = args.value_or("--source", "");
  if (auto v = args.value("--limit")) {
    auto n = parse_int_arg(*v, 1, 100000, "--limit");
    if (!n) return usage_error(io, "dlq", kDlqUsage, n.error().message);
    options.limit = static_cast<int>(*n);
  }
  auto timeout = timeout_ms(args);
  if (!timeout) return report_error(io, "dlq replay", timeout.error());
  // The sources the workers know now: an event of a source this config lacks too would only be
  // dead-lettered again.
  auto config = require_cli_config(args, io);
  if (!config) return report_error(io, "dlq replay", config.error());
  auto kafka = resolve_kafka(args, io);
  if (!kafka) return report_error(io, "dlq replay", kafka.error());
  options.ack_timeout_ms = kafka->produce_timeout_ms + 5000;  // the producer reports first
  auto reader = KafkaDlqReader::create(*kafka, *timeout);
  if (!reader) return report_error(io, "dlq replay", reader.error());
  (*reader)->set_max_held_bytes(kReplayMaxHeldBytes);
  ProgressPrinter read_progress(io.err, io.now_ms);
  // Dead letters of first copies name no delivery.
  auto messages = (*reader)->read([](const std::string& key) { return key.empty(); },
                                  [&](int64_t done, int64_t total) {
                                    read_progress.update("reading " + std::string(kDlqTopic) +
                                                         ": " + std::to_string(done) + "/" +
                                                         std::to_string(total) + " messages");
                                  });
  if (!messages) return report_error(io, "dlq replay", messages.error());
  std::unique_ptr<KafkaProducer> producer;
  DryRunProducer no_producer;
  if (!options.dry_run) {
    auto p = KafkaProducer::create(*kafka, "hookrelay-cli");
    if (!p) return report_error(io, "dlq replay", p.error());
    producer = std::move(*p);
  }
  UnknownSourceSummary summary;
  {
    ReplayStopGuard guard;
    options.stop_requested = &ReplayStopGuard::stop_requested;
    summary = replay_unknown_sources(
        *messages, *config, producer ? static_cast<MessageProducer&>(*producer) : no_producer,
        **reader, options);
  }
  print_unknown_sources(io, summary, options.dry_run, args.has("--json"));
  if (summary.total == 0) io.err << "nothing to replay: no unknown_source dead letter matches\n";
  if (summary.interrupted) return kExitInterrupted;
  return summary.failed > 0 ? kExitFailed : kExitOk;
}

int dlq_replay(const ParsedArgs& args, CliIo& io) {
  if (args.has("--unknown-sources")) return dlq_replay_unknown_sources(args, io);
  auto selection = replay_selection(args, io);
  if (!selection) return usage_error(io, "dlq", kDlqUsage, selection.error().message);
  const bool dry_run = args.has("--dry-run");
  ReplayOptions options;
  options.dry_run = dry_run;
  if (auto rate = args.value("--rate")) {
    auto r = parse_rate_arg(*rate, "--rate");
    if (!r) return report_error(io, "dlq replay", r.error());
    options.rate_per_second = *r;
  }
  auto timeout = timeout_ms(args);
  if (!timeout) return report_error(io, "dlq replay", timeout.error());
  options.who = args.value_or("--by", io.env("USER").value_or("unknown"));
  if (options.who.empty()) return usage_error(io, "dlq", kDlqUsage, "--by must not be empty");
  options.reason = args.value_or("--reason", "hookrelay dlq replay");
  options.unfinished_after_ms = selection->unfinished_after_ms;
  auto url = resolve_database_url(args, io);
  if (!url) return report_error(io, "dlq replay", url.error());
  *url = with_cli_limits(*url);  // no wait on Postgres lasts for ever
  auto kafka = resolve_kafka(args, io);
  if (!kafka) return report_error(io, "dlq replay", kafka.error());
  options.ack_timeout_ms = kafka->produce_timeout_ms + 5000;  // the producer reports first
  auto keys = replay_keys(*selection, io, *url);
  if (!keys) return report_error(io, "dlq replay", keys.error());
  if (keys->empty()) {
    io.err << (selection->unfinished ? "nothing to replay: no unfinished replay\n"
                                     : "nothing to replay: no dead delivery matches\n");
    print_replay(io, ReplaySummary{}, dry_run, args.has("--json"));
    return kExitOk;
  }

  std::set<std::string> wanted(keys->begin(), keys->end());
  const DlqSource::KeepFn keep = [&wanted](const std::string& k) { return wanted.count(k) != 0; };
  auto reader = KafkaDlqReader::create(*kafka, *timeout);
  if (!reader) return report_error(io, "dlq replay", reader.error());
  (*reader)->set_max_held_bytes(kReplayMaxHeldBytes);  // past it, fetched one at a time
  ProgressPrinter read_progress(io.err, io.now_ms);
  int64_t read_total = 0, read_done = 0;
  const int64_t read_start_ms = io.now_ms();
  auto messages = (*reader)->read(keep, [&](int64_t done, int64_t total) {
    read_done = done;
    read_total = total;
    read_progress.update("reading " + std::string(kDlqTopic) + ": " + std::to_string(done) + "/" +
                         std::to_string(total) + " messages");
  });
  if (!messages) return report_error(io, "dlq replay", messages.error());
  if (read_total > 0) {
    read_progress.finish("read " + std::to_string(read_done) + " messages of " +
                         std::string(kDlqTopic) + ", " + std::to_string(messages->size()) +
                         " for the requested deliveries");
  }

  std::unique_ptr<KafkaProducer> producer;
  if (!dry_run) {
    auto p = KafkaProducer::create(*kafka, "hookrelay-cli");
    if (!p) return report_error(io, "dlq replay", p.error());
    producer = std::move(*p);
  }
  PostgresReplayStore store(*url);
  DryRunProducer no_producer;
  Replayer replayer(store, producer ? static_cast<MessageProducer&>(*producer) : no_producer,
                    ReplayClock{io.now_ms, io.sleep_ms}, reader->get());
  // A key recorded dead whose dead letter was not yet acknowledged when the read began.
  replayer.reread_from(**reader, keep, read_start_ms);
  ProgressPrinter progress(io.err, io.now_ms);
  ReplaySummary summary;
  {
    ReplayStopGuard guard;
    options.stop_requested = &ReplayStopGuard::stop_requested;
    summary = replayer.run(*keys, *messages, options, [&](const ReplaySummary& s) {
      progress.update(progress_line(s, dry_run));
    });
  }
  progress.finish(progress_line(summary, dry_run));
  print_replay(io, summary, dry_run, args.has("--json"));
  if (summary.interrupted) {
    io.err << "interrupted: " << summary.total - static_cast<int>(summary.items.size()) << " of "
           << summary.total << " keys not tried (the one in progress was finished); run it again\n";
    return kExitInterrupted;
  }
  if (summary.failed > 0) return kExitFailed;
  if (summary.missing > 0) return kExitNotFound;
  return kExitOk;
}

}  // namespace

int run_dlq(const Args& args, CliIo& io) {
  ParsedArgs parsed;
  int rc = parse_or_help(args, kDlqOptions, kDlqUsage, "dlq", io, parsed);
  if (rc != kContinue) return rc;
  const auto& pos = parsed.positionals();
  if (pos.empty()) return usage_error(io, "dlq", kDlqUsage, "expected list, show or replay");
  if (pos[0] == "list") return dlq_list(parsed, io);
  if (pos[0] == "show") return dlq_show(parsed, io);
  if (pos[0] == "replay") return dlq_replay(parsed, io);
  return usage_error(io, "dlq", kDlqUsage,
                     "unknown subcommand '" + pos[0] + "' (expected list, show or replay)");
}

}  // namespace hookrelay::cli
