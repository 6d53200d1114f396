#include "worker/key_order.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <utility>

#include "shared/kafka/wire_contract.h"
#include "shared/log.h"
#include "worker/outbound_request.h"

namespace hookrelay {
namespace {

constexpr int kRetryPauseMs = 500;
// A refused publish is tried again after 1 s, doubling to 60 s while it keeps being refused: a
// refusal that never ends (a message larger than the topic takes, an ACL) costs a produce a minute.
constexpr int64_t kRepublishDelayMs = 1000;
constexpr int64_t kRepublishMaxDelayMs = 60'000;

int64_t republish_delay_ms(int failures) {
  return failures >= 7 ? kRepublishMaxDelayMs
                       : std::min(kRepublishMaxDelayMs, kRepublishDelayMs << (failures - 1));
}

}  // namespace

KeyOrder::KeyOrder(KeyOrderStore& store, MessageProducer& producer, prometheus::Registry& registry,
                   std::function<void()> wake, KeyOrderOptions options)
    : store_(store), producer_(producer), wake_(std::move(wake)), options_(options) {
  waiting_gauge_ = &prometheus::BuildGauge()
                        .Name("hookrelay_ordered_waiting")
                        .Help(
                            "Deliveries of ordered routes waiting behind their key's head, "
                            "across every worker (as Postgres had them at the last refresh)")
                        .Register(registry)
                        .Add({});
  held_gauge_ = &prometheus::BuildGauge()
                     .Name("hookrelay_ordered_held_keys")
                     .Help(
                         "Ordering keys held because their head delivery waits in a retry "
                         "tier, as this worker knows them")
                     .Register(registry)
                     .Add({});
  waits_ = &prometheus::BuildCounter()
                .Name("hookrelay_ordered_waits_total")
                .Help("Deliveries of ordered routes set to wait behind their key's head")
                .Register(registry);
  releases_ = &prometheus::BuildCounter()
                   .Name("hookrelay_ordered_releases_total")
                   .Help(
                       "Waiting deliveries released, in order, after their key's head "
                       "succeeded or was dead-lettered")
                   .Register(registry);
  store_errors_ = &prometheus::BuildCounter()
                       .Name("hookrelay_ordered_store_errors_total")
                       .Help(
                           "Failed Postgres round trips of ordered routes' key order, by "
                           "operation (each try of one retried)")
                       .Register(registry);
  publish_failures_ = &prometheus::BuildCounter()
                           .Name("hookrelay_ordered_release_publish_failures_total")
                           .Help(
                               "Publishes of released ordered deliveries that Kafka refused (each "
                               "is tried again, after 1 s doubling to 60 s)")
                           .Register(registry)
                           .Add({});
}

KeyOrder::~KeyOrder() { stop(); }

void KeyOrder::start() {
  if (auto held = store_.held(options_.done_for_ms); held) {
    merge(*held);
  } else {
    // Not fatal: a key table too large or slow to read in time would otherwise stop every
    // worker that starts, again at each restart. The first poll() looks again (next_refresh_ 0).
    store_errors_->Add({{"op", "held"}}).Increment();
    spdlog::error(
        "msg=ordered_start_look_failed code={} error={} action=\"consuming; looking again at "
        "once and every {} ms\"",
        held.error().code, log_quote(held.error().message), options_.refresh_ms);
  }
  if (options_.threaded) thread_ = std::thread([this] { lane(); });
}

void KeyOrder::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    tasks_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void KeyOrder::lane() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (stopping_) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
      ++tasks_running_;
    }
    task();
    std::lock_guard lock(mu_);
    --tasks_running_;
  }
}

void KeyOrder::submit(std::function<Completion()> op) {
  if (!options_.threaded) {
    done(op());
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    tasks_.emplace_back([this, op = std::move(op)] { done(op()); });
  }
  cv_.notify_one();
}

void KeyOrder::done(Completion c) {
  {
    std::lock_guard lock(mu_);
    completions_.push_back(std::move(c));
  }
  if (wake_) wake_();
}

template <class T, class F>
Result<T> KeyOrder::retrying(const char* what, F&& f) {
  for (;;) {
    Result<T> r = f();
    if (r) return r;
    store_errors_->Add({{"op", what}}).Increment();
    if (!r.error().retryable || !options_.threaded) return r;
    spdlog::warn("msg=ordered_key_store_retry op={} code={} error={}", what, r.error().code,
                 log_quote(r.error().message));
    {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, std::chrono::milliseconds(kRetryPauseMs),
                       [this] { return stopping_; }))
        return r;
    }
  }
}

std::optional<OrderKey> KeyOrder::key_of(const Delivery& d) {
  if (!d.ordered || d.ordering_key.empty() || d.kind != "webhook") return std::nullopt;
  return OrderKey{d.source, d.destination, d.ordering_key};
}

bool KeyOrder::must_wait(const Delivery& d) const {
  auto k = key_of(d);
  if (!k) return false;
  auto it = keys_.find(*k);
  return it != keys_.end() && it->second.head != d.key;
}

std::string KeyOrder::head_of(const OrderKey& key) const {
  auto it = keys_.find(key);
  return it == keys_.end() ? std::string() : it->second.head;
}

WaitingDelivery KeyOrder::waiting_row(const Job& job) {
  WaitingDelivery w;
  w.key = *key_of(job.d);
  w.delivery_key = job.d.key;
  w.topic = retry_topic(0);
  AttemptHistory h = job.history;
  if (!job.decision.attempt) {  // not attempted this turn (an attempt's history is set)
    h.attempts_made = job.d.attempt - 1;
    h.first_attempt_at_ms = job.d.first_attempt_at_ms;
  }
  h.due_at_ms = 0;  // due as soon as it is released
  w.headers = redelivery_headers(job.d, h);
  if (job.d.body) w.body = *job.d.body;
  return w;
}

int64_t KeyOrder::waiting_lease(const Job& job) {
  // An attempt's lease is given back by its record, which may come after the wait.
  return job.decision.attempt ? 0 : job.lease_token;
}

void KeyOrder::wait(std::unique_ptr<Job> job, WaitFn then) {
  OrderKey k = *key_of(job->d);
  auto& st = keys_[k];
  ++st.pending;
  ++st.waits_since;
  WaitingDelivery w = waiting_row(*job);
  const int64_t token = waiting_lease(*job);
  Job* raw = job.get();
  jobs_.emplace(raw, std::move(job));
  held_gauge_->Set(static_cast<double>(keys_.size()));
  submit([this, w = std::move(w), token, raw, then = std::move(then)]() -> Completion {
    auto r = retrying<bool>("enqueue", [&] { return store_.enqueue(w, token); });
    return [this, r, raw, then, k = w.key] {
      auto node = jobs_.extract(raw);
      auto it = keys_.find(k);
      if (it != keys_.end()) --it->second.pending;
      if (r && !*r) {
        // The key's head itself, released by a worker whose view was newer than this one's:
        // this worker now knows it as the head, and it is attempted.
        const std::string& head = node.mapped()->d.key;
        spdlog::info("msg=ordered_head_adopted source={} route={} key={}", k.source, k.route,
                     log_quote(head));
        if (it != keys_.end() && !it->second.advancing) it->second.head = head;
        then(std::move(node.mapped()), false);
        return;
      }
      if (!r) {
        // Not recorded: it cannot wait, so it is attempted now, out of order rather than lost.
        spdlog::error("msg=ordered_wait_failed key={} code={} error={} action=attempting_now",
                      log_quote(node.mapped()->d.key), r.error().code,
                      log_quote(r.error().message));
        then(std::move(node.mapped()), false);
        return;
      }
      waits_->Add({{"source", k.source}, {"route", k.route}}).Increment();
      then(std::move(node.mapped()), true);
    };
  });
}

bool KeyOrder::take_head(const Delivery& d) {
  auto k = key_of(d);
  if (!k || keys_.count(*k)) return false;
  keys_[*k].head = d.key;
  held_gauge_->Set(static_cast<double>(keys_.size()));
  return true;
}

void KeyOrder::hold(std::unique_ptr<Job> job, JobFn then, JobFn lost) {
  OrderKey k = *key_of(job->d);
  auto& st = keys_[k];
  ++st.pending;
  std::string head = st.head;
  WaitingDelivery otherwise = waiting_row(*job);
  const int64_t token = waiting_lease(*job);
  Job* raw = job.get();
  jobs_.emplace(raw, std::move(job));
  submit([this, k, head, otherwise = std::move(otherwise), token, raw, then = std::move(then),
          lost = std::move(lost)]() -> Completion {
    auto r = retrying<std::string>("hold", [&] { return store_.hold(k, head, otherwise, token); });
    return [this, r, raw, then, lost, k, head] {
      auto node = jobs_.extract(raw);
      auto it = keys_.find(k);
      if (it != keys_.end()) --it->second.pending;
      if (!r) {
        spdlog::error("msg=ordered_hold_failed key={} code={} error={}",
                      log_quote(node.mapped()->d.key), r.error().code,
                      log_quote(r.error().message));
      } else if (*r != head) {
        // Another worker held the key first: its head is the key's, and this delivery waits
        // behind it (the store appended it).
        spdlog::info("msg=ordered_hold_lost source={} route={} key={} head={}", k.source, k.route,
                     log_quote(head), log_quote(*r));
        if (it != keys_.end() && !it->second.advancing && it->second.head == head) {
          it->second.head = *r;
          learned_ = true;
        }
        waits_->Add({{"source", k.source}, {"route", k.route}}).Increment();
        lost(std::move(node.mapped()));
        return;
      }
      then(std::move(node.mapped()));
    };
  });
}

void KeyOrder::resolved(const Delivery& d) {
  auto k = key_of(d);
  if (!k) return;
  auto it = keys_.find(*k);
  if (it == keys_.end() || it->second.head != d.key || it->second.advancing) return;
  advance(*k);
}

void KeyOrder::advance(const OrderKey& key) {
  auto& state = keys_[key];
  state.advancing = true;
  state.waits_since = 0;
  ++state.pending;
  submit([this, key, head = state.head]() -> Completion {
    auto r = retrying<KeyAdvance>("advance", [&] { return store_.advance(key, head); });
    return [this, key, r = std::make_shared<decltype(r)>(std::move(r))]() mutable {
      auto it = keys_.find(key);
      if (it == keys_.end()) return;
      auto& st = it->second;
      --st.pending;
      st.advancing = false;
      if (!*r) {
        // Left held: the refresh finds its head finished and releases the next.
        spdlog::error("msg=ordered_release_failed source={} route={} code={} error={}", key.source,
                      key.route, r->error().code, log_quote(r->error().message));
        return;
      }
      if (auto& next = (*r)->next) {
        st.head = next->delivery_key;
        releases_->Add({{"source", key.source}, {"route", key.route}}).Increment();
        publish(std::move(*next));
        return;
      }
      if (const auto& held_by = (*r)->held_by) {
        // Another worker moved the key on (or held it after it was let go): it is still held,
        // by that head. Forgotten here, the key's deliveries this worker claims before its next
        // refresh would be sent at once, beside that head.
        st.head = *held_by;
        learned_ = true;
        return;
      }
      if (st.waits_since > 0) {  // set to wait after the advance was sent: release it too
        st.head.clear();
        advance(key);
        return;
      }
      if (st.pending == 0) keys_.erase(it);
      held_gauge_->Set(static_cast<double>(keys_.size()));
    };
  });
}

void KeyOrder::publish(WaitingDelivery w, int failures) {
  ++publishing_;
  unconfirmed_.insert(w.id);
  auto row = std::make_shared<WaitingDelivery>(std::move(w));
  producer_.produce(
      {row->topic, row->delivery_key, row->body, &row->headers},
      [this, row, failures](const Result<ProducedAt>& r) {
        done([this, row, failures, ok = r.has_value(),
              error = r ? std::string() : r.error().message] {
          --publishing_;
          if (!ok) {
            publish_failures_->Increment();
            spdlog::warn(
                "msg=ordered_release_publish_failed key={} error={} failures={} retry_in_ms={}",
                log_quote(row->delivery_key), log_quote(error), failures + 1,
                republish_delay_ms(failures + 1));
            republish_.push_back({0, failures + 1, std::move(*row)});
            return;
          }
          const int64_t id = row->id;
          submit([this, id]() -> Completion {
            auto gone = retrying<void>("released", [&] { return store_.released(id); });
            if (!gone) {
              spdlog::error("msg=ordered_release_not_confirmed id={} error={}", id,
                            log_quote(gone.error().message));
            }
            return [this, id] { unconfirmed_.erase(id); };
          });
        });
      });
}

void KeyOrder::poll(int64_t now) {
  std::vector<Completion> ready;
  {
    std::lock_guard lock(mu_);
    ready.swap(completions_);
  }
  for (auto& c : ready) c();
  if (republishing_ && !republish_.empty()) {
    std::vector<Refused> due;
    for (auto it = republish_.begin(); it != republish_.end();) {
      if (it->due == 0) it->due = now + republish_delay_ms(it->failures);
      if (it->due > now) {
        ++it;
        continue;
      }
      due.push_back(std::move(*it));
      it = republish_.erase(it);
    }
    for (auto& r : due) publish(std::move(r.row), r.failures);
  }
  if (looking_ && now >= next_refresh_ && !refreshing_) {
    next_refresh_ = now + options_.refresh_ms;
    refreshing_ = true;
    const uint64_t number = ++refreshes_started_;
    submit([this, number]() -> Completion {
      auto held = store_.held(options_.done_for_ms);
      return [this, number, held = std::make_shared<decltype(held)>(std::move(held))] {
        refreshing_ = false;
        if (*held) {
          merge(**held);
          refreshes_done_ = number;
          return;
        }
        // Tried again at the next refresh; meanwhile keys held elsewhere are not learned, heads
        // whose worker stopped are not released, and unconfirmed releases not published again.
        store_errors_->Add({{"op", "held"}}).Increment();
        spdlog::warn("msg=ordered_refresh_failed code={} error={} retry_in_ms={}",
                     (*held).error().code, log_quote((*held).error().message), options_.refresh_ms);
      };
    });
  }
}

void KeyOrder::merge(const std::vector<HeldKey>& held) {
  int64_t waiting = 0;
  std::set<OrderKey> known;
  for (auto& h : held) {
    waiting += h.waiting;
    known.insert(h.key);
    auto it = keys_.find(h.key);
    if (it == keys_.end()) {  // held by another worker, or before this one started
      keys_[h.key].head = h.head;
      learned_ = true;
      if (h.head_done) advance(h.key);
      publish_unreleased(h);
      continue;
    }
    if (it->second.advancing) continue;
    if (it->second.head != h.head) {
      // Postgres has another head: another worker moved the key on (or held it first). With
      // nothing of this worker's under way for the key, Postgres is right: this view is old.
      if (it->second.pending > 0) continue;
      it->second.head = h.head;
      learned_ = true;
    }
    if (h.head_done) advance(h.key);
    publish_unreleased(h);
  }
  // Freed elsewhere: a key here with nothing of its own under way that Postgres no longer holds.
  for (auto it = keys_.begin(); it != keys_.end();) {
    if (!known.count(it->first) && it->second.pending == 0 && !it->second.advancing)
      it = keys_.erase(it);
    else
      ++it;
  }
  waiting_gauge_->Set(static_cast<double>(waiting));
  held_gauge_->Set(static_cast<double>(keys_.size()));
}

// The head's release was left unconfirmed by a worker that stopped: published again, it is
// attempted in its turn (or skipped by its claim as already done), and the key moves on from it
// as from any head. Skipping it instead would send the next of the key first.
void KeyOrder::publish_unreleased(const HeldKey& h) {
  if (h.head_done || !h.unreleased || unconfirmed_.count(h.unreleased->id)) return;
  spdlog::warn(
      "msg=ordered_head_published_again source={} route={} key={} reason=\"its release "
      "was never confirmed\"",
      h.key.source, h.key.route, log_quote(h.unreleased->delivery_key));
  publish(*h.unreleased);
}

bool KeyOrder::idle() const {
  std::lock_guard lock(mu_);
  // Round trips without a job count too: an advance still queued at a stop would leave its key's
  // next delivery unreleased until another worker's look finds the head finished (10 s or more).
  return jobs_.empty() && publishing_ == 0 && (republish_.empty() || !republishing_) &&
         completions_.empty() && tasks_.empty() && tasks_running_ == 0;
}

}  // namespace hookrelay
