#include "tests/support/stack.h"

#include <fstream>
#include <future>
#include <iterator>
#include <pqxx/pqxx>
#include <sstream>
#include <thread>

#include "shared/kafka/wire_contract.h"
#include "shared/signing/webhook_signer.h"
#include "shared/store/migrator.h"
#include "tests/support/free_port.h"

namespace hookrelay::test {
namespace {

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

std::string config_yaml(const StackOptions& o, const std::string& bootstrap,
                        const std::string& db_url) {
  std::ostringstream y;
  // Short group timings so rebalances after a crash take seconds, not the default ~45 s.
  std::map<std::string, std::string> kafka = {{"reconnect.backoff.max.ms", "500"},
                                              {"session.timeout.ms", "4000"},
                                              {"heartbeat.interval.ms", "400"}};
  for (const auto& [k, v] : o.kafka_properties) kafka[k] = v;
  y << "kafka:\n  bootstrap_servers: " << quoted(bootstrap)
    << "\n  produce_timeout_ms: 5000\n  properties:\n";
  for (const auto& [k, v] : kafka) y << "    " << quoted(k) << ": " << quoted(v) << "\n";
  y << "ingest: { threads: 2, shutdown_grace_ms: 2000 }\n";
  y << "sources:\n"
    << "  acme: { scheme: standard-webhooks, secrets: [" << quoted(kAcmeSecret) << "] }\n"
    << "  github: { scheme: github, secrets: [" << quoted(kGithubSecret) << "] }\n";
  y << "api_tokens: [" << quoted(kApiToken) << "]\n";
  std::map<std::string, std::vector<const RouteSpec*>> by_source;
  for (const auto& r : o.routes) by_source[r.source].push_back(&r);
  if (!by_source.empty()) {
    y << "routes:\n";
    for (const auto& [source, routes] : by_source) {
      y << "  " << source << ":\n";
      for (const auto* r : routes) {
        y << "    - { name: " << quoted(r->name) << ", url: " << quoted(r->url);
        if (r->extra.find("secrets:") == std::string::npos)
          y << ", secret: " << quoted(kRouteSecret);
        y << ", timeout_ms: " << r->timeout_ms;
        if (!r->extra.empty()) y << ", " << r->extra;
        y << " }\n";
      }
    }
  }
  y << "postgres: { url: " << quoted(db_url) << " }\n";
  y << "worker:\n"
    << "  group_id: " << quoted(o.group_id) << "\n"
    << "  allow_private_networks: " << (o.allow_private_networks ? "true" : "false") << "\n"
    << "  max_in_flight: " << o.max_in_flight << "\n"
    << "  per_host_max_in_flight: " << o.per_host_max_in_flight << "\n"
    << "  batch_size: " << o.batch_size << "\n"
    << "  connect_timeout_ms: 2000\n"
    << "  shutdown_grace_ms: " << o.shutdown_grace_ms << "\n"
    << "  claim_lease_seconds: " << o.claim_lease_seconds << "\n"
    << o.worker_extra;
  y << "retry:\n  schedule_seconds: [";
  for (std::size_t i = 0; i < o.schedule_seconds.size(); ++i)
    y << (i ? ", " : "") << o.schedule_seconds[i];
  y << "]\n  max_attempts: " << o.max_attempts << "\n  max_age_seconds: " << o.max_age_seconds
    << "\n";
  y << "log_level: " << o.log_level << "\n";
  return y.str();
}

Headers webhook_headers(const std::string& source, const std::string& event_id,
                        const std::string& content_type) {
  return {{std::string(header::kKind), "webhook"},
          {std::string(header::kSource), source},
          {std::string(header::kEventId), event_id},
          {std::string(header::kReceivedAt), std::to_string(unix_ms())},
          {std::string(header::kContentType), content_type}};
}

}  // namespace

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<std::unique_ptr<Stack>> Stack::create(StackOptions options) {
  std::unique_ptr<Stack> s(new Stack(std::move(options)));
  // The database is made while the broker starts: both take a second or two.
  auto db_future = std::async(std::launch::async, []() -> Result<std::unique_ptr<TestDatabase>> {
    auto db = TestDatabase::create();
    if (!db) return db;
    auto applied = migrate((*db)->url(), HOOKRELAY_SOURCE_DIR "/migrations");
    if (!applied) return Unexpected{applied.error()};
    return db;
  });
  Result<std::unique_ptr<DevBroker>> started = std::unique_ptr<DevBroker>();
  if (s->options_.kafka_bootstrap.empty()) {
    DevBrokerConfig broker;
    broker.brokers = s->options_.brokers;
    broker.partitions = s->options_.partitions;
    broker.retry_tiers = static_cast<int>(s->options_.schedule_seconds.size());
    started = DevBroker::start(s->dir_.path(), broker);
  }
  auto db = db_future.get();
  if (!db) return Unexpected{db.error()};
  s->db_ = std::move(*db);
  if (!started) return Unexpected{started.error()};
  s->broker_ = std::move(*started);
  s->bootstrap_ = s->broker_ ? s->broker_->bootstrap() : s->options_.kafka_bootstrap;
  auto producer = TestProducer::create(s->bootstrap());
  if (!producer) return Unexpected{producer.error()};
  s->producer_ = std::move(*producer);

  auto path = s->write_config(s->options_, "hookrelay.yaml");
  if (!path) return Unexpected{path.error()};
  s->config_path_ = *path;
  const auto env = s->options_.env;
  auto config = load_config_file(path->string(),
                                 [env](const std::string& name) -> std::optional<std::string> {
                                   if (auto it = env.find(name); it != env.end()) return it->second;
                                   return process_env()(name);
                                 });
  if (!config) return Unexpected{config.error()};
  s->config_ = std::move(*config);
  return s;
}

Stack::~Stack() {
  // Children first: they hold connections to the broker and the database.
  workers_.clear();
  ingest_.reset();
  producer_.reset();
  broker_.reset();
  db_.reset();
}

Result<std::filesystem::path> Stack::write_config(const StackOptions& options,
                                                  const std::string& name) const {
  auto path = dir_.file(name);
  std::ofstream out(path);
  out << config_yaml(options, bootstrap(), db_->url());
  out.close();
  if (!out) return fail("stack", "cannot write " + path.string());
  return path;
}

Result<Service> Stack::spawn(const std::string& program, const std::string& listen_env,
                             const std::filesystem::path& config_path,
                             const std::string& log_name) {
  uint16_t port = free_port();
  auto env = options_.env;
  env[listen_env] = "127.0.0.1:" + std::to_string(port);
  auto child =
      ChildProcess::spawn({program, "--config", config_path.string()}, env, dir_.file(log_name));
  if (!child) return Unexpected{child.error()};
  return Service{std::move(*child), port};
}

Result<void> Stack::start_ingest(std::chrono::milliseconds ready_timeout) {
  auto s = spawn(HOOKRELAY_BIN_DIR "/ingest/hookrelay-ingest", "HOOKRELAY_INGEST_LISTEN",
                 config_path_, "ingest.log");
  if (!s) return Unexpected{s.error()};
  ingest_ = std::make_unique<Service>(std::move(*s));
  if (!wait_for_status(ingest_->url("/readyz"), 200, ready_timeout)) {
    return fail("stack", "hookrelay-ingest not ready; log:\n" + ingest_->process.log_tail());
  }
  return {};
}

Result<std::size_t> Stack::start_worker(bool wait_ready, const std::filesystem::path& config_path,
                                        std::chrono::milliseconds ready_timeout) {
  std::size_t index = workers_.size();
  auto s = spawn(HOOKRELAY_BIN_DIR "/worker/hookrelay-worker", "HOOKRELAY_WORKER_LISTEN",
                 config_path.empty() ? config_path_ : config_path,
                 "worker-" + std::to_string(index) + ".log");
  if (!s) return Unexpected{s.error()};
  workers_.push_back(std::make_unique<Service>(std::move(*s)));
  Service& w = *workers_.back();
  const char* probe = wait_ready ? "/readyz" : "/healthz";
  if (!wait_for_status(w.url(probe), 200, ready_timeout)) {
    return fail("stack", "hookrelay-worker " + std::to_string(index) + " did not answer 200 on " +
                             probe + "; log:\n" + w.process.log_tail());
  }
  return index;
}

std::string Stack::worker_metrics(std::size_t index) {
  auto r = http_get(worker(index).url("/metrics"));
  return r && r->status == 200 ? r->body : "";
}

Result<void> Stack::produce_webhook(const std::string& source, const std::string& event_id,
                                    const std::string& body, const std::string& content_type) {
  auto r =
      producer_->produce(TestRecord{std::string(kWebhooksTopic), body,
                                    webhook_headers(source, event_id, content_type), event_id});
  if (!r) return Unexpected{r.error()};
  return {};
}

Result<void> Stack::produce_webhooks(
    const std::string& source, const std::vector<std::pair<std::string, std::string>>& events) {
  std::vector<TestRecord> records;
  records.reserve(events.size());
  for (const auto& [id, body] : events) {
    records.push_back(TestRecord{std::string(kWebhooksTopic), body,
                                 webhook_headers(source, id, "application/json"), id});
  }
  auto r = producer_->produce_all(records);
  if (!r) return Unexpected{r.error()};
  return {};
}

Result<void> Stack::produce_retry_copies(const std::string& source, const std::string& event_id,
                                         const std::string& route, const std::string& body,
                                         int copies, int tier) {
  const std::string key = "wh:" + source + ":" + event_id + ":" + route;
  std::vector<TestRecord> records;
  for (int attempt = 1; attempt <= copies; ++attempt) {
    Headers h = webhook_headers(source, event_id, "application/json");
    h.insert(h.end(), {{std::string(header::kDeliveryKey), key},
                       {std::string(header::kRoute), route},
                       {std::string(header::kOriginTopic), std::string(kWebhooksTopic)},
                       {std::string(header::kAttempt), std::to_string(attempt)},
                       {std::string(header::kDueAt), std::to_string(unix_ms())}});
    records.push_back(TestRecord{retry_topic(tier), body, std::move(h), key});
  }
  auto r = producer_->produce_all(records);
  if (!r) return Unexpected{r.error()};
  return {};
}

Result<HttpReply> Stack::post_webhook(
    const std::string& source, const std::string& event_id, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& extra_headers) {
  auto headers = provider_headers(config_.sources.at(source), body, unix_ms() / 1000, event_id);
  headers.insert(headers.end(), extra_headers.begin(), extra_headers.end());
  headers.emplace_back("Content-Type", "application/json");
  return http_request("POST", ingest().url("/webhooks/" + source), body, headers);
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Result<HttpReply> post_signed_webhook(const Service& ingest, const std::string& source,
                                      const std::string& event_id, const std::string& body,
                                      const std::vector<std::string>& secrets) {
  const int64_t ts = unix_ms() / 1000;
  std::string signature;
  for (const auto& secret : secrets) {
    auto sig = standard_webhooks_signature(secret, event_id, ts, body);
    if (!sig) return Unexpected{sig.error()};
    signature += (signature.empty() ? "" : " ") + *sig;
  }
  return http_request("POST", ingest.url("/webhooks/" + source), body,
                      {{"webhook-id", event_id},
                       {"webhook-timestamp", std::to_string(ts)},
                       {"webhook-signature", signature},
                       {"Content-Type", "application/json"}});
}

Result<HttpReply> Stack::post_call(const std::string& json) {
  return http_request("POST", ingest().url("/v1/calls"), json,
                      {{"Authorization", std::string("Bearer ") + kApiToken},
                       {"Content-Type", "application/json"}});
}

std::string Stack::scalar(const std::string& sql) const {
  pqxx::connection c(db_->url());
  pqxx::nontransaction tx(c);
  auto r = tx.exec(sql);
  if (r.empty() || r[0][0].is_null()) return "";
  return r[0][0].as<std::string>();
}

int64_t Stack::count_deliveries(const std::string& state) const {
  pqxx::connection c(db_->url());
  pqxx::nontransaction tx(c);
  std::string sql = "SELECT count(*) FROM deliveries";
  if (!state.empty()) sql += " WHERE state = " + tx.quote(state);
  return tx.exec1(sql)[0].as<int64_t>();
}

std::string Stack::describe_deliveries() const {
  pqxx::connection c(db_->url());
  pqxx::nontransaction tx(c);
  std::ostringstream out;
  for (const auto& row :
       tx.exec("SELECT delivery_key, state, attempts, coalesce(lease_owner, '-'), "
               "coalesce(last_status::text, '-'), coalesce(last_error, '') FROM deliveries "
               "ORDER BY delivery_key")) {
    out << "delivery " << row[0].c_str() << " " << row[1].c_str() << " attempts=" << row[2].c_str()
        << " lease=" << row[3].c_str() << " last_status=" << row[4].c_str() << " " << row[5].c_str()
        << "\n";
  }
  for (const auto& row : tx.exec(
           "SELECT delivery_key, attempt, outcome, coalesce(http_status::text, '-'), worker_id, "
           "to_char(started_at, 'HH24:MI:SS.MS') FROM delivery_attempts_all "
           "ORDER BY started_at")) {
    out << "attempt " << row[5].c_str() << " " << row[0].c_str() << " #" << row[1].c_str() << " "
        << row[2].c_str() << " " << row[3].c_str() << " by " << row[4].c_str() << "\n";
  }
  return out.str();
}

std::map<std::string, int64_t> Stack::succeeded_attempts_per_key() const {
  pqxx::connection c(db_->url());
  pqxx::nontransaction tx(c);
  auto rows = tx.exec(
      "SELECT d.delivery_key, count(a.delivery_key) FROM deliveries d "
      "LEFT JOIN delivery_attempts_all a ON a.delivery_key = d.delivery_key AND a.outcome = "
      "'succeeded' "
      "GROUP BY d.delivery_key");
  std::map<std::string, int64_t> out;
  for (const auto& row : rows) out[row[0].as<std::string>()] = row[1].as<int64_t>();
  return out;
}

void Stack::set_database_accepting(bool accepting) const {
  // The database itself may refuse connections, so this goes through the server's admin URL.
  pqxx::connection admin(std::getenv(TestDatabase::kUrlEnv));
  pqxx::nontransaction tx(admin);
  tx.exec0("ALTER DATABASE " + tx.quote_name(db_->name()) + " ALLOW_CONNECTIONS " +
           (accepting ? "true" : "false"));
  if (!accepting) {
    tx.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = " +
            tx.quote(db_->name()) + " AND pid <> pg_backend_pid()");
  }
}

}  // namespace hookrelay::test
