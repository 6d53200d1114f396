#include "devbroker/control_handler.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <map>
#include <sstream>
#include <vector>

#include "devbroker/protocol_names.h"
#include "shared/log.h"

namespace hookrelay::devbroker {
namespace {

constexpr int kMaxInjectedErrors = 100000;
constexpr int kMaxRttMs = 600000;

std::vector<std::string> split_words(std::string_view line) {
  std::vector<std::string> words;
  std::istringstream in{std::string(line)};
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

bool parse_int(std::string_view text, int min, int max, int& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return !text.empty() && ec == std::errc() && ptr == end && out >= min && out <= max;
}

std::string error_reply(const std::string& reason) { return "error " + reason; }

const std::map<std::string_view, std::string_view> kUsage = {
    {"ping", "ping"},
    {"bootstrap", "bootstrap"},
    {"broker", "broker down|up <id>"},
    {"brokers", "brokers down|up"},
    {"rtt", "rtt <id|all> <ms>"},
    {"errors", "errors <ApiKey> <count> <ErrorCode> [<ErrorCode> ...]"},
    {"clear-errors", "clear-errors"},
};

}  // namespace

std::string ControlHandler::handle(std::string_view line) {
  const auto words = split_words(line);
  if (words.empty()) return error_reply("empty command");
  const std::string& cmd = words[0];
  const auto usage = kUsage.find(cmd);
  if (usage == kUsage.end()) return error_reply("unknown command '" + cmd + "'");

  std::lock_guard lock(mu_);
  std::string reply = error_reply("usage: " + std::string(usage->second));
  const bool up_down = words.size() >= 2 && (words[1] == "up" || words[1] == "down");
  if (cmd == "ping" && words.size() == 1) {
    reply = "ok pong";
  } else if (cmd == "bootstrap" && words.size() == 1) {
    reply = "ok " + cluster_.bootstrap();
  } else if (cmd == "broker" && words.size() == 3 && up_down) {
    reply = broker_state(words[1] == "up", words[2]);
  } else if (cmd == "brokers" && words.size() == 2 && up_down) {
    reply = all_brokers_state(words[1] == "up");
  } else if (cmd == "rtt" && words.size() == 3) {
    reply = rtt(words[1], words[2]);
  } else if (cmd == "errors" && words.size() >= 4) {
    reply = push_errors(words);
  } else if (cmd == "clear-errors" && words.size() == 1) {
    reply = clear_errors();
  }
  spdlog::info("msg=control_command command={} reply={}", log_quote(line), log_quote(reply));
  return reply;
}

std::string ControlHandler::broker_state(bool up, std::string_view id_text) {
  int id = 0;
  if (!parse_int(id_text, 1, cluster_.broker_count(), id)) {
    return error_reply("broker id must be 1.." + std::to_string(cluster_.broker_count()) +
                       ", got '" + std::string(id_text) + "'");
  }
  auto r = up ? cluster_.set_broker_up(id) : cluster_.set_broker_down(id);
  if (!r) return error_reply(r.error().message);
  return "ok broker " + std::to_string(id) + (up ? " up" : " down");
}

std::string ControlHandler::all_brokers_state(bool up) {
  // Broker by broker: librdkafka 2.0.2 does not document -1 as "all" for up/down.
  for (int id = 1; id <= cluster_.broker_count(); ++id) {
    auto r = up ? cluster_.set_broker_up(id) : cluster_.set_broker_down(id);
    if (!r) return error_reply(r.error().message);
  }
  return "ok brokers 1-" + std::to_string(cluster_.broker_count()) + (up ? " up" : " down");
}

std::string ControlHandler::rtt(std::string_view id_text, std::string_view ms_text) {
  int ms = 0;
  if (!parse_int(ms_text, 0, kMaxRttMs, ms)) {
    return error_reply("rtt must be 0.." + std::to_string(kMaxRttMs) + " ms, got '" +
                       std::string(ms_text) + "'");
  }
  int first = 1;
  int last = cluster_.broker_count();
  if (id_text != "all") {
    if (!parse_int(id_text, 1, cluster_.broker_count(), first)) {
      return error_reply("broker id must be 1.." + std::to_string(cluster_.broker_count()) +
                         " or all, got '" + std::string(id_text) + "'");
    }
    last = first;
  }
  for (int id = first; id <= last; ++id) {
    if (auto r = cluster_.set_broker_rtt(id, ms); !r) return error_reply(r.error().message);
  }
  return "ok rtt " + std::string(id_text) + " " + std::to_string(ms) + "ms";
}

std::string ControlHandler::push_errors(const std::vector<std::string>& words) {
  auto api_key = parse_api_key(words[1]);
  if (!api_key) return error_reply(api_key.error().message);
  int count = 0;
  if (!parse_int(words[2], 1, kMaxInjectedErrors, count)) {
    return error_reply("count must be 1.." + std::to_string(kMaxInjectedErrors) + ", got '" +
                       words[2] + "'");
  }
  std::vector<rd_kafka_resp_err_t> codes;
  for (std::size_t i = 3; i < words.size(); ++i) {
    auto code = parse_error_code(words[i]);
    if (!code) return error_reply(code.error().message);
    codes.push_back(*code);
  }
  std::vector<rd_kafka_resp_err_t> errors;
  errors.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i)
    errors.push_back(codes[static_cast<std::size_t>(i) % codes.size()]);
  cluster_.push_request_errors(*api_key, errors);
  api_keys_with_errors_.insert(*api_key);
  return "ok " + std::to_string(count) + " " + api_key_name(*api_key) + " errors queued";
}

std::string ControlHandler::clear_errors() {
  for (std::int16_t key : api_keys_with_errors_) cluster_.clear_request_errors(key);
  const auto cleared = api_keys_with_errors_.size();
  api_keys_with_errors_.clear();
  return "ok cleared errors for " + std::to_string(cleared) + " ApiKey(s)";
}

}  // namespace hookrelay::devbroker
