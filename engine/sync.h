// The merkle diff between two trees on two machines, minus the messaging:
// summarising a trie prefix (the follower's side) and comparing summaries
// level by level (the master's side).
//
// Both sides see the same logical trie: the keys whose key hash starts with a
// prefix of digits. A summary says "no key", "one key (its hashes)", or "these
// digits come next, with these truncated hashes". Truncated hashes are salted,
// so a collision that hid a difference in one sync is not repeated by the next;
// the comparer proves the result complete with the full root hashes (see
// DiffComparer::complete()).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/merkle_tree.h"
#include "engine/messages.h"

namespace sdiff {

// Digits in a trie path: one per key-hash byte.
constexpr size_t kMaxPathDigits = 16;

// The low `bytes` bytes of a salted 64-bit hash of h.
uint64_t TruncatedHash(const Hash128& h, uint64_t salt, int bytes);

// The node whose keys are exactly the tree's keys under `path` (it may sit
// deeper than path.size() when the trie collapsed a chain), or an empty ref.
NodeRef LocatePrefix(const TreeView& tree, std::string_view path);

// What `tree` holds under `path`.
NodeSummary Summarize(const TreeView& tree, std::string_view path, uint64_t salt, int hash_bytes);

// A key the follower must get from the master (absent there: a delete).
struct KeyRef {
  FamilyTag family;
  std::string key;
  friend bool operator==(const KeyRef&, const KeyRef&) = default;
};

// The master's half of one diff: compares the follower's summaries against a
// snapshot of the master's tree and says which prefixes to ask for next.
class DiffComparer {
 public:
  DiffComparer(TreeView master, uint64_t salt, int hash_bytes);

  // The follower's root and its summary of the empty prefix.
  Status OnRoot(const Hash128& follower_root, const NodeSummary& top);
  // The follower's summary of a path that TakePending() returned.
  Status OnSummary(const std::string& path, const NodeSummary& theirs);

  // Paths to ask the follower about next (each is returned once).
  std::vector<std::string> TakePending() { return std::exchange(pending_, {}); }
  // No path left to ask about; call once every asked path was answered.
  bool finished() const { return pending_.empty(); }

  // True when the differences found account for the whole difference of the
  // two root hashes (root_m ^ root_f == XOR of the differing leaf hashes).
  // False means a truncated-hash collision hid something: diff again, salted anew.
  bool complete() const { return finished() && residue_.is_zero(); }

  Hash128 master_root() const { return master_.root_hash(); }

  // Keys to send from the master (present there: a put; absent: a delete).
  std::vector<KeyRef>& to_send() { return to_send_; }
  // Key hashes of keys only the follower holds.
  std::vector<Hash128>& follower_only() { return follower_only_; }

 private:
  void SendAll(NodeRef node);

  TreeView master_;
  uint64_t salt_;
  int hash_bytes_;
  Hash128 residue_;                   // root_m ^ root_f ^ differences found so far
  std::vector<std::string> pending_;  // to ask
  std::vector<KeyRef> to_send_;
  std::vector<Hash128> follower_only_;
};

}  // namespace sdiff
