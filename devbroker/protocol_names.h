// Kafka protocol names for the control channel: request types (ApiKey) and error codes, so an
// operator can type "errors Produce 3 NOT_LEADER_FOR_PARTITION" instead of numbers.
//
// Thread-safety: pure functions over constant tables.
#pragma once

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "shared/result.h"

namespace hookrelay::devbroker {

// "Produce", "produce", "ProduceRequest" or "0" -> 0. Unknown names and numbers outside the
// table are errors, which catches typos before they silently never match a request.
Result<std::int16_t> parse_api_key(std::string_view text);

// "Produce" for 0; the number in decimal for keys without a name.
std::string api_key_name(std::int16_t api_key);

// "NOT_LEADER_FOR_PARTITION", "RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION",
// "not_leader_for_partition", "_TRANSPORT" or "6" -> RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION.
// Only codes librdkafka knows are accepted; NO_ERROR is refused (it would inject nothing).
Result<rd_kafka_resp_err_t> parse_error_code(std::string_view text);

}  // namespace hookrelay::devbroker
