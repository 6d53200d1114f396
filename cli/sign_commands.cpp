// `hookrelay sign` and `hookrelay send`: act as a webhook provider for a configured source, to
// test senders, receivers and a running ingest end to end.
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <random>
#include <sstream>

#include "cli/commands.h"
#include "cli/http_post.h"
#include "shared/json_writer.h"
#include "shared/signing/webhook_signer.h"

namespace hookrelay::cli {
namespace {

constexpr const char* kSignUsage =
    "usage: hookrelay sign --source NAME [--event-id ID] [--timestamp UNIX_SECONDS] [--json]\n"
    "                      [--config PATH] FILE|-\n"
    "  Prints the headers a provider of source NAME (its scheme and first secret in the\n"
    "  config) would send with the body in FILE (- reads stdin), one 'Header: value' a line.\n"
    "  The event id defaults to a random evt_...; the timestamp to now.\n"
    "  exit: 0 printed, 2 usage/config (unknown source, unreadable file)\n";

constexpr const char* kSendUsage =
    "usage: hookrelay send --source NAME [--ingest URL] [--event-id ID] [--content-type TYPE]\n"
    "                      [--timestamp UNIX_SECONDS] [--timeout SECONDS] [--config PATH] FILE|-\n"
    "  Signs FILE as `sign` does and POSTs it to a running ingest: URL/webhooks/NAME (URL\n"
    "  defaults to http://<ingest.listen>; a URL already ending in /webhooks/NAME is used as\n"
    "  is, one naming another source after /webhooks/ is refused). Prints the HTTP status and\n"
    "  the response body. No redirects are followed.\n"
    "  exit: 0 on a 2xx answer, 1 on any other answer or no answer, 2 usage/config\n";

const std::vector<OptionSpec> kSignOptions = {
    kConfigOption,         kJsonOption,        {"--source", true},       {"--event-id", true},
    {"--timestamp", true}, {"--ingest", true}, {"--content-type", true}, {"--timeout", true},
};

Result<std::string> read_body(const std::string& path, std::istream& in) {
  std::ostringstream text;
  if (path == "-") {
    text << in.rdbuf();
    return text.str();
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) return fail("usage", path + ": cannot be read");
  text << file.rdbuf();
  return text.str();
}

std::string random_event_id() {
  std::random_device random;
  std::string id = "evt_";
  for (int i = 0; i < 24; ++i) id += "0123456789abcdef"[random() % 16];
  return id;
}

struct Signed {
  std::string source;
  std::string body;
  std::string event_id;
  std::vector<std::pair<std::string, std::string>> headers;
  Config config;
};

// Shared by sign and send: config, source, body, event id, headers.
Result<Signed> sign_request(const ParsedArgs& args, CliIo& io) {
  if (args.positionals().size() != 1) return fail("usage", "expected one FILE (or - for stdin)");
  auto source = args.value("--source");
  if (!source) return fail("usage", "--source NAME is required");
  auto config = require_cli_config(args, io);
  if (!config) return Unexpected{config.error()};
  auto it = config->sources.find(*source);
  if (it == config->sources.end()) {
    std::string known;
    for (const auto& [name, s] : config->sources) known += (known.empty() ? "" : ", ") + name;
    return fail("config", "no source '" + *source + "' in the config (configured: " +
                              (known.empty() ? "none" : known) + ")");
  }
  int64_t now_s = io.now_ms() / 1000;
  if (auto ts = args.value("--timestamp")) {
    auto n = parse_int_arg(*ts, 0, int64_t{1} << 40, "--timestamp");
    if (!n) return Unexpected{n.error()};
    now_s = *n;
  }
  auto body = read_body(args.positionals()[0], io.in);
  if (!body) return Unexpected{body.error()};
  Signed s;
  s.source = *source;
  s.body = std::move(*body);
  s.event_id = args.value_or("--event-id", random_event_id());
  s.headers = provider_headers(it->second, s.body, now_s, s.event_id);
  s.config = std::move(*config);
  return s;
}

int signing_error(CliIo& io, const char* command, const char* usage, const Error& e) {
  if (e.code == "usage") {
    io.err << "hookrelay " << command << ": " << e.message << "\n" << usage;
    return kExitUsage;
  }
  return report_error(io, command, e);
}

std::string ingest_base(const Config& config) {
  auto hp = parse_host_port(config.ingest.listen, "ingest.listen");
  std::string host = hp ? hp->host : "127.0.0.1";
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  if (host == "::") host = "::1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(hp ? hp->port : 8080);
}

// The URL to post a webhook of `source` to. A URL that names the webhook path must name this
// source: a body signed for --source, posted to another source's path, tests the wrong source.
Result<std::string> webhook_url(std::string base, const std::string& source) {
  constexpr std::string_view kPath = "/webhooks/";
  const std::string own = std::string(kPath) + source;
  // Judged on the path alone: after the authority ("http://webhooks/" is a host), without a
  // query or a trailing slash.
  const std::size_t authority = base.find("://");
  const std::size_t path_at = base.find('/', authority == std::string::npos ? 0 : authority + 3);
  std::string path =
      path_at == std::string::npos ? "" : base.substr(path_at, base.find('?', path_at) - path_at);
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path.size() >= own.size() && path.compare(path.size() - own.size(), own.size(), own) == 0)
    return base;
  if (auto at = (path + "/").rfind(kPath); at != std::string::npos) {
    const std::string named = path.substr(std::min(path.size(), at + kPath.size()));
    return fail("usage", "--ingest " + base +
                             (named.empty() ? " names no source after /webhooks/"
                                            : " is the path of source '" + named + "'") +
                             ", not of --source " + source +
                             " (give the ingest's base URL, or one ending in " + own + ")");
  }
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + own;
}

}  // namespace

int run_sign(const Args& args, CliIo& io) {
  ParsedArgs parsed;
  int rc = parse_or_help(args, kSignOptions, kSignUsage, "sign", io, parsed);
  if (rc != kContinue) return rc;
  // sign and send parse the same options: those only send uses are refused here, not ignored
  // (`sign --ingest URL` sends nothing).
  for (const char* other : {"--ingest", "--content-type", "--timeout"}) {
    if (parsed.has(other))
      return usage_error(io, "sign", kSignUsage, std::string(other) + " applies to send only");
  }
  auto s = sign_request(parsed, io);
  if (!s) return signing_error(io, "sign", kSignUsage, s.error());
  if (parsed.has("--json")) {
    nlohmann::json headers = nlohmann::json::object();
    for (const auto& [name, value] : s->headers) headers[name] = value;
    io.out << json_text({{"source", s->source}, {"event_id", s->event_id}, {"headers", headers}}, 2)
           << "\n";
    return kExitOk;
  }
  for (const auto& [name, value] : s->headers) io.out << name << ": " << value << "\n";
  return kExitOk;
}

int run_send(const Args& args, CliIo& io) {
  ParsedArgs parsed;
  int rc = parse_or_help(args, kSignOptions, kSendUsage, "send", io, parsed);
  if (rc != kContinue) return rc;
  if (parsed.has("--json"))
    return usage_error(io, "send", kSendUsage, "--json applies to sign only");
  auto timeout = parse_int_arg(parsed.value_or("--timeout", "10"), 1, 600, "--timeout");
  if (!timeout) return signing_error(io, "send", kSendUsage, timeout.error());
  auto s = sign_request(parsed, io);
  if (!s) return signing_error(io, "send", kSendUsage, s.error());
  auto headers = s->headers;
  headers.emplace_back("Content-Type", parsed.value_or("--content-type", "application/json"));
  auto url = webhook_url(parsed.value_or("--ingest", ingest_base(s->config)), s->source);
  if (!url) return signing_error(io, "send", kSendUsage, url.error());
  auto reply = http_post(*url, headers, s->body, static_cast<int>(*timeout * 1000));
  if (!reply) return report_error(io, "send", reply.error());
  io.out << "HTTP " << reply->status << "\n" << reply->body;
  if (!reply->body.empty() && reply->body.back() != '\n') io.out << "\n";
  io.err << "sent " << s->source << " event " << s->event_id << " to " << *url << "\n";
  return reply->status >= 200 && reply->status < 300 ? kExitOk : kExitFailed;
}

}  // namespace hookrelay::cli
