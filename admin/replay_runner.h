// ReplayRunner: the admin process's background thread that carries out replays stored by
// POST /v1/replays (ReplayJobs), one at a time, oldest first, through the one shared Replayer
// (shared/replay/dlq_replay.h) the CLI uses too. It leases the replay it works on, so after this
// process dies another admin process, or this one restarted, takes the replay over once the lease
// expires and resumes from its items' progress. While it works, a heartbeat thread renews the
// lease every third of it, however long one item takes (a paced replay's wait, a slow broker
// acknowledgement), so a live runner keeps its replay. A runner whose lease was taken over
// anyway (a stall longer than the lease) marks and records nothing more: the database refuses
// its marks and item updates (DeliveryQueries::mark_replayed, ReplayJobs::finish_item), so one
// key is never put back in the retry flow by two runs of one replay.
//
// A run that fails (Kafka unreachable, the database refusing an item's outcome, ...) leaves its
// replay to be tried again later: this runner gives its lease back and does not claim that
// replay again before a back-off (idle_poll_ms doubled per failure in a row, at most
// max_backoff_ms), so the replays after it go on meanwhile, and another admin process may take
// it at once. So does a key whose replay failed for a reason that may pass (Kafka or the database
// unreachable mid-run, a produce not acknowledged: ReplayOutcome::kRetryLater): its item is left
// pending, or marked with its produce to redo, never recorded failed; only a refusal of the key
// itself is. Each such failure is counted by reason (hookrelay_admin_replay_run_failures_total).
// An item outcome the database refuses for its detail (SQLSTATE class 22) is recorded with a
// fixed ASCII detail instead.
//
// Thread-safety: start/stop from one controlling thread; everything else runs on its own thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "shared/config/config.h"
#include "shared/kafka/message_producer.h"

namespace hookrelay::admin {

class ReplayJobs;

struct ReplayRunnerOptions {
  std::string runner_id;         // unique per process
  int lease_seconds = 10;        // how long a dead runner holds a replay
  int idle_poll_ms = 1000;       // how often to look for work when there is none
  int kafka_timeout_ms = 30000;  // DLQ read and single-message fetch
  int max_backoff_ms = 60000;    // longest wait before a failing replay is claimed again
};

class ReplayRunner {
 public:
  // `config`: the start-up configuration (Kafka: the DLQ reads, and the acknowledgement wait of
  // each produce, kafka.produce_timeout_ms + 5 s so the producer reports first); `db_url`: every
  // Postgres connection of the runner (admin_db_url); `current`: the configuration as reloaded,
  // read for which routes are ordered.
  ReplayRunner(const Config& config, std::string db_url,
               std::function<std::shared_ptr<const Config>()> current, MessageProducer& producer,
               prometheus::Registry& registry, ReplayRunnerOptions options);
  ~ReplayRunner();
  void start();
  void stop();  // idempotent; an item being produced is finished first
  // Wakes the thread now (a replay was just created).
  void notify();

 private:
  // How a run_one ended: no replay to claim, the replay finished or left to another runner (or
  // the process stopping), or a failure that leaves it to be tried again after a back-off.
  enum class RunEnd { kIdle, kEnded, kFailed };
  void loop();
  // Claims the oldest running replay not in `skip` (its id in `claimed`) and works it.
  RunEnd run_one(ReplayJobs& jobs, const std::vector<int64_t>& skip, int64_t& claimed);
  bool wait_ms(int64_t ms);  // false when stopping
  // A replay's pacing: the whole `ms` unless stopping or `lost` (notify() does not cut it short).
  void pause_ms(int64_t ms, const std::atomic<bool>& lost);
  void keep_lease(int64_t id, std::atomic<bool>& lost, std::atomic<bool>& done);
  // Sets `flag` and wakes a pause_ms.
  void raise(std::atomic<bool>& flag);
  // Counts a run that ended without finishing its replay (or a claim that failed), by `reason`:
  // one of kRunFailureReasons.
  void count_failure(const char* reason);

  const Config& config_;
  const std::string db_url_;
  std::function<std::shared_ptr<const Config>()> current_;
  MessageProducer& producer_;
  ReplayRunnerOptions options_;
  prometheus::Family<prometheus::Counter>& keys_;
  prometheus::Counter& leases_lost_;
  prometheus::Family<prometheus::Counter>& run_failures_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = false;
  std::atomic<bool> stop_{false};
};

}  // namespace hookrelay::admin
