#include "admin/replay_runner.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <vector>

#include "admin/replay_jobs.h"
#include "shared/clock.h"
#include "shared/log.h"
#include "shared/replay/dlq_reader.h"
#include "shared/replay/dlq_replay.h"
#include "shared/routes/route_control.h"

namespace hookrelay::admin {
namespace {

constexpr int kItemBatch = 200;

// The reasons of hookrelay_admin_replay_run_failures_total, each named as its log line
// (msg=replay_<reason>): a bounded label set, each present from the start at 0.
constexpr const char* kRunFailureReasons[] = {
    "claim_failed",       // the next replay could not be claimed (the database)
    "kafka_unavailable",  // no consumer of the replay's topic could be made
    "items_failed",       // the replay's unfinished items could not be read
    "dlq_read_failed",    // the replay's topic could not be read
    "item_retry_later",   // a key failed for a reason that may pass: left for a later run
    "item_not_saved",     // a key's outcome could not be stored
    "finish_failed",      // the replay's end could not be stored
    "runner_error",       // the run threw
    "heartbeat_failed",   // the lease heartbeat threw
};

// An item's detail when the database refused the one the replay gave (ReplayRunner::run_one).
constexpr const char* kDetailRefused =
    "(the outcome's detail was not stored: the database refused it; see the admin log)";

// The replay_items status of an outcome.
const char* item_status(ReplayOutcome o) {
  switch (o) {
    case ReplayOutcome::kReplayed:
      return "replayed";
    case ReplayOutcome::kResent:
      return "resent";
    case ReplayOutcome::kWouldReplay:
      return "would_replay";
    case ReplayOutcome::kWouldResend:
      return "would_resend";
    case ReplayOutcome::kSkippedSucceeded:
    case ReplayOutcome::kSkippedNotDead:
      return "skipped";
    case ReplayOutcome::kMissing:
      return "missing";
    case ReplayOutcome::kFailed:
      return "failed";
    case ReplayOutcome::kRetryLater:  // never stored: run_one leaves the item as it is
      return "pending";
  }
  return "failed";
}

}  // namespace

ReplayRunner::ReplayRunner(const Config& config, std::string db_url,
                           std::function<std::shared_ptr<const Config>()> current,
                           MessageProducer& producer, prometheus::Registry& registry,
                           ReplayRunnerOptions options)
    : config_(config),
      db_url_(std::move(db_url)),
      current_(std::move(current)),
      producer_(producer),
      options_(std::move(options)),
      keys_(prometheus::BuildCounter()
                .Name("hookrelay_admin_replay_keys_total")
                .Help("Keys handled by admin API replays, by outcome")
                .Register(registry)),
      leases_lost_(prometheus::BuildCounter()
                       .Name("hookrelay_admin_replay_leases_lost_total")
                       .Help("Replays this admin process stopped working because another admin "
                             "process took them over after its lease expired")
                       .Register(registry)
                       .Add({})),
      run_failures_(prometheus::BuildCounter()
                        .Name("hookrelay_admin_replay_run_failures_total")
                        .Help("Replay runs that ended before their replay finished and left it "
                              "for a later run (after a back-off), and failed claims, by reason")
                        .Register(registry)) {
  for (const char* reason : kRunFailureReasons) run_failures_.Add({{"reason", reason}});
}

ReplayRunner::~ReplayRunner() { stop(); }

void ReplayRunner::start() {
  thread_ = std::thread([this] { loop(); });
}

void ReplayRunner::stop() {
  stop_.store(true);
  notify();
  if (thread_.joinable()) thread_.join();
}

void ReplayRunner::notify() {
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

bool ReplayRunner::wait_ms(int64_t ms) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return wake_ || stop_.load(); });
  wake_ = false;
  return !stop_.load();
}

void ReplayRunner::pause_ms(int64_t ms, const std::atomic<bool>& lost) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, until, [&] { return stop_.load() || lost.load(); });
}

void ReplayRunner::count_failure(const char* reason) {
  run_failures_.Add({{"reason", reason}}).Increment();
}

void ReplayRunner::raise(std::atomic<bool>& flag) {
  {
    std::lock_guard lock(mu_);
    flag.store(true);
  }
  cv_.notify_all();
}

void ReplayRunner::loop() {
  ReplayJobs jobs(db_url_);
  // Replays whose last run failed, with when they may be claimed again.
  struct Backoff {
    int failures = 0;
    std::chrono::steady_clock::time_point until;
  };
  std::map<int64_t, Backoff> backoff;
  while (!stop_.load()) {
    const auto now = std::chrono::steady_clock::now();
    std::vector<int64_t> skip;
    for (auto it = backoff.begin(); it != backoff.end();) {
      // Forgotten long after it was due (another runner finished it, or it was deleted).
      if (now - it->second.until > std::chrono::hours(1)) {
        it = backoff.erase(it);
        continue;
      }
      if (it->second.until > now) skip.push_back(it->first);
      ++it;
    }
    int64_t claimed = 0;
    RunEnd end = RunEnd::kFailed;
    try {
      end = run_one(jobs, skip, claimed);
    } catch (const std::exception& e) {  // never lose the thread: log, wait, go on
      spdlog::error("msg=replay_runner_error id={} error={}", claimed, log_quote(e.what()));
      count_failure("runner_error");
    }
    if (claimed != 0 && end == RunEnd::kFailed && !stop_.load()) {
      // Not claimed again before its back-off: the replays after it go on meanwhile. Its lease
      // is given back, so another admin process may take it now.
      Backoff& b = backoff[claimed];
      b.failures = std::min(b.failures + 1, 30);
      int64_t delay_ms = std::max(options_.idle_poll_ms, 1);
      for (int i = 0; i < b.failures && delay_ms < options_.max_backoff_ms; ++i) delay_ms *= 2;
      delay_ms = std::min<int64_t>(delay_ms, options_.max_backoff_ms);
      b.until = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms);
      try {
        (void)jobs.release(claimed, options_.runner_id);
      } catch (const std::exception&) {  // the lease runs out instead
      }
      spdlog::warn("msg=replay_backoff id={} failures={} retry_in_ms={}", claimed, b.failures,
                   delay_ms);
    } else if (claimed != 0) {
      backoff.erase(claimed);
    }
    if (!wait_ms(options_.idle_poll_ms)) break;
  }
}

// The heartbeat of a run (run_one): renews the lease every third of it until `done`. Sets
// `lost` once another runner holds the replay, or once no renewal succeeded for a whole lease
// (the database unreachable: another runner may take the replay over as soon as it is back).
void ReplayRunner::keep_lease(int64_t id, std::atomic<bool>& lost, std::atomic<bool>& done) {
  ReplayJobs renewals(db_url_);
  const int64_t lease_ms = int64_t{options_.lease_seconds} * 1000;
  int64_t renewed_at = unix_now_ms();
  while (true) {
    pause_ms(std::max<int64_t>(lease_ms / 3, 100), done);
    if (done.load() || stop_.load()) return;
    auto renewed = renewals.renew(id, options_.runner_id, options_.lease_seconds);
    if (renewed && *renewed) {
      renewed_at = unix_now_ms();
      continue;
    }
    if (done.load()) return;  // the run ended meanwhile (a finished replay renews no more)
    if (renewed || unix_now_ms() - renewed_at >= lease_ms) {
      spdlog::warn(
          "msg=replay_lease_lost id={} error={}", id,
          log_quote(renewed ? "another runner holds it, or it ended" : renewed.error().message));
      raise(lost);
      return;
    }
  }
}

// Claims the oldest running replay (but those in `skip`) and works through its items until none
// is left, the lease is lost, or the process stops.
ReplayRunner::RunEnd ReplayRunner::run_one(ReplayJobs& jobs, const std::vector<int64_t>& skip,
                                           int64_t& claimed_id) {
  auto claimed = jobs.claim_next(options_.runner_id, options_.lease_seconds, skip);
  if (!claimed) {
    spdlog::warn("msg=replay_claim_failed error={}", log_quote(claimed.error().message));
    count_failure("claim_failed");
    return RunEnd::kIdle;
  }
  if (!*claimed) return RunEnd::kIdle;
  const ClaimedReplay job = **claimed;
  claimed_id = job.id;
  spdlog::info("msg=replay_started id={} dry_run={} rate={}", job.id, job.dry_run, job.rate);

  // Whatever one item takes (a paced wait, a slow acknowledgement, the first read of the
  // dead-letter topic), the lease is kept while this run lasts (keep_lease).
  std::atomic<bool> lost{false};
  std::atomic<bool> done{false};
  std::thread heartbeat([this, &lost, &done, id = job.id] {
    try {
      keep_lease(id, lost, done);
    } catch (const std::exception& e) {  // the run stops at its next item; the lease runs out
      spdlog::error("msg=replay_heartbeat_failed id={} error={}", id, log_quote(e.what()));
      count_failure("heartbeat_failed");
      raise(lost);
    }
  });
  struct StopHeartbeat {
    ReplayRunner* runner;
    std::atomic<bool>* done;
    std::thread* thread;
    void operator()() {
      runner->raise(*done);
      if (thread->joinable()) thread->join();
    }
    ~StopHeartbeat() { (*this)(); }
  } stop_heartbeat{this, &done, &heartbeat};
  const auto lease_lost = [&] {
    leases_lost_.Increment();
    spdlog::warn("msg=replay_left id={} reason=lease_lost", job.id);
    return RunEnd::kEnded;
  };

  const bool release = job.from_state == "parked";  // a resumed route's parked deliveries
  auto reader = KafkaDlqReader::create(config_.kafka, options_.kafka_timeout_ms, "hookrelay-admin",
                                       release ? kParkedTopic : kDlqTopic);
  if (!reader) {
    spdlog::warn("msg=replay_kafka_unavailable id={} error={}", job.id,
                 log_quote(reader.error().message));
    count_failure("kafka_unavailable");
    return RunEnd::kFailed;
  }
  // A replay of many large dead letters is not held in memory whole: past the budget each is
  // fetched when its turn comes.
  (*reader)->set_max_held_bytes(kReplayMaxHeldBytes);
  // The DLQ messages of the keys still to do, read once per run of the replay.
  std::vector<DlqMessage> dlq;
  std::set<std::string> wanted;
  const DlqSource::KeepFn keep = [&wanted](const std::string& key) {
    return wanted.count(key) > 0;
  };
  const int64_t read_start_ms = unix_now_ms();
  if (job.needs_dlq) {
    auto items = jobs.unfinished_items(job.id, 1 << 30);
    if (!items) {
      spdlog::warn("msg=replay_items_failed id={} error={}", job.id,
                   log_quote(items.error().message));
      count_failure("items_failed");
      return RunEnd::kFailed;
    }
    for (const auto& i : *items) wanted.insert(i.key);
    auto read = (*reader)->read(keep, {});
    if (!read) {
      spdlog::warn("msg=replay_dlq_read_failed id={} error={}", job.id,
                   log_quote(read.error().message));
      count_failure("dlq_read_failed");
      return RunEnd::kFailed;
    }
    dlq = std::move(*read);
  }
  const auto latest = latest_by_key(dlq);

  PostgresReplayStore store(db_url_, job.id, job.from_state, options_.runner_id);
  ReplayClock clock{unix_now_ms, [this, &lost](int64_t ms) { pause_ms(ms, lost); }};
  Replayer replayer(store, producer_, clock, reader->get());
  // A key recorded dead whose dead letter was not yet acknowledged when the read began.
  if (job.needs_dlq) replayer.reread_from(**reader, keep, read_start_ms);
  ReplayOptions options;
  options.dry_run = job.dry_run;
  options.rate_per_second = job.rate;
  options.who = job.requested_by.empty() ? "admin-api" : job.requested_by;
  options.reason = job.reason.empty() ? "admin API replay " + std::to_string(job.id) : job.reason;
  // As the CLI's replay: past the producer's own delivery timeout, so the producer reports a
  // message it could not deliver before the wait gives up on it.
  options.ack_timeout_ms = config_.kafka.produce_timeout_ms + 5000;
  options.from_state = job.from_state;
  // Its items keep each key's progress: a key that fails for a reason that may pass is left for
  // the next run (kRetryLater, below), not recorded failed.
  options.retry_transient = true;
  // Read from the current config: a reload applies from the next key.
  options.ordered_route = [this](const std::string& source, const std::string& route) {
    return route_is_ordered(*current_(), source, route);
  };

  while (!stop_.load()) {
    auto items = jobs.unfinished_items(job.id, kItemBatch);
    if (!items) {
      spdlog::warn("msg=replay_items_failed id={} error={}", job.id,
                   log_quote(items.error().message));
      count_failure("items_failed");
      return RunEnd::kFailed;
    }
    if (items->empty()) break;
    for (const auto& item : *items) {
      if (stop_.load()) return RunEnd::kEnded;
      if (lost.load()) return lease_lost();
      auto it = latest.find(item.key);
      // Per key: only a key succeeded when the replay was requested is resent (ReplayItemRow).
      options.resend_succeeded = item.resend;
      ReplayItem result = replayer.replay_key(item.key, it == latest.end() ? nullptr : it->second,
                                              options, item.marked);
      if (result.outcome == ReplayOutcome::kRetryLater) {
        // Kafka or the database unreachable mid-run. Recorded failed, the key would never be
        // replayed by this replay (a release's delivery would stay parked behind its active
        // route). Its item stays pending, or marked with its produce to redo (resumed as after a
        // restart: produced once), and the replay is tried again after a back-off, from here.
        spdlog::warn("msg=replay_item_retry_later id={} error={}", job.id,
                     log_quote(result.detail));
        count_failure("item_retry_later");
        return RunEnd::kFailed;
      }
      const char* status = item_status(result.outcome);
      auto finished = jobs.finish_item(job.id, item.key, status, result.detail, options_.runner_id);
      if (!finished && !finished.error().retryable) {
        // Refused for its values (the detail: ReplayJobs::finish_item makes it storable text,
        // but whatever else the database refuses in it): the outcome is recorded with a fixed
        // detail, so the replay goes on instead of stopping at this item for ever.
        spdlog::warn("msg=replay_item_detail_refused id={} status={} error={}", job.id, status,
                     log_quote(finished.error().message));
        finished = jobs.finish_item(job.id, item.key, status, kDetailRefused, options_.runner_id);
      }
      if (!finished) {
        spdlog::warn("msg=replay_item_not_saved id={} error={}", job.id,
                     log_quote(finished.error().message));
        count_failure("item_not_saved");
        // The item stays pending or marked: resumed later (after a back-off), never produced
        // twice.
        return RunEnd::kFailed;
      }
      // Not ours any more: the runner that took the replay over records this item.
      if (!*finished) return lease_lost();
      keys_.Add({{"outcome", status}}).Increment();
    }
  }
  stop_heartbeat();
  auto finished = jobs.finish_if_done(job.id);
  if (!finished) {
    spdlog::warn("msg=replay_finish_failed id={} error={}", job.id,
                 log_quote(finished.error().message));
    count_failure("finish_failed");
    return RunEnd::kFailed;
  }
  if (*finished) {
    auto progress = jobs.get(job.id);
    if (progress) {
      spdlog::info(
          "msg=replay_finished id={} matched={} produced={} would_produce={} skipped={} missing={} "
          "failed={}",
          job.id, progress->matched, progress->produced, progress->would_produce, progress->skipped,
          progress->missing, progress->failed);
    }
  }
  return RunEnd::kEnded;
}

}  // namespace hookrelay::admin
