// The devbroker against real librdkafka clients: what ingest and the workers rely on.
#include "tests/support/devbroker.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <thread>

#include "shared/kafka/wire_contract.h"
#include "shared/replay/dlq_reader.h"
#include "tests/support/kafka_test_client.h"
#include "tests/support/process.h"
#include "tests/support/test_dir.h"

namespace hookrelay::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class DevBrokerTest : public ::testing::Test {
 protected:
  void start(const DevBrokerConfig& config = {}) {
    auto broker = DevBroker::start(dir_.path(), config);
    ASSERT_TRUE(broker) << broker.error().message;
    broker_ = std::move(broker).value();
  }

  std::unique_ptr<TestProducer> producer(const KafkaProperties& properties = {}) {
    auto p = TestProducer::create(broker_->bootstrap(), properties);
    EXPECT_TRUE(p) << p.error().message;
    return p ? std::move(p).value() : nullptr;
  }

  TestDir dir_;
  std::unique_ptr<DevBroker> broker_;
};

TEST_F(DevBrokerTest, CreatesEveryHookrelayTopicWithTheConfiguredPartitions) {
  start({.brokers = 2, .partitions = 5, .retry_tiers = 3});
  auto topics = topic_partitions(broker_->bootstrap());
  ASSERT_TRUE(topics) << topics.error().message;
  for (const std::string& topic :
       {std::string(kWebhooksTopic), std::string(kCallsTopic), retry_topic(0), retry_topic(1),
        retry_topic(2), std::string(kDlqTopic)}) {
    ASSERT_TRUE(topics->contains(topic)) << topic;
    EXPECT_EQ(topics->at(topic), 5) << topic;
  }
  EXPECT_FALSE(topics->contains(retry_topic(3)));
  EXPECT_EQ(broker_->bootstrap().find("127.0.0.1:"), 0u);
  EXPECT_EQ(std::count(broker_->bootstrap().begin(), broker_->bootstrap().end(), ','), 1);
}

TEST_F(DevBrokerTest, IdempotentProducerRoundTripKeepsValueAndHeadersByteForByte) {
  start();
  auto p = producer();
  ASSERT_TRUE(p);
  const std::string value("\x00{\"a\":1}\x00\xff\xfe end", 15);
  const Headers headers = {{std::string(header::kSource), "github"},
                           {std::string(header::kEventId), std::string("id\x00\x01", 4)},
                           {"empty", ""},
                           {std::string(header::kSource), "second-with-same-name"}};
  auto at = p->produce({std::string(kWebhooksTopic), value, headers, "key-1"});
  ASSERT_TRUE(at) << at.error().message;

  auto got = consume_all(broker_->bootstrap(), std::string(kWebhooksTopic), 1);
  ASSERT_TRUE(got) << got.error().message;
  ASSERT_EQ(got->size(), 1u);
  const auto& m = got->front();
  EXPECT_EQ(m.value, value);
  EXPECT_EQ(m.headers, headers);
  EXPECT_TRUE(m.has_key);
  EXPECT_EQ(m.key, "key-1");
  EXPECT_EQ(m.partition, at->partition);
  EXPECT_EQ(m.offset, at->offset);
  EXPECT_EQ(m.header(header::kSource), "github");
}

TEST_F(DevBrokerTest, AllBrokersDownFailsTheDeliveryAndBrokersUpRecovers) {
  start();
  // Short reconnect backoff: by default librdkafka may wait up to 10 s before trying a broker
  // again, longer than the 2 s message timeout, and the test is about the broker, not that.
  auto p = producer({{"message.timeout.ms", "2000"},
                     {"reconnect.backoff.ms", "50"},
                     {"reconnect.backoff.max.ms", "200"}});
  ASSERT_TRUE(p);
  ASSERT_TRUE(p->produce(std::string(kCallsTopic), "warm-up"));  // connected, metadata known

  ASSERT_TRUE(broker_->all_down());
  auto failed = p->produce(std::string(kCallsTopic), "while-down");
  ASSERT_FALSE(failed) << "produced at offset " << failed->offset << " with every broker down";
  EXPECT_TRUE(failed.error().retryable) << failed.error().code;

  ASSERT_TRUE(broker_->all_up());
  auto recovered = p->produce(std::string(kCallsTopic), "after-up");
  ASSERT_TRUE(recovered) << recovered.error().message;

  auto got = consume_all(broker_->bootstrap(), std::string(kCallsTopic), 2);
  ASSERT_TRUE(got);
  std::multiset<std::string> values;
  for (const auto& m : *got) values.insert(m.value);
  EXPECT_EQ(values, (std::multiset<std::string>{"warm-up", "after-up"}));
}

TEST_F(DevBrokerTest, InjectedProduceErrorsAreRetriedWithoutDuplicates) {
  start();
  auto p = producer();
  ASSERT_TRUE(p);
  ASSERT_TRUE(p->produce(std::string(kDlqTopic), "first"));
  auto reply = broker_->control("errors Produce 2 NOT_LEADER_FOR_PARTITION");
  ASSERT_TRUE(reply);
  EXPECT_EQ(*reply, "ok 2 Produce errors queued");
  ASSERT_TRUE(p->produce(std::string(kDlqTopic), "second"));

  // Ask for one more than expected: a duplicate from a retry would show up here.
  auto got = consume_all(broker_->bootstrap(), std::string(kDlqTopic), 3, seconds(3));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->size(), 2u);
}

TEST_F(DevBrokerTest, ControlChannelAnswersEveryCommand) {
  start({.brokers = 2});
  EXPECT_EQ(*broker_->control("ping"), "ok pong");
  EXPECT_EQ(*broker_->control("bootstrap"), "ok " + broker_->bootstrap());
  EXPECT_EQ(*broker_->control("frobnicate"), "error unknown command 'frobnicate'");
  EXPECT_EQ(broker_->control("broker down 3")->rfind("error ", 0), 0u);
  EXPECT_EQ(broker_->control("errors NoSuchApi 1 6")->rfind("error ", 0), 0u);
  EXPECT_EQ(broker_->control("errors Produce 1 NO_SUCH_ERROR")->rfind("error ", 0), 0u);
  EXPECT_EQ(*broker_->control("rtt all 5"), "ok rtt all 5ms");
  EXPECT_EQ(*broker_->control("clear-errors"), "ok cleared errors for 0 ApiKey(s)");
  EXPECT_TRUE(broker_->broker_down(2));
  EXPECT_TRUE(broker_->broker_up(2));
  EXPECT_FALSE(broker_->broker_up(7));
}

TEST_F(DevBrokerTest, TwoConsumersInOneGroupSplitThePartitionsAndCommit) {
  start({.brokers = 3, .partitions = 6, .retry_tiers = 0});
  const std::string topic(kWebhooksTopic);
  auto a = TestGroupConsumer::create(broker_->bootstrap(), "workers", {topic});
  ASSERT_TRUE(a) << a.error().message;
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  while ((*a)->assignment().size() != 6 && std::chrono::steady_clock::now() < deadline) {
    (*a)->poll(milliseconds(100));
  }
  ASSERT_EQ((*a)->assignment().size(), 6u) << "the only member should own every partition";

  auto b = TestGroupConsumer::create(broker_->bootstrap(), "workers", {topic});
  ASSERT_TRUE(b) << b.error().message;
  auto split = [&] {
    const auto pa = (*a)->assignment();
    const auto pb = (*b)->assignment();
    std::set<std::pair<std::string, std::int32_t>> all(pa.begin(), pa.end());
    all.insert(pb.begin(), pb.end());
    return !pa.empty() && !pb.empty() && all.size() == 6 && pa.size() + pb.size() == 6;
  };
  while (!split() && std::chrono::steady_clock::now() < deadline) {
    (*a)->poll(milliseconds(50));
    (*b)->poll(milliseconds(50));
  }
  ASSERT_TRUE(split()) << "a owns " << (*a)->assignment().size() << ", b owns "
                       << (*b)->assignment().size();

  auto p = producer();
  ASSERT_TRUE(p);
  std::vector<TestRecord> records;
  for (int i = 0; i < 30; ++i)
    records.push_back({topic, "m" + std::to_string(i), {}, "k" + std::to_string(i)});
  ASSERT_TRUE(p->produce_all(records));

  std::set<std::string> seen;
  std::set<std::int32_t> partitions_a;
  std::set<std::int32_t> partitions_b;
  while (seen.size() < 30 && std::chrono::steady_clock::now() < deadline) {
    if (auto m = (*a)->poll(milliseconds(50))) {
      seen.insert(m->value);
      partitions_a.insert(m->partition);
    }
    if (auto m = (*b)->poll(milliseconds(50))) {
      seen.insert(m->value);
      partitions_b.insert(m->partition);
    }
  }
  EXPECT_EQ(seen.size(), 30u);
  for (auto part : partitions_a) EXPECT_FALSE(partitions_b.contains(part)) << part;
  ASSERT_TRUE((*a)->commit());
  ASSERT_TRUE((*b)->commit());
  a->reset();
  b->reset();

  // Committed offsets survive the members: a newcomer in the same group starts after them.
  auto c = TestGroupConsumer::create(broker_->bootstrap(), "workers", {topic});
  ASSERT_TRUE(c);
  const auto quiet_until = std::chrono::steady_clock::now() + seconds(8);
  while (std::chrono::steady_clock::now() < quiet_until) {
    auto m = (*c)->poll(milliseconds(100));
    ASSERT_FALSE(m) << "re-delivered " << m->value << " despite the commit";
  }
  EXPECT_EQ((*c)->assignment().size(), 6u);
}

TEST_F(DevBrokerTest, SigtermExitsZeroAndRemovesItsFiles) {
  start();
  broker_->process().terminate();
  EXPECT_EQ(broker_->process().wait_exit(seconds(10)), 0);
  EXPECT_FALSE(std::filesystem::exists(dir_.file("bootstrap")));
  EXPECT_FALSE(std::filesystem::exists(dir_.file("control")));
}

constexpr const char* kDevBroker = HOOKRELAY_BIN_DIR "/devbroker/hookrelay-devbroker";

// `hookrelay-devbroker 2>&1 | grep -m1 devbroker_ready`: grep exits after the first match and the
// broker's next log line went to a pipe nobody reads. SIGPIPE killed it, under the tests that
// had just found it ready.
TEST_F(DevBrokerTest, KeepsRunningWhenTheReaderOfItsLogGoesAway) {
  const auto bootstrap = dir_.file("bootstrap");
  const auto control = dir_.file("control");
  int log_pipe[2];
  ASSERT_EQ(::pipe(log_pipe), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, STDIN_FILENO);
    ::dup2(null, STDOUT_FILENO);
    ::dup2(log_pipe[1], STDERR_FILENO);
    ::close(log_pipe[0]);
    ::execl(kDevBroker, kDevBroker, "--brokers", "1", "--partitions", "1", "--retry-tiers", "0",
            "--bootstrap-file", bootstrap.c_str(), "--control-file", control.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // The reader is gone before the broker writes its first line.
  ::close(log_pipe[0]);
  ::close(log_pipe[1]);
  int status = 0;
  bool exited = false;
  const auto deadline = std::chrono::steady_clock::now() + seconds(20);
  while (!std::filesystem::exists(bootstrap) && std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      break;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  // It logs right after writing its files: still running a while later.
  std::this_thread::sleep_for(milliseconds(500));
  if (!exited) exited = ::waitpid(pid, &status, WNOHANG) == pid;
  EXPECT_FALSE(exited) << "exited: "
                       << (WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                               : "status " + std::to_string(WEXITSTATUS(status)));
  if (!exited) {
    std::string address;
    std::getline(std::ifstream(bootstrap), address);
    auto topics = topic_partitions(address);
    EXPECT_TRUE(topics) << topics.error().message;
    ::kill(pid, SIGTERM);
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    EXPECT_FALSE(std::filesystem::exists(bootstrap));
    EXPECT_FALSE(std::filesystem::exists(control));
  }
}

// The control file is written first: a start that then fails must not leave it naming a port
// nobody listens on (a script polling for it would take the broker for up).
TEST_F(DevBrokerTest, AStartThatFailsAfterWritingTheControlFileRemovesIt) {
  const auto control = dir_.file("control");
  auto broker = ChildProcess::spawn(
      {kDevBroker, "--brokers", "1", "--partitions", "1", "--retry-tiers", "0", "--control-file",
       control.string(), "--bootstrap-file", dir_.file("no-such-dir/bootstrap").string()},
      {}, dir_.file("failed-start.log"));
  ASSERT_TRUE(broker) << broker.error().message;
  EXPECT_EQ(broker->wait_exit(seconds(20)), std::optional<int>(1)) << broker->log_tail();
  EXPECT_NE(broker->read_log().find("msg=devbroker_start_failed"), std::string::npos)
      << broker->log_tail();
  EXPECT_FALSE(std::filesystem::exists(control));
}

TEST_F(DevBrokerTest, BadFlagExitsTwoNamingTheFlag) {
  auto broker = DevBroker::start(dir_.path(), {.extra_args = {"--partitions", "zero"}});
  ASSERT_FALSE(broker);
  EXPECT_NE(broker.error().message.find("status 2"), std::string::npos) << broker.error().message;
  EXPECT_NE(broker.error().message.find("--partitions"), std::string::npos)
      << broker.error().message;
}

// A replay's read of the DLQ holds at most its budget of values and headers: the messages past it
// are stubs (where they are and their delivery key), each fetched whole when replayed. A DLQ of
// many large bodies no longer has to fit in the admin process's memory.
TEST_F(DevBrokerTest, TheDlqReaderKeepsStubsPastItsBudgetAndFetchesThemWhole) {
  start({.brokers = 1, .partitions = 1});
  auto p = producer();
  ASSERT_TRUE(p);
  std::vector<TestRecord> records;
  for (int i = 0; i < 20; ++i) {
    records.push_back({std::string(kDlqTopic),
                       std::string(10'000, static_cast<char>('a' + i)),
                       {{"hr-delivery-key", "k" + std::to_string(i)}},
                       "k" + std::to_string(i)});
  }
  ASSERT_TRUE(p->produce_all(records));
  KafkaConfig kafka;
  kafka.bootstrap_servers = broker_->bootstrap();
  auto reader = KafkaDlqReader::create(kafka, 10'000);
  ASSERT_TRUE(reader) << reader.error().message;
  (*reader)->set_max_held_bytes(35'000);  // three of the 10 KB messages with their headers
  auto read = (*reader)->read([](const std::string&) { return true; }, {});
  ASSERT_TRUE(read) << read.error().message;
  ASSERT_EQ(read->size(), 20u);
  std::size_t held = 0, stubs = 0;
  for (const auto& m : *read) {
    held += m.value.size();
    if (m.stub) {
      ++stubs;
      EXPECT_TRUE(m.value.empty());
      EXPECT_TRUE(m.headers.empty());
    }
  }
  EXPECT_EQ(stubs, 17u);
  EXPECT_EQ(held, 30'000u);
  const DlqMessage& last = read->back();
  ASSERT_TRUE(last.stub);
  EXPECT_EQ(last.delivery_key(), "k19");
  auto whole = (*reader)->fetch(std::string(kDlqTopic), last.partition, last.offset);
  ASSERT_TRUE(whole) << whole.error().message;
  EXPECT_EQ(whole->value, std::string(10'000, 't'));
  EXPECT_EQ(whole->delivery_key(), "k19");
  // A second read while the first is kept (a replay reading again for keys the first missed)
  // shares the budget: all stubs. Each read had a budget of its own, and a replay could hold two.
  auto again = (*reader)->read([](const std::string&) { return true; }, {});
  ASSERT_TRUE(again) << again.error().message;
  ASSERT_EQ(again->size(), 20u);
  for (const auto& m : *again) EXPECT_TRUE(m.stub) << m.delivery_key();
}

}  // namespace
}  // namespace hookrelay::test
