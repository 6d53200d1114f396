// parse_config on arbitrary YAML text: every refusal is a Result error (never an exception, a
// crash or a hang), and no error message shows a secret that came from the environment.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "fuzz_support.h"
#include "shared/config/config.h"

using namespace hookrelay;

namespace {

constexpr const char* kEnvSecret = "env-secret-7f3a9c";

std::optional<std::string> fuzz_env(const std::string& name) {
  if (name == "SECRET") return std::string(kEnvSecret);
  if (name == "WHSEC") return std::string("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  if (name == "TOKEN") return std::string("tok_0123456789abcdef");
  if (name == "EMPTY") return std::string();
  return std::nullopt;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string yaml(reinterpret_cast<const char*>(data), size);
  auto config = parse_config(yaml, fuzz_env);
  if (!config) {
    // An error about a secret field (sources.X.secrets[i], api_tokens[i], routes.X[i].secret,
    // routes.X[i].secrets[j], routes.X[i].headers.NAME)
    // never shows the value, even when it came from the environment. Other fields may quote
    // what they were given.
    const std::string& message = config.error().message;
    const std::string field = message.substr(0, message.find(": "));
    const bool secret_field =
        field.find(".secrets[") != std::string::npos || field.rfind("api_tokens[", 0) == 0 ||
        (field.size() >= 7 && field.compare(field.size() - 7, 7, ".secret") == 0) ||
        field.find(".headers.") != std::string::npos;
    if (secret_field && yaml.find(kEnvSecret) == std::string::npos) {
      fuzz::check(message.find(kEnvSecret) == std::string::npos, "an error message shows a secret",
                  message);
    }
    return 0;
  }
  for (const auto& [name, source] : config->sources) {
    fuzz::check(!source.secrets.empty(), "a source without secrets was accepted", name);
    fuzz::check(source.name == name, "source name differs from its key", name);
  }
  for (const auto& token : config->api_tokens) {
    fuzz::check(token.size() >= 16, "an API token shorter than 16 characters was accepted");
  }
  for (const auto& [source, routes] : config->routes) {
    for (const auto& r : routes) {
      fuzz::check(r.url.rfind("http://", 0) == 0 || r.url.rfind("https://", 0) == 0,
                  "a route url is not http(s)", r.url);
      for (const auto& [name, value] : r.headers) {
        fuzz::check(value.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos,
                    "a route header value with CR, LF or NUL was accepted", name);
      }
      for (const auto& c : r.filter.body) {
        fuzz::check(c.op != BodyCondition::Op::kIn || !c.values.empty(),
                    "an empty in list was accepted");
      }
    }
  }
  fuzz::check(!config->retry.schedule_seconds.empty(), "an empty retry schedule was accepted");
  return 0;
}
