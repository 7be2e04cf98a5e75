// The in-memory merkle tree that master and follower each keep of their data.
//
// A 256-ary sparse trie over the bytes of each key's hash (hash.h): byte i of the
// key hash picks the child at depth i. Leaves hold (family, key, leaf hash); values
// themselves are not kept. An inner node's hash is the XOR of its children's
// hashes, so the root hash is the XOR of all leaf hashes and depends only on the
// set of (family, key, value) entries. Inner nodes have at least two children;
// a chain of single-child nodes is collapsed, so an inner node records the depth
// whose digit it branches on.
//
// The tree is persistent: TreeView copies (Snapshot()) are O(1) and share nodes,
// and a write copies only the nodes on its path that a view still shares.
//
// Threads: a TreeView may be read from any thread while the MerkleTree it came
// from keeps being written. One MerkleTree object is not safe for concurrent use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/hash.h"
#include "engine/status.h"

namespace sdiff {

// A read-only view of one node. Valid while the TreeView it came from lives.
class NodeRef {
 public:
  NodeRef() = default;

  bool empty() const { return slot_ == 0; }
  bool is_leaf() const;
  bool is_inner() const { return !empty() && !is_leaf(); }
  // A leaf's hash, or the XOR of all leaf hashes below an inner node.
  Hash128 hash() const;

  // Asks the CPU to load the node's header (its hash) ahead of a read: a walk
  // over many children prefetches them all first, so their cache misses
  // overlap rather than come one after another.
  void Prefetch() const;

  // Inner nodes only.
  int depth() const;  // the key-hash byte that picks a child
  int child_count() const;
  uint8_t child_digit(int i) const;
  NodeRef child(int i) const;
  NodeRef FindChild(uint8_t digit) const;  // empty() if there is none

  // Leaves only.
  FamilyTag family() const;
  std::string_view key() const;
  Hash128 key_hash() const;  // recomputed with the tree's hasher

  // The key hash of some leaf below (every leaf below shares the digits
  // above depth()); for a leaf, its own key hash.
  Hash128 AnyKeyHash() const;

 private:
  friend class TreeView;
  NodeRef(uint64_t slot, KeyHasher hasher) : slot_(slot), hasher_(hasher) {}

  uint64_t slot_ = 0;
  KeyHasher hasher_ = nullptr;
};

enum class DiffKind : uint8_t { kOnlyInA, kOnlyInB, kValueDiffers };

struct DiffEntry {
  FamilyTag family;
  std::string key;
  DiffKind kind;
  friend bool operator==(const DiffEntry&, const DiffEntry&) = default;
};

// An immutable tree. Copying is O(1); copies share all nodes.
class TreeView {
 public:
  explicit TreeView(KeyHasher hasher = &KeyHash) : hasher_(hasher) {}
  TreeView(const TreeView& other);
  TreeView(TreeView&& other) noexcept;
  TreeView& operator=(const TreeView& other);
  TreeView& operator=(TreeView&& other) noexcept;
  ~TreeView();

  size_t size() const { return size_; }
  Hash128 root_hash() const;
  // The leaf hash stored for the key, if present.
  std::optional<Hash128> Find(FamilyTag family, std::string_view key) const;
  // Visits every leaf in key-hash order.
  void ForEach(const std::function<void(FamilyTag, std::string_view key, const Hash128& leaf_hash)>&
                   fn) const;
  NodeRef root() const { return NodeRef(root_, hasher_); }
  KeyHasher hasher() const { return hasher_; }

  // Loads into the cache the nodes on the paths of these keys (by key hash,
  // as hasher() gives them), for reads or writes of those keys that follow.
  // A path's nodes depend on each other (a node's address is in its parent),
  // so one key's cache misses come one after another; walking all paths a
  // level at a time, prefetching each level for every key before reading it,
  // makes the misses of different keys overlap. Changes nothing; a few dozen
  // keys at a time are enough (the cache must still hold the first path when
  // the last is loaded).
  void PrefetchPaths(std::span<const Hash128> key_hashes) const;

 protected:
  friend std::vector<DiffEntry> Diff(const TreeView& a, const TreeView& b);

  uint64_t root_ = 0;  // tagged node pointer; 0 is the empty tree
  size_t size_ = 0;
  KeyHasher hasher_;
};

// Every key whose entry differs between a and b, in key-hash order. Both trees
// must use the same hasher. Subtrees shared by a and b, or with equal hashes,
// are skipped, so the cost follows the number of differences, not the size.
std::vector<DiffEntry> Diff(const TreeView& a, const TreeView& b);

// Key-hash collisions: two distinct keys with the same 128-bit key hash cannot
// both sit in the trie. Of such keys the trie holds the least by (family, key);
// the others are kept aside (key and leaf hash, outside every view) and take
// its place, least first, when it is erased. So the tree's content depends only
// on the set of entries written, never on their order: a tree kept up to date
// write by write equals one built from a scan of the same data, and master and
// follower, holding the same data, hold the same tree. A key kept aside is not
// in the tree (Find, ForEach, diffs and root hashes do not see it); its value
// still lives in the database and the stream still carries it.
class MerkleTree : public TreeView {
 public:
  using TreeView::TreeView;
  // A tree holding what `view` holds, in O(1): it shares the view's nodes and
  // copies one only when a write reaches it. Keys a collision left out of the
  // tree the view came from are not in a view, so left_out() starts at 0
  // (a relay's batch log takes its follower's tree this way and never writes it).
  explicit MerkleTree(const TreeView& view) : TreeView(view) {}

  // Inserts or overwrites. A key whose key hash collides with another's is
  // kept aside as above (left_out() counts them). Always OK: the Status is
  // kept for the callers that stop on a failed insert.
  Status Put(FamilyTag family, std::string_view key, std::string_view value);
  // Same, with the leaf hash already computed (LeafHash(key hash, value)).
  Status PutLeafHash(FamilyTag family, std::string_view key, const Hash128& leaf_hash);
  // Removes the key (from the trie or from aside); returns false (and changes
  // nothing) if it was absent.
  bool Erase(FamilyTag family, std::string_view key);
  // Removes every key of `family` in [begin, end), aside ones included.
  // O(n): the trie is in hash order, so it walks the whole tree.
  void EraseRange(FamilyTag family, std::string_view begin, std::string_view end);
  void Clear();

  // Keys kept aside because their key hash collides with a key in the trie.
  size_t left_out() const { return aside_.size(); }

  // An O(1) immutable view of the current contents.
  TreeView Snapshot() const { return TreeView(*this); }

 private:
  Status Insert(FamilyTag family, std::string_view key, const Hash128& key_hash,
                const Hash128& leaf_hash);
  void EraseAt(uint64_t* slot, const Hash128& key_hash, Hash128* removed);
  // After the trie's key for key_hash was erased: the least key aside with
  // that hash, if any, takes its place.
  void PromoteAside(const Hash128& key_hash);

  // Colliding keys not in the trie, by (family, key): their leaf hashes.
  std::map<std::pair<FamilyTag, std::string>, Hash128> aside_;
};

}  // namespace sdiff
