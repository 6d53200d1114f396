// ReplayRunner: the admin process's background thread that carries out replays stored by
// POST /v1/replays (ReplayJobs) and the releases of resumed routes, through the one shared
// Replayer (shared/replay/dlq_replay.h) the CLI uses too. It works them in turns, so that no
// replay holds the others up: a turn works one replay for at most one batch of items or
// kTurnMs, and ends sooner when the replay's next key is not due yet (its `rate`: the runner
// paces each replay itself, between turns, so a replay waiting for its next key holds nothing
// up). Each round gives every replay it may take one turn, releases first, then the oldest; a
// replay waiting for its pacing is passed over until its key is due, and the runner sleeps only
// when no replay has a key due (a new replay or release wakes it at once).
//
// It leases each replay it works on, and keeps the lease between turns, so after this process
// dies another admin process, or this one restarted, takes the replay over once the lease
// expires and resumes from its items' progress. A heartbeat thread renews the lease of every
// replay it holds every third of the lease, however long one item takes (a slow broker
// acknowledgement, the first read of the dead-letter topic), so a live runner keeps its replays.
// A replay it holds keeps what its first turn read (its dead letters, or parked messages) for
// its later turns. It holds at most kMaxHeldReplays at once (their reads share
// kReplayMaxHeldBytes); the others wait for one to finish, but for a release, which takes the
// place of an ordinary replay (that one's lease is given back, and its pacing remembered).
// A runner whose lease was taken over anyway (a stall longer than the lease) marks and records
// nothing more: the database refuses its marks and item updates
// (DeliveryQueries::mark_replayed, ReplayJobs::finish_item), so one key is never put back in the
// retry flow by two runs of one replay. A turn ends only between items (each item finished:
// marked, produced and recorded, or left as it was), so the next turn, here or in another
// process, starts from the items as stored.
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
// Thread-safety: start/stop from one controlling thread; everything else runs on its own threads
// (the runner's and the heartbeat's).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
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
  // The longest turn of one replay, and how many replays a runner holds at once.
  static constexpr int64_t kTurnMs = 1000;
  static constexpr std::size_t kMaxHeldReplays = 4;
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
  // How a turn ended: no replay to claim (or the claim failed), the replay yielded its turn with
  // items left, the replay finished or was left to another runner (or the process stopping), or
  // a failure that leaves it to be tried again after a back-off.
  enum class TurnEnd { kIdle, kClaimFailed, kYielded, kEnded, kFailed };
  struct Session;  // a replay this runner holds, between its turns
  struct Lease;    // its lease, as the heartbeat keeps it
  using Sessions = std::map<int64_t, std::unique_ptr<Session>>;
  void loop();
  // Claims a replay (see the top of this file; not those in `skip`) and gives it a turn, opening
  // its session on its first. `claimed`: its id.
  TurnEnd take_turn(ReplayJobs& jobs, Sessions& held, const std::vector<int64_t>& skip,
                    std::map<int64_t, double>& pacing, int64_t& claimed);
  // Reads what the replay needs (its messages) and makes its Replayer.
  TurnEnd open(ReplayJobs& jobs, Session& s);
  // Works the replay's items until its turn is over.
  TurnEnd work(ReplayJobs& jobs, Session& s);
  // The lease of a replay now held (the heartbeat renews it from now on), and one no longer
  // held: once drop_lease returns, the heartbeat renews it no more.
  std::shared_ptr<Lease> hold_lease(int64_t id);
  void drop_lease(int64_t id);
  // Forgets a held replay: its lease dropped, and its pacing kept in `pacing` for a later turn.
  void forget(Sessions& held, int64_t id, std::map<int64_t, double>& pacing);
  bool wait_ms(int64_t ms);  // false when stopping
  // A replay's waits inside the Replayer (its second read of the dead letters): the whole `ms`
  // unless stopping or `lost` (notify() does not cut it short).
  void pause_ms(int64_t ms, const std::atomic<bool>& lost);
  // The heartbeat thread: renews the lease of every held replay.
  void keep_leases();
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
  std::thread heartbeat_;
  // The leases of the replays held (keep_leases renews them). Held while one is renewed, so a
  // lease dropped is never renewed after (drop_lease, then a release that gives it back).
  std::mutex leases_mu_;
  std::map<int64_t, std::shared_ptr<Lease>> leases_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = false;
  std::atomic<bool> stop_{false};
};

}  // namespace hookrelay::admin
