// Worker: the delivery coordinator. One thread runs run(); everything it owns (jobs,
// watermarks, pauses, limits) is touched only there. HTTP results, Kafka acks and the results
// of Postgres round trips (run on DbLanes: claims, records and the inbound audit each on a
// thread and connection of their own) arrive through one locked event queue.
//
// Per consumed message: expand into deliveries -> claim the batch in Postgres (one round trip)
// -> skip what is already finished -> dispatch under per-host concurrency, rate and circuit
// limits -> record the batch of results (one round trip) -> re-publish retries and dead letters,
// waiting for the broker's ack -> the message is finished when all its deliveries are. Offsets
// are stored only up to each partition's contiguous finished watermark.
//
// Postgres down: every partition is held (fetching stops where the worker stopped taking
// messages; nothing is re-read), work already claimed goes on, results wait, and consumption
// resumes when a round trip succeeds. At worker.max_in_flight, fetched messages wait in a
// per-partition backlog (up to half of max_in_flight), then in librdkafka's prefetch queue;
// poll() keeps serving the group. A retry-tier message that is not due pauses its partition,
// seeking back to that message, until it is due.
//
// Thread-safety: run() on one thread; request_stop(), ready(), in_flight() from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "shared/config.h"
#include "shared/delivery_store.h"
#include "shared/message_producer.h"
#include "worker/backoff.h"
#include "worker/circuit_breaker.h"
#include "worker/db_lane.h"
#include "worker/http_sender.h"
#include "worker/message_consumer.h"
#include "worker/outbound_request.h"
#include "worker/rate_limiter.h"
#include "worker/worker_metrics.h"

namespace hookrelay {

struct WorkerDeps {
  const Config* config = nullptr;
  MessageConsumer* consumer = nullptr;
  MessageProducer* producer = nullptr;
  HttpSender* sender = nullptr;
  DeliveryStore* store = nullptr;         // claims and inbound events
  DeliveryStore* record_store = nullptr;   // attempt records; nullptr = `store`
  DeliveryStore* inbound_store = nullptr;  // inbound events; nullptr = `store`
  bool threaded_db = false;               // Postgres round trips on their own threads
  WorkerMetrics* metrics = nullptr;
  std::function<int64_t()> now_ms;  // Unix milliseconds
  std::function<double()> rand01;   // uniform in [0, 1)
  std::string worker_id;      // unique among live workers (it owns their leases)
  uint32_t run_id = 0;        // names this run of the process in lease tokens; 0 = random
};

class Worker {
 public:
  explicit Worker(WorkerDeps deps);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs until request_stop(), then drains for at most worker.shutdown_grace_ms, stores and
  // commits offsets, and leaves the group. Deliveries not finished by then are replayed later.
  void run();
  void request_stop();
  // One iteration of the loop run() repeats; for tests that drive the worker step by step.
  void step();
  bool ready() const { return ready_.load(); }
  int in_flight() const { return in_flight_.load(); }

  struct Job;
  struct MessageState;

 private:
  // A partition stays paused while any reason holds.
  struct Pause {
    int64_t seek_offset = -1;   // retry tier: the message not due, fetched again when it is; -1 = held
    int64_t resume_at_ms = 0;   // retry tier head not due until then; 0 = not waiting for a tier
    bool for_db = false;        // Postgres unavailable
  };
  struct Event {
    enum class Kind { kHttp, kProduced, kClaimed, kRecorded, kInbound };
    Kind kind = Kind::kProduced;
    Job* job = nullptr;
    HttpResult http;
    Result<ProducedAt> produced = ProducedAt{};
    Result<std::vector<ClaimStatus>> claimed = std::vector<ClaimStatus>{};
    Result<void> recorded;
    double seconds = 0;  // the round trip's duration
    std::shared_ptr<std::vector<InboundEventRecord>> inbound_retry;  // not stored; try again
  };

  void poll_messages(int64_t now);
  void take_message(ConsumedMessage& m, int64_t now);
  void drain_backlog(int64_t now);
  bool may_take(const TopicPartition& tp) const;
  void accept_message(ConsumedMessage& m, int64_t now);
  void flush_claims(int64_t now);
  void on_claimed(Event& e, int64_t now);
  void flush_inbound();
  void on_recorded(Event& e, int64_t now);
  void bounce(std::unique_ptr<Job> job, int64_t now);
  void put_back(std::vector<std::unique_ptr<Job>> batch, std::vector<std::unique_ptr<Job>>& queue);
  void enqueue_claimed(std::unique_ptr<Job> job);
  void release_order_gate(const Job& job);
  void dispatch(int64_t now);
  void drain_events(int64_t now, bool wait);
  void on_http_result(std::unique_ptr<Job> job, HttpResult r, int64_t now);
  void flush_records(int64_t now);
  void produce_redelivery(std::unique_ptr<Job> job, int64_t now);
  void flush_reproduce(int64_t now);
  void finish(std::unique_ptr<Job> job);
  void store_offsets();
  void update_gauges(int64_t now);
  bool db_usable(int64_t now) const { return !db_down_ || now >= db_retry_at_; }
  void db_failed(const Error& e, std::string_view op, int64_t now);
  void db_ok();
  void hold_all_for_db();
  void release_db_holds();
  void resume_if_free(std::map<TopicPartition, Pause>::iterator it);
  void on_assigned(const std::vector<TopicPartition>& tps);
  void on_revoked(const std::vector<TopicPartition>& tps);
  void drain_for_shutdown();
  void post(Event e);

  WorkerDeps d_;
  const Config& config_;
  CircuitBreaker breaker_;
  std::unique_ptr<RateLimiter> rate_;
  HostConcurrency concurrency_;
  PartitionWatermarks watermarks_;
  std::map<TopicPartition, uint64_t> generation_;
  uint64_t next_generation_ = 1;
  std::map<TopicPartition, Pause> paused_;
  // Polled but not yet taken (no room, held, or behind earlier ones), per partition in offset order.
  std::map<TopicPartition, std::deque<ConsumedMessage>> backlog_;
  std::size_t backlog_size_ = 0;

  std::vector<std::unique_ptr<Job>> to_claim_;
  std::vector<std::unique_ptr<Job>> claiming_;   // with the claim lane
  std::vector<std::unique_ptr<Job>> recording_;  // with the record lane
  bool claim_busy_ = false;
  bool record_busy_ = false;
  std::vector<InboundEventRecord> inbound_;
  std::map<std::string, std::deque<std::unique_ptr<Job>>> queued_;  // claimed, by host, waiting for a slot
  std::vector<std::unique_ptr<Job>> to_record_;
  std::deque<std::unique_ptr<Job>> to_reproduce_;  // produce failed; try again later
  std::unordered_set<std::string> local_keys_;     // claimed by this worker, not finished
  // Handed to the sender or producer, whose callbacks carry the raw pointer back in an Event;
  // owned here until then, so jobs still out when the worker is destroyed are freed with it.
  std::unordered_map<Job*, std::unique_ptr<Job>> sending_;
  std::vector<std::string> abandoned_keys_;        // claimed during shutdown; leases given back
  // Ordered routes: one first attempt at a time per (route, source partition); the rest wait
  // here in offset order.
  std::map<std::string, std::deque<std::unique_ptr<Job>>> ordered_waiting_;
  std::set<std::string> ordered_busy_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;

  uint32_t run_id_ = 0;     // high half of every lease token this process claims with
  uint32_t claim_seq_ = 0;  // low half: one per claim
  bool db_down_ = false;
  int64_t next_full_poll_at_ = 0;  // backlog full: when poll() next serves the group
  int64_t db_retry_at_ = 0;
  int64_t next_gauges_at_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> ready_{false};
  std::atomic<int> in_flight_{0};
  // Last members: destroyed first, so no lane task outlives what it touches.
  std::unique_ptr<DbLane> claim_lane_;
  std::unique_ptr<DbLane> record_lane_;
  std::unique_ptr<DbLane> inbound_lane_;
  bool inbound_busy_ = false;
};

}  // namespace hookrelay
