// PartitionIntake: what the worker takes from Kafka and when. It owns, per assigned partition,
// the assignment generation, the pauses (a retry-tier head not yet due, or every partition held
// while Postgres is away), the backlog of messages fetched while there was no room, and the
// offset watermark that commits only past finished messages.
//
// Contract: poll() takes messages in offset order per partition and hands each one the
// coordinator may start to `take` with its MessageState (tracked in the watermark); finish()
// marks a message done when all its deliveries are; store_offsets() stores what may be
// committed. A message from a retry tier whose hr-due-at is in the future waits in its
// partition's look-ahead (tracked, so the committed offset stays below it) while the messages
// after it go on being read: each one is taken when its own due time comes, in due-time order,
// so one message due later does not hold back the ones behind it that are due sooner (full
// jitter puts due times out of order within a tier partition). The look-ahead of all partitions
// together holds up to half of max_in_flight messages; when it is full, a message not yet due
// pauses its partition (seeking back to it) until it, or the earliest message waiting, is due.
// At max_in_flight (has_room() false) messages wait in the backlog (up to half of
// max_in_flight), then in librdkafka's prefetch queue, without a pause, so nothing is fetched
// twice.
//
// A partition's offsets only rise within one assignment, unless its log went back under the
// consumer (an offset reset after a truncation or a re-created topic): a lower offset then starts
// a new generation of the partition, whose messages are all taken (none skipped as seen before).
//
// Thread-safety: coordinator thread only (rebalance callbacks run inside poll() there too).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "shared/config/config.h"
#include "worker/job.h"
#include "worker/message_consumer.h"
#include "worker/offset_watermark.h"
#include "worker/worker_metrics.h"

namespace hookrelay {

class PartitionIntake {
 public:
  struct Sink {
    std::function<bool()> has_room;  // below worker.max_in_flight
    std::function<void(ConsumedMessage&, std::shared_ptr<MessageState>)> take;
  };
  // `schedule`: the running retry schedule (tier delays in seconds), which bounds a retry's due
  // time; it must outlive the intake.
  PartitionIntake(MessageConsumer& consumer, const Config& config, const std::vector<int>& schedule,
                  WorkerMetrics& metrics, Sink sink);
  // A reloaded config's batch size and in-flight bound from the next poll on. `config` must
  // outlive its use here.
  void reconfigure(const Config& config) { config_ = &config; }

  // Hands over backlog and polled messages. False when the backlog is full and the consumer was
  // served recently: nothing was polled, and the caller should wait for results instead.
  bool poll(int64_t now, bool events_waiting);
  // Takes retry-tier messages of the look-ahead that are due, and resumes partitions whose
  // retry-tier head is due.
  void resume_due(int64_t now);

  // `hold`: Postgres is away. `for_order`: held (nothing taken) until release_order_holds().
  void assigned(const std::vector<TopicPartition>& tps, bool hold, bool for_order = false);
  // Partitions assigned with `for_order` may be taken from again.
  void release_order_holds() { release_assigned(&Pause::for_order); }
  void revoked(const std::vector<TopicPartition>& tps);
  bool owns(const TopicPartition& tp) const { return generation_.count(tp) > 0; }
  // Whether `msg` is of a partition this worker holds, in its current generation.
  bool current(const MessageState& msg) const {
    auto it = generation_.find(msg.tp);
    return it != generation_.end() && it->second == msg.generation;
  }

  // Postgres away: every assigned partition is held (fetching stops where it is; nothing is
  // re-read); release_holds() lets them go again.
  void hold_all();
  void release_holds();

  void finish(const MessageState& msg);
  void store_offsets();
  void commit_and_close();

  std::size_t paused_count() const { return paused_.size(); }
  std::size_t backlog_size() const { return backlog_size_; }
  // Retry-tier messages read ahead of their due time, waiting for it.
  std::size_t waiting_count() const { return waiting_size_; }

 private:
  // A partition stays paused while any reason holds.
  struct Pause {
    int64_t seek_offset =
        -1;  // retry tier: the message not due, fetched again when it is; -1 = held
    int64_t resume_at_ms = 0;  // retry tier head not due until then; 0 = not waiting for a tier
    bool for_db = false;       // Postgres unavailable
    bool for_room = false;     // the backlog past its hard bound: fetching stops until it drains
    bool for_order = false;    // just assigned: waits for the key order's look at Postgres
  };
  void take_message(ConsumedMessage& m, int64_t now);
  void drain_backlog(int64_t now);
  bool may_take(const TopicPartition& tp) const;
  void accept(ConsumedMessage& m, const TopicPartition& tp, int64_t now);  // tp: m's
  // Tracks an offset of an assigned partition in its watermark and returns the generation the
  // message's finish must name; an offset below one already tracked starts a new generation.
  // nullopt: skip the message (fetched again by a seek reported failed that landed later).
  std::optional<uint64_t> track(const TopicPartition& tp, int64_t offset);
  void resume_if_free(std::map<TopicPartition, Pause>::iterator it);
  // The backlog's hard bound (see poll()): holds every assigned partition past it, and releases
  // them once the backlog is back under its bound.
  void bound_backlog(std::size_t limit);
  // Holds every assigned partition for `reason` (a partition already paused just gains it), and
  // drops `reason` from every pause, resuming the partitions no other reason holds.
  void hold_assigned(bool Pause::*reason);
  void release_assigned(bool Pause::*reason);
  // The retry-tier look-ahead: wait_until_due keeps a message not yet due (or pauses its
  // partition when the look-ahead is full), take_due hands over the ones whose time has come.
  void wait_until_due(ConsumedMessage& m, const TopicPartition& tp, int64_t due, int64_t now);
  void take_due(int64_t now);
  void forget_waiting(const TopicPartition& tp);

  MessageConsumer& consumer_;
  const Config* config_;
  const std::vector<int>& schedule_;
  WorkerMetrics& metrics_;
  Sink sink_;
  PartitionWatermarks watermarks_;
  std::map<TopicPartition, uint64_t> generation_;
  uint64_t next_generation_ = 1;
  std::map<TopicPartition, Pause> paused_;
  // Partitions whose seek back failed during this poll: their messages not yet due are kept
  // over the look-ahead's limit rather than seeking again (each try can take seconds).
  std::set<TopicPartition> seek_failed_;
  // Partitions whose seek back reported a failure, by the lowest offset it was to go back to: it
  // may still land, and fetch again from there what was taken already.
  std::map<TopicPartition, int64_t> late_seek_;
  // Polled but not yet taken (no room, held, or behind earlier ones), per partition in offset
  // order.
  std::map<TopicPartition, std::deque<ConsumedMessage>> backlog_;
  std::size_t backlog_size_ = 0;
  bool room_held_ = false;         // bound_backlog() holds the partitions
  int64_t next_full_poll_at_ = 0;  // backlog full: when poll() next serves the group
  // Retry-tier messages not yet due, per partition, by (due time, generation, offset); tracked
  // in the watermark of their generation.
  using WaitKey = std::tuple<int64_t, uint64_t, int64_t>;
  std::map<TopicPartition, std::map<WaitKey, ConsumedMessage>> waiting_;
  std::size_t waiting_size_ = 0;
};

}  // namespace hookrelay
