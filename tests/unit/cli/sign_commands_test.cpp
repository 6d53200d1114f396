// `hookrelay sign`: headers a provider would send, which ingest's verifier accepts.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "cli/cli_context.h"
#include "shared/signing/signature_verifier.h"
#include "tests/unit/cli/cli_test_io.h"

namespace hookrelay::cli {
namespace {

using testing::TempFile;
using testing::TestIo;

constexpr const char* kConfig = R"(
sources:
  acme: { scheme: standard-webhooks, secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }
  github: { scheme: github, secrets: ["gh-secret"] }
)";

std::map<std::string, std::string> parse_header_lines(const std::string& text) {
  std::map<std::string, std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    std::string line = text.substr(pos, end - pos);
    auto colon = line.find(": ");
    if (colon != std::string::npos) out[line.substr(0, colon)] = line.substr(colon + 2);
    pos = end == std::string::npos ? text.size() : end + 1;
  }
  return out;
}

bool verifies(const Config& config, const std::string& source,
              const std::map<std::string, std::string>& headers, const std::string& body,
              int64_t now) {
  HeaderLookup lookup = [&](std::string_view name) -> std::optional<std::string_view> {
    for (const auto& [k, v] : headers) {
      if (k.size() == name.size() &&
          std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) ==
                   std::tolower(static_cast<unsigned char>(b));
          })) {
        return std::string_view(v);
      }
    }
    return std::nullopt;
  };
  return verify_webhook(config.sources.at(source), lookup, body, now).has_value();
}

TEST(Sign, PrintsStandardWebhooksHeadersThatIngestVerifies) {
  TempFile config(kConfig);
  TempFile body(R"({"type":"invoice.paid"})");
  TestIo t;
  EXPECT_EQ(t.run({"sign", "--config", config.path(), "--source", "acme", "--event-id", "msg_1",
                   "--timestamp", "1714564800", body.path()}),
            kExitOk)
      << t.err.str();
  auto headers = parse_header_lines(t.out.str());
  EXPECT_EQ(headers["webhook-id"], "msg_1");
  EXPECT_EQ(headers["webhook-timestamp"], "1714564800");
  EXPECT_EQ(headers["webhook-signature"].rfind("v1,", 0), 0u);
  auto cfg = load_config_file(config.path(), process_env());
  ASSERT_TRUE(cfg);
  EXPECT_TRUE(verifies(*cfg, "acme", headers, R"({"type":"invoice.paid"})", 1714564800));
  EXPECT_FALSE(verifies(*cfg, "acme", headers, R"({"type":"invoice.PAID"})", 1714564800));
}

TEST(Sign, ReadsTheBodyFromStdinAndDefaultsTimeToNow) {
  TempFile config(kConfig);
  TestIo t;
  t.in.str("{\"zen\":\"hi\"}");
  EXPECT_EQ(t.run({"sign", "--config", config.path(), "--source", "github", "-"}), kExitOk)
      << t.err.str();
  auto headers = parse_header_lines(t.out.str());
  EXPECT_EQ(headers["X-GitHub-Delivery"].rfind("evt_", 0), 0u);  // a random id
  auto cfg = load_config_file(config.path(), process_env());
  ASSERT_TRUE(cfg);
  EXPECT_TRUE(verifies(*cfg, "github", headers, "{\"zen\":\"hi\"}", t.now / 1000));
}

TEST(Sign, JsonOutput) {
  TempFile config(kConfig);
  TestIo t;
  t.in.str("{}");
  EXPECT_EQ(t.run({"sign", "--config", config.path(), "--source", "acme", "--event-id", "m",
                   "--json", "-"}),
            kExitOk);
  auto j = nlohmann::json::parse(t.out.str());
  EXPECT_EQ(j["source"], "acme");
  EXPECT_EQ(j["event_id"], "m");
  EXPECT_EQ(j["headers"]["webhook-id"], "m");
}

TEST(Sign, AnUnknownSourceIsAConfigErrorListingTheKnownOnes) {
  TempFile config(kConfig);
  TestIo t;
  t.in.str("{}");
  EXPECT_EQ(t.run({"sign", "--config", config.path(), "--source", "stripe", "-"}), kExitUsage);
  EXPECT_NE(t.err.str().find("no source 'stripe'"), std::string::npos);
  EXPECT_NE(t.err.str().find("acme, github"), std::string::npos);
}

TEST(Sign, NeedsAConfigASourceAndAReadableFile) {
  TempFile config(kConfig);
  TestIo no_config;
  EXPECT_EQ(no_config.run({"sign", "--source", "acme", "-"}), kExitUsage);
  EXPECT_NE(no_config.err.str().find("HOOKRELAY_CONFIG"), std::string::npos);
  TestIo no_source;
  EXPECT_EQ(no_source.run({"sign", "--config", config.path(), "-"}), kExitUsage);
  TestIo no_file;
  EXPECT_EQ(
      no_file.run({"sign", "--config", config.path(), "--source", "acme", "/nonexistent/body"}),
      kExitUsage);
}

TEST(Send, RefusesToRunWithoutAnAnswerAndSaysWhy) {
  TempFile config(kConfig);
  TestIo t;
  t.in.str("{}");
  // Port 1 on loopback: nothing listens, the connection is refused at once.
  EXPECT_EQ(t.run({"send", "--config", config.path(), "--source", "acme", "--ingest",
                   "http://127.0.0.1:1", "-"}),
            kExitFailed);
  EXPECT_NE(t.err.str().find("http://127.0.0.1:1/webhooks/acme"), std::string::npos) << t.err.str();
}

// sign and send parse the same options; send's were accepted by sign and ignored (and --json
// by send).
TEST(Sign, RefusesSendsOptionsAndSendRefusesJson) {
  TempFile config(kConfig);
  for (const auto& [option, value] :
       std::vector<std::pair<std::string, std::string>>{{"--ingest", "http://127.0.0.1:1"},
                                                        {"--timeout", "5"},
                                                        {"--content-type", "text/plain"}}) {
    TestIo t;
    t.in.str("{}");
    EXPECT_EQ(t.run({"sign", "--config", config.path(), "--source", "acme", option, value, "-"}),
              kExitUsage)
        << option;
    EXPECT_EQ(t.err.str().rfind("hookrelay sign: " + option + " applies to send only\n", 0), 0u)
        << t.err.str();
    EXPECT_EQ(t.out.str(), "");
  }
  TestIo send;
  send.in.str("{}");
  EXPECT_EQ(send.run({"send", "--config", config.path(), "--source", "acme", "--ingest",
                      "http://127.0.0.1:1", "--json", "-"}),
            kExitUsage);
  EXPECT_EQ(send.err.str().rfind("hookrelay send: --json applies to sign only\n", 0), 0u)
      << send.err.str();
}

// Any URL containing /webhooks/ was used as given: a body signed for --source went to another
// source's path.
TEST(Send, AnIngestUrlNamingAnotherSourceIsAUsageError) {
  TempFile config(kConfig);
  TestIo other;
  other.in.str("{}");
  EXPECT_EQ(other.run({"send", "--config", config.path(), "--source", "acme", "--ingest",
                       "http://127.0.0.1:1/webhooks/github", "-"}),
            kExitUsage);
  EXPECT_EQ(other.err.str().rfind("hookrelay send: --ingest http://127.0.0.1:1/webhooks/github is "
                                  "the path of source 'github', not of --source acme",
                                  0),
            0u)
      << other.err.str();
  TestIo none;
  none.in.str("{}");
  EXPECT_EQ(none.run({"send", "--config", config.path(), "--source", "acme", "--ingest",
                      "http://127.0.0.1:1/webhooks/", "-"}),
            kExitUsage);
  EXPECT_NE(none.err.str().find("names no source after /webhooks/"), std::string::npos)
      << none.err.str();
  // Its own path is used as given (nothing listens on port 1: exit 1, not a usage error).
  TestIo own;
  own.in.str("{}");
  EXPECT_EQ(own.run({"send", "--config", config.path(), "--source", "acme", "--ingest",
                     "http://127.0.0.1:1/webhooks/acme", "-"}),
            kExitFailed);
  EXPECT_NE(own.err.str().find("http://127.0.0.1:1/webhooks/acme"), std::string::npos)
      << own.err.str();
  EXPECT_EQ(own.err.str().find("webhooks/acme/webhooks"), std::string::npos) << own.err.str();
  // Its own path with a trailing slash or a query, and a host named "webhooks", are not refused
  // (each fails to connect: exit 1). Nothing listens on 127.0.0.1:1.
  for (const std::string url :
       {"http://127.0.0.1:1/webhooks/acme/", "http://127.0.0.1:1/webhooks/acme?trace=1"}) {
    TestIo io;
    io.in.str("{}");
    EXPECT_EQ(io.run({"send", "--config", config.path(), "--source", "acme", "--ingest", url, "-"}),
              kExitFailed)
        << url << ": " << io.err.str();
  }
}

}  // namespace
}  // namespace hookrelay::cli
