// KeyOrderStore: where the held keys of ordered routes and their waiting deliveries are kept
// (migrations/0011_key_order.sql), so every worker, and a worker after a crash, sees the same
// order. The real adapter is PostgresKeyOrderStore; unit tests use a fake.
//
// Errors are those of PgConnection ("db_unavailable", "db_conflict", "db_busy",
// "db_misconfigured" retryable; "db_error" not); implementations never throw.
//
// Thread-safety: implementations need not be thread-safe; the caller serializes calls.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shared/kafka/message_producer.h"
#include "shared/result.h"
#include "shared/store/pg_connection.h"

namespace hookrelay {

// One ordering key of one route.
struct OrderKey {
  std::string source;
  std::string route;
  std::string key;
  auto operator<=>(const OrderKey&) const = default;
};

// A delivery waiting behind its key's head, with the message that publishes it again.
struct WaitingDelivery {
  int64_t id = 0;  // arrival order within the key (set by the store)
  OrderKey key;
  std::string delivery_key;
  std::string topic;
  std::vector<MessageHeader> headers;
  std::string body;
};

// What KeyOrderStore::advance() found: the key's next head to publish, or the head another
// worker gave it (the key is still held; "" held with no head yet), or neither: the key is free.
struct KeyAdvance {
  std::optional<WaitingDelivery> next;
  std::optional<std::string> held_by;
};

// A held key as the store has it.
struct HeldKey {
  OrderKey key;
  std::string head;        // delivery key of the head; "" = none: the first waiting one is next
  bool head_done = false;  // the head succeeded or is dead, and was for a while (see held())
  int64_t waiting = 0;     // deliveries waiting behind it
  // The head's own waiting row, left since it was made the head a while ago: the worker that
  // made it the head stopped before its publish was confirmed (see held()).
  std::optional<WaitingDelivery> unreleased;
};

class KeyOrderStore {
 public:
  virtual ~KeyOrderStore() = default;
  // Holds `key` with `head` as its head, unless it has a head already, and returns the key's
  // head after: `head`, or the one another worker gave the key first. Then `otherwise` (the
  // would-be head's own waiting row) is appended behind that head as enqueue() appends it,
  // giving back the lease `lease_token` has on it, in the same transaction: the deliveries of
  // the key set to wait after this call come after it.
  virtual Result<std::string> hold(const OrderKey& key, const std::string& head,
                                   const WaitingDelivery& otherwise, int64_t lease_token) = 0;
  // Appends a waiting delivery behind its key (holding the key, with no head, if it was free)
  // and gives back the lease `lease_token` has on it, so it can be claimed again when released:
  // true. A delivery already waiting behind the key (its message read again after a crash) keeps
  // its place and is not appended a second time. A delivery that is its key's head itself (it
  // was released, and the caller's view of the key is older) does not wait: nothing changes,
  // its lease is kept, and false comes back. Serialized with advance() on the key's row, so a
  // delivery appended while the key is released is never left behind a key that is gone.
  virtual Result<bool> enqueue(const WaitingDelivery& waiting, int64_t lease_token) = 0;
  // The head `head` of `key` is finished: the first waiting delivery becomes the head and is
  // returned (its row stays until released() confirms it was published); with none waiting,
  // the key is free again and nothing comes back. The head's own waiting row, if its release was
  // not yet confirmed, goes: it finished, so it was published. A head that is no longer `head`
  // (another worker moved on, or held the key after it was let go) changes nothing: the key's
  // head comes back as held_by, the key still held.
  virtual Result<KeyAdvance> advance(const OrderKey& key, const std::string& head) = 0;
  // The waiting row `id` was published again: it is gone.
  virtual Result<void> released(int64_t id) = 0;
  // Every held key. head_done: its head succeeded or died more than `done_for_ms` ago, so
  // whoever finished it did not release the next (it crashed): the caller releases it.
  // unreleased: the head is a released waiting delivery whose row is still there `done_for_ms`
  // after it became the head, so whoever released it stopped before confirming its publish (and
  // may have stopped before publishing it): the caller publishes it again, then released().
  virtual Result<std::vector<HeldKey>> held(int64_t done_for_ms) = 0;
};

class PostgresKeyOrderStore final : public KeyOrderStore {
 public:
  explicit PostgresKeyOrderStore(std::string url);
  Result<std::string> hold(const OrderKey& key, const std::string& head,
                           const WaitingDelivery& otherwise, int64_t lease_token) override;
  Result<bool> enqueue(const WaitingDelivery& waiting, int64_t lease_token) override;
  Result<KeyAdvance> advance(const OrderKey& key, const std::string& head) override;
  Result<void> released(int64_t id) override;
  Result<std::vector<HeldKey>> held(int64_t done_for_ms) override;

 private:
  PgConnection db_;
};

}  // namespace hookrelay
