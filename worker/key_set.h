// KeySet: the set of delivery keys in flight in this worker (Worker::local_keys_), one insert and
// one erase per delivery on the coordinator thread.
//
// Open addressing with linear probing; each slot keeps the key's hash beside the key, so a probe
// compares the key's bytes only on a full hash match, and an erase shifts the keys after it back
// (no tombstones). An emptied slot keeps its string's buffer, so once the table has seen as many
// keys as are in flight at once, an insert copies the key into a buffer it already has instead of
// allocating a node and a string (std::unordered_set<std::string> did both, and freed both on
// erase: about a tenth of the coordinator's CPU per delivery in bench/worker's profile).
//
// Thread-safety: none; one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hookrelay {

class KeySet {
 public:
  // True when `key` was not in the set and now is.
  bool insert(std::string_view key);
  // True when `key` was in the set and now is not.
  bool erase(std::string_view key);
  bool contains(std::string_view key) const;
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  struct Slot {
    uint64_t hash = 0;  // 0: empty (a key's hash is never 0)
    std::string key;
  };
  static uint64_t hash_of(std::string_view key);
  // The slot holding `key`, or the empty slot where the probe ended.
  std::size_t find(std::string_view key, uint64_t hash) const;
  void grow();

  std::vector<Slot> slots_;  // a power of two in size, at most half full
  std::size_t size_ = 0;
};

}  // namespace hookrelay
