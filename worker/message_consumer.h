// MessageConsumer: the worker's I/O boundary for consuming. The real adapter is KafkaConsumer.
//
// Offsets are never stored automatically: the worker stores, per partition, only the contiguous
// finished watermark (store_offsets), and commit() sends what was stored. A crash therefore
// replays, never skips.
//
// Thread-safety: single-threaded; every method from the worker's coordinator thread, except
// wake(), which any thread may call. Rebalance callbacks run inside poll() on that thread.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "shared/result.h"
#include "worker/message_expander.h"
#include "worker/offset_watermark.h"

namespace hookrelay {

struct ConsumerListener {
  std::function<void(const std::vector<TopicPartition>&)> on_assigned;
  std::function<void(const std::vector<TopicPartition>&)> on_revoked;  // before they go away
  std::function<void(std::string_view topic)> on_offset_reset;         // data-loss alarm
  std::function<void(std::string_view code)> on_error;
};

class MessageConsumer {
 public:
  virtual ~MessageConsumer() = default;
  virtual void set_listener(ConsumerListener listener) = 0;
  // Up to max_messages, waiting at most timeout_ms for the first, or until wake().
  virtual std::vector<ConsumedMessage> poll(int max_messages, int timeout_ms) = 0;
  // Makes a poll() that is waiting (or the next one to wait) return at once, so the coordinator
  // can block in poll() and still react to events from other threads without spinning.
  virtual void wake() = 0;
  // Stops fetching tp; the next fetch after resume starts at seek_offset. False when the seek
  // failed: tp is not paused, and fetching goes on after the last message poll() returned.
  virtual bool pause(const TopicPartition& tp, int64_t seek_offset) = 0;
  // Stops fetching these partitions without repositioning them: fetching resumes just after the
  // last message poll() returned from each. A message poll() returns from one of them anyway
  // (fetched before the hold took effect) is the next in order; the caller must keep it.
  virtual void hold(const std::vector<TopicPartition>& tps) = 0;
  virtual void resume(const TopicPartition& tp) = 0;
  virtual void store_offsets(const std::vector<CommitPosition>& positions) = 0;
  virtual Result<void> commit() = 0;  // synchronous commit of stored offsets
  virtual std::vector<TopicPartition> assignment() = 0;
  virtual std::map<std::string, int64_t> lag_by_topic() = 0;
  virtual void close() = 0;  // leaves the group (revoke runs first)
};

}  // namespace hookrelay
