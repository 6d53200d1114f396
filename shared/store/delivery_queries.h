// DeliveryQueries: what the operator CLI and the admin API read and change in the delivery store
// (listing and inspection, marking a replay or a resend, attempt-partition maintenance). Not on
// the worker's hot path.
//
// Times are milliseconds since the Unix epoch; 0 means "not set" (likewise http status 0 = no
// response). Errors: "not_found", "not_replayable", "not_resendable", "bad_filter",
// "maintenance_locked" (see AttemptMaintenanceRetry), and the database errors of PgConnection (see
// pg_connection.h).
//
// Thread-safety: one connection, not thread-safe; one instance per thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shared/kafka/message_producer.h"
#include "shared/result.h"
#include "shared/store/pg_connection.h"

namespace hookrelay {

struct DeliveryRow {
  std::string key;
  std::string kind;
  std::string source;
  std::string event_id;
  std::string destination;
  std::string url;
  std::string state;  // in_flight | retrying | succeeded | dead
  int attempts = 0;
  std::string lease_owner;
  int64_t lease_until_ms = 0;
  int64_t first_seen_ms = 0;
  int64_t first_attempt_ms = 0;
  int64_t last_attempt_ms = 0;
  int64_t completed_ms = 0;
  int last_status = 0;
  std::string last_error;
  std::string origin_topic;
};

struct AttemptRow {
  int attempt = 0;
  int64_t started_ms = 0;
  int duration_ms = 0;
  int http_status = 0;
  std::string outcome;  // succeeded | retryable | permanent | duplicate_success | replayed
  std::string error;
  std::string worker_id;
};

struct ReplayRow {
  int64_t id = 0;
  std::string replayed_by;
  int64_t replayed_ms = 0;
  std::string reason;
};

// A replay whose mark no worker has acted on: the delivery is still 'retrying', unleased, with
// no attempt since its latest dlq_replays row. Normally for moments (until a worker claims the
// message); for good when the replaying process died between the mark and the broker's ack.
struct UnfinishedReplay {
  std::string key;
  std::string replayed_by;
  int64_t replayed_ms = 0;
  int64_t age_ms = 0;  // by the database's clock
};

struct DeliveryDetail {
  DeliveryRow delivery;
  std::vector<AttemptRow> attempts;  // by start time
  std::vector<ReplayRow> replays;    // oldest first
};

struct InboundEventRow {
  std::string source;
  std::string event_id;
  std::string topic;
  int partition = 0;
  int64_t offset = 0;
  int64_t received_ms = 0;
  int64_t first_seen_ms = 0;
  std::string body_sha256;
};

struct EventDetail {
  std::optional<InboundEventRow> inbound;  // absent for events not yet consumed or past retention
  std::vector<DeliveryRow> deliveries;     // by destination
};

struct ResendSourceRow {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string route;  // empty for an outbound call
};

struct DlqFilter {
  std::string source{};         // empty = any
  std::string destination{};    // empty = any
  std::string status = "dead";  // a delivery state; empty = any
  int64_t since_ms = 0;         // last attempt at or after; 0 = no bound
  int64_t until_ms = 0;         // last attempt before; 0 = no bound
  int limit = 100;              // 1..10000
};

// GET /v1/deliveries: every field optional (empty / 0 = any). Pages are newest first by
// (first_seen_at, delivery_key); `after` continues below the last row of the previous page.
//
// Every page is bounded: it walks one index (event id, source, route or the first-seen index;
// dead_letters or parked_deliveries for those states) and reads at most `scan_budget` of its
// rows, checking the other conditions on them. When the budget runs out before `limit` matches,
// the page holds the matches found (possibly none) and `next` continues below the last row read.
struct DeliveryPagePosition {
  int64_t first_seen_us = 0;  // microseconds since the Unix epoch, exactly as stored
  std::string key;
};

struct DeliveryPageFilter {
  std::string source{};
  std::string route{};  // a delivery's destination
  std::string state{};  // in_flight | retrying | succeeded | dead
  std::string event_id{};
  int64_t since_ms = 0;  // first seen at or after
  int64_t until_ms = 0;  // first seen before
  int limit = 50;        // 1..kMaxDeliveryPage
  std::optional<DeliveryPagePosition> after{};
  int scan_budget = 0;  // index rows a page may read; 0 = kDeliveryScanBudget (at least limit + 1)
};

inline constexpr int kMaxDeliveryPage = 500;
// About 5 ms of index and heap reads at a million deliveries (bench/admin).
inline constexpr int kDeliveryScanBudget = 4000;

struct DeliveryPage {
  std::vector<DeliveryRow> rows;
  std::optional<DeliveryPagePosition> next;  // set when there may be more
  // The scan budget ran out before `limit` matches: fewer rows (even none) and a `next` to go on.
  bool scan_bounded = false;
};

// Where a delivery of an ordered route waits to be published again: its key, and the message.
struct KeyWait {
  std::string source;
  std::string route;
  std::string ordering_key;
  std::string topic;
  std::vector<MessageHeader> headers;
  std::string body;
};

// The attempt-partition maintenance waits at most 1 s for its lock on delivery_attempts
// (migrations/0025): a longer wait would hold every worker's attempt record queued behind it. A
// call that could not get the lock changed nothing and is tried again, `attempts` times in all,
// `retry_delay_ms` apart; then it fails with "maintenance_locked" (retryable), naming the table,
// the tries and the sessions holding it.
struct AttemptMaintenanceRetry {
  int attempts = 5;
  int retry_delay_ms = 10000;
};

class DeliveryQueries {
 public:
  // Does not connect yet.
  explicit DeliveryQueries(std::string url);

  // Newest last attempt first.
  Result<std::vector<DeliveryRow>> dlq_list(const DlqFilter& filter);
  Result<DeliveryDetail> delivery_show(const std::string& key);
  // "not_found" when neither an inbound event nor any delivery matches.
  Result<EventDetail> event_show(const std::string& source, const std::string& event_id);
  // Moves a dead delivery back to 'retrying' and audits it (dlq_replays row plus an attempt row
  // with outcome 'replayed'), atomically. Returns the delivery as it now is, for the caller to
  // re-produce its message. "not_replayable" unless the delivery is in `from_state` (dead, or
  // parked for the release of a resumed route). With a replay_id (admin API), its replay_items
  // row goes from 'pending' to 'marked' in the same transaction, else nothing changes:
  // "replay_item_taken" when the item is not pending, "replay_lease_lost" when `runner` (if
  // given) no longer runs the replay.
  Result<DeliveryRow> mark_replayed(const std::string& key, const std::string& who,
                                    const std::string& reason, int64_t replay_id = 0,
                                    const std::string& from_state = "dead",
                                    const std::string& runner = {});
  // mark_replayed for a delivery of an ordered route, in one transaction with its place behind
  // its ordering key (`wait`): it becomes a waiting delivery of the key, as worker/key_order.h
  // keeps them (ordered_keys, holding the key with no head if it was free; ordered_waiting, with
  // the message that carries it on), and a worker publishes it when the deliveries ahead of it
  // are done. True: it waits, nothing is to be produced. False: it is its key's head already (a
  // retry that was parked), so nothing is ahead of it: the caller produces its message. A key
  // whose head is another delivery still parked (not released: its message gone, its release
  // failed) lets that head go in the same transaction, so this one waits behind the key's other
  // waiting deliveries only (true), not behind a head that nothing moves.
  Result<bool> mark_replayed_behind_key(const std::string& key, const std::string& who,
                                        const std::string& reason, const KeyWait& wait,
                                        int64_t replay_id = 0,
                                        const std::string& from_state = "dead",
                                        const std::string& runner = {});

  // The key's unfinished replay, if it has one (see UnfinishedReplay).
  Result<std::optional<UnfinishedReplay>> unfinished_replay(const std::string& key);
  // Takes up the key's unfinished replay: audits it as mark_replayed does (dlq_replays row,
  // 'replayed' attempt row), the state unchanged. "not_replayable" when it is no longer
  // unfinished (a worker took the delivery up meanwhile).
  Result<void> retake_replay(const std::string& key, const std::string& who,
                             const std::string& reason);
  // Unfinished replays marked at least `min_age_ms` ago, oldest first, at most `limit`.
  Result<std::vector<UnfinishedReplay>> unfinished_replays(int64_t min_age_ms, int limit);
  // The same, of one route's deliveries (`source`/`route`) marked with `reason` (a release of
  // its parked deliveries, ReplayOptions::reason) that ended between marking a key and its
  // message's acknowledgement.
  Result<std::vector<UnfinishedReplay>> unfinished_route_replays(const std::string& source,
                                                                 const std::string& route,
                                                                 const std::string& reason,
                                                                 int64_t min_age_ms, int limit);

  // Newest first; "bad_filter" names a bad field.
  Result<DeliveryPage> list_deliveries(const DeliveryPageFilter& filter);
  // The delivery of an outbound call by the id POST /v1/calls answered; "not_found".
  Result<DeliveryDetail> call_show(const std::string& call_id);

  // Resend of a succeeded delivery, webhook or outbound call (the admin API's replays; see
  // shared/replay/dlq_replay.h). Where its event or call was first produced: "not_resendable"
  // when that inbound record is gone (retention).
  Result<ResendSourceRow> resend_source(const std::string& key);
  // Sets the delivery's resend marker to replay_id (the next claim of the key takes it once),
  // audits it (dlq_replays row, 'resent' attempt row) and marks the replay item, atomically.
  // "not_resendable" unless succeeded with no resend pending; the replay item and `runner` are
  // checked as mark_replayed checks them.
  Result<void> mark_resend(const std::string& key, const std::string& who,
                           const std::string& reason, int64_t replay_id,
                           const std::string& runner = {});
  // Clears the marker if it is still this replay's.
  Result<void> undo_resend(const std::string& key, int64_t replay_id);
  // For a replay item marked before an interruption: whether its message must be produced
  // again, i.e. no worker has taken the delivery up since it was marked.
  Result<bool> needs_produce_again(const std::string& key, int64_t replay_id);

  // Attempt-table maintenance (see the SQL functions in migrations/0001_init.sql and 0025):
  // creates the daily partitions from today through today + days_ahead / drops those whole days
  // older than older_than_days; returns how many. See AttemptMaintenanceRetry for a call that
  // meets a long transaction on delivery_attempts.
  Result<int> ensure_attempt_partitions(int days_ahead, const AttemptMaintenanceRetry& retry = {});
  Result<int> drop_attempt_partitions(int older_than_days,
                                      const AttemptMaintenanceRetry& retry = {});
  // Deletes inbound_events received more than older_than_days ago; returns how many.
  Result<int64_t> delete_inbound_events(int older_than_days);
  // Deletes at most max_rows deliveries that finished (succeeded or dead) more than
  // older_than_days ago, with their folded first success and dead_letters row; keeps those leased,
  // with a resend pending or heading an ordered key (migrations/0019, 0021). Returns how many.
  Result<int64_t> delete_finished_deliveries(int older_than_days, int max_rows);

 private:
  template <class T>
  Result<T> call_maintenance(const char* what, const char* sql, int arg);
  // call_maintenance, tried again while it meets a conflict (its lock wait ran out, a deadlock).
  Result<int> call_locking_maintenance(const char* what, const char* sql, int arg,
                                       const AttemptMaintenanceRetry& retry);

  PgConnection pg_;
};

}  // namespace hookrelay
