// StoreBatcher's lane policy with a fake store and a hand-driven clock: batches gather up to
// worker.store_batching's min_batch or max_wait_ms, the inbound audit rides with the claims in
// one round trip, and a failed round trip loses nothing.
#include "worker/store_batcher.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <set>

#include "shared/clock.h"

namespace hookrelay {
namespace {

// Claims are always won; every round trip is written down with what it carried.
class CountingStore : public DeliveryStore {
 public:
  struct Trip {
    std::size_t claims = 0;
    std::vector<std::string> audited;  // event ids
  };
  Result<std::vector<ClaimStatus>> claim(const std::vector<DeliveryRef>& refs,
                                         const std::string& worker, int lease) override {
    return claim_and_audit(refs, {}, worker, lease);
  }
  Result<std::vector<ClaimStatus>> claim_and_audit(const std::vector<DeliveryRef>& refs,
                                                   const std::vector<InboundEventRecord>& audit,
                                                   const std::string&, int) override {
    if (down) return fail("db_unavailable", "down", true);
    for (const auto& e : audit) {
      if (refuse_events.count(e.event_id)) return fail("db_error", "refused (22021)", false);
    }
    Trip t{refs.size(), {}};
    for (const auto& e : audit) t.audited.push_back(e.event_id);
    claim_trips.push_back(t);
    return std::vector<ClaimStatus>(refs.size(), ClaimStatus::kClaimed);
  }
  Result<std::vector<std::string>> record(const std::vector<AttemptRecord>& records,
                                          const std::string&) override {
    if (down) return fail("db_unavailable", "down", true);
    record_trips.push_back(records.size());
    return std::vector<std::string>{};
  }
  Result<int> record_inbound(const std::vector<InboundEventRecord>& events) override {
    ++inbound_calls;
    if (down) return fail("db_unavailable", "down", true);
    for (const auto& e : events) {
      if (refuse_events.count(e.event_id)) return fail("db_error", "refused (22021)", false);
    }
    std::vector<std::string> ids;
    for (const auto& e : events) ids.push_back(e.event_id);
    inbound_trips.push_back(ids);
    return static_cast<int>(events.size());
  }
  Result<void> release(const std::vector<LeaseRef>&, const std::string&) override {
    if (best_effort_fails) return fail("db_timeout", "statement timeout", true);
    return {};
  }
  Result<void> fence(const std::vector<CopyFence>&) override {
    if (best_effort_fails) return fail("db_timeout", "statement timeout", true);
    return {};
  }

  bool down = false;
  bool best_effort_fails = false;  // release() and fence() fail, claims and records do not
  std::set<std::string> refuse_events;
  std::vector<Trip> claim_trips;
  std::vector<std::size_t> record_trips;
  std::vector<std::vector<std::string>> inbound_trips;
  int inbound_calls = 0;  // round trips of the audit lane, answered or not
};

class StoreBatching : public ::testing::Test {
 protected:
  StoreBatching() { make({.min_batch = 4, .max_wait_ms = 10}); }

  void make(StoreBatchingConfig b) {
    batcher = std::make_unique<StoreBatcher>(StoreBatcherDeps{
        .claim_store = &store,
        .record_store = &store,
        .inbound_store = &store,
        .threaded = false,
        .metrics = &metrics,
        .worker_id = "w1",
        .lease_seconds = 60,
        .run_id = 7,
        .steady_ms = steady_clock_ms,
        .batching = b,
        .post = [this](WorkerEvent e) { events.push_back(std::move(e)); },
        .on_outage = {},
        .on_recovered = {},
    });
  }

  static std::unique_ptr<Job> job(const std::string& key) {
    auto j = std::make_unique<Job>();
    j->d.key = key;
    j->d.event_id = key;
    j->decision.next = NextState::kSucceeded;
    j->decision.attempt = AttemptOutcome::kSucceeded;
    return j;
  }
  static InboundEventRecord event(const std::string& id) {
    return {"gh", id, "hookrelay.webhooks", 0, 0, 0, "00"};
  }

  // Hands every answered round trip back to the batcher, as the coordinator does.
  std::size_t answer(int64_t now) {
    std::size_t claimed = 0;
    auto pending = std::move(events);
    events.clear();
    for (auto& e : pending) {
      if (e.kind == WorkerEvent::Kind::kClaimed)
        claimed += batcher->on_claimed(e, now).answered.size();
      if (e.kind == WorkerEvent::Kind::kRecorded) (void)batcher->on_recorded(e, now);
      if (e.kind == WorkerEvent::Kind::kInbound) batcher->on_inbound(e, now);
    }
    return claimed;
  }

  prometheus::Registry registry;
  WorkerMetrics metrics{registry, 3};
  CountingStore store;
  std::vector<WorkerEvent> events;
  std::unique_ptr<StoreBatcher> batcher;
};

TEST_F(StoreBatching, ClaimsWaitUntilTheOldestHasWaitedMaxWait) {
  batcher->claim(job("k1"));
  batcher->flush_claims(1000);
  batcher->claim(job("k2"));
  batcher->flush_claims(1009);
  EXPECT_TRUE(store.claim_trips.empty());
  batcher->flush_claims(1010);  // k1 has waited 10 ms: both go
  ASSERT_EQ(store.claim_trips.size(), 1u);
  EXPECT_EQ(store.claim_trips[0].claims, 2u);
  EXPECT_EQ(answer(1010), 2u);
}

TEST_F(StoreBatching, AFullBatchGoesAtOnce) {
  for (int i = 0; i < 4; ++i) batcher->claim(job("k" + std::to_string(i)));
  batcher->flush_claims(1000);
  ASSERT_EQ(store.claim_trips.size(), 1u);
  EXPECT_EQ(store.claim_trips[0].claims, 4u);
}

TEST_F(StoreBatching, ZeroMaxWaitSendsWhateverIsQueued) {
  make({.min_batch = 100, .max_wait_ms = 0});
  batcher->claim(job("k1"));
  batcher->flush_claims(1000);
  EXPECT_EQ(store.claim_trips.size(), 1u);
}

TEST_F(StoreBatching, ArrivalsDuringARoundTripCountTheirWaitFromArrival) {
  // A threaded lane answers later: keep the answer back to see what queues meanwhile.
  batcher->claim(job("k1"));
  batcher->flush_claims(1000);
  batcher->flush_claims(1010);
  ASSERT_EQ(store.claim_trips.size(), 1u);
  auto out = std::move(events);
  events.clear();
  batcher->claim(job("k2"));
  batcher->flush_claims(1012);  // the lane is busy (the answer is not handed back): k2 waits
  for (auto& e : out) (void)batcher->on_claimed(e, 1020);
  batcher->flush_claims(1021);  // k2 arrived at 1012: 9 ms so far
  EXPECT_EQ(store.claim_trips.size(), 1u);
  batcher->flush_claims(1022);
  ASSERT_EQ(store.claim_trips.size(), 2u);
  EXPECT_EQ(store.claim_trips[1].claims, 1u);
}

TEST_F(StoreBatching, RecordsGatherTheSameWay) {
  batcher->record(job("k1"));
  batcher->record(job("k2"));
  batcher->flush_records(1000);
  batcher->flush_records(1005);
  EXPECT_TRUE(store.record_trips.empty());
  batcher->record(job("k3"));
  batcher->record(job("k4"));
  batcher->flush_records(1006);
  ASSERT_EQ(store.record_trips.size(), 1u);
  EXPECT_EQ(store.record_trips[0], 4u);
}

TEST_F(StoreBatching, RecordsWaitTheirOwnLongerBudget) {
  make({.min_batch = 4, .max_wait_ms = 10, .record_max_wait_ms = 50});
  batcher->record(job("k1"));
  batcher->flush_records(1000);
  batcher->flush_records(1049);
  EXPECT_TRUE(store.record_trips.empty());  // past the claims' 10 ms, within the records' 50
  batcher->flush_records(1050);
  ASSERT_EQ(store.record_trips.size(), 1u);
  EXPECT_EQ(store.record_trips[0], 1u);
  batcher->claim(job("c1"));  // claims keep the short budget
  batcher->flush_claims(1050);
  batcher->flush_claims(1060);
  EXPECT_EQ(store.claim_trips.size(), 1u);
}

TEST_F(StoreBatching, ARecordOfAnOrderedRouteSendsTheLaneWithinTheShortBudget) {
  make({.min_batch = 4, .max_wait_ms = 10, .record_max_wait_ms = 50});
  RouteConfig ordered;
  ordered.ordered = true;
  batcher->record(job("k1"));
  batcher->flush_records(1000);
  auto head = job("k2");
  head->d.route = &ordered;  // the next delivery of its key waits for this record
  batcher->record(std::move(head));
  batcher->flush_records(1005);
  batcher->flush_records(1014);
  EXPECT_TRUE(store.record_trips.empty());
  batcher->flush_records(1015);  // 10 ms after the ordered one arrived: both go
  ASSERT_EQ(store.record_trips.size(), 1u);
  EXPECT_EQ(store.record_trips[0], 2u);
}

TEST_F(StoreBatching, ABatchingChangeAppliesToWhatIsQueued) {
  batcher->claim(job("k1"));
  batcher->flush_claims(1000);
  batcher->set_batching({.min_batch = 1, .max_wait_ms = 10});
  batcher->flush_claims(1001);
  EXPECT_EQ(store.claim_trips.size(), 1u);
}

TEST_F(StoreBatching, TheAuditRidesWithTheClaims) {
  batcher->audit(event("e1"));
  batcher->claim(job("k1"));
  batcher->claim(job("k2"));
  batcher->audit(event("e2"));
  batcher->claim(job("k3"));
  batcher->flush_claims(1000);
  EXPECT_TRUE(store.claim_trips.empty());  // the audit waits with the claims
  batcher->flush_claims(1010);
  ASSERT_EQ(store.claim_trips.size(), 1u);
  EXPECT_EQ(store.claim_trips[0].claims, 3u);
  EXPECT_EQ(store.claim_trips[0].audited, (std::vector<std::string>{"e1", "e2"}));
  EXPECT_TRUE(store.inbound_trips.empty());
  answer(1010);
  EXPECT_EQ(batcher->audit_waiting(), 0u);
}

TEST_F(StoreBatching, AnOutageSendsClaimsAndAuditAgainTogether) {
  store.down = true;
  batcher->audit(event("e1"));
  for (int i = 0; i < 4; ++i) batcher->claim(job("k" + std::to_string(i)));
  batcher->flush_claims(1000);
  EXPECT_EQ(answer(1000), 0u);
  EXPECT_TRUE(batcher->down());
  store.down = false;
  batcher->flush_claims(1500);  // held for a second after an outage
  EXPECT_TRUE(store.claim_trips.empty());
  batcher->flush_claims(2000);  // put back: goes at once, whatever min_batch says
  ASSERT_EQ(store.claim_trips.size(), 1u);
  EXPECT_EQ(store.claim_trips[0].claims, 4u);
  EXPECT_EQ(store.claim_trips[0].audited, (std::vector<std::string>{"e1"}));
  EXPECT_EQ(answer(2000), 4u);
  EXPECT_FALSE(batcher->down());
}

TEST_F(StoreBatching, AnAuditRefusedForGoodGoesAloneAndTheClaimsGoOn) {
  store.refuse_events = {"bad"};
  batcher->audit(event("good"));
  batcher->audit(event("bad"));
  for (int i = 0; i < 4; ++i) batcher->claim(job("k" + std::to_string(i)));
  batcher->flush_claims(1000);  // refused: the claims go back, the audit to its own lane
  EXPECT_EQ(answer(1000), 0u);
  EXPECT_FALSE(batcher->down());  // a refusal holds nothing
  std::size_t claimed = 0;
  for (int64_t t = 1001; t < 1020; ++t) {
    batcher->flush_claims(t);
    claimed += answer(t);
  }
  EXPECT_EQ(claimed, 4u);
  for (const auto& trip : store.claim_trips) EXPECT_TRUE(trip.audited.empty());
  // The audit lane searched the batch one event at a time: the good one is stored.
  EXPECT_EQ(store.inbound_trips, (std::vector<std::vector<std::string>>{{"good"}}));
}

TEST_F(StoreBatching, AnAuditWithNoClaimLeftGoesOnItsOwn) {
  batcher->audit(event("e1"));
  batcher->claim(job("k1"));
  EXPECT_EQ(batcher->drop_unclaimed([](const Job&) { return true; }), 1u);
  batcher->flush_claims(1000);
  EXPECT_EQ(store.inbound_trips, (std::vector<std::vector<std::string>>{{"e1"}}));
  EXPECT_TRUE(store.claim_trips.empty());
}

// The audit lane in an outage: its batch waits for the next try a second later, like claims and
// records, instead of going again at every step (a spin against a database that is down).
TEST_F(StoreBatching, TheAuditLaneWaitsASecondBetweenTriesInAnOutage) {
  store.down = true;
  batcher->audit(event("e1"));
  for (int i = 0; i < 100; ++i) {
    batcher->flush_claims(1000);
    answer(1000);
  }
  EXPECT_EQ(store.inbound_calls, 1);
  store.down = false;
  batcher->flush_claims(1999);
  answer(1999);
  EXPECT_EQ(store.inbound_calls, 1);
  batcher->flush_claims(2000);
  answer(2000);
  EXPECT_EQ(store.inbound_calls, 2);
  EXPECT_EQ(store.inbound_trips, (std::vector<std::vector<std::string>>{{"e1"}}));
}

// A fence or a release is not tried again, but its failure is counted: a stale copy attempted
// again, or a lease left to run out, has a cause an operator can see.
TEST_F(StoreBatching, AFailedFenceOrReleaseIsCountedAndHoldsNothing) {
  auto errors = [&](const char* op) {
    for (const auto& f : registry.Collect()) {
      if (f.name != "hookrelay_worker_postgres_errors_total") continue;
      for (const auto& m : f.metric) {
        bool op_matches = false;
        bool code_matches = false;
        for (const auto& l : m.label) {
          op_matches |= l.name == "op" && l.value == op;
          code_matches |= l.name == "code" && l.value == "db_timeout";
        }
        if (op_matches && code_matches) return m.counter.value;
      }
    }
    return 0.0;
  };
  store.best_effort_fails = true;
  batcher->fence({CopyFence{"k1", 2, 1000}, CopyFence{"k2", 1, 1000}});
  batcher->release({LeaseRef{"k3", 5}});
  EXPECT_EQ(errors("fence"), 1.0);
  EXPECT_EQ(errors("release"), 1.0);
  EXPECT_FALSE(batcher->down());  // best effort: no outage is declared for it
  store.best_effort_fails = false;
  batcher->fence({CopyFence{"k1", 3, 2000}});
  EXPECT_EQ(errors("fence"), 1.0);
}

}  // namespace
}  // namespace hookrelay
