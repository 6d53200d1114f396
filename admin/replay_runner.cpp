#include "admin/replay_runner.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <set>

#include "admin/replay_jobs.h"
#include "shared/clock.h"
#include "shared/log.h"
#include "shared/replay/dlq_reader.h"
#include "shared/replay/dlq_replay.h"
#include "shared/routes/route_control.h"

namespace hookrelay::admin {
namespace {

constexpr int kItemBatch = 200;

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
  }
  return "failed";
}

}  // namespace

ReplayRunner::ReplayRunner(const Config& config, MessageProducer& producer,
                           prometheus::Registry& registry, ReplayRunnerOptions options)
    : config_(config),
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
                       .Add({})) {}

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

void ReplayRunner::raise(std::atomic<bool>& flag) {
  {
    std::lock_guard lock(mu_);
    flag.store(true);
  }
  cv_.notify_all();
}

void ReplayRunner::loop() {
  while (!stop_.load()) {
    try {
      run_one();
    } catch (const std::exception& e) {  // never lose the thread: log, wait, go on
      spdlog::error("msg=replay_runner_error error={}", log_quote(e.what()));
    }
    if (!wait_ms(options_.idle_poll_ms)) break;
  }
}

// The heartbeat of a run (run_one): renews the lease every third of it until `done`. Sets
// `lost` once another runner holds the replay, or once no renewal succeeded for a whole lease
// (the database unreachable: another runner may take the replay over as soon as it is back).
void ReplayRunner::keep_lease(int64_t id, std::atomic<bool>& lost, std::atomic<bool>& done) {
  ReplayJobs renewals(config_.postgres.url);
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

// Claims the oldest running replay and works through its items until none is left, the lease
// is lost, or the process stops.
void ReplayRunner::run_one() {
  ReplayJobs jobs(config_.postgres.url);
  auto claimed = jobs.claim_next(options_.runner_id, options_.lease_seconds);
  if (!claimed) {
    spdlog::warn("msg=replay_claim_failed error={}", log_quote(claimed.error().message));
    return;
  }
  if (!*claimed) return;
  const ClaimedReplay job = **claimed;
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
  };

  const bool release = job.from_state == "parked";  // a resumed route's parked deliveries
  auto reader = KafkaDlqReader::create(config_.kafka, options_.kafka_timeout_ms, "hookrelay-admin",
                                       release ? kParkedTopic : kDlqTopic);
  if (!reader) {
    spdlog::warn("msg=replay_kafka_unavailable id={} error={}", job.id,
                 log_quote(reader.error().message));
    return;
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
    if (!items) return;
    for (const auto& i : *items) wanted.insert(i.key);
    auto read = (*reader)->read(keep, {});
    if (!read) {
      spdlog::warn("msg=replay_dlq_read_failed id={} error={}", job.id,
                   log_quote(read.error().message));
      return;
    }
    dlq = std::move(*read);
  }
  const auto latest = latest_by_key(dlq);

  PostgresReplayStore store(config_.postgres.url, job.id, job.from_state, options_.runner_id);
  ReplayClock clock{unix_now_ms, [this, &lost](int64_t ms) { pause_ms(ms, lost); }};
  Replayer replayer(store, producer_, clock, reader->get());
  // A key recorded dead whose dead letter was not yet acknowledged when the read began.
  if (job.needs_dlq) replayer.reread_from(**reader, keep, read_start_ms);
  ReplayOptions options;
  options.dry_run = job.dry_run;
  options.rate_per_second = job.rate;
  options.who = job.requested_by.empty() ? "admin-api" : job.requested_by;
  options.reason = job.reason.empty() ? "admin API replay " + std::to_string(job.id) : job.reason;
  options.ack_timeout_ms = options_.kafka_timeout_ms;
  options.from_state = job.from_state;
  options.ordered_route = [this](const std::string& source, const std::string& route) {
    return route_is_ordered(config_, source, route);
  };

  while (!stop_.load()) {
    auto items = jobs.unfinished_items(job.id, kItemBatch);
    if (!items) {
      spdlog::warn("msg=replay_items_failed id={} error={}", job.id,
                   log_quote(items.error().message));
      return;
    }
    if (items->empty()) break;
    for (const auto& item : *items) {
      if (stop_.load()) return;
      if (lost.load()) return lease_lost();
      auto it = latest.find(item.key);
      // Per key: only a key succeeded when the replay was requested is resent (ReplayItemRow).
      options.resend_succeeded = item.resend;
      ReplayItem result = replayer.replay_key(item.key, it == latest.end() ? nullptr : it->second,
                                              options, item.marked);
      const char* status = item_status(result.outcome);
      auto finished = jobs.finish_item(job.id, item.key, status, result.detail, options_.runner_id);
      if (!finished) {
        spdlog::warn("msg=replay_item_not_saved id={} error={}", job.id,
                     log_quote(finished.error().message));
        return;  // the item stays pending or marked: resumed later, never produced twice
      }
      // Not ours any more: the runner that took the replay over records this item.
      if (!*finished) return lease_lost();
      keys_.Add({{"outcome", status}}).Increment();
    }
  }
  stop_heartbeat();
  if (auto finished = jobs.finish_if_done(job.id); finished && *finished) {
    auto progress = jobs.get(job.id);
    if (progress) {
      spdlog::info(
          "msg=replay_finished id={} matched={} produced={} would_produce={} skipped={} missing={} "
          "failed={}",
          job.id, progress->matched, progress->produced, progress->would_produce, progress->skipped,
          progress->missing, progress->failed);
    }
  }
}

}  // namespace hookrelay::admin
