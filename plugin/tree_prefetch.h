// Writes to a tree in groups whose paths are prefetched together
// (TreeView::PrefetchPaths): in a tree larger than the cache, the cache
// misses of a group's keys overlap instead of coming one after another. The
// master's batch log, the follower's stream applies and the tree scans share
// this.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string_view>
#include <utility>

#include "engine/hash.h"
#include "engine/merkle_tree.h"

namespace sdiff::plugin {

// A few dozen keys at most: the cache must still hold the first path when the
// last is loaded.
constexpr size_t kPrefetchGroup = 16;

// Called before writing items[i]: at the start of each group of more than
// one item, prefetches the paths of the group's keys. `key_of(item)` gives an
// item's (family, key), or nullopt for one that names no single key (a range
// delete).
template <typename Items, typename KeyOf>
void PrefetchGroupAt(const TreeView& tree, const Items& items, size_t i, KeyOf key_of) {
  if (i % kPrefetchGroup != 0 || items.size() - i < 2) return;
  Hash128 hashes[kPrefetchGroup];
  size_t count = 0;
  for (size_t j = i; j < std::min(items.size(), i + kPrefetchGroup); ++j) {
    std::optional<std::pair<FamilyTag, std::string_view>> key = key_of(items[j]);
    if (key) hashes[count++] = tree.hasher()(key->first, key->second);
  }
  tree.PrefetchPaths({hashes, count});
}

}  // namespace sdiff::plugin
