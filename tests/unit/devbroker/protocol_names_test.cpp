#include "devbroker/protocol_names.h"

#include <gtest/gtest.h>

namespace hookrelay::devbroker {
namespace {

TEST(ParseApiKey, AcceptsNamesInAnyCaseWithOptionalSuffixAndNumbers) {
  for (const char* text : {"Produce", "produce", "ProduceRequest", "0"}) {
    auto key = parse_api_key(text);
    ASSERT_TRUE(key) << text;
    EXPECT_EQ(*key, 0) << text;
  }
  EXPECT_EQ(*parse_api_key("Fetch"), 1);
  EXPECT_EQ(*parse_api_key("InitProducerId"), 22);
  EXPECT_EQ(*parse_api_key("OffsetCommit"), 8);
  EXPECT_EQ(api_key_name(11), "JoinGroup");
}

TEST(ParseApiKey, RejectsUnknownNamesAndNumbers) {
  EXPECT_FALSE(parse_api_key("Produc"));
  EXPECT_FALSE(parse_api_key("999"));
  EXPECT_FALSE(parse_api_key("-1"));
  EXPECT_FALSE(parse_api_key(""));
}

TEST(ParseErrorCode, AcceptsShortAndFullNamesAndNumbers) {
  for (const char* text : {"NOT_LEADER_FOR_PARTITION", "RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION",
                           "not_leader_for_partition", "6"}) {
    auto code = parse_error_code(text);
    ASSERT_TRUE(code) << text;
    EXPECT_EQ(*code, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION) << text;
  }
  EXPECT_EQ(*parse_error_code("_TRANSPORT"), RD_KAFKA_RESP_ERR__TRANSPORT);
  EXPECT_EQ(*parse_error_code("RD_KAFKA_RESP_ERR__TRANSPORT"), RD_KAFKA_RESP_ERR__TRANSPORT);
}

TEST(ParseErrorCode, RejectsUnknownCodesAndNoError) {
  EXPECT_FALSE(parse_error_code("NOT_A_CODE"));
  EXPECT_FALSE(parse_error_code("NO_ERROR"));
  EXPECT_FALSE(parse_error_code("0"));
  EXPECT_FALSE(parse_error_code("100000"));
}

}  // namespace
}  // namespace hookrelay::devbroker
