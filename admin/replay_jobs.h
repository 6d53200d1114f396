// ReplayJobs: the replays of the admin API as Postgres keeps them (migrations/0006): one
// `replays` row per request, one `replay_items` row per matched delivery key with its own
// progress, and a lease naming the admin process that works on a replay, so a replay outlives
// the process that started it and is resumed by the next one.
//
// An Idempotency-Key (migrations/0018) names the one replay its first request created: create()
// with a key already stored answers with that replay, or "idempotency_key_reused" when the stored
// request was another one.
//
// Errors: "bad_request" (a filter matching more keys than allowed), "not_found",
// "idempotency_key_reused", "idempotency_key_contended" (the replay a key named was deleted
// under the request three times in a row), and the database errors of PgConnection.
//
// Thread-safety: one connection, not thread-safe; one instance per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "admin/admin_request.h"
#include "shared/result.h"
#include "shared/store/pg_connection.h"

namespace hookrelay::admin {

struct ReplayProgress {
  int64_t id = 0;
  std::string state;  // running | finished
  bool dry_run = false;
  double rate = 0;
  std::string requested_by;
  std::string request_json;  // the request as stored
  int64_t created_ms = 0;
  int64_t finished_ms = 0;    // 0 while running
  int64_t matched = 0;        // items
  int64_t produced = 0;       // replayed + resent
  int64_t would_produce = 0;  // dry run
  int64_t skipped = 0;
  int64_t missing = 0;
  int64_t failed = 0;
  int64_t pending = 0;  // not yet done (pending or marked)
};

struct ClaimedReplay {
  int64_t id = 0;
  bool dry_run = false;
  double rate = 0;
  std::string requested_by;
  std::string reason;
  bool needs_dlq = true;  // some keys may be dead (not a filter on succeeded)
  // "parked": the release of a resumed route (its messages are in hookrelay.parked, its items
  // go in arrival order); "dead" otherwise.
  std::string from_state = "dead";
};

struct ReplayItemRow {
  std::string key;
  bool marked = false;  // marked by an earlier, interrupted run
  // Resend the key if it is succeeded: it was succeeded when the replay was requested (keys
  // listed by hand with resend_succeeded), or the replay's filter is on succeeded deliveries.
  // Otherwise a succeeded key is skipped: one dead when requested and delivered since is not
  // sent again. (A key listed by hand without resend_succeeded that was succeeded when requested
  // is stored skipped: never an unfinished item.)
  bool resend = false;
};

// The Idempotency-Key of a POST /v1/replays and the SHA-256 of what it asked (the caller and the
// request as stored), raw bytes; an empty key: none given.
struct IdempotencyKey {
  std::string key;
  std::string request_sha256;
};

struct CreatedReplay {
  ReplayProgress progress;
  bool existing = false;  // the replay an earlier request with the same Idempotency-Key created
};

class ReplayJobs {
 public:
  explicit ReplayJobs(std::string url);

  // Stores the replay and its items (the request's keys, or the deliveries its filter matches,
  // at most `max_keys`), in one transaction, each with whether it is to be resent (the keys
  // succeeded at this moment when resend_succeeded is set, those keys being stored skipped
  // otherwise; every key of a filter on succeeded deliveries). A replay with no item left to
  // work is stored finished. With an
  // idempotency key, in the same transaction: a key stored already answers with its replay
  // (existing) when its request_sha256 is this one, else "idempotency_key_reused", and stores
  // nothing; concurrent requests with one key wait for each other and end with one replay.
  // The new replay is read back for the answer; once its transaction committed, a read back
  // that fails answers with the replay as stored (no error: a client told to retry without an
  // Idempotency-Key would create it twice).
  Result<CreatedReplay> create(const ReplayRequest& request, const std::string& request_json,
                               const std::string& who, int max_keys,
                               const IdempotencyKey& idempotency = {});
  Result<ReplayProgress> get(int64_t id);
  // Stores the release of a resumed route: its parked deliveries back into the retry flow, oldest
  // arrival first, at `rate` per second. The items are the route's rows of parked_deliveries,
  // copied by the database in the transaction that stores the release (no list of keys passes
  // through the admin); nullopt, storing nothing, when the route has none.
  Result<std::optional<ReplayProgress>> create_release(const std::string& source,
                                                       const std::string& route,
                                                       const std::string& who, double rate);

  // A running replay whose lease is free, expired or `runner`'s, leased to `runner`: the
  // releases of resumed routes first, then the oldest. The replays in `skip` (those this runner
  // backs off from, waits on for their pacing, or just gave a turn) are passed over. With
  // `limit`, only the replays it holds, and new releases when it says so (a runner that holds
  // as many replays as it keeps at once).
  struct ClaimLimit {
    std::vector<int64_t> held;
    bool new_releases = false;
  };
  Result<std::optional<ClaimedReplay>> claim_next(const std::string& runner, int lease_seconds,
                                                  const std::vector<int64_t>& skip = {},
                                                  const ClaimLimit* limit = nullptr);
  // Extends the lease; false when another runner took the replay over.
  Result<bool> renew(int64_t id, const std::string& runner, int lease_seconds);
  // Gives the lease up now (a run that failed): any runner may claim the replay at once. Its
  // items stay as they are; `runner` stays named, so its late marks are refused only once
  // another runner took the replay over.
  Result<void> release(int64_t id, const std::string& runner);
  // Items not yet done, in the order they were stored (a release's: arrival order).
  Result<std::vector<ReplayItemRow>> unfinished_items(int64_t id, int limit);
  // Its statement ($1 the replay, $2 the limit): read through replay_items_unfinished_idx
  // (migrations/0022), whose predicate is this status set, so a batch reads only its own rows
  // however many items the replay finished.
  static constexpr const char* kUnfinishedItemsSql =
      "SELECT delivery_key, status = 'marked', resend FROM replay_items"
      " WHERE replay_id = $1 AND status IN ('pending', 'marked')"
      " ORDER BY position, delivery_key LIMIT $2";
  // Records an item's outcome; false, recording nothing, when `runner` no longer runs the
  // replay (another took it over after this one's lease expired). The detail is stored as text
  // PostgreSQL takes: at most kMaxItemDetailBytes, never cut inside a UTF-8 character, with a
  // NUL or a byte of invalid UTF-8 as '?'.
  static constexpr std::size_t kMaxItemDetailBytes = 1000;
  Result<bool> finish_item(int64_t id, const std::string& key, const std::string& status,
                           const std::string& detail, const std::string& runner);
  // Finished when no item is left; returns whether it finished.
  Result<bool> finish_if_done(int64_t id);

 private:
  PgConnection pg_;
};

}  // namespace hookrelay::admin
