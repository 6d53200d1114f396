// KafkaDlqReader (shared/replay/dlq_reader.h) against the devbroker: what the replays rely on
// when the DLQ is large or a broker is away.
#include "shared/replay/dlq_reader.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "shared/kafka/wire_contract.h"
#include "tests/support/devbroker.h"
#include "tests/support/kafka_test_client.h"
#include "tests/support/test_dir.h"

namespace hookrelay::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Partition -> leader broker id of hookrelay.dlq.
std::map<std::int32_t, std::int32_t> dlq_leaders(TestProducer& producer) {
  std::map<std::int32_t, std::int32_t> out;
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(producer.handle(), 1, nullptr, &md, 10'000) != RD_KAFKA_RESP_ERR_NO_ERROR)
    return out;
  for (int t = 0; t < md->topic_cnt; ++t) {
    if (std::string(md->topics[t].topic) != kDlqTopic) continue;
    for (int p = 0; p < md->topics[t].partition_cnt; ++p)
      out[md->topics[t].partitions[p].id] = md->topics[t].partitions[p].leader;
  }
  rd_kafka_metadata_destroy(md);
  return out;
}

// A read of the DLQ ends, failing, once it has made no progress for its timeout, even while a
// partition it has finished keeps receiving dead letters: here one partition cannot be fetched
// (its leader went down as the read began) while another, read to its end, grows every 200 ms.
// Its new messages counted as progress, and the read never returned while they came (the admin
// API's runner hung with its lease renewed).
TEST(DlqReader, AReadEndsWhenAPartitionCannotBeFetchedThoughAFinishedOneKeepsGrowing) {
  TestDir dir;
  std::unique_ptr<DevBroker> broker;
  std::unique_ptr<TestProducer> producer;
  std::int32_t stuck = -1, live = -1, stuck_leader = -1;
  // Leaders are placed at random: start again until two partitions have different ones.
  for (int tries = 0; tries < 8 && live < 0; ++tries) {
    producer.reset();
    broker.reset();
    auto b = DevBroker::start(dir.path(), {.brokers = 2, .partitions = 8, .retry_tiers = 1});
    ASSERT_TRUE(b) << b.error().message;
    broker = std::move(*b);
    auto p = TestProducer::create(broker->bootstrap());
    ASSERT_TRUE(p) << p.error().message;
    producer = std::move(*p);
    const auto leaders = dlq_leaders(*producer);
    ASSERT_EQ(leaders.size(), 8u);
    stuck = leaders.begin()->first;
    stuck_leader = leaders.begin()->second;
    for (const auto& [partition, leader] : leaders) {
      if (leader != stuck_leader) {
        live = partition;
        break;
      }
    }
  }
  ASSERT_GE(live, 0) << "every partition had the same leader, 8 times";

  std::vector<TestRecord> records;
  for (int i = 0; i < 20; ++i) {
    records.push_back({std::string(kDlqTopic),
                       "stuck",
                       {{"hr-delivery-key", "s" + std::to_string(i)}},
                       "s" + std::to_string(i),
                       stuck});
  }
  records.push_back({std::string(kDlqTopic), "live", {{"hr-delivery-key", "l0"}}, "l0", live});
  ASSERT_TRUE(producer->produce_all(records));
  // The stuck partition's leader answers slowly, so the read's first fetch from it is still out
  // when that broker goes down.
  const auto rtt = broker->control("rtt " + std::to_string(stuck_leader) + " 500");
  ASSERT_TRUE(rtt && rtt->rfind("ok", 0) == 0) << (rtt ? *rtt : rtt.error().message);

  std::atomic<bool> stop_growing{false};
  std::thread grower([&] {
    for (int i = 1; !stop_growing.load(); ++i) {
      (void)producer->produce({std::string(kDlqTopic),
                               "new",
                               {{"hr-delivery-key", "l" + std::to_string(i)}},
                               "l" + std::to_string(i),
                               live},
                              seconds(5));
      std::this_thread::sleep_for(milliseconds(200));
    }
  });

  KafkaConfig kafka;
  kafka.bootstrap_servers = broker->bootstrap();
  auto reader = KafkaDlqReader::create(kafka, 3'000);
  ASSERT_TRUE(reader) << reader.error().message;
  bool downed = false;
  auto read = std::async(std::launch::async, [&] {
    return (*reader)->read([](const std::string&) { return true; },
                           [&](int64_t, int64_t) {
                             if (downed) return;
                             downed = true;  // the first call: watermarks read, assigned
                             (void)broker->broker_down(stuck_leader);
                           });
  });
  const bool ended = read.wait_for(seconds(20)) == std::future_status::ready;
  stop_growing = true;
  grower.join();
  auto result = read.get();
  EXPECT_TRUE(ended) << "the read went on while the finished partition grew";
  ASSERT_FALSE(result) << result->size() << " messages";
  EXPECT_NE(result.error().message.find("made no progress"), std::string::npos)
      << result.error().message;
  EXPECT_TRUE(result.error().retryable);
}

// A stub (read past the memory budget) keeps the event it stands for, hr-source and hr-event-id,
// besides hr-dlq-reason: the replay of unknown sources selects and dedupes events by them without
// fetching every stub whole. It kept the reason only.
TEST(DlqReader, AStubKeepsItsReasonSourceAndEventId) {
  TestDir dir;
  auto b = DevBroker::start(dir.path(), {.brokers = 1, .partitions = 1, .retry_tiers = 1});
  ASSERT_TRUE(b) << b.error().message;
  auto p = TestProducer::create((*b)->bootstrap());
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_TRUE((*p)->produce(std::string(kDlqTopic), std::string(10'000, 'x'),
                            {{"hr-kind", "webhook"},
                             {"hr-source", "newsrc"},
                             {"hr-event-id", "e1"},
                             {"hr-origin-topic", "hookrelay.webhooks"},
                             {"hr-last-error", "source 'newsrc' is not in this configuration"},
                             {"hr-dlq-reason", "unknown_source"}}));
  KafkaConfig kafka;
  kafka.bootstrap_servers = (*b)->bootstrap();
  auto reader = KafkaDlqReader::create(kafka, 10'000);
  ASSERT_TRUE(reader) << reader.error().message;
  (*reader)->set_max_held_bytes(1'000);
  auto read = (*reader)->read([](const std::string&) { return true; }, {});
  ASSERT_TRUE(read) << read.error().message;
  ASSERT_EQ(read->size(), 1u);
  const DlqMessage& stub = read->front();
  ASSERT_TRUE(stub.stub);
  EXPECT_TRUE(stub.value.empty());
  std::map<std::string, std::string> headers;
  for (const auto& h : stub.headers) headers[h.name] = h.value;
  EXPECT_EQ(headers, (std::map<std::string, std::string>{{"hr-dlq-reason", "unknown_source"},
                                                         {"hr-event-id", "e1"},
                                                         {"hr-source", "newsrc"}}));
}

}  // namespace
}  // namespace hookrelay::test
