#include "shared/replay/dlq_replay.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <future>
#include <memory>
#include <pqxx/pqxx>
#include <set>

#include "shared/kafka/wire_contract.h"
#include "shared/routes/ordering_key_text.h"
#include "shared/store/key_hash_sql.h"

namespace hookrelay {
namespace {

using header::kDlqReason;
using header::kOriginalReceivedAt;
using header::kReplayedBy;

bool dropped_on_replay(std::string_view name) {
  return name == header::kAttempt || name == header::kDueAt || name == header::kReceivedAt ||
         name == kDlqReason || name == kReplayedBy || name.rfind(header::kLastPrefix, 0) == 0;
}

// How a key ends when a step of it failed with `e` for a reason other than the key itself: left
// for the caller's next run when it keeps the key's progress and the failure may pass (Kafka or
// the database unreachable: the key is no worse for it), failed otherwise.
ReplayOutcome failed_by(const Error& e, const ReplayOptions& options) {
  return options.retry_transient && e.retryable ? ReplayOutcome::kRetryLater
                                                : ReplayOutcome::kFailed;
}

// A key marked by an interrupted run is produced again only if no worker took it up since.
// True when it is settled without producing: taken up (`item` gets `taken_up`), or the check
// failed (`item` failed, or left for a later run, with the error).
bool settled_since_interrupt(ReplayStore& store, const std::string& key, ReplayOutcome taken_up,
                             const ReplayOptions& options, ReplayItem& item) {
  auto again = store.needs_produce_again(key);
  if (!again) {
    item.outcome = failed_by(again.error(), options);
    item.detail = again.error().message;
    return true;
  }
  if (!*again) {
    item.outcome = taken_up;
    item.detail = "taken up by a worker before the restart";
    return true;
  }
  return false;
}

// The release of a parked delivery of an ordered route waits behind its ordering key (its
// message carries the key it was first expanded with), so one key's released deliveries are
// attempted one at a time in release order, after any of the key's deliveries still ahead of
// them. Anything else is produced at once.
std::optional<KeyWait> key_wait(const DlqMessage& m, const ReplayOptions& options, int64_t now_ms) {
  if (options.from_state != "parked") return std::nullopt;
  const std::string* ordering_key = m.header(header::kOrderingKey);
  const std::string* source = m.header(header::kSource);
  const std::string* route = m.header(header::kRoute);
  const std::string* kind = m.header(header::kKind);
  if (!ordering_key || ordering_key->empty() || !source || !route || !kind || *kind != "webhook")
    return std::nullopt;
  if (options.ordered_route && !options.ordered_route(*source, *route)) return std::nullopt;
  // As the workers store it (a parked message from before keys were made storable has it raw).
  return KeyWait{*source,
                 *route,
                 storable_ordering_key(*ordering_key),
                 retry_topic(0),
                 replay_headers(m.headers, now_ms, options.who),
                 m.value};
}

}  // namespace

std::string source_topic(const ReplayOptions& options) {
  return std::string(options.from_state == "parked" ? kParkedTopic : kDlqTopic);
}

Result<ResendSource> ReplayStore::resend_source(const std::string& key) {
  return fail("not_resendable", key + ": this replay does not resend succeeded deliveries");
}
Result<void> ReplayStore::mark_resend(const std::string& key, const std::string&,
                                      const std::string&) {
  return fail("not_resendable", key + ": this replay does not resend succeeded deliveries");
}
Result<void> ReplayStore::undo_resend(const std::string&) { return {}; }
Result<bool> ReplayStore::needs_produce_again(const std::string&) { return false; }

PostgresReplayStore::PostgresReplayStore(const std::string& url, int64_t replay_id,
                                         std::string from_state, std::string runner)
    : queries_(url),
      pg_(url),
      replay_id_(replay_id),
      from_state_(std::move(from_state)),
      runner_(std::move(runner)) {}

Result<ResendSource> PostgresReplayStore::resend_source(const std::string& key) {
  if (replay_id_ == 0) return ReplayStore::resend_source(key);
  return queries_.resend_source(key);
}

Result<void> PostgresReplayStore::mark_resend(const std::string& key, const std::string& who,
                                              const std::string& reason) {
  if (replay_id_ == 0) return ReplayStore::mark_resend(key, who, reason);
  return queries_.mark_resend(key, who, reason, replay_id_, runner_);
}

Result<void> PostgresReplayStore::undo_resend(const std::string& key) {
  return queries_.undo_resend(key, replay_id_);
}

Result<bool> PostgresReplayStore::needs_produce_again(const std::string& key) {
  return queries_.needs_produce_again(key, replay_id_);
}

Result<std::string> PostgresReplayStore::state(const std::string& key) {
  return pg_.run("replay state", [&](pqxx::connection& c) -> Result<std::string> {
    pqxx::nontransaction tx(c);
    auto rows = tx.exec_params(
        "SELECT state FROM deliveries WHERE " HR_KEY_IS("delivery_key", "$1::text"), key);
    if (rows.empty()) return fail("not_found", "no delivery with key " + key);
    return rows[0][0].as<std::string>();
  });
}

Result<std::optional<UnfinishedReplay>> ReplayStore::unfinished_replay(const std::string&) {
  return std::optional<UnfinishedReplay>{};
}

Result<void> ReplayStore::retake_replay(const std::string& key, const std::string&,
                                        const std::string&) {
  return fail("not_replayable", key + " has no unfinished replay");
}

Result<void> PostgresReplayStore::retake_replay(const std::string& key, const std::string& who,
                                                const std::string& reason) {
  return queries_.retake_replay(key, who, reason);
}

Result<std::optional<UnfinishedReplay>> PostgresReplayStore::unfinished_replay(
    const std::string& key) {
  return queries_.unfinished_replay(key);
}

Result<void> PostgresReplayStore::mark_replayed(const std::string& key, const std::string& who,
                                                const std::string& reason) {
  auto r = queries_.mark_replayed(key, who, reason, replay_id_, from_state_, runner_);
  if (!r) return Unexpected{r.error()};
  return {};
}

Result<bool> ReplayStore::mark_replayed_behind_key(const std::string& key, const std::string& who,
                                                   const std::string& reason, const KeyWait&) {
  if (auto marked = mark_replayed(key, who, reason); !marked) return Unexpected{marked.error()};
  return false;
}

Result<bool> PostgresReplayStore::mark_replayed_behind_key(const std::string& key,
                                                           const std::string& who,
                                                           const std::string& reason,
                                                           const KeyWait& wait) {
  return queries_.mark_replayed_behind_key(key, who, reason, wait, replay_id_, from_state_,
                                           runner_);
}

Result<void> PostgresReplayStore::undo_replay(const std::string& key) {
  return pg_.run("undo replay", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    // Only a replay that nobody picked up yet: no lease, still 'retrying'.
    tx.exec_params(
        "UPDATE deliveries SET state = $2,"
        " completed_at = CASE WHEN $2 = 'dead' THEN now() END"
        " WHERE " HR_KEY_IS("delivery_key",
                            "$1::text") " AND state = 'retrying' AND lease_owner IS NULL",
        key, from_state_);
  });
}

Result<void> ReplayStore::undo_unfinished_replay(const std::string& key) {
  return undo_replay(key);
}

Result<void> PostgresReplayStore::undo_unfinished_replay(const std::string& key) {
  return pg_.run("undo unfinished replay", [&](pqxx::connection& c) -> Result<void> {
    pqxx::nontransaction tx(c);
    // The test that found it unfinished (unfinished_replay, needs_produce_again), in the same
    // statement as the change: still 'retrying', no lease, no attempt since its latest mark, not
    // waiting behind its ordering key. A worker that took up a copy meanwhile (the earlier run's
    // produce reached Kafka after all) keeps the delivery.
    auto rows = tx.exec_params(
        "UPDATE deliveries SET state = $2,"
        " completed_at = CASE WHEN $2 = 'dead' THEN now() END"
        " WHERE " HR_KEY_IS("delivery_key",
                            "$1::text") " AND state = 'retrying' AND lease_owner IS NULL"
        " AND last_attempt_at ="
        "      (SELECT max(r.replayed_at) FROM dlq_replays r WHERE r.delivery_key = $1::text)"
        " AND NOT EXISTS (SELECT 1 FROM ordered_waiting w WHERE w.delivery_key = $1::text)"
        " RETURNING 1",
        key, from_state_);
    if (rows.empty())
      return fail("not_undone", key + " was taken up by a worker (or changed) since it was marked");
    return {};
  });
}

const char* replay_outcome_name(ReplayOutcome outcome) {
  switch (outcome) {
    case ReplayOutcome::kReplayed:
      return "replayed";
    case ReplayOutcome::kResent:
      return "resent";
    case ReplayOutcome::kWouldReplay:
      return "would_replay";
    case ReplayOutcome::kWouldResend:
      return "would_resend";
    case ReplayOutcome::kSkippedSucceeded:
      return "skipped_succeeded";
    case ReplayOutcome::kSkippedNotDead:
      return "skipped_not_dead";
    case ReplayOutcome::kMissing:
      return "missing";
    case ReplayOutcome::kFailed:
      return "failed";
    case ReplayOutcome::kRetryLater:
      return "retry_later";
  }
  return "unknown";
}

std::vector<MessageHeader> replay_headers(const std::vector<MessageHeader>& dlq_headers,
                                          int64_t now_ms, const std::string& who) {
  std::vector<MessageHeader> out;
  out.reserve(dlq_headers.size() + 4);
  const std::string* received = nullptr;
  bool has_original = false;
  for (const auto& h : dlq_headers) {
    if (h.name == header::kReceivedAt) received = &h.value;
    if (h.name == kOriginalReceivedAt) has_original = true;
    if (!dropped_on_replay(h.name)) out.push_back(h);
  }
  // A second replay keeps the first original: that is when the provider sent it.
  if (received && !has_original) out.push_back({std::string(kOriginalReceivedAt), *received});
  const std::string now = std::to_string(now_ms);
  out.push_back({std::string(header::kReceivedAt), now});
  out.push_back({std::string(header::kAttempt), "0"});
  out.push_back({std::string(header::kDueAt), now});
  out.push_back({std::string(kReplayedBy), who});
  return out;
}

std::vector<MessageHeader> resend_headers(const std::vector<MessageHeader>& original,
                                          const ResendSource& source, const std::string& key,
                                          int64_t now_ms, const std::string& who) {
  std::vector<MessageHeader> out;
  for (auto& h : replay_headers(original, now_ms, who)) {
    if (h.name == header::kRoute || h.name == header::kDeliveryKey ||
        h.name == header::kOriginTopic) {
      continue;
    }
    out.push_back(std::move(h));
  }
  if (!source.route.empty()) out.push_back({std::string(header::kRoute), source.route});
  out.push_back({std::string(header::kDeliveryKey), key});
  out.push_back({std::string(header::kOriginTopic), source.topic});
  return out;
}

std::map<std::string, const DlqMessage*> latest_by_key(const std::vector<DlqMessage>& messages) {
  std::map<std::string, const DlqMessage*> out;
  for (const auto& m : messages) {
    std::string key = m.delivery_key();
    if (key.empty()) continue;
    auto [it, inserted] = out.emplace(key, &m);
    if (inserted) continue;
    const DlqMessage* cur = it->second;
    bool later = m.timestamp_ms != cur->timestamp_ms
                     ? m.timestamp_ms > cur->timestamp_ms
                     : (m.partition == cur->partition && m.offset > cur->offset);
    if (later) it->second = &m;
  }
  return out;
}

std::string progress_line(const ReplaySummary& s, bool dry_run) {
  int done = static_cast<int>(s.items.size());
  int replayed = dry_run ? done - s.skipped - s.missing - s.failed : s.replayed;
  return std::string(dry_run ? "would replay " : "replayed ") + std::to_string(replayed) + "/" +
         std::to_string(s.total) + ", skipped " + std::to_string(s.skipped) + ", missing " +
         std::to_string(s.missing) + ", failed " + std::to_string(s.failed);
}

Replayer::Replayer(ReplayStore& store, MessageProducer& producer, ReplayClock clock,
                   MessageFetcher* fetcher)
    : store_(store), producer_(producer), clock_(std::move(clock)), fetcher_(fetcher) {}

void Replayer::reread_from(DlqSource& source, DlqSource::KeepFn keep, int64_t first_read_ms,
                           int64_t grace_ms) {
  reread_source_ = &source;
  reread_keep_ = std::move(keep);
  reread_due_ms_ = first_read_ms + grace_ms;
  reread_done_ = false;
  reread_error_.reset();
}

const DlqMessage* Replayer::reread_message(const std::string& key) {
  if (!reread_source_) return nullptr;
  if (!reread_done_) {
    reread_done_ = true;
    // A dead letter produced just before the first read may still be waiting for its ack.
    if (int64_t wait = reread_due_ms_ - clock_.now_ms(); wait > 0) clock_.sleep_ms(wait);
    if (auto read = reread_source_->read(reread_keep_, {}); read) {
      reread_messages_ = std::move(*read);
      reread_latest_ = latest_by_key(reread_messages_);
    } else {
      reread_error_ = read.error();
    }
  }
  auto it = reread_latest_.find(key);
  return it == reread_latest_.end() ? nullptr : it->second;
}

ReplayItem& Replayer::no_message(const ReplayOptions& options, ReplayItem& item) {
  item.outcome = ReplayOutcome::kMissing;
  item.detail = "no message in " + source_topic(options) + " (past retention?)";
  // Not known to be missing while the read that would have found it failed: a later run reads
  // the topic again.
  if (reread_error_ && failed_by(*reread_error_, options) == ReplayOutcome::kRetryLater) {
    item.outcome = ReplayOutcome::kRetryLater;
    item.detail = "no message in the first read of " + source_topic(options) +
                  ", and reading it again failed: " + reread_error_->message;
  }
  return item;
}

ReplaySummary Replayer::run(const std::vector<std::string>& keys,
                            const std::vector<DlqMessage>& messages, const ReplayOptions& options,
                            const OnItem& on_item) {
  auto latest = latest_by_key(messages);
  std::vector<std::string> unique;
  std::set<std::string> seen;
  for (const auto& k : keys) {
    if (seen.insert(k).second) unique.push_back(k);
  }
  ReplaySummary summary;
  summary.total = static_cast<int>(unique.size());
  for (const auto& key : unique) {
    if (options.stop_requested && options.stop_requested()) {
      summary.interrupted = true;
      break;
    }
    auto it = latest.find(key);
    ReplayItem item = replay_key(key, it == latest.end() ? nullptr : it->second, options, false);
    if (stopped_) {  // asked to stop before this key was marked: it is not tried
      summary.interrupted = true;
      break;
    }
    switch (item.outcome) {
      case ReplayOutcome::kReplayed:
      case ReplayOutcome::kResent:
        ++summary.replayed;
        break;
      case ReplayOutcome::kWouldReplay:
      case ReplayOutcome::kWouldResend:
        break;
      case ReplayOutcome::kSkippedSucceeded:
      case ReplayOutcome::kSkippedNotDead:
        ++summary.skipped;
        break;
      case ReplayOutcome::kMissing:
        ++summary.missing;
        break;
      case ReplayOutcome::kFailed:
      case ReplayOutcome::kRetryLater:  // not done: a failure, for a summary
        ++summary.failed;
        break;
    }
    summary.items.push_back(std::move(item));
    if (on_item) on_item(summary);
  }
  return summary;
}

bool Replayer::whole(const DlqMessage*& message, const ReplayOptions& options, DlqMessage& fetched,
                     ReplayItem& item) {
  if (!message->stub) return true;
  const std::string topic = source_topic(options);
  if (!fetcher_) {
    item.detail = "its message in " + topic + " was not kept by the read, and none can be fetched";
    return false;
  }
  auto got = fetcher_->fetch(topic, message->partition, message->offset);
  if (!got) {
    item.outcome =
        got.error().code == "not_found" ? ReplayOutcome::kMissing : failed_by(got.error(), options);
    item.detail = got.error().message;
    return false;
  }
  fetched = std::move(*got);
  message = &fetched;
  return true;
}

ReplayItem Replayer::replay_key(const std::string& key, const DlqMessage* message,
                                const ReplayOptions& options, bool resume) {
  stopped_ = false;
  ReplayItem item{key, ReplayOutcome::kFailed, "", -1, -1};
  const bool in_first_read = message != nullptr;
  auto use = [&item, &message](const DlqMessage* m) {
    message = m;
    if (m) {
      item.partition = m->partition;
      item.offset = m->offset;
    }
  };
  use(message);
  DlqMessage fetched;  // a stub's whole message (whole())
  std::optional<UnfinishedReplay> unfinished;
  auto state = store_.state(key);
  if (!state) {
    item.outcome = state.error().code == "not_found" ? ReplayOutcome::kMissing
                                                     : failed_by(state.error(), options);
    item.detail = state.error().message;
    return item;
  }
  if (*state == "succeeded" && options.resend_succeeded) return resend_one(key, options, resume);
  if (resume) {
    if (*state == options.from_state) {
      // Marked by the interrupted run, and back where it was: its produce failed and the mark
      // was undone (the run stopped before it could say so), or a worker took it up and it died
      // again. Not "replayed": which of the two cannot be told, so the operator decides.
      item.detail = "is " + *state + " again since the interrupted run marked it: its produce " +
                    "failed and was undone, or it was taken up and ended " + *state +
                    " again; replay it again if it should be";
      return item;
    }
    if (settled_since_interrupt(store_, key, ReplayOutcome::kReplayed, options, item)) return item;
    if (!message) use(reread_message(key));
    if (!message) return set_back(key, options, no_message(options, item));
    if (!whole(message, options, fetched, item)) return set_back(key, options, item);
  } else {
    if (*state == "succeeded") {
      item.outcome = ReplayOutcome::kSkippedSucceeded;
      item.detail = "already succeeded";
      return item;
    }
    if (*state != options.from_state) {
      unfinished = unfinished_mark(key, *state, options, item);
      if (!unfinished) return item;
    }
    if (!message) use(reread_message(key));
    if (!message) {
      no_message(options, item);
      // An unfinished replay's key is marked already: with no message to produce it goes back.
      return unfinished && !options.dry_run ? set_back(key, options, item) : item;
    }
    if (options.dry_run) {
      item.outcome = ReplayOutcome::kWouldReplay;
      const std::string* reason = message->header(kDlqReason);
      item.detail = unfinished ? unfinished_note(*unfinished)
                    : reason   ? options.from_state + ": " + *reason
                               : options.from_state;
      return item;
    }
    if (!whole(message, options, fetched, item)) {
      return unfinished ? set_back(key, options, item) : item;
    }
    if (!pace(options)) return not_tried(item);
    const auto wait = key_wait(*message, options, clock_.now_ms());
    // An unfinished replay is marked already: its retaking is audited, the state unchanged. A
    // release of an ordered route's delivery may wait behind its key instead of being produced.
    Result<bool> marked = false;
    if (unfinished) {
      if (auto r = store_.retake_replay(key, options.who, options.reason); !r)
        marked = Unexpected{r.error()};
    } else if (wait) {
      marked = store_.mark_replayed_behind_key(key, options.who, options.reason, *wait);
    } else if (auto r = store_.mark_replayed(key, options.who, options.reason); !r) {
      marked = Unexpected{r.error()};
    }
    if (!marked) {
      const std::string& code = marked.error().code;
      item.outcome = code == "not_replayable" ? ReplayOutcome::kSkippedNotDead
                     : code == "not_found"    ? ReplayOutcome::kMissing
                                              : failed_by(marked.error(), options);
      item.detail = marked.error().message;
      return item;
    }
    if (*marked) {
      item.outcome = ReplayOutcome::kReplayed;
      item.detail = "waits behind ordering key " + wait->ordering_key + "; published to " +
                    retry_topic(0) + " in its turn";
      return item;
    }
  }
  const auto headers = replay_headers(message->headers, clock_.now_ms(), options.who);
  if (auto produced = produce_and_wait(key, message->value, headers, options); !produced) {
    item.outcome = failed_by(produced.error(), options);
    item.detail = "not produced to " + retry_topic(0) + ": " + produced.error().message;
    if (item.outcome == ReplayOutcome::kRetryLater) {
      // Kafka may be back on the next run: the key stays marked and that run produces it then,
      // unless a worker took it up meanwhile (this copy stored after all). Undone, a release's
      // delivery would be parked again behind an active route, where nothing releases it.
      item.detail += "; left marked, produced again when the replay resumes";
      return item;
    }
    if (auto undone = store_.undo_replay(key); !undone) {
      item.detail += "; and could not set it back to " + options.from_state + " (" +
                     undone.error().message + "): it stays 'retrying' with no message";
    } else {
      item.detail += "; set back to " + options.from_state;
    }
    return item;
  }
  item.outcome = ReplayOutcome::kReplayed;
  item.detail = "to " + retry_topic(0);
  if (unfinished) item.detail += " (" + unfinished_note(*unfinished) + ")";
  if (!in_first_read)
    item.detail += " (its message found by the second read of " + source_topic(options) + ")";
  return item;
}

// A key an earlier run marked (a resumed admin replay's, or an unfinished replay the CLI takes up)
// whose message this run cannot produce: gone (retention; a stub's fetch found nothing), or
// unreadable for a reason that will not pass in this run. Left 'retrying', it would stay so for
// good: no copy in any topic, no dead_letters row, spared by retention, never delivered. It goes
// back to the state it was marked from, where it is listed and can be replayed again.
//
// Only a failure that may pass for a caller that resumes the key (kRetryLater: the admin API)
// leaves it marked, for the next run. A copy from the earlier run may still be on its way (its
// produce was never acknowledged): the undo is fenced on "no worker took it up since the mark"
// (undo_unfinished_replay, the test that let this run produce it again), and a copy that arrives
// after it finds the delivery dead, which the worker's claim refuses (it publishes the dead letter
// again, ClaimStatus::kAlreadyDead); a parked delivery's copy is delivered once, as the release
// meant it to be.
ReplayItem& Replayer::set_back(const std::string& key, const ReplayOptions& options,
                               ReplayItem& item) {
  if (item.outcome == ReplayOutcome::kRetryLater) {
    item.detail += "; left marked, produced when the replay resumes";
    return item;
  }
  auto undone = store_.undo_unfinished_replay(key);
  if (undone) {
    item.detail += "; set back to " + options.from_state + " (it had been marked 'retrying')";
  } else if (undone.error().code == "not_undone") {
    // A copy did reach Kafka after all, and a worker has it: it is back in the flow.
    item.outcome = ReplayOutcome::kReplayed;
    item.detail += "; but " + undone.error().message + ": left as it is";
  } else {
    item.outcome = failed_by(undone.error(), options);
    item.detail += "; and could not set it back to " + options.from_state + " (" +
                   undone.error().message + "): it stays 'retrying'";
    if (item.outcome == ReplayOutcome::kRetryLater) item.detail += ", set back when resumed";
  }
  return item;
}

ReplayItem& Replayer::not_tried(ReplayItem& item) {
  stopped_ = true;
  item.outcome = ReplayOutcome::kRetryLater;
  item.detail = "not tried: the run was asked to stop before the key was marked";
  return item;
}

std::optional<UnfinishedReplay> Replayer::unfinished_mark(const std::string& key,
                                                          const std::string& state,
                                                          const ReplayOptions& options,
                                                          ReplayItem& item) {
  item.outcome = ReplayOutcome::kSkippedNotDead;
  item.detail = "is " + state + ", not " + options.from_state;
  if (state != "retrying" || options.unfinished_after_ms <= 0) return std::nullopt;
  auto mark = store_.unfinished_replay(key);
  if (!mark) {
    item.outcome = failed_by(mark.error(), options);
    item.detail = mark.error().message;
    return std::nullopt;
  }
  if (!*mark) return std::nullopt;
  const UnfinishedReplay& m = **mark;
  if (m.age_ms < options.unfinished_after_ms) {
    item.detail += ": replayed by " + m.replayed_by + " " + std::to_string(m.age_ms / 1000) +
                   " s ago and not taken up by a worker yet; produced again if still so " +
                   std::to_string(options.unfinished_after_ms / 1000) + " s after that replay";
    return std::nullopt;
  }
  return m;
}

std::string unfinished_note(const UnfinishedReplay& m) {
  return "an unfinished replay: marked by " + m.replayed_by + " " +
         std::to_string(m.age_ms / 1000) + " s ago, never taken up by a worker";
}

ReplayItem Replayer::resend_one(const std::string& key, const ReplayOptions& options, bool resume) {
  ReplayItem item{key, ReplayOutcome::kFailed, "", -1, -1};
  auto source = store_.resend_source(key);
  if (!source) {
    const std::string& code = source.error().code;
    item.outcome = code == "not_resendable" || code == "not_found"
                       ? ReplayOutcome::kMissing
                       : failed_by(source.error(), options);
    item.detail = source.error().message;
    return item;
  }
  item.partition = source->partition;
  item.offset = source->offset;
  if (resume) {
    if (settled_since_interrupt(store_, key, ReplayOutcome::kResent, options, item)) return item;
  }
  if (!fetcher_) {
    item.detail = "no reader for " + source->topic;
    return item;
  }
  auto message = fetcher_->fetch(source->topic, source->partition, source->offset);
  if (!message) {
    item.outcome = message.error().code == "not_found" ? ReplayOutcome::kMissing
                                                       : failed_by(message.error(), options);
    item.detail = message.error().message;
    return item;
  }
  if (options.dry_run) {
    item.outcome = ReplayOutcome::kWouldResend;
    item.detail = "succeeded";
    return item;
  }
  if (!resume) {
    if (!pace(options)) return not_tried(item);
    if (auto marked = store_.mark_resend(key, options.who, options.reason); !marked) {
      const std::string& code = marked.error().code;
      item.outcome = code == "not_resendable" ? ReplayOutcome::kSkippedNotDead
                     : code == "not_found"    ? ReplayOutcome::kMissing
                                              : failed_by(marked.error(), options);
      item.detail = marked.error().message;
      return item;
    }
  }
  const auto headers = resend_headers(message->headers, *source, key, clock_.now_ms(), options.who);
  if (auto produced = produce_and_wait(key, message->value, headers, options); !produced) {
    item.outcome = failed_by(produced.error(), options);
    item.detail = "not produced to " + retry_topic(0) + ": " + produced.error().message;
    if (item.outcome == ReplayOutcome::kRetryLater) {  // as a replay's (replay_key): kept marked
      item.detail += "; its resend marker kept, produced again when the replay resumes";
      return item;
    }
    if (auto undone = store_.undo_resend(key); !undone)
      item.detail += "; marker left: " + undone.error().message;
    return item;
  }
  item.outcome = ReplayOutcome::kResent;
  item.detail = "to " + retry_topic(0);
  return item;
}

// Keys go one interval apart, kept in fractions of a millisecond so that a rate above 1,000/s
// is paced too and the average rate is the one asked for. A run that fell behind (a slow
// acknowledgement, a slow round trip, a DLQ read) goes on from where it is, one interval at a
// time, instead of sending the keys it missed back to back. The interval is at most a day (a
// rate too small to divide by).
//
// With ReplayOptions::stop_requested, the wait is slept in slices of at most kPaceSliceMs, the
// stop asked after each (a SIGINT does not wait out the interval, and ReplayClock::sleep_ms may
// return early when its process stops), and asked once more at the end: false when it was, and
// the key is not to be marked. Slices are counted, not timed again, so a sleep that returns at
// once cannot make this spin.
bool Replayer::pace(const ReplayOptions& options) {
  const auto stop = [&options] { return options.stop_requested && options.stop_requested(); };
  if (options.rate_per_second > 0) {
    const auto now = static_cast<double>(clock_.now_ms());
    const double interval =
        std::min(1000.0 / options.rate_per_second, static_cast<double>(kMaxPaceIntervalMs));
    if (!paced_any_) {
      paced_any_ = true;
      last_paced_ms_ = now;
    } else {
      const double due = last_paced_ms_ + interval;
      if (due > now) {
        auto left = static_cast<int64_t>(std::ceil(due - now));
        if (!options.stop_requested) {
          clock_.sleep_ms(left);
        } else {
          while (left > 0) {
            if (stop()) return false;  // the schedule is left as it was: this key did not go
            const int64_t slice = std::min(left, kPaceSliceMs);
            clock_.sleep_ms(slice);
            left -= slice;
          }
        }
      }
      last_paced_ms_ = std::max(due, now);
    }
  }
  return !stop();
}

Result<void> Replayer::produce_and_wait(const std::string& key, const std::string& value,
                                        const std::vector<MessageHeader>& headers,
                                        const ReplayOptions& options) {
  const std::string topic = retry_topic(0);
  auto r = produce_acknowledged(producer_, {topic, key, value, &headers}, options.ack_timeout_ms);
  if (!r) return Unexpected{r.error()};
  return {};
}

Result<ProducedAt> produce_acknowledged(MessageProducer& producer, const OutgoingMessage& message,
                                        int ack_timeout_ms) {
  // Shared with the callback, which may run after we stopped waiting.
  auto done = std::make_shared<std::promise<Result<ProducedAt>>>();
  auto future = done->get_future();
  producer.produce(message, [done](Result<ProducedAt> r) { done->set_value(std::move(r)); });
  if (future.wait_for(std::chrono::milliseconds(ack_timeout_ms)) != std::future_status::ready) {
    return fail("ack_timeout",
                "no broker acknowledgement within " + std::to_string(ack_timeout_ms) + " ms",
                /*retryable=*/true);
  }
  return future.get();
}

}  // namespace hookrelay
