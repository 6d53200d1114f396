// `hookrelay deliveries show KEY` and `hookrelay events show SOURCE EVENT_ID`: read-only views of
// the audit trail in Postgres.
#include <ostream>

#include "cli/commands.h"
#include "cli/output.h"
#include "shared/json_writer.h"
#include "shared/store/delivery_queries.h"

namespace hookrelay::cli {
namespace {

constexpr const char* kDeliveriesUsage =
    "usage: hookrelay deliveries show KEY [--json] [--database-url URL] [--config PATH]\n"
    "  One delivery (any state) with every attempt (start, duration, HTTP status or error,\n"
    "  worker) and every DLQ replay. KEY is the delivery key, e.g.\n"
    "  wh:<source>:<event id>:<route> or call:<idempotency key>.\n"
    "  exit: 0 found, 1 database error, 2 usage, 3 no such delivery\n";

constexpr const char* kEventsUsage =
    "usage: hookrelay events show SOURCE EVENT_ID [--json] [--database-url URL] [--config PATH]\n"
    "  An inbound webhook event (where ingest put it in Kafka, when, body hash) and the\n"
    "  deliveries it became, one per route.\n"
    "  exit: 0 found, 1 database error, 2 usage, 3 neither the event nor a delivery exists\n";

const std::vector<OptionSpec> kQueryOptions = {kConfigOption, kDatabaseOption, kJsonOption};

// Both views: resolve the database, fetch, print as JSON or text.
template <class Fetch, class Print>
int show(const ParsedArgs& parsed, CliIo& io, const char* command, Fetch fetch, Print print) {
  auto url = resolve_database_url(parsed, io);
  if (!url) return report_error(io, command, url.error());
  *url = with_cli_limits(*url);  // no wait on Postgres lasts for ever
  DeliveryQueries queries(*url);
  auto found = fetch(queries);
  if (!found) return report_error(io, command, found.error());
  if (parsed.has("--json")) {
    io.out << json_text(to_json(*found), 2) << "\n";
  } else {
    print(io.out, *found);
  }
  return kExitOk;
}

}  // namespace

int run_deliveries(const Args& args, CliIo& io) {
  ParsedArgs parsed;
  int rc = parse_or_help(args, kQueryOptions, kDeliveriesUsage, "deliveries", io, parsed);
  if (rc != kContinue) return rc;
  const auto& pos = parsed.positionals();
  if (pos.size() != 2 || pos[0] != "show") {
    io.err << "hookrelay deliveries: expected 'show KEY'\n" << kDeliveriesUsage;
    return kExitUsage;
  }
  return show(
      parsed, io, "deliveries show", [&](DeliveryQueries& q) { return q.delivery_show(pos[1]); },
      print_delivery_detail);
}

int run_events(const Args& args, CliIo& io) {
  ParsedArgs parsed;
  int rc = parse_or_help(args, kQueryOptions, kEventsUsage, "events", io, parsed);
  if (rc != kContinue) return rc;
  const auto& pos = parsed.positionals();
  if (pos.size() != 3 || pos[0] != "show") {
    io.err << "hookrelay events: expected 'show SOURCE EVENT_ID'\n" << kEventsUsage;
    return kExitUsage;
  }
  return show(
      parsed, io, "events show", [&](DeliveryQueries& q) { return q.event_show(pos[1], pos[2]); },
      print_event_detail);
}

}  // namespace hookrelay::cli
