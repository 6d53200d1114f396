// StoreBatcher: the worker's Postgres round trips, batched. Three lanes of one kind (StoreLane):
// claims, attempt records and the inbound-event audit, each with its own connection and thread
// (DbLane), so none waits behind another. A lane sends one batch at a time; whatever arrives
// meanwhile forms the next batch.
//
// Batches follow the load (worker.store_batching): a free lane sends once min_batch items are
// queued or its oldest queued item has waited max_wait_ms, so a steady stream is committed in
// batches of many rather than as soon as anything is queued; the wait is bounded by that budget.
// Attempt records, after the call and off the delivery's path, wait up to record_max_wait_ms
// instead, except a record of an ordered route (its key's next delivery waits for it): that one
// sends the lane within max_wait_ms. A batch put back after a failure goes out at once.
//
// The inbound audit rides with the claims: the events queued when a claim batch leaves go in the
// same statement (DeliveryStore::claim_and_audit), one commit for both. The audit lane sends on
// its own only what must not ride: events of a combined round trip the store refused for good
// (the claims are then sent again without them), and events no claim is left to carry.
//
// Failures are decided by what they are (Error::retryable):
//   an outage (connection lost, timeout, server shutting down, out of resources) puts the batch
//     back in front of its lane, in order, and holds the store for a second: the listener's
//     on_outage() holds every partition, on_recovered() releases them after a round trip
//     succeeds. Work already claimed goes on; results wait.
//   a permanent error (the statement refused: a constraint or a value the schema refuses,
//     SQLSTATE classes 22, 23, 42, ...) concerns some job of the batch, not the store: the batch
//     goes back and its items are sent one per round trip, so the one refused is found and
//     handed back as rejected (counted in hookrelay_worker_store_rejected_total{op}); the other
//     partitions are never held.
//
// Thread-safety: every method on the coordinator thread. A lane's round trip runs on its
// DbLane's thread, reading only the batch the lane handed it, and reports with a WorkerEvent.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/config/config.h"
#include "worker/db_lane.h"
#include "worker/delivery_store.h"
#include "worker/job.h"
#include "worker/worker_event.h"
#include "worker/worker_metrics.h"

namespace hookrelay {

// A queue of items bound for one kind of round trip, and the batch that is out.
template <class T>
class StoreLane {
 public:
  StoreLane(bool threaded, std::size_t max_batch, std::string name)
      : max_batch_(max_batch), db_(std::make_unique<DbLane>(threaded, std::move(name))) {}

  // `prompt`: this item's wait is the shorter prompt budget (set_batching), whatever the lane's.
  void push(T item, bool prompt = false) {
    queued_.push_back(std::move(item));
    prompt_queued_ |= prompt;
  }
  void set_batching(int min_batch, int max_wait_ms, int prompt_wait_ms) {
    min_batch_ = min_batch;
    max_wait_ms_ = max_wait_ms;
    prompt_wait_ms_ = prompt_wait_ms;
  }
  // Whether a free lane sends now: a full enough batch, the oldest item's wait (or the oldest
  // prompt item's) used up, or a batch put back or searched item by item. The first call that
  // sees an item queued starts its wait, also while a round trip is out (the coordinator calls
  // it in every step).
  bool due(int64_t now) {
    if (queued_.empty()) {
      waiting_since_ = prompt_since_ = -1;  // emptied without a batch leaving (drop_unclaimed)
      prompt_queued_ = false;
      return false;
    }
    if (waiting_since_ < 0) waiting_since_ = now;
    if (prompt_queued_ && prompt_since_ < 0) prompt_since_ = now;
    if (busy_) return false;
    return urgent_ || isolate_ > 0 || queued_.size() >= std::size_t(min_batch_) ||
           now - waiting_since_ >= max_wait_ms_ ||
           (prompt_since_ >= 0 && now - prompt_since_ >= prompt_wait_ms_);
  }
  bool busy() const { return busy_; }
  bool has_queued() const { return !queued_.empty(); }
  std::vector<T>& queued() { return queued_; }
  const std::vector<T>& queued() const { return queued_; }
  const std::vector<T>& out() const { return out_; }

  // Moves the next batch out: at most max_batch items, one while a refused batch is searched.
  const std::vector<T>& start() {
    busy_ = true;
    urgent_ = false;
    waiting_since_ = prompt_since_ = -1;
    prompt_queued_ = false;
    std::size_t n = isolate_ > 0 ? 1 : max_batch_;
    if (queued_.size() <= n) {
      out_ = std::move(queued_);
      queued_.clear();
    } else {
      auto split = queued_.begin() + static_cast<std::ptrdiff_t>(n);
      out_.assign(std::make_move_iterator(queued_.begin()), std::make_move_iterator(split));
      queued_.erase(queued_.begin(), split);
    }
    if (isolate_ > 0) isolate_ -= std::min(isolate_, out_.size());
    // Items left behind (more than one batch's worth) have waited already: they go next.
    if (!queued_.empty()) urgent_ = true;
    return out_;
  }
  // The batch that was out, once its round trip answered.
  std::vector<T> finish() {
    busy_ = false;
    auto batch = std::move(out_);
    out_.clear();
    return batch;
  }
  // A batch that must be sent again goes back in front, in order: nothing is lost or reordered.
  void put_back(std::vector<T> batch) {
    batch.insert(batch.end(), std::make_move_iterator(queued_.begin()),
                 std::make_move_iterator(queued_.end()));
    queued_ = std::move(batch);
    urgent_ = !queued_.empty();
  }
  // The next n items go one per round trip (after a permanent error on a batch of n).
  void isolate(std::size_t n) { isolate_ = std::max(isolate_, n); }
  void submit(std::function<void()> task) { db_->submit(std::move(task)); }

 private:
  std::size_t max_batch_;
  int min_batch_ = 1;
  int max_wait_ms_ = 0;
  int prompt_wait_ms_ = 0;
  std::size_t isolate_ = 0;
  int64_t waiting_since_ = -1;  // when the oldest queued item was first seen; -1: none queued
  int64_t prompt_since_ = -1;   // the same for the oldest prompt item
  bool prompt_queued_ = false;  // an item pushed as prompt is queued
  bool urgent_ = false;         // the queue holds items put back or left over: send at once
  bool busy_ = false;
  std::vector<T> queued_;
  std::vector<T> out_;
  std::unique_ptr<DbLane> db_;  // last: destroyed (and joined) before the batch it reads
};

struct StoreBatcherDeps {
  DeliveryStore* claim_store = nullptr;
  DeliveryStore* record_store = nullptr;
  DeliveryStore* inbound_store = nullptr;
  bool threaded = false;
  WorkerMetrics* metrics = nullptr;
  std::string worker_id;
  int lease_seconds = 0;
  uint32_t run_id = 0;  // high half of every lease token this process claims with
  // The clock of Job::send_by_ms (one that never steps; the Worker passes its own).
  std::function<int64_t()> steady_ms;
  StoreBatchingConfig batching;
  PostEvent post;
  std::function<void()> on_outage;     // the store became unusable: hold the partitions
  std::function<void()> on_recovered;  // a round trip succeeded again: release them
};

class StoreBatcher {
 public:
  explicit StoreBatcher(StoreBatcherDeps deps);

  // The lease of claims sent from now on (a configuration reload).
  void set_lease_seconds(int seconds) { d_.lease_seconds = seconds; }
  // How claim and record batches gather from now on (a configuration reload).
  void set_batching(StoreBatchingConfig b);
  void claim(std::unique_ptr<Job> job) { claims_.push(std::move(job)); }
  void record(std::unique_ptr<Job> job) {
    const bool ordered = job->d.route && job->d.route->ordered;
    records_.push(std::move(job), ordered);
  }
  void audit(InboundEventRecord event);
  // At a stop, when no claim will carry it: the audit queued goes on the audit lane's own.
  void flush_audit(int64_t now);

  // Sends the next batch of each lane that is free, unless the store is held for an outage.
  void flush_claims(int64_t now);
  void flush_records(int64_t now);

  struct Claimed {
    std::vector<std::pair<std::unique_ptr<Job>, ClaimStatus>> answered;
    std::vector<std::pair<std::unique_ptr<Job>, Error>> rejected;  // refused for good
  };
  Claimed on_claimed(const WorkerEvent& e, int64_t now);
  struct Recorded {
    std::vector<std::unique_ptr<Job>> recorded;
    // Parks the store recorded 'retrying' because their route was resumed since they were
    // decided (DeliveryStore::record): each goes to the first retry tier instead.
    std::vector<std::unique_ptr<Job>> unparked;
    std::vector<std::pair<std::unique_ptr<Job>, Error>> rejected;  // refused for good
  };
  Recorded on_recorded(const WorkerEvent& e, int64_t now);
  void on_inbound(const WorkerEvent& e, int64_t now);

  bool down() const { return down_; }
  bool busy() const { return claims_.busy() || records_.busy() || inbound_.busy(); }
  // Inbound events waiting to ride with the next claim batch.
  std::size_t audit_waiting() const { return audit_.size(); }
  bool records_waiting() const { return records_.has_queued(); }
  std::size_t records_pending() const { return records_.queued().size() + records_.out().size(); }

  // Drops queued (unclaimed) jobs `drop` selects; returns how many.
  std::size_t drop_unclaimed(const std::function<bool(const Job&)>& drop);
  // Gives back leases, on the claim lane (its connection is never used from two threads at once).
  void release(std::vector<LeaseRef> leases);
  // Raises deliveries' fences (DeliveryStore::fence), on the claim lane: ahead of any later claim
  // of the same keys. Best effort, as a release is: a fence not raised leaves older copies
  // claimable, as they were without one.
  void fence(std::vector<CopyFence> fences);

 private:
  void best_effort_done(std::string_view op, std::size_t deliveries, const Result<void>& done,
                        double seconds);
  bool usable(int64_t now) const { return !down_ || now >= retry_at_; }
  void flush_inbound(int64_t now);
  // The audit of a claim round trip that failed: back in front of the events waiting to ride
  // (an outage), or to the audit lane on its own (refused for good: the claims go again alone).
  void audit_not_stored(std::vector<InboundEventRecord> batch, const Error& e);
  // A failed round trip: puts the batch back (outage, or a batch to search item by item) and
  // returns the items refused for good. `holds`: an outage here holds the partitions.
  template <class T>
  std::vector<T> after_failure(StoreLane<T>& lane, std::vector<T> batch, const Error& e,
                               std::string_view op, int64_t now, bool holds);
  // Retryable: an outage. Returns false for a permanent error, which concerns the batch only.
  bool failed(const Error& e, std::string_view op, int64_t now);
  void ok();

  StoreBatcherDeps d_;
  uint32_t claim_seq_ = 0;                 // low half of every lease token: one per claim
  std::vector<InboundEventRecord> audit_;  // waiting to ride with the next claim batch
  std::shared_ptr<std::vector<InboundEventRecord>> audit_out_;  // riding with the claims out
  bool down_ = false;
  int64_t retry_at_ = 0;
  int64_t inbound_retry_at_ = 0;  // the audit lane's next try after a failed round trip
  // Last: their threads are joined first, before anything a round trip touches goes away.
  StoreLane<std::unique_ptr<Job>> claims_;
  StoreLane<std::unique_ptr<Job>> records_;
  StoreLane<InboundEventRecord> inbound_;
};

}  // namespace hookrelay
