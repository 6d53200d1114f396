#include "admin/replay_runner.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <set>

#include "admin/replay_jobs.h"
#include "shared/clock.h"
#include "shared/log.h"
#include "shared/replay/dlq_reader.h"
#include "shared/replay/dlq_replay.h"

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
                .Register(registry)) {}

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

  const bool release = job.from_state == "parked";  // a resumed route's parked deliveries
  auto reader = KafkaDlqReader::create(config_.kafka, options_.kafka_timeout_ms, "hookrelay-admin",
                                       release ? kParkedTopic : kDlqTopic);
  if (!reader) {
    spdlog::warn("msg=replay_kafka_unavailable id={} error={}", job.id,
                 log_quote(reader.error().message));
    return;
  }
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

  PostgresReplayStore store(config_.postgres.url, job.id, job.from_state);
  ReplayClock clock{unix_now_ms, [this](int64_t ms) { wait_ms(ms); }};
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
      auto it = latest.find(item.key);
      // Per key: only a key succeeded when the replay was requested is resent (ReplayItemRow).
      options.resend_succeeded = item.resend;
      ReplayItem done = replayer.replay_key(item.key, it == latest.end() ? nullptr : it->second,
                                            options, item.marked);
      const char* status = item_status(done.outcome);
      keys_.Add({{"outcome", status}}).Increment();
      if (auto r = jobs.finish_item(job.id, item.key, status, done.detail); !r) {
        spdlog::warn("msg=replay_item_not_saved id={} error={}", job.id,
                     log_quote(r.error().message));
        return;  // the item stays pending or marked: resumed later, never produced twice
      }
      // Paced replays take long per item: the lease is renewed after every one.
      auto renewed = jobs.renew(job.id, options_.runner_id, options_.lease_seconds);
      if (!renewed || !*renewed) {
        spdlog::warn("msg=replay_lease_lost id={}", job.id);
        return;
      }
    }
  }
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
