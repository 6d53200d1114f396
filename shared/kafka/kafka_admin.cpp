#include "shared/kafka/kafka_admin.h"

#include <algorithm>
#include <functional>
#include <iterator>
#include <thread>

namespace hookrelay {
namespace {

using AdminOptions = std::unique_ptr<rd_kafka_AdminOptions_t, RdKafkaDeleter>;
using NewTopic = std::unique_ptr<rd_kafka_NewTopic_t, RdKafkaDeleter>;
using NewPartitions = std::unique_ptr<rd_kafka_NewPartitions_t, RdKafkaDeleter>;
using ConfigResource = std::unique_ptr<rd_kafka_ConfigResource_t, RdKafkaDeleter>;
using Metadata = std::unique_ptr<const rd_kafka_metadata_t, RdKafkaDeleter>;

// How long past the request timeout we wait for librdkafka to hand the (timed-out) result over.
constexpr int kResultMarginMs = 5000;

std::string seconds_text(std::chrono::milliseconds t) {
  auto ms = t.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

bool no_answer(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR__TIMED_OUT || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
         err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__RESOLVE ||
         err == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT;
}

Error admin_error(rd_kafka_resp_err_t err, const std::string& what, const char* detail,
                  const std::string& bootstrap, std::chrono::milliseconds timeout) {
  std::string text = detail && *detail ? detail : rd_kafka_err2str(err);
  if (no_answer(err)) {
    return {"kafka_unreachable",
            "Kafka at " + bootstrap + " did not answer within " + seconds_text(timeout) + " (" +
                what + "): " + text,
            true};
  }
  Error e = kafka_error(err);
  e.message = what + ": " + text + " (" + rd_kafka_err2name(err) + ")";
  return e;
}

}  // namespace

namespace {

// A client on `bootstrap` with `properties` (TLS, SASL): a producer that never produces.
Result<KafkaHandle> admin_client(std::map<std::string, std::string> properties,
                                 const std::string& bootstrap) {
  properties["bootstrap.servers"] = bootstrap;
  properties["client.id"] = "hookrelay-admin";
  auto conf = make_kafka_conf(properties);
  if (!conf) return Unexpected{conf.error()};
  // Connection failures come back as results with a clear message; librdkafka's own stderr lines
  // would only repeat them.
  rd_kafka_conf_set_log_cb(conf->get(), nullptr);
  char err[512];
  KafkaHandle rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), err, sizeof err));
  if (!rk) return fail("kafka", std::string("cannot create the Kafka admin client: ") + err);
  (void)conf->release();  // rd_kafka_new took ownership
  return rk;
}

}  // namespace

Result<std::unique_ptr<KafkaAdmin>> KafkaAdmin::create(const KafkaConfig& kafka,
                                                       std::chrono::milliseconds timeout) {
  auto rk = admin_client(kafka.properties, kafka.bootstrap_servers);
  if (!rk) return Unexpected{rk.error()};
  return std::unique_ptr<KafkaAdmin>(new KafkaAdmin(std::move(*rk), timeout, kafka));
}

namespace {

Result<Metadata> all_metadata(rd_kafka_t* rk, std::chrono::milliseconds timeout,
                              const std::string& bootstrap) {
  const rd_kafka_metadata_t* raw = nullptr;
  auto err = rd_kafka_metadata(rk, 1, nullptr, &raw, static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    return Unexpected{admin_error(err, "metadata", nullptr, bootstrap, timeout)};
  return Metadata(raw);
}

// Runs one Admin API request on its own queue and returns its result event, or the request's
// error. `request` is given the options and the queue.
Result<KafkaEvent> run_admin(
    rd_kafka_t* rk, std::chrono::milliseconds timeout, const std::string& bootstrap,
    const std::string& what, rd_kafka_event_type_t expected,
    const std::function<void(const rd_kafka_AdminOptions_t*, rd_kafka_queue_t*)>& request) {
  AdminOptions options(rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ANY));
  char err[512];
  const int ms = static_cast<int>(timeout.count());
  if (rd_kafka_AdminOptions_set_request_timeout(options.get(), ms, err, sizeof err) !=
          RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_AdminOptions_set_operation_timeout(options.get(), ms, err, sizeof err) !=
          RD_KAFKA_RESP_ERR_NO_ERROR) {
    return fail("kafka", what + ": " + err);
  }
  KafkaQueue queue(rd_kafka_queue_new(rk));
  request(options.get(), queue.get());
  KafkaEvent event(rd_kafka_queue_poll(queue.get(), ms + kResultMarginMs));
  if (!event) {
    return Unexpected{admin_error(RD_KAFKA_RESP_ERR__TIMED_OUT, what, nullptr, bootstrap, timeout)};
  }
  if (auto e = rd_kafka_event_error(event.get()); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected{
        admin_error(e, what, rd_kafka_event_error_string(event.get()), bootstrap, timeout)};
  }
  if (rd_kafka_event_type(event.get()) != expected) {
    return fail("kafka", what + ": unexpected result event " + rd_kafka_event_name(event.get()));
  }
  return event;
}

// The first failed topic result of a CreateTopics / CreatePartitions answer. Sets
// `*made_by_another` (and returns success) when the failure says another client made the change.
Result<void> check_topic_results(const rd_kafka_topic_result_t** results, std::size_t count,
                                 const std::string& what, const std::string& bootstrap,
                                 std::chrono::milliseconds timeout, bool* made_by_another) {
  *made_by_another = false;
  for (std::size_t i = 0; i < count; ++i) {
    auto err = rd_kafka_topic_result_error(results[i]);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    const char* detail = rd_kafka_topic_result_error_string(results[i]);
    if (already_made_by_another(err, detail ? detail : "")) {
      *made_by_another = true;
      continue;
    }
    return Unexpected{admin_error(err, what, detail, bootstrap, timeout)};
  }
  return {};
}

}  // namespace

bool already_made_by_another(rd_kafka_resp_err_t err, std::string_view detail) {
  if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) return true;
  // Kafka: "Topic already has 3 partition(s)." when the count asked for is the count it has; "...
  // currently has 6 partition(s); 3 would not be an increase." when it has more.
  return err == RD_KAFKA_RESP_ERR_INVALID_PARTITIONS &&
         detail.find("already has") != std::string_view::npos;
}

Result<std::set<std::string>> KafkaAdmin::topic_names() {
  auto md = all_metadata(rk_.get(), timeout_, bootstrap_);
  if (!md) return Unexpected{md.error()};
  std::set<std::string> out;
  for (int i = 0; i < (*md)->topic_cnt; ++i) {
    const auto& t = (*md)->topics[i];
    // A topic being deleted, or one whose name the broker does not know, reports an error.
    if (t.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) continue;
    out.insert(t.topic);
  }
  return out;
}

Result<std::map<std::string, ObservedTopic>> KafkaAdmin::describe(
    const std::vector<std::string>& names, const std::set<std::string>& config_names) {
  auto md = all_metadata(rk_.get(), timeout_, bootstrap_);
  if (!md) return Unexpected{md.error()};
  std::map<std::string, ObservedTopic> out;
  for (int i = 0; i < (*md)->topic_cnt; ++i) {
    const auto& t = (*md)->topics[i];
    if (t.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) continue;
    if (std::find(names.begin(), names.end(), t.topic) == names.end()) continue;
    ObservedTopic seen;
    seen.partitions = t.partition_cnt;
    for (int p = 0; p < t.partition_cnt; ++p) {
      const int replicas = t.partitions[p].replica_cnt;
      seen.replication_factor = p == 0 ? replicas : std::min(seen.replication_factor, replicas);
    }
    out[t.topic] = std::move(seen);
  }
  if (out.empty() || config_names.empty()) return out;
  std::vector<std::string> existing;
  existing.reserve(out.size());
  for (const auto& [name, seen] : out) existing.push_back(name);
  auto configs = describe_configs(existing, config_names);
  if (!configs) return Unexpected{configs.error()};
  for (auto& [name, values] : *configs) out[name].configs = std::move(values);
  return out;
}

Result<std::map<std::string, std::map<std::string, std::string>>> KafkaAdmin::describe_configs(
    const std::vector<std::string>& topics, const std::set<std::string>& all_of) {
  std::vector<ConfigResource> owned;
  std::vector<rd_kafka_ConfigResource_t*> raw;
  for (const auto& t : topics) {
    owned.emplace_back(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, t.c_str()));
    raw.push_back(owned.back().get());
  }
  auto event = run_admin(rk_.get(), timeout_, bootstrap_, "describe configs",
                         RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT,
                         [&](const rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
                           rd_kafka_DescribeConfigs(rk_.get(), raw.data(), raw.size(), o, q);
                         });
  if (!event) return Unexpected{event.error()};
  const auto* result = rd_kafka_event_DescribeConfigs_result(event->get());
  std::size_t count = 0;
  const auto** resources = rd_kafka_DescribeConfigs_result_resources(result, &count);
  std::map<std::string, std::map<std::string, std::string>> out;
  for (std::size_t i = 0; i < count; ++i) {
    const std::string name = rd_kafka_ConfigResource_name(resources[i]);
    if (auto err = rd_kafka_ConfigResource_error(resources[i]); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Unexpected{admin_error(err, "describe configs of " + name,
                                    rd_kafka_ConfigResource_error_string(resources[i]), bootstrap_,
                                    timeout_)};
    }
    auto& values = out[name];
    std::size_t entry_count = 0;
    const auto** entries = rd_kafka_ConfigResource_configs(resources[i], &entry_count);
    for (std::size_t j = 0; j < entry_count; ++j) {
      const char* key = rd_kafka_ConfigEntry_name(entries[j]);
      const char* value = rd_kafka_ConfigEntry_value(entries[j]);
      if (!key || !value) continue;  // sensitive values are not returned
      const bool wanted = all_of.empty() ? rd_kafka_ConfigEntry_source(entries[j]) ==
                                               RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG
                                         : all_of.count(key) > 0;
      if (wanted) values[key] = value;
    }
  }
  return out;
}

Result<void> KafkaAdmin::create_topic(const TopicSpec& spec) {
  char err[512];
  NewTopic topic(rd_kafka_NewTopic_new(spec.name.c_str(), spec.partitions, spec.replication_factor,
                                       err, sizeof err));
  if (!topic) return fail("kafka", "create topic " + spec.name + ": " + err);
  for (const auto& [k, v] : spec.configs) {
    if (rd_kafka_NewTopic_set_config(topic.get(), k.c_str(), v.c_str()) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      return fail("kafka", "create topic " + spec.name + ": cannot set " + k);
    }
  }
  rd_kafka_NewTopic_t* raw[] = {topic.get()};
  const std::string what = "create topic " + spec.name;
  auto event = run_admin(rk_.get(), timeout_, bootstrap_, what, RD_KAFKA_EVENT_CREATETOPICS_RESULT,
                         [&](const rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
                           rd_kafka_CreateTopics(rk_.get(), raw, 1, o, q);
                         });
  if (!event) return Unexpected{event.error()};
  std::size_t count = 0;
  const auto** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event->get()), &count);
  bool made_by_another = false;
  if (auto r = check_topic_results(results, count, what, bootstrap_, timeout_, &made_by_another);
      !r)
    return r;
  if (!made_by_another) return wait_for_partitions(spec.name, spec.partitions, what);
  // Another client created it meanwhile: fine if it is the topic asked for.
  if (auto r = wait_for_partitions(spec.name, 1, what); !r) return r;
  std::set<std::string> keys;
  for (const auto& [k, v] : spec.configs) keys.insert(k);
  auto seen = describe({spec.name}, keys);
  if (!seen) return Unexpected{seen.error()};
  const auto drifts = diff_topics({spec}, *seen);
  if (drifts.empty()) return {};
  std::string differences;
  for (const auto& d : drifts) differences += (differences.empty() ? "" : "; ") + d.message;
  return fail("kafka",
              what + ": another client created it meanwhile, and it differs: " + differences);
}

Result<void> KafkaAdmin::raise_partitions(const std::string& topic, int total) {
  char err[512];
  NewPartitions partitions(
      rd_kafka_NewPartitions_new(topic.c_str(), static_cast<std::size_t>(total), err, sizeof err));
  if (!partitions) return fail("kafka", "raise partitions of " + topic + ": " + err);
  rd_kafka_NewPartitions_t* raw[] = {partitions.get()};
  const std::string what = "raise partitions of " + topic;
  auto event =
      run_admin(rk_.get(), timeout_, bootstrap_, what, RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT,
                [&](const rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
                  rd_kafka_CreatePartitions(rk_.get(), raw, 1, o, q);
                });
  if (!event) return Unexpected{event.error()};
  std::size_t count = 0;
  const auto** results = rd_kafka_CreatePartitions_result_topics(
      rd_kafka_event_CreatePartitions_result(event->get()), &count);
  // Raised to `total` by another client meanwhile ("already has"): the same wait confirms it.
  bool made_by_another = false;
  if (auto r = check_topic_results(results, count, what, bootstrap_, timeout_, &made_by_another);
      !r)
    return r;
  return wait_for_partitions(topic, total, what);
}

Result<void> KafkaAdmin::wait_for_partitions(const std::string& topic, int partitions,
                                             const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  while (true) {
    auto md = all_metadata(rk_.get(), timeout_, bootstrap_);
    if (!md) return Unexpected{md.error()};
    for (int i = 0; i < (*md)->topic_cnt; ++i) {
      const auto& t = (*md)->topics[i];
      if (t.topic == topic && t.err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
          t.partition_cnt >= partitions) {
        return {};
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail("kafka_unreachable",
                  what + ": Kafka accepted it but its metadata did not show " +
                      std::to_string(partitions) + " partitions within " + seconds_text(timeout_),
                  true);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Result<void> KafkaAdmin::set_configs(const std::string& topic,
                                     const std::map<std::string, std::string>& configs) {
  // AlterConfigs resets every dynamic override it is not given: send the current ones along.
  auto current = describe_configs({topic}, {});
  if (!current) return Unexpected{current.error()};
  auto merged = (*current)[topic];
  for (const auto& [k, v] : configs) merged[k] = v;
  ConfigResource resource(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str()));
  for (const auto& [k, v] : merged) {
    if (rd_kafka_ConfigResource_set_config(resource.get(), k.c_str(), v.c_str()) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      return fail("kafka", "alter configs of " + topic + ": cannot set " + k);
    }
  }
  rd_kafka_ConfigResource_t* raw[] = {resource.get()};
  const std::string what = "alter configs of " + topic;
  auto event = run_admin(rk_.get(), timeout_, bootstrap_, what, RD_KAFKA_EVENT_ALTERCONFIGS_RESULT,
                         [&](const rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
                           rd_kafka_AlterConfigs(rk_.get(), raw, 1, o, q);
                         });
  if (!event) return Unexpected{event.error()};
  std::size_t count = 0;
  const auto** resources = rd_kafka_AlterConfigs_result_resources(
      rd_kafka_event_AlterConfigs_result(event->get()), &count);
  for (std::size_t i = 0; i < count; ++i) {
    if (auto e = rd_kafka_ConfigResource_error(resources[i]); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Unexpected{admin_error(e, what, rd_kafka_ConfigResource_error_string(resources[i]),
                                    bootstrap_, timeout_)};
    }
  }
  // A broker may answer DescribeConfigs from metadata that lags the controller for a moment.
  std::set<std::string> keys;
  for (const auto& [k, v] : configs) keys.insert(k);
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  while (true) {
    auto now = describe_configs({topic}, keys);
    if (!now) return Unexpected{now.error()};
    bool visible = true;
    for (const auto& [k, v] : configs) {
      auto it = (*now)[topic].find(k);
      visible = visible && it != (*now)[topic].end() && it->second == v;
    }
    if (visible) return {};
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail("kafka_unreachable",
                  what + ": Kafka accepted it but did not report the new values within " +
                      seconds_text(timeout_),
                  true);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

namespace {

// What `md` lacks of `partitions` (topic -> partition count), as a phrase; empty when nothing.
std::string lacking_from(const rd_kafka_metadata_t& md,
                         const std::map<std::string, int>& partitions) {
  std::string out;
  const auto add = [&out](const std::string& what) { out += (out.empty() ? "" : ", ") + what; };
  for (const auto& [name, wanted] : partitions) {
    const rd_kafka_metadata_topic* topic = nullptr;
    for (int i = 0; i < md.topic_cnt; ++i) {
      if (name == md.topics[i].topic) topic = &md.topics[i];
    }
    if (!topic || topic->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
      add(name + ": topic is missing");
    } else if (topic->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      add(name + ": " + rd_kafka_err2str(topic->err));
    } else if (topic->partition_cnt < wanted) {
      add(name + ": " + std::to_string(topic->partition_cnt) + " of " + std::to_string(wanted) +
          " partitions");
    } else {
      for (int p = 0; p < topic->partition_cnt; ++p) {
        const auto& partition = topic->partitions[p];
        if (partition.err != RD_KAFKA_RESP_ERR_NO_ERROR || partition.leader < 0) {
          add(name + ": partition " + std::to_string(partition.id) + " has no leader");
          break;
        }
      }
    }
  }
  return out;
}

}  // namespace

// The cluster as some bootstrap broker sees it. The shared client asks whichever broker it picks,
// and just after a broker goes down it may still pick that one and wait out the whole timeout,
// though the others would answer at once. So with several bootstrap addresses it gets half the
// time, and then each address is asked on a client of its own (all connecting at once), in turns
// of 100 ms, until one answers or the time is up: then the error is the shared client's.
Result<KafkaMetadata> KafkaAdmin::cluster_metadata(std::chrono::steady_clock::time_point deadline) {
  using std::chrono::milliseconds;
  std::vector<std::string> addresses;
  for (std::size_t from = 0; from <= bootstrap_.size();) {
    const std::size_t comma = std::min(bootstrap_.find(',', from), bootstrap_.size());
    std::string address = bootstrap_.substr(from, comma - from);
    std::erase(address, ' ');
    if (!address.empty()) addresses.push_back(std::move(address));
    from = comma + 1;
  }
  if (addresses.size() < 2) return all_metadata(rk_.get(), timeout_, bootstrap_);
  auto shared = all_metadata(rk_.get(), std::max(timeout_ / 2, milliseconds(1)), bootstrap_);
  if (shared || shared.error().code != "kafka_unreachable") return shared;
  std::vector<KafkaHandle> clients;
  for (const auto& address : addresses) {
    auto client = admin_client(properties_, address);
    if (!client) return Unexpected{client.error()};
    clients.push_back(std::move(*client));
  }
  while (std::chrono::steady_clock::now() < deadline) {
    for (auto& client : clients) {
      const rd_kafka_metadata_t* raw = nullptr;
      if (rd_kafka_metadata(client.get(), 1, nullptr, &raw, 100) == RD_KAFKA_RESP_ERR_NO_ERROR)
        return Metadata(raw);
    }
  }
  // The whole timeout's wording: no broker answered within it.
  return Unexpected{
      admin_error(RD_KAFKA_RESP_ERR__TIMED_OUT, "metadata", nullptr, bootstrap_, timeout_)};
}

Result<KafkaAdmin::EveryBroker> KafkaAdmin::wait_until_every_broker_knows(
    const std::map<std::string, int>& partitions) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + timeout_;
  auto cluster = cluster_metadata(deadline);
  if (!cluster) return Unexpected{cluster.error()};
  struct Behind {
    std::string label;  // "broker 2 (host:port)"
    KafkaHandle client;
    std::string lacking;
  };
  std::map<std::string, Behind> behind;  // by host:port
  for (int i = 0; i < (*cluster)->broker_cnt; ++i) {
    const auto& b = (*cluster)->brokers[i];
    const std::string address = std::string(b.host) + ":" + std::to_string(b.port);
    // Every client starts connecting as it is made: make them all before asking any.
    auto client = admin_client(properties_, address);
    if (!client) return Unexpected{client.error()};
    behind[address] = {"broker " + std::to_string(b.id) + " (" + address + ")", std::move(*client),
                       ""};
  }
  const int brokers = static_cast<int>(behind.size());
  for (int round = 1;; ++round) {
    for (auto it = behind.begin(); it != behind.end();) {
      const std::string& address = it->first;
      Behind& b = it->second;
      // Each request may take the time left, but at least a second.
      const auto left =
          std::max(duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now()),
                   milliseconds(1000));
      const rd_kafka_metadata_t* raw = nullptr;
      const auto err = rd_kafka_metadata(b.client.get(), 1, nullptr, &raw,
                                         static_cast<int>(std::min(left, timeout_).count()));
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        b.lacking = std::string("no metadata: ") + rd_kafka_err2str(err);
      } else {
        Metadata md(raw);
        // The client knows the other brokers once it has metadata: make sure this one answered
        // (librdkafka names a broker "host:port/<id>", or "host:port/bootstrap").
        const std::string from = md->orig_broker_name ? md->orig_broker_name : "";
        b.lacking = from.rfind(address + "/", 0) == 0 ? lacking_from(*md, partitions)
                                                      : "the answer came from " + from;
      }
      it = b.lacking.empty() ? behind.erase(it) : std::next(it);
    }
    const auto now = std::chrono::steady_clock::now();
    if (behind.empty())
      return EveryBroker{duration_cast<milliseconds>(now - start), brokers, round};
    if (now >= deadline) {
      std::string message;
      for (const auto& [address, b] : behind) {
        message += (message.empty() ? "" : "; ") + b.label + ": " + b.lacking;
      }
      return fail("kafka_metadata_lag",
                  "after " + seconds_text(timeout_) + ", " + std::to_string(behind.size()) +
                      " of " + std::to_string(brokers) +
                      " brokers still do not list the topics as usable: " + message,
                  true);
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
}

}  // namespace hookrelay
