#include "worker/kafka_consumer.h"

#include <chrono>
#include <memory>

#include "shared/kafka/wire_contract.h"
#include "shared/log.h"

namespace hookrelay {
namespace {

// How long the gauges' lookup of committed offsets may hold the worker's loop, once per
// assignment.
constexpr int kCommittedLookupLimitMs = 500;

std::vector<TopicPartition> to_vector(const rd_kafka_topic_partition_list_t* parts) {
  std::vector<TopicPartition> out;
  out.reserve(parts->cnt);
  for (int i = 0; i < parts->cnt; ++i)
    out.push_back({parts->elems[i].topic, parts->elems[i].partition});
  return out;
}

// The partitions as a librdkafka list (offsets unset).
KafkaPartitionList list_of(const std::vector<TopicPartition>& tps) {
  KafkaPartitionList l(rd_kafka_topic_partition_list_new(static_cast<int>(tps.size())));
  for (const auto& tp : tps)
    rd_kafka_topic_partition_list_add(l.get(), tp.topic.c_str(), tp.partition);
  return l;
}

KafkaPartitionList one(const TopicPartition& tp, int64_t offset) {
  KafkaPartitionList l(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(l.get(), tp.topic.c_str(), tp.partition)->offset = offset;
  return l;
}

}  // namespace

Result<std::unique_ptr<KafkaConsumer>> KafkaConsumer::create(const Config& config,
                                                             const std::string& client_id) {
  std::map<std::string, std::string> props = {
      {"bootstrap.servers", config.kafka.bootstrap_servers},
      {"group.id", config.worker.group_id},
      {"client.id", client_id},
      {"enable.auto.offset.store", "false"},
      {"enable.auto.commit", "true"},
      {"auto.commit.interval.ms", "1000"},
      {"auto.offset.reset", "earliest"},
      {"enable.partition.eof", "false"},
      // Cooperative: a rebalance moves only the partitions that change owner; the others go on
      // being consumed (the eager strategies revoked every partition of every member first).
      {"partition.assignment.strategy", "cooperative-sticky"},
      // Static members: long enough to cover a restart (the restarted worker takes its
      // partitions back without a rebalance), at the price of a dead member's partitions waiting
      // this long before they move. Dynamic members: a dead one is noticed quickly.
      {"session.timeout.ms", config.worker.static_membership ? "45000" : "10000"},
      {"heartbeat.interval.ms", "1000"},
      {"max.poll.interval.ms", "300000"},
      // How long a broker may hold a fetch that finds nothing new. Kafka answers as soon as a
      // message arrives, so this is the idle fetch rate; the devbroker (librdkafka's mock
      // cluster) holds an empty fetch the whole time, so there it adds up to this much latency.
      {"fetch.wait.max.ms", "10"},
      // Kafka holds a fetch until 16 KB have arrived or the wait above ends. In a steady
      // stream a fetch then brings a batch, not the one or two messages of the latest produce,
      // so the broker, librdkafka and the worker's claim rounds each run a few times per 10 ms
      // instead of on every produce. At most 10 ms more latency, only below about 1.6 MB/s.
      // (The devbroker answers as soon as it has anything.)
      {"fetch.min.bytes", "16384"},
      // The prefetch that waits while the worker is full: 64 MB, librdkafka's own default. Once it
      // is full, librdkafka 2.0 stops fetching and looks again only when its broker thread next
      // wakes, up to a second later. A backlog drains faster than that empties 16 MB, so with
      // 16 MB a drain sat idle for most of a second each time the prefetch ran out.
      {"queued.max.messages.kbytes", "65536"},
      // librdkafka's log lines are served by poll() on the polling thread (set_log_queue below),
      // not called from its own threads: on_log reads the consumer, and after an abandoned close
      // the process's logger goes away while librdkafka's threads still run.
      {"log.queue", "true"},
  };
  if (config.worker.static_membership) props["group.instance.id"] = config.worker.group_instance_id;
  for (const auto& [k, v] : config.kafka.consumer_map()) props[k] = v;
  auto conf = make_kafka_conf(
      props, [&config](const std::string& key) { return config.kafka.field_of(key, false); });
  if (!conf) return Unexpected{conf.error()};
  std::unique_ptr<KafkaConsumer> c(new KafkaConsumer());
  c->cooperative_ = props["partition.assignment.strategy"].find("cooperative") != std::string::npos;
  rd_kafka_conf_set_rebalance_cb(conf->get(), &KafkaConsumer::on_rebalance);
  rd_kafka_conf_set_log_cb(conf->get(), &KafkaConsumer::on_log);
  rd_kafka_conf_set_offset_commit_cb(conf->get(), &KafkaConsumer::on_commit);
  rd_kafka_conf_set_opaque(conf->get(), c.get());
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf->get(), err, sizeof err);
  if (!rk) return fail("kafka", std::string("cannot create Kafka consumer: ") + err);
  (void)conf->release();
  c->rk_.reset(rk);
  rd_kafka_poll_set_consumer(rk);
  c->queue_.reset(rd_kafka_queue_get_consumer(rk));
  c->wake_queue_.store(c->queue_.get(), std::memory_order_release);
  if (rd_kafka_resp_err_t e = rd_kafka_set_log_queue(rk, c->queue_.get());
      e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return fail("kafka", std::string("cannot set the log queue: ") + rd_kafka_err2str(e));

  KafkaPartitionList topics(rd_kafka_topic_partition_list_new(
      5 + static_cast<int>(config.retry.schedule_seconds.size())));
  rd_kafka_topic_partition_list_add(topics.get(), std::string(kWebhooksTopic).c_str(),
                                    RD_KAFKA_PARTITION_UA);
  rd_kafka_topic_partition_list_add(topics.get(), std::string(kCallsTopic).c_str(),
                                    RD_KAFKA_PARTITION_UA);
  for (std::size_t i = 0; i < config.retry.schedule_seconds.size(); ++i) {
    rd_kafka_topic_partition_list_add(topics.get(), retry_topic(static_cast<int>(i)).c_str(),
                                      RD_KAFKA_PARTITION_UA);
  }
  // Every other retry tier the cluster has too: a tier dropped from the schedule (a restart with
  // fewer tiers) still holds retries that were accepted, and they are taken from it, each at its
  // due time (cut to the longest tier that remains), and retried through the running schedule.
  rd_kafka_topic_partition_list_add(topics.get(), kRetryTopicPattern, RD_KAFKA_PARTITION_UA);
  if (auto e = rd_kafka_subscribe(rk, topics.get()); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return fail("kafka", std::string("cannot subscribe: ") + rd_kafka_err2str(e));
  }
  return c;
}

KafkaConsumer::~KafkaConsumer() { close(); }

// Both protocols: cooperative (the default, cooperative-sticky) hands over only the partitions
// added or taken away, through incremental_assign/unassign, and the worker keeps the rest; eager
// (range/roundrobin set in kafka.consumer_properties) revokes the whole assignment each time.
// Either way the listener sees exactly the partitions that come or go.
void KafkaConsumer::on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                 rd_kafka_topic_partition_list_t* parts, void* opaque) {
  auto* self = static_cast<KafkaConsumer*>(opaque);
  // librdkafka answers NULL when its group handler is already terminating (seen in a static
  // member's close, whose revoke comes after that): the protocol last reported still holds.
  // While closing it is not asked at all: the question is a request to that handler, which in
  // librdkafka 2.0.2 can be waiting for this very callback, and then it never returns (a CI
  // run's ConsumerGroupOnKafka test hung in it inside close(), past the close's own limit).
  if (const char* protocol = self->closed_ ? nullptr : rd_kafka_rebalance_protocol(rk)) {
    const std::string_view p(protocol);
    if (p == "COOPERATIVE" || p == "EAGER") self->cooperative_ = p == "COOPERATIVE";
  }
  const bool cooperative = self->cooperative_;
  auto tps = to_vector(parts);
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (!tps.empty() || !cooperative) {
      spdlog::info("msg=partitions_assigned count={} protocol={}", tps.size(),
                   cooperative ? "cooperative" : "eager");
    }
    if (cooperative) {
      // Called even for an empty list: librdkafka waits for it to finish the rebalance.
      if (KafkaErrorHandle e{rd_kafka_incremental_assign(rk, parts)}) {
        spdlog::error("msg=incremental_assign_failed error={}",
                      log_quote(rd_kafka_error_string(e.get())));
        return;
      }
    } else {
      rd_kafka_assign(rk, parts);
    }
    if (self->listener_.on_assigned && !tps.empty()) self->listener_.on_assigned(tps);
    return;
  }
  if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
    spdlog::warn("msg=rebalance_error error={}", log_quote(rd_kafka_err2str(err)));
  }
  // Lost (the session expired, or fenced): another member may already own them and have
  // committed further; a commit now could only fail or move an offset backwards. A fatal error
  // (this static member was fenced by another with its group.instance.id) counts as lost too.
  const bool lost = rd_kafka_assignment_lost(rk) != 0 ||
                    rd_kafka_fatal_error(rk, nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
  spdlog::info("msg=partitions_revoked count={} protocol={} lost={}", tps.size(),
               cooperative ? "cooperative" : "eager", lost);
  // The worker stores what is finished (its un-finished work stays behind the stored offset and
  // is replayed by the next owner), then we commit it before the partitions move on.
  if (self->listener_.on_revoked && !tps.empty()) self->listener_.on_revoked(tps);
  // Not while closing: the owner committed just before, and a synchronous commit here would hold
  // the close past its limit when the coordinator is unreachable; what the listener stored since
  // goes with the close's own commit.
  if (!lost && !tps.empty() && !self->closed_) rd_kafka_commit(rk, nullptr, 0);
  for (const auto& tp : tps) {
    self->next_offset_.erase(tp);
    self->committed_asked_.erase(tp);
  }
  if (cooperative) {
    if (KafkaErrorHandle e{rd_kafka_incremental_unassign(rk, parts)}) {
      spdlog::error("msg=incremental_unassign_failed error={}",
                    log_quote(rd_kafka_error_string(e.get())));
    }
  } else {
    rd_kafka_assign(rk, nullptr);
  }
}

void KafkaConsumer::on_log(const rd_kafka_t* rk, int level, const char* facility,
                           const char* text) {
  const std::string_view fac(facility ? facility : "");
  const std::string_view line(text ? text : "");
  if (level <= 3) {
    spdlog::error("msg=kafka_log facility={} text={}", fac, log_quote(line));
  } else if (level == 4) {
    spdlog::warn("msg=kafka_log facility={} text={}", fac, log_quote(line));
  } else {
    spdlog::info("msg=kafka_log facility={} text={}", fac, log_quote(line));
  }
  // "<topic> [<partition>]: offset reset (at offset N, broker B) to BEGINNING ...: fetch failed
  // due to requested offset not available on the broker": the position was not in the log. (Not
  // "failed to query logical offset": the reset's own offset lookup failing, an ACL say, which
  // is retried and logged as such, not a position lost.)
  if (fac == "OFFSET" && level <= 4 && line.find("offset reset") != std::string_view::npos &&
      line.find("failed to query logical offset") == std::string_view::npos) {
    auto* self = static_cast<KafkaConsumer*>(rd_kafka_opaque(rk));
    if (self == nullptr) return;
    std::lock_guard lock(self->resets_mu_);
    if (self->resets_.size() < 1000) self->resets_.emplace_back(line);
  }
}

void KafkaConsumer::on_commit(rd_kafka_t* /*rk*/, rd_kafka_resp_err_t err,
                              rd_kafka_topic_partition_list_t* offsets, void* opaque) {
  auto* self = static_cast<KafkaConsumer*>(opaque);
  // Nothing stored since the last commit: nothing to commit, not a failure.
  if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
  rd_kafka_resp_err_t first = err;
  int failed = 0;
  for (int i = 0; offsets != nullptr && i < offsets->cnt; ++i) {
    if (offsets->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    ++failed;
    if (first == RD_KAFKA_RESP_ERR_NO_ERROR) first = offsets->elems[i].err;
  }
  if (first == RD_KAFKA_RESP_ERR_NO_ERROR) return;
  switch (first) {
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
      // A rebalance or a coordinator moving: the group's ordinary weather; the next interval
      // commits what is stored.
      spdlog::info("msg=offset_commit_deferred error={}", log_quote(rd_kafka_err2str(first)));
      return;
    default:
      break;
  }
  spdlog::warn(
      "msg=offset_commit_failed error={} partitions_failed={} note=\"offsets stay where they "
      "were committed last: a restart or rebalance reads again from there; committed again at the "
      "next interval\"",
      log_quote(rd_kafka_err2str(first)), failed);
  if (self != nullptr && self->listener_.on_error)
    self->listener_.on_error(kafka_error(first).code);
}

// On the polling thread, as the listener's other calls are.
void KafkaConsumer::report_offset_resets() {
  std::vector<std::string> lines;
  {
    std::lock_guard lock(resets_mu_);
    if (resets_.empty()) return;
    lines.swap(resets_);
  }
  for (const std::string& line : lines) offsets_vanished(line.substr(0, line.find(" [")), line);
}

void KafkaConsumer::offsets_vanished(const std::string& topic, std::string_view detail) {
  spdlog::error(
      "msg=offsets_vanished topic={} detail={} note=\"messages were removed before they were "
      "consumed (retention, a topic recreated, a log truncated, or an in-memory devbroker "
      "restart)\"",
      topic, log_quote(detail));
  if (listener_.on_offset_reset) listener_.on_offset_reset(topic);
}

void KafkaConsumer::handle_error_message(const rd_kafka_message_t* m) {
  std::string topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
  if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
      m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
    offsets_vanished(topic,
                     "partition " + std::to_string(m->partition) + ": " + rd_kafka_err2str(m->err));
    return;
  }
  if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
    char reason[512] = {};
    auto original = rd_kafka_fatal_error(rk_.get(), reason, sizeof reason);
    std::string why = original == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID
                          ? "another live worker joined the group with the same group.instance.id; "
                            "worker.group_instance_id must be unique among live workers"
                          : "the consumer cannot go on";
    spdlog::critical("msg=consumer_fatal error={} note={}", log_quote(reason), log_quote(why));
    if (listener_.on_error) listener_.on_error(kafka_error(original).code);
    if (!fatal_ && on_fatal_) {
      fatal_ = true;
      on_fatal_(std::string(reason) + " (" + why + ")");
    }
    return;
  }
  spdlog::warn("msg=consumer_error topic={} error={}", topic, log_quote(rd_kafka_err2str(m->err)));
  if (listener_.on_error) listener_.on_error(kafka_error(m->err).code);
}

std::vector<ConsumedMessage> KafkaConsumer::poll(int max_messages, int timeout_ms) {
  report_offset_resets();
  std::vector<ConsumedMessage> out;
  int wait = timeout_ms;
  while (static_cast<int>(out.size()) < max_messages) {
    KafkaMessage m(rd_kafka_consumer_poll(rk_.get(), wait));
    if (!m) break;
    wait = 0;  // only the first message is waited for
    if (m->err) {
      handle_error_message(m.get());
      continue;
    }
    ConsumedMessage c;
    c.topic = rd_kafka_topic_name(m->rkt);
    c.partition = m->partition;
    c.offset = m->offset;
    c.timestamp_ms = rd_kafka_message_timestamp(m.get(), nullptr);
    c.value = std::make_shared<const std::string>(static_cast<const char*>(m->payload), m->len);
    if (m->key) c.key.assign(static_cast<const char*>(m->key), m->key_len);
    rd_kafka_headers_t* hdrs = nullptr;
    if (rd_kafka_message_headers(m.get(), &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      c.headers.reserve(rd_kafka_header_cnt(hdrs));
      const char* name = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      for (size_t i = 0;
           rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
           ++i) {
        c.headers.emplace_back(
            name, value ? std::string(static_cast<const char*>(value), size) : std::string());
      }
    }
    next_offset_[{c.topic, c.partition}] = c.offset + 1;
    out.push_back(std::move(c));
  }
  return out;
}

// The yield flag stays set until a poll sees it, so a wake() that lands just before poll() starts
// waiting is not lost.
// From any thread, and after close(): callbacks of the producer and the sender still wake the
// loop while the process stops. The queue it yields outlives the close (an abandoned close leaks
// it with the handle), so this never yields a freed or null queue.
void KafkaConsumer::wake() {
  if (rd_kafka_queue_t* q = wake_queue_.load(std::memory_order_acquire)) rd_kafka_queue_yield(q);
}

bool KafkaConsumer::pause(const TopicPartition& tp, int64_t seek_offset) {
  auto l = one(tp, RD_KAFKA_OFFSET_INVALID);
  rd_kafka_pause_partitions(rk_.get(), l.get());
  auto s = one(tp, seek_offset);
  // A failure of the call (a timeout) comes back as an error object; one of the partition's own
  // (its state) only in its .err.
  std::string error;
  if (KafkaErrorHandle e{rd_kafka_seek_partitions(rk_.get(), s.get(), 5000)}) {
    error = rd_kafka_error_string(e.get());
  } else if (s->elems[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = rd_kafka_err2str(s->elems[0].err);
  }
  if (!error.empty()) {
    spdlog::warn("msg=seek_failed topic={} partition={} error={} action=\"keeping the message\"",
                 tp.topic, tp.partition, log_quote(error));
    resume(tp);  // not repositioned: fetching goes on after the last message returned
    return false;
  }
  next_offset_[tp] = seek_offset;
  return true;
}

// librdkafka's pause records the application position (last returned + 1) as where fetching
// resumes and discards what it prefetched beyond it, so no seek is needed.
void KafkaConsumer::hold(const std::vector<TopicPartition>& tps) {
  if (tps.empty()) return;
  KafkaPartitionList l = list_of(tps);
  // On failure fetching goes on; what arrives meanwhile waits in the worker's backlog.
  if (auto e = rd_kafka_pause_partitions(rk_.get(), l.get()); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::warn("msg=hold_failed partitions={} error={}", tps.size(),
                 log_quote(rd_kafka_err2str(e)));
    if (listener_.on_error) listener_.on_error(kafka_error(e).code);
  }
}

void KafkaConsumer::resume(const TopicPartition& tp) {
  auto l = one(tp, RD_KAFKA_OFFSET_INVALID);
  rd_kafka_resume_partitions(rk_.get(), l.get());
}

void KafkaConsumer::store_offsets(const std::vector<CommitPosition>& positions) {
  if (positions.empty()) return;
  KafkaPartitionList l(rd_kafka_topic_partition_list_new(static_cast<int>(positions.size())));
  for (const auto& p : positions) {
    rd_kafka_topic_partition_list_add(l.get(), p.tp.topic.c_str(), p.tp.partition)->offset =
        p.offset;
  }
  if (auto e = rd_kafka_offsets_store(rk_.get(), l.get()); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::warn("msg=offsets_store_failed error={}", log_quote(rd_kafka_err2str(e)));
  }
}

// rd_kafka_commit() waits for the answer without a limit; while no coordinator is reachable
// librdkafka keeps the commit for the whole session timeout (45 s for a static member), longer
// than a shutdown's grace. So the commit's answer is awaited here for kCommitLimit at most: an
// unanswered commit is reported as timed out, and what it carried is replayed from the last
// committed offset by the partitions' next owner (read again, never skipped).
Result<void> KafkaConsumer::commit() {
  KafkaQueue replies(rd_kafka_queue_new(rk_.get()));
  auto e = rd_kafka_commit_queue(rk_.get(), nullptr, replies.get(), nullptr, nullptr);
  if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
    e = RD_KAFKA_RESP_ERR__TIMED_OUT;
    const auto deadline = std::chrono::steady_clock::now() + kCommitLimit;
    for (auto now = std::chrono::steady_clock::now(); now < deadline;
         now = std::chrono::steady_clock::now()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
      KafkaEvent ev(rd_kafka_queue_poll(replies.get(), static_cast<int>(left)));
      if (ev && rd_kafka_event_type(ev.get()) == RD_KAFKA_EVENT_OFFSET_COMMIT) {
        e = rd_kafka_event_error(ev.get());
        break;
      }
    }
  }
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
    return Unexpected{kafka_error(e)};
  return {};
}

std::vector<TopicPartition> KafkaConsumer::assignment() {
  rd_kafka_topic_partition_list_t* parts = nullptr;
  if (rd_kafka_assignment(rk_.get(), &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || !parts) return {};
  KafkaPartitionList owned(parts);
  return to_vector(parts);
}

// A partition nothing was read from since its assignment (a quiet retry tier after a restart)
// is where its committed offset is, not at the log's start: that offset is asked for once per
// assignment (a broker round trip, bounded), and the log's start is taken only when none was
// committed (the consumer then reads from there) or the lookup failed.
void KafkaConsumer::look_up_committed(const std::vector<TopicPartition>& assigned) {
  std::vector<TopicPartition> ask;
  for (const auto& tp : assigned) {
    if (!next_offset_.count(tp) && committed_asked_.insert(tp).second) ask.push_back(tp);
  }
  if (ask.empty()) return;
  KafkaPartitionList l = list_of(ask);
  if (auto e = rd_kafka_committed(rk_.get(), l.get(), kCommittedLookupLimitMs);
      e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::info(
        "msg=committed_offsets_unknown partitions={} error={} note=\"consumer lag counts "
        "from the log's start until a message is read\"",
        ask.size(), log_quote(rd_kafka_err2str(e)));
    if (listener_.on_error) listener_.on_error(kafka_error(e).code);
    return;
  }
  for (int i = 0; i < l->cnt; ++i) {
    const auto& p = l->elems[i];
    TopicPartition tp{p.topic, p.partition};
    if (p.err == RD_KAFKA_RESP_ERR_NO_ERROR && p.offset >= 0 && !next_offset_.count(tp))
      next_offset_[tp] = p.offset;
  }
}

std::map<std::string, int64_t> KafkaConsumer::lag_by_topic() {
  std::map<std::string, int64_t> lag;
  const auto assigned = assignment();
  look_up_committed(assigned);
  for (const auto& tp : assigned) {
    int64_t low = 0, high = 0;
    if (rd_kafka_get_watermark_offsets(rk_.get(), tp.topic.c_str(), tp.partition, &low, &high) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        high < 0) {
      continue;
    }
    auto it = next_offset_.find(tp);
    int64_t position = it != next_offset_.end() ? it->second : low;
    lag[tp.topic] += std::max<int64_t>(0, high - position);
  }
  return lag;
}

// librdkafka's rd_kafka_consumer_close() waits for its group handler without a limit, and in
// librdkafka 2.0.2 that can be for ever: with every broker down, the revoke's commit and the
// handler's wait for a coordinator held it more than 3 minutes (tests/kafka/consumer_group_test),
// and a cooperative assignment that arrives while the consumer closes leaves the handler waiting
// for an assign call it then turns into an unassign (confluentinc/librdkafka#4527, fixed in
// 2.4.0; it held a CI run's consumer-group test past ctest's 15-minute timeout). So the close runs
// in the background, its rebalance events are served here, and it gets kCloseLimit. One that has
// not finished by then is given up with its handle: rd_kafka_destroy() would wait for the same
// handler, and the process ends without it (abandoned(); worker_app.cpp). Nothing waits on it: the
// owner commits before it closes (PartitionIntake::commit_and_close), and a static member's
// partitions wait for it to come back either way.
void KafkaConsumer::close() {
  if (closed_ || !rk_) return;
  closed_ = true;
  rd_kafka_t* rk = rk_.get();
  KafkaQueue events(rd_kafka_queue_new(rk));
  if (KafkaErrorHandle e{rd_kafka_consumer_close_queue(rk, events.get())}) {
    // A fatal error (this static member was fenced): rd_kafka_destroy() closes it without the
    // group.
    spdlog::warn("msg=consumer_close_refused error={}", log_quote(rd_kafka_error_string(e.get())));
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + kCloseLimit;
  while (!rd_kafka_consumer_closed(rk)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      spdlog::error(
          "msg=consumer_close_abandoned limit_s={} note=\"librdkafka did not finish leaving the "
          "group (brokers unreachable, or a rebalance under way); the process ends without "
          "waiting for it\"",
          kCloseLimit.count());
      abandoned_ = true;
      (void)events.release();
      (void)queue_.release();
      (void)rk_.release();
      return;
    }
    // Messages still queued are dropped unread (their offsets were never stored); rebalance
    // events are served as poll() serves them.
    KafkaEvent ev(rd_kafka_queue_poll(events.get(), 100));
    if (ev && rd_kafka_event_type(ev.get()) == RD_KAFKA_EVENT_REBALANCE) {
      on_rebalance(rk, rd_kafka_event_error(ev.get()),
                   rd_kafka_event_topic_partition_list(ev.get()), this);
    }
  }
}

}  // namespace hookrelay
