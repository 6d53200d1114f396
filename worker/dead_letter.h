// Dead letters: the message hookrelay.dlq gets for a delivery that will not be attempted again.
// It carries the delivery's payload and redelivery headers (outbound_request.h) plus
// hr-dlq-reason, and is keyed by the delivery key (`hookrelay dlq show` and `replay` take the
// latest per key). The DLQ is the last place a delivery can go: a dead letter the broker
// refuses for good (too large, not authorized) cannot be kept anywhere, so the worker stops
// rather than drop it (see Redelivery).
//
// Thread-safety: pure functions.
#pragma once

#include <string_view>
#include <vector>

#include "shared/kafka/message_producer.h"
#include "worker/job.h"

namespace hookrelay {

// The topic a decided job is published to: its retry tier, the DLQ, or hookrelay.parked.
std::string redelivery_topic(const Decision& decision);

// Headers of the redelivery message of `job`: the dead letter's carry hr-dlq-reason.
std::vector<MessageHeader> redelivery_message_headers(const Job& job);

bool is_dead_letter(const Decision& decision);

}  // namespace hookrelay
