// The test harness itself: if these fail, every other integration test is suspect.
#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "tests/support/free_port.h"
#include "tests/support/postgres.h"
#include "tests/support/process.h"
#include "tests/support/test_dir.h"

namespace hookrelay::test {
namespace {

TEST(ChildProcess, ReportsExitStatusAndCapturesOutputAndEnvironment) {
  TestDir dir;
  auto child = ChildProcess::spawn({"sh", "-c", "echo out-$HR_TEST_VAR; echo err >&2; exit 3"},
                                   {{"HR_TEST_VAR", "value"}}, dir.file("sh.log"));
  ASSERT_TRUE(child) << child.error().message;
  EXPECT_EQ(child->wait_exit(std::chrono::seconds(10)), 3);
  EXPECT_FALSE(child->running());
  EXPECT_EQ(child->read_log(), "out-value\nerr\n");
}

TEST(ChildProcess, TerminateAndKillAreReportedAsSignalExits) {
  TestDir dir;
  auto child = ChildProcess::spawn({"sleep", "30"}, {}, dir.file("sleep.log"));
  ASSERT_TRUE(child) << child.error().message;
  EXPECT_TRUE(child->running());
  EXPECT_EQ(child->wait_exit(std::chrono::milliseconds(50)), std::nullopt);
  child->terminate();
  EXPECT_EQ(child->wait_exit(std::chrono::seconds(10)), 128 + SIGTERM);

  auto stubborn =
      ChildProcess::spawn({"sh", "-c", "trap '' TERM; sleep 30"}, {}, dir.file("trap.log"));
  ASSERT_TRUE(stubborn);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the shell install its trap
  EXPECT_EQ(stubborn->stop(std::chrono::milliseconds(300)), 128 + SIGKILL);
}

TEST(ChildProcess, AProgramThatCannotRunFailsAtSpawn) {
  TestDir dir;
  auto child = ChildProcess::spawn({"/nonexistent/hookrelay-nothing"}, {}, dir.file("x.log"));
  ASSERT_FALSE(child);
  EXPECT_NE(child.error().message.find("No such file"), std::string::npos) << child.error().message;
}

TEST(FreePort, IsBindable) {
  const auto port = free_port();
  EXPECT_GT(port, 0);
}

TEST(WithDatabase, ReplacesOnlyTheDatabase) {
  EXPECT_EQ(with_database("postgresql://postgres@127.0.0.1:55432/postgres", "x"),
            "postgresql://postgres@127.0.0.1:55432/x");
  EXPECT_EQ(with_database("postgresql://u@127.0.0.1/db?sslmode=disable", "x"),
            "postgresql://u@127.0.0.1/x?sslmode=disable");
  EXPECT_EQ(with_database("postgresql://127.0.0.1:5432", "x"), "postgresql://127.0.0.1:5432/x");
}

TEST(TestDatabase, CreatesAnEmptyDatabaseAndDropsItAfterwards) {
  auto db = TestDatabase::create();
  ASSERT_TRUE(db) << db.error().message;
  const std::string name = (*db)->name();
  EXPECT_EQ(name.rfind("hr_test_", 0), 0u);
  {
    pqxx::connection conn((*db)->url());
    EXPECT_EQ(std::string(conn.dbname()), name);
    pqxx::work tx(conn);
    tx.exec0("CREATE TABLE t (id int)");
    tx.exec0("INSERT INTO t VALUES (1)");
    tx.commit();
  }
  pqxx::connection still_open((*db)->url());  // WITH (FORCE) must not be blocked by this
  db->reset();

  pqxx::connection admin(std::getenv(TestDatabase::kUrlEnv));
  pqxx::nontransaction tx(admin);
  const auto rows = tx.exec_params("SELECT 1 FROM pg_database WHERE datname = $1", name);
  EXPECT_TRUE(rows.empty()) << name << " still exists";
}

}  // namespace
}  // namespace hookrelay::test
