#include "admin/replay_runner.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
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

// A replay's pacing: the time between two keys it produces. Replays stored before rate had a
// minimum may ask for less than kMinReplayRate: at most a day, as the Replayer's own pacing.
double pace_interval_ms(double rate) {
  if (rate <= 0) return 0;
  return std::min(1000.0 / rate, 24.0 * 3600 * 1000);
}

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

// A replay this runner holds between its turns: what its first turn read and made, and when its
// next key is due (its pacing).
struct ReplayRunner::Session {
  ClaimedReplay job;
  std::shared_ptr<Lease> lease;
  std::unique_ptr<KafkaDlqReader> reader;
  std::vector<DlqMessage> dlq;  // the messages of the keys still to do, read once
  std::set<std::string> wanted;
  std::map<std::string, const DlqMessage*> latest;  // into dlq
  std::unique_ptr<PostgresReplayStore> store;
  std::unique_ptr<Replayer> replayer;
  ReplayOptions options;
  double interval_ms = 0;  // 0: unpaced
  double next_due_ms = 0;  // Unix ms: when its next key may be produced
};

struct ReplayRunner::Lease {
  std::atomic<bool> lost{false};
  int64_t renewed_ms = 0;  // the last renewal (or the claim); keep_leases only
};

ReplayRunner::~ReplayRunner() { stop(); }

void ReplayRunner::start() {
  thread_ = std::thread([this] { loop(); });
  heartbeat_ = std::thread([this] {
    while (!stop_.load()) {
      try {
        keep_leases();
      } catch (const std::exception& e) {  // never lose the heartbeat: the leases would lapse
        spdlog::error("msg=replay_heartbeat_failed error={}", log_quote(e.what()));
        count_failure("heartbeat_failed");
        std::atomic<bool> never{false};
        pause_ms(100, never);
      }
    }
  });
}

void ReplayRunner::stop() {
  stop_.store(true);
  notify();
  if (thread_.joinable()) thread_.join();
  if (heartbeat_.joinable()) heartbeat_.join();
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

std::shared_ptr<ReplayRunner::Lease> ReplayRunner::hold_lease(int64_t id) {
  auto lease = std::make_shared<Lease>();
  lease->renewed_ms = unix_now_ms();  // claimed just now
  std::lock_guard lock(leases_mu_);
  leases_[id] = lease;
  return lease;
}

void ReplayRunner::drop_lease(int64_t id) {
  std::lock_guard lock(leases_mu_);  // waits for a renewal of it in progress
  leases_.erase(id);
}

void ReplayRunner::forget(Sessions& held, int64_t id, std::map<int64_t, double>& pacing) {
  drop_lease(id);
  auto it = held.find(id);
  if (it == held.end()) return;
  if (it->second->next_due_ms > 0) pacing[id] = it->second->next_due_ms;
  held.erase(it);
}

// Renews the lease of every held replay every third of the lease. Sets a replay's `lost` once
// another runner holds it (or it ended, or was deleted), or once no renewal succeeded for a whole
// lease (the database unreachable: another runner may take the replay over as soon as it is
// back); the runner leaves such a replay at its next item or turn.
void ReplayRunner::keep_leases() {
  ReplayJobs renewals(db_url_);
  const int64_t lease_ms = int64_t{options_.lease_seconds} * 1000;
  while (!stop_.load()) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(lease_ms / 3, 100)),
                   [this] { return stop_.load(); });
    }
    std::vector<int64_t> ids;
    {
      std::lock_guard lock(leases_mu_);
      for (const auto& [id, lease] : leases_) ids.push_back(id);
    }
    for (const int64_t id : ids) {
      if (stop_.load()) return;
      // Held through the renewal: a replay dropped meanwhile (finished, failed, given back) is
      // not renewed after it was dropped.
      std::lock_guard lock(leases_mu_);
      auto it = leases_.find(id);
      if (it == leases_.end() || it->second->lost.load()) continue;
      Lease& lease = *it->second;
      Result<bool> renewed = false;
      try {
        renewed = renewals.renew(id, options_.runner_id, options_.lease_seconds);
      } catch (const std::exception& e) {
        spdlog::error("msg=replay_heartbeat_failed id={} error={}", id, log_quote(e.what()));
        count_failure("heartbeat_failed");
        renewed = fail("heartbeat_failed", e.what());
      }
      if (renewed && *renewed) {
        lease.renewed_ms = unix_now_ms();
        continue;
      }
      if (renewed || unix_now_ms() - lease.renewed_ms >= lease_ms) {
        spdlog::warn(
            "msg=replay_lease_lost id={} error={}", id,
            log_quote(renewed ? "another runner holds it, or it ended" : renewed.error().message));
        raise(lease.lost);
      }
    }
  }
}

void ReplayRunner::loop() {
  ReplayJobs jobs(db_url_);
  // Replays whose last run failed, with when they may be claimed again.
  struct Backoff {
    int failures = 0;
    std::chrono::steady_clock::time_point until;
  };
  std::map<int64_t, Backoff> backoff;
  Sessions held;
  // The replays that had their turn in this round: passed over until every other had its own.
  std::set<int64_t> served;
  // When the next key is due of replays this runner held and gave up (Unix ms), for when it
  // takes them again.
  std::map<int64_t, double> pacing;
  bool new_round = false;
  while (!stop_.load()) {
    const auto now = std::chrono::steady_clock::now();
    const auto now_ms = static_cast<double>(unix_now_ms());
    // Held replays another runner took over (or that ended, or were deleted) are left.
    for (auto it = held.begin(); it != held.end();) {
      if (!it->second->lease->lost.load()) {
        ++it;
        continue;
      }
      leases_lost_.Increment();
      spdlog::warn("msg=replay_left id={} reason=lease_lost", it->first);
      const int64_t id = it->first;
      ++it;
      forget(held, id, pacing);
      served.erase(id);
    }
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
    // A held replay whose next key is not due yet waits without its turn.
    double next_due_ms = 0;
    for (const auto& [id, session] : held) {
      if (session->next_due_ms > now_ms) {
        skip.push_back(id);
        if (next_due_ms == 0 || session->next_due_ms < next_due_ms)
          next_due_ms = session->next_due_ms;
      }
    }
    skip.insert(skip.end(), served.begin(), served.end());
    for (auto it = pacing.begin(); it != pacing.end();) {
      it = it->second < now_ms - 3600.0 * 1000 ? pacing.erase(it) : std::next(it);
    }

    int64_t claimed = 0;
    TurnEnd end = TurnEnd::kFailed;
    try {
      end = take_turn(jobs, held, skip, pacing, claimed);
    } catch (const std::exception& e) {  // never lose the thread: log, wait, go on
      spdlog::error("msg=replay_runner_error id={} error={}", claimed, log_quote(e.what()));
      count_failure("runner_error");
    }
    if (end == TurnEnd::kIdle && !served.empty() && !new_round) {
      // Every replay that may be taken had its turn: the next round starts now.
      served.clear();
      new_round = true;
      continue;
    }
    new_round = false;
    if (end == TurnEnd::kYielded) {
      served.insert(claimed);
      continue;
    }
    if (claimed != 0) served.erase(claimed);
    if (end == TurnEnd::kEnded) {
      if (claimed != 0) {
        forget(held, claimed, pacing);
        pacing.erase(claimed);
        backoff.erase(claimed);
      }
      continue;
    }
    if (claimed != 0 && end == TurnEnd::kFailed && !stop_.load()) {
      // Not claimed again before its back-off: the replays after it go on meanwhile. Its lease
      // is given back, so another admin process may take it now.
      forget(held, claimed, pacing);
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
    }
    // Nothing to do now (or a failure): until the next key of a paced replay is due, a replay is
    // stored (notify), or the next look.
    int64_t wait = options_.idle_poll_ms;
    if (end == TurnEnd::kIdle && next_due_ms > 0) {
      wait = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(next_due_ms - now_ms)), 1, wait);
    }
    if (!wait_ms(wait)) break;
  }
}

ReplayRunner::TurnEnd ReplayRunner::take_turn(ReplayJobs& jobs, Sessions& held,
                                              const std::vector<int64_t>& skip,
                                              std::map<int64_t, double>& pacing,
                                              int64_t& claimed_id) {
  // At its limit the runner takes only the replays it holds, and a new release when one of them
  // is an ordinary replay whose place the release can take.
  std::optional<ReplayJobs::ClaimLimit> limit;
  int64_t evictable = 0;
  if (held.size() >= kMaxHeldReplays) {
    limit.emplace();
    for (const auto& [id, session] : held) {
      limit->held.push_back(id);
      if (session->job.from_state != "parked" && evictable == 0) evictable = id;
    }
    limit->new_releases = evictable != 0;
  }
  auto claimed =
      jobs.claim_next(options_.runner_id, options_.lease_seconds, skip, limit ? &*limit : nullptr);
  if (!claimed) {
    spdlog::warn("msg=replay_claim_failed error={}", log_quote(claimed.error().message));
    count_failure("claim_failed");
    return TurnEnd::kClaimFailed;
  }
  if (!*claimed) return TurnEnd::kIdle;
  claimed_id = (*claimed)->id;
  auto it = held.find(claimed_id);
  if (it != held.end()) return work(jobs, *it->second);

  if (held.size() >= kMaxHeldReplays && evictable != 0) {
    // A release takes an ordinary replay's place: that one is given back between its turns (no
    // item of it in progress), for this runner or another to take up again.
    spdlog::info("msg=replay_set_aside id={} for_release={}", evictable, claimed_id);
    forget(held, evictable, pacing);
    (void)jobs.release(evictable, options_.runner_id);
  }
  auto session = std::make_unique<Session>();
  session->job = **claimed;
  session->lease = hold_lease(claimed_id);
  session->interval_ms = pace_interval_ms(session->job.rate);
  if (auto p = pacing.find(claimed_id); p != pacing.end()) {
    session->next_due_ms = p->second;
    pacing.erase(p);
  }
  Session& s = *session;
  held.emplace(claimed_id, std::move(session));
  spdlog::info("msg=replay_started id={} dry_run={} rate={}", s.job.id, s.job.dry_run, s.job.rate);
  if (const TurnEnd opened = open(jobs, s); opened != TurnEnd::kYielded) return opened;
  return work(jobs, s);
}

// Reads the messages of the replay's keys still to do (dead letters, or a release's parked
// messages) and makes its Replayer. kYielded when it may be worked.
ReplayRunner::TurnEnd ReplayRunner::open(ReplayJobs& jobs, Session& s) {
  const ClaimedReplay& job = s.job;
  const bool release = job.from_state == "parked";  // a resumed route's parked deliveries
  auto reader = KafkaDlqReader::create(config_.kafka, options_.kafka_timeout_ms, "hookrelay-admin",
                                       release ? kParkedTopic : kDlqTopic);
  if (!reader) {
    spdlog::warn("msg=replay_kafka_unavailable id={} error={}", job.id,
                 log_quote(reader.error().message));
    count_failure("kafka_unavailable");
    return TurnEnd::kFailed;
  }
  s.reader = std::move(*reader);
  // A replay of many large dead letters is not held in memory whole: past its share of the
  // budget each is fetched when its turn comes.
  s.reader->set_max_held_bytes(kReplayMaxHeldBytes / kMaxHeldReplays);
  const DlqSource::KeepFn keep = [wanted = &s.wanted](const std::string& key) {
    return wanted->count(key) > 0;
  };
  const int64_t read_start_ms = unix_now_ms();
  if (job.needs_dlq) {
    auto items = jobs.unfinished_items(job.id, 1 << 30);
    if (!items) {
      spdlog::warn("msg=replay_items_failed id={} error={}", job.id,
                   log_quote(items.error().message));
      count_failure("items_failed");
      return TurnEnd::kFailed;
    }
    for (const auto& i : *items) s.wanted.insert(i.key);
    auto read = s.reader->read(keep, {});
    if (!read) {
      spdlog::warn("msg=replay_dlq_read_failed id={} error={}", job.id,
                   log_quote(read.error().message));
      count_failure("dlq_read_failed");
      return TurnEnd::kFailed;
    }
    s.dlq = std::move(*read);
  }
  s.latest = latest_by_key(s.dlq);

  s.store =
      std::make_unique<PostgresReplayStore>(db_url_, job.id, job.from_state, options_.runner_id);
  ReplayClock clock{unix_now_ms,
                    [this, lease = s.lease](int64_t ms) { pause_ms(ms, lease->lost); }};
  s.replayer = std::make_unique<Replayer>(*s.store, producer_, clock, s.reader.get());
  // A key recorded dead whose dead letter was not yet acknowledged when the read began.
  if (job.needs_dlq) s.replayer->reread_from(*s.reader, keep, read_start_ms);
  ReplayOptions& options = s.options;
  options.dry_run = job.dry_run;
  // Paced here, between turns (work), not by the Replayer: its wait would hold the runner.
  options.rate_per_second = 0;
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
  return TurnEnd::kYielded;
}

// One turn of a held replay: its items in order until none is left (it finishes), its turn is
// over (a batch of items, or kTurnMs), its next key is not due, the lease is lost, or the process
// stops. A turn ends only between items.
ReplayRunner::TurnEnd ReplayRunner::work(ReplayJobs& jobs, Session& s) {
  const ClaimedReplay& job = s.job;
  const auto lease_lost = [&] {
    leases_lost_.Increment();
    spdlog::warn("msg=replay_left id={} reason=lease_lost", job.id);
    return TurnEnd::kEnded;
  };
  const auto turn_end = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTurnMs);
  int worked = 0;
  while (!stop_.load()) {
    auto items = jobs.unfinished_items(job.id, kItemBatch);
    if (!items) {
      spdlog::warn("msg=replay_items_failed id={} error={}", job.id,
                   log_quote(items.error().message));
      count_failure("items_failed");
      return TurnEnd::kFailed;
    }
    if (items->empty()) break;
    for (const auto& item : *items) {
      if (stop_.load()) return TurnEnd::kEnded;
      if (s.lease->lost.load()) return lease_lost();
      if (worked >= kItemBatch || (worked > 0 && std::chrono::steady_clock::now() >= turn_end))
        return TurnEnd::kYielded;
      // Pacing: a key the run produces is not produced before its time; until then the replay
      // gives its turn up. A key marked by an interrupted run is finished unpaced, as the
      // Replayer does.
      const auto started_ms = static_cast<double>(unix_now_ms());
      if (!item.marked && started_ms < s.next_due_ms) return TurnEnd::kYielded;
      auto it = s.latest.find(item.key);
      // Per key: only a key succeeded when the replay was requested is resent (ReplayItemRow).
      s.options.resend_succeeded = item.resend;
      ReplayItem result = s.replayer->replay_key(
          item.key, it == s.latest.end() ? nullptr : it->second, s.options, item.marked);
      ++worked;
      if (result.outcome == ReplayOutcome::kRetryLater) {
        // Kafka or the database unreachable mid-run. Recorded failed, the key would never be
        // replayed by this replay (a release's delivery would stay parked behind its active
        // route). Its item stays pending, or marked with its produce to redo (resumed as after a
        // restart: produced once), and the replay is tried again after a back-off, from here.
        spdlog::warn("msg=replay_item_retry_later id={} error={}", job.id,
                     log_quote(result.detail));
        count_failure("item_retry_later");
        return TurnEnd::kFailed;
      }
      if (!item.marked && s.interval_ms > 0 &&
          (result.outcome == ReplayOutcome::kReplayed ||
           result.outcome == ReplayOutcome::kResent)) {
        // As the Replayer paces: from when this key was due, or started when it was late.
        s.next_due_ms = std::max(s.next_due_ms, started_ms) + s.interval_ms;
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
        return TurnEnd::kFailed;
      }
      // Not ours any more: the runner that took the replay over records this item.
      if (!*finished) return lease_lost();
      keys_.Add({{"outcome", status}}).Increment();
    }
  }
  if (stop_.load()) return TurnEnd::kEnded;
  // No item left: the heartbeat lets the lease go, and the replay ends.
  drop_lease(job.id);
  auto finished = jobs.finish_if_done(job.id);
  if (!finished) {
    spdlog::warn("msg=replay_finish_failed id={} error={}", job.id,
                 log_quote(finished.error().message));
    count_failure("finish_failed");
    return TurnEnd::kFailed;
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
  return TurnEnd::kEnded;
}

}  // namespace hookrelay::admin
