#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <sstream>

#include "shared/store/pg_connection.h"

namespace hookrelay {
namespace {

// The words of a key=value URL, in any order (libpq's parser lists them in its own).
std::set<std::string> words(const std::string& conninfo) {
  std::set<std::string> out;
  std::string word;
  bool quoted = false;
  for (std::size_t i = 0; i < conninfo.size(); ++i) {
    const char c = conninfo[i];
    if (c == '\\' && i + 1 < conninfo.size()) {
      word += c;
      word += conninfo[++i];
    } else if (c == '\'') {
      quoted = !quoted;
      word += c;
    } else if (c == ' ' && !quoted) {
      if (!word.empty()) out.insert(word);
      word.clear();
    } else {
      word += c;
    }
  }
  if (!word.empty()) out.insert(word);
  return out;
}

// A URI and key=value words both become key=value words with the setting in `options`.
TEST(WithSessionSetting, AddsTheSettingToEitherFormOfUrl) {
  EXPECT_EQ(
      words(with_session_setting("postgresql://app@127.0.0.1:55432/hookrelay?sslmode=disable",
                                 "statement_timeout", "30000")),
      (std::set<std::string>{"user='app'", "host='127.0.0.1'", "port='55432'", "dbname='hookrelay'",
                             "sslmode='disable'", "options='-c statement_timeout=30000'"}));
  EXPECT_EQ(
      words(with_session_setting("host=/run/pg dbname=x", "statement_timeout", "5")),
      (std::set<std::string>{"host='/run/pg'", "dbname='x'", "options='-c statement_timeout=5'"}));
}

// Options already given are kept; values with quotes and backslashes stay intact.
TEST(WithSessionSetting, KeepsOptionsGivenAndQuotesValues) {
  EXPECT_EQ(
      words(with_session_setting("dbname=x options='-c search_path=app' password='it\\'s\\\\'",
                                 "statement_timeout", "100")),
      (std::set<std::string>{"password='it\\'s\\\\'", "dbname='x'",
                             "options='-c search_path=app -c statement_timeout=100'"}));
}

TEST(WithSessionSetting, AnUnparsableUrlIsLeftForTheConnectionToReport) {
  EXPECT_EQ(with_session_setting("dbname='unterminated", "statement_timeout", "1"),
            "dbname='unterminated");
}

// Defaults fill only what the URL leaves unset; what it says wins.
TEST(WithConnectionDefaults, AddsOnlyWhatTheUrlLeavesUnset) {
  EXPECT_EQ(words(with_connection_defaults("postgresql://app@db:5432/h?connect_timeout=3",
                                           {{"connect_timeout", "10"}, {"keepalives", "1"}})),
            (std::set<std::string>{"user='app'", "host='db'", "port='5432'", "dbname='h'",
                                   "connect_timeout='3'", "keepalives='1'"}));
}

// A service's URL: every limit, and the statement timeout in its options; 0 leaves it out.
TEST(WithServiceLimits, BoundsConnectsSilentServersAndStatements) {
  const auto w = words(with_service_limits("dbname=x", 2500));
  for (const char* word :
       {"connect_timeout='10'", "keepalives='1'", "keepalives_idle='30'",
        "keepalives_interval='10'", "keepalives_count='3'", "tcp_user_timeout='30000'",
        "options='-c statement_timeout=2500'", "dbname='x'"}) {
    EXPECT_TRUE(w.count(word)) << word;
  }
  for (const auto& word : words(with_service_limits("dbname=x", 0)))
    EXPECT_EQ(word.find("statement_timeout"), std::string::npos) << word;
  EXPECT_EQ(with_service_limits("not a url = '", 100), "not a url = '")
      << "a URL libpq cannot parse is left for the connection to report";
}

// Written in the URL, options would replace PGOPTIONS, and connect_timeout PGCONNECT_TIMEOUT:
// what the environment says is kept.
TEST(WithServiceLimits, KeepsWhatTheEnvironmentSays) {
  ::setenv("PGOPTIONS", "-c search_path=app", 1);
  ::setenv("PGCONNECT_TIMEOUT", "3", 1);
  const auto w = words(with_service_limits("dbname=x", 2500));
  ::unsetenv("PGOPTIONS");
  ::unsetenv("PGCONNECT_TIMEOUT");
  EXPECT_TRUE(w.count("options='-c search_path=app -c statement_timeout=2500'"));
  for (const auto& word : w) EXPECT_EQ(word.find("connect_timeout"), std::string::npos) << word;
}

}  // namespace
}  // namespace hookrelay
