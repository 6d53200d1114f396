// DLQ replay: puts dead deliveries back into the retry flow, each at most once per run, with an
// audit row naming who did it.
//
// For each requested delivery key, in order:
//   1. Postgres state: 'succeeded' -> skipped (delivered since, e.g. by an earlier replay);
//      any state but 'dead' -> skipped (already back in the retry flow); no row -> missing.
//   2. The latest hookrelay.dlq message for the key (by timestamp, then offset); none -> missing.
//   3. --dry-run stops here ("would replay").
//   4. mark_replayed (state 'dead' -> 'retrying', dlq_replays row, 'replayed' attempt row).
//      This comes before the produce on purpose: a worker claiming a key still in 'dead' skips
//      it for good (ClaimStatus::kAlreadyDead), so the state must change before any worker can
//      see the new message.
//   5. Produce a copy to hookrelay.retry.0 (replay_headers below) and wait for the broker ack.
//      If that fails, the state goes back to 'dead' (undo_replay) so a later replay can retry;
//      the audit rows stay, with the failure reported.
//
// Thread-safety: a Replayer runs on one thread; the store and producer are used from it (the
// producer's ack callback may run on its own thread).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cli/dlq_reader.h"
#include "shared/delivery_queries.h"
#include "shared/message_producer.h"

namespace hookrelay::cli {

// The Postgres side of a replay.
class ReplayStore {
 public:
  virtual ~ReplayStore() = default;
  // The delivery's state; Error "not_found" when there is no such delivery.
  virtual Result<std::string> state(const std::string& key) = 0;
  // DeliveryQueries::mark_replayed: "not_replayable" unless dead.
  virtual Result<void> mark_replayed(const std::string& key, const std::string& who,
                                     const std::string& reason) = 0;
  // Back to 'dead' after a replay whose message could not be produced.
  virtual Result<void> undo_replay(const std::string& key) = 0;
};

// ReplayStore on DeliveryQueries and the same database.
class PostgresReplayStore final : public ReplayStore {
 public:
  explicit PostgresReplayStore(const std::string& url);
  Result<std::string> state(const std::string& key) override;
  Result<void> mark_replayed(const std::string& key, const std::string& who,
                             const std::string& reason) override;
  Result<void> undo_replay(const std::string& key) override;

 private:
  DeliveryQueries queries_;
  PgConnection pg_;
};

enum class ReplayOutcome {
  kReplayed,
  kWouldReplay,       // --dry-run
  kSkippedSucceeded,  // Postgres says it was delivered
  kSkippedNotDead,    // retrying or in flight: already back in the flow
  kMissing,           // no delivery row, or no DLQ message left for it
  kFailed,            // database or Kafka error
};

const char* replay_outcome_name(ReplayOutcome outcome);

struct ReplayItem {
  std::string key;
  ReplayOutcome outcome = ReplayOutcome::kFailed;
  std::string detail;
  int32_t partition = -1;  // of the DLQ message used, -1 when none
  int64_t offset = -1;
};

struct ReplaySummary {
  std::vector<ReplayItem> items;
  int total = 0;  // keys requested
  int replayed = 0;
  int skipped = 0;
  int missing = 0;
  int failed = 0;
};

struct ReplayOptions {
  bool dry_run = false;
  double rate_per_second = 0;  // 0 = as fast as acks come back
  std::string who;
  std::string reason;
  int ack_timeout_ms = 30000;
};

struct ReplayClock {
  std::function<int64_t()> now_ms;
  std::function<void(int64_t ms)> sleep_ms;
};

// The headers of the retry-tier copy: those of the DLQ message with hr-attempt=0 (a fresh attempt
// budget), hr-due-at=now, hr-received-at=now (max_age restarts; the first original is kept in
// hr-original-received-at), hr-replayed-by=who, and no hr-last-* / hr-dlq-reason.
std::vector<MessageHeader> replay_headers(const std::vector<MessageHeader>& dlq_headers,
                                          int64_t now_ms, const std::string& who);

// For each delivery key, its latest DLQ message (later timestamp, then higher offset).
std::map<std::string, const DlqMessage*> latest_by_key(const std::vector<DlqMessage>& messages);

// The summary line: "replayed 120/500, skipped 3, missing 0, failed 0".
std::string progress_line(const ReplaySummary& summary, bool dry_run);

class Replayer {
 public:
  using OnItem = std::function<void(const ReplaySummary&)>;
  Replayer(ReplayStore& store, MessageProducer& producer, ReplayClock clock);

  // Replays `keys` (duplicates are replayed once) from `messages`; calls on_item after each.
  ReplaySummary run(const std::vector<std::string>& keys, const std::vector<DlqMessage>& messages,
                    const ReplayOptions& options, const OnItem& on_item);

 private:
  ReplayItem replay_one(const std::string& key, const DlqMessage* message,
                        const ReplayOptions& options);
  Result<void> produce_and_wait(const std::string& key, const DlqMessage& message,
                                const ReplayOptions& options);

  ReplayStore& store_;
  MessageProducer& producer_;
  ReplayClock clock_;
  int64_t pace_start_ms_ = 0;
  int64_t paced_ = 0;
};

}  // namespace hookrelay::cli
