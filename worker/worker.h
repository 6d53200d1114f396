// Worker: the delivery coordinator. It owns every job (through the stages below), the event
// loop and shutdown. One thread runs run(); HTTP results, Kafka acks and the results of Postgres
// round trips arrive from other threads through one locked event queue (post()).
//
// Per consumed message: PartitionIntake takes it -> expand into deliveries -> StoreBatcher
// claims the batch (one round trip) -> skip what is already finished -> Dispatcher calls out
// under per-host concurrency, rate, circuit and order limits -> decide() picks the next state ->
// StoreBatcher records the batch of results -> Redelivery publishes retries and dead letters,
// waiting for the broker's ack -> the message is finished when all its deliveries are, and
// PartitionIntake stores offsets only up to each partition's contiguous finished watermark.
//
// Postgres down: every partition is held (PartitionIntake), work already claimed goes on,
// results wait, and consumption resumes when a round trip succeeds, or when nothing is left to
// try again (StoreBatcher). A dead
// letter the broker refuses for good, or any produce refused by a broken (fatal) producer, stops
// the worker as a stop request does (nothing new starts, calls out and their records are waited
// for), except that nothing waits for Kafka: run() returns and fatal_error() says why.
//
// Thread-safety: run() on one thread; request_stop(), ready(), in_flight(), fatal_error() from
// any thread.
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
#include <utility>
#include <vector>

#include "shared/config/config.h"
#include "shared/kafka/message_producer.h"
#include "worker/backoff.h"
#include "worker/delivery_store.h"
#include "worker/dispatcher.h"
#include "worker/host_state_publisher.h"
#include "worker/http_sender.h"
#include "worker/job.h"
#include "worker/key_order.h"
#include "worker/message_consumer.h"
#include "worker/partition_intake.h"
#include "worker/redelivery.h"
#include "worker/route_sync.h"
#include "worker/store_batcher.h"
#include "worker/worker_event.h"
#include "worker/worker_metrics.h"

namespace hookrelay {

struct WorkerDeps {
  const Config* config =
      nullptr;  // the config at start; outlives the Worker (reconfigure() replaces it)
  MessageConsumer* consumer = nullptr;
  MessageProducer* producer = nullptr;
  HttpSender* sender = nullptr;
  DeliveryStore* store = nullptr;          // claims and inbound events
  DeliveryStore* record_store = nullptr;   // attempt records; nullptr = `store`
  DeliveryStore* inbound_store = nullptr;  // inbound events; nullptr = `store`
  bool threaded_db = false;                // Postgres round trips on their own threads
  WorkerMetrics* metrics = nullptr;
  std::function<int64_t()> now_ms;  // Unix milliseconds
  // Milliseconds of a clock that never steps (lease windows); empty: std::chrono::steady_clock.
  std::function<int64_t()> steady_ms;
  std::function<double()> rand01;  // uniform in [0, 1)
  std::string worker_id;           // unique among live workers (it owns their leases)
  RouteSync* routes = nullptr;     // suspended routes (route_lifecycle.h); nullptr = none ever is
  KeyOrder* key_order = nullptr;   // ordered routes' per-key order; nullptr = first attempts only
  uint32_t run_id = 0;             // names this run of the process in lease tokens; 0 = random
  // Optional: where this worker's circuits and adaptive limits are published for operators.
  HostStatePublisher* host_states = nullptr;
};

class Worker {
 public:
  explicit Worker(WorkerDeps deps);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs until request_stop() (or a fatal error), then drains for at most
  // worker.shutdown_grace_ms, stores and commits offsets, and leaves the group. Deliveries not
  // finished by then are replayed later. After a fatal error the drain still waits for the calls
  // out and the records of their results, but not for retries or dead letters to be published:
  // those deliveries stay unfinished, their offsets uncommitted.
  void run();
  void request_stop();
  // One iteration of the loop run() repeats; for tests that drive the worker step by step.
  void step();
  // Installs a reloaded config at the next step of the loop (any thread). Messages taken from
  // then on are expanded under it (routes: urls, secrets, headers, filters, timeouts); limits,
  // batch size, lease and the retry policy apply to what starts from then on. Deliveries already
  // expanded keep the route they were expanded under for their current attempt; a retry is
  // expanded again under the config in force when it is consumed. Settings that need a restart
  // (Kafka, Postgres, group, listen address, retry tier count) are not read again.
  void reconfigure(std::shared_ptr<const Config> config);
  bool ready() const { return ready_.load(); }
  int in_flight() const { return in_flight_.load(); }
  // Why the worker stopped by itself; empty while it runs or after a requested stop.
  std::string fatal_error() const;

 private:
  void take_message(ConsumedMessage& m, const std::shared_ptr<MessageState>& msg);
  // The inbound audit row of a message's first copy, whether or not a route takes it.
  void audit_first_copy(const ConsumedMessage& m, const std::string& source,
                        const std::string& event_id, int64_t received_at_ms);
  void drain_events(int64_t now, bool wait);
  void on_claimed(const WorkerEvent& e, int64_t now);
  void on_recorded(const WorkerEvent& e, int64_t now);
  void observe_stages(const StageTimes& t);
  void on_http_result(std::unique_ptr<Job> job, const HttpResult& r, int64_t now);
  void on_produced(const WorkerEvent& e, int64_t now);
  // decide() for a turn without an HTTP attempt, then the retry tier or the DLQ.
  void redeliver(std::unique_ptr<Job> job, AttemptResult::Kind kind, int64_t now);
  void redeliver(std::unique_ptr<Job> job, const AttemptResult& result, int64_t now);
  void defer_for_circuit(std::unique_ptr<Job> job);
  void requeue_unsent(std::unique_ptr<Job> job);
  void send_back_unsent(std::unique_ptr<Job> job, std::function<void(std::unique_ptr<Job>)> then);
  void release_bounced_leases();
  // The job's turn is over; `done` false: the delivery is not (it waits behind its key's head).
  void finish(std::unique_ptr<Job> job, bool done = true);
  // Route lifecycle: a delivery of a suspended route is parked (recorded 'parked', then
  // published to hookrelay.parked) instead of attempted.
  bool route_suspended(const Job& job) const;
  void note_route_attempt(Job& job, const HttpResult& r, int64_t now);
  void park(std::unique_ptr<Job> job, int64_t now);
  // What a park of `job` records as its suspension (Job::park_suspended_at_ms).
  int64_t park_suspension(const Job& job) const;
  void park_queued(int64_t now);
  // Per-key order (key_order.h): a delivery whose key is held waits in Postgres, then finishes.
  // Should it not wait (it is its key's head itself, or Postgres refused it), `otherwise` gets
  // it; by default the dispatcher attempts it.
  void wait_for_key(std::unique_ptr<Job> job,
                    std::function<void(std::unique_ptr<Job>)> otherwise = nullptr);
  // A failed or bounced delivery that has just taken its ordered key's head (KeyOrder::take_head):
  // the deliveries of held keys queued here (taken out with queued_behind()) wait behind it once
  // the hold is durable, and `then` gets the job.
  std::vector<std::unique_ptr<Job>> queued_behind();
  // `lost`: the key turned out held by another worker's head, and the job was set to wait
  // behind it (KeyOrder::hold); by default it is finished.
  void hold_key(std::unique_ptr<Job> job, std::vector<std::unique_ptr<Job>> behind,
                std::function<void(std::unique_ptr<Job>)> then,
                std::function<void(std::unique_ptr<Job>)> lost = nullptr);
  // Leased by another worker (attempting it, or stopped with it out): back after the first tier.
  void bounce_leased(std::unique_ptr<Job> job, int64_t now);
  // Such a bounce whose retry Kafka refused for good: kept unfinished, and claimed again once its
  // holder's lease has ended (reclaim_due()).
  void wait_for_lease(std::unique_ptr<Job> job);
  void reclaim_due();
  void update_gauges(int64_t now);
  void on_assigned(const std::vector<TopicPartition>& tps);
  void on_revoked(const std::vector<TopicPartition>& tps);
  void drain_for_shutdown();
  void post(WorkerEvent e);
  bool events_waiting();
  bool has_room() const { return in_flight_.load() < config_->worker.max_in_flight; }
  void apply_pending_config();

  WorkerDeps d_;
  // The config in force (the one at start is not owned: it outlives the Worker). Coordinator
  // thread only; a reload arrives through pending_config_.
  std::shared_ptr<const Config> config_;
  RetryPolicy policy_;
  std::unordered_set<std::string> local_keys_;  // claimed by this worker, not finished
  std::vector<LeaseRef> abandoned_leases_;      // claimed during shutdown; given back
  std::vector<LeaseRef> bounced_leases_;        // bounced under their own lease, retry produced
  std::vector<CopyFence> copy_fences_;          // retries after an attempt, produced
  // Bounces waiting for their holder's lease to end (wait_for_lease), with when they are claimed
  // again (the steady clock, ms).
  std::vector<std::pair<int64_t, std::unique_ptr<Job>>> lease_waits_;
  std::set<std::string> lag_topics_;  // topics whose consumer lag was ever set
  // The key order's look at Postgres that partitions assigned with ordered routes wait for
  // (KeyOrder::refresh_soon); 0: none waits.
  uint64_t order_look_ = 0;
  int64_t order_look_deadline_ms_ = 0;  // when they are let go even without it
  uint64_t routes_generation_ = 0;      // RouteSync::generation() last parked for
  int64_t next_gauges_at_ = 0;
  std::atomic<bool> stop_{false};
  bool draining_ = false;  // drain_for_shutdown() runs (the coordinator thread only)
  std::atomic<bool> ready_{false};
  std::atomic<int> in_flight_{0};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<WorkerEvent> events_;
  std::string fatal_;                             // under mu_
  std::shared_ptr<const Config> pending_config_;  // under mu_: installed by the next step

  PartitionIntake intake_;
  Dispatcher dispatcher_;
  Redelivery redelivery_;
  // Last member: destroyed first, so no store lane task outlives what it touches.
  StoreBatcher store_;
};

}  // namespace hookrelay
