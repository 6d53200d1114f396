#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <latch>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "shared/clock.h"
#include "shared/store/pg_connection.h"
#include "tests/integration/scratch_database.h"
#include "worker/postgres_delivery_store.h"

namespace hookrelay {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::system_clock;

DeliveryRef delivery(const std::string& key) {
  return DeliveryRef{key,
                     "webhook",
                     "github",
                     "evt-" + key,
                     "ci",
                     "http://127.0.0.1:9/hook",
                     "hookrelay.webhooks",
                     unix_now_ms()};
}

AttemptRecord attempt(const std::string& key, int n, const std::string& outcome,
                      const std::string& next_state, int http_status = 0,
                      const std::string& error = "") {
  return AttemptRecord{key, n, unix_now_ms(), 12, http_status, outcome, error, next_state};
}

class DeliveryStoreTest : public testing::MigratedDatabaseTest {
 protected:
  void SetUp() override {
    MigratedDatabaseTest::SetUp();
    if (HasFatalFailure()) return;
    store_ = std::make_unique<PostgresDeliveryStore>(db_->url());
  }

  // Claims as one run of `worker` would: every claim gets a token of its own (run = the
  // worker's run number, 0 = its first), remembered per key for record().
  std::vector<ClaimStatus> claim(std::vector<DeliveryRef> refs, const std::string& worker,
                                 int lease_seconds = 60, uint32_t run = 0) {
    uint32_t run_id = static_cast<uint32_t>(std::hash<std::string>{}(worker)) + run;
    for (auto& ref : refs) {
      if (ref.lease_token == 0) ref.lease_token = make_lease_token(run_id, ++claims_);
    }
    auto r = store_->claim(refs, worker, lease_seconds);
    EXPECT_TRUE(r) << r.error().message;
    if (!r) return {};
    for (std::size_t i = 0; i < refs.size(); ++i) {
      if ((*r)[i] == ClaimStatus::kClaimed) token_[refs[i].key] = refs[i].lease_token;
    }
    return *r;
  }
  // Records under the key's last won claim unless the record names a token.
  void record(std::vector<AttemptRecord> records, const std::string& worker = "w1") {
    for (auto& rec : records) {
      if (rec.lease_token == 0) rec.lease_token = token_[rec.key];
    }
    auto r = store_->record(records, worker);
    ASSERT_TRUE(r) << r.error().message;
  }
  // A second store on the same database, connected before the test's race starts.
  std::unique_ptr<PostgresDeliveryStore> connected_other_store() {
    auto other = std::make_unique<PostgresDeliveryStore>(db_->url());
    const InboundEventRecord probe{"s", "e", "t", 0, 0, 0, ""};
    EXPECT_TRUE(other->record_inbound({probe}));
    EXPECT_TRUE(store_->record_inbound({probe}));
    return other;
  }
  // Runs `a` and `b` on two threads released at the same moment; both results.
  template <class A, class B>
  static auto at_once(A&& a, B&& b) {
    std::latch start(2);
    std::optional<std::invoke_result_t<A>> ra;
    std::optional<std::invoke_result_t<B>> rb;
    std::thread ta([&] {
      start.arrive_and_wait();
      ra.emplace(a());
    });
    std::thread tb([&] {
      start.arrive_and_wait();
      rb.emplace(b());
    });
    ta.join();
    tb.join();
    return std::pair{std::move(*ra), std::move(*rb)};
  }
  // A park of `key` (claimed here) decided under the suspension of route github/`route` that
  // began at `since` (AttemptRecord::park_suspended_at_ms).
  AttemptRecord park(const std::string& key, const std::string& route, int64_t since) {
    AttemptRecord r = attempt(key, 0, "parked", "parked");
    r.lease_token = token_[key];
    r.park_source = "github";
    r.park_route = route;
    r.park_suspended_at_ms = since;
    return r;
  }
  // route_states.suspended_at of github/`route`, in ms as the worker reads it.
  int64_t suspended_at_ms(const std::string& route) {
    return std::stoll(
        db_->scalar("SELECT (extract(epoch from suspended_at) * 1000)::bigint"
                    " FROM route_states WHERE source = 'github' AND route = '" +
                    route + "'"));
  }
  // When the delivery's last recorded attempt started, in ms (what a fence of it names).
  int64_t last_attempt_ms(const std::string& key) {
    return std::stoll(
        db_->scalar("SELECT (extract(epoch from last_attempt_at) * 1000)::bigint FROM deliveries"
                    " WHERE delivery_key = '" +
                    key + "'"));
  }
  std::string outcome_counts(const std::string& key) {
    return db_->scalar(
        "SELECT string_agg(outcome || '=' || n, ',' ORDER BY outcome) FROM (SELECT outcome, "
        "count(*) AS n FROM delivery_attempts_all WHERE delivery_key = '" +
        key + "' GROUP BY outcome) s");
  }

  std::unique_ptr<PostgresDeliveryStore> store_;
  uint32_t claims_ = 0;
  std::map<std::string, int64_t> token_;
};

using S = ClaimStatus;

TEST_F(DeliveryStoreTest, NewDeliveryIsClaimedWithALease) {
  EXPECT_EQ(claim({delivery("a")}, "w1"), (std::vector<S>{S::kClaimed}));
  EXPECT_EQ(db_->scalar("SELECT state || ' ' || lease_owner || ' ' || (lease_until > now()) "
                        "FROM deliveries WHERE delivery_key = 'a'"),
            "in_flight w1 true");
  EXPECT_EQ(db_->scalar("SELECT destination || ' ' || origin_topic FROM deliveries"),
            "ci hookrelay.webhooks");
}

// The worker connects with its limits (with_service_limits): a claim that waits on a row another
// session keeps locked ends after statement_timeout as a retryable db_timeout, instead of holding
// the claim lane, and with it the worker's stop, for as long as the lock is held.
TEST_F(DeliveryStoreTest, AClaimWaitingOnALockEndsAtTheStatementTimeout) {
  EXPECT_EQ(claim({delivery("k")}, "A"), (std::vector<S>{S::kClaimed}));
  const std::string url = with_service_limits(db_->url(), 300);
  pqxx::connection limited(url);
  pqxx::nontransaction show(limited);
  EXPECT_EQ(show.exec1("SHOW statement_timeout")[0].as<std::string>(), "300ms");
  std::string tcp_user_timeout;
  PGconn* raw = PQconnectdb(url.c_str());
  ASSERT_EQ(PQstatus(raw), CONNECTION_OK);
  PQconninfoOption* options = PQconninfo(raw);
  for (PQconninfoOption* o = options; o && o->keyword; ++o) {
    if (std::string(o->keyword) == "tcp_user_timeout" && o->val) tcp_user_timeout = o->val;
  }
  PQconninfoFree(options);
  PQfinish(raw);
  EXPECT_EQ(tcp_user_timeout, "30000") << "a silent server would hold a statement out for ever";
  pqxx::connection holder(db_->url());
  pqxx::work locking(holder);
  locking.exec("SELECT 1 FROM deliveries WHERE delivery_key = 'k' FOR UPDATE");
  PostgresDeliveryStore worker_store(url);
  DeliveryRef d = delivery("k");
  d.lease_token = make_lease_token(7, 1);
  auto claimed = std::async(std::launch::async, [&] { return worker_store.claim({d}, "B", 60); });
  const auto status = claimed.wait_for(std::chrono::seconds(5));
  locking.commit();  // the lock's end, whatever happened
  ASSERT_EQ(status, std::future_status::ready) << "the claim waited on the lock past its limit";
  auto r = claimed.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "db_timeout");
  EXPECT_TRUE(r.error().retryable);
}

TEST_F(DeliveryStoreTest, SucceededAndDeadDeliveriesAreNotClaimedAgain) {
  claim({delivery("ok"), delivery("gone")}, "w1");
  record({attempt("ok", 1, "succeeded", "succeeded", 200),
          attempt("gone", 1, "permanent", "dead", 410, "gone")});
  EXPECT_EQ(claim({delivery("ok"), delivery("gone")}, "w2"),
            (std::vector<S>{S::kAlreadySucceeded, S::kAlreadyDead}));
  EXPECT_EQ(claim({delivery("ok"), delivery("gone")}, "w1"),
            (std::vector<S>{S::kAlreadySucceeded, S::kAlreadyDead}));
}

// A claim is one attempt's: not even the worker holding the lease claims it again while it
// holds (a second copy of the message must not race the first attempt).
TEST_F(DeliveryStoreTest, LeaseIsExclusivePerClaimEvenForItsOwnWorker) {
  claim({delivery("k")}, "A");
  EXPECT_EQ(claim({delivery("k")}, "B"), (std::vector<S>{S::kLeasedElsewhere}));
  EXPECT_EQ(claim({delivery("k")}, "A"), (std::vector<S>{S::kLeasedElsewhere}));
  EXPECT_EQ(db_->scalar("SELECT lease_token FROM deliveries"), std::to_string(token_["k"]));
}

// A claim whose answer was lost (the round trip failed after the commit) is sent again with the
// same token, and wins.
TEST_F(DeliveryStoreTest, ClaimSentAgainWithItsTokenIsWon) {
  DeliveryRef d = delivery("k");
  d.lease_token = make_lease_token(7, 1);
  EXPECT_EQ(claim({d}, "A"), (std::vector<S>{S::kClaimed}));
  EXPECT_EQ(claim({d}, "A"), (std::vector<S>{S::kClaimed}));
  d.lease_token = make_lease_token(7, 2);
  EXPECT_EQ(claim({d}, "A"), (std::vector<S>{S::kLeasedElsewhere}));
}

// A worker id is unique among live workers, so its lease from an earlier run (the process was
// killed and started again) is taken back at once instead of after the lease expires.
TEST_F(DeliveryStoreTest, RestartedWorkerTakesBackItsEarlierRunsLease) {
  claim({delivery("k")}, "A", 60, /*run=*/0);
  EXPECT_EQ(claim({delivery("k")}, "A", 60, /*run=*/1), (std::vector<S>{S::kClaimed}));
  EXPECT_EQ(claim({delivery("k")}, "B", 60, /*run=*/1), (std::vector<S>{S::kLeasedElsewhere}));
}

// An attempt that outlived its lease, taken over since, is audited but does not move the
// delivery: the lease's holder decides. Its success still counts: the call did succeed.
TEST_F(DeliveryStoreTest, AttemptWhoseLeaseWasTakenOverDoesNotDecideTheState) {
  claim({delivery("k")}, "A", /*lease_seconds=*/1);
  int64_t stale = token_["k"];
  std::this_thread::sleep_for(milliseconds(1500));
  ASSERT_EQ(claim({delivery("k")}, "B"), (std::vector<S>{S::kClaimed}));
  AttemptRecord late = attempt("k", 1, "permanent", "dead", 410, "gone");
  late.lease_token = stale;
  record({late}, "A");
  EXPECT_EQ(db_->scalar("SELECT state || ' ' || lease_owner FROM deliveries"), "in_flight B");
  AttemptRecord late_success = attempt("k", 1, "succeeded", "succeeded", 200);
  late_success.lease_token = stale;
  record({late_success}, "A");
  EXPECT_EQ(db_->scalar("SELECT state || ' ' || (lease_owner IS NULL) FROM deliveries"),
            "succeeded true");
  record({attempt("k", 2, "succeeded", "succeeded", 200)}, "B");
  EXPECT_EQ(outcome_counts("k"), "duplicate_success=1,permanent=1,succeeded=1");
}

TEST_F(DeliveryStoreTest, ExpiredLeaseCanBeTakenOver) {
  claim({delivery("k")}, "A", /*lease_seconds=*/1);
  std::this_thread::sleep_for(milliseconds(1500));
  EXPECT_EQ(claim({delivery("k")}, "B"), (std::vector<S>{S::kClaimed}));
  EXPECT_EQ(db_->scalar("SELECT lease_owner FROM deliveries"), "B");
}

TEST_F(DeliveryStoreTest, RetryableAttemptGivesTheLeaseBack) {
  claim({delivery("k")}, "A");
  record({attempt("k", 1, "retryable", "retrying", 503, "busy")}, "A");
  EXPECT_EQ(claim({delivery("k")}, "B"), (std::vector<S>{S::kClaimed}));
}

TEST_F(DeliveryStoreTest, ReleaseGivesBackOnlyOwnLeases) {
  claim({delivery("mine")}, "A");
  claim({delivery("theirs")}, "C");
  ASSERT_TRUE(store_->release({{"mine", token_["mine"]}, {"theirs", token_["theirs"]}}, "A"));
  EXPECT_EQ(claim({delivery("mine"), delivery("theirs")}, "B"),
            (std::vector<S>{S::kClaimed, S::kLeasedElsewhere}));
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts_all"), "0");
}

// A release names the claim it gives back. An attempt that bounces after its lease passed to a
// later claim of the same delivery by this same worker (a retry message's claim after the lease
// was given back once, or a claim after an expiry) must not clear the later claim's lease while
// that claim's call is out: another worker would claim the delivery and send it again.
TEST_F(DeliveryStoreTest, ReleaseGivesBackOnlyTheClaimNamedByItsToken) {
  claim({delivery("k")}, "A", /*lease_seconds=*/1);
  const int64_t first = token_["k"];
  std::this_thread::sleep_for(milliseconds(1500));
  ASSERT_EQ(claim({delivery("k")}, "A"), (std::vector<S>{S::kClaimed})) << "the lease expired";
  const int64_t second = token_["k"];
  ASSERT_NE(first, second);
  ASSERT_TRUE(store_->release({{"k", first}}, "A"));
  EXPECT_EQ(db_->scalar("SELECT lease_token FROM deliveries"), std::to_string(second))
      << "a stale claim's release cleared the lease of the claim that holds it";
  EXPECT_EQ(claim({delivery("k")}, "B"), (std::vector<S>{S::kLeasedElsewhere}));
  ASSERT_TRUE(store_->release({{"k", second}}, "A"));
  EXPECT_EQ(claim({delivery("k")}, "B"), (std::vector<S>{S::kClaimed}));
}

// The token alone is not enough: a release under another worker's id leaves the lease alone.
TEST_F(DeliveryStoreTest, ReleaseUnderAnotherWorkersIdIsIgnored) {
  claim({delivery("k")}, "A");
  ASSERT_TRUE(store_->release({{"k", token_["k"]}}, "C"));
  EXPECT_EQ(db_->scalar("SELECT lease_owner FROM deliveries"), "A");
}

// Two copies of one delivery in one batch (a message and its replay, read together after a
// rebalance) are two attempts: only the first ref's claim holds the lease. Were both told they
// had it, the second one's bounce would give the lease back while the first one's call is out,
// and another worker could claim and send the delivery again.
TEST_F(DeliveryStoreTest, ARepeatedKeyInOneBatchIsClaimedByItsFirstRefOnly) {
  std::vector<DeliveryRef> refs = {delivery("x"), delivery("y"), delivery("x")};
  refs[0].lease_token = make_lease_token(5, 1);
  refs[1].lease_token = make_lease_token(5, 2);
  refs[2].lease_token = make_lease_token(5, 3);
  EXPECT_EQ(claim(refs, "A"), (std::vector<S>{S::kClaimed, S::kClaimed, S::kLeasedElsewhere}));
  EXPECT_EQ(db_->scalar("SELECT lease_token FROM deliveries WHERE delivery_key = 'x'"),
            std::to_string(make_lease_token(5, 1)));
  EXPECT_EQ(claim({delivery("x"), delivery("x"), delivery("z")}, "B"),
            (std::vector<S>{S::kLeasedElsewhere, S::kLeasedElsewhere, S::kClaimed}));
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM deliveries"), "3");
}

// A copy of the delivery's message from before its newest retry (read again after a rebalance
// or restart, its offset not yet committed) once that retry is in Kafka: claimed, it would be
// attempted at once, ahead of the retry's backoff, and start a second retry chain. The copy
// that made the newest attempt is still claimed: its retry may never have reached Kafka.
TEST_F(DeliveryStoreTest, ACopyOlderThanTheDeliverysFenceIsSuperseded) {
  claim({delivery("k")}, "A");
  record({attempt("k", 1, "retryable", "retrying", 503, "busy")}, "A");
  DeliveryRef first = delivery("k");
  EXPECT_EQ(claim({first}, "B"), (std::vector<S>{S::kClaimed})) << "no retry is known yet";
  record({attempt("k", 2, "retryable", "retrying", 503, "busy")}, "B");
  ASSERT_TRUE(store_->fence({{"k", 2, last_attempt_ms("k")}}));
  EXPECT_EQ(db_->scalar("SELECT retry_fence FROM deliveries"), "2");
  EXPECT_EQ(claim({first}, "C"), (std::vector<S>{S::kSuperseded}));
  DeliveryRef second = delivery("k");
  second.attempts_made = 1;
  EXPECT_EQ(claim({second}, "C"), (std::vector<S>{S::kSuperseded}));
  EXPECT_EQ(db_->scalar("SELECT state || ' ' || (lease_owner IS NULL) FROM deliveries"),
            "retrying true")
      << "a stale copy's claim took the lease";
  DeliveryRef retry = delivery("k");
  retry.attempts_made = 2;
  EXPECT_EQ(claim({retry}, "C"), (std::vector<S>{S::kClaimed}));
}

// A copy that is in Kafka says so itself: its claim raises the fence to its count, so older
// copies read after it are stale even when the fence of its publication was never written.
TEST_F(DeliveryStoreTest, AClaimRaisesTheFenceToItsCopysCount) {
  DeliveryRef retry = delivery("k");
  retry.attempts_made = 3;
  ASSERT_EQ(claim({retry}, "A"), (std::vector<S>{S::kClaimed}));
  EXPECT_EQ(db_->scalar("SELECT retry_fence FROM deliveries"), "3");
  record({attempt("k", 4, "retryable", "retrying", 503, "busy")}, "A");
  DeliveryRef older = delivery("k");
  older.attempts_made = 2;
  EXPECT_EQ(claim({older}, "B"), (std::vector<S>{S::kSuperseded}));
  EXPECT_EQ(claim({delivery("n")}, "B"), (std::vector<S>{S::kClaimed}));
  EXPECT_EQ(db_->scalar("SELECT retry_fence IS NULL FROM deliveries WHERE delivery_key = 'n'"), "t")
      << "a first copy keeps the row's room";
}

// Two copies of one delivery in one batch, the older first: the newer one is claimed.
TEST_F(DeliveryStoreTest, ARepeatedKeyIsClaimedByItsNewestCopy) {
  claim({delivery("k")}, "A");
  record({attempt("k", 1, "retryable", "retrying", 503, "busy")}, "A");
  DeliveryRef retry = delivery("k");
  retry.attempts_made = 1;
  EXPECT_EQ(claim({delivery("k"), retry}, "B"), (std::vector<S>{S::kSuperseded, S::kClaimed}));
}

// The fence only rises, and a finished delivery keeps none.
TEST_F(DeliveryStoreTest, AFenceNeverFallsAndIsNotSetOnAFinishedDelivery) {
  claim({delivery("k"), delivery("done")}, "A");
  record({attempt("k", 1, "retryable", "retrying", 503, "busy"),
          attempt("done", 1, "succeeded", "succeeded", 200)},
         "A");
  const int64_t k_at = last_attempt_ms("k");
  ASSERT_TRUE(
      store_->fence({{"k", 3, k_at}, {"k", 2, k_at}, {"done", 1, last_attempt_ms("done")}}));
  ASSERT_TRUE(store_->fence({{"k", 1, k_at}}));
  EXPECT_EQ(db_->scalar("SELECT coalesce(retry_fence::text, '-') FROM deliveries"
                        " WHERE delivery_key = 'done'"),
            "-");
  EXPECT_EQ(db_->scalar("SELECT retry_fence FROM deliveries WHERE delivery_key = 'k'"), "3");
}

// A replay or a resumed route's release starts a new count: the row loses its fence as it
// leaves 'dead' or 'parked' for 'retrying', whoever moves it (a tool of an older version, SQL by
// hand). A record that leaves it 'retrying' keeps it.
TEST_F(DeliveryStoreTest, ARowLeavingDeadOrParkedForRetryingLosesItsFence) {
  for (const char* key : {"dead", "parked", "live"}) {
    DeliveryRef retry = delivery(key);
    retry.attempts_made = 2;
    ASSERT_EQ(claim({retry}, "A"), (std::vector<S>{S::kClaimed}));
  }
  record({attempt("dead", 3, "permanent", "dead", 410, "gone"),
          attempt("parked", 3, "retryable", "parked", 503, "busy"),
          attempt("live", 3, "retryable", "retrying", 503, "busy")},
         "A");
  db_->scalar(
      "UPDATE deliveries SET state = 'retrying' WHERE state IN ('dead', 'parked')"
      " RETURNING 1");
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key || '=' || coalesce(retry_fence::text, "
                        "'-'), ',' ORDER BY delivery_key) FROM deliveries"),
            "dead=-,live=2,parked=-");
  EXPECT_EQ(claim({delivery("dead"), delivery("parked"), delivery("live")}, "B"),
            (std::vector<S>{S::kClaimed, S::kClaimed, S::kSuperseded}));
}

// A fence that arrives late: the retry it follows was taken up elsewhere meanwhile, died, and an
// operator replayed the delivery. Raised, it would hold back the replay's copy, which counts from
// 0. The delivery's last attempt is no longer the one the fence follows: it is not raised. A
// fence of the delivery's last attempt is.
TEST_F(DeliveryStoreTest, AFenceArrivingAfterTheDeliveryWentOnIsNotRaised) {
  claim({delivery("k"), delivery("other")}, "A");
  const int64_t started = unix_now_ms() - 1000;
  AttemptRecord failed = attempt("k", 1, "retryable", "retrying", 503, "busy");
  failed.started_ms = started;
  AttemptRecord other = attempt("other", 1, "retryable", "retrying", 503, "busy");
  other.started_ms = started;
  record({failed, other}, "A");
  DeliveryRef retry = delivery("k");
  retry.attempts_made = 1;
  ASSERT_EQ(claim({retry}, "B"), (std::vector<S>{S::kClaimed}));
  record({attempt("k", 2, "permanent", "dead", 410, "gone")}, "B");
  db_->scalar("UPDATE deliveries SET state = 'retrying' WHERE delivery_key = 'k' RETURNING 1");
  ASSERT_TRUE(store_->fence({{"k", 1, started}, {"other", 1, started}}));
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key || '=' || coalesce(retry_fence::text, "
                        "'-'), ',' ORDER BY delivery_key) FROM deliveries"),
            "k=-,other=1");
  EXPECT_EQ(claim({delivery("k")}, "C"), (std::vector<S>{S::kClaimed}))
      << "the replay's copy was held back";
}

// An operator's resend of a succeeded delivery counts its attempts anew, from its own copy.
TEST_F(DeliveryStoreTest, AResendIsClaimedWhateverTheFenceAndCountsAnew) {
  DeliveryRef retry = delivery("k");
  retry.attempts_made = 4;
  claim({retry}, "A");
  record({attempt("k", 5, "succeeded", "succeeded", 200)}, "A");
  db_->scalar("UPDATE deliveries SET resend_id = 1 RETURNING 1");
  EXPECT_EQ(claim({delivery("k")}, "B"), (std::vector<S>{S::kClaimed}));
  EXPECT_EQ(db_->scalar("SELECT coalesce(retry_fence::text, '-') FROM deliveries"), "-");
}

TEST_F(DeliveryStoreTest, RecordWritesAuditRowsAndDeliveryColumns) {
  claim({delivery("k")}, "w1");
  record({attempt("k", 1, "retryable", "retrying", 503, "service unavailable")});
  EXPECT_EQ(db_->scalar("SELECT state || ' ' || attempts || ' ' || last_status || ' ' || "
                        "last_error || ' ' || (lease_owner IS NULL) FROM deliveries"),
            "retrying 1 503 service unavailable true");
  claim({delivery("k")}, "w1");
  record({attempt("k", 2, "succeeded", "succeeded", 204)});
  EXPECT_EQ(db_->scalar("SELECT state || ' ' || attempts || ' ' || last_status || ' ' || "
                        "(completed_at IS NOT NULL) || ' ' || (first_attempt_at < last_attempt_at "
                        "OR first_attempt_at = last_attempt_at) FROM deliveries"),
            "succeeded 2 204 true true");
  EXPECT_EQ(db_->scalar("SELECT string_agg(attempt || ':' || outcome || ':' || "
                        "coalesce(http_status, 0) || ':' || worker_id, ',' ORDER BY attempt) "
                        "FROM delivery_attempts_all"),
            "1:retryable:503:w1,2:succeeded:204:w1");
}

TEST_F(DeliveryStoreTest, ExactlyOneSucceededAttemptPerKey) {
  claim({delivery("k")}, "w1");
  record({attempt("k", 1, "succeeded", "succeeded", 200)});
  auto again = attempt("k", 1, "succeeded", "succeeded", 200);  // redelivered after a crash
  again.started_ms += 5;                                        // a second call, started later
  record({again});
  // Two successes of another key inside one batch.
  claim({delivery("j")}, "w1");
  record({attempt("j", 1, "succeeded", "succeeded", 200),
          attempt("j", 2, "succeeded", "succeeded", 201)});
  EXPECT_EQ(outcome_counts("k"), "duplicate_success=1,succeeded=1");
  EXPECT_EQ(outcome_counts("j"), "duplicate_success=1,succeeded=1");
  // A late failure does not undo the success.
  record({attempt("k", 2, "retryable", "retrying", 500)});
  EXPECT_EQ(db_->scalar("SELECT state || ' ' || last_status FROM deliveries "
                        "WHERE delivery_key = 'k'"),
            "succeeded 200");
}

TEST_F(DeliveryStoreTest, AttemptsOfOneKeyInOneBatchApplyInOrder) {
  claim({delivery("k")}, "w1");
  record({attempt("k", 1, "retryable", "retrying", 503, "busy"),
          attempt("k", 2, "succeeded", "succeeded", 200)});
  EXPECT_EQ(db_->scalar("SELECT state || ' ' || attempts || ' ' || last_status FROM deliveries"),
            "succeeded 2 200");
  EXPECT_EQ(outcome_counts("k"), "retryable=1,succeeded=1");
}

// Both workers deliver the same batch (a lease lost mid-flight) and record at the same moment:
// the row locks must serialize them so the second sees the first's success.
TEST_F(DeliveryStoreTest, ConcurrentSuccessesFromTwoWorkersStoreOneSucceededRow) {
  constexpr int kKeys = 2000;
  std::vector<DeliveryRef> refs;
  std::vector<AttemptRecord> successes;
  for (int i = 0; i < kKeys; ++i) {
    refs.push_back(delivery("c" + std::to_string(i)));
    successes.push_back(attempt(refs.back().key, 1, "succeeded", "succeeded", 200));
  }
  claim(refs, "A");
  auto other = connected_other_store();
  auto [ra, rb] = at_once([&] { return store_->record(successes, "A"); },
                          [&] { return other->record(successes, "B"); });
  ASSERT_TRUE(ra) << ra.error().message;
  ASSERT_TRUE(rb) << rb.error().message;
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts_all WHERE outcome = 'succeeded'"),
            std::to_string(kKeys));
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts_all "
                        "WHERE outcome = 'duplicate_success'"),
            std::to_string(kKeys));
}

// Every attempt of `key` as readers see it (delivery_attempts_all), in start order: attempt,
// start (ms), duration, status, outcome, error and worker, '|'-separated, one per line.
std::string attempts_read_back(const testing::ScratchDatabase& db, const std::string& key) {
  return db.scalar(
      "SELECT string_agg(concat_ws('|', attempt, (extract(epoch from started_at) * 1000)::bigint,"
      " duration_ms, coalesce(http_status::text, 'null'), outcome, error, worker_id), E'\\n'"
      " ORDER BY started_at, attempt) FROM delivery_attempts_all WHERE delivery_key = '" +
      key + "'");
}

// A first attempt that succeeds is kept in the deliveries row (migrations/0015): no
// delivery_attempts row, and readers see the attempt exactly as the row would have held it.
TEST_F(DeliveryStoreTest, FirstAttemptSuccessIsKeptInTheRowAndReadsBackAsItsAttempt) {
  claim({delivery("k"), delivery("e")}, "A");
  AttemptRecord ok = attempt("k", 1, "succeeded", "succeeded", 201);
  ok.started_ms = 1764250000123;
  ok.duration_ms = 4321;
  // A success with an error text (the worker writes none today; stored all the same).
  AttemptRecord noted = attempt("e", 1, "succeeded", "succeeded", 204, "note");
  noted.started_ms = 1764250000999;
  record({ok, noted}, "worker-7");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts"), "0");
  EXPECT_EQ(attempts_read_back(*db_, "k"), "1|1764250000123|4321|201|succeeded||worker-7");
  EXPECT_EQ(attempts_read_back(*db_, "e"), "1|1764250000999|12|204|succeeded|note|worker-7");
  // The row is the delivery's as before: succeeded, no lease.
  EXPECT_EQ(
      db_->scalar("SELECT state || ' ' || attempts || ' ' || last_status || ' ' || "
                  "(lease_owner IS NULL) || ' ' || (completed_at IS NOT NULL) FROM deliveries "
                  "WHERE delivery_key = 'k'"),
      "succeeded 1 201 true true");
  // The same attempts recorded as rows (what the record wrote before the fold) read back alike.
  db_->scalar(
      "INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms, http_status,"
      " outcome, error, worker_id) VALUES ('k-row', 1, to_timestamp(1764250000123 / 1000.0), 4321,"
      " 201, 'succeeded', '', 'worker-7')");
  EXPECT_EQ(attempts_read_back(*db_, "k-row"), attempts_read_back(*db_, "k"));
}

// Only a success of attempt 1 that moves the row is folded: failures, later attempts and a success
// that finds the delivery succeeded already are rows.
TEST_F(DeliveryStoreTest, OnlyAFirstAttemptThatMovesTheRowIsFolded) {
  claim({delivery("retried"), delivery("dup"), delivery("failed")}, "A");
  record({attempt("retried", 1, "retryable", "retrying", 503, "busy"),
          attempt("dup", 1, "succeeded", "succeeded", 200),
          attempt("failed", 1, "permanent", "dead", 410, "gone")},
         "A");
  claim({delivery("retried")}, "A");
  record({attempt("retried", 2, "succeeded", "succeeded", 200)}, "A");
  record({attempt("dup", 1, "succeeded", "succeeded", 200)}, "B");  // redelivered after a crash
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key || ':' || attempt || ':' || outcome, ','"
                        " ORDER BY delivery_key, attempt, outcome) FROM delivery_attempts"),
            "dup:1:duplicate_success,failed:1:permanent,retried:1:retryable,"
            "retried:2:succeeded");
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key, ',') FROM deliveries"
                        " WHERE first_duration_ms IS NOT NULL"),
            "dup");
  EXPECT_EQ(outcome_counts("dup"), "duplicate_success=1,succeeded=1");
  EXPECT_EQ(outcome_counts("retried"), "retryable=1,succeeded=1");
  EXPECT_EQ(db_->scalar("SELECT string_agg(worker_id, ',' ORDER BY outcome) FROM "
                        "delivery_attempts_all WHERE delivery_key = 'dup'"),
            "B,A");
}

// A batch whose commit went unanswered (the connection dropped with the commit done) is sent
// again as it was: each of its attempts is stored once, none as a duplicate success.
TEST_F(DeliveryStoreTest, ARecordSentAgainAfterAnUnansweredCommitStoresEachAttemptOnce) {
  claim({delivery("first"), delivery("retried"), delivery("second")}, "w1");
  const std::vector<AttemptRecord> batch1 = {
      {"first", 1, unix_now_ms(), 12, 200, "succeeded", "", "succeeded", token_["first"]},
      {"retried", 1, unix_now_ms(), 12, 503, "retryable", "busy", "retrying", token_["retried"]},
      {"second", 1, unix_now_ms(), 12, 500, "retryable", "oops", "retrying", token_["second"]}};
  record(batch1);
  record(batch1);
  claim({delivery("second")}, "w1");
  const std::vector<AttemptRecord> batch2 = {
      {"second", 2, unix_now_ms() + 1, 12, 204, "succeeded", "", "succeeded", token_["second"]}};
  record(batch2);
  record(batch2);
  EXPECT_EQ(outcome_counts("first"), "succeeded=1");
  EXPECT_EQ(outcome_counts("retried"), "retryable=1");
  EXPECT_EQ(outcome_counts("second"), "retryable=1,succeeded=1");
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key || ' ' || state || ' ' || attempts, ','"
                        " ORDER BY delivery_key) FROM deliveries"),
            "first succeeded 1,retried retrying 1,second succeeded 2");
  // Another worker's success of the same attempt number is still a duplicate.
  record({{"first", 1, batch1[0].started_ms, 12, 200, "succeeded", "", "succeeded", 0}}, "w2");
  EXPECT_EQ(outcome_counts("first"), "duplicate_success=1,succeeded=1");
}

// An attempt 1 recorded after a failed attempt 1 (its message read again after a rebalance) is
// not the row's first attempt: first_attempt_at is the failure's start, so the success is a row.
TEST_F(DeliveryStoreTest, ASecondAttemptNumberedOneIsNotFolded) {
  claim({delivery("k")}, "A");
  AttemptRecord failed = attempt("k", 1, "retryable", "retrying", 503);
  failed.started_ms -= 1000;
  record({failed}, "A");
  claim({delivery("k")}, "B");
  record({attempt("k", 1, "succeeded", "succeeded", 200)}, "B");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM deliveries WHERE first_duration_ms IS NOT NULL"),
            "0");
  EXPECT_EQ(db_->scalar("SELECT string_agg(outcome || ':' || worker_id, ',' ORDER BY started_at)"
                        " FROM delivery_attempts"),
            "retryable:A,succeeded:B");
}

// A folded attempt is written out to delivery_attempts, unchanged, before anything rewrites the
// columns it is read from: the claim of an operator's resend (the row leaves 'succeeded', and the
// next record sets the last status), a direct update, a delete.
TEST_F(DeliveryStoreTest, AFoldedAttemptIsWrittenOutBeforeItsRowChanges) {
  claim({delivery("resent"), delivery("edited"), delivery("deleted")}, "A");
  record({attempt("resent", 1, "succeeded", "succeeded", 201),
          attempt("edited", 1, "succeeded", "succeeded", 202),
          attempt("deleted", 1, "succeeded", "succeeded", 203)},
         "A");
  const std::string resent = attempts_read_back(*db_, "resent");
  const std::string edited = attempts_read_back(*db_, "edited");
  const std::string deleted = attempts_read_back(*db_, "deleted");
  ASSERT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts"), "0");

  db_->scalar("UPDATE deliveries SET resend_id = 1 WHERE delivery_key = 'resent'");  // mark_resend
  EXPECT_EQ(attempts_read_back(*db_, "resent"), resent) << "the marker alone changes nothing";
  EXPECT_EQ(claim({delivery("resent")}, "B"), (std::vector<S>{S::kClaimed}));
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts WHERE delivery_key = 'resent'"),
            "1");
  EXPECT_EQ(attempts_read_back(*db_, "resent"), resent);
  record({attempt("resent", 2, "succeeded", "succeeded", 200, "")}, "B");
  EXPECT_EQ(attempts_read_back(*db_, "resent").substr(0, resent.size() + 1), resent + "\n");
  EXPECT_EQ(outcome_counts("resent"), "succeeded=2");

  db_->scalar("UPDATE deliveries SET last_status = 500 WHERE delivery_key = 'edited'");
  EXPECT_EQ(attempts_read_back(*db_, "edited"), edited);
  db_->scalar("DELETE FROM deliveries WHERE delivery_key = 'deleted'");
  EXPECT_EQ(attempts_read_back(*db_, "deleted"), deleted);
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM deliveries WHERE first_duration_ms IS NOT NULL"),
            "0");
}

TEST_F(DeliveryStoreTest, RecordInboundCountsOnlyNewEvents) {
  auto ev = [](const std::string& id, int64_t offset) {
    return InboundEventRecord{"github", id, "hookrelay.webhooks", 3, offset, unix_now_ms(), "ab12"};
  };
  auto first = store_->record_inbound({ev("e1", 1), ev("e2", 2), ev("e1", 3)});
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(*first, 2);
  auto again = store_->record_inbound({ev("e1", 4), ev("e3", 5)});
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, 1);
  // The first sighting is the one kept.
  EXPECT_EQ(db_->scalar("SELECT \"partition\" || ':' || \"offset\" FROM inbound_events "
                        "WHERE event_id = 'e1'"),
            "3:1");
}

TEST_F(DeliveryStoreTest, ClaimAndAuditCommitTogetherInOneStatement) {
  auto ev = [](const std::string& id, int64_t offset, int64_t received_ms = unix_now_ms()) {
    return InboundEventRecord{"github", id, "hookrelay.webhooks", 3, offset, received_ms, "ab12"};
  };
  auto refs = [this](std::vector<DeliveryRef> v) {
    for (auto& r : v) r.lease_token = make_lease_token(9, ++claims_);
    return v;
  };
  auto both = store_->claim_and_audit(refs({delivery("a"), delivery("b")}),
                                      {ev("e1", 1), ev("e2", 2)}, "w1", 60);
  ASSERT_TRUE(both) << both.error().message;
  EXPECT_EQ(*both, (std::vector<S>{S::kClaimed, S::kClaimed}));
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM inbound_events"), "2");
  // A redelivered event keeps its first sighting; its claim is answered as before.
  auto again = store_->claim_and_audit(refs({delivery("a")}), {ev("e1", 9)}, "w1", 60);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, (std::vector<S>{S::kLeasedElsewhere}));
  EXPECT_EQ(db_->scalar("SELECT \"offset\" FROM inbound_events WHERE event_id = 'e1'"), "1");
  // An audit row the database refuses (a time out of range) takes its claims with it: nothing of
  // the statement is committed, and the error says it is not worth retrying as is.
  auto refused = store_->claim_and_audit(refs({delivery("c")}),
                                         {ev("e3", 3), ev("e4", 4, INT64_MAX / 2)}, "w1", 60);
  ASSERT_FALSE(refused);
  EXPECT_FALSE(refused.error().retryable) << refused.error().code;
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM deliveries WHERE delivery_key = 'c'"), "0");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM inbound_events"), "2");
  // Claims alone through the same path.
  auto alone = store_->claim_and_audit(refs({delivery("c")}), {}, "w1", 60);
  ASSERT_TRUE(alone) << alone.error().message;
  EXPECT_EQ(*alone, (std::vector<S>{S::kClaimed}));
}

// Another worker's claim of the same new key and event has inserted their rows and not committed:
// this claim cannot see them, inserts too and waits on the unique indexes. When the other
// commits, this claim is answered from the other's row (leased elsewhere) and its audit keeps the
// other's sighting; when the other rolls back, this claim wins. Either way, no error.
TEST_F(DeliveryStoreTest, ClaimRacingAnUncommittedInsertOfItsKeyEndsWithOneHolder) {
  for (const bool other_commits : {true, false}) {
    SCOPED_TRACE(other_commits ? "other commits" : "other rolls back");
    const std::string key = other_commits ? "race-c" : "race-r";
    pqxx::connection other(db_->url());
    pqxx::work tx(other);
    tx.exec_params(
        "INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, "
        "origin_topic, state, attempts, lease_owner, lease_until, lease_token, first_seen_at) "
        "VALUES ($1, 'webhook', 'github', 'evt-' || $1, 'ci', 'http://127.0.0.1:9/hook', "
        "'hookrelay.webhooks', 'in_flight', 0, 'B', now() + interval '60 s', 7, now())",
        key);
    tx.exec_params(
        "INSERT INTO inbound_events (source, event_id, received_at, topic, \"partition\", "
        "\"offset\") VALUES ('github', 'evt-' || $1, now(), 'hookrelay.webhooks', 0, 1)",
        key);
    std::vector<DeliveryRef> refs = {delivery(key), delivery(key + "-alone")};
    for (auto& r : refs) r.lease_token = make_lease_token(9, ++claims_);
    const std::vector<InboundEventRecord> audit = {
        {"github", "evt-" + key, "hookrelay.webhooks", 0, 2, unix_now_ms(), ""},
        {"github", "evt-" + key + "-alone", "hookrelay.webhooks", 0, 3, unix_now_ms(), ""}};
    std::atomic<bool> done{false};
    std::optional<Result<std::vector<ClaimStatus>>> r;
    std::thread t([&] {
      r.emplace(store_->claim_and_audit(refs, audit, "A", 60));
      done = true;
    });
    std::this_thread::sleep_for(milliseconds(300));
    EXPECT_FALSE(done) << "the claim did not wait for the other's insert";
    if (other_commits) {
      tx.commit();
    } else {
      tx.abort();
    }
    t.join();
    ASSERT_TRUE(*r) << r->error().message;
    EXPECT_EQ(**r,
              (std::vector<S>{other_commits ? S::kLeasedElsewhere : S::kClaimed, S::kClaimed}));
    EXPECT_EQ(db_->scalar("SELECT count(*) || ' ' || min(lease_owner) FROM deliveries "
                          "WHERE delivery_key = '" +
                          key + "'"),
              other_commits ? "1 B" : "1 A");
    EXPECT_EQ(db_->scalar("SELECT count(*) || ' ' || min(\"offset\") FROM inbound_events "
                          "WHERE event_id = 'evt-" +
                          key + "'"),
              other_commits ? "1 1" : "1 2");
  }
}

// Two workers claiming the same new keys (with their events' audit) at the same moment, batch
// after batch: every key ends with one row, held by exactly one of the two claims, and neither
// claim fails.
TEST_F(DeliveryStoreTest, TwoWorkersClaimingTheSameNewKeysEndWithOneClaimEach) {
  constexpr int kRounds = 20;
  constexpr int kKeys = 300;
  auto other = connected_other_store();
  for (int round = 0; round < kRounds; ++round) {
    std::vector<DeliveryRef> a, b;
    std::vector<InboundEventRecord> audit;
    for (int i = 0; i < kKeys; ++i) {
      a.push_back(delivery("r" + std::to_string(round) + "-" + std::to_string(i)));
      audit.push_back({"github", a.back().event_id, "hookrelay.webhooks", 0, i, unix_now_ms(), ""});
      b.push_back(a.back());
      a.back().lease_token = make_lease_token(1, ++claims_);
      b.back().lease_token = make_lease_token(2, claims_);
    }
    auto [ra, rb] = at_once([&] { return store_->claim_and_audit(a, audit, "A", 60); },
                            [&] { return other->claim_and_audit(b, audit, "B", 60); });
    ASSERT_TRUE(ra) << ra.error().message;
    ASSERT_TRUE(rb) << rb.error().message;
    for (int i = 0; i < kKeys; ++i) {
      EXPECT_EQ(((*ra)[i] == S::kClaimed) + ((*rb)[i] == S::kClaimed), 1) << a[i].key;
    }
  }
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM deliveries"), std::to_string(kRounds * kKeys));
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM inbound_events WHERE source = 'github'"),
            std::to_string(kRounds * kKeys));
}

// Two workers meeting a route's new URL at the same moment, round after round: neither claim
// fails, the pair gets one delivery_targets row, and every row reads back with its URL.
TEST_F(DeliveryStoreTest, TwoWorkersMeetingANewUrlTogetherShareOneTarget) {
  constexpr int kRounds = 20;
  constexpr int kKeys = 50;
  auto other = connected_other_store();
  for (int round = 0; round < kRounds; ++round) {
    const std::string url = "http://127.0.0.1:9/r" + std::to_string(round);
    std::vector<DeliveryRef> a, b;
    for (int i = 0; i < kKeys; ++i) {
      for (auto* refs : {&a, &b}) {
        const std::string event =
            (refs == &a ? "a" : "b") + std::to_string(round) + "-" + std::to_string(i);
        refs->push_back(DeliveryRef{"wh:github:" + event + ":ci", "webhook", "github", event, "ci",
                                    url, "hookrelay.webhooks", 0, make_lease_token(1, ++claims_)});
      }
    }
    auto [ra, rb] = at_once([&] { return store_->claim(a, "A", 60); },
                            [&] { return other->claim(b, "B", 60); });
    ASSERT_TRUE(ra) << ra.error().message;
    ASSERT_TRUE(rb) << rb.error().message;
    EXPECT_EQ(*ra, std::vector<S>(kKeys, S::kClaimed));
    EXPECT_EQ(*rb, std::vector<S>(kKeys, S::kClaimed));
  }
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_targets"), std::to_string(kRounds));
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM deliveries WHERE url = 'http://127.0.0.1:9/r' || "
                        "substr(split_part(event_id, '-', 1), 2)"),
            std::to_string(kRounds * kKeys * 2));
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_rows WHERE target_id IS NULL"), "0");
}

TEST_F(DeliveryStoreTest, AnyTextSurvivesTheBatchParameters) {
  // Array-literal syntax in the values, and bytes PostgreSQL text cannot hold (NUL, invalid
  // UTF-8), which become U+FFFD instead of failing the batch.
  DeliveryRef d = delivery("k,{\"NULL\"}\\ x");
  d.event_id = std::string("evt \"q\" {a,b}\0\xff", 15);
  d.url = "http://127.0.0.1:9/h?a=1,b={2}";
  EXPECT_EQ(claim({d, delivery("plain")}, "A"), (std::vector<S>{S::kClaimed, S::kClaimed}));
  record({attempt(d.key, 1, "retryable", "retrying", 0, "bad \"peer\" \\ \xc3\x28 NULL")}, "A");
  EXPECT_EQ(db_->scalar("SELECT event_id || '|' || url || '|' || last_error FROM deliveries "
                        "WHERE delivery_key = 'k,{\"NULL\"}\\ x'"),
            "evt \"q\" {a,b}\xef\xbf\xbd\xef\xbf\xbd|http://127.0.0.1:9/h?a=1,b={2}|"
            "bad \"peer\" \\ \xef\xbf\xbd( NULL");
  auto inbound = store_->record_inbound(
      {InboundEventRecord{"src\"", "e,{}", "hookrelay.webhooks", 0, 7, unix_now_ms(), ""}});
  ASSERT_TRUE(inbound) << inbound.error().message;
  EXPECT_EQ(
      db_->scalar("SELECT source || event_id || encode(body_sha256, 'hex') FROM inbound_events"),
      "src\"e,{}");
}

// A webhook whose key is its source, event id and route keeps only the key, and its url and
// origin topic are one delivery_targets row per distinct pair (migrations/0016); every other row
// keeps its own. Readers see each delivery's values through the deliveries view either way.
TEST_F(DeliveryStoreTest, AWebhookRowKeepsOnlyItsKeyAndItsRoutesTarget) {
  auto webhook = [](const std::string& event_id, const std::string& route, const std::string& url) {
    return DeliveryRef{"wh:github:" + event_id + ":" + route,
                       "webhook",
                       "github",
                       event_id,
                       route,
                       url,
                       "hookrelay.webhooks",
                       unix_now_ms()};
  };
  std::vector<DeliveryRef> refs = {
      webhook("e1", "ci", "http://127.0.0.1:9/ci"),
      webhook("e1", "deploy", "http://127.0.0.1:9/ci"),  // another route, the same URL
      webhook("e:2:", "ci", "http://127.0.0.1:9/ci"),    // ':' in the event id
      webhook("e3", "ci", "http://127.0.0.1:9/other"),
      DeliveryRef{"call:idem-1", "call", "", "c1", "call", "http://127.0.0.1:9/cb?x=1",
                  "hookrelay.calls", unix_now_ms()},
      delivery("not-its-parts"),  // a key that is not 'wh:' source ':' event ':' route
  };
  refs[3].origin_topic = "hookrelay.retry.0";  // the same URL under another topic is another pair
  refs.push_back(webhook("e4", "ci", "http://127.0.0.1:9/other"));
  refs.back().origin_topic = "hookrelay.webhooks";
  ASSERT_EQ(claim(refs, "A"), std::vector<S>(refs.size(), S::kClaimed));
  for (const DeliveryRef& r : refs) {
    EXPECT_EQ(db_->scalar("SELECT kind || '|' || source || '|' || event_id || '|' || destination "
                          "|| '|' || url || '|' || origin_topic FROM deliveries WHERE "
                          "delivery_key = '" +
                          r.key + "'"),
              r.kind + "|" + r.source + "|" + r.event_id + "|" + r.destination + "|" + r.url + "|" +
                  r.origin_topic)
        << r.key;
    EXPECT_EQ(
        db_->scalar("SELECT string_agg(delivery_key, ',' ORDER BY delivery_key) FROM deliveries "
                    "WHERE event_id = '" +
                    r.event_id + "'"),
        r.event_id == "e1" ? "wh:github:e1:ci,wh:github:e1:deploy" : r.key);
  }
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key, ',' ORDER BY delivery_key) FROM "
                        "delivery_rows WHERE kind IS NULL"),
            "wh:github:e1:ci,wh:github:e1:deploy,wh:github:e3:ci,wh:github:e4:ci,"
            "wh:github:e:2::ci");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_targets"), "4");
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key, ',') FROM delivery_rows "
                        "WHERE target_id IS NULL"),
            "call:idem-1");

  // Later claims of known pairs add no target; the records and their audit read as before.
  ASSERT_EQ(claim({webhook("e5", "ci", "http://127.0.0.1:9/ci")}, "A"),
            std::vector<S>{S::kClaimed});
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_targets"), "4");
  record({attempt("wh:github:e1:ci", 1, "succeeded", "succeeded", 200),
          attempt("call:idem-1", 1, "permanent", "dead", 410, "gone"),
          attempt("wh:github:e3:ci", 1, "permanent", "dead", 410, "gone")});
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key || '|' || source || '|' || destination, "
                        "',' ORDER BY delivery_key) FROM dead_letters"),
            "call:idem-1||call,wh:github:e3:ci|github|ci");
  EXPECT_EQ(outcome_counts("wh:github:e1:ci"), "succeeded=1");
}

TEST_F(DeliveryStoreTest, ThousandClaimsAndRecordsInOneBatchEach) {
  std::vector<DeliveryRef> refs;
  std::vector<AttemptRecord> records;
  for (int i = 0; i < 1000; ++i) {
    refs.push_back(delivery("bulk-" + std::to_string(i)));
    records.push_back(attempt(refs.back().key, 1, "succeeded", "succeeded", 200));
  }
  auto statuses = claim(refs, "A");
  ASSERT_EQ(statuses.size(), 1000u);
  EXPECT_EQ(std::count(statuses.begin(), statuses.end(), S::kClaimed), 1000);
  record(records, "A");
  statuses = claim(refs, "A");
  EXPECT_EQ(std::count(statuses.begin(), statuses.end(), S::kAlreadySucceeded), 1000);
}

// The store's statements must find a batch's rows through the indexes at any table size: a
// plan that scans the table costs O(table) per batch. Each statement is planned once per
// connection, here while the tables are empty, and the plan must still hold at 50,000 rows.
TEST_F(DeliveryStoreTest, StatementsNeverScanATable) {
  pqxx::connection c(db_->url());
  PostgresDeliveryStore::prepare_connection(c);
  for (const char* name :
       {"hr_claim", "hr_record", "hr_record_inbound", "hr_release", "hr_fence"}) {
    c.prepare_now(name);  // libpqxx prepares on first use; EXECUTE needs it now
  }
  // Array literals of 1000 elements: prefix + index, or `value` repeated.
  auto batch = [](const std::string& prefix, bool numbered) {
    std::string a = "{";
    for (int i = 0; i < 1000; ++i)
      a += (i ? "," : "") + prefix + (numbered ? std::to_string(i) : "");
    return a + "}";
  };
  const std::string keys = batch("k", true), ints = batch("", true), texts = batch("t", true);
  auto plans = [&] {
    pqxx::work tx(c);  // rolled back: only the plans are wanted
    std::string out;
    auto explain = [&](const std::string& sql) {
      for (const auto& row : tx.exec("EXPLAIN (ANALYZE, COSTS OFF) " + sql)) {
        out += row[0].as<std::string>() + "\n";
      }
    };
    const std::string t = tx.quote(texts), i = tx.quote(ints), k = tx.quote(keys);
    explain("EXECUTE hr_claim(" + k + "," + tx.quote(batch("webhook", false)) + "," + t + "," + t +
            "," + t + "," + t + "," + t + "," + i + ", 'A', 60, " + i + "," + i + ")");
    explain("EXECUTE hr_record(" + k + "," + i + "," + i + "," + i + "," + i + "," +
            tx.quote(batch("retryable", false)) + "," + t + "," +
            tx.quote(batch("retrying", false)) + ", 'A', " + i + "," + t + "," + t + "," + i + ")");
    explain("EXECUTE hr_record_inbound(" + t + "," + t + "," + t + "," + i + "," + i + "," + i +
            "," + tx.quote(batch("ab12", false)) + ")");  // the body hashes: hex
    explain("EXECUTE hr_release(" + k + ", 'A', " + i + ")");
    explain("EXECUTE hr_fence(" + k + "," + i + "," + i + ")");
    return out;
  };
  std::string empty = plans();
  EXPECT_EQ(empty.find("Seq Scan"), std::string::npos) << empty;

  db_->scalar(
      "WITH d AS (INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, "
      "state) SELECT 'k' || g, 'webhook', 'src', 'e' || g, 'r', 'u', 'succeeded' "
      "FROM generate_series(0, 49999) g RETURNING 1), "
      "i AS (INSERT INTO inbound_events (source, event_id, received_at, topic, \"partition\", "
      "\"offset\") SELECT 't' || g, 't' || g, now(), 't', 0, g FROM generate_series(0, 49999) g "
      "RETURNING 1) SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM i)");
  db_->scalar("ANALYZE delivery_rows");
  db_->scalar("ANALYZE inbound_events");
  std::string full = plans();
  EXPECT_EQ(full.find("Seq Scan"), std::string::npos) << full;
  EXPECT_NE(full.find("Index Scan using deliveries_key_hash_idx"), std::string::npos) << full;
}

TEST_F(DeliveryStoreTest, EmptyBatchesDoNotTouchTheDatabase) {
  PostgresDeliveryStore nowhere("postgresql://postgres@127.0.0.1:1/postgres");
  EXPECT_TRUE(nowhere.claim({}, "A", 30));
  EXPECT_TRUE(nowhere.record({}, "A"));
  EXPECT_TRUE(nowhere.release({}, "A"));
}

TEST_F(DeliveryStoreTest, DatabaseDownIsRetryable) {
  PostgresDeliveryStore down("postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=5");
  auto c = down.claim({delivery("k")}, "A", 30);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, "db_unavailable");
  EXPECT_TRUE(c.error().retryable);
  auto r = down.record_inbound({InboundEventRecord{"s", "e", "t", 0, 0, 0, ""}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "db_unavailable");
}

TEST_F(DeliveryStoreTest, ReconnectsAfterTheConnectionIsKilled) {
  claim({delivery("k")}, "A");
  db_->scalar(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
      "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  auto first = store_->claim({delivery("k2")}, "A", 30);
  if (!first) {
    EXPECT_EQ(first.error().code, "db_unavailable") << first.error().message;
    EXPECT_TRUE(first.error().retryable);
  }
  auto second = store_->claim({delivery("k2")}, "A", 30);  // the same claim again, if it was lost
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(*second, (std::vector<S>{S::kClaimed}));
}

// A statement the database refuses as such (here: its table is missing, as before a migration)
// fails every batch alike: an outage to wait out, never a refusal of the batch's deliveries.
TEST_F(DeliveryStoreTest, AStatementTheSchemaRefusesIsAnOutageNotARefusal) {
  claim({delivery("k")}, "A");  // connected, statements prepared
  db_->scalar("ALTER TABLE delivery_rows RENAME TO delivery_rows_away");
  auto c = store_->claim({delivery("k2")}, "A", 30);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, "db_misconfigured") << c.error().message;
  EXPECT_TRUE(c.error().retryable);
  EXPECT_NE(c.error().message.find("delivery_rows"), std::string::npos) << c.error().message;
  auto r = store_->record({attempt("k", 1, "succeeded", "succeeded", 200)}, "A");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "db_misconfigured") << r.error().message;
  EXPECT_TRUE(r.error().retryable);

  // A new connection prepares its statements against the missing table: the same answer.
  auto fresh = std::make_unique<PostgresDeliveryStore>(db_->url());
  auto f = fresh->claim({delivery("k3")}, "B", 30);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code, "db_misconfigured") << f.error().message;

  db_->scalar("ALTER TABLE delivery_rows_away RENAME TO delivery_rows");
  EXPECT_EQ(claim({delivery("k2")}, "A"), (std::vector<S>{S::kClaimed}));
  auto g = fresh->claim({delivery("k3")}, "B", 30);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(*g, (std::vector<S>{S::kClaimed}));
}

// A read-only server (a standby, or the old primary after a failover) refuses every write alike:
// retryable, and the store connects afresh for the next try, so it finds the writable server
// (here: the database made writable again, which a session sees only when it starts).
TEST_F(DeliveryStoreTest, AReadOnlyServerIsRetriedOnAFreshConnection) {
  // Set from another database: a read-only session could not undo it.
  const auto set_read_only = [this](bool on) {
    pqxx::connection admin(testing::with_database(db_->url(), "postgres"));
    pqxx::nontransaction tx(admin);
    tx.exec(
        "ALTER DATABASE " + db_->name() +
        (on ? " SET default_transaction_read_only = on" : " RESET default_transaction_read_only"));
  };
  claim({delivery("k")}, "A");
  set_read_only(true);
  struct Writable {
    std::function<void(bool)> set;
    ~Writable() { set(false); }
  } writable{set_read_only};
  db_->scalar(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
      "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  (void)store_->claim({delivery("k2")}, "A", 30);  // may meet the terminated session first
  auto c = store_->claim({delivery("k2")}, "A", 30);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, "db_misconfigured") << c.error().message;
  EXPECT_TRUE(c.error().retryable);
  EXPECT_NE(c.error().message.find("read-only"), std::string::npos) << c.error().message;

  set_read_only(false);
  EXPECT_EQ(claim({delivery("k2")}, "A"), (std::vector<S>{S::kClaimed}));
}

TEST_F(DeliveryStoreTest, BadInputIsNotRetryable) {
  auto r = store_->record({attempt("k", 1, "exploded", "retrying")}, "A");  // outcome CHECK
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "db_error");
  EXPECT_FALSE(r.error().retryable);
  // The connection is still usable afterwards.
  EXPECT_EQ(claim({delivery("k")}, "A"), (std::vector<S>{S::kClaimed}));
}

// A park decided under a suspension that a resume has since ended is recorded 'retrying' and its
// key returned (the worker then publishes it to the first retry tier): a release lists what is
// parked after its resume, so a park that commits later would otherwise stay parked on an
// active route. Any other park stands.
TEST_F(DeliveryStoreTest, AParkRecordedAfterItsRoutesResumeIsRecordedRetryingInstead) {
  // github/ci: suspended 10 s ago, resumed 5 s ago. github/other: suspended 10 s ago.
  db_->scalar(
      "INSERT INTO route_states (source, route, state, suspended_at, resumed_at) VALUES"
      " ('github', 'ci', 'active', now() - interval '10 s', now() - interval '5 s'),"
      " ('github', 'other', 'suspended', now() - interval '10 s', NULL)");
  const int64_t suspended_at = suspended_at_ms("ci");
  auto other = delivery("still-suspended");
  other.destination = "other";
  claim({delivery("resumed"), other, delivery("resumed-before"), delivery("unbounded"),
         delivery("failed")},
        "w1");
  AttemptRecord failed = attempt("failed", 1, "retryable", "retrying", 503);
  failed.lease_token = token_["failed"];
  auto unparked = store_->record(
      {park("resumed", "ci", suspended_at), park("still-suspended", "other", suspended_at),
       // Seen suspended by a later suspension than the one the resume ended.
       park("resumed-before", "ci", suspended_at + 6000),
       // A park that carries no suspension (a 410 not yet in Postgres, an ordered route).
       park("unbounded", "ci", 0), failed},
      "w1");
  ASSERT_TRUE(unparked) << unparked.error().message;
  EXPECT_EQ(*unparked, std::vector<std::string>{"resumed"});
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key || '=' || state || coalesce(' ' || "
                        "lease_owner, ''), ',' ORDER BY delivery_key) FROM deliveries"),
            "failed=retrying,resumed=retrying,resumed-before=parked,still-suspended=parked,"
            "unbounded=parked");
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key, ',' ORDER BY delivery_key)"
                        " FROM parked_deliveries"),
            "resumed-before,still-suspended,unbounded");
  // The park is audited as what was decided.
  EXPECT_EQ(outcome_counts("resumed"), "parked=1");
}

// The same batch sent again after its commit went unanswered: the park it made a retry is still
// returned, so the worker publishes the retry instead of the parked message.
TEST_F(DeliveryStoreTest, AParkMadeARetryIsReturnedAgainWhenItsBatchIsSentAgain) {
  db_->scalar(
      "INSERT INTO route_states (source, route, state, suspended_at, resumed_at) VALUES"
      " ('github', 'ci', 'active', now() - interval '10 s', now() - interval '5 s')");
  const int64_t since = suspended_at_ms("ci");
  claim({delivery("k")}, "w1");
  const AttemptRecord r = park("k", "ci", since);
  auto first = store_->record({r}, "w1");
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(*first, std::vector<std::string>{"k"});
  auto again = store_->record({r}, "w1");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, std::vector<std::string>{"k"});
  EXPECT_EQ(outcome_counts("k"), "parked=1") << "audited once";
  EXPECT_EQ(db_->scalar("SELECT state FROM deliveries"), "retrying");
  // Another worker's identical-looking record is not this batch's: nothing to publish.
  auto other = store_->record({r}, "w2");
  ASSERT_TRUE(other) << other.error().message;
  EXPECT_TRUE(other->empty());
}

// A record that read the route suspended keeps a resume from committing until the park is
// committed (the route row is read FOR SHARE): the park is then there when the resume's release
// lists the route's parks, however long the record took after its read.
TEST_F(DeliveryStoreTest, AResumeWaitsForARecordThatSawTheRouteSuspended) {
  db_->scalar(
      "INSERT INTO route_states (source, route, state, suspended_at) VALUES"
      " ('github', 'ci', 'suspended', now() - interval '10 s')");
  const int64_t since = suspended_at_ms("ci");
  claim({delivery("slow")}, "w1");
  const AttemptRecord r = park("slow", "ci", since);

  pqxx::connection holder(db_->url());
  pqxx::work hold(holder);
  hold.exec("SELECT 1 FROM delivery_rows WHERE delivery_key = 'slow' FOR UPDATE");
  auto recorded = std::async(std::launch::async, [&] { return store_->record({r}, "w1"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // read the route; waits for the row
  auto resumed = std::async(std::launch::async, [&] {
    pqxx::connection c(db_->url());
    pqxx::nontransaction t(c);
    t.exec("UPDATE route_states SET state = 'active', resumed_at = now() WHERE route = 'ci'");
  });
  EXPECT_EQ(resumed.wait_for(std::chrono::seconds(1)), std::future_status::timeout)
      << "the resume committed while a record that saw the route suspended was still out";
  hold.abort();
  auto parked = recorded.get();
  ASSERT_TRUE(parked) << parked.error().message;
  EXPECT_TRUE(parked->empty()) << "recorded as it was decided: parked";
  resumed.get();
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key, ',') FROM parked_deliveries"), "slow")
      << "committed before the resume: a release lists it";
}

}  // namespace
}  // namespace hookrelay
