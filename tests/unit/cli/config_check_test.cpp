// `hookrelay config check`: the services' validation, exit 2 with the field named.
#include <gtest/gtest.h>

#include "cli/cli_context.h"
#include "tests/unit/cli/cli_test_io.h"

namespace hookrelay::cli {
namespace {

using testing::TempFile;
using testing::TestIo;

constexpr const char* kValid = R"(
sources:
  github: { scheme: github, secrets: ["${GITHUB_SECRET}"] }
routes:
  github:
    - { name: ci, url: "http://127.0.0.1:9000/ci" }
postgres: { url: "postgresql://127.0.0.1/hookrelay" }
retry: { schedule_seconds: [1, 2], max_attempts: 3 }
)";

TEST(ConfigCheck, AValidFileSaysOkWithASummary) {
  TempFile file(kValid);
  TestIo t;
  t.env["GITHUB_SECRET"] = "s3cret";
  EXPECT_EQ(t.run({"config", "check", file.path()}), kExitOk) << t.err.str();
  EXPECT_EQ(t.out.str(),
            file.path() + ": ok (1 sources, 1 routes, 2 retry tiers, max 3 attempts)\n");
  EXPECT_EQ(t.err.str(), "");
}

TEST(ConfigCheck, TakesTheFileFromConfigOrTheEnvironment) {
  TempFile file(kValid);
  TestIo flag;
  flag.env["GITHUB_SECRET"] = "s";
  EXPECT_EQ(flag.run({"config", "check", "--config", file.path()}), kExitOk);
  TestIo env;
  env.env["GITHUB_SECRET"] = "s";
  env.env["HOOKRELAY_CONFIG"] = file.path();
  EXPECT_EQ(env.run({"config", "check"}), kExitOk);
  TestIo none;
  EXPECT_EQ(none.run({"config", "check"}), kExitUsage);
  EXPECT_NE(none.err.str().find("HOOKRELAY_CONFIG"), std::string::npos);
}

struct BadCase {
  const char* yaml;
  const char* field;  // the message must start with "<file>: config error: <field>"
};

TEST(ConfigCheck, InvalidFilesExitTwoNamingTheField) {
  const BadCase cases[] = {
      {"sources:\n  github: { scheme: gitlab, secrets: [x] }\n", "sources.github.scheme"},
      {"sources:\n  github: { scheme: github }\n", "sources.github.secrets"},
      {"sources:\n  github: { scheme: github, secrets: [\"${GITHUB_SECRET}\"] }\n",
       "sources.github.secrets"},
      {"routes:\n  nobody:\n    - { name: a, url: \"http://127.0.0.1/\" }\n", "routes.nobody"},
      {"retry: { schedule_seconds: [5, 2] }\n", "retry.schedule_seconds[1]"},
      {"worker: { listen: \"nohost\" }\n", "worker.listen"},
      {"worker: { max_in_flight: 0 }\n", "worker.max_in_flight"},
      {"worker: { allowed_cidrs: [\"10.0.0.1/8\"] }\n", "worker.allowed_cidrs[0]"},
      {"bogus: 1\n", "bogus"},
      // librdkafka itself refuses these when the client configuration is built (no connection).
      {"kafka: { producer_properties: { linger.ms: \"soon\" } }\n",
       "kafka.producer_properties.linger.ms"},
      {"kafka: { consumer_properties: { no.such.property: \"1\" } }\n",
       "kafka.consumer_properties.no.such.property"},
      {"kafka: { properties: { security.protocol: carrier_pigeon } }\n",
       "kafka.properties.security.protocol"},
      {"kafka: { consumer_properties: { enable.auto.offset.store: \"true\" } }\n",
       "kafka.consumer_properties.enable.auto.offset.store"},
  };
  for (const auto& c : cases) {
    TempFile file(c.yaml);
    TestIo t;
    EXPECT_EQ(t.run({"config", "check", file.path()}), kExitUsage) << c.yaml;
    EXPECT_EQ(t.err.str().rfind(file.path() + ": config error: " + c.field, 0), 0u)
        << "expected field " << c.field << ", got: " << t.err.str();
    EXPECT_EQ(t.out.str(), "");
  }
}

TEST(ConfigCheck, WarnsWhenTheBodyLimitDoesNotFitAKafkaMessage) {
  TempFile file("ingest: { max_body_bytes: 1048576 }\n");
  TestIo t;
  EXPECT_EQ(t.run({"config", "check", file.path()}), kExitOk) << t.err.str();
  EXPECT_NE(t.err.str().find("warning: ingest.max_body_bytes (1048576)"), std::string::npos)
      << t.err.str();
}

TEST(ConfigCheck, SecretsNeverAppearInErrors) {
  TempFile file("sources:\n  acme: { scheme: standard-webhooks, secrets: [\"${ACME}\"] }\n");
  TestIo t;
  t.env["ACME"] = "not-a-whsec-hunter2";
  EXPECT_EQ(t.run({"config", "check", file.path()}), kExitUsage);
  EXPECT_NE(t.err.str().find("sources.acme.secrets[0]"), std::string::npos) << t.err.str();
  EXPECT_EQ(t.err.str().find("hunter2"), std::string::npos);
}

TEST(ConfigCheck, AnUnreadableFileExitsTwo) {
  TestIo t;
  EXPECT_EQ(t.run({"config", "check", "/nonexistent/hookrelay.yaml"}), kExitUsage);
  EXPECT_NE(t.err.str().find("/nonexistent/hookrelay.yaml"), std::string::npos);
}

TEST(ConfigCheck, WarnsAboutWhatTheWorkerWouldRefuseOrDrop) {
  TempFile file("sources:\n  github: { scheme: github, secrets: [x] }\n");
  TestIo t;
  EXPECT_EQ(t.run({"config", "check", file.path()}), kExitOk);
  EXPECT_NE(t.err.str().find("warning: postgres.url is empty"), std::string::npos);
  EXPECT_NE(t.err.str().find("warning: source 'github' has no routes"), std::string::npos);
}

constexpr const char* kRoutes = R"(
sources:
  github: { scheme: github, secrets: [s] }
routes:
  github:
    - name: ci
      url: "http://127.0.0.1:9000/ci"
      filter: { header: { X-GitHub-Event: push }, body: [ { pointer: /action, in: [opened] } ] }
      headers: { Authorization: "Bearer ${CI_TOKEN}" }
      retry: { max_attempts: 2 }
      max_in_flight: 999
    - { name: all, url: "http://127.0.0.1:9000/all" }
postgres: { url: "postgresql://127.0.0.1/hookrelay" }
retry: { schedule_seconds: [1, 2], max_attempts: 3 }
worker: { per_host_max_in_flight: 100 }
)";

TEST(ConfigCheck, RouteKeysAreValidatedAndSummarisedWithoutHeaderValues) {
  TempFile file(kRoutes);
  TestIo t;
  t.env["CI_TOKEN"] = "tok-never-shown";
  EXPECT_EQ(t.run({"config", "check", file.path()}), kExitOk) << t.err.str();
  EXPECT_EQ(
      t.out.str(),
      file.path() + ": ok (1 sources, 2 routes, 1 with filters, 2 retry tiers, max 3 attempts)\n");
  EXPECT_NE(
      t.err.str().find(
          "warning: routes.github[0].max_in_flight (999) is above worker.per_host_max_in_flight"),
      std::string::npos)
      << t.err.str();
  EXPECT_EQ(t.err.str().find("validated but not applied"), std::string::npos)
      << "retry and max_in_flight are applied by the worker: " << t.err.str();
  EXPECT_EQ((t.out.str() + t.err.str()).find("tok-never-shown"), std::string::npos);
}

TEST(ConfigCheck, ABadRouteKeyNamesTheFieldAndNotTheValue) {
  std::string yaml = kRoutes;
  yaml.replace(yaml.find("Authorization"), 13, "Host");
  TempFile bad_header(yaml);
  TestIo t;
  t.env["CI_TOKEN"] = "tok-never-shown";
  EXPECT_EQ(t.run({"config", "check", bad_header.path()}), kExitUsage);
  EXPECT_NE(
      t.err.str().find("config error: routes.github[0].headers.Host: cannot be set per route"),
      std::string::npos)
      << t.err.str();
  EXPECT_EQ(t.err.str().find("tok-never-shown"), std::string::npos) << t.err.str();

  yaml = kRoutes;
  yaml.replace(yaml.find("in: [opened]"), 12, "contains: x");
  TempFile bad_operator(yaml);
  TestIo u;
  u.env["CI_TOKEN"] = "x";
  EXPECT_EQ(u.run({"config", "check", bad_operator.path()}), kExitUsage);
  EXPECT_NE(u.err.str().find("config error: routes.github[0].filter.body[0].contains: unknown key"),
            std::string::npos)
      << u.err.str();
}

}  // namespace
}  // namespace hookrelay::cli
