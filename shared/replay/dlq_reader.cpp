#include "shared/replay/dlq_reader.h"

#include <unistd.h>

#include <chrono>
#include <map>
#include <random>

#include "shared/kafka/kafka_handles.h"
#include "shared/kafka/wire_contract.h"

namespace hookrelay {
namespace {

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Unexpected kafka_fail(const std::string& what, rd_kafka_resp_err_t err) {
  Error e = kafka_error(err);
  return fail("kafka", what + ": " + e.message, e.retryable);
}

std::vector<MessageHeader> headers_of(const rd_kafka_message_t* m) {
  std::vector<MessageHeader> out;
  rd_kafka_headers_t* hdrs = nullptr;  // owned by the message
  if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || hdrs == nullptr) {
    return out;
  }
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  for (size_t i = 0;
       rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
    out.push_back({name, value ? std::string(static_cast<const char*>(value), size) : ""});
  }
  return out;
}

}  // namespace

const std::string* DlqMessage::header(std::string_view name) const {
  const std::string* found = nullptr;
  for (const auto& h : headers) {
    if (h.name == name) found = &h.value;
  }
  return found;
}

std::string DlqMessage::delivery_key() const {
  const std::string* k = header(header::kDeliveryKey);
  return k && !k->empty() ? *k : key;
}

struct KafkaDlqReader::Impl {
  KafkaHandle rk;
  int timeout_ms = 30000;
  std::string topic;  // what read() reads
  std::size_t max_held_bytes = SIZE_MAX;
  // Bytes of values and headers kept by every read() of this reader: a replay keeps its first
  // read while it reads again (Replayer::reread_from), and the two share the budget.
  std::size_t held = 0;
};

KafkaDlqReader::KafkaDlqReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KafkaDlqReader::~KafkaDlqReader() = default;

void KafkaDlqReader::set_max_held_bytes(std::size_t bytes) { impl_->max_held_bytes = bytes; }

Result<std::unique_ptr<KafkaDlqReader>> KafkaDlqReader::create(const KafkaConfig& config,
                                                               int timeout_ms,
                                                               const std::string& client_id,
                                                               std::string_view topic) {
  // A group id is required by the consumer API even with assign(); a unique one that never
  // commits leaves no trace on the cluster beyond a short-lived client.
  std::mt19937_64 random(std::random_device{}());
  std::map<std::string, std::string> props = config.consumer_map();
  props["bootstrap.servers"] = config.bootstrap_servers;
  props["client.id"] = client_id;
  props["group.id"] = client_id + "-" + std::to_string(getpid()) + "-" + std::to_string(random());
  props["enable.auto.commit"] = "false";
  props["enable.auto.offset.store"] = "false";
  props["enable.partition.eof"] = "true";
  props["auto.offset.reset"] = "earliest";
  auto conf = make_kafka_conf(props);
  if (!conf) return Unexpected{conf.error()};
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf->get(), err, sizeof err);
  if (!rk) return fail("kafka", std::string("cannot create Kafka consumer: ") + err);
  (void)conf->release();  // rd_kafka_new took ownership
  auto impl = std::make_unique<Impl>();
  impl->rk.reset(rk);
  impl->timeout_ms = timeout_ms;
  impl->topic = std::string(topic);
  rd_kafka_poll_set_consumer(rk);
  return std::unique_ptr<KafkaDlqReader>(new KafkaDlqReader(std::move(impl)));
}

Result<std::vector<DlqMessage>> KafkaDlqReader::read(const KeepFn& keep,
                                                     const ProgressFn& progress) {
  rd_kafka_t* rk = impl_->rk.get();
  const std::string& topic = impl_->topic;
  KafkaTopic th(rd_kafka_topic_new(rk, topic.c_str(), nullptr));
  const rd_kafka_metadata_t* raw_md = nullptr;
  auto err = rd_kafka_metadata(rk, 0, th.get(), &raw_md, impl_->timeout_ms);
  KafkaMetadata md(raw_md);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return kafka_fail("metadata for " + topic, err);
  if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return kafka_fail(
        topic, md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
  }

  // Where each partition's read stops: the high watermark now, so a DLQ that keeps growing
  // while we read still ends.
  std::map<int32_t, int64_t> end;
  int64_t total = 0;
  KafkaPartitionList assignment(rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt));
  for (int i = 0; i < md->topics[0].partition_cnt; ++i) {
    int32_t p = md->topics[0].partitions[i].id;
    int64_t low = 0, high = 0;
    err = rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, impl_->timeout_ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return kafka_fail("watermarks of " + topic + "/" + std::to_string(p), err);
    }
    if (high <= low) continue;
    end[p] = high;
    total += high - low;
    rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), p)->offset = low;
  }
  std::vector<DlqMessage> out;
  if (end.empty()) return out;
  err = rd_kafka_assign(rk, assignment.get());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return kafka_fail("assign " + topic, err);
  // A pause (below) may outlive the assignment it was made in: none is left from a former read.
  rd_kafka_resume_partitions(rk, assignment.get());

  int64_t read = 0;
  std::size_t& held = impl_->held;
  int64_t last_progress = steady_ms();
  std::string last_error;
  // A partition read to its end is paused: what is dead-lettered to it meanwhile is not fetched
  // for nothing. Progress is only a message this read still needs (below its partition's end):
  // new messages of a finished partition must not keep a read alive whose other partitions
  // cannot be fetched, or it would never end.
  const auto finish = [&](std::map<int32_t, int64_t>::iterator it) {
    KafkaPartitionList done(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(done.get(), topic.c_str(), it->first);
    rd_kafka_pause_partitions(rk, done.get());
    end.erase(it);
  };
  if (progress) progress(0, total);
  while (!end.empty()) {
    KafkaMessage m(rd_kafka_consumer_poll(rk, 200));
    if (!m) {
      if (steady_ms() - last_progress > impl_->timeout_ms) {
        rd_kafka_assign(rk, nullptr);
        return fail("kafka",
                    "reading " + topic + " made no progress for " +
                        std::to_string(impl_->timeout_ms / 1000) + " s" +
                        (last_error.empty() ? "" : " (" + last_error + ")"),
                    true);
      }
      continue;
    }
    auto it = end.find(m->partition);
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (it != end.end()) finish(it);
      continue;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      last_error = rd_kafka_message_errstr(m.get());
      continue;
    }
    if (it == end.end()) continue;  // finished: fetched before its pause took effect
    if (m->offset >= it->second) {
      // Past the end (the last offsets below it were transaction markers or compacted away):
      // this partition is done, though no end-of-partition event may come while it grows.
      finish(it);
      continue;
    }
    last_progress = steady_ms();
    ++read;
    DlqMessage msg;
    msg.partition = m->partition;
    msg.offset = m->offset;
    if (m->key) msg.key.assign(static_cast<const char*>(m->key), m->key_len);
    msg.headers = headers_of(m.get());
    if (keep(msg.delivery_key())) {
      rd_kafka_timestamp_type_t type;
      int64_t ts = rd_kafka_message_timestamp(m.get(), &type);
      msg.timestamp_ms = ts < 0 ? 0 : ts;
      std::size_t size = m->len;
      for (const auto& h : msg.headers) size += h.name.size() + h.value.size();
      if (size > impl_->max_held_bytes - held) {
        msg.key = msg.delivery_key();
        // Only the reason, which a dry run reports without fetching the message, and the event
        // (source, event id), which the replay of unknown sources selects and dedupes by.
        std::vector<MessageHeader> kept;
        for (std::string_view name : {header::kDlqReason, header::kSource, header::kEventId}) {
          if (const auto* value = msg.header(name)) kept.push_back({std::string(name), *value});
        }
        msg.headers = std::move(kept);
        msg.stub = true;
      } else {
        held += size;
        if (m->payload) msg.value.assign(static_cast<const char*>(m->payload), m->len);
      }
      out.push_back(std::move(msg));
    }
    if (m->offset + 1 >= it->second) finish(it);
    if (progress && read % 1000 == 0) progress(read, total);
  }
  rd_kafka_assign(rk, nullptr);
  if (progress) progress(read, total);
  return out;
}

Result<DlqMessage> KafkaDlqReader::fetch(const std::string& topic, int32_t partition,
                                         int64_t offset) {
  rd_kafka_t* rk = impl_->rk.get();
  int64_t low = 0, high = 0;
  auto err = rd_kafka_query_watermark_offsets(rk, topic.c_str(), partition, &low, &high,
                                              impl_->timeout_ms);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return kafka_fail("watermarks of " + topic + "/" + std::to_string(partition), err);
  }
  const std::string where = topic + "/" + std::to_string(partition) + "@" + std::to_string(offset);
  if (offset < low || offset >= high)
    return fail("not_found", "no message at " + where + " (past retention?)");
  KafkaPartitionList assignment(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), partition)->offset = offset;
  err = rd_kafka_assign(rk, assignment.get());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return kafka_fail("assign " + where, err);
  rd_kafka_resume_partitions(rk, assignment.get());  // paused by a read() before
  const int64_t deadline = steady_ms() + impl_->timeout_ms;
  std::string last_error;
  while (steady_ms() < deadline) {
    KafkaMessage m(rd_kafka_consumer_poll(rk, 200));
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) break;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      last_error = rd_kafka_message_errstr(m.get());
      continue;
    }
    if (m->offset < offset) continue;
    rd_kafka_assign(rk, nullptr);
    // Compacted or transactional gaps: the next offset is not the message asked for.
    if (m->offset != offset) return fail("not_found", "no message at " + where);
    DlqMessage msg;
    msg.partition = m->partition;
    msg.offset = m->offset;
    if (m->key) msg.key.assign(static_cast<const char*>(m->key), m->key_len);
    msg.headers = headers_of(m.get());
    rd_kafka_timestamp_type_t type;
    int64_t ts = rd_kafka_message_timestamp(m.get(), &type);
    msg.timestamp_ms = ts < 0 ? 0 : ts;
    if (m->payload) msg.value.assign(static_cast<const char*>(m->payload), m->len);
    return msg;
  }
  rd_kafka_assign(rk, nullptr);
  return fail(
      "kafka",
      "reading " + where + " timed out" + (last_error.empty() ? "" : " (" + last_error + ")"),
      true);
}

}  // namespace hookrelay
