// Config: the one YAML file both services read, and its validation.
//
// Loading expands ${VAR} references from the environment (secrets live there), applies the
// address overrides HOOKRELAY_KAFKA_BOOTSTRAP, HOOKRELAY_INGEST_LISTEN, HOOKRELAY_WORKER_LISTEN,
// HOOKRELAY_ADMIN_LISTEN and HOOKRELAY_DATABASE_URL, and validates everything. An invalid file
// yields an Error whose message starts with the dotted path of the offending field
// ("sources.github.scheme: ..."). Error messages never contain secret values.
//
// Thread-safety: Config is an immutable value once loaded; share it by const reference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/net/ip_address.h"
#include "shared/result.h"
#include "shared/routes/route_filter.h"

namespace hookrelay {

enum class SchemeKind { kStandardWebhooks, kGithub, kStripe, kSlack, kShopify, kHmac };

const char* scheme_name(SchemeKind kind);

struct KafkaConfig {
  std::string bootstrap_servers = "127.0.0.1:9092";
  // librdkafka properties for every client, passed through verbatim (security.protocol, sasl.*).
  std::map<std::string, std::string> properties;
  // For producers only (ingest; the worker's retry and DLQ messages; CLI replay); these win over
  // `properties`.
  std::map<std::string, std::string> producer_properties;
  // For the worker's group consumer only; these win over `properties`.
  std::map<std::string, std::string> consumer_properties;
  // How long ingest waits for a delivery report before answering 503.
  int produce_timeout_ms = 5000;

  // What a producer / consumer is given: `properties`, then its own map over them.
  std::map<std::string, std::string> producer_map() const { return merged(producer_properties); }
  std::map<std::string, std::string> consumer_map() const { return merged(consumer_properties); }
  // The config field a librdkafka property of that client came from, for error messages.
  std::string field_of(const std::string& key, bool producer) const {
    const auto& own = producer ? producer_properties : consumer_properties;
    if (own.count(key))
      return std::string(producer ? "kafka.producer_properties." : "kafka.consumer_properties.") +
             key;
    return "kafka.properties." + key;
  }

 private:
  std::map<std::string, std::string> merged(const std::map<std::string, std::string>& own) const {
    auto out = properties;
    for (const auto& [k, v] : own) out[k] = v;
    return out;
  }
};

struct IngestConfig {
  std::string listen = "127.0.0.1:8080";  // host:port; [::1]:port for IPv6
  // Larger bodies get 413. The default leaves kKafkaHeaderAllowance of a 1 MiB Kafka message for
  // headers; config_warnings() flags a limit the producer could not send.
  std::size_t max_body_bytes = 917504;
  int threads = 0;                // HTTP threads; 0 = one per core
  int retry_after_seconds = 5;    // Retry-After on 503
  int shutdown_grace_ms = 10000;  // SIGTERM: longest wait for outstanding reports
  int max_connections = 4096;     // open connections; past it a new one gets 503 and is closed
  // Request bodies held in memory at once, over all connections (a request counts its declared
  // length, or max_body_bytes when chunked, from its header until it is answered); a request that
  // would pass it gets 503. At least max_body_bytes.
  std::size_t max_buffered_body_bytes = std::size_t{256} << 20;
  int max_headers = 100;  // header fields per request; more get 431 (at most kMax)
  static constexpr int kMaxMaxHeaders = 10000;
  int header_timeout_ms = 10000;  // a request's header must arrive whole within this (else closed)
  int idle_timeout_ms = 60000;    // keep-alive idle limit; also the deadline for reading a body
  // host:port of a second listener for /metrics, /healthz and /readyz, kept off the public one:
  // when set, `listen` answers /metrics with 404 (its health probes stay). Empty: all on `listen`.
  std::string metrics_listen;
};

// Bytes of a Kafka message kept for headers beside the body: forwarded provider headers (at most
// 64 KiB, the HTTP header limit) and hookrelay's own hr-* headers added by ingest and worker.
inline constexpr std::size_t kKafkaHeaderAllowance = std::size_t{128} * 1024;
// librdkafka's message.max.bytes as hookrelay's producers set it unless configured: the 1 MiB that
// a broker's default max.message.bytes (1048588) accepts.
inline constexpr std::size_t kDefaultKafkaMessageMaxBytes = 1048576;

struct SourceConfig {
  std::string name;
  SchemeKind scheme = SchemeKind::kStandardWebhooks;
  std::vector<std::string> secrets;  // every one is tried (rotation); at least one
  int tolerance_seconds = 300;       // timestamp skew allowed, both directions
  // Generic "hmac" scheme only.
  std::string header;                // signature header name (required for hmac)
  std::string encoding = "hex";      // "hex" | "base64"
  std::string prefix;                // stripped before decoding, e.g. "sha256="
  std::string algorithm = "sha256";  // "sha1" | "sha256" | "sha512"
  std::string timestamp_header;      // optional: signed as "<ts>.<body>" and tolerance-checked
  std::string event_id_header;       // optional: where the event id is
};

// hookrelay-admin: the admin API (docs/admin.md, docs/openapi.yaml).
struct AdminConfig {
  std::string listen = "127.0.0.1:9200";  // host:port; HOOKRELAY_ADMIN_LISTEN overrides
  // Bearer tokens of the admin API, separate from api_tokens; each at least 16 characters.
  // Empty: every /v1 request is refused with 401.
  std::vector<std::string> tokens;
  int threads = 2;               // HTTP threads, each with its own Postgres connection
  int max_replay_keys = 100000;  // keys one replay may match
  // Longest a statement of an API request may run (Postgres statement_timeout); past it the
  // request gets 503 query_timeout. 0: no limit.
  int statement_timeout_ms = 30000;
};

struct RetryConfig {
  std::vector<int> schedule_seconds = {5, 30, 120, 600, 1800, 3600};  // one tier topic each
  int max_attempts = 8;
  int max_age_seconds = 86400;
};

// A route's `suspend_after`: the route is suspended when either bound is reached (0 = that bound
// is not set; at least one is).
struct SuspendAfter {
  int consecutive_failures = 0;
  int or_failing_for_seconds = 0;
};

// Where an ordered route finds an event's ordering key: deliveries of one key are made in order,
// later ones waiting while an earlier one waits in a retry tier (worker/key_order.h).
struct OrderingKey {
  enum class From { kKafkaKey, kHeader, kJsonPointer };
  From from = From::kKafkaKey;  // the default: the Kafka key of the event's message
  std::string header;           // kHeader: a provider header, compared case-insensitively
  JsonPointer pointer;          // kJsonPointer: a member of the JSON body
};

struct RouteConfig {
  std::string name;
  std::string url;
  // "whsec_..." Standard Webhooks secrets that sign deliveries: one signature per secret in
  // webhook-signature, so a receiver can rotate (`secrets: [new, old]`; `secret: x` is [x]).
  std::vector<std::string> secrets;
  int timeout_ms = 10000;  // total request timeout
  bool ordered = false;    // deliveries of one event key are made one at a time, in order
  std::string host_key;    // derived from url when loaded: "host:port" for per-destination limits
  RouteFilter filter;      // which events the route receives; empty = every event
  // Ordered routes: what "one key" is.
  OrderingKey ordering_key;
  // Sent on every delivery after the forwarded provider headers (a forwarded header of the same
  // name is dropped). Values came through ${VAR} expansion: never log them.
  std::vector<std::pair<std::string, std::string>> headers;
  // `retry:` merged over the global retry section when loaded; nullopt = the global policy.
  std::optional<RetryConfig> retry;
  int max_in_flight = 0;       // deliveries of this route in flight per worker; 0 = no route limit
  double rate_per_second = 0;  // deliveries started per second per worker (>= 0.001); 0 = unlimited
  std::optional<SuspendAfter> suspend_after;

  // The retry policy of this route's deliveries: its own, else `global` (the config's retry).
  const RetryConfig& retry_policy_or(const RetryConfig& global) const {
    return retry ? *retry : global;
  }
};

struct PostgresConfig {
  std::string url;  // libpq URL; HOOKRELAY_DATABASE_URL overrides
};

// worker.host_states: how each worker's view of its routes' destination hosts (circuit, adaptive
// limit; worker/host_state_publisher.h) reaches `hookrelay routes list` and GET /v1/routes. A
// worker writes its rows every publish_interval_ms; readers combine the rows written within
// stale_after_ms and flag older ones stale (a worker that stopped without withdrawing them).
struct HostStatesConfig {
  int publish_interval_ms = 5000;
  int stale_after_ms = 15000;
};

// worker.adaptive_limit: AIMD on each destination host's in-flight limit, between 1 and
// worker.per_host_max_in_flight (where a host starts). A 429, a 503 or a timeout cuts it to
// limit * decrease_factor (once per round of calls: not again for calls started before the
// cut); each success adds increase_step / limit, so about increase_step per limit's worth of
// successes. A Retry-After on a 429 or 503 stops every call to the host until then, for at most
// max_pause_seconds (0: Retry-After pauses no host).
struct AdaptiveLimitConfig {
  bool enabled = true;
  double decrease_factor = 0.7;
  double increase_step = 1.0;
  int max_pause_seconds = 60;
};

// How the worker's Postgres lanes (claims with the inbound audit, attempt records) gather a
// batch: a lane that is free sends once min_batch items are queued, or once its oldest queued
// item has waited max_wait_ms (the latency budget a batch may add; 0 = send whatever is queued
// at once). Whatever arrives while a round trip is out joins the next batch either way.
// Attempt records come after the call, off the delivery's path, so their lane may wait longer:
// record_max_wait_ms (negative: max_wait_ms); a record of an ordered route, whose key's next
// delivery waits for it, goes within max_wait_ms.
struct StoreBatchingConfig {
  int min_batch = 100;
  int max_wait_ms = 10;
  int record_max_wait_ms = -1;
};

struct WorkerConfig {
  std::string listen = "127.0.0.1:9100";  // /metrics and /healthz
  std::string group_id = "hookrelay-workers";
  std::string worker_id;  // default: hostname-pid
  // Static group membership (Kafka's group.instance.id, KIP-345): a worker that restarts with
  // the same id within kafka session.timeout.ms gets its partitions back without a rebalance.
  // Empty = dynamic membership (the default). Must be unique among live workers of the group:
  // a second one with the same id fences the first. static_membership: true without an id takes
  // $POD_NAME, else $HOSTNAME (a StatefulSet's pod name); an explicit id implies it.
  std::string group_instance_id;
  bool static_membership = false;
  bool allow_private_networks = false;  // SSRF guard: allow private/loopback/... targets
  std::vector<Cidr> allowed_cidrs;      // SSRF guard: extra allowed ranges, validated here
  int max_in_flight = 10000;            // deliveries in flight per worker
  int batch_size = 500;                 // messages per Postgres claim round trip
  int connect_timeout_ms = 5000;
  int per_host_max_in_flight = 256;     // per-destination concurrency limit
  int http_threads = 1;                 // HTTP sender event loops (threads), read at start
  double per_host_rate_per_second = 0;  // >= 0.001; 0 = unlimited
  int breaker_failure_threshold = 20;   // consecutive failures that open a host's circuit
  int breaker_cooldown_ms = 30000;      // how long an open circuit refuses calls
  int shutdown_grace_ms = 20000;        // SIGTERM: longest wait for in-flight deliveries
  HostStatesConfig host_states;
  int claim_lease_seconds = 120;  // another worker may re-claim after this
  // Longest a Postgres statement of the worker may run, lock waits included (statement_timeout;
  // 0 = none); past it the round trip fails as db_timeout and is tried again. Read at start.
  int statement_timeout_ms = 30000;
  AdaptiveLimitConfig adaptive_limit;
  StoreBatchingConfig store_batching{.min_batch = 100, .max_wait_ms = 10, .record_max_wait_ms = 50};
};

// The Kafka topics as `hookrelay topics apply` creates them and `hookrelay topics check` expects
// them (names from shared/kafka/wire_contract.h; the plan is desired_topics() in
// shared/kafka/topic_plan.h). Validated: min_insync_replicas < replication_factor unless both are
// 1, so one broker can be down without refusing acks=all writes.
struct TopicsConfig {
  int partitions = 12;          // hookrelay.webhooks, hookrelay.calls: bounds the busy workers
  int retry_partitions = 0;     // each hookrelay.retry.<n>; 0 = `partitions`
  int dlq_partitions = 0;       // hookrelay.dlq; 0 = `partitions`
  int replication_factor = 3;   // every topic
  int min_insync_replicas = 2;  // every topic: replicas that must have a write before its ack
  int64_t retention_ms = 7LL * 24 * 3600 * 1000;       // webhooks, calls; floor for retry tiers
  int64_t dlq_retention_ms = 30LL * 24 * 3600 * 1000;  // hookrelay.dlq: the replay window
  // Every topic's max.message.bytes; 0 = the producer's message.max.bytes plus
  // kTopicBatchOverheadBytes, so the broker never refuses what a producer may send.
  int64_t max_message_bytes = 0;
};

struct Config {
  KafkaConfig kafka;
  TopicsConfig topics;
  IngestConfig ingest;
  std::map<std::string, SourceConfig> sources;
  std::vector<std::string> api_tokens;
  std::map<std::string, std::vector<RouteConfig>> routes;  // by source name
  PostgresConfig postgres;
  WorkerConfig worker;
  AdminConfig admin;
  RetryConfig retry;
  std::string log_level = "info";  // trace|debug|info|warn|error
};

// Route `name` of `source`, or nullptr when the config has none.
const RouteConfig* route_config(const Config& config, std::string_view source,
                                std::string_view name);

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// The process environment.
EnvLookup process_env();

// Parses and validates YAML text. `env` resolves ${VAR} and the overrides.
Result<Config> parse_config(const std::string& yaml_text, const EnvLookup& env);

// Settings that are valid but will misbehave, one sentence each naming the fields: e.g. an
// ingest.max_body_bytes the Kafka producer's message.max.bytes cannot carry. Printed by
// `hookrelay config check`, logged at start by the services.
std::vector<std::string> config_warnings(const Config& config);

// The producer's message.max.bytes: kafka.properties' value, else kDefaultKafkaMessageMaxBytes.
std::size_t kafka_message_max_bytes(const KafkaConfig& kafka);

// Room above the producer's message.max.bytes in a topic's max.message.bytes: a record batch's
// own header and framing, which the broker counts and the producer's limit does not.
inline constexpr int64_t kTopicBatchOverheadBytes = 4096;

// topics.max_message_bytes, or when 0 the producer's message.max.bytes + kTopicBatchOverheadBytes.
int64_t topic_max_message_bytes(const Config& config);

// Reads the file, then parse_config. The error names the file when it cannot be read.
Result<Config> load_config_file(const std::string& path, const EnvLookup& env);

// Splits a listen address, "host:port" / "[v6]:port". The host must be an IP address: it is bound
// as given, never resolved. Error names `field`.
// (clang-analyzer cannot follow a HostPort copied out of Result's variant storage and takes its
// port for uninitialized; it is always set.)
struct HostPort {  // NOLINT(clang-analyzer-core.uninitialized.Assign)
  std::string host;
  uint16_t port = 0;
};
Result<HostPort> parse_host_port(const std::string& text, const std::string& field);

}  // namespace hookrelay
