// KeyOrder: per-key ordering across retries for ordered routes.
//
// A route with `ordered: true` and a named ordering key (RouteConfig::ordering_key: a header or
// a JSON pointer; ordering_key_of()) has an ordering key per event. A route ordered by the Kafka
// key has none here (expand_message): ingest keys each event by its own id, so it holds nothing
// and waits for nothing; only a retry copy from an older worker still carries one (its key may
// be held) and is kept in order as before, so keys held at an upgrade are resolved.
//
// While a key's head delivery waits in a retry tier, the key is held: later deliveries of that
// key (same route) are not attempted but wait, each recorded in Postgres with the message that
// publishes it again, so their Kafka partition moves on for every other key. When the head
// succeeds or is dead-lettered, the first waiting delivery becomes the head and is published to
// the first retry tier, due at once; when none is left the key is free. Other keys are never
// held up.
//
// The worker's hooks (worker.cpp), all on the coordinator thread:
//   must_wait(d)     a claimed delivery about to be dispatched: true when its key is held by
//                    another delivery; the worker then calls wait() instead of dispatching it.
//   wait(job, then)  records the delivery as waiting (and gives back its lease); `then` gets the
//                    job once Postgres has it: the worker finishes it, and its offset can go.
//   take_head(d)     an attempt failed and goes to a retry tier: true when that holds its key
//                    now (it was free). The worker then pulls the queued deliveries of the key
//                    out of the dispatcher into wait(), and passes the job through hold().
//   hold(job, then, lost)  makes the hold durable before the job moves on (`then`: its retry is
//                    published). When Postgres has another head for the key (another worker held
//                    it first, unseen here yet), that head is adopted, the job is set to wait
//                    behind it (as wait() would), and it goes to `lost`.
//   resolved(d)      a delivery finished without another retry (succeeded, dead, found done):
//                    when it is its key's head, the next waiting one is released.
//   poll(now)        completions of Postgres round trips and publishes, and every refresh_ms a
//                    look at Postgres: keys held by other workers (or before a restart) are
//                    learned, and heads moved on by them adopted (learned() tells the worker,
//                    which then takes the deliveries of those keys it has queued out to wait),
//                    keys whose head finished long ago with nobody releasing the
//                    next (its worker crashed) are released here, and a head released long ago
//                    whose publish was never confirmed (its worker crashed) is published again.
//
// Postgres round trips run in order on a thread of their own (a retryable error is tried again
// every half second), so nothing here blocks the coordinator; the in-memory view changes at
// once. A released message is published before its waiting row is deleted: a crash in between
// publishes it twice, and the second copy is skipped by its idempotency claim.
//
// Thread-safety: coordinator thread only, except the internal thread and the producer's
// callback, which only hand completions over (under a mutex) and wake the coordinator.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "shared/config/config.h"
#include "shared/kafka/message_producer.h"
#include "worker/job.h"
#include "worker/key_order_store.h"

namespace hookrelay {

struct KeyOrderOptions {
  int refresh_ms = 2000;
  // A head recorded as finished this long ago whose key is still held was left by a worker that
  // stopped before releasing the next: poll() releases it.
  int64_t done_for_ms = 10000;
  bool threaded = true;  // false (tests): store calls run inline, completions in poll()
};

class KeyOrder {
 public:
  using JobFn = std::function<void(std::unique_ptr<Job>)>;
  // `waiting` false: it is attempted now: it is its key's head itself (another worker released
  // it, and this worker's view of the key was old; the head is adopted), or Postgres refused it
  // for good (then out of order).
  using WaitFn = std::function<void(std::unique_ptr<Job>, bool waiting)>;

  KeyOrder(KeyOrderStore& store, MessageProducer& producer, prometheus::Registry& registry,
           std::function<void()> wake, KeyOrderOptions options = {});
  ~KeyOrder();
  KeyOrder(const KeyOrder&) = delete;
  KeyOrder& operator=(const KeyOrder&) = delete;

  // Reads the held keys from Postgres (before consuming) and starts the thread. A read that fails
  // (a statement timeout on a large key table, Postgres down) is logged and counted
  // (hookrelay_ordered_store_errors_total{op="held"}) and tried again by the first poll(), as
  // every look is: a worker does not stop for it. Partitions assigned meanwhile wait for a look
  // as after any assignment (Worker::on_assigned).
  void start();
  void stop();  // idempotent; pending round trips are dropped (their jobs' offsets stay)

  static std::optional<OrderKey> key_of(const Delivery& d);
  bool must_wait(const Delivery& d) const;
  void wait(std::unique_ptr<Job> job, WaitFn then);
  bool take_head(const Delivery& d);
  void hold(std::unique_ptr<Job> job, JobFn then, JobFn lost);
  void resolved(const Delivery& d);
  void poll(int64_t now);

  // True once after poll() learned of keys held, or heads moved on, by other workers: the
  // worker then takes the deliveries of held keys it has queued out to wait (must_wait()).
  bool learned() { return std::exchange(learned_, false); }
  // The next poll() looks at Postgres at once (partitions were just assigned: their keys may be
  // held by the workers that had them).
  // Returns the number a look started from now on will have: refreshed(n) is true once a look
  // numbered n or later has come back from Postgres.
  uint64_t refresh_soon() {
    next_refresh_ = 0;
    return refreshes_started_ + 1;
  }
  bool refreshed(uint64_t n) const { return refreshes_done_ >= n; }
  // No more looks from now on (a stop: idle() then waits only for this worker's own round trips,
  // not for a look started every refresh_ms).
  void stop_looking() { looking_ = false; }
  // A stop after a fatal error (Kafka takes no more): refused publishes are not tried again, and
  // idle() no longer waits for them. Their rows stay unconfirmed in Postgres; whoever looks at the
  // key next publishes them (publish_unreleased), as after a crash.
  void stop_republishing() { republishing_ = false; }

  bool idle() const;
  std::size_t held_keys() const { return keys_.size(); }
  // The head of a held key, "" when the key is not held (tests).
  std::string head_of(const OrderKey& key) const;

 private:
  struct KeyState {
    std::string head;
    int pending = 0;         // round trips of this key not yet completed here
    int waits_since = 0;     // wait()s issued since the last advance was issued
    bool advancing = false;  // an advance is under way
  };
  using Completion = std::function<void()>;
  void submit(std::function<Completion()> op);
  template <class T, class F>
  Result<T> retrying(const char* what, F&& f);
  void advance(const OrderKey& key);
  // The row that makes `job` wait (its retry message, due once released), and the lease that
  // setting it to wait gives back (0: its record gives it back).
  static WaitingDelivery waiting_row(const Job& job);
  static int64_t waiting_lease(const Job& job);
  void publish(WaitingDelivery w, int failures = 0);
  void done(Completion c);  // any thread
  void refresh();
  void merge(const std::vector<HeldKey>& held);
  void publish_unreleased(const HeldKey& h);
  void lane();

  KeyOrderStore& store_;
  MessageProducer& producer_;
  std::function<void()> wake_;
  KeyOrderOptions options_;
  std::map<OrderKey, KeyState> keys_;
  std::unordered_map<Job*, std::unique_ptr<Job>> jobs_;  // with the store
  struct Refused {
    int64_t due = 0;  // 0: from the next poll() on, one delay after it
    int failures = 1;
    WaitingDelivery row;
  };
  std::vector<Refused> republish_;  // refused publishes, each tried again at its due time
  bool republishing_ = true;
  std::set<int64_t> unconfirmed_;  // rows published (or to be) whose released() is not yet done
  int64_t next_refresh_ = 0;
  bool refreshing_ = false;
  bool looking_ = true;
  uint64_t refreshes_started_ = 0;
  uint64_t refreshes_done_ = 0;  // the number of the latest look that came back
  bool learned_ = false;
  int publishing_ = 0;

  prometheus::Gauge* waiting_gauge_;
  prometheus::Gauge* held_gauge_;
  prometheus::Family<prometheus::Counter>* waits_;
  prometheus::Family<prometheus::Counter>* releases_;
  prometheus::Family<prometheus::Counter>* store_errors_;
  prometheus::Counter* publish_failures_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // under mu_: the thread's queue
  std::vector<Completion> completions_;      // under mu_: for the coordinator
  int tasks_running_ = 0;                    // under mu_
  bool stopping_ = false;                    // under mu_
  std::thread thread_;
};

}  // namespace hookrelay
