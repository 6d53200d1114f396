// ScratchDatabase: a throwaway PostgreSQL database for one test, created on the cluster named by
// HOOKRELAY_TEST_DATABASE_URL and dropped (WITH FORCE) when the object goes. Private to the
// store tests until tests/support/postgres.h lands; then switch to its TestDatabase.
//
// Thread-safety: construct and destroy on the test thread.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <pqxx/pqxx>
#include <random>
#include <string>

#include "shared/store/migrator.h"

namespace hookrelay::testing {

// The admin URL from the environment; an empty string (and a test failure) when unset, since a
// silently skipped database test is a test that never runs.
inline std::string test_admin_url() {
  const char* url = std::getenv("HOOKRELAY_TEST_DATABASE_URL");
  if (url == nullptr || *url == '\0') {
    ADD_FAILURE() << "HOOKRELAY_TEST_DATABASE_URL is not set; run `scripts/dev pg` and export "
                     "HOOKRELAY_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:55432/postgres";
    return "";
  }
  return url;
}

// `url` with its database name replaced; handles postgresql://user@host:port/db[?params].
inline std::string with_database(const std::string& url, const std::string& db) {
  auto scheme = url.find("://");
  auto slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (slash == std::string::npos) return url + "/" + db;
  auto query = url.find('?', slash);
  return url.substr(0, slash + 1) + db + (query == std::string::npos ? "" : url.substr(query));
}

class ScratchDatabase {
 public:
  explicit ScratchDatabase(std::string admin_url) : admin_url_(std::move(admin_url)) {
    std::mt19937_64 random(std::random_device{}());
    name_ = "hr_test_";
    for (int i = 0; i < 16; ++i) name_ += "0123456789abcdef"[random() % 16];
    pqxx::connection c(admin_url_);
    pqxx::nontransaction tx(c);
    tx.exec("CREATE DATABASE " + name_);
    url_ = with_database(admin_url_, name_);
  }
  ~ScratchDatabase() {
    try {
      pqxx::connection c(admin_url_);
      pqxx::nontransaction tx(c);
      tx.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (const std::exception& e) {
      ADD_FAILURE() << "could not drop " << name_ << ": " << e.what();
    }
  }
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;

  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }

  // Runs one statement on the scratch database and returns the first column of the first row
  // (empty when there is none or it is NULL): enough for assertions.
  std::string scalar(const std::string& sql) const {
    pqxx::connection c(url_);
    pqxx::nontransaction tx(c);
    auto r = tx.exec(sql);
    if (r.empty() || r[0][0].is_null()) return "";
    return r[0][0].as<std::string>();
  }

 private:
  std::string admin_url_;
  std::string name_;
  std::string url_;
};

// Base fixture: a fresh database with every migration applied, per test.
class MigratedDatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string admin = test_admin_url();
    ASSERT_FALSE(admin.empty());
    db_ = std::make_unique<ScratchDatabase>(admin);
    auto applied = migrate(db_->url(), HOOKRELAY_SOURCE_DIR "/migrations");
    ASSERT_TRUE(applied) << applied.error().message;
  }

  std::unique_ptr<ScratchDatabase> db_;
};

}  // namespace hookrelay::testing
