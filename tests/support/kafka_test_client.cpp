#include "tests/support/kafka_test_client.h"

#include <algorithm>
#include <random>
#include <thread>

namespace hookrelay::test {
namespace {

using Clock = std::chrono::steady_clock;

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
using Conf = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* md) const { rd_kafka_metadata_destroy(md); }
};

Error kafka_error(rd_kafka_resp_err_t err, const std::string& context) {
  return Error{rd_kafka_err2name(err), context + ": " + rd_kafka_err2str(err), true};
}

Result<Conf> make_conf(const std::string& bootstrap, const KafkaProperties& defaults,
                       const KafkaProperties& overrides) {
  Conf conf(rd_kafka_conf_new());
  KafkaProperties all = defaults;
  all["bootstrap.servers"] = bootstrap;
  for (const auto& [k, v] : overrides) all[k] = v;
  char errstr[512];
  for (const auto& [k, v] : all) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK) {
      return fail("kafka_config", k + "=" + v + ": " + errstr);
    }
  }
  return conf;
}

Result<KafkaHandle> make_handle(rd_kafka_type_t type, Conf conf) {
  char errstr[512];
  KafkaHandle handle(rd_kafka_new(type, conf.get(), errstr, sizeof errstr));
  if (!handle) return fail("kafka_client", std::string("rd_kafka_new: ") + errstr);
  (void)conf.release();  // rd_kafka_new took ownership
  return handle;
}

std::string random_suffix() {
  std::random_device rd;
  return std::to_string(rd()) + std::to_string(rd());
}

ConsumedMessage to_consumed(const rd_kafka_message_t* m) {
  ConsumedMessage out;
  out.topic = rd_kafka_topic_name(m->rkt);
  out.partition = m->partition;
  out.offset = m->offset;
  if (m->key != nullptr) {
    out.has_key = true;
    out.key.assign(static_cast<const char*>(m->key), m->key_len);
  }
  if (m->payload != nullptr) out.value.assign(static_cast<const char*>(m->payload), m->len);
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    for (std::size_t i = 0;
         rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      out.headers.emplace_back(name,
                               value ? std::string(static_cast<const char*>(value), size) : "");
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> ConsumedMessage::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

void KafkaHandleDeleter::operator()(rd_kafka_t* rk) const {
  if (rd_kafka_type(rk) == RD_KAFKA_CONSUMER) rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
}

// ---- TestProducer ----

Result<std::unique_ptr<TestProducer>> TestProducer::create(const std::string& bootstrap,
                                                           const KafkaProperties& properties) {
  auto conf = make_conf(
      bootstrap, {{"enable.idempotence", "true"}, {"acks", "all"}, {"linger.ms", "1"}}, properties);
  if (!conf) return Unexpected{conf.error()};
  std::unique_ptr<TestProducer> producer(new TestProducer());
  rd_kafka_conf_set_dr_msg_cb(conf->get(), &TestProducer::on_delivery);
  rd_kafka_conf_set_opaque(conf->get(), producer.get());
  auto handle = make_handle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!handle) return Unexpected{handle.error()};
  producer->handle_ = std::move(*handle);
  return producer;
}

void TestProducer::on_delivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
  auto* self = static_cast<TestProducer*>(opaque);
  const auto it = self->pending_.find(reinterpret_cast<std::uintptr_t>(message->_private));
  if (it == self->pending_.end()) return;  // its waiter timed out
  it->second.done = true;
  it->second.err = message->err;
  it->second.at = ProducedAt{message->partition, message->offset};
}

Result<ProducedAt> TestProducer::produce(const TestRecord& record,
                                         std::chrono::milliseconds timeout) {
  auto all = produce_all({record}, timeout);
  if (!all) return Unexpected{all.error()};
  return all->front();
}

Result<ProducedAt> TestProducer::produce(const std::string& topic, std::string_view value,
                                         const Headers& headers) {
  return produce(
      TestRecord{topic, std::string(value), headers, std::nullopt, RD_KAFKA_PARTITION_UA});
}

Result<std::vector<ProducedAt>> TestProducer::produce_all(const std::vector<TestRecord>& records,
                                                          std::chrono::milliseconds timeout) {
  std::vector<std::uintptr_t> ids;
  auto forget = [&] {
    for (auto id : ids) pending_.erase(id);
  };
  for (const auto& r : records) {
    const std::uintptr_t id = next_id_++;
    // The array form of producev: the RD_KAFKA_V_* macros are C casts. F_COPY means librdkafka
    // copies value, key and headers before returning, so pointers into `r` suffice.
    std::vector<rd_kafka_vu_t> vus(4);
    vus[0].vtype = RD_KAFKA_VTYPE_TOPIC;
    vus[0].u.cstr = r.topic.c_str();
    vus[1].vtype = RD_KAFKA_VTYPE_PARTITION;
    vus[1].u.i32 = r.partition;
    vus[2].vtype = RD_KAFKA_VTYPE_VALUE;
    vus[2].u.mem = {const_cast<char*>(r.value.data()), r.value.size()};
    vus[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vus[3].u.i = RD_KAFKA_MSG_F_COPY;
    rd_kafka_vu_t opaque{};
    opaque.vtype = RD_KAFKA_VTYPE_OPAQUE;
    opaque.u.ptr = reinterpret_cast<void*>(id);
    vus.push_back(opaque);
    if (r.key) {
      rd_kafka_vu_t key{};
      key.vtype = RD_KAFKA_VTYPE_KEY;
      key.u.mem = {const_cast<char*>(r.key->data()), r.key->size()};
      vus.push_back(key);
    }
    for (const auto& [name, value] : r.headers) {
      rd_kafka_vu_t h{};
      h.vtype = RD_KAFKA_VTYPE_HEADER;
      h.u.header = {name.c_str(), value.data(), static_cast<ssize_t>(value.size())};
      vus.push_back(h);
    }
    pending_[id] = Pending{};
    if (rd_kafka_error_t* error = rd_kafka_produceva(handle_.get(), vus.data(), vus.size())) {
      const Error e = kafka_error(rd_kafka_error_code(error), "produce to " + r.topic);
      rd_kafka_error_destroy(error);
      pending_.erase(id);
      forget();
      return Unexpected{e};
    }
    ids.push_back(id);
  }
  const auto deadline = Clock::now() + timeout;
  std::vector<ProducedAt> out;
  for (auto id : ids) {
    while (!pending_[id].done) {
      if (Clock::now() >= deadline) {
        forget();
        return fail("produce_timeout",
                    "no delivery report within " + std::to_string(timeout.count()) + " ms", true);
      }
      rd_kafka_poll(handle_.get(), 20);
    }
    const Pending& p = pending_[id];
    if (p.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const Error e = kafka_error(p.err, "delivery report");
      forget();
      return Unexpected{e};
    }
    out.push_back(p.at);
  }
  forget();
  return out;
}

// ---- free functions ----

Result<std::map<std::string, int>> topic_partitions(const std::string& bootstrap,
                                                    std::chrono::milliseconds timeout) {
  auto conf = make_conf(bootstrap, {}, {});
  if (!conf) return Unexpected{conf.error()};
  auto handle = make_handle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!handle) return Unexpected{handle.error()};
  const rd_kafka_metadata_t* raw = nullptr;
  const auto err =
      rd_kafka_metadata(handle->get(), 1, nullptr, &raw, static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return Unexpected{kafka_error(err, "metadata")};
  std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter> md(raw);
  std::map<std::string, int> out;
  for (int i = 0; i < md->topic_cnt; ++i) out[md->topics[i].topic] = md->topics[i].partition_cnt;
  return out;
}

namespace {

// A consumer outside any group's offsets, assigned every partition of `topic` from offset 0.
struct TopicReader {
  KafkaHandle handle;
  int partitions = 0;
};

Result<TopicReader> read_from_beginning(const std::string& bootstrap, const std::string& topic,
                                        std::chrono::milliseconds timeout) {
  auto partitions = topic_partitions(bootstrap, timeout);
  if (!partitions) return Unexpected{partitions.error()};
  const auto found = partitions->find(topic);
  if (found == partitions->end())
    return fail("unknown_topic", "no topic '" + topic + "' in metadata");
  auto conf = make_conf(bootstrap,
                        {{"group.id", "hr-test-reader-" + random_suffix()},
                         {"enable.auto.commit", "false"},
                         {"enable.auto.offset.store", "false"}},
                        {});
  if (!conf) return Unexpected{conf.error()};
  auto handle = make_handle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!handle) return Unexpected{handle.error()};
  PartitionList list(rd_kafka_topic_partition_list_new(found->second));
  for (int p = 0; p < found->second; ++p) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  if (const auto err = rd_kafka_assign(handle->get(), list.get());
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected{kafka_error(err, "assign")};
  }
  return TopicReader{std::move(*handle), found->second};
}

}  // namespace

Result<std::vector<ConsumedMessage>> consume_all(const std::string& bootstrap,
                                                 const std::string& topic,
                                                 std::size_t expected_count,
                                                 std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto reader = read_from_beginning(bootstrap, topic, timeout);
  if (!reader) return Unexpected{reader.error()};
  auto& handle = reader->handle;
  std::vector<ConsumedMessage> out;
  while (out.size() < expected_count && Clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(handle.get(), 50);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) out.push_back(to_consumed(m));
    rd_kafka_message_destroy(m);
  }
  return out;
}

Result<std::vector<ConsumedMessage>> consume_to_end(const std::string& bootstrap,
                                                    const std::string& topic,
                                                    std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto reader = read_from_beginning(bootstrap, topic, timeout);
  if (!reader) return Unexpected{reader.error()};
  auto& handle = reader->handle;
  std::vector<int64_t> end(static_cast<std::size_t>(reader->partitions), 0);
  std::size_t remaining = 0;
  for (int p = 0; p < reader->partitions; ++p) {
    int64_t low = 0, high = 0;
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    auto err = rd_kafka_query_watermark_offsets(handle.get(), topic.c_str(), p, &low, &high,
                                                static_cast<int>(std::max<int64_t>(left, 1)));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return Unexpected{kafka_error(err, "watermarks")};
    end[static_cast<std::size_t>(p)] = high;
    if (high > low) ++remaining;
  }
  std::vector<ConsumedMessage> out;
  while (remaining > 0) {
    if (Clock::now() >= deadline)
      return fail("timeout",
                  "read " + std::to_string(out.size()) + " messages of " + topic +
                      "; partitions not read to their end: " + std::to_string(remaining));
    rd_kafka_message_t* m = rd_kafka_consumer_poll(handle.get(), 50);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      auto p = static_cast<std::size_t>(m->partition);
      if (m->offset < end[p]) out.push_back(to_consumed(m));
      if (m->offset + 1 == end[p]) --remaining;
    }
    rd_kafka_message_destroy(m);
  }
  return out;
}

Result<std::map<std::int32_t, PartitionProgress>> group_progress(
    const std::string& bootstrap, const std::string& group, const std::string& topic,
    std::chrono::milliseconds timeout) {
  auto partitions = topic_partitions(bootstrap, timeout);
  if (!partitions) return Unexpected{partitions.error()};
  const auto found = partitions->find(topic);
  if (found == partitions->end())
    return fail("unknown_topic", "no topic '" + topic + "' in metadata");
  // A consumer that never subscribes does not join the group; it only asks the coordinator.
  auto conf = make_conf(bootstrap, {{"group.id", group}, {"enable.auto.commit", "false"}}, {});
  if (!conf) return Unexpected{conf.error()};
  auto handle = make_handle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!handle) return Unexpected{handle.error()};
  PartitionList list(rd_kafka_topic_partition_list_new(found->second));
  for (int p = 0; p < found->second; ++p)
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p);
  if (const auto err =
          rd_kafka_committed(handle->get(), list.get(), static_cast<int>(timeout.count()));
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected{kafka_error(err, "committed offsets of " + group)};
  }
  std::map<std::int32_t, PartitionProgress> out;
  for (int i = 0; i < list->cnt; ++i) {
    const auto& e = list->elems[i];
    if (e.err != RD_KAFKA_RESP_ERR_NO_ERROR)
      return Unexpected{kafka_error(e.err, "committed offset")};
    int64_t low = 0, high = 0;
    const auto err = rd_kafka_query_watermark_offsets(
        handle->get(), topic.c_str(), e.partition, &low, &high, static_cast<int>(timeout.count()));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return Unexpected{kafka_error(err, "watermarks")};
    out[e.partition] = PartitionProgress{e.offset >= 0 ? e.offset : -1, high};
  }
  return out;
}

// ---- TestGroupConsumer ----

Result<std::unique_ptr<TestGroupConsumer>> TestGroupConsumer::create(
    const std::string& bootstrap, const std::string& group_id,
    const std::vector<std::string>& topics, const KafkaProperties& properties) {
  auto conf = make_conf(bootstrap,
                        {{"group.id", group_id},
                         {"auto.offset.reset", "earliest"},
                         {"enable.auto.commit", "false"},
                         {"session.timeout.ms", "6000"},
                         {"heartbeat.interval.ms", "300"}},
                        properties);
  if (!conf) return Unexpected{conf.error()};
  auto handle = make_handle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!handle) return Unexpected{handle.error()};
  rd_kafka_poll_set_consumer(handle->get());
  PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(topics.size())));
  for (const auto& t : topics)
    rd_kafka_topic_partition_list_add(list.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
  if (const auto err = rd_kafka_subscribe(handle->get(), list.get());
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected{kafka_error(err, "subscribe")};
  }
  return std::unique_ptr<TestGroupConsumer>(new TestGroupConsumer(std::move(*handle)));
}

std::optional<ConsumedMessage> TestGroupConsumer::poll(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  do {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(handle_.get(), 20);
    if (m == nullptr) continue;
    std::optional<ConsumedMessage> out;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) out = to_consumed(m);
    rd_kafka_message_destroy(m);
    if (out) return out;
  } while (Clock::now() < deadline);
  return std::nullopt;
}

std::vector<std::pair<std::string, std::int32_t>> TestGroupConsumer::assignment() {
  rd_kafka_topic_partition_list_t* raw = nullptr;
  std::vector<std::pair<std::string, std::int32_t>> out;
  if (rd_kafka_assignment(handle_.get(), &raw) != RD_KAFKA_RESP_ERR_NO_ERROR) return out;
  PartitionList list(raw);
  for (int i = 0; i < list->cnt; ++i)
    out.emplace_back(list->elems[i].topic, list->elems[i].partition);
  std::sort(out.begin(), out.end());
  return out;
}

Result<void> TestGroupConsumer::commit() {
  const auto err = rd_kafka_commit(handle_.get(), nullptr, 0);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return Unexpected{kafka_error(err, "commit")};
  return {};
}

}  // namespace hookrelay::test
