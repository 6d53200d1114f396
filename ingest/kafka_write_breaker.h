// KafkaWriteBreaker: ingest stops sending requests to a Kafka that answers but does not take
// writes (min.insync.replicas not met, every partition leaderless, a quota), instead of holding
// each request, its connection and its body for kafka.produce_timeout_ms before a 503.
//
// After kThreshold delivery reports in a row failed (any failure but a message too large for
// Kafka, which says nothing of the cluster), requests are refused at once (503) for kCooldownMs;
// then one request is let through as a probe while the others are still refused: its success
// closes the breaker, its failure refuses for another cooldown (a message too large for Kafka
// is no answer: the next request probes). Each probe has an id, and only the report of the probe
// still out ends it: a report of an earlier probe (sent before a success closed the breaker and
// failures opened it again) arriving late cannot let a second probe out beside it. Readiness
// reads open(), so a load
// balancer moves traffic away meanwhile. A success of any request closes it.
//
// Thread-safety: every method from any thread (HTTP loops, delivery reports).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

namespace hookrelay {

class KafkaWriteBreaker {
 public:
  static constexpr int kThreshold = 3;
  static constexpr int64_t kCooldownMs = 2000;

  enum class Admit {
    kProduce,  // closed: produce as usual
    kProbe,    // the one request that tries Kafka again: report its outcome with probe = true
    kRefuse,   // open: answer 503 without producing
  };

  // kProbe sets *probe_id to the probe's id, which its report passes back.
  Admit admit(int64_t now_ms, uint64_t* probe_id) {
    if (failing_.load(std::memory_order_relaxed) < kThreshold) return Admit::kProduce;
    std::lock_guard lock(mu_);
    if (failing_.load(std::memory_order_relaxed) < kThreshold) return Admit::kProduce;
    if (now_ms < refuse_until_ms_ || probe_out_ != 0) return Admit::kRefuse;
    probe_out_ = ++last_probe_;
    *probe_id = probe_out_;
    return Admit::kProbe;
  }

  void succeeded() {
    if (failing_.exchange(0, std::memory_order_relaxed) == 0) return;
    std::lock_guard lock(mu_);
    refuse_until_ms_ = 0;
    probe_out_ = 0;
  }

  // probe_id: the report's probe id, 0 for a request that was not a probe.
  void failed(int64_t now_ms, uint64_t probe_id) {
    const int n = failing_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (n < kThreshold && probe_id == 0) return;
    std::lock_guard lock(mu_);
    if (probe_id != 0 && probe_id == probe_out_) probe_out_ = 0;
    // Reports of requests sent before it opened still arrive for up to produce_timeout_ms: each
    // failure starts the cooldown again.
    refuse_until_ms_ = now_ms + kCooldownMs;
  }

  // The probe's report says nothing of the cluster (its message was too large for Kafka): the
  // next request probes at once, without another cooldown.
  void probe_inconclusive(uint64_t probe_id) {
    std::lock_guard lock(mu_);
    if (probe_id == probe_out_) probe_out_ = 0;
  }

  // Refusing (or probing): Kafka did not take the last writes.
  bool open() const { return failing_.load(std::memory_order_relaxed) >= kThreshold; }

 private:
  std::atomic<int> failing_{0};  // delivery reports failed in a row
  std::mutex mu_;
  int64_t refuse_until_ms_ = 0;
  uint64_t probe_out_ = 0;   // the id of the probe out, 0 for none
  uint64_t last_probe_ = 0;  // the last id given
};

}  // namespace hookrelay
