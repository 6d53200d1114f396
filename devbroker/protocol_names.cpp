#include "devbroker/protocol_names.h"

#include <array>
#include <charconv>
#include <string>

namespace hookrelay::devbroker {
namespace {

// Index = ApiKey, as assigned by the Kafka protocol.
constexpr std::array<std::string_view, 48> kApiKeyNames = {"Produce",
                                                           "Fetch",
                                                           "ListOffsets",
                                                           "Metadata",
                                                           "LeaderAndIsr",
                                                           "StopReplica",
                                                           "UpdateMetadata",
                                                           "ControlledShutdown",
                                                           "OffsetCommit",
                                                           "OffsetFetch",
                                                           "FindCoordinator",
                                                           "JoinGroup",
                                                           "Heartbeat",
                                                           "LeaveGroup",
                                                           "SyncGroup",
                                                           "DescribeGroups",
                                                           "ListGroups",
                                                           "SaslHandshake",
                                                           "ApiVersions",
                                                           "CreateTopics",
                                                           "DeleteTopics",
                                                           "DeleteRecords",
                                                           "InitProducerId",
                                                           "OffsetForLeaderEpoch",
                                                           "AddPartitionsToTxn",
                                                           "AddOffsetsToTxn",
                                                           "EndTxn",
                                                           "WriteTxnMarkers",
                                                           "TxnOffsetCommit",
                                                           "DescribeAcls",
                                                           "CreateAcls",
                                                           "DeleteAcls",
                                                           "DescribeConfigs",
                                                           "AlterConfigs",
                                                           "AlterReplicaLogDirs",
                                                           "DescribeLogDirs",
                                                           "SaslAuthenticate",
                                                           "CreatePartitions",
                                                           "CreateDelegationToken",
                                                           "RenewDelegationToken",
                                                           "ExpireDelegationToken",
                                                           "DescribeDelegationToken",
                                                           "DeleteGroups",
                                                           "ElectLeaders",
                                                           "IncrementalAlterConfigs",
                                                           "AlterPartitionReassignments",
                                                           "ListPartitionReassignments",
                                                           "OffsetDelete"};

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

bool parse_number(std::string_view text, int& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end && !text.empty();
}

}  // namespace

Result<std::int16_t> parse_api_key(std::string_view text) {
  int number = 0;
  if (parse_number(text, number)) {
    if (number >= 0 && static_cast<std::size_t>(number) < kApiKeyNames.size()) {
      return static_cast<std::int16_t>(number);
    }
    return fail("bad_api_key", "unknown ApiKey " + std::string(text));
  }
  std::string wanted = upper(text);
  if (wanted.size() > 7 && wanted.ends_with("REQUEST")) wanted.resize(wanted.size() - 7);
  for (std::size_t i = 0; i < kApiKeyNames.size(); ++i) {
    if (upper(kApiKeyNames[i]) == wanted) return static_cast<std::int16_t>(i);
  }
  return fail("bad_api_key", "unknown ApiKey '" + std::string(text) + "'");
}

std::string api_key_name(std::int16_t api_key) {
  if (api_key >= 0 && static_cast<std::size_t>(api_key) < kApiKeyNames.size()) {
    return std::string(kApiKeyNames[static_cast<std::size_t>(api_key)]);
  }
  return std::to_string(api_key);
}

Result<rd_kafka_resp_err_t> parse_error_code(std::string_view text) {
  const rd_kafka_err_desc* descs = nullptr;
  std::size_t count = 0;
  rd_kafka_get_err_descs(&descs, &count);

  int number = 0;
  const bool numeric = parse_number(text, number);
  std::string wanted = upper(text);
  constexpr std::string_view kPrefix = "RD_KAFKA_RESP_ERR_";
  if (wanted.starts_with(kPrefix)) wanted.erase(0, kPrefix.size());

  for (std::size_t i = 0; i < count; ++i) {
    if (descs[i].name == nullptr) continue;  // gaps in the table
    const bool match =
        numeric ? static_cast<int>(descs[i].code) == number : upper(descs[i].name) == wanted;
    if (!match) continue;
    if (descs[i].code == RD_KAFKA_RESP_ERR_NO_ERROR) {
      return fail("bad_error_code", "NO_ERROR injects nothing");
    }
    return descs[i].code;
  }
  return fail("bad_error_code", "unknown error code '" + std::string(text) + "'");
}

}  // namespace hookrelay::devbroker
