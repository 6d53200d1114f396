#include "shared/json_writer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace hookrelay {
namespace {

TEST(JsonArrayWriter, WritesObjectsThatAJsonParserReadsBack) {
  JsonArrayWriter w;
  w.begin_object();
  w.field("key", std::string_view("wh:src:\"quoted\"\\back\nline\ttab\x01"));
  w.field("n", int64_t{-42});
  w.end_object();
  w.begin_object();
  w.field("utf8", std::string_view("caf\xc3\xa9 \xe2\x82\xac"));
  w.end_object();
  auto text = std::move(w).take();
  auto j = nlohmann::json::parse(text);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["key"], "wh:src:\"quoted\"\\back\nline\ttab\x01");
  EXPECT_EQ(j[0]["n"], -42);
  EXPECT_EQ(j[1]["utf8"], "caf\xc3\xa9 \xe2\x82\xac");
}

TEST(JsonArrayWriter, ReplacesInvalidUtf8) {
  JsonArrayWriter w;
  w.begin_object();
  w.field("s", std::string_view("a\xff\xc0\x80z"));
  w.end_object();
  auto j = nlohmann::json::parse(std::move(w).take());
  EXPECT_EQ(j[0]["s"], "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz");
}

TEST(JsonArrayWriter, EmptyArray) { EXPECT_EQ(JsonArrayWriter().take(), "[]"); }

}  // namespace
}  // namespace hookrelay
