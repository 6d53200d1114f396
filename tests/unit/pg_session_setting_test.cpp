#include <gtest/gtest.h>

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

}  // namespace
}  // namespace hookrelay
