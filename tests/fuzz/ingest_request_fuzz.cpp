// IngestService::handle on a request made from the input, for every signature scheme and the
// call endpoint. Input, HTTP-like but without the parser (raw_http_fuzz covers that):
//
//   [+]METHOD\nTARGET\nName: value\n...\n\nBODY
//
// A leading '+' makes the harness sign the body as the provider of the source named in
// /webhooks/<source> would (at the fixed clock), so mutations reach past verification.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_support.h"
#include "shared/signing/webhook_signer.h"

using namespace hookrelay;

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  bool sign = !in.empty() && in.front() == '+';
  if (sign) in.remove_prefix(1);

  // The method line, then the target where a message's first header would be.
  auto parsed = fuzz::split_headed(in);
  std::string method(parsed.lines[0]);
  std::string target(parsed.lines.size() > 1 ? parsed.lines[1] : std::string_view("/"));
  std::vector<std::pair<std::string, std::string>> headers(
      parsed.headers.begin() + (parsed.lines.size() > 1), parsed.headers.end());
  std::string body_copy(parsed.body);  // exact size, so ASan sees reads past the end

  constexpr std::string_view kPrefix = "/webhooks/";
  if (sign && target.rfind(kPrefix, 0) == 0) {
    std::string source = target.substr(kPrefix.size());
    source = source.substr(0, source.find('?'));
    const auto& sources = fuzz::fuzz_config().sources;
    if (auto it = sources.find(source); it != sources.end()) {
      for (auto& [k, v] :
           provider_headers(it->second, body_copy, fuzz::kNowMs / 1000, "evt_fuzz")) {
        std::erase_if(headers, [&](const auto& h) { return iequals(h.first, k); });
        headers.emplace_back(k, v);
      }
    }
  }

  HttpRequest request;
  request.method = method;
  request.target = target;
  request.body = body_copy;
  request.header = [&headers](std::string_view name) -> std::optional<std::string_view> {
    for (const auto& [k, v] : headers) {
      if (iequals(k, name)) return std::string_view(v);
    }
    return std::nullopt;
  };
  request.for_each_header =
      [&headers](const std::function<void(std::string_view, std::string_view)>& f) {
        for (const auto& [k, v] : headers) f(k, v);
      };
  fuzz::handle_and_check(request);
  return 0;
}
