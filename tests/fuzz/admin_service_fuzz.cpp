// AdminService::check_header and AdminService::handle on a request made from the input, as
// hookrelay-admin's HTTP server would run them: check_header on the header alone, then handle on
// the whole request. Input, HTTP-like but without the parser (raw_http_fuzz and http_server_fuzz
// cover that):
//
//   METHOD\nTARGET\nName: value\n...\n\nBODY
//
// The database is a Unix socket in a directory that does not exist: a request that gets as far as
// a statement fails to connect at once (503 db_unavailable), without any network.
//
// Properties: exactly one answer, synchronously; a real status; JSON bodies parse, and a 4xx/5xx
// JSON body names its error code; never a 500 (admin_service.h: bad input is a 4xx, a 503 means
// the database is unreachable); a refusal from check_header is a 401 for a /v1 path, and handle()
// answers the same request the same way (status, code, message, headers); a 401 from handle() was
// check_header's to give (the token is checked from the header alone).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "admin/admin_service.h"
#include "fuzz_support.h"

using namespace hookrelay;

namespace {

constexpr const char* kAdminConfigYaml = R"(
sources:
  github: { scheme: github, secrets: ["It's a Secret to Everybody"] }
routes:
  github:
    - { name: ci, url: "https://ci.example.com/hooks" }
admin: { tokens: ["adm_0123456789abcdef", "adm_fedcba9876543210"] }
)";

struct AdminFixture {
  std::shared_ptr<const Config> config = [] {
    auto c = parse_config(kAdminConfigYaml, [](const std::string&) { return std::nullopt; });
    if (!c) fuzz::fuzz_fail("admin fuzz config does not parse", c.error().message);
    return std::make_shared<const Config>(std::move(*c));
  }();
  admin::AdminService service{[this] { return config; },
                              "host=/nonexistent/hookrelay-fuzz dbname=hookrelay connect_timeout=1",
                              std::make_shared<prometheus::Registry>(), [] {}};
};

AdminFixture& admin_fixture() {
  static AdminFixture* fixture = [] {
    fuzz::quiet_logs();
    return new AdminFixture();  // never destroyed: the fuzzer exits without unwinding
  }();
  return *fixture;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fuzz::OwnedRequest owned =
      fuzz::request_from(std::string_view(reinterpret_cast<const char*>(data), size));
  const HttpRequest request = owned.view();
  auto& service = admin_fixture().service;

  const std::optional<HttpRefusal> refusal = service.check_header(fuzz::header_only(request));
  if (refusal) {
    const std::string_view path = std::string_view(owned.target).substr(0, owned.target.find('?'));
    fuzz::check(path.substr(0, 4) == "/v1/", "check_header refused a path that needs no token",
                owned.target);
    fuzz::check(refusal->status == 401 && refusal->code == "unauthorized",
                "check_header refused with something other than 401 unauthorized",
                std::to_string(refusal->status) + " " + refusal->code);
  }

  int answers = 0;
  std::optional<HttpResponse> answer;
  service.handle(request, [&](HttpResponse r) {
    ++answers;
    answer = std::move(r);
  });
  if (answers != 1) fuzz::fuzz_fail("responder not called exactly once", std::to_string(answers));
  fuzz::check(answer->status >= 100 && answer->status <= 599, "status out of range",
              std::to_string(answer->status));
  fuzz::check(answer->status != 500, "bad input answered 500", answer->body);
  std::optional<std::string> code;
  if (answer->content_type.rfind("application/json", 0) == 0) {
    fuzz::check(nlohmann::json::accept(answer->body), "JSON response does not parse", answer->body);
    fuzz::check(fuzz::valid_utf8(answer->body), "JSON response is not UTF-8", answer->body);
    code = fuzz::json_error_code(answer->body);
    if (answer->status >= 400) {
      fuzz::check(code.has_value() && !code->empty(), "JSON error names no code", answer->body);
    }
  }
  if (refusal) {
    fuzz::check_refusal_matches("admin", *refusal, *answer);
  } else {
    fuzz::check(!(answer->status == 401 && code == "unauthorized"),
                "handle answered 401 unauthorized, check_header let the request through",
                answer->body);
  }
  return 0;
}
