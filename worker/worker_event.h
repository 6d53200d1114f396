// WorkerEvent: a result handed from another thread (curl's, librdkafka's, a store lane's) to the
// coordinator, which owns everything the result touches. Posted through the function the
// coordinator gives each component (Worker::post), drained on the coordinator's thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "shared/kafka/message_producer.h"
#include "shared/result.h"
#include "worker/delivery_store.h"
#include "worker/http_sender.h"
#include "worker/job.h"

namespace hookrelay {

struct WorkerEvent {
  enum class Kind { kHttp, kProduced, kClaimed, kRecorded, kInbound };
  Kind kind = Kind::kProduced;
  Job* job = nullptr;  // kHttp, kProduced: the job the sender or producer was handed
  HttpResult http;
  Result<ProducedAt> produced = ProducedAt{};
  Result<std::vector<ClaimStatus>> claimed = std::vector<ClaimStatus>{};
  Result<void> stored;  // kRecorded, kInbound
  // kRecorded: the parks recorded 'retrying' because their route was resumed since
  // (DeliveryStore::record).
  std::vector<std::string> unparked;
  double seconds = 0;  // the round trip's duration
};

using PostEvent = std::function<void(WorkerEvent)>;

}  // namespace hookrelay
