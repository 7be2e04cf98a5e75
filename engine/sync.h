// The merkle diff between two trees on two machines, minus the messaging:
// summarising a trie prefix and answering a probe (the follower's side), and
// comparing summaries level by level (the master's side).
//
// Both sides see the same logical trie: the keys whose key hash starts with a
// prefix of digits. A summary says "no key", "one key (its hashes)", "these few
// keys (their hashes)", or "these digits come next, with these truncated
// hashes", the last folded into 16 lines per family when the children are many.
// Both sides compare: the master compares the follower's summaries and probes
// the children that differ with its own summary of their children; the
// follower compares those and answers with its summaries of the grandchildren
// that differ (kDetails), a grandchild of a few dozen keys by its sums, from
// which the master names a single difference there at once (kSums). So one
// exchange descends two levels, and often settles a third. Truncated
// hashes are salted, so a collision that hid a difference in one sync is not
// repeated by the next; the comparer proves the result complete with the full
// root hashes (see DiffComparer::complete()).
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

// A summary of more children than this is folded (NodeSummary::kFolded) when
// the caller asks for folding: 16 lines per family cost less than 256 hashes.
constexpr size_t kFoldAbove = 64;
// Families of lines a folded summary may have: a child differs only if every
// line through it differs, so more families mean fewer children taken for
// differing ones (which cost a summary each) when several differ.
constexpr int kMinFoldFamilies = 2;
constexpr int kMaxFoldFamilies = 4;
// Families of the master's probes when it sends many (differences are then
// many, a few under each probe), and of the follower's root summary.
constexpr int kProbeFoldFamilies = 3;
constexpr int kRootFoldFamilies = 4;
// A subtree of at most this many keys is summarized by listing them (kLeaves).
constexpr size_t kMaxListedLeaves = 4;
// A kDetails answer names at most this many children; past that, the follower
// answers with its plain summary of the probed prefix instead.
constexpr size_t kMaxDetails = 64;
// A differing child of at most this many keys (and more than kMaxListedLeaves)
// is named in a kDetails answer by its sums (NodeSummary::kSums), not by its
// children: from them and its own keys there the master names a single
// difference below at once, a level sooner; more than one, it probes the
// child. Both sides read every key of such a child, so the limit bounds that.
constexpr size_t kMaxSummedLeaves = 64;

// The low `bytes` bytes of a salted 64-bit hash of h.
uint64_t TruncatedHash(const Hash128& h, uint64_t salt, int bytes);

// A key's term in the check of a kSums summary: XXH3-128 of its key hash and
// leaf hash (canonical, 32 bytes), seeded with the diff's salt.
Hash128 CheckHash(const Hash128& key_hash, const Hash128& leaf_hash, uint64_t salt);

// The index in a folded summary's hashes of digit's line in `family` (0..3):
// the digit's high nibble, its low nibble, and two diagonals.
int FoldLine(int family, uint8_t digit);

// The node whose keys are exactly the tree's keys under `path` (it may sit
// deeper than path.size() when the trie collapsed a chain), or an empty ref.
NodeRef LocatePrefix(const TreeView& tree, std::string_view path);

// What `tree` holds under `path`: kEmpty, kLeaf, kLeaves (up to
// kMaxListedLeaves keys), or its children: kInner, or kFolded with
// `fold_families` families when there are more than kFoldAbove of them and
// fold_families > 0.
NodeSummary Summarize(const TreeView& tree, std::string_view path, uint64_t salt, int hash_bytes,
                      int fold_families = 0);

// The master's probe of `path`: its own children there, for the follower to
// compare (kEmpty when it holds nothing there; kInner; kFolded as above).
NodeSummary ProbeSummary(const TreeView& tree, std::string_view path, uint64_t salt, int hash_bytes,
                         int fold_families);

// The follower's answer to a probe (`theirs`, the master's ProbeSummary of
// `path`): kDetails with its summary of each child that differs (or that a
// folded probe cannot tell apart): Summarize's, but kSums for a child of more
// than kMaxListedLeaves and at most kMaxSummedLeaves keys. Past kMaxDetails
// such children, or at a path of 16 digits, its plain Summarize of `path`. A
// malformed probe is a protocol error.
Status AnswerProbe(const TreeView& tree, std::string_view path, const NodeSummary& theirs,
                   uint64_t salt, int hash_bytes, NodeSummary* answer);

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
  // The follower's summary of a path that TakePending() returned, or its
  // answer (kDetails) to our probe of it.
  Status OnSummary(const std::string& path, const NodeSummary& theirs);

  // Paths to ask the follower about next (each is returned once).
  std::vector<std::string> TakePending() { return std::exchange(pending_, {}); }
  // Our probe of a pending path: folded with few families while the
  // differences found are few (so a folded line rarely hides two).
  NodeSummary Probe(const std::string& path, size_t pending) const;
  // No path left to ask about; call once every asked path was answered.
  bool finished() const { return pending_.empty(); }

  // True when the differences found account for the whole difference of the
  // two root hashes (root_m ^ root_f == XOR of the differing leaf hashes).
  // False means a truncated-hash collision hid something: diff again, salted anew.
  bool complete() const { return finished() && residue_.is_zero(); }

  Hash128 master_root() const { return master_.root_hash(); }
  // Lets the master's snapshot go once nothing is left to ask (the repairs
  // need only to_send() and follower_only()): while a view holds the tree's
  // nodes, every write copies the nodes on its path.
  void ReleaseSnapshot() { master_ = TreeView(master_.hasher()); }

  // Keys to send from the master (present there: a put; absent: a delete).
  std::vector<KeyRef>& to_send() { return to_send_; }
  // Key hashes of keys only the follower holds.
  std::vector<Hash128>& follower_only() { return follower_only_; }

 private:
  void SendAll(NodeRef node);
  // Names the one difference under `path` from the follower's sums there and
  // ours; false when they show more than one (then `path` is probed).
  bool Decode(const std::string& path, const NodeSummary& theirs);
  // Their keys under `mine`'s prefix, listed in full, against ours.
  void MatchLeaves(NodeRef mine, const std::vector<Hash128>& key_hashes,
                   const std::vector<Hash128>& leaf_hashes);
  Status Validate(const std::string& path, const NodeSummary& theirs, bool nested) const;

  TreeView master_;
  uint64_t salt_;
  int hash_bytes_;
  Hash128 residue_;                   // root_m ^ root_f ^ differences found so far
  std::vector<std::string> pending_;  // to ask
  std::vector<KeyRef> to_send_;
  std::vector<Hash128> follower_only_;
};

}  // namespace sdiff
