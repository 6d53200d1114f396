#include "devbroker/options.h"

#include <algorithm>
#include <charconv>
#include <functional>
#include <map>
#include <set>

namespace hookrelay::devbroker {
namespace {

constexpr int kMaxBrokers = 32;
constexpr int kMaxPartitions = 1024;
constexpr int kMaxRetryTiers = 64;

Result<int> parse_int(const std::string& flag, const std::string& text, int min, int max) {
  int value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || value < min || value > max) {
    return fail("bad_flag", flag + ": expected an integer in [" + std::to_string(min) + ", " +
                                std::to_string(max) + "], got '" + text + "'");
  }
  return value;
}

// The control channel is an unauthenticated fault-injection switch: it must never listen
// beyond the loopback interface.
Result<void> parse_control(const std::string& text, DevBrokerOptions& out) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos)
    return fail("bad_flag", "--control: expected HOST:PORT, got '" + text + "'");
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  if (host != "127.0.0.1" && host != "::1") {
    return fail("bad_flag", "--control: host must be 127.0.0.1 or [::1], got '" + host + "'");
  }
  auto port = parse_int("--control", text.substr(colon + 1), 0, 65535);
  if (!port) return Unexpected{port.error()};
  out.control_host = host;
  out.control_port = static_cast<std::uint16_t>(*port);
  return {};
}

}  // namespace

int DevBrokerOptions::effective_replication() const {
  return replication > 0 ? replication : std::min(3, brokers);
}

Result<DevBrokerOptions> parse_options(const std::vector<std::string>& args) {
  DevBrokerOptions o;
  bool replication_set = false;
  using Setter = std::function<Result<void>(const std::string& flag, const std::string& value)>;
  auto int_flag = [](int& field, int min, int max) -> Setter {
    return [&field, min, max](const std::string& flag, const std::string& value) -> Result<void> {
      auto v = parse_int(flag, value, min, max);
      if (!v) return Unexpected{v.error()};
      field = *v;
      return {};
    };
  };
  auto string_flag = [](std::string& field) -> Setter {
    return [&field](const std::string& flag, const std::string& value) -> Result<void> {
      if (value.empty()) return fail("bad_flag", flag + ": must not be empty");
      field = value;
      return {};
    };
  };
  const std::map<std::string, Setter> with_value = {
      {"--brokers", int_flag(o.brokers, 1, kMaxBrokers)},
      {"--partitions", int_flag(o.partitions, 1, kMaxPartitions)},
      {"--retry-tiers", int_flag(o.retry_tiers, 0, kMaxRetryTiers)},
      {"--replication",
       [&](const std::string& flag, const std::string& value) -> Result<void> {
         replication_set = true;
         return int_flag(o.replication, 1, kMaxBrokers)(flag, value);
       }},
      {"--bootstrap-file", string_flag(o.bootstrap_file)},
      {"--control-file", string_flag(o.control_file)},
      {"--log-level",
       [&](const std::string& flag, const std::string& value) -> Result<void> {
         static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error"};
         if (!kLevels.contains(value)) {
           return fail("bad_flag",
                       flag + ": expected trace|debug|info|warn|error, got '" + value + "'");
         }
         o.log_level = value;
         return {};
       }},
      {"--control",
       [&](const std::string&, const std::string& value) { return parse_control(value, o); }},
  };

  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::optional<std::string> value;
    if (const auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    if (flag == "--help" || flag == "-h") {
      o.help = true;
      continue;
    }
    if (flag == "--stdin-control") {
      o.stdin_control = true;
      continue;
    }
    const auto it = with_value.find(flag);
    if (it == with_value.end()) return fail("bad_flag", "unknown flag '" + flag + "'");
    if (!value) {
      if (i + 1 >= args.size()) return fail("bad_flag", flag + ": missing value");
      value = args[++i];
    }
    if (auto r = it->second(flag, *value); !r) return Unexpected{r.error()};
  }
  if (replication_set && o.replication > o.brokers) {
    return fail("bad_flag", "--replication: " + std::to_string(o.replication) +
                                " exceeds --brokers " + std::to_string(o.brokers));
  }
  return o;
}

std::string usage_text() {
  return R"(usage: hookrelay-devbroker [flags]

A Kafka-protocol broker for one machine (librdkafka mock cluster). IN MEMORY ONLY: keeps about
5 MB per partition and loses everything on exit. For trials and tests, never for real data.

  --brokers N            mock brokers (default 3)
  --partitions N         partitions of every hookrelay topic (default 12)
  --retry-tiers N        retry tier topics hookrelay.retry.0..N-1 (default 6)
  --replication N        replication factor (default min(3, brokers))
  --bootstrap-file PATH  write "127.0.0.1:p1,127.0.0.1:p2,..." here once the topics exist
  --control HOST:PORT    control channel, loopback only (default 127.0.0.1:0 = ephemeral)
  --control-file PATH    write the bound control port here
  --stdin-control        read control commands from stdin even when it is a terminal
                         (always on when stdin is not a terminal)
  --log-level LEVEL      trace|debug|info|warn|error (default info)
  --help                 this text

Control commands, one per line, answered by one line "ok ..." or "error <reason>":
  ping | bootstrap | broker down <id> | broker up <id> | brokers down | brokers up
  rtt <id|all> <ms> | errors <ApiKey> <count> <ErrorCode> [<ErrorCode> ...] | clear-errors
)";
}

}  // namespace hookrelay::devbroker
