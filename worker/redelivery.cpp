#include "worker/redelivery.h"

#include <cstdlib>

#include "shared/log.h"
#include "worker/dead_letter.h"

namespace hookrelay {
namespace {

constexpr int64_t kReproduceDelayMs = 1000;

}  // namespace

Redelivery::Redelivery(MessageProducer& producer, WorkerMetrics& metrics, RetryPolicy policy,
                       std::function<double()> rand01, PostEvent post)
    : producer_(producer),
      metrics_(metrics),
      policy_(std::move(policy)),
      rand01_(std::move(rand01)),
      post_(std::move(post)) {}

void Redelivery::publish(std::unique_ptr<Job> job) {
  auto headers = redelivery_message_headers(*job);
  std::string topic = redelivery_topic(job->decision);
  static const std::string kEmpty;
  const std::string& value = job->d.body ? *job->d.body : kEmpty;
  Job* raw = job.get();
  out_.emplace(raw, std::move(job));
  producer_.produce({topic, raw->d.key, value, &headers}, [this, raw](Result<ProducedAt> r) {
    WorkerEvent e;
    e.kind = WorkerEvent::Kind::kProduced;
    e.job = raw;
    e.produced = std::move(r);
    post_(std::move(e));
  });
}

std::unique_ptr<Job> Redelivery::on_produced(const WorkerEvent& e, int64_t now) {
  auto sent = out_.extract(e.job);
  if (sent.empty()) {
    // A second report for one message: the producer broke its once-per-produce contract.
    spdlog::critical("msg=completion_for_unknown_job kind=produce");
    std::abort();
  }
  std::unique_ptr<Job> job = std::move(sent.mapped());
  const Decision& decision = job->decision;
  if (e.produced) {
    switch (decision.next) {
      case NextState::kDead:
        metrics_.dlq(dead_reason_name(decision.reason));
        // A dead letter published again was counted dead when it died.
        metrics_.delivery(decision.reason == DeadReason::kRepublished ? "skipped" : "dead");
        break;
      case NextState::kRetrying:
        // A retry after a failed attempt, or a bounce (lease held elsewhere, circuit open).
        metrics_.retry(decision.tier);
        metrics_.delivery("retried");
        break;
      case NextState::kParked:
        metrics_.delivery("parked");
        break;
      case NextState::kSucceeded:
        break;  // never published
    }
    return job;
  }
  const Error& err = e.produced.error();  // counted by the producer (its on_error)
  std::string topic = redelivery_topic(decision);
  if (err.retryable) {
    spdlog::warn(
        "msg=redelivery_produce_failed topic={} key={} error={} action=\"publishing again in {} "
        "ms\"",
        topic, log_quote(job->d.key), log_quote(err.message), kReproduceDelayMs);
    job->produce_at_ms = now + kReproduceDelayMs;
    waiting_.push_back(std::move(job));
    return nullptr;
  }
  // The producer itself is broken for good (a fatal error of the idempotent producer): no
  // message will go, and the delivery is not at fault. It is kept as it is, not recorded dead,
  // and the worker stops; its offset is not committed, so it is read again after a restart.
  const bool producer_broken = err.code == "producer_fatal";
  if (is_dead_letter(decision) || producer_broken) {
    // Nowhere left to keep it: stop rather than drop it or try forever. Its offset is not
    // committed, so the message is replayed when the cause is fixed.
    fatal_ = producer_broken ? "the Kafka producer failed for good publishing " + job->d.key +
                                   " (" + err.code + "): " + err.message
                             : "the DLQ refused the dead letter of " + job->d.key + " for good (" +
                                   err.code + "): " + err.message;
    spdlog::critical(
        "msg=dead_letter_refused key={} code={} error={} action=\"stopping the worker\"",
        log_quote(job->d.key), err.code, log_quote(err.message));
    refused_.push_back(std::move(job));  // kept, so shutdown gives its lease back
    return nullptr;
  }
  spdlog::error("msg=retry_message_refused topic={} key={} code={} error={} action=dead_letter",
                topic, log_quote(job->d.key), err.code, log_quote(err.message));
  // Dead from here: recorded so in Postgres before its dead letter is published, as every dead
  // delivery is (the DLQ listings and `dlq replay` read Postgres). Its audit row repeats the
  // turn's attempt (or park) with this reason.
  const auto attempt = job->decision.attempt;
  job->decision = decide(job->d, AttemptResult::none(AttemptResult::Kind::kProduceRejected),
                         policy_, now, rand01_);
  job->decision.attempt = attempt;
  job->history.last_error = "retry message refused by Kafka (" + err.code + "): " + err.message;
  job->history.due_at_ms.reset();
  to_record_.push_back(std::move(job));
  return nullptr;
}

std::vector<std::unique_ptr<Job>> Redelivery::take_to_record() {
  std::vector<std::unique_ptr<Job>> out;
  out.swap(to_record_);
  return out;
}

void Redelivery::flush_due(int64_t now) {
  while (!waiting_.empty() && waiting_.front()->produce_at_ms <= now) {
    auto job = std::move(waiting_.front());
    waiting_.pop_front();
    publish(std::move(job));
  }
}

std::vector<LeaseRef> Redelivery::leases_pending() const {
  std::vector<LeaseRef> leases;
  leases.reserve(out_.size() + waiting_.size() + refused_.size());
  for (const auto& [raw, job] : out_) leases.push_back(job->lease());
  for (const auto& job : waiting_) leases.push_back(job->lease());
  for (const auto& job : refused_) leases.push_back(job->lease());
  for (const auto& job : to_record_) leases.push_back(job->lease());
  return leases;
}

}  // namespace hookrelay
