#include "shared/replay/dlq_replay.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "shared/kafka/wire_contract.h"
#include "shared/replay/unknown_source_replay.h"

namespace hookrelay {
namespace {

class FakeStore final : public ReplayStore {
 public:
  std::map<std::string, std::string> states;
  std::vector<std::string> log;  // "mark <key>", "undo <key>", in call order
  bool fail_db = false;

  Result<std::string> state(const std::string& key) override {
    if (fail_db) return fail("db_unavailable", "connection refused", true);
    auto it = states.find(key);
    if (it == states.end()) return fail("not_found", "no delivery with key " + key);
    return it->second;
  }
  Result<void> mark_replayed(const std::string& key, const std::string& who,
                             const std::string&) override {
    log.push_back("mark " + key + " by " + who);
    if (states[key] != "dead" && states[key] != "parked")
      return fail("not_replayable", key + " is " + states[key]);
    states[key] = "retrying";
    return {};
  }
  // The release of an ordered route's delivery: waits behind its key unless `heads` names it.
  std::set<std::string> heads;
  Result<bool> mark_replayed_behind_key(const std::string& key, const std::string& who,
                                        const std::string& reason, const KeyWait& wait) override {
    if (auto r = mark_replayed(key, who, reason); !r) return Unexpected{r.error()};
    if (heads.count(key)) return false;
    log.push_back("wait " + key + " behind " + wait.source + "/" + wait.route + "/" +
                  wait.ordering_key + " in " + wait.topic);
    return true;
  }
  Result<void> undo_replay(const std::string& key) override {
    log.push_back("undo " + key);
    states[key] = "dead";
    return {};
  }
  // Keys whose latest replay mark no worker has acted on, with the mark.
  std::map<std::string, UnfinishedReplay> unfinished;
  Result<std::optional<UnfinishedReplay>> unfinished_replay(const std::string& key) override {
    auto it = unfinished.find(key);
    if (it == unfinished.end()) return std::optional<UnfinishedReplay>{};
    return std::optional<UnfinishedReplay>{it->second};
  }
  Result<void> retake_replay(const std::string& key, const std::string& who,
                             const std::string&) override {
    log.push_back("retake " + key + " by " + who);
    if (unfinished.erase(key) == 0) return fail("not_replayable", key + ": a worker took it up");
    return {};
  }
  // A key marked by an earlier run: still retrying, and not taken up by a worker unless named.
  std::set<std::string> taken_up;
  Result<bool> needs_produce_again(const std::string& key) override {
    return states[key] == "retrying" && taken_up.count(key) == 0;
  }
  // Succeeded deliveries a resend may take (their first copy at hookrelay.webhooks/0@5).
  std::set<std::string> resendable;
  Result<ResendSource> resend_source(const std::string& key) override {
    if (resendable.count(key) == 0) return ReplayStore::resend_source(key);
    return ResendSource{"hookrelay.webhooks", 0, 5, "ci"};
  }
  Result<void> mark_resend(const std::string& key, const std::string& who,
                           const std::string&) override {
    log.push_back("resend " + key + " by " + who);
    return {};
  }
};

class FakeProducer final : public MessageProducer {
 public:
  struct Sent {
    std::string topic, key, value;
    std::vector<MessageHeader> headers;
    std::vector<std::string> log_at_send;  // the store's log when this was produced
  };
  std::vector<Sent> sent;
  bool refuse = false;
  int refusals = 0;  // the next produces refused with `refusal`
  Error refusal{"broker_down", "all brokers down", true};
  bool silent = false;  // no acknowledgement ever comes
  const FakeStore* store = nullptr;

  void produce(const OutgoingMessage& m, DoneCallback done) override {
    if (refuse) return done(fail("broker_down", "all brokers down", true));
    if (refusals > 0) {
      --refusals;
      return done(Unexpected{refusal});
    }
    if (silent) return;
    sent.push_back(
        {std::string(m.topic), std::string(m.key), std::string(m.value), *m.headers, store->log});
    done(ProducedAt{0, static_cast<int64_t>(sent.size())});
  }
  bool reachable() const override { return true; }
  int outstanding() const override { return 0; }
};

DlqMessage dlq_message(const std::string& key, int64_t offset, int64_t ts,
                       std::string body = "{}") {
  DlqMessage m;
  m.partition = 0;
  m.offset = offset;
  m.timestamp_ms = ts;
  m.key = key;
  m.value = std::move(body);
  m.headers = {{"hr-kind", "webhook"},
               {"hr-source", "github"},
               {"hr-event-id", "e1"},
               {"hr-received-at", "1000"},
               {"hr-fwd-x-github-event", "push"},
               {"hr-delivery-key", key},
               {"hr-route", "ci"},
               {"hr-origin-topic", "hookrelay.webhooks"},
               {"hr-attempt", "3"},
               {"hr-first-attempt-at", "1100"},
               {"hr-last-attempt-at", "1300"},
               {"hr-last-status", "400"},
               {"hr-last-error", "HTTP 400"},
               {"hr-due-at", "1400"},
               {"hr-dlq-reason", "permanent"}};
  return m;
}

std::map<std::string, std::string> as_map(const std::vector<MessageHeader>& headers) {
  std::map<std::string, std::string> out;
  for (const auto& h : headers) {
    EXPECT_EQ(out.count(h.name), 0u) << "duplicate header " << h.name;
    out[h.name] = h.value;
  }
  return out;
}

TEST(ReplayHeaders, FreshAttemptBudgetDueNowAndNoLastError) {
  auto h = as_map(replay_headers(dlq_message("k", 0, 0).headers, 5000, "alice"));
  EXPECT_EQ(h["hr-attempt"], "0");
  EXPECT_EQ(h["hr-due-at"], "5000");
  EXPECT_EQ(h["hr-received-at"], "5000");
  EXPECT_EQ(h["hr-original-received-at"], "1000");
  EXPECT_EQ(h["hr-replayed-by"], "alice");
  for (const char* gone :
       {"hr-last-attempt-at", "hr-last-status", "hr-last-error", "hr-dlq-reason"}) {
    EXPECT_EQ(h.count(gone), 0u) << gone;
  }
  // What the worker needs to rebuild the delivery from a retry tier is carried unchanged.
  EXPECT_EQ(h["hr-delivery-key"], "k");
  EXPECT_EQ(h["hr-route"], "ci");
  EXPECT_EQ(h["hr-kind"], "webhook");
  EXPECT_EQ(h["hr-source"], "github");
  EXPECT_EQ(h["hr-event-id"], "e1");
  EXPECT_EQ(h["hr-origin-topic"], "hookrelay.webhooks");
  EXPECT_EQ(h["hr-fwd-x-github-event"], "push");
  EXPECT_EQ(h["hr-first-attempt-at"], "1100");
}

TEST(ReplayHeaders, ASecondReplayKeepsTheFirstOriginalReceivedTime) {
  auto once = replay_headers(dlq_message("k", 0, 0).headers, 5000, "alice");
  auto twice = as_map(replay_headers(once, 9000, "bob"));
  EXPECT_EQ(twice["hr-original-received-at"], "1000");
  EXPECT_EQ(twice["hr-received-at"], "9000");
  EXPECT_EQ(twice["hr-replayed-by"], "bob");
}

// A resend's copy of the first message stands for one delivery: a webhook's names its route, a
// call's message already names its destination (hr-call) and gets no route.
TEST(ResendHeaders, AWebhookCopyNamesItsRouteAndACallCopyKeepsItsRequest) {
  const std::vector<MessageHeader> webhook = {{"hr-kind", "webhook"},
                                              {"hr-source", "github"},
                                              {"hr-event-id", "e1"},
                                              {"hr-received-at", "1000"}};
  auto w = as_map(resend_headers(webhook, ResendSource{"hookrelay.webhooks", 2, 41, "deploy"},
                                 "wh:github:e1:deploy", 5000, "alice"));
  EXPECT_EQ(w["hr-route"], "deploy");
  EXPECT_EQ(w["hr-delivery-key"], "wh:github:e1:deploy");
  EXPECT_EQ(w["hr-origin-topic"], "hookrelay.webhooks");

  const std::vector<MessageHeader> call = {
      {"hr-kind", "call"},
      {"hr-event-id", "call_0123"},
      {"hr-received-at", "1000"},
      {"hr-call", R"({"url":"http://127.0.0.1:9/c","method":"PUT","idempotency_key":"k1"})"}};
  auto c = as_map(
      resend_headers(call, ResendSource{"hookrelay.calls", 5, 7, ""}, "call:k1", 5000, "alice"));
  EXPECT_EQ(c.count("hr-route"), 0u);
  EXPECT_EQ(c["hr-kind"], "call");
  EXPECT_EQ(c["hr-call"], call[3].value);
  EXPECT_EQ(c["hr-delivery-key"], "call:k1");
  EXPECT_EQ(c["hr-origin-topic"], "hookrelay.calls");
  EXPECT_EQ(c["hr-original-received-at"], "1000");
  EXPECT_EQ(c["hr-received-at"], "5000");
  EXPECT_EQ(c["hr-attempt"], "0");
  EXPECT_EQ(c["hr-replayed-by"], "alice");
}

TEST(LatestByKey, PicksTheNewestMessagePerKeyAndIgnoresKeyless) {
  std::vector<DlqMessage> msgs = {dlq_message("a", 1, 100), dlq_message("b", 2, 100),
                                  dlq_message("a", 3, 300), dlq_message("a", 4, 200)};
  DlqMessage keyless;
  keyless.offset = 5;
  msgs.push_back(keyless);
  auto latest = latest_by_key(msgs);
  ASSERT_EQ(latest.size(), 2u);
  EXPECT_EQ(latest["a"]->offset, 3);
  EXPECT_EQ(latest["b"]->offset, 2);
}

class ReplayerTest : public ::testing::Test {
 protected:
  void SetUp() override { producer_.store = &store_; }
  ReplaySummary run(const std::vector<std::string>& keys, const std::vector<DlqMessage>& msgs,
                    ReplayOptions options = {}) {
    if (options.who.empty()) options.who = "alice";
    Replayer r(store_, producer_,
               ReplayClock{[this] { return now_; },
                           [this](int64_t ms) {
                             sleeps_.push_back(ms);
                             now_ += ms;
                           }});
    return r.run(keys, msgs, options,
                 [this](const ReplaySummary& s) { progress_.push_back(progress_line(s, false)); });
  }

  FakeStore store_;
  FakeProducer producer_;
  int64_t now_ = 10000;
  std::vector<int64_t> sleeps_;
  std::vector<std::string> progress_;
};

TEST_F(ReplayerTest, ReplaysADeadDeliveryToTheFirstRetryTierAfterMarkingIt) {
  store_.states["k"] = "dead";
  auto s = run({"k"}, {dlq_message("k", 7, 100, "payload")});
  EXPECT_EQ(s.replayed, 1);
  ASSERT_EQ(producer_.sent.size(), 1u);
  EXPECT_EQ(producer_.sent[0].topic, retry_topic(0));
  EXPECT_EQ(producer_.sent[0].key, "k");
  EXPECT_EQ(producer_.sent[0].value, "payload");
  // Marked before producing: a worker seeing the message while the row is still 'dead' would
  // skip it for good.
  EXPECT_EQ(producer_.sent[0].log_at_send, (std::vector<std::string>{"mark k by alice"}));
  EXPECT_EQ(store_.states["k"], "retrying");
  EXPECT_EQ(s.items[0].offset, 7);
}

TEST_F(ReplayerTest, SkipsSucceededAndNotDeadAndReportsMissing) {
  store_.states = {{"done", "succeeded"}, {"busy", "retrying"}, {"gone", "dead"}};
  auto s =
      run({"done", "busy", "gone", "unknown"},
          {dlq_message("done", 1, 1), dlq_message("busy", 2, 2), dlq_message("unknown", 3, 3)});
  EXPECT_EQ(s.total, 4);
  EXPECT_EQ(s.replayed, 0);
  EXPECT_EQ(s.skipped, 2);
  EXPECT_EQ(s.missing, 2);
  EXPECT_EQ(s.items[0].outcome, ReplayOutcome::kSkippedSucceeded);
  EXPECT_EQ(s.items[1].outcome, ReplayOutcome::kSkippedNotDead);
  EXPECT_EQ(s.items[2].outcome, ReplayOutcome::kMissing);  // dead, but no DLQ message left
  EXPECT_EQ(s.items[3].outcome, ReplayOutcome::kMissing);  // no delivery row
  EXPECT_TRUE(producer_.sent.empty());
  EXPECT_TRUE(store_.log.empty());
}

TEST_F(ReplayerTest, ReplaysEachKeyOnceFromItsNewestMessage) {
  store_.states["k"] = "dead";
  auto s = run({"k", "k"}, {dlq_message("k", 1, 100, "old"), dlq_message("k", 2, 200, "new")});
  EXPECT_EQ(s.total, 1);
  ASSERT_EQ(producer_.sent.size(), 1u);
  EXPECT_EQ(producer_.sent[0].value, "new");
}

TEST_F(ReplayerTest, DryRunChangesNothing) {
  store_.states = {{"a", "dead"}, {"b", "succeeded"}};
  ReplayOptions dry;
  dry.dry_run = true;
  auto s = run({"a", "b"}, {dlq_message("a", 1, 1), dlq_message("b", 2, 2)}, dry);
  EXPECT_EQ(s.items[0].outcome, ReplayOutcome::kWouldReplay);
  EXPECT_EQ(s.items[0].detail, "dead: permanent");
  EXPECT_EQ(s.items[1].outcome, ReplayOutcome::kSkippedSucceeded);
  EXPECT_EQ(s.replayed, 0);
  EXPECT_TRUE(producer_.sent.empty());
  EXPECT_TRUE(store_.log.empty());
  EXPECT_EQ(progress_line(s, true), "would replay 1/2, skipped 1, missing 0, failed 0");
}

TEST_F(ReplayerTest, AFailedProduceSetsTheDeliveryBackToDead) {
  store_.states["k"] = "dead";
  producer_.refuse = true;
  auto s = run({"k"}, {dlq_message("k", 1, 1)});
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(store_.log, (std::vector<std::string>{"mark k by alice", "undo k"}));
  EXPECT_EQ(store_.states["k"], "dead");
  EXPECT_NE(s.items[0].detail.find("all brokers down"), std::string::npos);
  EXPECT_NE(s.items[0].detail.find("set back to dead"), std::string::npos);
}

TEST_F(ReplayerTest, ADatabaseErrorFailsTheItemWithoutProducing) {
  store_.fail_db = true;
  auto s = run({"k"}, {dlq_message("k", 1, 1)});
  EXPECT_EQ(s.failed, 1);
  EXPECT_TRUE(producer_.sent.empty());
}

TEST_F(ReplayerTest, RateSpacesProducesEvenly) {
  for (const char* k : {"a", "b", "c", "d"}) store_.states[k] = "dead";
  ReplayOptions paced;
  paced.rate_per_second = 2;
  auto s = run({"a", "b", "c", "d"},
               {dlq_message("a", 1, 1), dlq_message("b", 2, 2), dlq_message("c", 3, 3),
                dlq_message("d", 4, 4)},
               paced);
  EXPECT_EQ(s.replayed, 4);
  EXPECT_EQ(sleeps_, (std::vector<int64_t>{500, 500, 500}));  // the first goes at once
}

// A run held up for 10 s (a slow acknowledgement) goes on at its rate: the keys it fell behind on
// are not sent back to back. The old pacing kept to its first schedule and sent them at once.
TEST_F(ReplayerTest, ARunThatFellBehindGoesOnAtItsRateWithoutABurst) {
  std::vector<std::string> keys;
  std::vector<DlqMessage> messages;
  for (int i = 0; i < 6; ++i) {
    keys.push_back("k" + std::to_string(i));
    store_.states[keys.back()] = "dead";
    messages.push_back(dlq_message(keys.back(), i + 1, i + 1));
  }
  ReplayOptions paced;
  paced.rate_per_second = 2;
  bool held_up = false;
  paced.stop_requested = [&] {
    if (producer_.sent.size() == 2 && !held_up) {
      held_up = true;
      now_ += 10'000;
    }
    return false;
  };
  auto s = run(keys, messages, paced);
  EXPECT_EQ(s.replayed, 6);
  EXPECT_EQ(sleeps_, (std::vector<int64_t>{500, 500, 500, 500}))
      << "the third key goes at once (it is late), the others an interval apart";
}

// Rates whose interval is not a whole number of milliseconds keep their average: 300/s over 31
// keys takes 100 ms, 2,000/s over 21 keys 10 ms. Whole milliseconds ran 300/s 11% fast and left
// any rate above 1,000/s unpaced.
TEST_F(ReplayerTest, FractionalIntervalsKeepTheAverageRate) {
  for (const auto& [rate, keys, total_ms] : {std::tuple{300.0, 31, 100}, {2000.0, 21, 10}}) {
    sleeps_.clear();
    std::vector<std::string> names;
    std::vector<DlqMessage> messages;
    for (int i = 0; i < keys; ++i) {
      names.push_back("f" + std::to_string(i));
      store_.states[names.back()] = "dead";
      messages.push_back(dlq_message(names.back(), i + 1, i + 1));
    }
    ReplayOptions paced;
    paced.rate_per_second = rate;
    run(names, messages, paced);
    int64_t slept = 0;
    for (auto ms : sleeps_) slept += ms;
    EXPECT_NEAR(static_cast<double>(slept), total_ms, 1.0) << "at " << rate << "/s";
  }
}

// A rate too small to divide by is paced a day apart, not undefined.
TEST_F(ReplayerTest, ATinyRateIsPacedADayApart) {
  store_.states = {{"a", "dead"}, {"b", "dead"}};
  ReplayOptions paced;
  paced.rate_per_second = 1e-300;
  run({"a", "b"}, {dlq_message("a", 1, 1), dlq_message("b", 2, 2)}, paced);
  EXPECT_EQ(sleeps_, (std::vector<int64_t>{int64_t{24} * 3600 * 1000}));
}

// A key the interrupted run marked is dead again when the run is resumed: its produce failed and
// the mark was undone before the run could say so (or it was taken up and died again). It is not
// reported replayed, and nothing is produced. The old run reported it "replayed, taken up by a
// worker", and the operator never replayed it.
TEST_F(ReplayerTest, AResumedKeyThatIsDeadAgainIsNotReportedReplayed) {
  store_.states["k"] = "dead";
  Replayer r(store_, producer_, ReplayClock{[this] { return now_; }, [](int64_t) {}});
  ReplayOptions options;
  options.who = "alice";
  const auto message = dlq_message("k", 1, 1);
  const ReplayItem item = r.replay_key("k", &message, options, /*resume=*/true);
  EXPECT_EQ(item.outcome, ReplayOutcome::kFailed);
  EXPECT_NE(item.detail.find("replay it again"), std::string::npos) << item.detail;
  EXPECT_TRUE(producer_.sent.empty());
  EXPECT_EQ(store_.states["k"], "dead");
}

TEST_F(ReplayerTest, ReportsProgressAfterEveryKey) {
  store_.states = {{"a", "dead"}, {"b", "succeeded"}};
  run({"a", "b"}, {dlq_message("a", 1, 1)});
  EXPECT_EQ(progress_, (std::vector<std::string>{"replayed 1/2, skipped 0, missing 0, failed 0",
                                                 "replayed 1/2, skipped 1, missing 0, failed 0"}));
}

// A stop asked for (the CLI's SIGINT) ends the run between two keys: the key in progress is
// finished (marked and produced), the rest are not tried, and the summary says so.
TEST_F(ReplayerTest, AStopRequestEndsTheRunBetweenTwoKeys) {
  store_.states = {{"a", "dead"}, {"b", "dead"}, {"c", "dead"}};
  ReplayOptions options;
  options.stop_requested = [this] { return producer_.sent.size() >= 1; };
  auto s = run({"a", "b", "c"},
               {dlq_message("a", 1, 1), dlq_message("b", 2, 2), dlq_message("c", 3, 3)}, options);
  EXPECT_TRUE(s.interrupted);
  EXPECT_EQ(s.replayed, 1);
  ASSERT_EQ(s.items.size(), 1u);
  EXPECT_EQ(store_.states["a"], "retrying");
  EXPECT_EQ(store_.states["b"], "dead");
  EXPECT_EQ(store_.states["c"], "dead");
  EXPECT_FALSE(run({"b"}, {dlq_message("b", 2, 2)}).interrupted);
}

// A run killed between its mark and the ack left a key 'retrying' with no message. A later run
// produces it again once the mark is old enough, audited, without marking it a second time; a
// younger mark, or a key a worker has taken up (no unfinished replay), is skipped as before.
TEST_F(ReplayerTest, AnUnfinishedReplayIsProducedAgainOnceItsMarkIsOldEnough) {
  store_.states = {{"stranded", "retrying"}, {"fresh", "retrying"}, {"taken", "retrying"}};
  store_.unfinished["stranded"] = {"stranded", "bob", 1000, 600000};
  store_.unfinished["fresh"] = {"fresh", "bob", 1000, 20000};
  ReplayOptions options;
  options.unfinished_after_ms = 300000;
  auto s = run({"stranded", "fresh", "taken"},
               {dlq_message("stranded", 1, 1, "payload"), dlq_message("fresh", 2, 2),
                dlq_message("taken", 3, 3)},
               options);
  EXPECT_EQ(s.replayed, 1);
  EXPECT_EQ(s.skipped, 2);
  ASSERT_EQ(producer_.sent.size(), 1u);
  EXPECT_EQ(producer_.sent[0].key, "stranded");
  EXPECT_EQ(producer_.sent[0].value, "payload");
  EXPECT_EQ(producer_.sent[0].log_at_send, (std::vector<std::string>{"retake stranded by alice"}));
  EXPECT_EQ(s.items[0].outcome, ReplayOutcome::kReplayed);
  EXPECT_NE(s.items[0].detail.find("an unfinished replay: marked by bob 600 s ago"),
            std::string::npos)
      << s.items[0].detail;
  EXPECT_EQ(s.items[1].outcome, ReplayOutcome::kSkippedNotDead);
  EXPECT_NE(s.items[1].detail.find("replayed by bob 20 s ago and not taken up by a worker yet"),
            std::string::npos)
      << s.items[1].detail;
  EXPECT_EQ(s.items[2].outcome, ReplayOutcome::kSkippedNotDead);
  EXPECT_EQ(s.items[2].detail, "is retrying, not dead");
  EXPECT_EQ(store_.states["stranded"], "retrying");

  // Off (the admin API resumes its own replays): skipped like any key not dead.
  store_.unfinished["again"] = {"again", "bob", 1000, 600000};
  store_.states["again"] = "retrying";
  auto off = run({"again"}, {dlq_message("again", 4, 4)});
  EXPECT_EQ(off.items[0].outcome, ReplayOutcome::kSkippedNotDead);
  EXPECT_EQ(producer_.sent.size(), 1u);
}

// A failed produce of a retaken replay sets the delivery back to dead, as for a first replay.
TEST_F(ReplayerTest, AFailedProduceOfAnUnfinishedReplaySetsItBackToDead) {
  store_.states["k"] = "retrying";
  store_.unfinished["k"] = {"k", "bob", 1000, 600000};
  producer_.refuse = true;
  ReplayOptions options;
  options.unfinished_after_ms = 300000;
  auto s = run({"k"}, {dlq_message("k", 1, 1)}, options);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(store_.log, (std::vector<std::string>{"retake k by alice", "undo k"}));
  EXPECT_EQ(store_.states["k"], "dead");
}

// The DLQ as a later read sees it: what `messages` holds, read by `keep`.
class FakeDlqSource final : public DlqSource {
 public:
  std::vector<DlqMessage> messages;
  int reads = 0;
  std::vector<int64_t> read_at;
  const int64_t* now = nullptr;
  bool down = false;  // Kafka unreachable

  Result<std::vector<DlqMessage>> read(const KeepFn& keep, const ProgressFn&) override {
    ++reads;
    read_at.push_back(*now);
    if (down) return fail("kafka", "reading hookrelay.dlq made no progress for 30 s", true);
    std::vector<DlqMessage> out;
    for (const auto& m : messages) {
      if (keep(m.delivery_key())) out.push_back(m);
    }
    return out;
  }
};

class FakeFetcher final : public MessageFetcher {
 public:
  std::map<std::pair<int32_t, int64_t>, DlqMessage> messages;
  std::vector<std::string> fetched;  // "topic/partition@offset"
  bool down = false;                 // Kafka unreachable
  Result<DlqMessage> fetch(const std::string& topic, int32_t partition, int64_t offset) override {
    fetched.push_back(topic + "/" + std::to_string(partition) + "@" + std::to_string(offset));
    if (down) return fail("kafka", "reading " + topic + " timed out", true);
    auto it = messages.find({partition, offset});
    if (it == messages.end()) return fail("not_found", "no message there (past retention?)");
    return it->second;
  }
};

// A message the read kept as a stub (past its memory budget) is fetched whole when its key is
// replayed, and only then; one that is gone by then is missing.
TEST_F(ReplayerTest, AStubIsFetchedWholeWhenItsKeyIsReplayed) {
  store_.states = {{"held", "dead"}, {"stubbed", "dead"}, {"gone", "dead"}};
  FakeFetcher fetcher;
  fetcher.messages[{0, 8}] = dlq_message("stubbed", 8, 200, "the whole body");
  auto stub = [](const std::string& key, int64_t offset) {
    DlqMessage m;
    m.offset = offset;
    m.key = key;
    m.stub = true;
    return m;
  };
  Replayer r(store_, producer_, ReplayClock{[this] { return now_; }, [](int64_t) {}}, &fetcher);
  ReplayOptions options;
  options.who = "alice";
  auto s = r.run({"held", "stubbed", "gone"},
                 {dlq_message("held", 7, 100, "held body"), stub("stubbed", 8), stub("gone", 9)},
                 options, {});
  EXPECT_EQ(s.items[0].outcome, ReplayOutcome::kReplayed);
  EXPECT_EQ(s.items[1].outcome, ReplayOutcome::kReplayed);
  EXPECT_EQ(s.items[2].outcome, ReplayOutcome::kMissing);
  EXPECT_EQ(fetcher.fetched, (std::vector<std::string>{"hookrelay.dlq/0@8", "hookrelay.dlq/0@9"}));
  ASSERT_EQ(producer_.sent.size(), 2u);
  EXPECT_EQ(producer_.sent[1].value, "the whole body");
  EXPECT_EQ(as_map(producer_.sent[1].headers).at("hr-delivery-key"), "stubbed");
  EXPECT_EQ(store_.states["gone"], "dead") << "nothing marked for a message that is gone";

  // A dry run answers from the stub (it keeps the reason): nothing fetched.
  store_.states["dry"] = "dead";
  DlqMessage dry = stub("dry", 11);
  dry.headers.push_back({"hr-dlq-reason", "max_attempts"});
  ReplayOptions dry_options = options;
  dry_options.dry_run = true;
  auto d = r.run({"dry"}, {dry}, dry_options, {});
  EXPECT_EQ(d.items[0].outcome, ReplayOutcome::kWouldReplay);
  EXPECT_EQ(d.items[0].detail, "dead: max_attempts");
  EXPECT_EQ(fetcher.fetched.size(), 2u);

  // No fetcher: failed, not produced from the stub's empty body.
  store_.states["again"] = "dead";
  Replayer blind(store_, producer_, ReplayClock{[this] { return now_; }, [](int64_t) {}});
  auto b = blind.run({"again"}, {stub("again", 10)}, options, {});
  EXPECT_EQ(b.items[0].outcome, ReplayOutcome::kFailed);
  EXPECT_EQ(producer_.sent.size(), 2u);
  EXPECT_EQ(store_.states["again"], "dead");
}

// A replay whose first read of the DLQ came before the dead letter was acknowledged: the key is
// dead in Postgres but has no message in that read. One more read, after the grace, finds it.
TEST_F(ReplayerTest, ADeadLetterNotYetReadIsFoundByOneMoreReadBeforeItCountsAsMissing) {
  store_.states = {{"late", "dead"}, {"gone", "dead"}, {"also-gone", "dead"}, {"early", "dead"}};
  FakeDlqSource later;
  later.now = &now_;
  later.messages = {dlq_message("early", 1, 1), dlq_message("late", 2, 2, "late body"),
                    dlq_message("unwanted", 3, 3)};
  Replayer r(store_, producer_,
             ReplayClock{[this] { return now_; },
                         [this](int64_t ms) {
                           sleeps_.push_back(ms);
                           now_ += ms;
                         }});
  const std::set<std::string> wanted = {"early", "late", "gone", "also-gone"};
  r.reread_from(
      later, [&wanted](const std::string& k) { return wanted.count(k) > 0; }, now_ - 500);
  ReplayOptions options;
  options.who = "alice";
  auto s = r.run({"early", "late", "gone", "also-gone"}, {dlq_message("early", 1, 1)}, options, {});
  EXPECT_EQ(s.items[0].outcome, ReplayOutcome::kReplayed);
  EXPECT_EQ(s.items[1].outcome, ReplayOutcome::kReplayed);
  EXPECT_EQ(s.items[1].offset, 2);
  EXPECT_EQ(s.items[0].detail, "to hookrelay.retry.0");
  EXPECT_EQ(s.items[1].detail,
            "to hookrelay.retry.0 (its message found by the second read of hookrelay.dlq)");
  EXPECT_EQ(s.items[2].outcome, ReplayOutcome::kMissing);
  EXPECT_EQ(s.items[3].outcome, ReplayOutcome::kMissing);
  ASSERT_EQ(producer_.sent.size(), 2u);
  EXPECT_EQ(producer_.sent[1].value, "late body");
  // Once, however many keys lack a message, and not before the grace after the first read.
  EXPECT_EQ(later.reads, 1);
  EXPECT_EQ(sleeps_, (std::vector<int64_t>{Replayer::kDlqRereadGraceMs - 500}));
}

// Without a key missing its message, the DLQ is not read again.
TEST_F(ReplayerTest, NoSecondReadWhenEveryDeadKeyHasItsMessage) {
  store_.states = {{"a", "dead"}, {"b", "succeeded"}};
  FakeDlqSource later;
  later.now = &now_;
  Replayer r(store_, producer_, ReplayClock{[this] { return now_; }, [](int64_t) {}});
  r.reread_from(
      later, [](const std::string&) { return true; }, now_);
  auto s = r.run({"a", "b", "nope"}, {dlq_message("a", 1, 1)}, ReplayOptions{}, {});
  EXPECT_EQ(s.replayed, 1);
  EXPECT_EQ(s.missing, 1);  // no delivery row: the DLQ cannot help
  EXPECT_EQ(later.reads, 0);
}

// The admin API keeps each key's progress (retry_transient): a produce Kafka did not take for a
// reason that may pass leaves the key marked, not set back to dead, and the run that resumes it
// produces it once. It was failed for good, and a release's delivery parked again behind its
// active route, where nothing released it.
TEST_F(ReplayerTest, ATransientProduceFailureLeavesTheKeyMarkedAndTheResumingRunProducesItOnce) {
  store_.states = {{"k", "dead"}, {"slow", "dead"}, {"taken", "dead"}};
  ReplayOptions options;
  options.who = "alice";
  options.retry_transient = true;
  options.ack_timeout_ms = 10;
  const ReplayClock clock{[this] { return now_; }, [](int64_t) {}};
  const auto k = dlq_message("k", 1, 1, "payload");
  const auto slow = dlq_message("slow", 2, 2, "slow body");
  const auto taken = dlq_message("taken", 3, 3);

  Replayer first(store_, producer_, clock);
  producer_.refusals = 1;
  const ReplayItem refused = first.replay_key("k", &k, options, /*resume=*/false);
  EXPECT_EQ(refused.outcome, ReplayOutcome::kRetryLater);
  EXPECT_NE(refused.detail.find("all brokers down"), std::string::npos) << refused.detail;
  producer_.silent = true;  // no acknowledgement in time: the copy may be stored, or not
  const ReplayItem unacked = first.replay_key("slow", &slow, options, false);
  EXPECT_EQ(unacked.outcome, ReplayOutcome::kRetryLater) << unacked.detail;
  EXPECT_NE(unacked.detail.find("no broker acknowledgement"), std::string::npos);
  const ReplayItem later = first.replay_key("taken", &taken, options, false);
  EXPECT_EQ(later.outcome, ReplayOutcome::kRetryLater);
  producer_.silent = false;
  EXPECT_EQ(store_.log, (std::vector<std::string>{"mark k by alice", "mark slow by alice",
                                                  "mark taken by alice"}))
      << "no mark undone";
  EXPECT_EQ(store_.states["k"], "retrying");

  // The next run resumes them: each produced once more unless a worker took it up meanwhile (its
  // unacknowledged copy stored after all), none marked again.
  store_.taken_up.insert("taken");
  Replayer next(store_, producer_, clock);
  EXPECT_EQ(next.replay_key("k", &k, options, /*resume=*/true).outcome, ReplayOutcome::kReplayed);
  EXPECT_EQ(next.replay_key("slow", &slow, options, true).outcome, ReplayOutcome::kReplayed);
  const ReplayItem settled = next.replay_key("taken", &taken, options, true);
  EXPECT_EQ(settled.outcome, ReplayOutcome::kReplayed);
  EXPECT_EQ(settled.detail, "taken up by a worker before the restart");
  ASSERT_EQ(producer_.sent.size(), 2u);
  EXPECT_EQ(producer_.sent[0].key, "k");
  EXPECT_EQ(producer_.sent[0].value, "payload");
  EXPECT_EQ(producer_.sent[1].key, "slow");
  EXPECT_EQ(store_.log.size(), 3u);
}

// With retry_transient, the database or Kafka unreachable before the mark (the state read, the
// fetch of a stub, the second read of the DLQ) leaves the key untouched for a later run; only a
// refusal of the key itself (a message Kafka never takes) fails it, with its mark undone.
TEST_F(ReplayerTest, WithRetryTransientOnlyARefusalOfTheKeyItselfFailsIt) {
  store_.states = {{"a", "dead"}, {"stubbed", "dead"}, {"unread", "dead"}, {"huge", "dead"}};
  ReplayOptions options;
  options.who = "alice";
  options.retry_transient = true;
  FakeFetcher fetcher;
  fetcher.down = true;
  FakeDlqSource later;
  later.now = &now_;
  later.down = true;
  Replayer r(store_, producer_, ReplayClock{[this] { return now_; }, [](int64_t) {}}, &fetcher);
  r.reread_from(
      later, [](const std::string&) { return true; }, now_);

  store_.fail_db = true;
  const auto a = dlq_message("a", 1, 1);
  const ReplayItem unread_state = r.replay_key("a", &a, options, false);
  EXPECT_EQ(unread_state.outcome, ReplayOutcome::kRetryLater);
  EXPECT_EQ(unread_state.detail, "connection refused");
  store_.fail_db = false;

  DlqMessage stub;
  stub.offset = 8;
  stub.key = "stubbed";
  stub.stub = true;
  EXPECT_EQ(r.replay_key("stubbed", &stub, options, false).outcome, ReplayOutcome::kRetryLater);

  const ReplayItem no_reread = r.replay_key("unread", nullptr, options, false);
  EXPECT_EQ(no_reread.outcome, ReplayOutcome::kRetryLater);
  EXPECT_NE(no_reread.detail.find("reading it again failed"), std::string::npos)
      << no_reread.detail;
  EXPECT_TRUE(store_.log.empty()) << "nothing marked";

  producer_.refusals = 1;
  producer_.refusal = Error{"message_too_large", "message is larger than Kafka accepts", false};
  const auto huge = dlq_message("huge", 9, 9);
  const ReplayItem too_large = r.replay_key("huge", &huge, options, false);
  EXPECT_EQ(too_large.outcome, ReplayOutcome::kFailed);
  EXPECT_EQ(store_.log, (std::vector<std::string>{"mark huge by alice", "undo huge"}));
  EXPECT_EQ(store_.states["huge"], "dead");
  EXPECT_TRUE(producer_.sent.empty());

  // Without it (the CLI): the unreachable database fails the key, as before.
  store_.fail_db = true;
  EXPECT_EQ(r.replay_key("a", &a, ReplayOptions{}, false).outcome, ReplayOutcome::kFailed);
}

// A key the interrupted admin run marked ('retrying') whose message is gone by the time the run
// is resumed: past retention before the re-read, or a stub whose fetch finds nothing. It is set
// back to dead and reported missing so. It stayed 'retrying' for good: no copy in any topic, not in
// dead_letters, never delivered. A fetch that failed for a reason that may pass leaves it marked
// for the next resume.
TEST_F(ReplayerTest, AResumedMarkedKeyWhoseMessageIsGoneIsSetBackToDead) {
  store_.states = {{"gone", "retrying"}, {"stubbed", "retrying"}, {"unreachable", "retrying"}};
  FakeFetcher fetcher;  // holds nothing: every message is past retention
  Replayer r(store_, producer_, ReplayClock{[this] { return now_; }, [](int64_t) {}}, &fetcher);
  ReplayOptions options;
  options.who = "alice";
  options.retry_transient = true;
  auto stub = [](const std::string& key, int64_t offset) {
    DlqMessage m;
    m.offset = offset;
    m.key = key;
    m.stub = true;
    return m;
  };

  const ReplayItem gone = r.replay_key("gone", nullptr, options, /*resume=*/true);
  EXPECT_EQ(gone.outcome, ReplayOutcome::kMissing);
  EXPECT_NE(gone.detail.find("set back to dead"), std::string::npos) << gone.detail;
  EXPECT_EQ(store_.states["gone"], "dead");

  const DlqMessage stubbed = stub("stubbed", 8);
  const ReplayItem unfetched = r.replay_key("stubbed", &stubbed, options, true);
  EXPECT_EQ(unfetched.outcome, ReplayOutcome::kMissing);
  EXPECT_NE(unfetched.detail.find("set back to dead"), std::string::npos) << unfetched.detail;
  EXPECT_EQ(store_.states["stubbed"], "dead");

  fetcher.down = true;
  const DlqMessage later = stub("unreachable", 9);
  const ReplayItem kept = r.replay_key("unreachable", &later, options, true);
  EXPECT_EQ(kept.outcome, ReplayOutcome::kRetryLater);
  EXPECT_EQ(store_.states["unreachable"], "retrying");

  EXPECT_EQ(store_.log, (std::vector<std::string>{"undo gone", "undo stubbed"}));
  EXPECT_TRUE(producer_.sent.empty());
}

// The CLI's take-up of an unfinished replay (a run killed between its mark and its ack) whose DLQ
// message is gone: set back to dead, reported missing so, instead of left 'retrying' with no
// message. A dry run changes nothing.
TEST_F(ReplayerTest, AnUnfinishedReplayWhoseMessageIsGoneIsSetBackToDead) {
  store_.states = {{"gone", "retrying"}, {"stubbed", "retrying"}};
  store_.unfinished["gone"] = {"gone", "bob", 1000, 600000};
  store_.unfinished["stubbed"] = {"stubbed", "bob", 1000, 600000};
  FakeFetcher fetcher;
  Replayer r(store_, producer_, ReplayClock{[this] { return now_; }, [](int64_t) {}}, &fetcher);
  ReplayOptions options;
  options.who = "alice";
  options.unfinished_after_ms = 300000;
  DlqMessage stub;
  stub.offset = 8;
  stub.key = "stubbed";
  stub.stub = true;

  ReplayOptions dry = options;
  dry.dry_run = true;
  auto d = r.run({"gone"}, {}, dry, {});
  EXPECT_EQ(d.items[0].outcome, ReplayOutcome::kMissing);
  EXPECT_TRUE(store_.log.empty());
  EXPECT_EQ(store_.states["gone"], "retrying");

  auto s = r.run({"gone", "stubbed"}, {stub}, options, {});
  EXPECT_EQ(s.missing, 2);
  EXPECT_EQ(s.items[0].outcome, ReplayOutcome::kMissing);
  EXPECT_NE(s.items[0].detail.find("set back to dead"), std::string::npos) << s.items[0].detail;
  EXPECT_EQ(s.items[1].outcome, ReplayOutcome::kMissing);
  EXPECT_NE(s.items[1].detail.find("set back to dead"), std::string::npos) << s.items[1].detail;
  EXPECT_EQ(store_.states["gone"], "dead");
  EXPECT_EQ(store_.states["stubbed"], "dead");
  EXPECT_EQ(store_.log, (std::vector<std::string>{"undo gone", "undo stubbed"}));
  EXPECT_TRUE(producer_.sent.empty());
}

// A stop asked for (SIGINT) while the run waits for the next key's turn ends the run at once: the
// wait is not slept out, and the key is neither marked nor produced. The run slept the whole
// interval (a day at a tiny rate), then marked and produced one more key.
TEST_F(ReplayerTest, AStopRequestedWhilePacingLeavesTheNextKeyUntouched) {
  store_.states = {{"a", "dead"}, {"b", "dead"}, {"c", "dead"}};
  bool stop = false;
  Replayer r(store_, producer_,
             ReplayClock{[this] { return now_; },
                         [&](int64_t ms) {
                           sleeps_.push_back(ms);
                           now_ += ms;
                           stop = true;  // the signal comes while it sleeps
                         }});
  ReplayOptions paced;
  paced.who = "alice";
  paced.rate_per_second = 1e-300;  // a day apart
  paced.stop_requested = [&stop] { return stop; };
  auto s =
      r.run({"a", "b", "c"},
            {dlq_message("a", 1, 1), dlq_message("b", 2, 2), dlq_message("c", 3, 3)}, paced, {});
  EXPECT_TRUE(s.interrupted);
  ASSERT_EQ(s.items.size(), 1u);
  EXPECT_EQ(s.items[0].key, "a");
  EXPECT_EQ(store_.log, (std::vector<std::string>{"mark a by alice"}));
  EXPECT_EQ(producer_.sent.size(), 1u);
  EXPECT_EQ(store_.states["b"], "dead");
  EXPECT_EQ(sleeps_, (std::vector<int64_t>{1000})) << "one slice, not the day";
}

// The same for a key replayed alone (the admin API's runner) and for a resend: a stop asked for
// while it waits for its turn leaves it unmarked and answers kRetryLater ("not tried").
TEST_F(ReplayerTest, AKeyReplayedAloneIsNotMarkedWhenAStopComesWhileItWaitsForItsTurn) {
  store_.states = {{"a", "dead"}, {"b", "dead"}, {"s", "succeeded"}};
  store_.resendable = {"s"};
  FakeFetcher fetcher;
  fetcher.messages[{0, 5}] = dlq_message("s", 5, 5, "first copy");
  bool stop = false;
  Replayer r(store_, producer_,
             ReplayClock{[this] { return now_; },
                         [&](int64_t ms) {
                           sleeps_.push_back(ms);
                           now_ += ms;
                           stop = true;
                         }},
             &fetcher);
  ReplayOptions options;
  options.who = "alice";
  options.retry_transient = true;
  options.rate_per_second = 0.001;  // 1,000 s apart
  options.stop_requested = [&stop] { return stop; };
  const auto a = dlq_message("a", 1, 1);
  const auto b = dlq_message("b", 2, 2);
  EXPECT_EQ(r.replay_key("a", &a, options, false).outcome, ReplayOutcome::kReplayed);
  const ReplayItem held = r.replay_key("b", &b, options, false);
  EXPECT_EQ(held.outcome, ReplayOutcome::kRetryLater);
  EXPECT_NE(held.detail.find("not tried"), std::string::npos) << held.detail;
  EXPECT_EQ(store_.states["b"], "dead");

  stop = false;
  options.resend_succeeded = true;
  const ReplayItem resend = r.replay_key("s", nullptr, options, false);
  EXPECT_EQ(resend.outcome, ReplayOutcome::kRetryLater) << resend.detail;
  EXPECT_EQ(store_.log, (std::vector<std::string>{"mark a by alice"}));
  EXPECT_EQ(producer_.sent.size(), 1u);
  EXPECT_EQ(sleeps_, (std::vector<int64_t>{1000, 1000}));
}

}  // namespace
}  // namespace hookrelay

namespace hookrelay {
namespace {

// The release of a resumed route: a parked delivery carrying an ordering key of a route that is
// still ordered waits behind its key (nothing produced now); one that heads its key, one of a
// route no longer ordered, and one without a key are produced at once.
TEST_F(ReplayerTest, AReleasedDeliveryOfAnOrderedRouteWaitsBehindItsKeyInsteadOfBeingProduced) {
  auto parked = [](const std::string& key, const std::string& route, const std::string& okey) {
    DlqMessage m = dlq_message(key, 1, 100, "body-" + key);
    for (auto& h : m.headers) {
      if (h.name == "hr-route") h.value = route;
    }
    if (!okey.empty()) m.headers.push_back({"hr-ordering-key", okey});
    return m;
  };
  store_.states = {{"k1", "parked"}, {"k2", "parked"}, {"k3", "parked"}, {"k4", "parked"}};
  store_.heads = {"k2"};
  ReplayOptions o;
  o.from_state = "parked";
  o.ordered_route = [](const std::string& source, const std::string& route) {
    return source == "github" && route == "ci";
  };
  auto s = run({"k1", "k2", "k3", "k4"},
               {parked("k1", "ci", "c1"), parked("k2", "ci", "c1"), parked("k3", "old", "c1"),
                parked("k4", "ci", "")},
               o);
  EXPECT_EQ(s.replayed, 4);
  EXPECT_EQ(s.failed, 0);
  std::vector<std::string> produced;
  for (const auto& m : producer_.sent) produced.push_back(m.key);
  EXPECT_EQ(produced, (std::vector<std::string>{"k2", "k3", "k4"}));
  EXPECT_NE(std::find(store_.log.begin(), store_.log.end(),
                      "wait k1 behind github/ci/c1 in hookrelay.retry.0"),
            store_.log.end());
  EXPECT_NE(s.items[0].detail.find("waits behind ordering key c1"), std::string::npos)
      << s.items[0].detail;
  EXPECT_EQ(store_.states["k1"], "retrying");
}

// A first copy a worker dead-lettered as unknown_source: its whole message, no delivery key.
DlqMessage unknown_source_letter(const std::string& source, const std::string& event_id,
                                 int64_t offset) {
  DlqMessage m;
  m.partition = 1;
  m.offset = offset;
  m.value = "{\"id\":\"" + event_id + "\"}";
  m.headers = {{"hr-kind", "webhook"},
               {"hr-source", source},
               {"hr-event-id", event_id},
               {"hr-received-at", "1000"},
               {"hr-content-type", "application/json"},
               {"hr-fwd-x-github-event", "push"},
               {"hr-origin-topic", "hookrelay.webhooks"},
               {"hr-attempt", "0"},
               {"hr-last-error", "source '" + source + "' is not in this worker's configuration"},
               {"hr-dlq-reason", "unknown_source"}};
  return m;
}

Config config_knowing(std::initializer_list<const char*> sources) {
  Config c;
  for (const char* s : sources) c.sources[s] = SourceConfig{};
  return c;
}

TEST(UnknownSourceReplay, ProducesTheFirstCopyAgainAsIngestWroteIt) {
  FakeStore store;
  FakeProducer producer;
  producer.store = &store;
  FakeFetcher fetcher;
  auto s = replay_unknown_sources({unknown_source_letter("newsrc", "e1", 4)},
                                  config_knowing({"newsrc"}), producer, fetcher, {});
  EXPECT_EQ(s.replayed, 1);
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].topic, "hookrelay.webhooks");
  EXPECT_EQ(producer.sent[0].key, "e1");
  EXPECT_EQ(producer.sent[0].value, "{\"id\":\"e1\"}");
  auto h = as_map(producer.sent[0].headers);
  EXPECT_EQ(h, (std::map<std::string, std::string>{{"hr-kind", "webhook"},
                                                   {"hr-source", "newsrc"},
                                                   {"hr-event-id", "e1"},
                                                   {"hr-received-at", "1000"},
                                                   {"hr-content-type", "application/json"},
                                                   {"hr-fwd-x-github-event", "push"}}));
  ASSERT_EQ(s.items.size(), 1u);
  EXPECT_EQ(s.items[0].outcome, "replayed");
  EXPECT_EQ(s.items[0].offset, 4);
}

// Only unknown_source dead letters; one copy per event (its newest); a source this config does
// not know either is skipped; --source and --limit select; stubs are fetched whole.
TEST(UnknownSourceReplay, SelectsDedupesSkipsUnknownAndFetchesStubs) {
  FakeStore store;
  FakeProducer producer;
  producer.store = &store;
  FakeFetcher fetcher;
  DlqMessage other = dlq_message("wh:github:e9:ci", 1, 0);  // permanent: not this replay's
  DlqMessage stub;
  stub.partition = 1;
  stub.offset = 7;
  stub.stub = true;
  stub.headers = {{"hr-dlq-reason", "unknown_source"}};
  fetcher.messages[{1, 7}] = unknown_source_letter("newsrc", "e3", 7);
  DlqMessage newer = unknown_source_letter("newsrc", "e1", 5);
  newer.value = "newer";
  const std::vector<DlqMessage> dlq = {other, unknown_source_letter("newsrc", "e1", 2),
                                       unknown_source_letter("stillunknown", "e2", 3), newer, stub};
  auto s = replay_unknown_sources(dlq, config_knowing({"newsrc"}), producer, fetcher, {});
  EXPECT_EQ(s.total, 3);
  EXPECT_EQ(s.replayed, 2);
  EXPECT_EQ(s.skipped, 1);
  ASSERT_EQ(producer.sent.size(), 2u);
  EXPECT_EQ(producer.sent[0].value, "newer") << "an event's newest dead letter";
  EXPECT_EQ(producer.sent[1].key, "e3") << "the stub, fetched whole";
  EXPECT_EQ(s.items[1].outcome, "skipped_unknown_source");
  EXPECT_EQ(fetcher.fetched, (std::vector<std::string>{"hookrelay.dlq/1@7"}));

  producer.sent.clear();
  UnknownSourceOptions only;
  only.source = "newsrc";
  only.limit = 1;
  auto limited = replay_unknown_sources(dlq, config_knowing({"newsrc"}), producer, fetcher, only);
  EXPECT_EQ(limited.total, 1);
  EXPECT_TRUE(limited.limited);
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].key, "e1");

  producer.sent.clear();
  UnknownSourceOptions dry;
  dry.dry_run = true;
  auto would = replay_unknown_sources(dlq, config_knowing({"newsrc"}), producer, fetcher, dry);
  EXPECT_TRUE(producer.sent.empty());
  EXPECT_EQ(unknown_source_progress_line(would, true),
            "would replay 2/3 events of unknown sources, skipped 1, failed 0");
}

// A DLQ read past its memory budget holds stubs that keep the event (hr-source, hr-event-id): they
// are selected and deduped as they are, and only the events the run produces are fetched whole.
// Every unknown_source stub was fetched whole before --source and --limit applied (10,000
// fetches here for one event produced), and each whole message copied per event.
TEST(UnknownSourceReplay, OnlyTheEventsItProducesAreFetchedWhole) {
  FakeStore store;
  FakeProducer producer;
  producer.store = &store;
  FakeFetcher fetcher;
  std::vector<DlqMessage> dlq;
  for (int i = 0; i < 10000; ++i) {
    const std::string source = i % 2 == 0 ? "newsrc" : "othersrc";
    DlqMessage whole = unknown_source_letter(source, "e" + std::to_string(i), i);
    fetcher.messages[{whole.partition, whole.offset}] = whole;
    DlqMessage stub;
    stub.partition = whole.partition;
    stub.offset = whole.offset;
    stub.stub = true;
    stub.headers = {{"hr-dlq-reason", "unknown_source"},
                    {"hr-source", source},
                    {"hr-event-id", "e" + std::to_string(i)}};
    dlq.push_back(std::move(stub));
  }
  // A second dead letter of e0, newer: the one produced.
  fetcher.messages[{1, 20000}] = unknown_source_letter("newsrc", "e0", 20000);
  fetcher.messages[{1, 20000}].value = "newer";
  DlqMessage again = dlq[0];
  again.offset = 20000;
  dlq.push_back(again);

  UnknownSourceOptions one;
  one.limit = 1;
  auto s =
      replay_unknown_sources(dlq, config_knowing({"newsrc", "othersrc"}), producer, fetcher, one);
  EXPECT_TRUE(s.limited);
  EXPECT_EQ(s.replayed, 1);
  ASSERT_EQ(producer.sent.size(), 1u);
  EXPECT_EQ(producer.sent[0].key, "e0");
  EXPECT_EQ(producer.sent[0].value, "newer");
  EXPECT_EQ(fetcher.fetched, (std::vector<std::string>{"hookrelay.dlq/1@20000"}));

  fetcher.fetched.clear();
  UnknownSourceOptions other;
  other.source = "othersrc";
  other.limit = 2;
  other.dry_run = true;
  auto d =
      replay_unknown_sources(dlq, config_knowing({"newsrc", "othersrc"}), producer, fetcher, other);
  ASSERT_EQ(d.items.size(), 2u);
  EXPECT_EQ(d.items[0].event_id, "e1");
  EXPECT_EQ(d.items[1].event_id, "e3");
  EXPECT_LE(fetcher.fetched.size(), 2u);
}

TEST(UnknownSourceReplay, AFailedProduceIsReportedAndTheRestGoOn) {
  FakeStore store;
  FakeProducer producer;
  producer.store = &store;
  producer.refuse = true;
  FakeFetcher fetcher;
  auto s = replay_unknown_sources(
      {unknown_source_letter("newsrc", "e1", 1), unknown_source_letter("newsrc", "e2", 2)},
      config_knowing({"newsrc"}), producer, fetcher, {});
  EXPECT_EQ(s.failed, 2);
  EXPECT_NE(s.items[0].detail.find("all brokers down"), std::string::npos) << s.items[0].detail;
}

}  // namespace
}  // namespace hookrelay
