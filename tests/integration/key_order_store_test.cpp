// The rows of ordered_waiting against a real PostgreSQL (worker/key_order_store.cpp,
// shared/store/ordered_waiting_sql.h, migrations/0024): a waiting delivery is read back with the
// exact bytes of its headers, whoever wrote its row (a worker's key order, a release of a resumed
// route, a worker of an earlier release).
#include "worker/key_order_store.h"

#include <gtest/gtest.h>

#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "shared/store/delivery_queries.h"
#include "shared/store/pg_array.h"
#include "tests/integration/scratch_database.h"

namespace hookrelay {
namespace {

class KeyOrderStoreTest : public testing::MigratedDatabaseTest {
 protected:
  void SetUp() override {
    MigratedDatabaseTest::SetUp();
    if (HasFatalFailure()) return;
    store_ = std::make_unique<PostgresKeyOrderStore>(db_->url());
    // The key is held by a head, so what is enqueued waits.
    db_->scalar(
        "INSERT INTO ordered_keys (source, route, ordering_key, head_key)"
        " VALUES ('acme', 'o', 'c0', 'wh:acme:e0:o') RETURNING 1");
  }
  // The key's head finished: the first waiting delivery, as it is published again.
  WaitingDelivery next() {
    auto advanced = store_->advance(key_, "wh:acme:e0:o");
    EXPECT_TRUE(advanced) << advanced.error().message;
    if (!advanced || !advanced->next) {
      ADD_FAILURE() << "nothing was waiting";
      return {};
    }
    return *advanced->next;
  }

  const OrderKey key_{"acme", "o", "c0"};
  std::unique_ptr<PostgresKeyOrderStore> store_;
};

// Header values that are not UTF-8 (obs-text, as ingest forwards a provider's) and a NUL come
// back byte for byte. The old row kept them as text, every such byte replaced by U+FFFD, and the
// released delivery was sent with those.
TEST_F(KeyOrderStoreTest, AWaitingDeliveryIsReadBackWithTheExactBytesOfItsHeaders) {
  const std::vector<MessageHeader> headers = {
      {"hr-attempt", "0"},
      {"hr-fwd-x-label", std::string("caf\xe9 \xff\x80")},
      {"hr-fwd-x-nul", std::string("a\0b", 3)},
      {"hr-fwd-x-quote", "\"{a,b}\\ NULL"},
      {"hr-fwd-x-utf8", "caf\xc3\xa9"},
  };
  auto waits = store_->enqueue(
      WaitingDelivery{0, key_, "wh:acme:e1:o", "hookrelay.retry.0", headers, "{}"}, 0);
  ASSERT_TRUE(waits) << waits.error().message;
  ASSERT_TRUE(*waits);
  const WaitingDelivery w = next();
  EXPECT_EQ(w.delivery_key, "wh:acme:e1:o");
  ASSERT_EQ(w.headers.size(), headers.size());
  for (std::size_t i = 0; i < headers.size(); ++i) {
    EXPECT_EQ(w.headers[i].name, headers[i].name);
    EXPECT_EQ(w.headers[i].value, headers[i].value) << headers[i].name;
  }
}

// The same for a delivery a release of a resumed route sets to wait (its message from the parked
// topic).
TEST_F(KeyOrderStoreTest, AReleasedParkedDeliveryWaitsWithTheExactBytesOfItsHeaders) {
  db_->scalar(
      "INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, state,"
      " attempts) VALUES ('wh:acme:e1:o', 'webhook', 'acme', 'e1', 'o', 'http://127.0.0.1:9/o',"
      " 'parked', 0)");
  const std::string latin1("caf\xe9 \xff");
  DeliveryQueries queries(db_->url());
  const KeyWait wait{
      "acme", "o", "c0", "hookrelay.retry.0", {{"hr-attempt", "0"}, {"hr-fwd-x-label", latin1}},
      "{}"};
  auto waits = queries.mark_replayed_behind_key("wh:acme:e1:o", "op", "resume", wait, 0, "parked");
  ASSERT_TRUE(waits) << waits.error().message;
  ASSERT_TRUE(*waits);
  const WaitingDelivery w = next();
  ASSERT_EQ(w.headers.size(), 2u);
  EXPECT_EQ(w.headers[1].value, latin1);
}

// Rows without the bytes (written before migration 0024, or by a worker of an earlier release
// during a rolling upgrade) are read from their text, as before.
TEST_F(KeyOrderStoreTest, ARowWrittenWithoutTheBytesIsReadFromItsText) {
  db_->scalar(
      "INSERT INTO ordered_waiting (source, route, ordering_key, delivery_key, topic, headers,"
      " body) VALUES ('acme', 'o', 'c0', 'wh:acme:e1:o', 'hookrelay.retry.0',"
      " ARRAY['hr-attempt', '3', 'hr-fwd-x-label', 'caf\u00e9'], '\\x7b7d') RETURNING 1");
  const WaitingDelivery w = next();
  EXPECT_EQ(w.body, "{}");
  ASSERT_EQ(w.headers.size(), 2u);
  EXPECT_EQ(w.headers[0].name, "hr-attempt");
  EXPECT_EQ(w.headers[0].value, "3");
  EXPECT_EQ(w.headers[1].value, "caf\xc3\xa9");
}

// A worker of an earlier release replaces a row's message with a copy carrying more attempts
// (its statement sets the text headers only): the row's bytes, the older copy's, are dropped with
// it, and the row is read as that worker wrote it. Kept, they would release the older copy, below
// the delivery's fence (migrations/0020): skipped, and the delivery lost.
TEST_F(KeyOrderStoreTest, AnEarlierReleasesNewerCopyDropsTheRowsOlderBytes) {
  auto waits = store_->enqueue(WaitingDelivery{0,
                                               key_,
                                               "wh:acme:e1:o",
                                               "hookrelay.retry.0",
                                               {{"hr-attempt", "0"}, {"hr-fwd-x-label", "old"}},
                                               "{\"a\":0}"},
                               0);
  ASSERT_TRUE(waits) << waits.error().message;
  // The earlier release's kAppendWaiting, as it was before migration 0024.
  PgArrayLiteral headers;
  for (const char* h : {"hr-attempt", "2", "hr-fwd-x-label", "new"}) headers.add(h);
  pqxx::connection c(db_->url());
  pqxx::work tx(c);
  tx.exec_params(
      "WITH found AS (SELECT id, hookrelay_waiting_attempts(headers) AS attempts"
      "   FROM ordered_waiting WHERE source = $1 AND route = $2 AND ordering_key = $3"
      "   AND delivery_key = $4),"
      " newer AS (UPDATE ordered_waiting w SET topic = $5, headers = $6::text[],"
      "   body = decode($7, 'hex') FROM found f"
      "   WHERE w.id = f.id AND f.attempts < hookrelay_waiting_attempts($6::text[]) RETURNING 1)"
      " INSERT INTO ordered_waiting (source, route, ordering_key, delivery_key, topic, headers,"
      " body) SELECT $1, $2, $3, $4, $5, $6::text[], decode($7, 'hex')"
      " WHERE NOT EXISTS (SELECT 1 FROM found)",
      "acme", "o", "c0", "wh:acme:e1:o", "hookrelay.retry.0", std::move(headers).take(),
      "7b2261223a327d");
  tx.commit();
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM ordered_waiting WHERE header_bytes IS NULL"), "1")
      << "the older copy's bytes were kept beside the newer copy's text";
  const WaitingDelivery w = next();
  EXPECT_EQ(w.body, "{\"a\":2}");
  ASSERT_EQ(w.headers.size(), 2u);
  EXPECT_EQ(w.headers[0].value, "2") << "the older copy's headers were released";
  EXPECT_EQ(w.headers[1].value, "new");
}

}  // namespace
}  // namespace hookrelay
