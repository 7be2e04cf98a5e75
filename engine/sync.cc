// Prefix summaries and the level-by-level comparison of the merkle diff.
#include "engine/sync.h"

#include <utility>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace sdiff {
namespace {

// Whether every digit of `path` from `from` on matches `key_hash`.
bool PathMatches(std::string_view path, const Hash128& key_hash, size_t from) {
  for (size_t i = from; i < path.size(); ++i) {
    if (key_hash.digit(static_cast<int>(i)) != static_cast<uint8_t>(path[i])) return false;
  }
  return true;
}

void ForEachLeafBelow(NodeRef node, const std::function<void(NodeRef)>& fn) {
  if (node.empty()) return;
  if (node.is_leaf()) return fn(node);
  for (int i = 0; i < node.child_count(); ++i) ForEachLeafBelow(node.child(i), fn);
}

// The logical children of `node` (which covers `depth`'s prefix) at `depth`:
// its own children when it branches there, else itself under the shared digit.
template <typename Fn>
void ForEachChildAt(NodeRef node, int depth, Fn&& fn) {
  if (node.empty()) return;
  if (node.is_inner() && node.depth() == depth) {
    for (int i = 0; i < node.child_count(); ++i) fn(node.child_digit(i), node.child(i));
    return;
  }
  fn(node.AnyKeyHash().digit(depth), node);
}

}  // namespace

uint64_t TruncatedHash(const Hash128& h, uint64_t salt, int bytes) {
  uint8_t canonical[16];
  h.ToBytes(canonical);
  uint64_t mixed = XXH3_64bits_withSeed(canonical, sizeof(canonical), salt);
  return bytes >= 8 ? mixed : mixed & ((uint64_t{1} << (8 * bytes)) - 1);
}

NodeRef LocatePrefix(const TreeView& tree, std::string_view path) {
  NodeRef node = tree.root();
  size_t checked = 0;  // digits of `path` known to match every key below `node`
  while (!node.empty()) {
    if (node.is_leaf() || node.depth() >= static_cast<int>(path.size())) {
      // All keys below share the digits down to the node's depth: test one.
      return PathMatches(path, node.AnyKeyHash(), checked) ? node : NodeRef();
    }
    int depth = node.depth();
    if (depth > static_cast<int>(checked) &&
        !PathMatches(path.substr(0, depth), node.AnyKeyHash(), checked)) {
      return NodeRef();
    }
    node = node.FindChild(static_cast<uint8_t>(path[depth]));
    checked = depth + 1;
  }
  return node;
}

NodeSummary Summarize(const TreeView& tree, std::string_view path, uint64_t salt, int hash_bytes) {
  NodeSummary s;
  NodeRef node = LocatePrefix(tree, path);
  if (node.empty()) return s;
  if (node.is_leaf()) {
    s.kind = NodeSummary::Kind::kLeaf;
    s.key_hash = node.key_hash();
    s.leaf_hash = node.hash();
    return s;
  }
  s.kind = NodeSummary::Kind::kInner;
  ForEachChildAt(node, static_cast<int>(path.size()), [&](uint8_t digit, NodeRef child) {
    s.digits.push_back(digit);
    s.hashes.push_back(TruncatedHash(child.hash(), salt, hash_bytes));
  });
  return s;
}

DiffComparer::DiffComparer(TreeView master, uint64_t salt, int hash_bytes)
    : master_(std::move(master)), salt_(salt), hash_bytes_(hash_bytes) {}

Status DiffComparer::OnRoot(const Hash128& follower_root, const NodeSummary& top) {
  residue_ = master_.root_hash() ^ follower_root;
  if (residue_.is_zero()) return Status::OK();
  return OnSummary(std::string(), top);
}

void DiffComparer::SendAll(NodeRef node) {
  ForEachLeafBelow(node, [&](NodeRef leaf) {
    residue_ ^= leaf.hash();
    to_send_.push_back(KeyRef{leaf.family(), std::string(leaf.key())});
  });
}

Status DiffComparer::OnSummary(const std::string& path, const NodeSummary& theirs) {
  if (theirs.kind == NodeSummary::Kind::kInner &&
      (path.size() >= kMaxPathDigits || theirs.digits.size() != theirs.hashes.size() ||
       theirs.digits.empty())) {
    return Status::ProtocolError("Nodes: malformed inner summary at depth " +
                                 std::to_string(path.size()));
  }
  NodeRef mine = LocatePrefix(master_, path);
  switch (theirs.kind) {
    case NodeSummary::Kind::kEmpty:
      SendAll(mine);
      return Status::OK();
    case NodeSummary::Kind::kLeaf: {
      // Their one key either matches one of ours or is theirs alone.
      residue_ ^= theirs.leaf_hash;
      bool matched = false;
      ForEachLeafBelow(mine, [&](NodeRef leaf) {
        if (!matched && leaf.key_hash() == theirs.key_hash) {
          matched = true;
          residue_ ^= leaf.hash();
          if (leaf.hash() != theirs.leaf_hash) {
            to_send_.push_back(KeyRef{leaf.family(), std::string(leaf.key())});
          }
          return;
        }
        residue_ ^= leaf.hash();
        to_send_.push_back(KeyRef{leaf.family(), std::string(leaf.key())});
      });
      if (!matched) follower_only_.push_back(theirs.key_hash);
      return Status::OK();
    }
    case NodeSummary::Kind::kInner:
      break;
  }
  // Walk our children and theirs in digit order.
  int depth = static_cast<int>(path.size());
  size_t j = 0;
  auto ask = [&](uint8_t digit) {
    std::string child = path;
    child.push_back(static_cast<char>(digit));
    pending_.push_back(std::move(child));
  };
  ForEachChildAt(mine, depth, [&](uint8_t digit, NodeRef child) {
    while (j < theirs.digits.size() && theirs.digits[j] < digit) ask(theirs.digits[j++]);
    if (j < theirs.digits.size() && theirs.digits[j] == digit) {
      if (TruncatedHash(child.hash(), salt_, hash_bytes_) != theirs.hashes[j]) ask(digit);
      ++j;
    } else {
      SendAll(child);
    }
  });
  while (j < theirs.digits.size()) ask(theirs.digits[j++]);
  return Status::OK();
}

}  // namespace sdiff
