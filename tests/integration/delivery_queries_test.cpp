#include "shared/store/delivery_queries.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <pqxx/pqxx>
#include <thread>

#include "admin/replay_jobs.h"
#include "shared/clock.h"
#include "shared/signing/crypto.h"
#include "tests/integration/scratch_database.h"
#include "worker/key_order_store.h"
#include "worker/postgres_delivery_store.h"

namespace hookrelay {
namespace {

// Seeds: github/e1 -> route ci (dead after 2 attempts), route deploy (succeeded);
// stripe/e2 -> route billing (dead).
class DeliveryQueriesTest : public testing::MigratedDatabaseTest {
 protected:
  void SetUp() override {
    MigratedDatabaseTest::SetUp();
    if (HasFatalFailure()) return;
    PostgresDeliveryStore store(db_->url());
    int64_t t = seeded_at_ = unix_now_ms();
    auto claimed = store.claim({DeliveryRef{"gh-e1-ci", "webhook", "github", "e1", "ci",
                                            "http://127.0.0.1:9/ci", "hookrelay.webhooks", t},
                                DeliveryRef{"gh-e1-deploy", "webhook", "github", "e1", "deploy",
                                            "http://127.0.0.1:9/deploy", "hookrelay.webhooks", t},
                                DeliveryRef{"st-e2-billing", "webhook", "stripe", "e2", "billing",
                                            "http://127.0.0.1:9/billing", "hookrelay.webhooks", t}},
                               "w1", 60);
    ASSERT_TRUE(claimed) << claimed.error().message;
    auto recorded = store.record(
        {AttemptRecord{"gh-e1-ci", 1, t - 2000, 30, 503, "retryable", "unavailable", "retrying"},
         AttemptRecord{"gh-e1-deploy", 1, t - 1500, 10, 200, "succeeded", "", "succeeded"},
         AttemptRecord{"st-e2-billing", 1, t, 5000, 0, "permanent", "timeout", "dead"}},
        "w1");
    ASSERT_TRUE(recorded) << recorded.error().message;
    // Each attempt is made under a claim of its own.
    claimed = store.claim({DeliveryRef{"gh-e1-ci", "webhook", "github", "e1", "ci",
                                       "http://127.0.0.1:9/ci", "hookrelay.webhooks", t}},
                          "w1", 60);
    ASSERT_TRUE(claimed) << claimed.error().message;
    recorded = store.record(
        {AttemptRecord{"gh-e1-ci", 2, t - 1000, 40, 400, "permanent", "bad request", "dead"}},
        "w1");
    ASSERT_TRUE(recorded) << recorded.error().message;
    auto inbound = store.record_inbound(
        {InboundEventRecord{"github", "e1", "hookrelay.webhooks", 2, 41, t, "cafe"}});
    ASSERT_TRUE(inbound) << inbound.error().message;
    queries_ = std::make_unique<DeliveryQueries>(db_->url());
  }

  std::vector<std::string> keys(const DlqFilter& filter) {
    auto rows = queries_->dlq_list(filter);
    EXPECT_TRUE(rows) << rows.error().message;
    std::vector<std::string> out;
    if (rows) {
      for (const auto& r : *rows) out.push_back(r.key);
    }
    return out;
  }

  // Another worker inside advance() for stripe/billing key k2, whose head is 'other': the key's
  // row stays locked until `tx` commits.
  struct Advancing {
    explicit Advancing(const std::string& url) : conn(url), tx(conn) {}
    pqxx::connection conn;
    pqxx::work tx;
  };
  std::unique_ptr<Advancing> advancing_k2() {
    db_->scalar(
        "INSERT INTO ordered_keys (source, route, ordering_key, head_key)"
        " VALUES ('stripe', 'billing', 'k2', 'other') RETURNING 1");
    auto a = std::make_unique<Advancing>(db_->url());
    a->tx.exec("SELECT head_key FROM ordered_keys WHERE ordering_key = 'k2' FOR UPDATE");
    return a;
  }

  std::unique_ptr<DeliveryQueries> queries_;
  int64_t seeded_at_ = 0;
};

TEST_F(DeliveryQueriesTest, DlqListFiltersAndOrdersNewestFirst) {
  EXPECT_EQ(keys({}), (std::vector<std::string>{"st-e2-billing", "gh-e1-ci"}));
  EXPECT_EQ(keys({.source = "github"}), (std::vector<std::string>{"gh-e1-ci"}));
  EXPECT_EQ(keys({.destination = "billing"}), (std::vector<std::string>{"st-e2-billing"}));
  EXPECT_EQ(keys({.status = "succeeded"}), (std::vector<std::string>{"gh-e1-deploy"}));
  EXPECT_EQ(keys({.status = "", .limit = 1}), (std::vector<std::string>{"st-e2-billing"}));
  EXPECT_EQ(keys({.since_ms = unix_now_ms() + 60000}), (std::vector<std::string>{}));
  EXPECT_EQ(keys({.until_ms = unix_now_ms() - 500}), (std::vector<std::string>{"gh-e1-ci"}));
  auto bad = queries_->dlq_list({.status = "lost"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, "bad_filter");
}

TEST_F(DeliveryQueriesTest, DeliveryShowHasColumnsAndAttemptsInOrder) {
  auto d = queries_->delivery_show("gh-e1-ci");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->delivery.state, "dead");
  EXPECT_EQ(d->delivery.attempts, 2);
  EXPECT_EQ(d->delivery.last_status, 400);
  EXPECT_EQ(d->delivery.last_error, "bad request");
  EXPECT_GT(d->delivery.completed_ms, 0);
  EXPECT_EQ(d->delivery.lease_owner, "");
  ASSERT_EQ(d->attempts.size(), 2u);
  EXPECT_EQ(d->attempts[0].outcome, "retryable");
  EXPECT_EQ(d->attempts[0].http_status, 503);
  EXPECT_EQ(d->attempts[1].attempt, 2);
  EXPECT_EQ(d->attempts[1].duration_ms, 40);
  EXPECT_EQ(d->attempts[1].worker_id, "w1");
  EXPECT_LT(d->attempts[0].started_ms, d->attempts[1].started_ms);

  auto missing = queries_->delivery_show("nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, "not_found");
}

// gh-e1-deploy succeeded at its first attempt, which the deliveries row keeps (migrations/0015):
// it is shown as that attempt, every field as recorded.
TEST_F(DeliveryQueriesTest, DeliveryShowHasAFirstSuccessKeptInTheRow) {
  ASSERT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts WHERE delivery_key = "
                        "'gh-e1-deploy'"),
            "0");
  auto d = queries_->delivery_show("gh-e1-deploy");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->delivery.state, "succeeded");
  EXPECT_EQ(d->delivery.lease_owner, "");
  ASSERT_EQ(d->attempts.size(), 1u);
  const AttemptRow& a = d->attempts[0];
  EXPECT_EQ(a.attempt, 1);
  EXPECT_EQ(a.started_ms, d->delivery.first_attempt_ms);
  EXPECT_EQ(a.started_ms, seeded_at_ - 1500);
  EXPECT_EQ(a.duration_ms, 10);
  EXPECT_EQ(a.http_status, 200);
  EXPECT_EQ(a.outcome, "succeeded");
  EXPECT_EQ(a.error, "");
  EXPECT_EQ(a.worker_id, "w1");
}

TEST_F(DeliveryQueriesTest, EventShowListsInboundAndEveryRoute) {
  auto e = queries_->event_show("github", "e1");
  ASSERT_TRUE(e) << e.error().message;
  ASSERT_TRUE(e->inbound.has_value());
  EXPECT_EQ(e->inbound->partition, 2);
  EXPECT_EQ(e->inbound->offset, 41);
  EXPECT_EQ(e->inbound->body_sha256, "cafe");
  ASSERT_EQ(e->deliveries.size(), 2u);
  EXPECT_EQ(e->deliveries[0].destination, "ci");
  EXPECT_EQ(e->deliveries[1].state, "succeeded");

  auto only_deliveries = queries_->event_show("stripe", "e2");
  ASSERT_TRUE(only_deliveries);
  EXPECT_FALSE(only_deliveries->inbound.has_value());
  EXPECT_EQ(queries_->event_show("github", "nope").error().code, "not_found");
}

TEST_F(DeliveryQueriesTest, MarkReplayedRevivesADeadDeliveryOnceAndAuditsIt) {
  // Its retries had reached Kafka with 5 attempts (migrations/0020); the replay's copy counts
  // from 0.
  db_->scalar(
      "UPDATE delivery_rows SET retry_fence = 5 WHERE delivery_key = 'gh-e1-ci'"
      " RETURNING 1");
  auto d = queries_->mark_replayed("gh-e1-ci", "alice", "receiver fixed");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->state, "retrying");
  EXPECT_EQ(d->completed_ms, 0);
  EXPECT_EQ(d->url, "http://127.0.0.1:9/ci");

  auto shown = queries_->delivery_show("gh-e1-ci");
  ASSERT_TRUE(shown);
  ASSERT_EQ(shown->replays.size(), 1u);
  EXPECT_EQ(shown->replays[0].replayed_by, "alice");
  EXPECT_EQ(shown->replays[0].reason, "receiver fixed");
  EXPECT_EQ(shown->attempts.back().outcome, "replayed");
  EXPECT_EQ(shown->attempts.back().worker_id, "operator:alice");

  // A worker may now claim it again, from the replay's copy.
  PostgresDeliveryStore store(db_->url());
  auto c =
      store.claim({DeliveryRef{"gh-e1-ci", "webhook", "github", "e1", "ci", "x", "", 0}}, "w2", 60);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->at(0), ClaimStatus::kClaimed) << "the replay's copy was held back by the old fence";

  EXPECT_EQ(queries_->mark_replayed("gh-e1-ci", "bob", "again").error().code, "not_replayable");
  EXPECT_EQ(queries_->mark_replayed("gh-e1-deploy", "bob", "").error().code, "not_replayable");
  EXPECT_EQ(queries_->mark_replayed("nope", "bob", "").error().code, "not_found");
}

TEST_F(DeliveryQueriesTest, SucceededWebhooksAndCallsAreResentFromTheirFirstMessageOnceEach) {
  // Two delivered calls, the first with its request's place audited as the worker does it (no
  // source, no body hash); the second's record is past retention.
  PostgresDeliveryStore store(db_->url());
  const int64_t t = unix_now_ms();
  for (const auto* n : {"1", "2"}) {
    const std::string key = std::string("call:k") + n;
    auto c = store.claim({DeliveryRef{key, "call", "", std::string("c") + n, "call",
                                      "http://127.0.0.1:9/call", "hookrelay.calls", t}},
                         "w1", 60);
    ASSERT_TRUE(c) << c.error().message;
    ASSERT_TRUE(
        store.record({AttemptRecord{key, 1, t, 10, 200, "succeeded", "", "succeeded"}}, "w1"));
  }
  ASSERT_TRUE(store.record_inbound({InboundEventRecord{"", "c1", "hookrelay.calls", 5, 7, t, ""}}));

  auto webhook = queries_->resend_source("gh-e1-deploy");
  ASSERT_TRUE(webhook) << webhook.error().message;
  EXPECT_EQ(webhook->topic, "hookrelay.webhooks");
  EXPECT_EQ(webhook->partition, 2);
  EXPECT_EQ(webhook->offset, 41);
  EXPECT_EQ(webhook->route, "deploy");
  auto call = queries_->resend_source("call:k1");
  ASSERT_TRUE(call) << call.error().message;
  EXPECT_EQ(call->topic, "hookrelay.calls");
  EXPECT_EQ(call->partition, 5);
  EXPECT_EQ(call->offset, 7);
  EXPECT_EQ(call->route, "");  // a call's message names its own destination
  auto gone = queries_->resend_source("call:k2");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, "not_resendable");
  EXPECT_NE(gone.error().message.find("retention"), std::string::npos) << gone.error().message;
  EXPECT_EQ(queries_->resend_source("call:nope").error().code, "not_found");

  // One resend pending at a time, audited as such, and taken by exactly one claim.
  const std::string replay =
      db_->scalar("INSERT INTO replays (request) VALUES ('{}') RETURNING id");
  db_->scalar("INSERT INTO replay_items (replay_id, delivery_key) VALUES (" + replay +
              ", 'call:k1') RETURNING 1");
  const int64_t id = std::stoll(replay);
  ASSERT_TRUE(queries_->mark_resend("call:k1", "alice", "lost on their side", id));
  auto twice = queries_->mark_resend("call:k1", "bob", "", id);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, "not_resendable");
  EXPECT_NE(twice.error().message.find("pending"), std::string::npos) << twice.error().message;
  EXPECT_EQ(db_->scalar("SELECT status FROM replay_items WHERE delivery_key = 'call:k1'"),
            "marked");
  EXPECT_EQ(*queries_->needs_produce_again("call:k1", id), true);

  // Each claim has a token of its own, as a worker's do.
  auto copy = [t](int64_t token) {
    return DeliveryRef{"call:k1",         "call", "",   "c1", "call", "http://127.0.0.1:9/call",
                       "hookrelay.calls", t,      token};
  };
  auto first = store.claim({copy(make_lease_token(1, 1))}, "w1", 60);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->at(0), ClaimStatus::kClaimed);
  EXPECT_EQ(*queries_->needs_produce_again("call:k1", id), false);
  auto second = store.claim({copy(make_lease_token(2, 1))}, "w2", 60);  // another copy
  ASSERT_TRUE(second);
  EXPECT_EQ(second->at(0), ClaimStatus::kLeasedElsewhere);
  ASSERT_TRUE(store.record({AttemptRecord{"call:k1", 2, unix_now_ms(), 10, 200, "succeeded", "",
                                          "succeeded", make_lease_token(1, 1)}},
                           "w1"));
  auto after = store.claim({copy(make_lease_token(2, 2))}, "w2", 60);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->at(0), ClaimStatus::kAlreadySucceeded);

  auto shown = queries_->delivery_show("call:k1");
  ASSERT_TRUE(shown) << shown.error().message;
  std::vector<std::string> outcomes;
  for (const auto& a : shown->attempts) outcomes.push_back(a.outcome);
  EXPECT_EQ(outcomes, (std::vector<std::string>{"succeeded", "resent", "succeeded"}));
  EXPECT_EQ(shown->attempts[1].worker_id, "operator:alice");
  ASSERT_EQ(shown->replays.size(), 1u);
  EXPECT_EQ(shown->replays[0].reason, "resend: lost on their side");
  EXPECT_EQ(shown->delivery.state, "succeeded");
}

// Two admin processes on one replay: the one whose lease expired (admin-a) while another took
// the replay over (admin-b) marks and records nothing, and an item is marked once, so a key that
// went dead again after its replay is not replayed a second time by a run that read it pending.
TEST_F(DeliveryQueriesTest, AReplayItemIsMarkedOnceAndOnlyByTheRunnerHoldingTheReplay) {
  const std::string replay =
      db_->scalar("INSERT INTO replays (request, runner) VALUES ('{}', 'admin-b') RETURNING id");
  db_->scalar("INSERT INTO replay_items (replay_id, delivery_key) VALUES (" + replay +
              ", 'gh-e1-ci') RETURNING 1");
  const int64_t id = std::stoll(replay);
  const auto state = [this] {
    return db_->scalar("SELECT state FROM deliveries WHERE delivery_key = 'gh-e1-ci'");
  };
  const auto item = [this] {
    return db_->scalar("SELECT status FROM replay_items WHERE delivery_key = 'gh-e1-ci'");
  };
  const auto marks = [this] {
    return db_->scalar("SELECT count(*) FROM dlq_replays WHERE delivery_key = 'gh-e1-ci'");
  };

  auto stale = queries_->mark_replayed("gh-e1-ci", "admin-api", "fixed", id, "dead", "admin-a");
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, "replay_lease_lost");
  EXPECT_NE(stale.error().message.find("another took it over"), std::string::npos)
      << stale.error().message;
  EXPECT_EQ(state(), "dead");
  EXPECT_EQ(item(), "pending");
  EXPECT_EQ(marks(), "0");

  ASSERT_TRUE(queries_->mark_replayed("gh-e1-ci", "admin-api", "fixed", id, "dead", "admin-b"));
  EXPECT_EQ(state(), "retrying");
  EXPECT_EQ(item(), "marked");

  // The replayed delivery fails for good again.
  PostgresDeliveryStore store(db_->url());
  ASSERT_TRUE(store.claim({DeliveryRef{"gh-e1-ci", "webhook", "github", "e1", "ci", "x", "", 0}},
                          "w2", 60));
  ASSERT_TRUE(store.record(
      {AttemptRecord{"gh-e1-ci", 3, unix_now_ms(), 5, 410, "permanent", "gone", "dead"}}, "w2"));
  ASSERT_EQ(state(), "dead");
  auto again = queries_->mark_replayed("gh-e1-ci", "admin-api", "fixed", id, "dead", "admin-b");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, "replay_item_taken");
  EXPECT_EQ(state(), "dead");
  EXPECT_EQ(marks(), "1");

  // Only the runner holding the replay records an item's outcome.
  admin::ReplayJobs jobs(db_->url());
  auto by_a = jobs.finish_item(id, "gh-e1-ci", "failed", "stale", "admin-a");
  ASSERT_TRUE(by_a) << by_a.error().message;
  EXPECT_FALSE(*by_a);
  EXPECT_EQ(item(), "marked");
  auto by_b = jobs.finish_item(id, "gh-e1-ci", "replayed", "to hookrelay.retry.0", "admin-b");
  ASSERT_TRUE(by_b) << by_b.error().message;
  EXPECT_TRUE(*by_b);
  EXPECT_EQ(item(), "replayed");
}

// The release of an ordered route's delivery: marked and placed behind its ordering key in one
// transaction, where a worker's key order finds it; unless it heads its key already (then the
// caller produces it). A waiting delivery is not an unfinished replay to produce again.
TEST_F(DeliveryQueriesTest, AReleasedDeliveryOfAnOrderedRouteWaitsBehindItsKeyUnlessItIsItsHead) {
  db_->scalar(
      "INSERT INTO ordered_keys (source, route, ordering_key, head_key)"
      " VALUES ('github', 'ci', 'k1', 'gh-e1-ci') RETURNING 1");
  const KeyWait head_wait{"github", "ci", "k1", "hookrelay.retry.0", {{"hr-attempt", "0"}}, "{}"};
  auto head = queries_->mark_replayed_behind_key("gh-e1-ci", "op", "resume", head_wait);
  ASSERT_TRUE(head) << head.error().message;
  EXPECT_FALSE(*head) << "a delivery heading its key must be produced, not wait behind itself";
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM ordered_waiting"), "0");
  EXPECT_EQ(db_->scalar("SELECT state FROM deliveries WHERE delivery_key = 'gh-e1-ci'"),
            "retrying");

  const KeyWait wait{"stripe",
                     "billing",
                     "k2",
                     "hookrelay.retry.0",
                     {{"hr-attempt", "0"}, {"hr-route", "billing"}},
                     "{\"n\":2}"};
  auto waits = queries_->mark_replayed_behind_key("st-e2-billing", "op", "resume", wait);
  ASSERT_TRUE(waits) << waits.error().message;
  EXPECT_TRUE(*waits);
  EXPECT_EQ(db_->scalar("SELECT state FROM deliveries WHERE delivery_key = 'st-e2-billing'"),
            "retrying");
  EXPECT_EQ(db_->scalar("SELECT head_key = '' FROM ordered_keys WHERE ordering_key = 'k2'"), "t");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM dlq_replays WHERE delivery_key = 'st-e2-billing'"),
            "1");
  auto unfinished = queries_->unfinished_replay("st-e2-billing");
  ASSERT_TRUE(unfinished) << unfinished.error().message;
  EXPECT_FALSE(*unfinished) << "a delivery waiting behind its key was taken for an unfinished "
                               "replay, to be produced again";
  auto again = queries_->mark_replayed_behind_key("st-e2-billing", "op", "resume", wait);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, "not_replayable");

  // The key has no head: a worker's key order makes the waiting delivery the head and gets its
  // message to publish.
  PostgresKeyOrderStore order(db_->url());
  auto advanced = order.advance({"stripe", "billing", "k2"}, "");
  ASSERT_TRUE(advanced) << advanced.error().message;
  auto& next = advanced->next;
  ASSERT_TRUE(next);
  EXPECT_EQ(next->delivery_key, "st-e2-billing");
  EXPECT_EQ(next->topic, "hookrelay.retry.0");
  EXPECT_EQ(next->body, "{\"n\":2}");
  ASSERT_EQ(next->headers.size(), 2u);
  EXPECT_EQ(next->headers[1].value, "billing");
}

// A delivery waits behind its key as one row. A copy of it set to wait later with more attempts
// (a retry whose older copy is already waiting) replaces the row's message in its place: the
// older message, released, would be below the delivery's fence (migrations/0020) and skipped,
// and the delivery lost with its key held for good.
TEST_F(DeliveryQueriesTest, AWaitingDeliveryKeepsItsCopyWithTheMostAttempts) {
  db_->scalar(
      "INSERT INTO ordered_keys (source, route, ordering_key, head_key)"
      " VALUES ('stripe', 'billing', 'k9', 'st-e0-billing') RETURNING 1");
  PostgresKeyOrderStore order(db_->url());
  auto copy = [](const std::string& attempts) {
    return WaitingDelivery{0,
                           {"stripe", "billing", "k9"},
                           "st-e2-billing",
                           "hookrelay.retry.0",
                           {{"hr-route", "billing"}, {"hr-attempt", attempts}},
                           "{\"a\":" + attempts + "}"};
  };
  for (const char* attempts : {"0", "2", "1"}) {
    auto waits = order.enqueue(copy(attempts), 0);
    ASSERT_TRUE(waits) << waits.error().message;
    EXPECT_TRUE(*waits);
  }
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM ordered_waiting"), "1");
  auto advanced = order.advance({"stripe", "billing", "k9"}, "st-e0-billing");  // head finished
  ASSERT_TRUE(advanced) << advanced.error().message;
  auto& next = advanced->next;
  ASSERT_TRUE(next);
  EXPECT_EQ(next->delivery_key, "st-e2-billing");
  EXPECT_EQ(next->body, "{\"a\":2}");
  ASSERT_EQ(next->headers.size(), 2u);
  EXPECT_EQ(next->headers[1].value, "2") << "the older copy's message was kept";
}

// A key whose head is itself parked and stays so (its release failed, its message is gone): the
// release of another delivery of the key lets that head go in the same transaction (the key held
// with no head, the head's stale waiting row dropped) and waits behind the key's waiting
// deliveries, which a worker's look releases at once, in order. The old release produced it at
// once instead, "as an unordered release would"; but the worker that read it knew the parked head
// and set it to wait behind it, where nothing released it or any later delivery of the key.
TEST_F(DeliveryQueriesTest, AReleasedDeliveryLetsGoOfAKeysHeadThatIsStillParked) {
  db_->scalar(
      "UPDATE deliveries SET state = 'parked' WHERE delivery_key = 'gh-e1-deploy' "
      "RETURNING 1");
  db_->scalar(
      "INSERT INTO ordered_keys (source, route, ordering_key, head_key)"
      " VALUES ('github', 'ci', 'k1', 'gh-e1-deploy') RETURNING 1");
  PostgresKeyOrderStore order(db_->url());
  const OrderKey k1{"github", "ci", "k1"};
  auto earlier = order.enqueue(
      WaitingDelivery{0, k1, "gh-e0-ci", "hookrelay.retry.0", {{"hr-attempt", "0"}}, "{}"}, 0);
  ASSERT_TRUE(earlier) << earlier.error().message;
  ASSERT_TRUE(*earlier);
  db_->scalar(
      "INSERT INTO ordered_waiting (source, route, ordering_key, delivery_key, topic, headers, "
      "body)"
      " VALUES ('github', 'ci', 'k1', 'gh-e1-deploy', 'hookrelay.retry.0', '{}', '') RETURNING 1");
  const KeyWait wait{"github", "ci", "k1", "hookrelay.retry.0", {{"hr-attempt", "0"}}, "{}"};
  auto r = queries_->mark_replayed_behind_key("gh-e1-ci", "op", "resume", wait);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(*r) << "produced at once: a worker that knows the parked head sets it to wait "
                     "behind it for good";
  EXPECT_EQ(db_->scalar("SELECT state FROM deliveries WHERE delivery_key = 'gh-e1-ci'"),
            "retrying");
  EXPECT_EQ(db_->scalar("SELECT head_key = '' FROM ordered_keys WHERE ordering_key = 'k1'"), "t")
      << "the parked head still holds the key";
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key, ',' ORDER BY id) FROM ordered_waiting"),
            "gh-e0-ci,gh-e1-ci");
  EXPECT_EQ(db_->scalar("SELECT state FROM deliveries WHERE delivery_key = 'gh-e1-deploy'"),
            "parked");
  // A worker's look finds the key with no head: the key's waiting deliveries go in order.
  auto first = order.advance(k1, "");
  ASSERT_TRUE(first) << first.error().message;
  ASSERT_TRUE(first->next);
  EXPECT_EQ(first->next->delivery_key, "gh-e0-ci");
  auto second = order.advance(k1, "gh-e0-ci");
  ASSERT_TRUE(second) << second.error().message;
  ASSERT_TRUE(second->next);
  EXPECT_EQ(second->next->delivery_key, "gh-e1-ci");
}

// A worker that finishes the key's last delivery deletes its row while a release is about to
// queue behind it: the release waits for the worker's transaction, then holds the key anew.
TEST_F(DeliveryQueriesTest, AReleaseRacingAWorkerThatFreesTheKeyStillWaitsBehindIt) {
  auto advancing = advancing_k2();
  const KeyWait wait{"stripe", "billing", "k2", "hookrelay.retry.0", {{"hr-attempt", "0"}}, "{}"};
  auto release = std::async(std::launch::async, [&] {
    DeliveryQueries q(db_->url());
    return q.mark_replayed_behind_key("st-e2-billing", "op", "resume", wait);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  advancing->tx.exec("DELETE FROM ordered_keys WHERE ordering_key = 'k2'");
  advancing->tx.commit();
  auto r = release.get();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(*r);
  EXPECT_EQ(db_->scalar("SELECT head_key = '' FROM ordered_keys WHERE ordering_key = 'k2'"), "t");
  EXPECT_EQ(db_->scalar("SELECT delivery_key FROM ordered_waiting"), "st-e2-billing");
}

// The same race for a worker's key order: a delivery set to wait while another worker lets the
// key go waits for that worker's transaction, then holds the key anew. The old enqueue took no
// lock on the key's row: its waiting row was committed after the advance had looked for one and
// deleted the key, and nothing ever released it.
TEST_F(DeliveryQueriesTest, ADeliverySetToWaitWhileAWorkerFreesTheKeyStillWaitsBehindIt) {
  auto advancing = advancing_k2();
  WaitingDelivery w;
  w.key = {"stripe", "billing", "k2"};
  w.delivery_key = "st-e2-billing";
  w.topic = "hookrelay.retry.0";
  w.body = "{}";
  auto enqueued = std::async(std::launch::async, [&] {
    PostgresKeyOrderStore order(db_->url());
    return order.enqueue(w, 0);
  });
  EXPECT_EQ(enqueued.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "set to wait without waiting for the transaction letting the key go";
  // As advance() found nothing waiting: the key is let go.
  advancing->tx.exec("DELETE FROM ordered_keys WHERE ordering_key = 'k2'");
  advancing->tx.commit();
  auto r = enqueued.get();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(*r);
  EXPECT_EQ(db_->scalar("SELECT head_key = '' FROM ordered_keys WHERE ordering_key = 'k2'"), "t")
      << "the waiting delivery was left behind a key no one holds";
  EXPECT_EQ(db_->scalar("SELECT delivery_key FROM ordered_waiting"), "st-e2-billing");

  // The key's head itself, read by a worker whose view is old: it does not wait.
  db_->scalar(
      "UPDATE ordered_keys SET head_key = 'gh-e1-ci' WHERE ordering_key = 'k2' RETURNING 1");
  w.delivery_key = "gh-e1-ci";
  PostgresKeyOrderStore order(db_->url());
  auto head = order.enqueue(w, 0);
  ASSERT_TRUE(head) << head.error().message;
  EXPECT_FALSE(*head);
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM ordered_waiting"), "1");
}

// A worker holding a key answers with the key's head: its own, or the one another worker gave
// the key first (then nothing changes); a key with no head (a release waits on it) takes it.
TEST_F(DeliveryQueriesTest, HoldingAKeyAnswersWithItsHead) {
  PostgresKeyOrderStore order(db_->url());
  const OrderKey k{"stripe", "billing", "k3"};
  WaitingDelivery w;
  w.key = k;
  w.topic = "hookrelay.retry.0";
  w.delivery_key = "st-e2-billing";
  auto first = order.hold(k, "st-e2-billing", w, 0);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(*first, "st-e2-billing");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM ordered_waiting"), "0");
  w.delivery_key = "st-e3-billing";
  auto second = order.hold(k, "st-e3-billing", w, 0);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(*second, "st-e2-billing") << "a second head was taken for the key";
  EXPECT_EQ(db_->scalar("SELECT head_key FROM ordered_keys WHERE ordering_key = 'k3'"),
            "st-e2-billing");
  EXPECT_EQ(db_->scalar("SELECT delivery_key FROM ordered_waiting"), "st-e3-billing")
      << "the delivery that lost the key waits behind its head";
  db_->scalar("DELETE FROM ordered_waiting RETURNING 1");
  db_->scalar("UPDATE ordered_keys SET head_key = '' WHERE ordering_key = 'k3' RETURNING 1");
  auto third = order.hold(k, "st-e3-billing", w, 0);
  ASSERT_TRUE(third) << third.error().message;
  EXPECT_EQ(*third, "st-e3-billing");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM ordered_waiting"), "0");
}

TEST_F(DeliveryQueriesTest, DlqListFollowsDeliveriesIntoAndOutOfDead) {
  ASSERT_TRUE(queries_->mark_replayed("gh-e1-ci", "alice", "receiver fixed"));
  EXPECT_EQ(keys({}), (std::vector<std::string>{"st-e2-billing"}));
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM dead_letters"), "1");

  // The replayed delivery fails for good again, with a later attempt: listed again, first.
  PostgresDeliveryStore store(db_->url());
  ASSERT_TRUE(store.claim({DeliveryRef{"gh-e1-ci", "webhook", "github", "e1", "ci", "x", "", 0}},
                          "w2", 60));
  ASSERT_TRUE(store.record(
      {AttemptRecord{"gh-e1-ci", 3, unix_now_ms() + 1000, 5, 410, "permanent", "gone", "dead"}},
      "w2"));
  EXPECT_EQ(keys({}), (std::vector<std::string>{"gh-e1-ci", "st-e2-billing"}));
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM dead_letters d JOIN deliveries USING "
                        "(delivery_key, last_attempt_at) WHERE state = 'dead'"),
            "2");
}

// GET /v1/deliveries?state=dead reads dead_letters (migrations/0009) in the listing's order.
TEST_F(DeliveryQueriesTest, DeadDeliveriesArePagedThroughDeadLettersNewestFirst) {
  auto page = [&](DeliveryPageFilter f) {
    f.state = "dead";
    auto p = queries_->list_deliveries(f);
    EXPECT_TRUE(p) << p.error().message;
    std::vector<std::string> out;
    if (p) {
      for (const auto& r : p->rows) out.push_back(r.key);
      if (p->next) out.push_back("next");
    }
    return out;
  };
  EXPECT_EQ(
      db_->scalar(
          "SELECT count(*) FROM dead_letters JOIN deliveries USING (delivery_key, first_seen_at)"),
      "2");
  // Same first_seen_at: the key decides, descending.
  EXPECT_EQ(page({}), (std::vector<std::string>{"st-e2-billing", "gh-e1-ci"}));
  EXPECT_EQ(page({.limit = 1}), (std::vector<std::string>{"st-e2-billing", "next"}));
  auto first = queries_->list_deliveries({.state = "dead", .limit = 1});
  ASSERT_TRUE(first && first->next);
  EXPECT_EQ(page({.limit = 1, .after = first->next}), (std::vector<std::string>{"gh-e1-ci"}));
  EXPECT_EQ(page({.source = "github"}), (std::vector<std::string>{"gh-e1-ci"}));
  EXPECT_EQ(page({.route = "billing"}), (std::vector<std::string>{"st-e2-billing"}));
  EXPECT_EQ(page({.source = "github", .route = "deploy"}), (std::vector<std::string>{}));
  EXPECT_EQ(page({.event_id = "e1"}), (std::vector<std::string>{"gh-e1-ci"}));
  EXPECT_EQ(page({.since_ms = unix_now_ms() + 3600000}), (std::vector<std::string>{}));
  EXPECT_EQ(page({.until_ms = unix_now_ms() + 3600000}),
            (std::vector<std::string>{"st-e2-billing", "gh-e1-ci"}));

  ASSERT_TRUE(queries_->mark_replayed("gh-e1-ci", "alice", "receiver fixed"));
  EXPECT_EQ(page({}), (std::vector<std::string>{"st-e2-billing"}));
}

// Every page reads a bounded number of index rows: a filter that matches few or none of them
// answers with what it found and a cursor to go on, and following the cursors finds every match
// once, in order.
TEST_F(DeliveryQueriesTest, SearchesReadABoundedNumberOfRowsAndResumeByCursor) {
  // 30 more deliveries of source bulk, one a second, newest = i 30: every 7th is retrying, every
  // 10th is parked (route r1 for odd i, r0 for even); the rest succeeded.
  db_->scalar(
      "INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, state,"
      " attempts, first_seen_at, origin_topic)"
      " SELECT 'bulk-' || lpad(i::text, 2, '0'), 'webhook', 'bulk', 'b' || i, 'r' || (i % 2),"
      " 'http://127.0.0.1:9/', CASE WHEN i % 7 = 0 THEN 'retrying' ELSE 'succeeded' END, 1,"
      " now() - make_interval(secs => 100 - i), 'hookrelay.webhooks'"
      " FROM generate_series(1, 30) i");
  db_->scalar(
      "UPDATE deliveries SET state = 'parked' WHERE source = 'bulk' AND"
      " substr(delivery_key, 6)::int % 10 = 0");
  struct Walk {
    std::vector<std::string> keys;
    std::vector<size_t> page_sizes;
    int partial_pages = 0;
  };
  auto walk = [&](DeliveryPageFilter f) {
    Walk w;
    for (int pages = 0; pages < 20; ++pages) {
      auto p = queries_->list_deliveries(f);
      EXPECT_TRUE(p) << p.error().message;
      if (!p) break;
      for (const auto& r : p->rows) w.keys.push_back(r.key);
      w.page_sizes.push_back(p->rows.size());
      if (p->scan_bounded) ++w.partial_pages;
      if (!p->next) break;
      f.after = p->next;
    }
    return w;
  };

  // The source, like the state, is checked on the rows walked (deliveries has one first-seen
  // index): nothing in flight among 33 rows (the fixture's three, newest, and bulk's 30) read 8
  // at a time: 4 empty partial pages, then the end.
  auto none = walk({.source = "bulk", .state = "in_flight", .limit = 5, .scan_budget = 8});
  EXPECT_TRUE(none.keys.empty());
  EXPECT_EQ(none.page_sizes, (std::vector<size_t>{0, 0, 0, 0, 0}));
  EXPECT_EQ(none.partial_pages, 4);

  // Retrying (28, 21, 14, 7), two per page: the walk finds each once, newest first.
  auto retrying = walk({.source = "bulk", .state = "retrying", .limit = 2, .scan_budget = 8});
  EXPECT_EQ(retrying.keys, (std::vector<std::string>{"bulk-28", "bulk-21", "bulk-14", "bulk-07"}));
  EXPECT_GE(retrying.partial_pages, 1);

  // Two filters checked on the rows walked (source and route).
  auto r1 =
      walk({.source = "bulk", .route = "r1", .state = "retrying", .limit = 1, .scan_budget = 5});
  EXPECT_EQ(r1.keys, (std::vector<std::string>{"bulk-21", "bulk-07"}));
  auto nope = walk({.source = "bulk", .route = "nope", .limit = 3, .scan_budget = 5});
  EXPECT_TRUE(nope.keys.empty());
  // 33 rows, 5 a page: the seventh reads the last 3 and finds the end.
  EXPECT_EQ(nope.page_sizes.size(), 7u);

  // Parked deliveries page through parked_deliveries: 30, 20, 10 (even, route r0).
  EXPECT_EQ(walk({.state = "parked", .limit = 2}).keys,
            (std::vector<std::string>{"bulk-30", "bulk-20", "bulk-10"}));
  EXPECT_EQ(walk({.source = "bulk", .route = "r0", .state = "parked"}).keys,
            (std::vector<std::string>{"bulk-30", "bulk-20", "bulk-10"}));
  EXPECT_TRUE(walk({.source = "bulk", .route = "r1", .state = "parked"}).keys.empty());

  // With nothing to check on the rows walked, pages are full and never partial.
  auto all = walk({.limit = 10, .scan_budget = 4});
  EXPECT_EQ(all.keys.size(), 33u);
  EXPECT_EQ(all.keys[3], "bulk-30");
  EXPECT_EQ(all.partial_pages, 0);
  // One source: a page reads at least the budget (here the page and one), so the first, which
  // walks the fixture's three, is partial; the walk still finds each of bulk's 30 once.
  auto bulk = walk({.source = "bulk", .limit = 10, .scan_budget = 4});
  EXPECT_EQ(bulk.keys.size(), 30u);
  EXPECT_EQ(bulk.keys.front(), "bulk-30");
  EXPECT_EQ(bulk.partial_pages, 1);
}

TEST_F(DeliveryQueriesTest, AttemptPartitionsAreCreatedAheadAndOldRowsDropped) {
  auto created = queries_->ensure_attempt_partitions(10);
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_GE(*created, 3);  // the migration made today + 7; this adds days 8..10 (4 past midnight)
  EXPECT_EQ(*queries_->ensure_attempt_partitions(10), 0);

  PostgresDeliveryStore store(db_->url());
  int64_t old = unix_now_ms() - int64_t{40} * 24 * 3600 * 1000;
  ASSERT_TRUE(
      store.record({AttemptRecord{"ancient", 1, old, 1, 500, "retryable", "", "retrying"}}, "w1"));
  EXPECT_EQ(db_->scalar("SELECT tableoid::regclass::text FROM delivery_attempts "
                        "WHERE delivery_key = 'ancient'"),
            "delivery_attempts_default");
  auto dropped = queries_->drop_attempt_partitions(30);
  ASSERT_TRUE(dropped) << dropped.error().message;
  EXPECT_EQ(*dropped, 0);  // no daily partition is that old yet
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts WHERE delivery_key = 'ancient'"),
            "0");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts_all"), "4");
}

TEST_F(DeliveryQueriesTest, InboundEventsOlderThanTheWindowAreDeleted) {
  PostgresDeliveryStore store(db_->url());
  int64_t day = int64_t{24} * 3600 * 1000;
  ASSERT_TRUE(store.record_inbound({
      InboundEventRecord{"github", "old-1", "hookrelay.webhooks", 0, 1, unix_now_ms() - 40 * day,
                         "aa"},
      InboundEventRecord{"github", "old-2", "hookrelay.webhooks", 0, 2, unix_now_ms() - 31 * day,
                         "bb"},
      InboundEventRecord{"github", "new-1", "hookrelay.webhooks", 0, 3, unix_now_ms() - 29 * day,
                         "cc"},
  }));
  auto deleted = queries_->delete_inbound_events(30);
  ASSERT_TRUE(deleted) << deleted.error().message;
  EXPECT_EQ(*deleted, 2);
  EXPECT_EQ(db_->scalar("SELECT string_agg(event_id, ',') FROM inbound_events "
                        "WHERE event_id LIKE '%-1' OR event_id LIKE '%-2'"),
            "new-1");
  EXPECT_EQ(*queries_->delete_inbound_events(30), 0);
}

// Retention of finished deliveries: those finished before the window go with their folded first
// success (not moved into delivery_attempts) and their dead_letters row; unfinished ones, recent
// ones, and those someone still acts on (a lease, a pending resend, the head of an ordered key)
// stay. A call deletes at most max_rows.
TEST_F(DeliveryQueriesTest, FinishedDeliveriesOlderThanTheWindowAreDeletedWithTheirAuditRows) {
  PostgresDeliveryStore store(db_->url());
  const int64_t t = unix_now_ms();
  std::vector<DeliveryRef> refs;
  for (const char* k : {"old-retrying", "old-resend", "old-head", "old-ok-2"}) {
    refs.push_back(
        DeliveryRef{k, "webhook", "acme", k, "r", "http://127.0.0.1:9/r", "hookrelay.webhooks", t});
  }
  ASSERT_TRUE(store.claim(refs, "w1", 60));
  ASSERT_TRUE(
      store.record({AttemptRecord{"old-retrying", 1, t, 5, 503, "retryable", "", "retrying"},
                    AttemptRecord{"old-resend", 1, t, 5, 200, "succeeded", "", "succeeded"},
                    AttemptRecord{"old-head", 1, t, 5, 200, "succeeded", "", "succeeded"},
                    AttemptRecord{"old-ok-2", 1, t, 5, 200, "succeeded", "", "succeeded"}},
                   "w1"));
  db_->scalar("UPDATE deliveries SET resend_id = 1 WHERE delivery_key = 'old-resend' RETURNING 1");
  db_->scalar(
      "INSERT INTO ordered_keys (source, route, ordering_key, head_key)"
      " VALUES ('acme', 'r', 'k', 'old-head') RETURNING 1");
  // Everything but st-e2-billing (dead) finished 40 days ago.
  db_->scalar(
      "UPDATE delivery_rows SET first_seen_at = now() - interval '40 days',"
      " completed_at = CASE WHEN completed_at IS NOT NULL THEN now() - interval '40 days' END"
      " WHERE delivery_key <> 'st-e2-billing' RETURNING 1");
  const std::string attempts_before = db_->scalar("SELECT count(*) FROM delivery_attempts");
  ASSERT_EQ(db_->scalar("SELECT string_agg(delivery_key, ',' ORDER BY delivery_key)"
                        " FROM dead_letters"),
            "gh-e1-ci,st-e2-billing");

  auto first = queries_->delete_finished_deliveries(30, 1);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(*first, 1) << "max_rows was not the bound";
  auto rest = queries_->delete_finished_deliveries(30, 100);
  ASSERT_TRUE(rest) << rest.error().message;
  EXPECT_EQ(*rest, 2);
  EXPECT_EQ(*queries_->delete_finished_deliveries(30, 100), 0);
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key, ',' ORDER BY delivery_key)"
                        " FROM deliveries"),
            "old-head,old-resend,old-retrying,st-e2-billing");
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key, ',') FROM dead_letters"), "st-e2-billing");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts"), attempts_before)
      << "a deleted delivery's first success was moved into delivery_attempts";
  // A manual DELETE still keeps a first success in the audit (migrations/0015).
  db_->scalar("DELETE FROM delivery_rows WHERE delivery_key = 'old-head' RETURNING 1");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts WHERE delivery_key = 'old-head'"),
            "1");

  auto too_short = queries_->delete_finished_deliveries(0, 100);
  ASSERT_FALSE(too_short);
  EXPECT_NE(too_short.error().message.find("at least 1 day"), std::string::npos)
      << too_short.error().message;
}

// The head of an ordered key is the oldest finished delivery: it is kept, and does not count
// against max_rows, so a job that calls until a call returns less than max_rows goes on. (It was
// chosen into the batch and then kept, so every call returned max_rows - 1 and the job stopped
// after one batch.)
TEST_F(DeliveryQueriesTest, AnOrderedHeadAmongTheOldestDoesNotStopTheRetentionLoop) {
  db_->scalar(
      "UPDATE delivery_rows SET first_seen_at = now() - interval '40 days',"
      " completed_at = now() - interval '40 days' WHERE state IN ('succeeded', 'dead')"
      " RETURNING 1");
  db_->scalar(
      "UPDATE delivery_rows SET first_seen_at = now() - interval '50 days'"
      " WHERE delivery_key = 'gh-e1-ci' RETURNING 1");
  db_->scalar(
      "INSERT INTO ordered_keys (source, route, ordering_key, head_key)"
      " VALUES ('github', 'ci', 'k', 'gh-e1-ci') RETURNING 1");
  const int64_t finished = std::stoll(
      db_->scalar("SELECT count(*) FROM delivery_rows WHERE state IN ('succeeded', 'dead')"));
  ASSERT_GE(finished, 3);
  int64_t total = 0;
  for (int call = 0; call < 10; ++call) {  // the documented loop, with max_rows 1
    auto n = queries_->delete_finished_deliveries(30, 1);
    ASSERT_TRUE(n) << n.error().message;
    total += *n;
    if (*n < 1) break;
  }
  EXPECT_EQ(total, finished - 1) << "the loop stopped before the deletable rows were gone";
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key, ',') FROM delivery_rows"
                        " WHERE state IN ('succeeded', 'dead')"),
            "gh-e1-ci");
}

// A finished delivery still listed behind its ordered key (it finished out of its turn) whose key
// stays held past the retention window: it is kept while its waiting row is there. The old
// function deleted it; its waiting row, released later, was claimed as a new delivery and sent a
// second time.
TEST_F(DeliveryQueriesTest, AFinishedDeliveryStillWaitingBehindItsKeyIsKept) {
  db_->scalar(
      "UPDATE delivery_rows SET first_seen_at = now() - interval '40 days',"
      " completed_at = now() - interval '40 days' WHERE state IN ('succeeded', 'dead')"
      " RETURNING 1");
  const std::string waiting = db_->scalar(
      "SELECT delivery_key FROM delivery_rows WHERE state = 'succeeded'"
      " ORDER BY delivery_key LIMIT 1");
  db_->scalar(
      "INSERT INTO ordered_waiting (source, route, ordering_key, delivery_key, topic, headers, "
      "body) VALUES ('github', 'ci', 'k', '" +
      waiting + "', 'hookrelay.retry.0', '{}', '') RETURNING 1");
  const int64_t finished = std::stoll(
      db_->scalar("SELECT count(*) FROM delivery_rows WHERE state IN ('succeeded', 'dead')"));
  ASSERT_GE(finished, 2);
  auto n = queries_->delete_finished_deliveries(30, 1000);
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(*n, finished - 1);
  EXPECT_EQ(db_->scalar("SELECT string_agg(delivery_key, ',') FROM delivery_rows"
                        " WHERE state IN ('succeeded', 'dead')"),
            waiting)
      << "a delivery still waiting behind its key was deleted";
}

// The job stopped for days: today's partition is missing and today's attempts are in the default
// partition, while workers go on recording attempts. Creating the partition moves them and
// succeeds; it used to fail when an attempt reached the default partition between the move and
// the creation, every day.
TEST_F(DeliveryQueriesTest, AMissingPartitionIsCreatedWhileAttemptsAreRecorded) {
  const std::string today =
      db_->scalar("SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYYMMDD')");
  db_->scalar("ALTER TABLE delivery_attempts DETACH PARTITION delivery_attempts_p" + today +
              "; DROP TABLE delivery_attempts_p" + today + "; SELECT 1");
  std::atomic<bool> stop{false};
  std::atomic<int> recorded{0};
  std::thread recorder([&] {
    PostgresDeliveryStore store(db_->url());
    for (int i = 0; !stop.load(); ++i) {
      auto r = store.record({AttemptRecord{"rec-" + std::to_string(i), 1, unix_now_ms(), 1, 503,
                                           "retryable", "", "retrying"}},
                            "w1");
      if (r) recorded.fetch_add(1);
    }
  });
  // Recording goes on before and after the creation (each wait bounded: a store that fails
  // every record must fail the test, not hang it).
  const auto wait_for = [&](int n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (recorded.load() < n && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  };
  wait_for(50);
  auto created = queries_->ensure_attempt_partitions(7);
  wait_for(recorded.load() + 50);
  stop = true;
  recorder.join();
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_EQ(*created, 1);
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts_default"
                        " WHERE delivery_key LIKE 'rec-%'"),
            "0");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts_p" + today +
                        " WHERE delivery_key LIKE 'rec-%'"),
            std::to_string(recorded.load()));
}

// A long transaction has read the audit (a pg_dump, a session left open after reading
// delivery_attempts_all) while the daily job must create a missing day and drop a day past
// retention. Both need delivery_attempts exclusively; waiting for it in the lock queue would hold
// every worker's attempt record queued behind them for as long as the reader lasts, each running
// into its statement timeout. They wait at most a second per try instead: the worker's record
// goes through, and the maintenance, tried a bounded number of times, says it could not get the
// lock, having changed nothing. Once the reader has gone it succeeds.
TEST_F(DeliveryQueriesTest, MaintenanceBehindALongReaderGivesUpWithoutHoldingUpAttemptRecords) {
  const std::string ahead =
      db_->scalar("SELECT to_char((now() AT TIME ZONE 'UTC')::date + 3, 'YYYYMMDD')");
  db_->scalar("ALTER TABLE delivery_attempts DETACH PARTITION delivery_attempts_p" + ahead +
              "; DROP TABLE delivery_attempts_p" + ahead + "; SELECT 1");
  const std::string old_day =
      db_->scalar("SELECT to_char((now() AT TIME ZONE 'UTC')::date - 40, 'YYYYMMDD')");
  db_->scalar(
      "DO $$ DECLARE d date := (now() AT TIME ZONE 'UTC')::date - 40; BEGIN"
      " EXECUTE format('CREATE TABLE %I PARTITION OF delivery_attempts FOR VALUES FROM (%L) TO"
      " (%L)', 'delivery_attempts_p' || to_char(d, 'YYYYMMDD'), d::timestamp AT TIME ZONE 'UTC',"
      " (d + 1)::timestamp AT TIME ZONE 'UTC'); END $$; SELECT 1");

  // A running worker: connected, its statements prepared, each ending after 5 s at most.
  constexpr int kStatementTimeoutMs = 5000;
  PostgresDeliveryStore store(with_service_limits(db_->url(), kStatementTimeoutMs));
  ASSERT_TRUE(store.record(
      {AttemptRecord{"before", 1, unix_now_ms(), 1, 503, "retryable", "", "retrying"}}, "w1"));

  pqxx::connection reader(db_->url());
  pqxx::work long_txn(reader);
  long_txn.exec("SELECT count(*) FROM delivery_attempts_all");  // ACCESS SHARE until it ends

  const AttemptMaintenanceRetry retry{.attempts = 2, .retry_delay_ms = 300};
  const std::string url = db_->url();
  auto ensured = std::async(
      std::launch::async, [&] { return DeliveryQueries(url).ensure_attempt_partitions(7, retry); });
  auto dropped = std::async(
      std::launch::async, [&] { return DeliveryQueries(url).drop_attempt_partitions(30, retry); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // both wait for their locks

  const auto t0 = std::chrono::steady_clock::now();
  auto recorded = store.record(
      {AttemptRecord{"during", 1, unix_now_ms(), 1, 503, "retryable", "", "retrying"}}, "w1");
  const auto record_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_TRUE(recorded) << recorded.error().message;
  EXPECT_LT(record_ms, 2500) << "the worker's record waited behind the maintenance";

  // Each gives up on its own while the reader is still there (bounded: a call that waits for
  // the reader must fail the test, not hang it).
  const bool ensure_gave_up =
      ensured.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  const bool drop_gave_up = dropped.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  EXPECT_TRUE(ensure_gave_up) << "ensure_attempt_partitions waited for the reader";
  EXPECT_TRUE(drop_gave_up) << "drop_attempt_partitions waited for the reader";
  long_txn.commit();
  const Result<int> ensure = ensured.get();
  const Result<int> drop = dropped.get();
  ASSERT_FALSE(ensure) << "created " << *ensure << " partitions behind the reader";
  EXPECT_EQ(ensure.error().code, "maintenance_locked");
  EXPECT_TRUE(ensure.error().retryable);
  EXPECT_NE(ensure.error().message.find("ensure_attempt_partitions: delivery_attempts stayed "
                                        "locked by another transaction, 2 tries"),
            std::string::npos)
      << ensure.error().message;
  EXPECT_NE(ensure.error().message.find("held by pid " + std::to_string(reader.backendpid())),
            std::string::npos)
      << ensure.error().message;
  ASSERT_FALSE(drop) << "dropped " << *drop << " partitions behind the reader";
  EXPECT_EQ(drop.error().code, "maintenance_locked");
  EXPECT_NE(drop.error().message.find("drop_attempt_partitions: delivery_attempts stayed locked"),
            std::string::npos)
      << drop.error().message;
  // Nothing changed; the attempt is in the audit.
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM delivery_attempts WHERE delivery_key = 'during'"),
            "1");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM pg_class WHERE relname IN ('delivery_attempts_p" +
                        ahead + "', 'delivery_attempts_p" + old_day + "')"),
            "1");

  DeliveryQueries queries(db_->url());
  auto created = queries.ensure_attempt_partitions(7, retry);
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_EQ(*created, 1);
  auto gone = queries.drop_attempt_partitions(30, retry);
  ASSERT_TRUE(gone) << gone.error().message;
  EXPECT_EQ(*gone, 1);
  EXPECT_EQ(
      db_->scalar("SELECT to_regclass('delivery_attempts_p" + ahead +
                  "') IS NOT NULL AND to_regclass('delivery_attempts_p" + old_day + "') IS NULL"),
      "t");
}

// A worker claims an old finished delivery again (a resend) while the retention's delete waits
// for the row: the delete sees the claimed row, not the one it picked, and keeps it.
TEST_F(DeliveryQueriesTest, AFinishedDeliveryClaimedWhileItsDeletionWaitsIsKept) {
  db_->scalar(
      "UPDATE delivery_rows SET first_seen_at = now() - interval '40 days',"
      " completed_at = now() - interval '40 days' WHERE delivery_key = 'gh-e1-deploy' RETURNING 1");
  pqxx::connection worker(db_->url());
  pqxx::work claiming(worker);
  claiming.exec(
      "UPDATE delivery_rows SET state = 'in_flight', lease_owner = 'w9', completed_at = NULL"
      " WHERE delivery_key = 'gh-e1-deploy'");
  auto deleting = std::async(std::launch::async, [&] {
    DeliveryQueries q(db_->url());
    return q.delete_finished_deliveries(30, 100);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  claiming.commit();
  auto deleted = deleting.get();
  ASSERT_TRUE(deleted) << deleted.error().message;
  EXPECT_EQ(*deleted, 0) << "a delivery claimed meanwhile was deleted";
  EXPECT_EQ(db_->scalar("SELECT lease_owner FROM deliveries WHERE delivery_key = 'gh-e1-deploy'"),
            "w9");
  auto bad = queries_->delete_finished_deliveries(30, 0);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("max_rows must be at least 1"), std::string::npos)
      << bad.error().message;
}

// Applies the shipped migrations older than `version` to `db` (a database as an earlier release
// left it); returns the versions applied.
Result<std::vector<std::string>> migrate_before(const testing::ScratchDatabase& db,
                                                const std::string& version) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("hr_upgrade_" + db.name());
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(HOOKRELAY_SOURCE_DIR "/migrations")) {
    if (entry.path().filename().string() < version) {
      fs::copy_file(entry.path(), dir / entry.path().filename());
    }
  }
  auto applied = migrate(db.url(), dir.string());
  fs::remove_all(dir);
  return applied;
}

// A database with rows written before migrations/0014 (the text primary key, updated_at, the
// body hash as hex text) is upgraded in place: its rows are read, claimed, recorded and
// deduplicated by the code of 0014.
TEST(StoreUpgradeTest, RowsWrittenBeforeTheKeyHashIndexesServeTheNewCode) {
  const std::string admin = testing::test_admin_url();
  ASSERT_FALSE(admin.empty());
  testing::ScratchDatabase db(admin);
  auto before = migrate_before(db, "0014");
  ASSERT_TRUE(before) << before.error().message;
  ASSERT_EQ(before->back(), "0013");

  // As the worker and the admin API wrote them before: one in flight under an expired lease, one
  // dead (dead_letters by the trigger, a replay audit), one succeeded; the event's audit row.
  db.scalar(
      "INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, state,"
      " attempts, lease_owner, lease_until, lease_token, first_seen_at, origin_topic, updated_at)"
      " VALUES ('wh:github:e1:ci', 'webhook', 'github', 'e1', 'ci', 'http://127.0.0.1:9/ci',"
      " 'in_flight', 1, 'w0', now() - interval '1 minute', 7, now() - interval '1 hour',"
      " 'hookrelay.webhooks', now()),"
      " ('wh:github:e1:deploy', 'webhook', 'github', 'e1', 'deploy', 'http://127.0.0.1:9/d',"
      " 'retrying', 1, NULL, NULL, NULL, now() - interval '1 hour', 'hookrelay.webhooks', now()),"
      " ('wh:github:e1:audit', 'webhook', 'github', 'e1', 'audit', 'http://127.0.0.1:9/a',"
      " 'succeeded', 1, NULL, NULL, NULL, now() - interval '1 hour', 'hookrelay.webhooks', now())");
  db.scalar(
      "UPDATE deliveries SET state = 'dead', last_attempt_at = now(), completed_at = now()"
      " WHERE delivery_key = 'wh:github:e1:deploy'");
  db.scalar(
      "INSERT INTO dlq_replays (delivery_key, replayed_by, reason)"
      " VALUES ('wh:github:e1:deploy', 'alice', 'earlier')");
  db.scalar(
      "INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms, http_status,"
      " outcome, error, worker_id) VALUES ('wh:github:e1:deploy', 1, now(), 5, 500, 'permanent',"
      " 'HTTP 500', 'w0')");
  db.scalar(
      "INSERT INTO inbound_events (source, event_id, received_at, topic, \"partition\", \"offset\","
      " body_sha256) VALUES ('github', 'e1', now(), 'hookrelay.webhooks', 2, 41, 'cafe')");

  auto after = migrate(db.url(), HOOKRELAY_SOURCE_DIR "/migrations");
  ASSERT_TRUE(after) << after.error().message;
  ASSERT_FALSE(after->empty());
  EXPECT_EQ(after->front(), "0014");

  DeliveryQueries queries(db.url());
  auto event = queries.event_show("github", "e1");
  ASSERT_TRUE(event) << event.error().message;
  ASSERT_TRUE(event->inbound);
  EXPECT_EQ(event->inbound->body_sha256, "cafe");
  EXPECT_EQ(event->inbound->partition, 2);
  EXPECT_EQ(event->deliveries.size(), 3u);
  auto dead = queries.delivery_show("wh:github:e1:deploy");
  ASSERT_TRUE(dead) << dead.error().message;
  EXPECT_EQ(dead->delivery.state, "dead");
  EXPECT_EQ(dead->attempts.size(), 1u);
  EXPECT_EQ(dead->replays.size(), 1u);
  auto dlq = queries.dlq_list({});
  ASSERT_TRUE(dlq) << dlq.error().message;
  ASSERT_EQ(dlq->size(), 1u);
  EXPECT_EQ((*dlq)[0].key, "wh:github:e1:deploy");
  auto page = queries.list_deliveries({.source = "github", .state = "dead"});
  ASSERT_TRUE(page) << page.error().message;
  ASSERT_EQ(page->rows.size(), 1u);
  ASSERT_TRUE(queries.mark_replayed("wh:github:e1:deploy", "bob", "fixed", 0, "dead"));

  // The worker's statements find the old rows through the new indexes.
  PostgresDeliveryStore store(db.url());
  auto ref = [](const std::string& route, int64_t token) {
    return DeliveryRef{
        "wh:github:e1:" + route, "webhook", "github", "e1", route, "http://127.0.0.1:9/" + route,
        "hookrelay.webhooks",    0,         token};
  };
  using S = ClaimStatus;
  auto claimed = store.claim({ref("ci", 11), ref("deploy", 12), ref("audit", 13)}, "w1", 60);
  ASSERT_TRUE(claimed) << claimed.error().message;
  EXPECT_EQ(*claimed, (std::vector<S>{S::kClaimed, S::kClaimed, S::kAlreadySucceeded}));
  ASSERT_TRUE(store.record({AttemptRecord{"wh:github:e1:ci", 2, unix_now_ms(), 10, 200, "succeeded",
                                          "", "succeeded", 11}},
                           "w1"));
  EXPECT_EQ(db.scalar("SELECT state || ' ' || attempts FROM deliveries"
                      " WHERE delivery_key = 'wh:github:e1:ci'"),
            "succeeded 2");
  claimed = store.claim({ref("ci", 14)}, "w1", 60);
  ASSERT_TRUE(claimed) << claimed.error().message;
  EXPECT_EQ(*claimed, (std::vector<S>{S::kAlreadySucceeded}));
  // The event's first audit row stays the only one.
  auto inbound = store.record_inbound(
      {InboundEventRecord{"github", "e1", "hookrelay.webhooks", 9, 99, unix_now_ms(), "beef"}});
  ASSERT_TRUE(inbound) << inbound.error().message;
  EXPECT_EQ(*inbound, 0);
  EXPECT_EQ(db.scalar("SELECT count(*) || ' ' || min(\"offset\") FROM inbound_events"), "1 41");
}

// A database whose first successes were recorded as delivery_attempts rows before
// migrations/0015 keeps them: each is shown once, and attempts recorded since are folded.
TEST(StoreUpgradeTest, FirstSuccessesRecordedBeforeTheFoldKeepTheirRows) {
  const std::string admin = testing::test_admin_url();
  ASSERT_FALSE(admin.empty());
  testing::ScratchDatabase db(admin);
  auto before = migrate_before(db, "0015");
  ASSERT_TRUE(before) << before.error().message;
  ASSERT_EQ(before->back(), "0014");

  // As the worker's record wrote a first success before: the row, and its attempt's row.
  db.scalar(
      "INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, state,"
      " attempts, first_seen_at, first_attempt_at, last_attempt_at, completed_at, last_status,"
      " origin_topic) VALUES ('wh:github:old:ci', 'webhook', 'github', 'old', 'ci',"
      " 'http://127.0.0.1:9/ci', 'succeeded', 1, now() - interval '1 hour',"
      " now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour', 200,"
      " 'hookrelay.webhooks')");
  db.scalar(
      "INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms, http_status,"
      " outcome, error, worker_id) SELECT delivery_key, 1, first_attempt_at, 7, 200, 'succeeded',"
      " '', 'w0' FROM deliveries");

  auto after = migrate(db.url(), HOOKRELAY_SOURCE_DIR "/migrations");
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(after->front(), "0015");

  DeliveryQueries queries(db.url());
  auto old = queries.delivery_show("wh:github:old:ci");
  ASSERT_TRUE(old) << old.error().message;
  ASSERT_EQ(old->attempts.size(), 1u);
  EXPECT_EQ(old->attempts[0].duration_ms, 7);
  EXPECT_EQ(old->attempts[0].worker_id, "w0");

  PostgresDeliveryStore store(db.url());
  DeliveryRef fresh{"wh:github:new:ci",   "webhook", "github", "new", "ci", "http://127.0.0.1:9/ci",
                    "hookrelay.webhooks", 0,         21};
  auto claimed = store.claim({fresh}, "w1", 60);
  ASSERT_TRUE(claimed) << claimed.error().message;
  ASSERT_TRUE(store.record(
      {AttemptRecord{fresh.key, 1, unix_now_ms(), 9, 200, "succeeded", "", "succeeded", 21}},
      "w1"));
  auto now = queries.delivery_show(fresh.key);
  ASSERT_TRUE(now) << now.error().message;
  ASSERT_EQ(now->attempts.size(), 1u);
  EXPECT_EQ(now->attempts[0].duration_ms, 9);
  EXPECT_EQ(now->attempts[0].worker_id, "w1");
  EXPECT_EQ(db.scalar("SELECT count(*) FROM delivery_attempts"), "1");

  // The attempts' maintenance is unchanged.
  EXPECT_TRUE(queries.ensure_attempt_partitions(9));
  auto dropped = queries.drop_attempt_partitions(30);
  ASSERT_TRUE(dropped) << dropped.error().message;
  EXPECT_EQ(db.scalar("SELECT count(*) FROM delivery_attempts_all"), "2");
}

// A database written before migrations/0016 (every column in the deliveries table) reads the
// same through the deliveries view after it: each column of each row, the attempts, the dead
// letters and parked rows; its rows are claimed, recorded and resent by the new statements.
TEST(StoreUpgradeTest, RowsWrittenBeforeTheCompactRowsReadTheSame) {
  const std::string admin = testing::test_admin_url();
  ASSERT_FALSE(admin.empty());
  testing::ScratchDatabase db(admin);
  auto before = migrate_before(db, "0016");
  ASSERT_TRUE(before) << before.error().message;
  ASSERT_EQ(before->back(), "0015");

  // A webhook in flight under an expired lease, one succeeded with its first attempt folded, one
  // dead and one parked (their tables kept by the triggers), a call, and a webhook whose key is
  // not its parts.
  db.scalar(
      "INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, state,"
      " attempts, lease_owner, lease_until, lease_token, first_seen_at, origin_topic)"
      " VALUES ('wh:github:e1:ci', 'webhook', 'github', 'e1', 'ci', 'http://127.0.0.1:9/ci',"
      " 'in_flight', 1, 'w0', now() - interval '1 minute', 7, now() - interval '1 hour',"
      " 'hookrelay.webhooks'),"
      " ('wh:github:e1:deploy', 'webhook', 'github', 'e1', 'deploy', 'http://127.0.0.1:9/d',"
      " 'retrying', 1, NULL, NULL, NULL, now() - interval '1 hour', 'hookrelay.webhooks'),"
      " ('wh:github:e1:audit', 'webhook', 'github', 'e1', 'audit', 'http://127.0.0.1:9/ci',"
      " 'retrying', 0, NULL, NULL, NULL, now() - interval '1 hour', 'hookrelay.webhooks'),"
      " ('wh:github:e2:ci', 'webhook', 'github', 'e2', 'ci', 'http://127.0.0.1:9/ci',"
      " 'retrying', 1, NULL, NULL, NULL, now() - interval '1 hour', 'hookrelay.retry.0'),"
      " ('call:idem', 'call', 'billing', 'c1', 'call', 'http://127.0.0.1:9/cb', 'retrying', 1,"
      " NULL, NULL, NULL, now() - interval '1 hour', 'hookrelay.calls'),"
      " ('legacy-key', 'webhook', 'github', 'e3', 'ci', 'http://127.0.0.1:9/ci', 'retrying', 1,"
      " NULL, NULL, NULL, now() - interval '1 hour', 'hookrelay.webhooks')");
  db.scalar(
      "UPDATE deliveries SET state = 'succeeded', attempts = 1, first_attempt_at = now(),"
      " last_attempt_at = now(), completed_at = now(), last_status = 200, first_duration_ms = 8,"
      " first_worker_id = 'w0' WHERE delivery_key = 'wh:github:e1:audit'");
  db.scalar(
      "UPDATE deliveries SET state = 'dead', last_attempt_at = now(), completed_at = now(),"
      " last_status = 500, last_error = 'HTTP 500' WHERE delivery_key = 'wh:github:e1:deploy'");
  db.scalar("UPDATE deliveries SET state = 'parked' WHERE delivery_key = 'wh:github:e2:ci'");
  db.scalar(
      "INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms, http_status,"
      " outcome, error, worker_id) VALUES ('wh:github:e1:deploy', 1, now(), 5, 500, 'permanent',"
      " 'HTTP 500', 'w0')");
  // Each row's columns as they were (the later migrations' columns left out: 0020's retry_fence).
  const std::string rows =
      "SELECT string_agg((to_jsonb(d) - 'retry_fence')::text, E'\\n' ORDER BY delivery_key)"
      " FROM deliveries d";
  const std::string others =
      "SELECT (SELECT string_agg(a::text, E'\\n' ORDER BY delivery_key, attempt)"
      " FROM delivery_attempts_all a) || E'\\n' ||"
      " (SELECT string_agg(l::text, E'\\n' ORDER BY delivery_key) FROM dead_letters l)"
      " || E'\\n' || (SELECT string_agg(p::text, E'\\n' ORDER BY delivery_key)"
      " FROM parked_deliveries p)";
  const std::string rows_before = db.scalar(rows);
  const std::string others_before = db.scalar(others);

  auto after = migrate(db.url(), HOOKRELAY_SOURCE_DIR "/migrations");
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(after->front(), "0016");
  EXPECT_EQ(db.scalar(rows), rows_before);
  EXPECT_EQ(db.scalar(others), others_before);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM delivery_rows WHERE kind IS NULL"), "4");
  EXPECT_EQ(db.scalar("SELECT count(*) FROM delivery_targets"), "3");

  DeliveryQueries queries(db.url());
  auto event = queries.event_show("github", "e1");
  ASSERT_TRUE(event) << event.error().message;
  EXPECT_EQ(event->deliveries.size(), 3u);
  auto page = queries.list_deliveries({.source = "github", .state = "dead"});
  ASSERT_TRUE(page) << page.error().message;
  ASSERT_EQ(page->rows.size(), 1u);
  EXPECT_EQ(page->rows[0].destination, "deploy");

  // The worker's statements: the expired lease is taken and recorded, the succeeded row is not
  // claimed, a resend of it writes its folded attempt out.
  PostgresDeliveryStore store(db.url());
  auto ref = [](const std::string& route, int64_t token) {
    return DeliveryRef{
        "wh:github:e1:" + route, "webhook", "github", "e1", route, "http://127.0.0.1:9/" + route,
        "hookrelay.webhooks",    0,         token};
  };
  using S = ClaimStatus;
  auto claimed = store.claim({ref("ci", 11), ref("audit", 13)}, "w1", 60);
  ASSERT_TRUE(claimed) << claimed.error().message;
  EXPECT_EQ(*claimed, (std::vector<S>{S::kClaimed, S::kAlreadySucceeded}));
  ASSERT_TRUE(store.record({AttemptRecord{"wh:github:e1:ci", 2, unix_now_ms(), 10, 200, "succeeded",
                                          "", "succeeded", 11}},
                           "w1"));
  EXPECT_EQ(db.scalar("SELECT state || ' ' || attempts || ' ' || url FROM deliveries"
                      " WHERE delivery_key = 'wh:github:e1:ci'"),
            "succeeded 2 http://127.0.0.1:9/ci");
  db.scalar("UPDATE deliveries SET resend_id = 1 WHERE delivery_key = 'wh:github:e1:audit'");
  claimed = store.claim({ref("audit", 14)}, "w1", 60);
  ASSERT_TRUE(claimed) << claimed.error().message;
  EXPECT_EQ(*claimed, (std::vector<S>{S::kClaimed}));
  EXPECT_EQ(db.scalar("SELECT count(*) || ' ' || min(duration_ms) || ' ' || min(worker_id)"
                      " FROM delivery_attempts WHERE delivery_key = 'wh:github:e1:audit'"),
            "1 8 w0");
}

// Replays stored before migrations/0018 (by an admin of an earlier release, which may run beside
// this one during the upgrade) keep their ids and progress; a replay stored with an
// Idempotency-Key after it takes the next id, and the key names it from then on.
// Replay marks made before migration 0026 (which did not stamp last_attempt_at) and not taken up
// yet are found unfinished after it, as they were before: the migration stamps them. One taken up
// since (an attempt after the mark) is left as it is.
TEST(StoreUpgradeTest, AReplayMarkedBeforeTheStampIsStillFoundUnfinished) {
  const std::string admin = testing::test_admin_url();
  ASSERT_FALSE(admin.empty());
  testing::ScratchDatabase db(admin);
  auto before = migrate_before(db, "0026");
  ASSERT_TRUE(before) << before.error().message;
  for (const std::string key : {"wh:acme:marked:ci", "wh:acme:taken:ci"}) {
    db.scalar(
        "INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, state,"
        " attempts, first_seen_at, last_attempt_at, origin_topic) VALUES ('" +
        key +
        "', 'webhook', 'acme', 'e', 'ci', 'http://127.0.0.1:9/', 'dead', 3,"
        " now() - interval '1 hour', now() - interval '10 minutes', 'hookrelay.webhooks')"
        " RETURNING 1");
    // The mark as the earlier release made it: state and audit, last_attempt_at untouched.
    db.scalar("WITH m AS (UPDATE deliveries SET state = 'retrying' WHERE delivery_key = '" + key +
              "' RETURNING 1) INSERT INTO dlq_replays (delivery_key, replayed_by, reason)"
              " SELECT '" +
              key + "', 'op', 'fixed' FROM m RETURNING 1");
  }
  db.scalar(
      "UPDATE deliveries SET last_attempt_at = now() + interval '1 second', attempts = 1"
      " WHERE delivery_key = 'wh:acme:taken:ci' RETURNING 1");
  auto rest = migrate(db.url(), HOOKRELAY_SOURCE_DIR "/migrations");
  ASSERT_TRUE(rest) << rest.error().message;
  ASSERT_FALSE(rest->empty());
  EXPECT_EQ(rest->front(), "0026");

  DeliveryQueries queries(db.url());
  auto marked = queries.unfinished_replay("wh:acme:marked:ci");
  ASSERT_TRUE(marked) << marked.error().message;
  EXPECT_TRUE(marked->has_value()) << "a mark not taken up is no longer found unfinished";
  auto taken = queries.unfinished_replay("wh:acme:taken:ci");
  ASSERT_TRUE(taken) << taken.error().message;
  EXPECT_FALSE(taken->has_value());
}

TEST(StoreUpgradeTest, ReplaysStoredBeforeTheIdempotencyKeysStayAndKeysNameTheNewOnes) {
  const std::string admin = testing::test_admin_url();
  ASSERT_FALSE(admin.empty());
  testing::ScratchDatabase db(admin);
  auto before = migrate_before(db, "0018");
  ASSERT_TRUE(before) << before.error().message;
  ASSERT_EQ(before->back(), "0017");
  const std::string old_id = db.scalar(
      "INSERT INTO replays (request, requested_by) VALUES ('{\"keys\": [\"k1\"]}', 'alice')"
      " RETURNING id");
  db.scalar("INSERT INTO replay_items (replay_id, delivery_key, position) VALUES (" + old_id +
            ", 'k1', 1)");
  auto rest = migrate(db.url(), HOOKRELAY_SOURCE_DIR "/migrations");
  ASSERT_TRUE(rest) << rest.error().message;
  ASSERT_FALSE(rest->empty());
  EXPECT_EQ(rest->front(), "0018");

  admin::ReplayJobs jobs(db.url());
  auto old = jobs.get(std::stoll(old_id));
  ASSERT_TRUE(old) << old.error().message;
  EXPECT_EQ(old->pending, 1);
  admin::ReplayRequest request;
  request.keys = {"k2"};
  request.dry_run = true;
  const std::string json = R"({"dry_run":true,"keys":["k2"]})";
  const admin::IdempotencyKey key{"upgrade-1", sha256("admin-token-0\n" + json)};
  auto created = jobs.create(request, json, "admin-token-0", 100, key);
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_FALSE(created->existing);
  EXPECT_GT(created->progress.id, std::stoll(old_id));
  auto again = jobs.create(request, json, "admin-token-0", 100, key);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(again->existing);
  EXPECT_EQ(again->progress.id, created->progress.id);
  auto other = jobs.create(request, json, "admin-token-1", 100,
                           {"upgrade-1", sha256("admin-token-1\n" + json)});
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, "idempotency_key_reused");
  EXPECT_NE(other.error().message.find("another admin token"), std::string::npos);
  // Without a key, as before: a replay each time.
  auto plain = jobs.create(request, json, "admin-token-0", 100);
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_GT(plain->progress.id, created->progress.id);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM replays"), "3");
  // Deleting a replay deletes its key.
  db.scalar("DELETE FROM replays WHERE id = " + std::to_string(created->progress.id));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM replay_idempotency_keys"), "0");
}

}  // namespace
}  // namespace hookrelay
