#include "shared/store/pg_array.h"

#include <gtest/gtest.h>

#include "shared/json_writer.h"
#include "shared/utf8.h"

namespace hookrelay {
namespace {

TEST(PgArrayLiteral, QuotesEveryTextElementAndEscapesQuoteAndBackslash) {
  PgArrayLiteral a;
  a.add(std::string_view("plain"));
  a.add(std::string_view(""));
  a.add(std::string_view("NULL"));
  a.add(std::string_view("a,b {c} \"q\" back\\slash\nline"));
  EXPECT_EQ(std::move(a).take(), R"({"plain","","NULL","a,b {c} \"q\" back\\slash)"
                                 "\nline\"}");
}

TEST(PgArrayLiteral, Integers) {
  PgArrayLiteral a;
  a.add(int64_t{1});
  a.add(int64_t{-42});
  a.add(int64_t{9007199254740993});
  EXPECT_EQ(std::move(a).take(), "{1,-42,9007199254740993}");
  EXPECT_EQ(PgArrayLiteral().take(), "{}");
}

TEST(PgArrayLiteral, ReplacesWhatPostgresTextCannotHold) {
  PgArrayLiteral a;
  a.add(std::string_view("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
  a.add(std::string_view("a\0b", 3));
  a.add(std::string_view("\xff\xc0\x80"));
  EXPECT_EQ(std::move(a).take(),
            "{\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\",\"a\xef\xbf\xbd"
            "b\","
            "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"}");
}

TEST(Utf8, RejectsOverlongSurrogateAndOutOfRangeSequences) {
  EXPECT_EQ(utf8_sequence_length("a", 0), 1u);
  EXPECT_EQ(utf8_sequence_length("\xc3\xa9", 0), 2u);
  EXPECT_EQ(utf8_sequence_length("\xe2\x82\xac", 0), 3u);
  EXPECT_EQ(utf8_sequence_length("\xf4\x8f\xbf\xbf", 0), 4u);  // U+10FFFF
  EXPECT_EQ(utf8_sequence_length("\xc1\xbf", 0), 0u);          // overlong 2-byte
  EXPECT_EQ(utf8_sequence_length("\xe0\x9f\xbf", 0), 0u);      // overlong 3-byte
  EXPECT_EQ(utf8_sequence_length("\xed\xa0\x80", 0), 0u);      // surrogate U+D800
  EXPECT_EQ(utf8_sequence_length("\xf0\x8f\xbf\xbf", 0), 0u);  // overlong 4-byte
  EXPECT_EQ(utf8_sequence_length("\xf4\x90\x80\x80", 0), 0u);  // above U+10FFFF
  EXPECT_EQ(utf8_sequence_length("\xe2\x82", 0), 0u);          // truncated
  EXPECT_EQ(utf8_sequence_length("\x80", 0), 0u);              // lone continuation
}

TEST(Utf8, PostgresTextIsValidUtf8WithoutNul) {
  EXPECT_TRUE(is_postgres_text(""));
  EXPECT_TRUE(is_postgres_text("wh:acme:caf\xc3\xa9:a \xf0\x9f\x98\x80"));
  EXPECT_FALSE(is_postgres_text(std::string_view("a\0b", 3)));
  EXPECT_FALSE(is_postgres_text("\xff"));
  EXPECT_FALSE(is_postgres_text("a\xc0\xaf"));      // overlong '/'
  EXPECT_FALSE(is_postgres_text("x\xed\xa0\x80"));  // surrogate
  EXPECT_FALSE(is_postgres_text("ok\xe2\x82"));     // truncated at the end
}

TEST(AppendJsonString, EscapesControlsAndReplacesInvalidUtf8) {
  std::string out;
  append_json_string(out, std::string_view("q\"b\\\n\x01 caf\xc3\xa9 \xed\xa0\x80"));
  EXPECT_EQ(out, "\"q\\\"b\\\\\\u000a\\u0001 caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
}

}  // namespace
}  // namespace hookrelay
