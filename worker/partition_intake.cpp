#include "worker/partition_intake.h"

#include <algorithm>
#include <set>

#include "shared/kafka/wire_contract.h"
#include "shared/log.h"

namespace hookrelay {
namespace {

constexpr int kIdlePollMs = 10;
constexpr int64_t kFullBacklogPollMs = 100;
// Messages a full backlog may still take (one per kFullBacklogPollMs) before its partitions are
// held: 5 s of them.
constexpr std::size_t kFullBacklogSlack = 50;

}  // namespace

PartitionIntake::PartitionIntake(MessageConsumer& consumer, const Config& config,
                                 const std::vector<int>& schedule, WorkerMetrics& metrics,
                                 Sink sink)
    : consumer_(consumer),
      config_(&config),
      schedule_(schedule),
      metrics_(metrics),
      sink_(std::move(sink)) {}

bool PartitionIntake::poll(int64_t now, bool events_waiting) {
  seek_failed_.clear();
  // Messages polled while the worker is at max_in_flight wait in a per-partition backlog, so
  // work is at hand the moment capacity frees up. When the backlog is full (half of
  // max_in_flight), messages are left to librdkafka, which stops fetching once its own queue is
  // full (queued.max.messages.kbytes): no pause, so no refetch and no resume delay. poll() still
  // runs every kFullBacklogPollMs to serve the group (rebalances), taking at most one message.
  drain_backlog(now);
  std::size_t limit =
      std::max<std::size_t>(1, static_cast<std::size_t>(config_->worker.max_in_flight) / 2);
  bound_backlog(limit);
  int max = config_->worker.batch_size;
  if (backlog_size_ >= limit) {
    if (now < next_full_poll_at_) return false;
    next_full_poll_at_ = now + kFullBacklogPollMs;
    max = 1;
  }
  // With events waiting there is work to do now; otherwise wait for a message or for an event
  // to wake the poll. Never spin: the cores are shared with curl, librdkafka and Postgres.
  auto msgs = consumer_.poll(max, events_waiting ? 0 : kIdlePollMs);
  for (auto& m : msgs) take_message(m, now);
  return true;
}

// Each poll of a full backlog takes its one message into it: 10 a second for as long as nothing
// finishes (a receiver that holds every call, retries Kafka keeps refusing), each with its body.
// Past a hard bound (the backlog's bound, a batch, and kFullBacklogSlack more) the partitions are
// held: librdkafka stops fetching them (and drops what it fetched ahead, fetched again on
// resume), and poll() goes on serving the group with nothing to take. They are released once the
// backlog is back under its bound.
void PartitionIntake::bound_backlog(std::size_t limit) {
  const std::size_t hard =
      limit + static_cast<std::size_t>(std::max(config_->worker.batch_size, 1)) + kFullBacklogSlack;
  if (!room_held_ && backlog_size_ >= hard) {
    room_held_ = true;
    hold_assigned(&Pause::for_room);
    spdlog::warn(
        "msg=backlog_full backlog={} bound={} action=\"fetching held until the backlog drains "
        "below its bound\"",
        backlog_size_, hard);
  } else if (room_held_ && backlog_size_ < limit) {
    room_held_ = false;
    release_assigned(&Pause::for_room);
    spdlog::info("msg=backlog_drained backlog={} action=\"fetching again\"", backlog_size_);
  }
}

void PartitionIntake::take_message(ConsumedMessage& m, int64_t now) {
  TopicPartition tp{m.topic, m.partition};
  if (!owns(tp)) return;  // not (or no longer) assigned
  auto p = paused_.find(tp);
  // A retry-tier pause sought back to its head: this is fetched again when the head is due.
  if (p != paused_.end() && p->second.seek_offset >= 0) return;
  auto q = backlog_.find(tp);
  if (!may_take(tp) || q != backlog_.end() || !sink_.has_room()) {
    // Held for Postgres (fetched before the hold took effect: librdkafka resumes after it, so
    // it must be kept), behind earlier messages of its partition, or no room: kept in order.
    backlog_[tp].push_back(std::move(m));
    ++backlog_size_;
    return;
  }
  accept(m, tp, now);
}

// A hold for capacity only stops fetching; Postgres being away or a retry not yet due also
// stops taking what was already fetched.
bool PartitionIntake::may_take(const TopicPartition& tp) const {
  auto p = paused_.find(tp);
  if (p == paused_.end()) return true;
  return !p->second.for_db && !p->second.for_order && p->second.resume_at_ms == 0 &&
         p->second.seek_offset < 0;
}

// Partitions that may take messages hand their backlog over in offset order while there is room.
void PartitionIntake::drain_backlog(int64_t now) {
  for (auto it = backlog_.begin(); it != backlog_.end() && sink_.has_room();) {
    const TopicPartition& tp = it->first;
    auto& q = it->second;
    while (!q.empty() && sink_.has_room() && may_take(tp)) {
      ConsumedMessage m = std::move(q.front());
      q.pop_front();
      --backlog_size_;
      accept(m, tp, now);
    }
    if (auto p = paused_.find(tp); p != paused_.end() && p->second.seek_offset >= 0) {
      backlog_size_ -= q.size();  // sought back to a retry not yet due: all of it is fetched again
      q.clear();
    }
    it = q.empty() ? backlog_.erase(it) : std::next(it);
  }
}

void PartitionIntake::accept(ConsumedMessage& m, const TopicPartition& tp, int64_t now) {
  auto gen = generation_.find(tp);
  if (gen == generation_.end()) return;  // not (or no longer) assigned
  if (is_retry_topic(m.topic)) {
    // A due time beyond the longest delay a retry can be given was not written by a worker (a
    // hostile header, or a retry from before the schedule was shortened): it could hold the
    // partition for good, so it is cut to that delay. That is the longer of the running
    // schedule's (a reload that changes the tier count keeps it until a restart) and the
    // config's (a route's `retry:` delays, and the Retry-After a retry honours, go up to it).
    // A value that is not a number is taken at once: expand_message refuses it as malformed, and
    // the worker counts it.
    const auto longest_of = [](const std::vector<int>& tiers) {
      return tiers.empty() ? int64_t{0}
                           : int64_t{*std::max_element(tiers.begin(), tiers.end())} * 1000;
    };
    const int64_t longest =
        std::max(longest_of(schedule_), longest_of(config_->retry.schedule_seconds));
    auto due =
        std::min(m.header_int(header::kDueAt, 0, kMaxTimestampMs).value_or(0), now + longest);
    if (due > now) {
      wait_until_due(m, tp, due, now);
      return;
    }
  }
  const auto generation = track(tp, m.offset);
  if (!generation) return;  // fetched again by a seek that failed, then landed: taken before
  sink_.take(m, std::make_shared<MessageState>(MessageState{tp, m.offset, *generation, 0, {}}));
}

// Offsets of one assignment only rise here: the one seek this intake makes goes back to a message
// it did not take. A lower offset means the partition's log went back under the consumer
// (truncated by an unclean leader election, or the topic deleted and created again) and
// librdkafka's offset reset reads it from its start. What it reads there is new, or a copy the
// store's delivery keys dedupe: never something to skip. So the partition starts a new
// generation whose watermark starts at this offset; finishes of the messages taken before no
// longer move it, and they are still delivered. That offset is stored at once: the position
// stored before (past the old log's end) would otherwise be committed at a revoke or the close,
// and the next owner would skip what the new log holds below it.
// One exception: a seek back that reported a failure (a timeout) may still land later, and what
// it fetches from its offset on was taken already: skipped (nullopt), as before.
std::optional<uint64_t> PartitionIntake::track(const TopicPartition& tp, int64_t offset) {
  uint64_t& generation = generation_.at(tp);
  const bool rising = watermarks_.track(tp, offset);
  if (auto s = late_seek_.find(tp); !rising && s != late_seek_.end() && offset >= s->second) {
    return std::nullopt;
  }
  // Counted here, once per message taken: a retry fetched again after its partition's seek back
  // (a full look-ahead) was not consumed twice.
  metrics_.consumed(tp.topic);
  if (rising) return generation;
  OffsetWatermark& w = watermarks_.at(tp);
  spdlog::warn(
      "msg=partition_rewound topic={} partition={} offset={} outstanding={} action=\"taking the "
      "partition's messages again from this offset; those taken before are still delivered\"",
      tp.topic, tp.partition, offset, w.size());
  metrics_.consumer_error("partition_rewound");
  generation = next_generation_++;
  w.reset();
  (void)w.track(offset);
  late_seek_.erase(tp);
  consumer_.store_offsets({CommitPosition{tp, offset}});
  return generation;
}

void PartitionIntake::wait_until_due(ConsumedMessage& m, const TopicPartition& tp, int64_t due,
                                     int64_t now) {
  const std::size_t limit =
      std::max<std::size_t>(1, static_cast<std::size_t>(config_->worker.max_in_flight) / 2);
  auto keep = [&] {
    const auto generation = track(tp, m.offset);
    if (!generation) return;  // fetched again by a seek that failed, then landed: taken before
    waiting_[tp].emplace(WaitKey{due, *generation, m.offset}, std::move(m));
    ++waiting_size_;
  };
  if (waiting_size_ < limit || seek_failed_.count(tp)) {
    keep();
    return;
  }
  // Full: read this partition again from here once this message, or the earliest one waiting
  // (whose turn frees a place), is due; not at once when those already due wait for room under
  // max_in_flight, which would fetch this message again and again.
  int64_t resume_at = due;
  for (const auto& [waiting_tp, q] : waiting_) {
    if (!q.empty()) resume_at = std::min(resume_at, std::get<0>(q.begin()->first));
  }
  resume_at = std::max(resume_at, now + kFullBacklogPollMs);
  if (!consumer_.pause(tp, m.offset)) {
    // It would not be fetched again (the seek failed): kept here over the limit, not dropped.
    metrics_.consumer_error("seek_failed");
    seek_failed_.insert(tp);
    auto [s, fresh] = late_seek_.try_emplace(tp, m.offset);
    if (!fresh) s->second = std::min(s->second, m.offset);
    keep();
    return;
  }
  auto& p = paused_[tp];
  p.seek_offset = m.offset;
  p.resume_at_ms = resume_at;
}

void PartitionIntake::take_due(int64_t now) {
  for (auto it = waiting_.begin(); it != waiting_.end() && sink_.has_room();) {
    const TopicPartition& tp = it->first;
    auto& q = it->second;
    auto p = paused_.find(tp);
    auto gen = generation_.find(tp);
    const bool held = p != paused_.end() && p->second.for_db;
    while (!held && gen != generation_.end() && !q.empty() &&
           std::get<0>(q.begin()->first) <= now && sink_.has_room()) {
      auto node = q.extract(q.begin());
      --waiting_size_;
      ConsumedMessage& m = node.mapped();
      const uint64_t generation = std::get<1>(node.key());
      sink_.take(m, std::make_shared<MessageState>(MessageState{tp, m.offset, generation, 0, {}}));
    }
    it = q.empty() ? waiting_.erase(it) : std::next(it);
  }
}

void PartitionIntake::forget_waiting(const TopicPartition& tp) {
  if (auto q = waiting_.find(tp); q != waiting_.end()) {
    waiting_size_ -= q->second.size();
    waiting_.erase(q);
  }
}

void PartitionIntake::resume_due(int64_t now) {
  take_due(now);
  for (auto it = paused_.begin(); it != paused_.end();) {
    auto next = std::next(it);
    if (it->second.resume_at_ms > 0 && it->second.resume_at_ms <= now) {
      it->second.resume_at_ms = 0;
      resume_if_free(it);
    }
    it = next;
  }
}

void PartitionIntake::finish(const MessageState& msg) {
  auto gen = generation_.find(msg.tp);
  // A finish from before a revoke must not move the watermark of a later assignment.
  if (gen != generation_.end() && gen->second == msg.generation)
    (void)watermarks_.finish(msg.tp, msg.offset);
}

void PartitionIntake::store_offsets() { consumer_.store_offsets(watermarks_.take_committable()); }

// A partition already paused for a retry tier stays as it is and just gains the reason.
void PartitionIntake::hold_all() { hold_assigned(&Pause::for_db); }

void PartitionIntake::release_holds() { release_assigned(&Pause::for_db); }

void PartitionIntake::hold_assigned(bool Pause::*reason) {
  std::vector<TopicPartition> fresh_holds;
  for (const auto& tp : consumer_.assignment()) {
    auto [it, fresh] = paused_.try_emplace(tp);
    if (fresh) fresh_holds.push_back(tp);
    it->second.*reason = true;
  }
  consumer_.hold(fresh_holds);
}

void PartitionIntake::release_assigned(bool Pause::*reason) {
  for (auto it = paused_.begin(); it != paused_.end();) {
    auto next = std::next(it);
    if (it->second.*reason) {
      it->second.*reason = false;
      resume_if_free(it);
    }
    it = next;
  }
}

void PartitionIntake::resume_if_free(std::map<TopicPartition, Pause>::iterator it) {
  const auto& p = it->second;
  if (p.for_db || p.for_room || p.for_order || p.resume_at_ms > 0) return;
  consumer_.resume(it->first);
  paused_.erase(it);
}

void PartitionIntake::assigned(const std::vector<TopicPartition>& tps, bool hold, bool for_order) {
  for (const auto& tp : tps) {
    generation_[tp] = next_generation_++;
    paused_.erase(tp);
    late_seek_.erase(tp);
    forget_waiting(tp);
    if (hold || room_held_ || for_order) {
      // Held for Postgres, with the rest while the backlog is past its hard bound
      // (bound_backlog): a partition assigned meanwhile would grow it again, or until the key
      // order knows the keys the partition's previous owner held.
      auto& p = paused_[tp];
      p.for_db = hold;
      p.for_room = room_held_;
      p.for_order = for_order;
      consumer_.hold({tp});
    } else {
      // librdkafka keeps an application pause across revoke and reassignment, but paused_
      // forgot it at the revoke: a retry-tier partition paused here and assigned back would
      // otherwise never be resumed, stranding its retries.
      consumer_.resume(tp);
    }
  }
}

void PartitionIntake::revoked(const std::vector<TopicPartition>& tps) {
  store_offsets();
  for (const auto& tp : tps) {
    generation_.erase(tp);
    watermarks_.erase(tp);
    late_seek_.erase(tp);
    paused_.erase(tp);
    forget_waiting(tp);
    if (auto q = backlog_.find(tp); q != backlog_.end()) {
      backlog_size_ -= q->second.size();
      backlog_.erase(q);
    }
  }
}

void PartitionIntake::commit_and_close() {
  store_offsets();
  if (auto r = consumer_.commit(); !r) {
    spdlog::warn("msg=final_commit_failed error={}", log_quote(r.error().message));
  }
  consumer_.close();
}

}  // namespace hookrelay
