#include "shared/config/config.h"

#include <gtest/gtest.h>

#include <map>

namespace hookrelay {
namespace {

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// Each YAML of `refused`, put between `prefix` and `suffix`, is refused with an error that
// contains its text (the field's name, and what is wrong with it).
void expect_refused(const std::string& prefix, const std::map<std::string, std::string>& refused,
                    const std::string& suffix = "") {
  for (const auto& [yaml, error] : refused) {
    auto r = parse_config(prefix + yaml + suffix, env_of({}));
    ASSERT_FALSE(r) << yaml;
    EXPECT_NE(r.error().message.find(error), std::string::npos)
        << yaml << ": " << r.error().message;
  }
}

const char* kExample = R"(
kafka: { bootstrap_servers: "127.0.0.1:9092" }
ingest: { listen: "127.0.0.1:8080", max_body_bytes: 1048576 }
sources:
  github: { scheme: github, secrets: ["${GITHUB_SECRET}"] }
  stripe: { scheme: stripe, secrets: ["whsec_old", "whsec_new"], tolerance_seconds: 300 }
  acme:   { scheme: standard-webhooks, secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }
  slack:  { scheme: slack, secrets: ["slacksecret"] }
  shop:   { scheme: shopify, secrets: ["shopsecret"] }
  custom: { scheme: hmac, header: X-Signature, encoding: hex, prefix: "sha256=", secrets: ["c"] }
api_tokens: ["${HOOKRELAY_API_TOKEN}"]
routes:
  github:
    - { name: ci, url: "http://127.0.0.1:9000/hooks", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", timeout_ms: 10000 }
retry: { schedule_seconds: [5, 30, 120], max_attempts: 8, max_age_seconds: 86400 }
)";

TEST(Config, ParsesTheDocumentedShapeAndExpandsEnv) {
  auto c = parse_config(kExample, env_of({{"GITHUB_SECRET", "gh-s3cret"},
                                          {"HOOKRELAY_API_TOKEN", "tok_0123456789abcdef"}}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->sources.size(), 6u);
  EXPECT_EQ(c->sources.at("github").secrets.at(0), "gh-s3cret");
  EXPECT_EQ(c->sources.at("stripe").secrets.size(), 2u);
  EXPECT_EQ(c->sources.at("custom").scheme, SchemeKind::kHmac);
  EXPECT_EQ(c->sources.at("custom").prefix, "sha256=");
  EXPECT_EQ(c->api_tokens.at(0), "tok_0123456789abcdef");
  EXPECT_EQ(c->routes.at("github").at(0).url, "http://127.0.0.1:9000/hooks");
  EXPECT_EQ(c->retry.schedule_seconds, (std::vector<int>{5, 30, 120}));
  EXPECT_EQ(c->ingest.max_body_bytes, 1048576u);
}

TEST(Config, DefaultsWhenEmpty) {
  auto c = parse_config("", env_of({}));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->ingest.listen, "127.0.0.1:8080");
  EXPECT_EQ(c->ingest.metrics_listen, "");  // /metrics on ingest.listen
  EXPECT_EQ(c->worker.listen, "127.0.0.1:9100");
  EXPECT_EQ(c->retry.max_attempts, 8);
  EXPECT_FALSE(c->worker.allow_private_networks);
}

TEST(Config, AdaptiveLimitDefaultsAndKeys) {
  auto d = parse_config("", env_of({}));
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->worker.adaptive_limit.enabled);
  EXPECT_DOUBLE_EQ(d->worker.adaptive_limit.decrease_factor, 0.7);
  EXPECT_DOUBLE_EQ(d->worker.adaptive_limit.increase_step, 1.0);
  EXPECT_EQ(d->worker.adaptive_limit.max_pause_seconds, 60);
  auto c = parse_config(
      "worker: { adaptive_limit: { enabled: false, decrease_factor: 0.5, increase_step: 2, "
      "max_pause_seconds: 0 } }",
      env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_FALSE(c->worker.adaptive_limit.enabled);
  EXPECT_DOUBLE_EQ(c->worker.adaptive_limit.decrease_factor, 0.5);
  EXPECT_DOUBLE_EQ(c->worker.adaptive_limit.increase_step, 2.0);
  EXPECT_EQ(c->worker.adaptive_limit.max_pause_seconds, 0);
  for (auto [yaml, field] :
       {std::pair{"{ decrease_factor: 1 }", "worker.adaptive_limit.decrease_factor"},
        std::pair{"{ decrease_factor: 0 }", "worker.adaptive_limit.decrease_factor"},
        std::pair{"{ increase_step: 0 }", "worker.adaptive_limit.increase_step"},
        std::pair{"{ max_pause_seconds: -1 }", "worker.adaptive_limit.max_pause_seconds"},
        std::pair{"{ max_pause_seconds: 3601 }", "worker.adaptive_limit.max_pause_seconds"},
        std::pair{"{ enabled: maybe }", "worker.adaptive_limit.enabled"},
        std::pair{"{ min: 2 }", "worker.adaptive_limit.min"},
        std::pair{"true", "worker.adaptive_limit"}}) {
    auto bad = parse_config(std::string("worker: { adaptive_limit: ") + yaml + " }", env_of({}));
    ASSERT_FALSE(bad) << yaml;
    EXPECT_NE(bad.error().message.find(field), std::string::npos)
        << yaml << ": " << bad.error().message;
  }
}

TEST(Config, StoreBatchingDefaultsKeysAndErrorsNamingTheField) {
  auto d = parse_config("", env_of({}));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->worker.store_batching.min_batch, 100);
  EXPECT_EQ(d->worker.store_batching.max_wait_ms, 10);
  EXPECT_EQ(d->worker.store_batching.record_max_wait_ms, 50);
  auto c = parse_config("worker: { store_batching: { min_batch: 1, max_wait_ms: 0 } }", env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->worker.store_batching.min_batch, 1);
  EXPECT_EQ(c->worker.store_batching.max_wait_ms, 0);
  auto records = parse_config("worker: { store_batching: { record_max_wait_ms: 0 } }", env_of({}));
  ASSERT_TRUE(records) << records.error().message;
  EXPECT_EQ(records->worker.store_batching.record_max_wait_ms, 0);
  const std::map<std::string, std::string> refused = {
      {"{ min_batch: 0 }", "worker.store_batching.min_batch"},
      {"{ min_batch: 10001 }", "worker.store_batching.min_batch"},
      {"{ max_wait_ms: -1 }", "worker.store_batching.max_wait_ms"},
      {"{ max_wait_ms: 1001 }", "worker.store_batching.max_wait_ms"},
      {"{ max_wait_ms: soon }", "worker.store_batching.max_wait_ms"},
      {"{ record_max_wait_ms: -1 }", "worker.store_batching.record_max_wait_ms"},
      {"{ record_max_wait_ms: 1001 }", "worker.store_batching.record_max_wait_ms"},
      {"{ linger_ms: 5 }", "worker.store_batching.linger_ms"},
      {"[100, 10]", "worker.store_batching"}};
  expect_refused("worker: { store_batching: ", refused, " }");
}

TEST(Config, HttpThreadsDefaultRangeAndErrorsNamingTheField) {
  auto d = parse_config("", env_of({}));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->worker.http_threads, 1);
  auto c = parse_config("worker: { http_threads: 4 }", env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->worker.http_threads, 4);
  expect_refused("worker: { http_threads: ",
                 {{"0", "worker.http_threads"},
                  {"65", "worker.http_threads"},
                  {"many", "worker.http_threads"},
                  {"[2]", "worker.http_threads"}},
                 " }");
}

// YAML's .nan is a float that every range check let through (NaN compares false): a rate of
// NaN meant no limit at all. Refused, naming the field.
TEST(Config, NotANumberIsRefusedNamingTheField) {
  expect_refused(
      "worker: { ",
      {{"per_host_rate_per_second: .nan", "worker.per_host_rate_per_second"},
       {"adaptive_limit: { decrease_factor: .NaN }", "worker.adaptive_limit.decrease_factor"},
       {"adaptive_limit: { increase_step: .nan }", "worker.adaptive_limit.increase_step"}},
      " }");
  auto route = parse_config(
      "sources: { gh: { scheme: github, secrets: [s] } }\n"
      "routes: { gh: [ { name: a, url: \"http://127.0.0.1:9/a\", rate_per_second: .nan } ] }\n",
      env_of({}));
  ASSERT_FALSE(route);
  EXPECT_NE(route.error().message.find("rate_per_second"), std::string::npos)
      << route.error().message;
}

// A positive rate below 0.001 calls a second is refused, naming the field: the wait between its
// calls overflowed the rate limiter's arithmetic. 0 (unlimited) and 0.001 are taken.
TEST(Config, ARateBelowOneCallInAThousandSecondsIsRefusedNamingTheField) {
  expect_refused("worker: { ",
                 {{"per_host_rate_per_second: 1e-20", "worker.per_host_rate_per_second"},
                  {"per_host_rate_per_second: 0.0009", "worker.per_host_rate_per_second"}},
                 " }");
  const std::string route =
      "sources: { gh: { scheme: github, secrets: [s] } }\n"
      "routes: { gh: [ { name: a, url: \"http://127.0.0.1:9/a\", rate_per_second: ";
  for (const char* tiny : {"1e-20", "0.0009"}) {
    auto r = parse_config(route + tiny + " } ] }\n", env_of({}));
    ASSERT_FALSE(r) << tiny;
    EXPECT_NE(r.error().message.find("routes.gh[0].rate_per_second"), std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find("at least 0.001"), std::string::npos) << r.error().message;
  }
  auto c = parse_config(route + "0.001 } ] }\nworker: { per_host_rate_per_second: 0.001 }\n",
                        env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->routes.at("gh").at(0).rate_per_second, 0.001);
  EXPECT_EQ(c->worker.per_host_rate_per_second, 0.001);
  auto unlimited =
      parse_config(route + "0 } ] }\nworker: { per_host_rate_per_second: 0 }\n", env_of({}));
  ASSERT_TRUE(unlimited) << unlimited.error().message;
  EXPECT_EQ(unlimited->routes.at("gh").at(0).rate_per_second, 0);
}

TEST(Config, HostStatesDefaultsKeysAndErrorsNamingTheField) {
  auto d = parse_config("", env_of({}));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->worker.host_states.publish_interval_ms, 5000);
  EXPECT_EQ(d->worker.host_states.stale_after_ms, 15000);
  auto c = parse_config(
      "worker: { host_states: { publish_interval_ms: 200, stale_after_ms: 700 } }", env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->worker.host_states.publish_interval_ms, 200);
  EXPECT_EQ(c->worker.host_states.stale_after_ms, 700);
  const std::map<std::string, std::string> refused = {
      {"{ publish_interval_ms: 99 }", "worker.host_states.publish_interval_ms: must be"},
      {"{ publish_interval_ms: often }", "worker.host_states.publish_interval_ms: must be"},
      {"{ stale_after_ms: 3600001 }", "worker.host_states.stale_after_ms: must be"},
      {"{ stale_after_ms: 5000 }",
       "worker.host_states.stale_after_ms: must be greater than publish_interval_ms (5000)"},
      {"{ publish_interval_ms: 20000 }",
       "worker.host_states.stale_after_ms: must be greater than publish_interval_ms (20000)"},
      {"{ interval_ms: 5 }", "worker.host_states.interval_ms: unknown key"},
      {"[5000, 15000]", "worker.host_states: must be a mapping"}};
  expect_refused("worker: { host_states: ", refused, " }");
}

TEST(Config, AdminSectionDefaultsKeysAndErrorsNamingTheField) {
  auto d = parse_config("", env_of({}));
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->admin.listen, "127.0.0.1:9200");
  EXPECT_TRUE(d->admin.tokens.empty());
  auto c = parse_config(
      R"(admin: { listen: "127.0.0.1:9300", tokens: ["${ADMIN_TOKEN}"], max_replay_keys: 50 })",
      env_of({{"ADMIN_TOKEN", "adm_0123456789abcdef"}}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->admin.listen, "127.0.0.1:9300");
  EXPECT_EQ(c->admin.tokens, (std::vector<std::string>{"adm_0123456789abcdef"}));
  EXPECT_EQ(c->admin.max_replay_keys, 50);
  const std::map<std::string, std::string> refused = {
      {R"({ tokens: ["0123456789abcdef", "short-token"] })", "admin.tokens[1]"},
      {"{ tokens: 12 }", "admin.tokens"},
      {"{ listen: nowhere }", "admin.listen"},
      {"{ max_replay_keys: 0 }", "admin.max_replay_keys"},
      {"{ colour: red }", "admin.colour"}};
  expect_refused("admin: ", refused);
  // A refused token is not echoed.
  auto r = parse_config(R"(admin: { tokens: ["short-token"] })", env_of({}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message.find("short-token"), std::string::npos) << r.error().message;
}

TEST(Config, EnvOverridesAddresses) {
  auto c = parse_config(kExample, env_of({{"GITHUB_SECRET", "x"},
                                          {"HOOKRELAY_API_TOKEN", "tok_0123456789abcdef"},
                                          {"HOOKRELAY_KAFKA_BOOTSTRAP", "10.0.0.1:9092"},
                                          {"HOOKRELAY_INGEST_LISTEN", "[::1]:9999"},
                                          {"HOOKRELAY_INGEST_METRICS_LISTEN", "[::1]:9101"},
                                          {"HOOKRELAY_DATABASE_URL", "postgresql://db/x"}}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->kafka.bootstrap_servers, "10.0.0.1:9092");
  EXPECT_EQ(c->ingest.listen, "[::1]:9999");
  EXPECT_EQ(c->ingest.metrics_listen, "[::1]:9101");
  EXPECT_EQ(c->postgres.url, "postgresql://db/x");
}

struct BadCase {
  const char* yaml;
  const char* field_prefix;
};

class ConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigErrors, NameTheField) {
  auto c = parse_config(GetParam().yaml, env_of({}));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message.rfind(GetParam().field_prefix, 0), 0u) << c.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Fields, ConfigErrors,
    ::testing::Values(
        BadCase{"sources: { gh: { scheme: gitlab, secrets: [a] } }",
                "sources.gh.scheme: unknown scheme"},
        BadCase{"sources: { gh: { scheme: github } }", "sources.gh.secrets: is required"},
        BadCase{"sources: { gh: { scheme: github, secrets: [] } }",
                "sources.gh.secrets: must list"},
        BadCase{"sources: { gh: { scheme: github, secrets: [\"${NOPE}\"] } }",
                "sources.gh.secrets[0]: environment variable NOPE"},
        BadCase{"sources: { c: { scheme: hmac, secrets: [a] } }", "sources.c.header: is required"},
        BadCase{"sources: { c: { scheme: hmac, header: X, encoding: b32, secrets: [a] } }",
                "sources.c.encoding"},
        BadCase{"sources: { g: { scheme: github, header: X, secrets: [a] } }",
                "sources.g.header: applies only"},
        BadCase{"sources: { a: { scheme: standard-webhooks, secrets: [plain] } }",
                "sources.a.secrets[0]"},
        BadCase{"sources: { a: { scheme: standard-webhooks, secrets: [\"whsec_not*base64\"] } }",
                "sources.a.secrets[0]: standard-webhooks secrets are whsec_ followed by base64"},
        BadCase{"sources: { g: { scheme: github, secrets: [a] } }\nroutes: { g: [ { name: r, url: "
                "\"http://h/\", secret: \"whsec_%%%\" } ] }",
                "routes.g[0].secret"},
        BadCase{"ingest: { listen: nonsense }", "ingest.listen"},
        BadCase{"ingest: { metrics_listen: nonsense }", "ingest.metrics_listen"},
        BadCase{"ingest: { listen: \"127.0.0.1:8080\", metrics_listen: \"127.0.0.1:8080\" }",
                "ingest.metrics_listen: must differ from ingest.listen"},
        BadCase{"ingest: { max_body_bytes: -5 }", "ingest.max_body_bytes"},
        BadCase{"ingest: { lisen: \"1:2\" }", "ingest.lisen: unknown key"},
        BadCase{"api_tokens: [short]", "api_tokens[0]"},
        BadCase{"routes: { nosuch: [] }", "routes.nosuch: names no configured source"},
        BadCase{"sources: { g: { scheme: github, secrets: [a] } }\nroutes: { g: [ { name: r, url: "
                "\"ftp://x\" } ] }",
                "routes.g[0].url"},
        BadCase{"retry: { schedule_seconds: [30, 5] }", "retry.schedule_seconds[1]"},
        BadCase{"retry: { max_attempts: 0 }", "retry.max_attempts"},
        BadCase{"worker: { max_in_flight: lots }", "worker.max_in_flight: must be a number"},
        BadCase{"log_level: loud", "log_level"},
        BadCase{"kafka: [1, 2]", "kafka: must be a mapping"},
        BadCase{"ingest: { max_connections: 0 }", "ingest.max_connections"},
        BadCase{"ingest: { header_timeout_ms: 5 }", "ingest.header_timeout_ms"},
        BadCase{"ingest: { idle_timeout_ms: many }", "ingest.idle_timeout_ms"},
        BadCase{"ingest: { max_headers: 2 }", "ingest.max_headers"},
        BadCase{"ingest: { max_body_bytes: 65536, max_buffered_body_bytes: 65535 }",
                "ingest.max_buffered_body_bytes: must be at least ingest.max_body_bytes (65536)"},
        BadCase{"ingest: { max_buffered_body_bytes: 0 }", "ingest.max_buffered_body_bytes"},
        BadCase{"sources: { g: { scheme: github, secrets: [a] } }\nroutes: { g: [ { name: r, url: "
                "\"https:///h/x\" } ] }",
                "routes.g[0].url: must be https://host"}));

// Settings that would weaken the promise are config errors naming the field they came from.
INSTANTIATE_TEST_SUITE_P(
    Guarantees, ConfigErrors,
    ::testing::Values(
        BadCase{"kafka: { properties: { acks: \"1\" } }", "kafka.properties.acks: must be all"},
        BadCase{"kafka: { producer_properties: { request.required.acks: \"0\" } }",
                "kafka.producer_properties.request.required.acks: must be all"},
        BadCase{"kafka: { producer_properties: { enable.idempotence: \"false\" } }",
                "kafka.producer_properties.enable.idempotence: must be true"},
        BadCase{"kafka: { producer_properties: { max.in.flight.requests.per.connection: \"6\" } }",
                "kafka.producer_properties.max.in.flight.requests.per.connection: must be 1-5"},
        BadCase{"kafka: { producer_properties: { message.timeout.ms: \"0\" } }",
                "kafka.producer_properties.message.timeout.ms: set kafka.produce_timeout_ms "
                "instead"},
        BadCase{"kafka: { properties: { delivery.timeout.ms: \"60000\" } }",
                "kafka.properties.delivery.timeout.ms: set kafka.produce_timeout_ms instead"},
        BadCase{"kafka: { producer_properties: { transactional.id: t } }",
                "kafka.producer_properties.transactional.id"},
        BadCase{"kafka: { consumer_properties: { enable.auto.offset.store: \"true\" } }",
                "kafka.consumer_properties.enable.auto.offset.store: must be false"},
        BadCase{"kafka: { properties: { enable.auto.commit: \"false\" } }",
                "kafka.properties.enable.auto.commit: must be true"},
        BadCase{"kafka: { consumer_properties: { group.id: other } }",
                "kafka.consumer_properties.group.id: must not differ from worker.group_id"},
        BadCase{"kafka: { consumer_properties: { auto.offset.reset: latest } }",
                "kafka.consumer_properties.auto.offset.reset: must be earliest"},
        BadCase{"kafka: { consumer_properties: { isolation.level: read_uncommitted } }",
                "kafka.consumer_properties.isolation.level"},
        BadCase{"kafka: { consumer_properties: { group.instance.id: w-0 } }",
                "kafka.consumer_properties.group.instance.id: set worker.group_instance_id"},
        BadCase{"kafka: { properties: { bootstrap.servers: \"h:1\" } }",
                "kafka.properties.bootstrap.servers: set the brokers with kafka.bootstrap_servers"},
        BadCase{"kafka: { producer_propertie: { } }", "kafka.producer_propertie: unknown key"}));

INSTANTIATE_TEST_SUITE_P(
    Topics, ConfigErrors,
    ::testing::Values(
        BadCase{"topics: { partition: 12 }", "topics.partition: unknown key"},
        BadCase{"topics: [1]", "topics: must be a mapping"},
        BadCase{"topics: { partitions: 0 }", "topics.partitions: must be between 1"},
        BadCase{"topics: { replication_factor: many }",
                "topics.replication_factor: must be a number"},
        BadCase{"topics: { min_insync_replicas: 3 }",
                "topics.min_insync_replicas: must be less than topics.replication_factor (3)"},
        BadCase{"topics: { replication_factor: 2, min_insync_replicas: 2 }",
                "topics.min_insync_replicas: must be less"},
        BadCase{"topics: { replication_factor: 1 }",
                "topics.min_insync_replicas: must be less than topics.replication_factor (1)"},
        BadCase{"topics: { retention_ms: 1000 }", "topics.retention_ms: must be between 3600000"},
        BadCase{"topics: { dlq_retention_ms: -1 }", "topics.dlq_retention_ms"},
        BadCase{"topics: { max_message_bytes: 500000 }",
                "topics.max_message_bytes: must be at least the producer's message.max.bytes "
                "(1048576)"}));

TEST(Config, TopicsDefaultsAndOneBrokerSettings) {
  auto d = parse_config("", env_of({}));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->topics.partitions, 12);
  EXPECT_EQ(d->topics.replication_factor, 3);
  EXPECT_EQ(d->topics.min_insync_replicas, 2);
  EXPECT_EQ(d->topics.retention_ms, 7LL * 86400 * 1000);
  EXPECT_EQ(d->topics.dlq_retention_ms, 30LL * 86400 * 1000);
  EXPECT_EQ(topic_max_message_bytes(*d), 1048576 + kTopicBatchOverheadBytes);

  auto one = parse_config(
      "topics: { replication_factor: 1, min_insync_replicas: 1, partitions: 2,\n"
      "          retention_ms: 86400000, max_message_bytes: 2097152 }",
      env_of({}));
  ASSERT_TRUE(one) << one.error().message;
  EXPECT_EQ(one->topics.partitions, 2);
  EXPECT_EQ(one->topics.retention_ms, 86400000);
  EXPECT_EQ(topic_max_message_bytes(*one), 2097152);

  // The README's block: 0 means "derived" for the partition overrides and the message size.
  auto readme = parse_config(
      "topics: { retry_partitions: 0, dlq_partitions: 0, max_message_bytes: 0 }", env_of({}));
  ASSERT_TRUE(readme) << readme.error().message;
  EXPECT_EQ(topic_max_message_bytes(*readme), 1048576 + kTopicBatchOverheadBytes);
}

TEST(Config, SafeRestatementsAndPerClientMapsAreAccepted) {
  auto c = parse_config(R"(
kafka:
  properties: { security.protocol: plaintext, acks: all }
  producer_properties: { linger.ms: "5", enable.idempotence: "true", max.in.flight: "5" }
  consumer_properties: { group.id: workers, auto.offset.reset: smallest, fetch.wait.max.ms: "20" }
worker: { group_id: workers }
)",
                        env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  auto producer = c->kafka.producer_map();
  EXPECT_EQ(producer.at("linger.ms"), "5");
  EXPECT_EQ(producer.at("security.protocol"), "plaintext");
  EXPECT_EQ(producer.count("fetch.wait.max.ms"), 0u) << "consumer settings stay with the consumer";
  auto consumer = c->kafka.consumer_map();
  EXPECT_EQ(consumer.at("fetch.wait.max.ms"), "20");
  EXPECT_EQ(consumer.count("linger.ms"), 0u);
  EXPECT_EQ(c->kafka.field_of("linger.ms", true), "kafka.producer_properties.linger.ms");
  EXPECT_EQ(c->kafka.field_of("security.protocol", false), "kafka.properties.security.protocol");
}

// Static membership: never on by default, an explicit id or the pod name when asked, and an
// invalid or missing id is an error naming worker.group_instance_id.
TEST(Config, StaticMembershipIsOffByDefaultEvenWithAHostname) {
  auto c = parse_config("worker: { group_id: w }",
                        env_of({{"HOSTNAME", "box"}, {"POD_NAME", "worker-0"}}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_FALSE(c->worker.static_membership);
  EXPECT_EQ(c->worker.group_instance_id, "");
}

TEST(Config, StaticMembershipEmptyIdIsTheDocumentedDefault) {
  auto off = parse_config("worker: { group_instance_id: \"\" }", env_of({{"HOSTNAME", "box"}}));
  ASSERT_TRUE(off) << off.error().message;
  EXPECT_FALSE(off->worker.static_membership);
  auto env_default = parse_config("worker: { group_instance_id: \"\", static_membership: true }",
                                  env_of({{"HOSTNAME", "box"}}));
  ASSERT_TRUE(env_default) << env_default.error().message;
  EXPECT_EQ(env_default->worker.group_instance_id, "box");
}

TEST(Config, StaticMembershipTakesAnExplicitId) {
  auto c = parse_config("worker: { group_instance_id: \"${POD_NAME}\" }",
                        env_of({{"POD_NAME", "hookrelay-worker-2"}}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->worker.static_membership);
  EXPECT_EQ(c->worker.group_instance_id, "hookrelay-worker-2");
  auto both =
      parse_config("worker: { static_membership: true, group_instance_id: w.1_a-b }", env_of({}));
  ASSERT_TRUE(both) << both.error().message;
  EXPECT_EQ(both->worker.group_instance_id, "w.1_a-b");
}

TEST(Config, StaticMembershipDefaultsToPodNameThenHostname) {
  auto pod = parse_config("worker: { static_membership: true }",
                          env_of({{"POD_NAME", "hookrelay-worker-0"}, {"HOSTNAME", "node7"}}));
  ASSERT_TRUE(pod) << pod.error().message;
  EXPECT_EQ(pod->worker.group_instance_id, "hookrelay-worker-0");
  auto host = parse_config("worker: { static_membership: true }",
                           env_of({{"POD_NAME", ""}, {"HOSTNAME", "node7"}}));
  ASSERT_TRUE(host) << host.error().message;
  EXPECT_EQ(host->worker.group_instance_id, "node7");
}

INSTANTIATE_TEST_SUITE_P(
    StaticMembership, ConfigErrors,
    ::testing::Values(
        BadCase{"worker: { static_membership: true }",
                "worker.group_instance_id: static_membership is true but neither POD_NAME nor "
                "HOSTNAME is set"},
        BadCase{"worker: { group_instance_id: \"worker 1\" }",
                "worker.group_instance_id: must be 1-249 characters of [A-Za-z0-9._-]"},
        BadCase{"worker: { group_instance_id: \"${NOPE}\" }",
                "worker.group_instance_id: environment variable NOPE is not set"},
        BadCase{"worker: { static_membership: false, group_instance_id: w-1 }",
                "worker.static_membership: is false but worker.group_instance_id is set"},
        BadCase{"worker: { static_membership: maybe }",
                "worker.static_membership: must be true or false"}));

TEST(Config, StaticMembershipIdFromTheEnvironmentIsValidated) {
  auto c = parse_config("worker: { static_membership: true }", env_of({{"HOSTNAME", "bad/host"}}));
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("worker.group_instance_id: taken from $HOSTNAME"),
            std::string::npos)
      << c.error().message;
  std::string long_id(250, 'a');
  auto too_long = parse_config("worker: { group_instance_id: " + long_id + " }", env_of({}));
  ASSERT_FALSE(too_long);
  EXPECT_NE(too_long.error().message.find("worker.group_instance_id"), std::string::npos);
}

// A key given twice is refused, naming it, wherever it is: yaml-cpp keeps both and the config
// would read one of them. Two route lists for one source made two routes of one name, and one of
// them never got an event.
TEST(Config, AKeyGivenTwiceIsRefusedNamingIt) {
  expect_refused("", {
                         {"worker: { max_in_flight: 5 }\nworker: { max_in_flight: 6 }\n",
                          "worker: given twice in one mapping"},
                         {"worker: { max_in_flight: 5, max_in_flight: 6 }",
                          "worker.max_in_flight: given twice"},
                         {"sources: { gh: { scheme: github, secrets: [a] } }\n"
                          "routes:\n  gh: [ { name: a, url: \"http://127.0.0.1:1/x\" } ]\n"
                          "  gh: [ { name: a, url: \"http://127.0.0.1:2/y\" } ]\n",
                          "routes.gh: given twice in one mapping"},
                         {"sources: { gh: { scheme: github, secrets: [a] } }\n"
                          "routes: { gh: [ { name: a, url: \"http://127.0.0.1:1/x\", url: "
                          "\"http://127.0.0.1:2/y\" } ] }",
                          "routes.gh[0].url: given twice"},
                         {"kafka: { producer_properties: { linger.ms: \"5\", linger.ms: \"50\" } }",
                          "kafka.producer_properties.linger.ms: given twice"},
                     });
  // The same key in two different mappings is not a repeat.
  auto ok = parse_config(
      "worker: { max_in_flight: 5 }\nadmin: { listen: \"127.0.0.1:9300\" }\n"
      "ingest: { listen: \"127.0.0.1:8080\" }\n",
      env_of({}));
  ASSERT_TRUE(ok) << ok.error().message;
}

// Aliases share nodes: a short document that names billions of them is refused, not walked.
TEST(Config, ADocumentOfAliasesNamingBillionsOfNodesIsRefusedQuickly) {
  std::string yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    yaml += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) yaml += (j ? ", " : "") + prev;
    yaml += "]\n";
  }
  auto r = parse_config(yaml, env_of({}));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("more than 1000000 YAML nodes"), std::string::npos)
      << r.error().message;
}

// Whole numbers are decimal, as YAML 1.2 reads them: yaml-cpp alone read 010 as octal 8 and 0x10
// as hex 16, and called a number past the type's range "not a number".
TEST(Config, WholeNumbersAreDecimalAndOutOfRangeSaysTheRange) {
  auto c = parse_config("worker: { max_in_flight: 010 }\ntopics: { partitions: +12 }", env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->worker.max_in_flight, 10);
  EXPECT_EQ(c->topics.partitions, 12);
  expect_refused(
      "",
      {
          {"worker: { max_in_flight: 0x10 }",
           "worker.max_in_flight: must be a decimal number, got '0x10'"},
          {"worker: { max_in_flight: 0o10 }", "worker.max_in_flight: must be a decimal number"},
          {"worker: { max_in_flight: 08x }", "worker.max_in_flight: must be a number, got '08x'"},
          {"worker: { max_in_flight: 1.5 }", "worker.max_in_flight: must be a number, got '1.5'"},
          {"worker: { max_in_flight: \"-\" }", "worker.max_in_flight: must be a number"},
          {"worker: { max_in_flight: 99999999999 }", "worker.max_in_flight: must be between 1 and"},
          {"worker: { max_in_flight: 999999999999999999999999 }",
           "worker.max_in_flight: must be between 1 and"},
          {"worker: { max_in_flight: -99999999999999999999999 }",
           "worker.max_in_flight: must be between 1 and"},
          {"topics: { retention_ms: -5 }", "topics.retention_ms: must be between 3600000"},
      });
}

TEST(Config, AProducerTimeoutThatRestatesProduceTimeoutMsIsAllowed) {
  auto c = parse_config(
      "kafka: { produce_timeout_ms: 4000, producer_properties: { message.timeout.ms: \"4000\" } }",
      env_of({}));
  ASSERT_TRUE(c) << c.error().message;
}

// A file of two YAML documents read as its first alone: `routes:` after a `---` vanished and the
// config was taken without them. Refused, so nothing written is silently dropped.
TEST(Config, ASecondYamlDocumentIsRefusedRatherThanDropped) {
  const std::string sources = "sources: { gh: { scheme: github, secrets: [a] } }\n";
  const std::string routes = "routes: { gh: [ { name: ci, url: \"http://127.0.0.1:9/ci\" } ] }\n";
  expect_refused(
      "", {{sources + "---\n" + routes,
            "(top level): the configuration has more than one YAML document (a second "
            "starts at line 2, after '---'); put everything in one"},
           {"---\n" + sources + "---\n" + routes + "---\nlog_level: debug\n",
            "the configuration has more than one YAML document"},
           {sources + "...\n---\n" + routes, "the configuration has more than one YAML document"}});
  // An empty document after a final `---` holds nothing to drop.
  auto trailing = parse_config(sources + routes + "---\n", env_of({}));
  ASSERT_TRUE(trailing) << trailing.error().message;
  EXPECT_EQ(trailing->routes.at("gh").size(), 1u);
  // A document may be introduced by `---` (and closed by `...`); one document is taken whole.
  auto one = parse_config("---\n" + sources + routes + "...\n", env_of({}));
  ASSERT_TRUE(one) << one.error().message;
  EXPECT_EQ(one->routes.at("gh").size(), 1u);
  // The checks over a single document still hold: a key given twice is refused.
  expect_refused("", {{"---\nworker: {}\nworker: {}\n", "worker: given twice"}});
}

// yaml-cpp's LoadAll never returns on a stream whose document it cannot start (a leading ','):
// the config fuzz harness found it stopping the parse. Such a stream is refused at once, where
// YAML::Load alone had taken it for an empty configuration (every default).
TEST(Config, AStreamNoDocumentCanStartInIsRefusedAtOnce) {
  for (const std::string& text :
       {std::string(",afka: { bootstrap_servers: \"$$${EMPTY}h:1\" }\n"), std::string(",\n")}) {
    auto c = parse_config(text, env_of({}));
    ASSERT_FALSE(c) << text;
    EXPECT_EQ(c.error().message.rfind("(top level): not YAML that can be read", 0), 0u)
        << c.error().message;
  }
}

// ingest.metrics_listen and ingest.listen both bind with SO_REUSEPORT: on one port the second
// bind succeeds and the kernel spreads the public listener's connections over both. Whether they
// share a port is decided from the addresses, not from how they are written.
TEST(Config, TheMetricsListenerMayNotShareThePublicListenersPort) {
  const std::map<std::string, std::string> shared = {
      {R"(listen: "0.0.0.0:8080", metrics_listen: "0.0.0.0:08080")", "0.0.0.0:8080"},
      {R"(listen: "0.0.0.0:8080", metrics_listen: "127.0.0.1:8080")", "0.0.0.0:8080"},
      {R"(listen: "127.0.0.1:8080", metrics_listen: "0.0.0.0:8080")", "127.0.0.1:8080"},
      {R"(listen: "127.0.0.1:8080", metrics_listen: "[::]:8080")", "127.0.0.1:8080"},
      {R"(listen: "[::1]:8080", metrics_listen: "[0:0:0:0:0:0:0:1]:8080")", "[::1]:8080"},
      {R"(listen: "127.0.0.1:8080", metrics_listen: "[::ffff:127.0.0.1]:8080")", "127.0.0.1:8080"}};
  for (const auto& [yaml, listen] : shared) {
    auto r = parse_config("ingest: { " + yaml + " }", env_of({}));
    ASSERT_FALSE(r) << yaml;
    EXPECT_EQ(r.error().message.rfind(
                  "ingest.metrics_listen: must differ from ingest.listen (" + listen + ")", 0),
              0u)
        << yaml << ": " << r.error().message;
  }
  for (const char* yaml : {R"(listen: "0.0.0.0:8080", metrics_listen: "0.0.0.0:9101")",
                           R"(listen: "127.0.0.1:8080", metrics_listen: "127.0.0.2:8080")",
                           R"(listen: "127.0.0.1:8080", metrics_listen: "[::1]:8080")"}) {
    auto c = parse_config(std::string("ingest: { ") + yaml + " }", env_of({}));
    EXPECT_TRUE(c) << yaml << ": " << c.error().message;
  }
  // The environment's overrides are held to the same rule.
  auto env = parse_config("ingest: { metrics_listen: \"127.0.0.1:9101\" }",
                          env_of({{"HOOKRELAY_INGEST_LISTEN", "0.0.0.0:9101"}}));
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().message.rfind("ingest.metrics_listen: must differ", 0), 0u)
      << env.error().message;
}

// A listen address is bound as written, never resolved: a host name passed `config check` and a
// reload, then stopped the service at start. Refused naming the field.
TEST(Config, AListenAddressMustBeAnIpAddressNotAName) {
  expect_refused("",
                 {{R"(ingest: { listen: "localhost:8080" })",
                   "ingest.listen: host must be an IP address (such as 127.0.0.1, 0.0.0.0 or "
                   "[::1]), not a name, got 'localhost'"},
                  {R"(ingest: { metrics_listen: "metrics.internal:9101" })",
                   "ingest.metrics_listen: host must be an IP address"},
                  {R"(worker: { listen: "localhost:9100" })", "worker.listen: host must be"},
                  {R"(admin: { listen: "admin:9200" })", "admin.listen: host must be"},
                  {R"(admin: { listen: "127.0.0.256:9200" })", "admin.listen: host must be"},
                  {R"(ingest: { listen: "[]:8080" })", "ingest.listen: host must be"},
                  {R"(ingest: { listen: "[localhost]:8080" })", "ingest.listen: host must be"}});
  // The environment's overrides are checked too, an empty file's included (it took them
  // without a look, and without applying them).
  auto env = parse_config("", env_of({{"HOOKRELAY_WORKER_LISTEN", "worker-0:9100"}}));
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().message.rfind("worker.listen: host must be an IP address", 0), 0u)
      << env.error().message;
  auto empty = parse_config("", env_of({{"HOOKRELAY_INGEST_LISTEN", "[::1]:9999"}}));
  ASSERT_TRUE(empty) << empty.error().message;
  EXPECT_EQ(empty->ingest.listen, "[::1]:9999");
  auto c = parse_config(
      R"(ingest: { listen: "[::]:8080", metrics_listen: "[::1]:9101" }
worker: { listen: "0.0.0.0:9100" }
admin: { listen: "[::1]:9200" })",
      env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  auto hp = parse_host_port("[::1]:9200", "admin.listen");
  ASSERT_TRUE(hp) << hp.error().message;
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 9200);
}

// tolerance_seconds bounds a replay only where the scheme signs a timestamp (standard-webhooks,
// stripe, slack, hmac with timestamp_header). Elsewhere it was taken and bounded nothing, while
// the operator believed replays were bounded: refused, naming the field.
TEST(Config, ToleranceIsRefusedOnASourceWhoseSchemeSignsNoTimestamp) {
  expect_refused(
      "sources: { s: ",
      {{"{ scheme: github, secrets: [a], tolerance_seconds: 300 }",
        "sources.s.tolerance_seconds: scheme github signs no timestamp, so nothing bounds a "
        "replay"},
       {"{ scheme: shopify, secrets: [a], tolerance_seconds: 60 }",
        "sources.s.tolerance_seconds: scheme shopify signs no timestamp"},
       {"{ scheme: hmac, header: X-Sig, secrets: [a], tolerance_seconds: 60 }",
        "sources.s.tolerance_seconds: applies only with timestamp_header"}},
      " }");
  auto c = parse_config(R"(sources:
  acme:   { scheme: standard-webhooks, secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], tolerance_seconds: 60 }
  stripe: { scheme: stripe, secrets: [a], tolerance_seconds: 120 }
  slack:  { scheme: slack, secrets: [a], tolerance_seconds: 30 }
  custom: { scheme: hmac, header: X-Sig, timestamp_header: X-Ts, secrets: [a], tolerance_seconds: 10 }
  github: { scheme: github, secrets: [a] }
)",
                        env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->sources.at("acme").tolerance_seconds, 60);
  EXPECT_EQ(c->sources.at("stripe").tolerance_seconds, 120);
  EXPECT_EQ(c->sources.at("slack").tolerance_seconds, 30);
  EXPECT_EQ(c->sources.at("custom").tolerance_seconds, 10);
}

// Every key of a config is a name. A null key (~ or null) read as "null" and escaped the check
// for a key given twice; a list or mapping as a key failed with "bad conversion" naming no field.
// Both are refused naming the mapping they are in.
TEST(Config, ANullOrListKeyIsRefusedNamingTheMappingItIsIn) {
  const std::string source = "sources: { gh: { scheme: github, secrets: [a] } }\n";
  const std::string route = "[ { name: a, url: \"http://127.0.0.1:9/a\" } ]";
  expect_refused(
      "",
      {{source + "routes: { ~: " + route + ", null: " + route + " }",
        "routes: has a null key (~ or null)"},
       {source + "routes: { null: " + route + " }", "routes: has a null key"},
       {source + "routes:\n  gh: " + route + "\n  ~: " + route + "\n", "routes: has a null key"},
       {source + "routes: { [gh]: " + route + " }", "routes: has a list or mapping as a key"},
       {source + "routes:\n  ? { gh: 1 }\n  : " + route + "\n",
        "routes: has a list or mapping as a key"},
       {"worker: { ~: 5 }", "worker: has a null key"},
       {"kafka: { properties: { [linger.ms]: \"5\" } }",
        "kafka.properties: has a list or mapping as a key"},
       {source + "routes: { gh: [ { name: a, url: \"http://127.0.0.1:9/a\", headers: { ~: v } "
                 "} ] }",
        "routes.gh[0].headers: has a null key"},
       {"~: 1", "(top level): has a null key"}});
  // Quoted, null is a name like any other.
  auto quoted = parse_config(
      "sources: { \"null\": { scheme: github, secrets: [a] } }\n"
      "routes: { \"null\": [ { name: a, url: \"http://127.0.0.1:9/a\" } ] }\n",
      env_of({}));
  ASSERT_TRUE(quoted) << quoted.error().message;
  EXPECT_EQ(quoted->routes.at("null").size(), 1u);
}

// An unset ${...} in a secret is reported without its name unless the name looks like an
// environment variable's ([A-Z_][A-Z0-9_]*): in a literal secret such as "k9${Qx7pL2}z" what is
// between the braces is part of the secret. Other fields keep naming the variable.
TEST(Config, AnUnsetVariableInASecretIsNamedOnlyWhenItLooksLikeAVariableName) {
  const std::string source = "sources: { gh: { scheme: github, secrets: [a] } }\n";
  const std::map<std::string, std::string> secret_fields = {
      {R"(sources: { gh: { scheme: github, secrets: ["k9${Qx7pL2}z"] } })",
       "sources.gh.secrets[0]"},
      {R"(api_tokens: ["tok_0123456789${Qx7pL2}"])", "api_tokens[0]"},
      {R"(admin: { tokens: ["adm_0123456789${Qx7pL2}"] })", "admin.tokens[0]"},
      {source +
           R"(routes: { gh: [ { name: a, url: "http://127.0.0.1:9/a", secret: "whsec_${Qx7pL2}" } ] })",
       "routes.gh[0].secret"},
      {source +
           R"(routes: { gh: [ { name: a, url: "http://127.0.0.1:9/a", secrets: ["whsec_${Qx7pL2}"] } ] })",
       "routes.gh[0].secrets[0]"},
      {source +
           R"(routes: { gh: [ { name: a, url: "http://127.0.0.1:9/a", headers: { X-Token: "t${Qx7pL2}" } } ] })",
       "routes.gh[0].headers.X-Token"},
      {R"(postgres: { url: "postgresql://u:pa${Qx7pL2}ss@db/x" })", "postgres.url"},
      {R"(kafka: { properties: { sasl.password: "pa${Qx7pL2}ss" } })",
       "kafka.properties.sasl.password"}};
  for (const auto& [yaml, field] : secret_fields) {
    auto r = parse_config(yaml, env_of({}));
    ASSERT_FALSE(r) << yaml;
    const auto& message = r.error().message;
    EXPECT_EQ(message.rfind(field + ": references an environment variable that is not set", 0), 0u)
        << message;
    EXPECT_EQ(message.find("Qx7pL2"), std::string::npos) << message;
  }
  // A name that looks like a variable's is shown, so the operator knows what to set.
  expect_refused("", {{R"(sources: { gh: { scheme: github, secrets: ["${GITHUB_SECRET}"] } })",
                       "sources.gh.secrets[0]: environment variable GITHUB_SECRET is not set"},
                      {R"(api_tokens: ["${_TOKEN_2}"])",
                       "api_tokens[0]: environment variable _TOKEN_2 is not set"}});
  // Fields that are not secrets name the variable whatever it looks like.
  expect_refused("", {{R"(worker: { group_id: "${group_id}" })",
                       "worker.group_id: environment variable group_id is not set"},
                      {R"(kafka: { properties: { client.id: "${Client}" } })",
                       "kafka.properties.client.id: environment variable Client is not set"}});
}

TEST(Config, ErrorNeverEchoesSecretValues) {
  auto c = parse_config("sources: { a: { scheme: standard-webhooks, secrets: [\"${S}\"] } }",
                        env_of({{"S", "supersecretvalue"}}));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message.find("supersecretvalue"), std::string::npos);
}

}  // namespace
}  // namespace hookrelay
