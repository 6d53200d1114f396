// Replay: puts dead deliveries back into the retry flow, and resends succeeded ones, each at most
// once per run, with an audit row naming who did it. One implementation for the CLI
// (`hookrelay dlq replay`) and the admin API (POST /v1/replays).
//
// For each requested delivery key, in order:
//   1. Postgres state: 'succeeded' -> skipped, unless the run resends succeeded deliveries;
//      any state but 'dead' -> skipped (already back in the retry flow); no row -> missing.
//   2. Dead: the latest hookrelay.dlq message for the key (by timestamp, then offset); none ->
//      missing. Succeeded: the first copy of its event or outbound call (inbound_events'
//      topic/partition/offset, read by a MessageFetcher); past retention -> missing.
//   3. dry_run stops here ("would replay" / "would resend").
//   4. Dead: mark_replayed (state 'dead' -> 'retrying', dlq_replays row, 'replayed' attempt row).
//      This comes before the produce on purpose: a worker claiming a key still in 'dead' skips
//      it for good (ClaimStatus::kAlreadyDead), so the state must change before any worker can
//      see the new message. Succeeded: mark_resend (a resend marker on the delivery, which the
//      next claim of the key consumes once; dlq_replays row; 'resent' attempt row).
//   5. Produce a copy to hookrelay.retry.0 (replay_headers / resend_headers below) and wait for
//      the broker ack. If that fails, the mark is undone (undo_replay / undo_resend) so a later
//      replay can retry; the audit rows stay, with the failure reported. With
//      ReplayOptions::retry_transient (the admin API), a failure that may pass keeps the mark
//      instead, for the caller's next run to resume (kRetryLater).
//
// A dead delivery whose message the run's read of the DLQ did not hold (read before the worker's
// dead letter was acknowledged: the worker records the delivery dead first) is not reported
// missing at once: with reread_from(), the Replayer reads the DLQ once more, to its end at that
// moment and no sooner than `grace_ms` after the first read began, for every key the run wants.
// At most one such re-read per Replayer, so a run's cost stays bounded; a key still without a
// message after it is missing.
//
// The CLI keeps no record of its runs: a key it marked before it was killed (SIGKILL, the OOM
// killer) between 4 and the ack stays 'retrying' with possibly no message. A later run given
// that key (or `--unfinished`) finds its mark unfinished (no lease, no attempt since) and, once
// the mark is `unfinished_after_ms` old, produces the message again: if the first copy did reach
// the broker, the claim makes the second harmless, as below.
//
// A run interrupted between 4 and the ack (the admin process killed) is resumed with
// `resume = true` for the keys it had marked: their message is produced again only when no
// worker has taken the delivery up since (needs_produce_again); the claim's exclusivity makes a
// second copy of the message harmless, so nothing is delivered twice.
//
// A resumed key, or an unfinished replay the CLI takes up, whose message is gone by then (past
// retention, a stub's fetch finds nothing) or cannot be read for a reason that will not pass, is
// set back to options.from_state (undo_unfinished_replay) and reported missing or failed so: left
// 'retrying' it would have no copy anywhere and never be delivered. Why that is safe even when
// the earlier run's produce may have reached Kafka: Replayer::set_back in dlq_replay.cpp.
//
// Thread-safety: a Replayer runs on one thread; the store and producer are used from it (the
// producer's ack callback may run on its own thread).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "shared/kafka/message_producer.h"
#include "shared/replay/dlq_reader.h"
#include "shared/store/delivery_queries.h"

namespace hookrelay {

// Where a succeeded delivery's event or call was first produced, and its route (a webhook's).
using ResendSource = ResendSourceRow;

// The Postgres side of a replay.
class ReplayStore {
 public:
  virtual ~ReplayStore() = default;
  // The delivery's state; Error "not_found" when there is no such delivery.
  virtual Result<std::string> state(const std::string& key) = 0;
  // DeliveryQueries::mark_replayed: "not_replayable" unless dead.
  virtual Result<void> mark_replayed(const std::string& key, const std::string& who,
                                     const std::string& reason) = 0;
  // Back to 'dead' (or the state it was marked from) after a replay whose message could not be
  // produced.
  virtual Result<void> undo_replay(const std::string& key) = 0;
  // The same for a key an earlier run marked (resumed, or an unfinished replay taken up), only
  // while that replay is still unfinished: no worker took the delivery up since its latest mark
  // ("not_undone" when one did). By default undo_replay.
  virtual Result<void> undo_unfinished_replay(const std::string& key);
  // The release of a parked delivery of an ordered route: mark_replayed, and in the same
  // transaction a place behind its ordering key (DeliveryQueries::mark_replayed_behind_key). True:
  // it waits there and a worker publishes `wait`'s message in its turn. False: it was marked and
  // is to be produced now (it heads its key, or this store keeps no key order).
  virtual Result<bool> mark_replayed_behind_key(const std::string& key, const std::string& who,
                                                const std::string& reason, const KeyWait& wait);
  // Resend of succeeded deliveries; a store without it answers "not_resendable".
  virtual Result<ResendSource> resend_source(const std::string& key);
  virtual Result<void> mark_resend(const std::string& key, const std::string& who,
                                   const std::string& reason);
  virtual Result<void> undo_resend(const std::string& key);
  // For a key marked by an interrupted run: whether no worker took it up since.
  virtual Result<bool> needs_produce_again(const std::string& key);
  // DeliveryQueries::unfinished_replay and retake_replay; a store without them has none.
  virtual Result<std::optional<UnfinishedReplay>> unfinished_replay(const std::string& key);
  virtual Result<void> retake_replay(const std::string& key, const std::string& who,
                                     const std::string& reason);
};

// ReplayStore on DeliveryQueries and the same database. With a `replay_id` (an admin API
// replay), each mark also moves the key's replay_items row to 'marked' in the same transaction,
// and a resend's marker is the replay id; without one (the CLI), succeeded deliveries are not
// resent. `from_state`: the state a delivery must be in to be put back in the retry flow, and
// the one an undo returns it to: "dead", or "parked" for the release of a resumed route.
// `runner`: the admin process working the replay; a mark fails with "replay_lease_lost" once
// another runner has taken the replay over (DeliveryQueries::mark_replayed).
class PostgresReplayStore final : public ReplayStore {
 public:
  explicit PostgresReplayStore(const std::string& url, int64_t replay_id = 0,
                               std::string from_state = "dead", std::string runner = {});
  Result<std::string> state(const std::string& key) override;
  Result<void> mark_replayed(const std::string& key, const std::string& who,
                             const std::string& reason) override;
  Result<void> undo_replay(const std::string& key) override;
  Result<void> undo_unfinished_replay(const std::string& key) override;
  Result<bool> mark_replayed_behind_key(const std::string& key, const std::string& who,
                                        const std::string& reason, const KeyWait& wait) override;
  Result<ResendSource> resend_source(const std::string& key) override;
  Result<void> mark_resend(const std::string& key, const std::string& who,
                           const std::string& reason) override;
  Result<void> undo_resend(const std::string& key) override;
  Result<bool> needs_produce_again(const std::string& key) override;
  Result<std::optional<UnfinishedReplay>> unfinished_replay(const std::string& key) override;
  Result<void> retake_replay(const std::string& key, const std::string& who,
                             const std::string& reason) override;

 private:
  DeliveryQueries queries_;
  PgConnection pg_;
  int64_t replay_id_;
  std::string from_state_;
  std::string runner_;
};

enum class ReplayOutcome {
  kReplayed,
  kResent,            // a succeeded delivery sent again as a new attempt
  kWouldReplay,       // --dry-run
  kWouldResend,       // dry run of a resend
  kSkippedSucceeded,  // Postgres says it was delivered
  kSkippedNotDead,    // retrying or in flight: already back in the flow
  kMissing,           // no delivery row, or no DLQ message left for it
  kFailed,            // database or Kafka error
  // ReplayOptions::retry_transient: a failure that may pass (Kafka or the database unreachable,
  // a produce not acknowledged in time); the key is left as it is, for a later run. Also a key
  // not tried because ReplayOptions::stop_requested held before its mark (any options).
  kRetryLater,
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
  bool interrupted = false;  // stop_requested() held before every key was tried
};

struct ReplayOptions {
  bool dry_run = false;
  // Resend succeeded deliveries instead of skipping them. The admin API sets it per key, for the
  // keys succeeded when the replay was requested (replay_items.resend): a key dead then and
  // delivered since is skipped, not sent a second time.
  bool resend_succeeded = false;
  double rate_per_second = 0;  // 0 = as fast as acks come back
  std::string who;
  std::string reason;
  int ack_timeout_ms = 30000;
  // The state a replayed delivery must be in: "dead" (from hookrelay.dlq), or "parked" (from
  // hookrelay.parked: the release of a resumed route, in the order of `keys`).
  std::string from_state = "dead";
  // A 'retrying' key whose latest replay mark is at least this old, with no worker having taken it
  // up since (UnfinishedReplay: the replaying process died between its mark and the ack), is
  // produced again instead of skipped. 0: never (the admin API resumes its own replays).
  int64_t unfinished_after_ms = 0;
  // The caller keeps each key's progress and runs the key again later (the admin API's replay
  // items, resumed with `resume` when marked). A failure that may pass (Error::retryable: Kafka or
  // the database unreachable, a produce not acknowledged in time) then ends the key as
  // kRetryLater instead of kFailed, and a key marked before its produce failed stays marked
  // (not set back to dead or parked, its resend marker kept): the run that resumes it produces
  // its message again unless a worker took it up meanwhile (a copy stored after all). Only a
  // refusal of the key itself (a message Kafka never takes, a database refusing its values) is
  // kFailed. Off (the CLI, which keeps no record of its runs): such a key is kFailed, its mark
  // undone.
  bool retry_transient = false;
  // A release (from_state "parked"): whether a route is ordered in the config the run reads.
  // A parked delivery of a route that is waits behind its ordering key; one of a route that no
  // longer is (or no longer configured) is produced at once. Unset: the message's ordering key
  // decides.
  std::function<bool(const std::string& source, const std::string& route)> ordered_route;
  // Asked before each key, during its pacing (at least once a second) and just before its mark:
  // true ends the run there (a key marked was finished: acknowledged, or set back to dead; a key
  // not yet marked is left untouched and not reported), with ReplaySummary::interrupted set.
  // Replayer::replay_key called alone answers such a key kRetryLater ("not tried").
  std::function<bool()> stop_requested;
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

// The headers of a resend's retry-tier copy, from the event's or call's first message: as
// replay_headers, plus the single delivery it stands for (hr-delivery-key, hr-origin-topic, and a
// webhook's hr-route; a call's message names its destination itself). The copy needs no mark of
// its own: the delivery's resend marker in Postgres (DeliveryQueries::mark_resend) is what lets
// the next claim of the key take the succeeded delivery once, and the resend is audited there
// ('resent' attempt row, dlq_replays, the replay's item).
std::vector<MessageHeader> resend_headers(const std::vector<MessageHeader>& original,
                                          const ResendSource& source, const std::string& key,
                                          int64_t now_ms, const std::string& who);

// Where the messages of a replay come from: hookrelay.dlq, or hookrelay.parked for a release.
std::string source_topic(const ReplayOptions& options);

// For each delivery key, its latest DLQ message (later timestamp, then higher offset).
std::map<std::string, const DlqMessage*> latest_by_key(const std::vector<DlqMessage>& messages);

// How an item reports an unfinished replay it takes up.
std::string unfinished_note(const UnfinishedReplay& mark);

// The summary line: "replayed 120/500, skipped 3, missing 0, failed 0".
std::string progress_line(const ReplaySummary& summary, bool dry_run);

// Produces `message` and waits up to ack_timeout_ms for the broker's acknowledgement: where it
// was stored, or why not ("ack_timeout", retryable, when none came in time; the report may still
// come, and finds nobody waiting).
Result<ProducedAt> produce_acknowledged(MessageProducer& producer, const OutgoingMessage& message,
                                        int ack_timeout_ms);

class Replayer {
 public:
  using OnItem = std::function<void(const ReplaySummary&)>;
  // `fetcher` reads the messages of resends; may be null when the run resends nothing.
  Replayer(ReplayStore& store, MessageProducer& producer, ReplayClock clock,
           MessageFetcher* fetcher = nullptr);

  // Reads `source` once more when a key in the replayed state has no message (see the top of
  // this file). `first_read_ms`: when the first read began (clock time).
  void reread_from(DlqSource& source, DlqSource::KeepFn keep, int64_t first_read_ms,
                   int64_t grace_ms = kDlqRereadGraceMs);
  static constexpr int64_t kDlqRereadGraceMs = 2000;

  // One key: `message` is its latest DLQ message (null: none). `resume`: the key was marked by
  // an interrupted run (see the top of this file).
  ReplayItem replay_key(const std::string& key, const DlqMessage* message,
                        const ReplayOptions& options, bool resume);

  // Replays `keys` (duplicates are replayed once) from `messages`; calls on_item after each.
  ReplaySummary run(const std::vector<std::string>& keys, const std::vector<DlqMessage>& messages,
                    const ReplayOptions& options, const OnItem& on_item);

 private:
  // The key's message from the one re-read (made on the first call), or null.
  const DlqMessage* reread_message(const std::string& key);
  // `item` for a key with no message: missing, or left for a later run when the re-read that
  // would have found it failed.
  ReplayItem& no_message(const ReplayOptions& options, ReplayItem& item);
  // A stub (DlqMessage::stub) is fetched whole into `fetched` and `message` points there; false
  // (with `item` saying why) when it cannot be.
  bool whole(const DlqMessage*& message, const ReplayOptions& options, DlqMessage& fetched,
             ReplayItem& item);
  ReplayItem resend_one(const std::string& key, const ReplayOptions& options, bool resume);
  // A key not in options.from_state: its unfinished replay to take up (see the top of this
  // file), or nullopt with `item` set to why it is skipped (or failed).
  std::optional<UnfinishedReplay> unfinished_mark(const std::string& key, const std::string& state,
                                                  const ReplayOptions& options, ReplayItem& item);
  // Waits for the key's turn at options.rate_per_second; false when options.stop_requested
  // held meanwhile or at the end (the key is then not to be marked).
  bool pace(const ReplayOptions& options);
  // `item` for a key an earlier run marked whose message cannot be produced: set back to
  // options.from_state (see dlq_replay.cpp).
  ReplayItem& set_back(const std::string& key, const ReplayOptions& options, ReplayItem& item);
  // `item` for a key not tried because the run was asked to stop (stopped_ set).
  ReplayItem& not_tried(ReplayItem& item);
  Result<void> produce_and_wait(const std::string& key, const std::string& value,
                                const std::vector<MessageHeader>& headers,
                                const ReplayOptions& options);

  ReplayStore& store_;
  MessageProducer& producer_;
  ReplayClock clock_;
  MessageFetcher* fetcher_;
  static constexpr int64_t kMaxPaceIntervalMs = int64_t{24} * 3600 * 1000;
  // The longest sleep between two looks at options.stop_requested while pacing.
  static constexpr int64_t kPaceSliceMs = 1000;
  bool stopped_ = false;  // the last replay_key was asked to stop before its mark
  bool paced_any_ = false;
  double last_paced_ms_ = 0;  // when the last paced key was due to go
  DlqSource* reread_source_ = nullptr;
  DlqSource::KeepFn reread_keep_;
  int64_t reread_due_ms_ = 0;
  bool reread_done_ = false;
  std::optional<Error> reread_error_;  // why the one re-read failed
  std::vector<DlqMessage> reread_messages_;
  std::map<std::string, const DlqMessage*> reread_latest_;
};

}  // namespace hookrelay
