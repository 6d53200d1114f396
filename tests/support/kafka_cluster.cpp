#include "tests/support/kafka_cluster.h"

#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <random>
#include <thread>

#include "tests/support/kafka_test_client.h"
#include "tests/support/process.h"

namespace hookrelay::test {
namespace {

using namespace std::chrono_literals;

// Whether 127.0.0.1:port can be bound now.
bool port_free(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// A base port with 2 × nodes free ports after it (client ports, then controller ports).
int free_port_range(int nodes) {
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> base_of(20000, 45000);
  for (int attempt = 0; attempt < 200; ++attempt) {
    int base = base_of(random);
    bool all = true;
    for (int p = base; p < base + 2 * nodes && all; ++p) all = port_free(p);
    if (all) return base;
  }
  return 0;
}

struct AdminDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};

Result<std::unique_ptr<rd_kafka_t, AdminDeleter>> admin_client(const std::string& bootstrap) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return fail("kafka", std::string("admin client: ") + err);
  }
  return std::unique_ptr<rd_kafka_t, AdminDeleter>(rk);
}

// Polls `done` every 100 ms for up to 30 s.
bool within_30s(const std::function<bool()>& done) {
  for (int tries = 0; tries < 300; ++tries) {
    if (done()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// Runs one topic Admin API request (`send` issues it on the queue it is given; `result_of` and
// `topics_of` are its librdkafka result accessors) and returns what failed: "" on success; the
// request's error; or each topic whose result is neither success nor `tolerated` (e.g.
// TOPIC_ALREADY_EXISTS for a create).
template <class R>
std::string topics_request(rd_kafka_t* rk, const std::function<void(rd_kafka_queue_t*)>& send,
                           const R* (*result_of)(rd_kafka_event_t*),
                           const rd_kafka_topic_result_t** (*topics_of)(const R*, size_t*),
                           rd_kafka_resp_err_t tolerated) {
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  send(queue);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, 60000);
  std::string failure;
  if (!ev) {
    failure = "no answer within 60 s";
  } else if (rd_kafka_event_error(ev)) {
    failure = rd_kafka_event_error_string(ev);
  } else {
    size_t n = 0;
    const rd_kafka_topic_result_t** results = topics_of(result_of(ev), &n);
    for (size_t i = 0; i < n; ++i) {
      auto code = rd_kafka_topic_result_error(results[i]);
      if (code != RD_KAFKA_RESP_ERR_NO_ERROR && code != tolerated) {
        failure += std::string(rd_kafka_topic_result_name(results[i])) + ": " +
                   rd_kafka_topic_result_error_string(results[i]) + "; ";
      }
    }
  }
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(queue);
  return failure;
}

}  // namespace

Result<std::string> KafkaCluster::script(const std::vector<std::string>& args,
                                         std::chrono::seconds timeout) const {
  static int calls = 0;
  std::vector<std::string> argv = {"bash", std::string(HOOKRELAY_SOURCE_DIR) + "/scripts/kafka"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto log = dir_ / ("kafka-script-" + std::to_string(++calls) + ".log");
  auto p = ChildProcess::spawn(argv, {}, log);
  if (!p) return Unexpected{p.error()};
  auto code = p->wait_exit(timeout);
  if (!code) {
    p->kill();
    return fail("kafka", "scripts/kafka " + args.front() + " did not finish within " +
                             std::to_string(timeout.count()) + " s:\n" + p->log_tail(8000));
  }
  if (*code != 0) {
    return fail("kafka", "scripts/kafka " + args.front() + " failed (exit " +
                             std::to_string(*code) + "):\n" + p->log_tail(8000));
  }
  return p->read_log();
}

Result<std::unique_ptr<KafkaCluster>> KafkaCluster::start(const std::filesystem::path& dir,
                                                          int nodes) {
  std::unique_ptr<KafkaCluster> c(new KafkaCluster(dir / "kafka", nodes));
  std::filesystem::create_directories(c->dir_);
  if (auto fetched = c->script({"fetch"}, 600s); !fetched) return Unexpected{fetched.error()};
  int base = free_port_range(nodes);
  if (base == 0)
    return fail("kafka", "no free range of " + std::to_string(2 * nodes) + " ports on 127.0.0.1");
  auto started = c->script({"start", "--dir", c->dir_.string(), "--nodes", std::to_string(nodes),
                            "--port", std::to_string(base)},
                           180s);
  if (!started) return Unexpected{started.error()};
  for (int i = 0; i < nodes; ++i) {
    if (!c->bootstrap_.empty()) c->bootstrap_ += ",";
    c->bootstrap_ += "127.0.0.1:" + std::to_string(base + i);
  }
  return c;
}

KafkaCluster::~KafkaCluster() { (void)script({"stop", "--dir", dir_.string(), "--kill"}, 60s); }

Result<void> KafkaCluster::create_topics(const std::vector<std::string>& names, int partitions) {
  auto rk = admin_client(bootstrap_);
  if (!rk) return Unexpected{rk.error()};
  char err[512];
  std::vector<rd_kafka_NewTopic_t*> topics;
  const std::string min_isr = std::to_string(std::min(2, nodes_));
  for (const auto& name : names) {
    auto* t = rd_kafka_NewTopic_new(name.c_str(), partitions, nodes_, err, sizeof err);
    if (!t) return fail("kafka", name + ": " + err);
    rd_kafka_NewTopic_set_config(t, "min.insync.replicas", min_isr.c_str());
    topics.push_back(t);
  }
  const std::string failure = topics_request(
      rk->get(),
      [&](rd_kafka_queue_t* q) {
        rd_kafka_CreateTopics(rk->get(), topics.data(), topics.size(), nullptr, q);
      },
      rd_kafka_event_CreateTopics_result, rd_kafka_CreateTopics_result_topics,
      RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS);
  rd_kafka_NewTopic_destroy_array(topics.data(), topics.size());
  if (!failure.empty()) return fail("kafka", "creating topics: " + failure);
  // Leaders are elected a moment after creation.
  if (within_30s([&] {
        bool all = true;
        for (const auto& name : names) {
          for (int p = 0; p < partitions && all; ++p) all = leader(name, p).has_value();
        }
        return all;
      })) {
    return {};
  }
  return fail("kafka", "partitions without a leader 30 s after creation");
}

Result<void> KafkaCluster::delete_topics(const std::vector<std::string>& names) {
  auto existing = topic_partitions(bootstrap_);
  if (!existing) return Unexpected{existing.error()};
  std::vector<std::string> present;
  for (const auto& name : names) {
    if (existing->count(name)) present.push_back(name);
  }
  if (present.empty()) return {};
  auto rk = admin_client(bootstrap_);
  if (!rk) return Unexpected{rk.error()};
  std::vector<rd_kafka_DeleteTopic_t*> topics;
  for (const auto& name : present) topics.push_back(rd_kafka_DeleteTopic_new(name.c_str()));
  const std::string failure = topics_request(
      rk->get(),
      [&](rd_kafka_queue_t* q) {
        rd_kafka_DeleteTopics(rk->get(), topics.data(), topics.size(), nullptr, q);
      },
      rd_kafka_event_DeleteTopics_result, rd_kafka_DeleteTopics_result_topics,
      RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
  rd_kafka_DeleteTopic_destroy_array(topics.data(), topics.size());
  if (!failure.empty()) return fail("kafka", "deleting topics: " + failure);
  // Each broker learns of the deletion from the controller's log at its own pace; one that still
  // lists a topic would show a client the old topic (its partition count, its leaders) right
  // after this returns. So every node is asked on its own.
  std::vector<std::string> addresses;
  for (std::size_t start = 0; start <= bootstrap_.size();) {
    const auto comma = std::min(bootstrap_.find(',', start), bootstrap_.size());
    addresses.push_back(bootstrap_.substr(start, comma - start));
    start = comma + 1;
  }
  std::string still;
  if (within_30s([&] {
        still.clear();
        for (const auto& address : addresses) {
          auto now = topic_partitions(address);
          if (!now) {
            still += address + " (no answer) ";
            continue;
          }
          for (const auto& name : present) {
            if (now->count(name)) still += address + " lists " + name + " ";
          }
        }
        return still.empty();
      })) {
    return {};
  }
  return fail("kafka", "deleted topics still listed 30 s later: " + still);
}

Result<int> KafkaCluster::leader(const std::string& topic, int partition) const {
  auto rk = admin_client(bootstrap_);
  if (!rk) return Unexpected{rk.error()};
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk->get(), topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  auto code = rd_kafka_metadata(rk->get(), 0, t, &md, 5000);
  rd_kafka_topic_destroy(t);
  if (code != RD_KAFKA_RESP_ERR_NO_ERROR)
    return fail("kafka", std::string("metadata: ") + rd_kafka_err2str(code));
  std::optional<int> found;
  for (int i = 0; i < md->topic_cnt; ++i) {
    const auto& tm = md->topics[i];
    if (topic != tm.topic) continue;
    for (int p = 0; p < tm.partition_cnt; ++p) {
      if (tm.partitions[p].id == partition && tm.partitions[p].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
          tm.partitions[p].leader >= 0) {
        found = tm.partitions[p].leader;
      }
    }
  }
  rd_kafka_metadata_destroy(md);
  if (!found) return fail("kafka", topic + "/" + std::to_string(partition) + " has no leader");
  return *found;
}

Result<void> KafkaCluster::kill_node(int node) {
  stopped_ = true;
  auto r = script({"stop", "--dir", dir_.string(), "--node", std::to_string(node), "--kill"}, 60s);
  if (!r) return Unexpected{r.error()};
  return {};
}

Result<void> KafkaCluster::stop_node(int node) {
  stopped_ = true;
  auto r = script({"stop", "--dir", dir_.string(), "--node", std::to_string(node)}, 90s);
  if (!r) return Unexpected{r.error()};
  return {};
}

Result<void> KafkaCluster::stop_all() {
  stopped_ = true;
  auto r = script({"stop", "--dir", dir_.string()}, 120s);
  if (!r) return Unexpected{r.error()};
  return {};
}

Result<void> KafkaCluster::start_stopped() {
  if (!stopped_) return {};
  auto r = script({"start", "--dir", dir_.string()}, 180s);
  if (!r) return Unexpected{r.error()};
  stopped_ = false;
  return {};
}

}  // namespace hookrelay::test
