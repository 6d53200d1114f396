#include "shared/kafka/kafka_producer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "shared/log.h"
#include "shared/thread_guard.h"

namespace hookrelay {

Error delivery_error(rd_kafka_resp_err_t err, rd_kafka_msg_status_t status) {
  if (status == RD_KAFKA_MSG_STATUS_NOT_PERSISTED) return kafka_error(err);
  Error e = kafka_error(err);
  if (err > 0 && !e.retryable) {
    // A broker refused it for good (message too large, not authorized): sending it again cannot
    // help, whatever an earlier send of it did (librdkafka keeps "possibly persisted" once a
    // request of it went unanswered, through its own retries). The note keeps that known: ingest
    // finds it and answers that the request may have been accepted, not that it was not.
    e.message += " ";
    e.message += kMayHaveStoredNote;
    return e;
  }
  return {std::string(kDeliveryOutcomeUnknownCode),
          std::string("no acknowledgement after the message was sent: ") + rd_kafka_err2str(err),
          true};
}

Result<std::unique_ptr<KafkaProducer>> KafkaProducer::create(const KafkaConfig& config,
                                                             std::string client_id,
                                                             KafkaProducerStats stats) {
  std::map<std::string, std::string> props = {
      {"bootstrap.servers", config.bootstrap_servers},
      {"client.id", std::move(client_id)},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"linger.ms", std::to_string(stats.default_linger_ms)},
      {"batch.num.messages", "10000"},
      {"queue.buffering.max.messages", "200000"},
      {"queue.buffering.max.kbytes", "262144"},
      {"message.timeout.ms", std::to_string(config.produce_timeout_ms)},
      {"compression.type", "none"},
      {"socket.nagle.disable", "true"},
      {"message.max.bytes", std::to_string(kDefaultKafkaMessageMaxBytes)},
  };
  // Ingest's partition runs hold one batch each, which leaves as soon as it is full: a busy
  // producer's messages then wait for the broker rather than for the linger.
  if (stats.sticky_partitions) props["batch.num.messages"] = "32";
  for (const auto& [k, v] : config.producer_map()) props[k] = v;
  auto conf = make_kafka_conf(
      props, [&config](const std::string& key) { return config.field_of(key, true); });
  if (!conf) return Unexpected{conf.error()};

  std::unique_ptr<KafkaProducer> p(new KafkaProducer());
  p->stats_ = std::move(stats);
  bool spread = p->stats_.sticky_partitions && !props.contains("partitioner");
  if (spread) {
    // librdkafka checked these values (numbers, 0 .. 900000) when it built the conf above.
    // queue.buffering.max.ms is linger.ms's other name, and wins when both are set (it is applied
    // second). sticky.partitioning.linger.ms is librdkafka's name for the same run of keyless
    // messages; zero there partitions by key.
    auto run = props.find("sticky.partitioning.linger.ms");
    if (run == props.end()) run = props.find("queue.buffering.max.ms");
    if (run == props.end()) run = props.find("linger.ms");
    p->spread_run_us_ = static_cast<int64_t>(std::stod(run->second) * 1000);
    p->spread_max_run_ = std::stoi(props.at("batch.num.messages"));
    spread = !(run->first == "sticky.partitioning.linger.ms" && p->spread_run_us_ == 0);
  }
  if (spread) {
    rd_kafka_topic_conf_t* topic_conf = rd_kafka_conf_get_default_topic_conf(conf->get());
    if (!topic_conf) {
      topic_conf = rd_kafka_topic_conf_new();
      rd_kafka_conf_set_default_topic_conf(conf->get(), topic_conf);  // takes ownership
    }
    rd_kafka_topic_conf_set_partitioner_cb(topic_conf, &KafkaProducer::sticky_partition);
    rd_kafka_topic_conf_set_opaque(topic_conf, p.get());
    p->spread_seed_ = std::random_device{}();
  }
  rd_kafka_conf_set_dr_msg_cb(conf->get(), &KafkaProducer::on_delivery);
  rd_kafka_conf_set_error_cb(conf->get(), &KafkaProducer::on_error);
  rd_kafka_conf_set_opaque(conf->get(), p.get());
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), err, sizeof err);
  if (!rk) return fail("kafka", std::string("cannot create Kafka producer: ") + err);
  (void)conf->release();  // rd_kafka_new took ownership
  p->rk_.reset(rk);
  if (p->stats_.external_poll) {
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
      return fail("kafka", "cannot create the report pipe");
    p->event_read_fd_.reset(fds[0]);
    p->event_write_fd_.reset(fds[1]);
    KafkaQueue main_queue(rd_kafka_queue_get_main(rk));
    rd_kafka_queue_io_event_enable(main_queue.get(), p->event_write_fd_.get(), "1", 1);
  } else {
    p->poller_ = start_guarded_thread("kafka_poller", [raw = p.get()] {
      while (raw->running_.load() || raw->outstanding_.load() > 0) {
        rd_kafka_poll(raw->rk_.get(), 50);
        if (!raw->running_.load() && raw->fatal_.load()) break;
      }
    });
  }
  p->prober_ = start_guarded_thread("kafka_prober", [raw = p.get()] { raw->probe_loop(); });
  return p;
}

KafkaProducer::~KafkaProducer() { close(); }

void KafkaProducer::close() {
  if (closed_) return;
  closed_ = true;
  flush(0);
  running_ = false;
  if (prober_.joinable()) prober_.join();
  // Outstanding messages get their reports (failed with purge) before the handle goes away; one
  // purged in flight may have been stored, and its report says so (delivery_error).
  rd_kafka_purge(rk_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  if (poller_.joinable()) poller_.join();
  if (event_read_fd_.valid()) {
    flush(2000);
    KafkaQueue main_queue(rd_kafka_queue_get_main(rk_.get()));
    rd_kafka_queue_io_event_enable(main_queue.get(), -1, nullptr, 0);
  }
}

void KafkaProducer::purge_outstanding() {
  if (closed_) return;
  rd_kafka_purge(rk_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
}

void KafkaProducer::serve_reports() {
  char buf[256];
  while (read(event_read_fd_.get(), buf, sizeof buf) > 0) {
  }
  rd_kafka_poll(rk_.get(), 0);
}

void KafkaProducer::probe_loop() {
  // Unreachable only after two failed probes in a row: one slow metadata answer under load is
  // not an outage. Any successful delivery report marks the cluster reachable again at once.
  int failures = 0;
  while (running_.load()) {
    const rd_kafka_metadata_t* raw_md = nullptr;
    auto err = rd_kafka_metadata(rk_.get(), 0, nullptr, &raw_md, 1000);
    KafkaMetadata md(raw_md);
    // A fatal producer stays unready: the brokers answering does not make it produce again.
    bool ok = err == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->broker_cnt > 0 && !fatal_.load();
    failures = ok ? 0 : failures + 1;
    if (!ok && failures < 2) ok = reachable_.load();
    if (ok != reachable_.exchange(ok)) {
      spdlog::log(ok ? spdlog::level::info : spdlog::level::warn,
                  "msg=kafka_reachability reachable={}", ok);
    }
    for (int i = 0; i < 10 && running_.load(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void KafkaProducer::produce(const OutgoingMessage& m, DoneCallback on_done) {
  if (fatal_.load()) {
    if (stats_.on_error) stats_.on_error("producer_fatal");
    on_done(fail("producer_fatal", "Kafka producer is in a fatal state", false));
    return;
  }
  KafkaHeaders headers;
  if (m.headers && !m.headers->empty()) {
    headers.reset(rd_kafka_headers_new(m.headers->size()));
    for (const auto& h : *m.headers) {
      rd_kafka_header_add(headers.get(), h.name.data(), static_cast<ssize_t>(h.name.size()),
                          h.value.data(), static_cast<ssize_t>(h.value.size()));
    }
  }
  auto cb = std::make_unique<Pending>(Pending{std::move(on_done)});
  outstanding_.fetch_add(1);
  std::string topic(m.topic);
  rd_kafka_vu_t vus[6];
  vus[0].vtype = RD_KAFKA_VTYPE_TOPIC;
  vus[0].u.cstr = topic.c_str();
  vus[1].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  vus[1].u.i = RD_KAFKA_MSG_F_COPY;
  vus[2].vtype = RD_KAFKA_VTYPE_VALUE;
  vus[2].u.mem.ptr = const_cast<char*>(m.value.data());
  vus[2].u.mem.size = m.value.size();
  vus[3].vtype = RD_KAFKA_VTYPE_KEY;
  vus[3].u.mem.ptr = m.key.empty() ? nullptr : const_cast<char*>(m.key.data());
  vus[3].u.mem.size = m.key.size();
  vus[4].vtype = RD_KAFKA_VTYPE_OPAQUE;
  vus[4].u.ptr = cb.get();
  std::size_t n = 5;
  if (headers) {
    vus[5].vtype = RD_KAFKA_VTYPE_HEADERS;
    vus[5].u.headers = headers.get();
    n = 6;
  }
  KafkaErrorHandle error(rd_kafka_produceva(rk_.get(), vus, n));
  auto err = error ? rd_kafka_error_code(error.get()) : RD_KAFKA_RESP_ERR_NO_ERROR;
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    // Enqueued: librdkafka owns the headers now, and the callback until its delivery report.
    (void)headers.release();
    (void)cb.release();
    return;
  }
  // Not enqueued: librdkafka took neither; both are freed here.
  outstanding_.fetch_sub(1);
  if (cb->spread) cb->spread->acked(cb->partition);
  auto e = kafka_error(err);
  if (stats_.on_error) stats_.on_error(e.code);
  cb->done(Unexpected{std::move(e)});
}

PartitionSpread& KafkaProducer::spread_for(const rd_kafka_topic_t* rkt) {
  const std::string_view topic = rd_kafka_topic_name(rkt);
  std::lock_guard lock(spreads_mu_);
  for (auto& [name, spread] : spreads_)
    if (name == topic) return *spread;
  spreads_.emplace_back(std::string(topic),
                        std::make_unique<PartitionSpread>(spread_seed_ + spreads_.size(),
                                                          spread_run_us_, spread_max_run_));
  return *spreads_.back().second;
}

std::vector<PartitionOutstanding> KafkaProducer::outstanding_by_partition() const {
  std::vector<PartitionOutstanding> out;
  std::lock_guard lock(spreads_mu_);
  for (const auto& [topic, spread] : spreads_) {
    const std::vector<int> counts = spread->unacked_all();
    for (std::size_t p = 0; p < counts.size(); ++p)
      out.push_back({topic, static_cast<int32_t>(p), counts[p]});
  }
  return out;
}

// Called by librdkafka from any thread, maybe more than once for a message (when its partition is
// chosen again): the partition counted for it before is released first.
int32_t KafkaProducer::sticky_partition(const rd_kafka_topic_t* rkt, const void*, size_t,
                                        int32_t partitions, void* opaque, void* message_opaque) {
  auto* self = static_cast<KafkaProducer*>(opaque);
  auto* pending = static_cast<Pending*>(message_opaque);
  if (pending->spread) pending->spread->acked(pending->partition);
  pending->spread = &self->spread_for(rkt);
  const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  pending->partition = pending->spread->choose(
      partitions, [rkt](int32_t p) { return rd_kafka_topic_partition_available(rkt, p) == 1; },
      now_us);
  return pending->partition;
}

void KafkaProducer::on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  auto* self = static_cast<KafkaProducer*>(opaque);
  std::unique_ptr<Pending> cb(static_cast<Pending*>(msg->_private));
  self->outstanding_.fetch_sub(1);
  if (cb->spread) cb->spread->acked(cb->partition);
  if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    auto e = delivery_error(msg->err, rd_kafka_message_status(msg));
    if (self->stats_.on_error) self->stats_.on_error(e.code);
    cb->done(Unexpected{std::move(e)});
    return;
  }
  self->reachable_.store(true, std::memory_order_relaxed);
  cb->done(ProducedAt{msg->partition, msg->offset});
}

void KafkaProducer::on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
  auto* self = static_cast<KafkaProducer*>(opaque);
  auto code = static_cast<rd_kafka_resp_err_t>(err);
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_fatal_error(rk, buf, sizeof buf);
    const bool first = !self->fatal_.exchange(true);
    self->reachable_ = false;
    spdlog::critical("msg=kafka_producer_fatal error={}", log_quote(buf));
    if (first && self->stats_.on_fatal) self->stats_.on_fatal(buf);
  } else if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    self->reachable_ = false;
    spdlog::warn("msg=kafka_all_brokers_down reason={}", log_quote(reason));
  } else {
    spdlog::debug("msg=kafka_client_error error={} reason={}", rd_kafka_err2name(code),
                  log_quote(reason));
  }
  if (self->stats_.on_error) self->stats_.on_error(kafka_error(code).code);
}

int KafkaProducer::flush(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  // The poll thread serves the reports, or, with external polling, this call does.
  while (outstanding_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    if (event_read_fd_.valid()) {
      rd_kafka_poll(rk_.get(), 5);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return outstanding_.load();
}

}  // namespace hookrelay
