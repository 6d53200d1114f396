#include "tests/support/postgres.h"

#include <cstdio>
#include <cstdlib>
#include <pqxx/pqxx>
#include <random>

namespace hookrelay::test {
namespace {

// Tests never connect off the machine.
bool host_is_loopback(const std::string& url) {
  const auto scheme = url.find("://");
  if (scheme == std::string::npos) return false;
  std::string authority =
      url.substr(scheme + 3, url.find_first_of("/?", scheme + 3) - (scheme + 3));
  if (const auto at = authority.rfind('@'); at != std::string::npos) authority.erase(0, at + 1);
  std::string host = authority;
  if (host.starts_with('[')) {
    host = host.substr(1, host.find(']') - 1);
  } else if (const auto colon = host.find(':'); colon != std::string::npos) {
    host.resize(colon);
  }
  return host == "127.0.0.1" || host == "localhost" || host == "::1";
}

std::string random_name() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device rd;
  std::string name = "hr_test_";
  for (int i = 0; i < 16; ++i) name += kHex[rd() % 16];
  return name;
}

}  // namespace

std::string with_database(const std::string& url, const std::string& database) {
  const auto scheme = url.find("://");
  const auto start = scheme == std::string::npos ? 0 : scheme + 3;
  const auto query = url.find('?', start);
  const auto path = url.find('/', start);
  const std::string suffix = query == std::string::npos ? "" : url.substr(query);
  std::string base = url.substr(0, std::min(path, query));
  return base + "/" + database + suffix;
}

Result<std::unique_ptr<TestDatabase>> TestDatabase::create() {
  const char* env = std::getenv(kUrlEnv);
  if (env == nullptr || *env == '\0') {
    return fail(
        "no_test_database",
        std::string(kUrlEnv) + " is not set. Start PostgreSQL with `scripts/dev pg` and run with " +
            kUrlEnv +
            "=postgresql://postgres@127.0.0.1:55432/postgres (scripts/dev test does both).");
  }
  const std::string admin_url = env;
  if (!host_is_loopback(admin_url)) {
    return fail("no_test_database",
                std::string(kUrlEnv) + " must point at 127.0.0.1, localhost or [::1]");
  }
  const std::string name = random_name();
  try {
    pqxx::connection admin(admin_url);
    pqxx::nontransaction tx(admin);
    tx.exec0("CREATE DATABASE " + tx.quote_name(name));
  } catch (const std::exception& e) {
    return fail("test_database", "CREATE DATABASE " + name + " via " + kUrlEnv + ": " + e.what());
  }
  return std::unique_ptr<TestDatabase>(
      new TestDatabase(admin_url, with_database(admin_url, name), name));
}

TestDatabase::TestDatabase(std::string admin_url, std::string url, std::string name)
    : admin_url_(std::move(admin_url)), url_(std::move(url)), name_(std::move(name)) {}

TestDatabase::~TestDatabase() {
  try {
    pqxx::connection admin(admin_url_);
    pqxx::nontransaction tx(admin);
    tx.exec0("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
  } catch (const std::exception& e) {
    // A leaked test database is litter, not a test failure.
    std::fprintf(stderr, "[ TestDatabase ] could not drop %s: %s\n", name_.c_str(), e.what());
  }
}

}  // namespace hookrelay::test
