#include "cli/output.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "shared/json_writer.h"
#include "shared/replay/dlq_reader.h"

namespace hookrelay::cli {
namespace {

TEST(FormatTime, Rfc3339UtcWithMillisOrDashForUnset) {
  EXPECT_EQ(format_time(1714564800123), "2024-05-01T12:00:00.123Z");
  EXPECT_EQ(format_time(0), "-");
}

TEST(OneLine, ReplacesControlCharactersAndCutsLongText) {
  EXPECT_EQ(one_line("a\nb\tc", 10), "a b c");
  EXPECT_EQ(one_line("abcdefghijkl", 8), "abcde...");
}

// C1 controls in UTF-8 (U+009B is CSI, U+009D is OSC) start escape sequences on a terminal just
// as ESC [ and ESC ] do.
TEST(OneLine, ReplacesC1ControlsAndBytesThatAreNotUtf8) {
  EXPECT_EQ(one_line("a\xc2\x9b"
                     "31mred\xc2\x9d"
                     "0;title\x07z",
                     40),
            "a 31mred 0;title z");
  EXPECT_EQ(one_line("\xc2\x80\xc2\x9f\x7f", 10), "   ");
  // A lone C1 byte (CSI to a terminal in an 8-bit mode), a stray continuation, a truncated
  // sequence, an overlong ESC: none is UTF-8.
  EXPECT_EQ(one_line("a\x9b"
                     "b\x80"
                     "c\xe2\x82",
                     10),
            "a?b?c??");
  EXPECT_EQ(one_line("\xc0\x9b", 10), "??");
  // Other characters pass as they are: U+00A0 (C2 A0) right after the C1 range, é, €, 😀.
  EXPECT_EQ(one_line("\xc2\xa0"
                     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                     40),
            "\xc2\xa0"
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
}

TEST(OneLine, CutsLongTextBetweenCharactersNeverInsideOne) {
  // "ab€€€€": the cut at 5 bytes ("ab" + 3 of "€€") would split the second €: one € is kept.
  EXPECT_EQ(one_line("ab\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 8), "ab\xe2\x82\xac...");
  const std::string emoji = "\xf0\x9f\x98\x80";
  for (std::size_t max = 3; max < 20; ++max) {
    const std::string cut = one_line(emoji + emoji + emoji + emoji + emoji, max);
    ASSERT_LE(cut.size(), std::max<std::size_t>(max, 3)) << max;
    // What is left before "..." is whole characters only.
    const std::string kept = cut.substr(0, cut.size() - 3);
    EXPECT_EQ(kept.size() % 4, 0u) << max;
    EXPECT_EQ(one_line(kept, 100), kept) << max;
  }
}

TEST(Table, AlignsColumnsWithoutTrailingSpaces) {
  Table t({"KEY", "STATE"});
  t.add_row({"wh:github:e1:ci", "dead"});
  t.add_row({"k", "succeeded"});
  std::ostringstream out;
  t.print(out);
  EXPECT_EQ(out.str(),
            "KEY              STATE\n"
            "wh:github:e1:ci  dead\n"
            "k                succeeded\n");
}

DeliveryRow dead_row() {
  DeliveryRow d;
  d.key = "wh:github:e1:ci";
  d.kind = "webhook";
  d.source = "github";
  d.event_id = "e1";
  d.destination = "ci";
  d.url = "http://127.0.0.1:9/ci";
  d.state = "dead";
  d.attempts = 2;
  d.last_attempt_ms = 1714564800000;
  d.last_status = 400;
  d.last_error = "HTTP 400: bad\nrequest";
  d.origin_topic = "hookrelay.webhooks";
  return d;
}

TEST(DeliveryJson, UsesStableNamesTimesAsStringsAndNullForUnset) {
  auto j = to_json(dead_row());
  EXPECT_EQ(j["key"], "wh:github:e1:ci");
  EXPECT_EQ(j["state"], "dead");
  EXPECT_EQ(j["attempts"], 2);
  EXPECT_EQ(j["last_attempt_at"], "2024-05-01T12:00:00.000Z");
  EXPECT_TRUE(j["completed_at"].is_null());
  EXPECT_TRUE(j["lease_owner"].is_null());
  EXPECT_EQ(j["last_status"], 400);
}

TEST(DeliveryJson, DetailCarriesAttemptsAndReplays) {
  DeliveryDetail d{dead_row(),
                   {AttemptRow{1, 1714564800000, 30, 400, "permanent", "bad", "w1"}},
                   {ReplayRow{7, "alice", 1714564900000, "fixed"}}};
  auto j = to_json(d);
  ASSERT_EQ(j["attempt_history"].size(), 1u);
  EXPECT_EQ(j["attempt_history"][0]["outcome"], "permanent");
  EXPECT_EQ(j["attempt_history"][0]["http_status"], 400);
  ASSERT_EQ(j["replays"].size(), 1u);
  EXPECT_EQ(j["replays"][0]["replayed_by"], "alice");
}

// Who replayed, which worker attempted and who holds the lease come from outside the CLI (an
// admin caller's name, a worker's configured id): printed without control characters.
TEST(DeliveryDetailText, WhoAndWorkerFieldsReachTheTerminalWithoutControlCharacters) {
  DeliveryRow row = dead_row();
  row.lease_owner = "w\x1b]0;owned\x07";
  DeliveryDetail d{row,
                   {AttemptRow{1, 1714564800000, 30, 400, "permanent", "bad", "w\x1b[2J1"}},
                   {ReplayRow{7, "alice\x1b[31m\xc2\x9b", 1714564900000, "fixed"}}};
  std::ostringstream out;
  print_delivery_detail(out, d);
  const std::string text = out.str();
  for (unsigned char c : text) {
    EXPECT_TRUE(c >= 0x20 || c == '\n') << "control byte " << int(c) << " in:\n" << text;
  }
  EXPECT_EQ(text.find("\xc2\x9b"), std::string::npos) << "a C1 control reached the terminal";
  EXPECT_NE(text.find("alice"), std::string::npos) << text;
}

TEST(DeliveryTable, OneLinePerDeliveryWithTheErrorFlattened) {
  std::ostringstream out;
  print_delivery_table(out, {dead_row()});
  std::string text = out.str();
  EXPECT_NE(text.find("KEY"), std::string::npos);
  EXPECT_NE(text.find("wh:github:e1:ci  github  ci           dead   2"), std::string::npos) << text;
  EXPECT_NE(text.find("HTTP 400: bad request"), std::string::npos);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
}

TEST(ProgressPrinter, QuietForTheFirstIntervalThenOncePerIntervalAndAFinalLine) {
  std::ostringstream out;
  int64_t now = 0;
  ProgressPrinter p(
      out, [&] { return now; }, 1000);
  p.update("1");
  now = 500;
  p.update("2");
  EXPECT_EQ(out.str(), "");
  now = 1000;
  p.update("3");
  now = 1500;
  p.update("4");
  now = 2100;
  p.update("5");
  p.finish("6");
  EXPECT_EQ(out.str(), "3\n5\n6\n");

  std::ostringstream quick;
  ProgressPrinter q(
      quick, [&] { return now; }, 1000);
  q.update("1");
  q.finish("done");
  EXPECT_EQ(quick.str(), "");  // finished within the first interval: nothing to show
}

// Header names and values of a DLQ message come from whoever wrote to the topic: printed as
// text they carry no control bytes (an escape sequence or CR/LF) to the terminal, and as JSON
// they are valid UTF-8.
TEST(DlqMessageOutput, ControlBytesNeverReachTheTerminal) {
  DlqMessage m;
  m.partition = 1;
  m.offset = 2;
  m.headers = {{"x-\x1b[31mred\r\n", "v\x1b]0;title\x07\xff"}};
  std::ostringstream text;
  print_dlq_message(text, m);
  for (char c : text.str()) {
    if (c == '\n') continue;
    EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
        << "control byte " << int(c) << " in " << text.str();
  }
  EXPECT_TRUE(nlohmann::json::accept(json_text(to_json(m))));
}

}  // namespace
}  // namespace hookrelay::cli
