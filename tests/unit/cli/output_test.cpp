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
