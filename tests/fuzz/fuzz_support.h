// Shared pieces of the libFuzzer harnesses: failing loudly, splitting the input, and the ingest
// service set up with one source per signature scheme behind a producer that answers at once.
//
// A harness checks properties and calls fuzz_fail() when one breaks: abort() makes libFuzzer
// keep the input as a crash artifact. Harnesses catch only what an API documents it throws.
#pragma once

#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ingest/ingest_service.h"
#include "shared/ascii.h"
#include "shared/config/config.h"
#include "shared/kafka/message_producer.h"
#include "shared/utf8.h"

namespace hookrelay::fuzz {

[[noreturn]] inline void fuzz_fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz property violated: %s: %.*s\n", what,
               static_cast<int>(std::min<std::size_t>(detail.size(), 2000)), detail.data());
  std::abort();
}

inline void check(bool ok, const char* what, std::string_view detail = {}) {
  if (!ok) fuzz_fail(what, detail);
}

inline bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// Splits at every `sep`; "a\n\nb" gives {"a", "", "b"}.
inline std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    auto at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

// The input layout of the harnesses that need a first line, headers and a body (requests, Kafka
// messages): FIRST\nName: value\n...\n\nBODY. A header line without ':' is a name with an empty
// value; spaces after the colon are dropped. Without a blank line there is no body.
struct HeadedInput {
  std::vector<std::string_view> lines;  // the first line, then the header lines
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;
};

inline HeadedInput split_headed(std::string_view in) {
  HeadedInput out;
  std::string_view head = in;
  if (auto blank = in.find("\n\n"); blank != std::string_view::npos) {
    head = in.substr(0, blank);
    out.body = in.substr(blank + 2);
  }
  out.lines = split(head, '\n');
  for (std::size_t i = 1; i < out.lines.size(); ++i) {
    auto colon = out.lines[i].find(':');
    auto value =
        colon == std::string_view::npos ? std::string_view() : out.lines[i].substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    out.headers.emplace_back(out.lines[i].substr(0, colon), value);
  }
  return out;
}

// A request made from a HeadedInput-like layout, owning its bytes (each exactly its size, so ASan
// sees reads past the end); view() is what a handler gets. Header names match case-insensitively,
// the first one of a name wins, as Beast's find() does.
struct OwnedRequest {
  std::string method;
  std::string target;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;

  HttpRequest view() const {
    HttpRequest request;
    request.method = method;
    request.target = target;
    request.body = body;
    request.header = [this](std::string_view name) -> std::optional<std::string_view> {
      for (const auto& [k, v] : headers) {
        if (ascii_iequals(k, name)) return std::string_view(v);
      }
      return std::nullopt;
    };
    request.for_each_header =
        [this](const std::function<void(std::string_view, std::string_view)>& f) {
          for (const auto& [k, v] : headers) f(k, v);
        };
    return request;
  }
};

// METHOD\nTARGET\nName: value\n...\n\nBODY (split_headed, the target where a message's first header
// would be; "/" when there is none).
inline OwnedRequest request_from(std::string_view in) {
  auto parsed = split_headed(in);
  OwnedRequest r;
  r.method = std::string(parsed.lines[0]);
  r.target = std::string(parsed.lines.size() > 1 ? parsed.lines[1] : std::string_view("/"));
  r.headers.assign(parsed.headers.begin() + (parsed.lines.size() > 1 ? 1 : 0),
                   parsed.headers.end());
  r.body = std::string(parsed.body);
  return r;
}

// The log lines a rejected request writes would drown libFuzzer's own output.
inline void quiet_logs() { spdlog::set_level(spdlog::level::off); }

// One source per signature scheme, routes, and an API token; secrets fixed so committed seeds
// carry valid signatures.
inline constexpr const char* kConfigYaml = R"(
sources:
  github: { scheme: github, secrets: ["It's a Secret to Everybody"] }
  stripe: { scheme: stripe, secrets: ["whsec_old", "whsec_new"], tolerance_seconds: 300 }
  acme:   { scheme: standard-webhooks, secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }
  slack:  { scheme: slack, secrets: ["slacksecret"] }
  shop:   { scheme: shopify, secrets: ["shopsecret"] }
  custom: { scheme: hmac, header: X-Signature, encoding: hex, prefix: "sha256=", secrets: ["c"],
            algorithm: sha256, timestamp_header: X-Timestamp, event_id_header: X-Event-Id }
  b64:    { scheme: hmac, header: X-Sig, encoding: base64, secrets: ["b"], algorithm: sha1 }
api_tokens: ["tok_0123456789abcdef"]
routes:
  github:
    - { name: ci, url: "https://ci.example.com/hooks", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
    - { name: audit, url: "http://audit.example.com:8080/in", ordered: true, timeout_ms: 2000 }
  stripe:
    - { name: billing, url: "https://billing.example.com/stripe" }
    - { name: ledger, url: "https://ledger.example.com/", ordered: true,
        ordering_key: { json_pointer: /data/object/customer } }
  custom:
    - { name: c1, url: "https://c.example.com/" }
    - { name: c2, url: "https://c.example.com/2", ordered: true, ordering_key: { header: X-Tenant } }
)";

// The fixed clock of the ingest harnesses (Unix ms): seeds are signed at this time.
inline constexpr int64_t kNowMs = 1'700'000'000'000;

inline const Config& fuzz_config() {
  static const Config config = [] {
    auto c = parse_config(kConfigYaml, [](const std::string&) { return std::nullopt; });
    if (!c) fuzz_fail("fuzz config does not parse", c.error().message);
    return *c;
  }();
  return config;
}

// Answers every produce() at once on the caller's thread, alternating ack and failure, so both
// the 202 and the 503 paths run.
class InstantProducer final : public MessageProducer {
 public:
  void produce(const OutgoingMessage& m, DoneCallback done) override {
    if (m.headers == nullptr) fuzz_fail("produce without headers");
    if (++count_ % 2 == 0) {
      done(fail("delivery_timeout", "fuzz broker said no", true));
    } else {
      done(ProducedAt{0, static_cast<int64_t>(count_)});
    }
  }
  bool reachable() const override { return true; }
  int outstanding() const override { return 0; }

 private:
  uint64_t count_ = 0;
};

struct IngestFixture {
  InstantProducer producer;
  IngestService service{fuzz_config(), producer, std::make_shared<prometheus::Registry>(),
                        [] { return kNowMs; }};
};

inline IngestFixture& ingest_fixture() {
  static IngestFixture* fixture = [] {
    quiet_logs();
    return new IngestFixture();  // never destroyed: the fuzzer exits without unwinding
  }();
  return *fixture;
}

// Whether a request's header announces a body (a Transfer-Encoding, or a Content-Length with a
// digit other than 0): IngestService::check_header refuses only such requests (ingest_service.h).
inline bool announces_body(const HttpRequest& head) {
  if (head.header("Transfer-Encoding")) return true;
  const auto length = head.header("Content-Length");
  return length && length->find_first_not_of('0') != std::string_view::npos;
}

// The code of a JSON error body {"error":{"code":...}}; nullopt when the body is not one.
inline std::optional<std::string> json_error_code(std::string_view body) {
  const auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("error") || !doc["error"].is_object()) return std::nullopt;
  const auto& error = doc["error"];
  if (!error.contains("code") || !error["code"].is_string()) return std::nullopt;
  return error["code"].get<std::string>();
}

inline std::string describe_headers(const std::vector<std::pair<std::string, std::string>>& hs) {
  std::string out;
  for (const auto& [k, v] : hs) out += "[" + k + ": " + v + "]";
  return out;
}

// A refusal from check_header against handle()'s answer to the same request: the server answers
// a refusal json_error(status, code, message) with its headers, so handle() must have given the
// same status, the same JSON error (so the same code and message) and the same headers, whatever
// the body. `what` names the service.
inline void check_refusal_matches(const char* what, const HttpRefusal& refusal,
                                  const HttpResponse& answer) {
  const std::string detail =
      std::string(what) + ": check_header " + std::to_string(refusal.status) + " " + refusal.code +
      " '" + refusal.message + "' " + describe_headers(refusal.headers) + ", handle " +
      std::to_string(answer.status) + " " + answer.body + " " + describe_headers(answer.headers);
  check(refusal.status >= 400 && refusal.status <= 599, "check_header refusal not a 4xx/5xx",
        detail);
  check(!refusal.code.empty(), "check_header refusal without a code", detail);
  check(answer.status == refusal.status, "check_header and handle disagree on the status", detail);
  check(json_error_code(answer.body) == refusal.code,
        "check_header and handle disagree on the code", detail);
  check(answer.body == json_error(refusal.status, refusal.code, refusal.message).body,
        "check_header and handle disagree on the error body (message)", detail);
  check(answer.headers == refusal.headers, "check_header and handle disagree on the headers",
        detail);
}

// What HttpServer hands check_header: the request's method, target and header, no body.
inline HttpRequest header_only(const HttpRequest& request) {
  HttpRequest head = request;
  head.body = {};
  return head;
}

// Runs one request through IngestService::check_header (as the HTTP server would, on its header
// alone) and IngestService::handle, and checks the answer: exactly one response, synchronously
// (the producer answers at once), a real status, JSON bodies that parse; when check_header
// refuses, the request announced a body and handle() gives the same answer (same status, code,
// message and headers).
inline void handle_and_check(const HttpRequest& request) {
  const std::optional<HttpRefusal> refusal =
      ingest_fixture().service.check_header(header_only(request));
  if (refusal) {
    check(announces_body(request), "check_header refused a request that announces no body",
          refusal->code);
  }
  int answers = 0;
  std::optional<HttpResponse> answer;
  ingest_fixture().service.handle(request, [&](HttpResponse r) {
    ++answers;
    answer = std::move(r);
  });
  if (answers != 1) fuzz_fail("responder not called exactly once", std::to_string(answers));
  check(answer->status >= 100 && answer->status <= 599, "status out of range",
        std::to_string(answer->status));
  if (answer->content_type.rfind("application/json", 0) == 0) {
    check(nlohmann::json::accept(answer->body), "JSON response does not parse", answer->body);
    check(valid_utf8(answer->body), "JSON response is not UTF-8", answer->body);
  }
  check(ingest_fixture().service.in_flight() == 0,
        "in-flight count not back to 0 after the answer");
  if (refusal) {
    check_refusal_matches("ingest", *refusal, *answer);
  } else if (announces_body(request) && answer->status >= 400) {
    // The other way round: an answer of the kind check_header gives (ingest_service.h: an unknown
    // path or source, a method its path does not take, /v1/calls without a valid token, a webhook
    // without its signature headers) is decided from the header alone, so check_header gives it
    // too for a request with a body (the fixture never shuts down).
    if (const auto code = json_error_code(answer->body)) {
      for (std::string_view header_code :
           {"not_found", "method_not_allowed", "unknown_source", "unauthorized",
            "missing_signature", "malformed_signature", "missing_timestamp"}) {
        check(*code != header_code, "handle refused from the header, check_header did not",
              std::to_string(answer->status) + " " + answer->body);
      }
    }
  }
}

}  // namespace hookrelay::fuzz
