// The worker's KafkaConsumer in a consumer group on the shared three-node Apache Kafka cluster:
// cooperative assignment hands each member only the partitions that move (a member never loses
// its whole assignment when another joins); a static member (worker.group_instance_id) that
// stops and comes back within the session timeout gets the same partitions back without any
// rebalance of the others; a second live member with the same id fences the first, which
// reports a fatal error; and a member whose brokers are all down still ends its commit and its
// close within their limits.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "shared/config/config.h"
#include "shared/kafka/wire_contract.h"
#include "tests/kafka/shared_cluster.h"
#include "worker/kafka_consumer.h"

namespace hookrelay::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// What one consumer's listener heard.
struct Member {
  ~Member() { consumer.reset(); }  // closing revokes: the listener writes below, so close first
  std::unique_ptr<KafkaConsumer> consumer;
  std::set<TopicPartition> owned;
  int assigned_calls = 0;
  int revoked_calls = 0;
  std::size_t min_owned_after_first = SIZE_MAX;  // the fewest owned after the first assignment
  bool fatal = false;
  std::string fatal_reason;
};

class ConsumerGroupOnKafka : public ::testing::Test {
 protected:
  void SetUp() override {
    auto k = shared_cluster();
    ASSERT_TRUE(k) << k.error().message;
    kafka_ = *k;
    ASSERT_TRUE(kafka_->create_topics(
        {std::string(kWebhooksTopic), std::string(kCallsTopic), retry_topic(0)}, 4));
    group_ = "consumer-group-test-" + std::to_string(getpid()) + "-" +
             std::to_string(Clock::now().time_since_epoch().count() % 1000000);
  }

  std::unique_ptr<Member> join(const std::string& instance_id) {
    auto config = parse_config("kafka: { bootstrap_servers: \"" + kafka_->bootstrap() + "\" }\n" +
                                   "worker: { group_id: " + group_ + ", group_instance_id: \"" +
                                   instance_id + "\" }\n" + "retry: { schedule_seconds: [5] }\n",
                               process_env());
    EXPECT_TRUE(config) << config.error().message;
    if (!config) return nullptr;
    auto c = KafkaConsumer::create(*config, "consumer-group-test-" + instance_id);
    EXPECT_TRUE(c) << c.error().message;
    if (!c) return nullptr;
    auto m = std::make_unique<Member>();
    m->consumer = std::move(*c);
    Member* self = m.get();
    ConsumerListener listener;
    listener.on_assigned = [self](const std::vector<TopicPartition>& tps) {
      ++self->assigned_calls;
      for (const auto& tp : tps)
        EXPECT_TRUE(self->owned.insert(tp).second) << "assigned twice: " << tp.topic;
    };
    listener.on_revoked = [self](const std::vector<TopicPartition>& tps) {
      ++self->revoked_calls;
      for (const auto& tp : tps)
        EXPECT_EQ(self->owned.erase(tp), 1u) << "revoked but not owned: " << tp.topic;
      self->min_owned_after_first = std::min(self->min_owned_after_first, self->owned.size());
    };
    m->consumer->set_listener(std::move(listener));
    m->consumer->set_on_fatal([self](const std::string& reason) {
      self->fatal = true;
      self->fatal_reason = reason;
    });
    return m;
  }

  // Polls every member until `done` holds or the time is up; true when it held.
  template <class Done>
  bool poll_until(const std::vector<Member*>& members, Done done, std::chrono::milliseconds limit) {
    auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      for (auto* m : members) (void)m->consumer->poll(100, 20);
      if (done()) return true;
    }
    return false;
  }

  void TearDown() override {
    // Whatever a test stopped runs again for the suites after it.
    if (kafka_) {
      auto back = kafka_->start_stopped();
      EXPECT_TRUE(back) << back.error().message;
    }
  }

  KafkaCluster* kafka_ = nullptr;
  std::string group_;
};

TEST_F(ConsumerGroupOnKafka, CooperativeJoinAndStaticRestartWithoutRebalance) {
  auto a = join("member-a");
  ASSERT_TRUE(a);
  ASSERT_TRUE(poll_until(
      {a.get()}, [&] { return !a->owned.empty(); }, 30s))
      << "member-a got no partitions";
  const std::size_t all = a->owned.size();
  ASSERT_GE(all, 2u) << "three topics of 4 partitions (or more, made by another suite)";
  EXPECT_EQ(std::set<TopicPartition>(a->owned), [&] {
    auto v = a->consumer->assignment();
    return std::set<TopicPartition>(v.begin(), v.end());
  }());

  // A second member: cooperative, so member-a gives up only what moves and keeps consuming the
  // rest.
  auto b = join("member-b");
  ASSERT_TRUE(b);
  ASSERT_TRUE(poll_until(
      {a.get(), b.get()},
      [&] { return !b->owned.empty() && a->owned.size() + b->owned.size() == all; }, 30s))
      << "a owns " << a->owned.size() << ", b owns " << b->owned.size();
  EXPECT_GT(a->min_owned_after_first, 0u)
      << "member-a lost its whole assignment: an eager rebalance";
  EXPECT_GE(a->revoked_calls, 1);
  for (const auto& tp : b->owned) EXPECT_EQ(a->owned.count(tp), 0u);

  // member-a stops (a static member does not leave the group) and comes back under its id:
  // its partitions come back to it, and member-b hears nothing.
  const auto a_owned = a->owned;
  const int b_calls = b->assigned_calls + b->revoked_calls;
  const auto b_owned = b->owned;
  a.reset();
  auto restarted_at = Clock::now();
  auto a2 = join("member-a");
  ASSERT_TRUE(a2);
  ASSERT_TRUE(poll_until(
      {a2.get(), b.get()}, [&] { return a2->owned == a_owned; }, 20s))
      << "member-a restarted owns " << a2->owned.size() << " of its " << a_owned.size();
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - restarted_at);
  EXPECT_LT(took, 10s)
      << "a static member's partitions come back at its join, not after a session timeout";
  (void)poll_until(
      {a2.get(), b.get()}, [] { return false; }, 2s);  // and nothing follows
  EXPECT_EQ(b->assigned_calls + b->revoked_calls, b_calls) << "member-b went through a rebalance";
  EXPECT_EQ(b->owned, b_owned);
  EXPECT_EQ(a2->assigned_calls, 1);
}

// librdkafka's own commit and close wait as long as its group handler takes: with every broker
// down, a static member's commit waits for a coordinator for the session timeout (45 s), and its
// close more than 3 minutes; a cooperative assignment that arrives during the close holds it for
// ever (librdkafka 2.0.2, confluentinc/librdkafka#4527; it once held this suite's CI run until
// ctest's timeout). The worker's shutdown gives up on each after its limit instead.
TEST_F(ConsumerGroupOnKafka, ShuttingDownWithEveryBrokerDownEndsWithinItsLimits) {
  auto a = join("member-e");
  ASSERT_TRUE(a);
  ASSERT_TRUE(poll_until(
      {a.get()}, [&] { return !a->owned.empty(); }, 30s));
  // An offset stored and not yet committed: the close commits it, or tries to.
  a->consumer->store_offsets({{*a->owned.begin(), 0}});
  for (int node = 1; node <= kafka_->nodes(); ++node) ASSERT_TRUE(kafka_->kill_node(node));

  // The worker's own shutdown: its final commit, then the close.
  auto started = Clock::now();
  auto committed = a->consumer->commit();
  EXPECT_FALSE(committed) << "no coordinator answers";
  EXPECT_LT(Clock::now() - started, KafkaConsumer::kCommitLimit + 2s);

  started = Clock::now();
  a->consumer->close();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  EXPECT_LT(took, KafkaConsumer::kCloseLimit + 3s);
  // The worker's producer and sender callbacks still wake its loop while it stops (a purged
  // retry's report): a wake after the close, abandoned or not, must not crash the process.
  a->consumer->wake();
  a.reset();  // the consumer it gave up on is not waited for again
  EXPECT_LT(Clock::now() - started, KafkaConsumer::kCloseLimit + 4s);
}

TEST_F(ConsumerGroupOnKafka, ASecondLiveMemberWithTheSameIdFencesTheFirst) {
  auto first = join("member-x");
  ASSERT_TRUE(first);
  ASSERT_TRUE(poll_until(
      {first.get()}, [&] { return !first->owned.empty(); }, 30s));
  auto second = join("member-x");
  ASSERT_TRUE(second);
  ASSERT_TRUE(poll_until(
      {first.get(), second.get()}, [&] { return first->fatal; }, 30s))
      << "the first member was not fenced";
  EXPECT_NE(first->fatal_reason.find("group.instance.id"), std::string::npos)
      << first->fatal_reason;
  EXPECT_FALSE(second->fatal);
}

}  // namespace
}  // namespace hookrelay::test
