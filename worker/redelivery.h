// Redelivery: publishes decided jobs to their retry tier or to the DLQ (dead_letter.h) and
// waits for the broker's ack before the job may finish. A job handed to the producer is owned
// here until its report comes back as a WorkerEvent.
//
// A refused produce is decided by what it is:
//   retryable (broker down, queue full, timeout)  -> published again after a short delay;
//   permanent, retry message (too large, denied)  -> dead-lettered at once with reason
//                                                    produce_rejected and the broker's error;
//   permanent, dead letter                        -> the worker stops: fatal() names the key and
//                                                    the error, and the process exits non-zero;
//   producer_fatal (the producer is broken)       -> the same, whatever the message: nothing is
//                                                    recorded, the offset stays uncommitted.
//
// Thread-safety: coordinator thread only. The producer's callback only posts an event.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "shared/kafka/message_producer.h"
#include "worker/backoff.h"
#include "worker/job.h"
#include "worker/worker_event.h"
#include "worker/worker_metrics.h"

namespace hookrelay {

class Redelivery {
 public:
  Redelivery(MessageProducer& producer, WorkerMetrics& metrics, RetryPolicy policy,
             std::function<double()> rand01, PostEvent post);

  // The retry policy of a reloaded config, for decisions made from now on.
  void set_policy(RetryPolicy policy) { policy_ = std::move(policy); }
  // Publishes the job's redelivery message (its decision says where).
  void publish(std::unique_ptr<Job> job);
  // A kProduced event: the job once it is published (counted), nullptr while it still waits.
  std::unique_ptr<Job> on_produced(const WorkerEvent& e, int64_t now);
  // Jobs whose retry or parked message Kafka refused for good, now dead: the caller records them
  // dead, then publishes their dead letters.
  std::vector<std::unique_ptr<Job>> take_to_record();
  // Publishes again the jobs whose transient refusal has waited long enough.
  void flush_due(int64_t now);

  // Set once a dead letter was refused for good: the worker must stop.
  const std::optional<std::string>& fatal() const { return fatal_; }
  bool idle() const { return out_.empty() && waiting_.empty(); }
  std::size_t pending() const { return out_.size() + waiting_.size(); }
  std::vector<LeaseRef> leases_pending() const;

 private:
  MessageProducer& producer_;
  WorkerMetrics& metrics_;
  RetryPolicy policy_;
  std::function<double()> rand01_;
  PostEvent post_;
  std::unordered_map<Job*, std::unique_ptr<Job>> out_;  // with the producer
  std::deque<std::unique_ptr<Job>> waiting_;            // refused for now; produce_at_ms order
  std::vector<std::unique_ptr<Job>> refused_;           // dead letters refused for good
  std::vector<std::unique_ptr<Job>> to_record_;         // take_to_record()
  std::optional<std::string> fatal_;
};

}  // namespace hookrelay
