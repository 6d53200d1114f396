// TestDatabase: a fresh, uniquely named PostgreSQL database for one test, dropped afterwards.
//
// The server comes from HOOKRELAY_TEST_DATABASE_URL (scripts/dev test sets it; by hand:
// `scripts/dev pg` then
// HOOKRELAY_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:55432/postgres). When it is unset,
// create() fails with a message saying so: integration tests must fail, not skip, so a
// misconfigured CI cannot pass by testing nothing. Only loopback hosts are accepted.
//
// Typical use:
//   auto db = TestDatabase::create();
//   ASSERT_TRUE(db) << db.error().message;
//   run_with((*db)->url());
//
// Thread-safety: url()/name() from any thread; create and destroy on one thread.
#pragma once

#include <memory>
#include <string>

#include "shared/result.h"

namespace hookrelay::test {

class TestDatabase {
 public:
  static constexpr const char* kUrlEnv = "HOOKRELAY_TEST_DATABASE_URL";

  // CREATE DATABASE hr_test_<random>.
  static Result<std::unique_ptr<TestDatabase>> create();
  // DROP DATABASE ... WITH (FORCE): open connections of the code under test do not block it.
  ~TestDatabase();

  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  // The server URL with the database replaced by this one (query parameters kept).
  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }

 private:
  TestDatabase(std::string admin_url, std::string url, std::string name);

  std::string admin_url_;
  std::string url_;
  std::string name_;
};

// "postgresql://u@h:1/db?x=y" with the database replaced by `database`. Exposed for tests.
std::string with_database(const std::string& url, const std::string& database);

}  // namespace hookrelay::test
