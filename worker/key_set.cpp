#include "worker/key_set.h"

#include <functional>
#include <utility>

namespace hookrelay {

uint64_t KeySet::hash_of(std::string_view key) {
  const uint64_t h = std::hash<std::string_view>{}(key);
  return h == 0 ? 1 : h;
}

std::size_t KeySet::find(std::string_view key, uint64_t hash) const {
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.hash == 0 || (s.hash == hash && s.key == key)) return i;
  }
}

bool KeySet::contains(std::string_view key) const {
  if (slots_.empty()) return false;
  return slots_[find(key, hash_of(key))].hash != 0;
}

bool KeySet::insert(std::string_view key) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  const uint64_t hash = hash_of(key);
  Slot& s = slots_[find(key, hash)];
  if (s.hash != 0) return false;
  s.hash = hash;
  s.key.assign(key.data(), key.size());  // into the buffer the slot kept, when it is large enough
  ++size_;
  return true;
}

bool KeySet::erase(std::string_view key) {
  if (slots_.empty()) return false;
  const std::size_t mask = slots_.size() - 1;
  std::size_t hole = find(key, hash_of(key));
  if (slots_[hole].hash == 0) return false;
  // Backward shift: a later key of the same probe run moves into the hole when its home slot is
  // not after the hole (cyclically), so every key stays reachable from its home without gaps.
  for (std::size_t j = (hole + 1) & mask; slots_[j].hash != 0; j = (j + 1) & mask) {
    const std::size_t home = slots_[j].hash & mask;
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      std::swap(slots_[hole], slots_[j]);  // the erased key's buffer travels to slot j
      hole = j;
    }
  }
  slots_[hole].hash = 0;
  slots_[hole].key.clear();  // keeps its buffer for a later insert
  --size_;
  return true;
}

void KeySet::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.clear();
  slots_.resize(old.empty() ? 64 : old.size() * 2);
  const std::size_t mask = slots_.size() - 1;
  for (Slot& s : old) {
    if (s.hash == 0) continue;
    std::size_t i = s.hash & mask;
    while (slots_[i].hash != 0) i = (i + 1) & mask;
    slots_[i] = std::move(s);
  }
}

}  // namespace hookrelay
