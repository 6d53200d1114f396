#include "shared/store/migrator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <thread>

#include "tests/integration/scratch_database.h"

namespace hookrelay {
namespace {

namespace fs = std::filesystem;

const std::string kMigrations = HOOKRELAY_SOURCE_DIR "/migrations";

// The versions shipped in migrations/, in order.
std::vector<std::string> shipped_versions() {
  std::vector<std::string> v;
  for (const auto& entry : fs::directory_iterator(kMigrations))
    v.push_back(entry.path().filename().string().substr(0, 4));
  std::sort(v.begin(), v.end());
  return v;
}

class MigratorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string admin = testing::test_admin_url();
    ASSERT_FALSE(admin.empty());
    db_ = std::make_unique<testing::ScratchDatabase>(admin);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // A private migrations directory: the real files plus `extra` (file name -> SQL).
  std::string make_dir(const std::vector<std::pair<std::string, std::string>>& extra) {
    std::mt19937_64 random(std::random_device{}());
    dir_ = fs::temp_directory_path() / ("hr_migrations_" + std::to_string(random()));
    fs::create_directories(dir_);
    for (const auto& entry : fs::directory_iterator(kMigrations)) {
      fs::copy_file(entry.path(), dir_ / entry.path().filename());
    }
    for (const auto& [name, sql] : extra) std::ofstream(dir_ / name) << sql;
    return dir_.string();
  }

  std::unique_ptr<testing::ScratchDatabase> db_;
  fs::path dir_;
};

TEST_F(MigratorTest, AppliesEachFileOnceThenNothing) {
  auto first = migrate(db_->url(), kMigrations);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(*first, shipped_versions());
  EXPECT_EQ(db_->scalar("SELECT name FROM schema_migrations WHERE version = '0001'"), "init");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM deliveries"), "0");

  auto second = migrate(db_->url(), kMigrations);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_TRUE(second->empty());
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM schema_migrations"),
            std::to_string(shipped_versions().size()));
}

TEST_F(MigratorTest, ConcurrentRunsBothSucceedAndApplyOnce) {
  Result<std::vector<std::string>> a = fail("unset", ""), b = fail("unset", "");
  std::thread ta([&] { a = migrate(db_->url(), kMigrations); });
  std::thread tb([&] { b = migrate(db_->url(), kMigrations); });
  ta.join();
  tb.join();
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_TRUE(b) << b.error().message;
  // One applied everything, the other waited for the lock and found it done.
  EXPECT_EQ(a->size() + b->size(), shipped_versions().size());
  EXPECT_TRUE(a->empty() || b->empty());
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM schema_migrations"),
            std::to_string(shipped_versions().size()));
}

TEST_F(MigratorTest, FailingFileIsNamedAndLeavesNothingBehind) {
  std::string dir = make_dir({{"9000_broken.sql", "CREATE TABLE half_done (id int);\nSELEC 1;\n"}});
  auto r = migrate(db_->url(), dir);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "migration_failed");
  EXPECT_FALSE(r.error().retryable);
  EXPECT_NE(r.error().message.find("9000_broken.sql"), std::string::npos) << r.error().message;
  // The shipped files went in on their own; 9000 neither recorded nor half-applied.
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM schema_migrations WHERE version = '9000'"), "0");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM schema_migrations"),
            std::to_string(shipped_versions().size()));
  EXPECT_EQ(db_->scalar("SELECT to_regclass('half_done')::text"), "");

  std::ofstream(fs::path(dir) / "9000_broken.sql") << "CREATE TABLE half_done (id int);\n";
  auto fixed = migrate(db_->url(), dir);
  ASSERT_TRUE(fixed) << fixed.error().message;
  EXPECT_EQ(*fixed, (std::vector<std::string>{"9000"}));
}

TEST_F(MigratorTest, BadlyNamedFileIsRefusedBeforeAnythingRuns) {
  std::string dir = make_dir({{"2_oops.sql", "SELECT 1;"}});
  auto r = migrate(db_->url(), dir);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "migrations_dir");
  EXPECT_NE(r.error().message.find("2_oops.sql"), std::string::npos);
  EXPECT_EQ(db_->scalar("SELECT to_regclass('schema_migrations')::text"), "");
}

// The schema a build expects is the newest file of its migrations/, and a database reports the
// newest version applied: nothing before the first migration, that version after them all.
TEST_F(MigratorTest, AppliedAndBuiltSchemaVersionsAgreeAfterMigrating) {
  EXPECT_EQ(built_schema_version(), shipped_versions().back());
  auto before = applied_schema_version(db_->url());
  ASSERT_TRUE(before) << before.error().message;
  EXPECT_EQ(*before, "");
  EXPECT_EQ(check_schema_version(db_->url()), std::optional<std::string>(""));
  ASSERT_TRUE(migrate(db_->url(), kMigrations));
  auto after = applied_schema_version(db_->url());
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(*after, built_schema_version());
  EXPECT_EQ(check_schema_version(db_->url()), std::optional<std::string>(built_schema_version()));
}

// A migration that changes a table a long transaction reads waits at most lock_timeout_ms for
// its lock, so that the live workers' statements queued behind its request are held that long at
// most; it is rolled back and tried again, and given up with a message naming the wait. Once the
// transaction ends it goes in.
TEST_F(MigratorTest, AMigrationBehindALongTransactionWaitsBoundedTimesThenSaysWhy) {
  ASSERT_TRUE(migrate(db_->url(), kMigrations));
  std::string dir =
      make_dir({{"9000_alter.sql", "ALTER TABLE delivery_rows ADD COLUMN probe int;"}});
  pqxx::connection reader(db_->url());
  pqxx::work long_txn(reader);
  long_txn.exec("SELECT count(*) FROM delivery_rows");  // ACCESS SHARE until it ends

  // A worker's statement, sent while the migration waits, is not held behind it for long.
  std::atomic<bool> migrating{true};
  std::atomic<int64_t> slowest_ms{0};
  std::thread worker([&] {
    pqxx::connection c(db_->url());
    while (migrating.load()) {
      auto t0 = std::chrono::steady_clock::now();
      pqxx::nontransaction(c).exec("SELECT count(*) FROM delivery_rows");
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - t0)
                    .count();
      slowest_ms = std::max<int64_t>(slowest_ms.load(), ms);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto r =
      migrate(db_->url(), dir,
              MigrateOptions{.lock_timeout_ms = 300, .lock_attempts = 3, .retry_delay_ms = 100});
  const auto took = std::chrono::steady_clock::now() - t0;
  migrating = false;
  worker.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "migration_failed");
  EXPECT_NE(r.error().message.find("9000_alter.sql: waited more than 300 ms for a lock, 3 times"),
            std::string::npos)
      << r.error().message;
  EXPECT_LT(took, std::chrono::seconds(5)) << "the migration waited for the transaction";
  EXPECT_LT(slowest_ms.load(), 2000) << "a worker's statement waited behind the migration";
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM schema_migrations WHERE version = '9000'"), "0");

  long_txn.commit();
  auto done =
      migrate(db_->url(), dir,
              MigrateOptions{.lock_timeout_ms = 300, .lock_attempts = 3, .retry_delay_ms = 100});
  ASSERT_TRUE(done) << done.error().message;
  EXPECT_EQ(*done, (std::vector<std::string>{"9000"}));
}

// A database keeps what an applied file said when it ran; a new database gets what it says now.
// A file changed since is refused, named, before anything runs; restored, it migrates again.
TEST_F(MigratorTest, AnAppliedFileThatChangedIsRefusedAndNamed) {
  std::string dir = make_dir({});
  ASSERT_TRUE(migrate(db_->url(), dir));
  const fs::path edited = fs::path(dir) / "0010_route_lifecycle.sql";
  std::string original;
  {
    std::ifstream in(edited);
    original.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::ofstream(edited, std::ios::app) << "\nCREATE TABLE afterthought (id int);\n";
  std::ofstream(fs::path(dir) / "9000_next.sql") << "CREATE TABLE next_one (id int);\n";

  auto r = migrate(db_->url(), dir);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "migrations_dir");
  EXPECT_FALSE(r.error().retryable);
  EXPECT_EQ(r.error().message.rfind("0010_route_lifecycle.sql: changed since it was applied", 0),
            0u)
      << r.error().message;
  EXPECT_EQ(db_->scalar("SELECT to_regclass('next_one')::text"), "") << "9000 ran";

  std::ofstream(edited, std::ios::trunc) << original;
  auto restored = migrate(db_->url(), dir);
  ASSERT_TRUE(restored) << restored.error().message;
  EXPECT_EQ(*restored, (std::vector<std::string>{"9000"}));
}

// A checkout with CRLF line ends (git's core.autocrlf) has the same migrations as one with LF:
// the checksum reads CRLF as LF, so neither refuses what the other applied.
TEST_F(MigratorTest, AFileCheckedOutWithCrlfLineEndsIsTheFileThatWasApplied) {
  std::string dir = make_dir({});
  ASSERT_TRUE(migrate(db_->url(), dir));
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::string text;
    {
      std::ifstream in(entry.path(), std::ios::binary);
      text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    std::string crlf;
    for (char c : text) {
      if (c == '\n') crlf += '\r';
      crlf += c;
    }
    std::ofstream(entry.path(), std::ios::binary | std::ios::trunc) << crlf;
  }
  auto again = migrate(db_->url(), dir);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(again->empty());
}

// A file numbered below the newest applied version (0008 is a gap in migrations/) would run
// after that version on this database but before it on a new one: refused, naming both.
TEST_F(MigratorTest, ANewFileNumberedBelowTheNewestAppliedIsRefusedNamingBoth) {
  ASSERT_TRUE(migrate(db_->url(), kMigrations));
  std::string dir = make_dir({{"0008_x.sql", "CREATE TABLE late_comer (id int);\n"}});
  auto r = migrate(db_->url(), dir);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "migrations_dir");
  const std::string newest = shipped_versions().back();
  EXPECT_EQ(r.error().message.rfind("0008_x.sql: version 0008 is below " + newest + "_", 0), 0u)
      << r.error().message;
  EXPECT_EQ(db_->scalar("SELECT to_regclass('late_comer')::text"), "");
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM schema_migrations WHERE version = '0008'"), "0");
}

// Each applied file's checksum is kept; a database migrated before they were (schema_migrations
// without the column) takes the files' checksums at its next run, which succeeds, and from then
// on a changed file is refused there too.
TEST_F(MigratorTest, ADatabaseMigratedBeforeChecksumsTakesThemAndMigrates) {
  std::string dir = make_dir({});
  auto first = migrate(db_->url(), dir);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM schema_migrations WHERE sha256 ~ '^[0-9a-f]{64}$'"),
            std::to_string(shipped_versions().size()));
  // As an earlier release left it, with a new file to apply.
  db_->scalar("ALTER TABLE schema_migrations DROP COLUMN sha256; SELECT 1");
  std::ofstream(fs::path(dir) / "9000_next.sql") << "CREATE TABLE next_one (id int);\n";

  auto again = migrate(db_->url(), dir);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, (std::vector<std::string>{"9000"}));
  EXPECT_EQ(db_->scalar("SELECT count(*) FROM schema_migrations WHERE sha256 ~ '^[0-9a-f]{64}$'"),
            std::to_string(shipped_versions().size() + 1));

  std::ofstream(fs::path(dir) / "0001_init.sql", std::ios::app) << "\n-- edited\n";
  auto r = migrate(db_->url(), dir);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message.rfind("0001_init.sql: changed since it was applied", 0), 0u)
      << r.error().message;
}

TEST_F(MigratorTest, MissingDirectoryIsAnError) {
  auto r = migrate(db_->url(), "/nonexistent/hookrelay/migrations");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "migrations_dir");
}

TEST_F(MigratorTest, UnreachableDatabaseIsRetryable) {
  auto r = migrate("postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=5", kMigrations);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "db_unavailable");
  EXPECT_TRUE(r.error().retryable);
}

}  // namespace
}  // namespace hookrelay
