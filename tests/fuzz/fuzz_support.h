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
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ingest/ingest_service.h"
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

// Runs one request through IngestService::handle and checks the answer: exactly one response,
// synchronously (the producer answers at once), a real status, JSON bodies that parse.
inline void handle_and_check(const HttpRequest& request) {
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
}

}  // namespace hookrelay::fuzz
