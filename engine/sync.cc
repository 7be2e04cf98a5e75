// Prefix summaries and the level-by-level comparison of the merkle diff.
#include "engine/sync.h"

#include <algorithm>
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

// How many children ahead of the one read a walk prefetches.
constexpr int kPrefetchAhead = 16;

// The logical children of `node` (which covers `depth`'s prefix) at `depth`:
// its own children when it branches there, else itself under the shared digit.
template <typename Fn>
void ForEachChildAt(NodeRef node, int depth, Fn&& fn) {
  if (node.empty()) return;
  if (node.is_inner() && node.depth() == depth) {
    // Children lie anywhere in memory: fetch a few ahead of the one read, so
    // their misses overlap. Fetching all 256 first stalls on the CPU's
    // outstanding misses and evicts the first before it is read (twice as
    // slow at 1e6 keys).
    const int count = node.child_count();
    for (int i = 0; i < std::min(count, kPrefetchAhead); ++i) node.child(i).Prefetch();
    for (int i = 0; i < count; ++i) {
      if (i + kPrefetchAhead < count) node.child(i + kPrefetchAhead).Prefetch();
      fn(node.child_digit(i), node.child(i));
    }
    return;
  }
  fn(node.AnyKeyHash().digit(depth), node);
}

}  // namespace

Hash128 CheckHash(const Hash128& key_hash, const Hash128& leaf_hash, uint64_t salt) {
  uint8_t canonical[32];
  key_hash.ToBytes(canonical);
  leaf_hash.ToBytes(canonical + 16);
  XXH128_hash_t h = XXH3_128bits_withSeed(canonical, sizeof(canonical), salt);
  return Hash128{h.high64, h.low64};
}

uint64_t TruncatedHash(const Hash128& h, uint64_t salt, int bytes) {
  uint8_t canonical[16];
  h.ToBytes(canonical);
  uint64_t mixed = XXH3_64bits_withSeed(canonical, sizeof(canonical), salt);
  return bytes >= 8 ? mixed : mixed & ((uint64_t{1} << (8 * bytes)) - 1);
}

// A grid of 16 rows (high nibble) by 16 columns (low nibble); the diagonals
// r + c and r + 3c cross every row and column once, and any two lines of
// different families but the two diagonals meet in exactly one digit.
int FoldLine(int family, uint8_t digit) {
  int r = digit >> 4;
  int c = digit & 15;
  switch (family) {
    case 0:
      return r;
    case 1:
      return 16 + c;
    case 2:
      return 32 + ((r + c) & 15);
    default:
      return 48 + ((r + 3 * c) & 15);
  }
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

namespace {

// The lines of `node`'s children at `depth`, `families` families of 16.
std::vector<uint64_t> FoldChildren(NodeRef node, int depth, uint64_t salt, int hash_bytes,
                                   int families) {
  std::vector<uint64_t> lines(16 * families, 0);
  ForEachChildAt(node, depth, [&](uint8_t digit, NodeRef child) {
    uint64_t h = TruncatedHash(child.hash(), salt, hash_bytes);
    for (int f = 0; f < families; ++f) lines[FoldLine(f, digit)] ^= h;
  });
  return lines;
}

// `node`'s children at `depth` (node non-empty): plain, or folded into lines.
NodeSummary ChildrenOf(NodeRef node, int depth, uint64_t salt, int hash_bytes, int families) {
  NodeSummary s;
  bool branches = node.is_inner() && node.depth() == depth;
  if (families > 0 && branches && static_cast<size_t>(node.child_count()) > kFoldAbove) {
    s.kind = NodeSummary::Kind::kFolded;
    s.hashes = FoldChildren(node, depth, salt, hash_bytes, families);
    return s;
  }
  s.kind = NodeSummary::Kind::kInner;
  ForEachChildAt(node, depth, [&](uint8_t digit, NodeRef child) {
    s.digits.push_back(digit);
    s.hashes.push_back(TruncatedHash(child.hash(), salt, hash_bytes));
  });
  return s;
}

// Walks `mine`'s children at `depth` and a plain summary's in digit order:
// only_mine(digit, child) for a child the summary lacks, differs(digit) for
// one only the summary has or whose truncated hash differs.
template <typename OnlyMine, typename Differs>
void CompareChildren(NodeRef mine, int depth, const NodeSummary& theirs, uint64_t salt,
                     int hash_bytes, OnlyMine&& only_mine, Differs&& differs) {
  size_t j = 0;
  ForEachChildAt(mine, depth, [&](uint8_t digit, NodeRef child) {
    while (j < theirs.digits.size() && theirs.digits[j] < digit) differs(theirs.digits[j++]);
    if (j < theirs.digits.size() && theirs.digits[j] == digit) {
      if (TruncatedHash(child.hash(), salt, hash_bytes) != theirs.hashes[j]) differs(digit);
      ++j;
    } else {
      only_mine(digit, child);
    }
  });
  while (j < theirs.digits.size()) differs(theirs.digits[j++]);
}

// Up to `limit` leaves below node; false if there are more.
bool CollectLeaves(NodeRef node, size_t limit, std::vector<NodeRef>* out) {
  if (node.is_leaf()) {
    if (out->size() == limit) return false;
    out->push_back(node);
    return true;
  }
  for (int i = 0; i < node.child_count(); ++i) node.child(i).Prefetch();
  for (int i = 0; i < node.child_count(); ++i) {
    if (!CollectLeaves(node.child(i), limit, out)) return false;
  }
  return true;
}

// The digits that may differ between two folds of `families` families, in
// ascending order. A line's difference is the XOR of its differing children's
// differences, so a child alone on each of its lines shows the same difference
// on all of them: such a child is taken as differing and its difference taken
// out of its lines (peeled, as an invertible Bloom lookup table is), which
// clears the lines it shared with children that are equal. What is left is
// every digit all of whose lines still differ. A child taken wrongly (its
// lines agreeing by chance, about 2^(-8w(families-1))) can clear a line of
// one that differs, which the residue check then finds.
std::vector<uint8_t> FoldedCandidates(const std::vector<uint64_t>& a,
                                      const std::vector<uint64_t>& b, int families) {
  uint64_t delta[16 * kMaxFoldFamilies];
  for (int i = 0; i < 16 * families; ++i) delta[i] = a[i] ^ b[i];
  bool taken[256] = {};
  for (bool progress = true; progress;) {
    progress = false;
    for (int d = 0; d < 256; ++d) {
      auto digit = static_cast<uint8_t>(d);
      uint64_t v = delta[FoldLine(0, digit)];
      if (taken[d] || v == 0) continue;
      bool alone = true;
      for (int f = 1; f < families && alone; ++f) alone = delta[FoldLine(f, digit)] == v;
      if (!alone) continue;
      taken[d] = true;
      progress = true;
      for (int f = 0; f < families; ++f) delta[FoldLine(f, digit)] ^= v;
    }
  }
  std::vector<uint8_t> out;
  for (int d = 0; d < 256; ++d) {
    auto digit = static_cast<uint8_t>(d);
    bool differs = true;
    for (int f = 0; f < families && differs; ++f) differs = delta[FoldLine(f, digit)] != 0;
    if (taken[d] || differs) out.push_back(digit);
  }
  return out;
}

bool ValidFold(const NodeSummary& s) {
  return s.digits.empty() && s.hashes.size() % 16 == 0 &&
         s.hashes.size() >= 16 * kMinFoldFamilies && s.hashes.size() <= 16 * kMaxFoldFamilies;
}

// The summary of `path`: its keys listed when few, added up (kSums) when at
// most `sum_limit`, else its children.
NodeSummary SummarizePath(const TreeView& tree, std::string_view path, uint64_t salt,
                          int hash_bytes, int fold_families, size_t sum_limit) {
  NodeSummary s;
  NodeRef node = LocatePrefix(tree, path);
  if (node.empty()) return s;
  if (node.is_leaf()) {
    s.kind = NodeSummary::Kind::kLeaf;
    s.key_hash = node.key_hash();
    s.leaf_hash = node.hash();
    return s;
  }
  std::vector<NodeRef> leaves;
  if (CollectLeaves(node, std::max(kMaxListedLeaves, sum_limit), &leaves)) {
    if (leaves.size() <= kMaxListedLeaves) {
      s.kind = NodeSummary::Kind::kLeaves;
      for (NodeRef leaf : leaves) {
        s.key_hashes.push_back(leaf.key_hash());
        s.leaf_hashes.push_back(leaf.hash());
      }
      return s;
    }
    s.kind = NodeSummary::Kind::kSums;
    s.leaf_count = leaves.size();
    s.leaf_hash = node.hash();
    for (NodeRef leaf : leaves) {
      Hash128 key_hash = leaf.key_hash();
      s.key_hash ^= key_hash;
      s.check ^= CheckHash(key_hash, leaf.hash(), salt);
    }
    return s;
  }
  return ChildrenOf(node, static_cast<int>(path.size()), salt, hash_bytes, fold_families);
}

}  // namespace

NodeSummary Summarize(const TreeView& tree, std::string_view path, uint64_t salt, int hash_bytes,
                      int fold_families) {
  return SummarizePath(tree, path, salt, hash_bytes, fold_families, /*sum_limit=*/0);
}

NodeSummary ProbeSummary(const TreeView& tree, std::string_view path, uint64_t salt, int hash_bytes,
                         int fold_families) {
  NodeRef node = LocatePrefix(tree, path);
  if (node.empty() || path.size() >= kMaxPathDigits) return NodeSummary{};
  return ChildrenOf(node, static_cast<int>(path.size()), salt, hash_bytes, fold_families);
}

Status AnswerProbe(const TreeView& tree, std::string_view path, const NodeSummary& theirs,
                   uint64_t salt, int hash_bytes, NodeSummary* answer) {
  using Kind = NodeSummary::Kind;
  if (path.size() >= kMaxPathDigits) {
    *answer = Summarize(tree, path, salt, hash_bytes);
    return Status::OK();
  }
  int depth = static_cast<int>(path.size());
  NodeRef node = LocatePrefix(tree, path);
  std::vector<uint8_t> candidates;
  switch (theirs.kind) {
    case Kind::kEmpty:
      ForEachChildAt(node, depth, [&](uint8_t digit, NodeRef) { candidates.push_back(digit); });
      break;
    case Kind::kInner: {
      if (theirs.digits.size() != theirs.hashes.size() || theirs.digits.empty()) {
        return Status::ProtocolError("NodesRequest: malformed probe");
      }
      auto differs = [&](uint8_t digit) { candidates.push_back(digit); };
      CompareChildren(
          node, depth, theirs, salt, hash_bytes, [&](uint8_t digit, NodeRef) { differs(digit); },
          differs);
      break;
    }
    case Kind::kFolded: {
      if (!ValidFold(theirs)) return Status::ProtocolError("NodesRequest: malformed folded probe");
      int families = static_cast<int>(theirs.hashes.size() / 16);
      candidates = FoldedCandidates(FoldChildren(node, depth, salt, hash_bytes, families),
                                    theirs.hashes, families);
      break;
    }
    default:
      return Status::ProtocolError("NodesRequest: a probe is empty, inner or folded");
  }
  if (candidates.size() > kMaxDetails) {
    *answer = Summarize(tree, path, salt, hash_bytes);
    return Status::OK();
  }
  answer->kind = Kind::kDetails;
  std::string child(path);
  child.push_back('\0');
  for (uint8_t digit : candidates) {
    child.back() = static_cast<char>(digit);
    answer->digits.push_back(digit);
    answer->details.push_back(
        SummarizePath(tree, child, salt, hash_bytes, kMaxFoldFamilies, kMaxSummedLeaves));
  }
  return Status::OK();
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

void DiffComparer::MatchLeaves(NodeRef mine, const std::vector<Hash128>& key_hashes,
                               const std::vector<Hash128>& leaf_hashes) {
  std::vector<bool> matched(key_hashes.size(), false);
  for (const Hash128& leaf_hash : leaf_hashes) residue_ ^= leaf_hash;
  ForEachLeafBelow(mine, [&](NodeRef leaf) {
    residue_ ^= leaf.hash();
    Hash128 key_hash = leaf.key_hash();
    for (size_t i = 0; i < key_hashes.size(); ++i) {
      if (!matched[i] && key_hashes[i] == key_hash) {
        matched[i] = true;
        if (leaf.hash() != leaf_hashes[i]) {
          to_send_.push_back(KeyRef{leaf.family(), std::string(leaf.key())});
        }
        return;
      }
    }
    to_send_.push_back(KeyRef{leaf.family(), std::string(leaf.key())});
  });
  for (size_t i = 0; i < key_hashes.size(); ++i) {
    if (!matched[i]) follower_only_.push_back(key_hashes[i]);
  }
}

bool DiffComparer::Decode(const std::string& path, const NodeSummary& theirs) {
  // Our keys there: one more than theirs at most, or it is not one difference.
  std::vector<NodeRef> leaves;
  NodeRef mine = LocatePrefix(master_, path);
  if (!mine.empty() && !CollectLeaves(mine, theirs.leaf_count + 1, &leaves)) return false;
  std::vector<Hash128> key_hashes, checks;
  Hash128 keys = theirs.key_hash, check = theirs.check;
  for (NodeRef leaf : leaves) {
    key_hashes.push_back(leaf.key_hash());
    checks.push_back(CheckHash(key_hashes.back(), leaf.hash(), salt_));
    keys ^= key_hashes.back();
    check ^= checks.back();
  }
  Hash128 delta = mine.hash() ^ theirs.leaf_hash;  // the differing leaves' XOR
  auto found = [&](size_t i) {
    residue_ ^= delta;
    to_send_.push_back(KeyRef{leaves[i].family(), std::string(leaves[i].key())});
    return true;
  };
  if (delta.is_zero()) {  // equal after all: the probe's lines made it look different
    return keys.is_zero() && check.is_zero() && leaves.size() == theirs.leaf_count;
  }
  if (leaves.size() == theirs.leaf_count + 1) {
    // A key only we hold: `keys` is its key hash, `delta` its leaf hash.
    for (size_t i = 0; i < leaves.size(); ++i) {
      if (key_hashes[i] == keys) return leaves[i].hash() == delta && checks[i] == check && found(i);
    }
    return false;
  }
  if (leaves.size() + 1 == theirs.leaf_count) {
    // A key only they hold, under this path and not among ours.
    if (!PathMatches(path, keys, 0) || CheckHash(keys, delta, salt_) != check) return false;
    for (const Hash128& key_hash : key_hashes) {
      if (key_hash == keys) return false;
    }
    residue_ ^= delta;
    follower_only_.push_back(keys);
    return true;
  }
  if (leaves.size() != theirs.leaf_count || !keys.is_zero()) return false;
  // The same keys, one value changed: the key whose check, with their leaf
  // hash in place of ours, accounts for the checks' difference.
  for (size_t i = 0; i < leaves.size(); ++i) {
    Hash128 theirs_leaf = leaves[i].hash() ^ delta;
    if ((checks[i] ^ CheckHash(key_hashes[i], theirs_leaf, salt_)) == check) return found(i);
  }
  return false;
}

Status DiffComparer::Validate(const std::string& path, const NodeSummary& theirs,
                              bool nested) const {
  using Kind = NodeSummary::Kind;
  auto malformed = [&](const char* what) {
    return Status::ProtocolError(std::string("Nodes: malformed ") + what + " summary at depth " +
                                 std::to_string(path.size()));
  };
  bool children =
      theirs.kind == Kind::kInner || theirs.kind == Kind::kFolded || theirs.kind == Kind::kDetails;
  if (children && path.size() >= kMaxPathDigits) return malformed("inner");
  switch (theirs.kind) {
    case Kind::kInner:
      if (theirs.digits.size() != theirs.hashes.size() || theirs.digits.empty()) {
        return malformed("inner");
      }
      break;
    case Kind::kFolded:
      if (!ValidFold(theirs)) return malformed("folded");
      break;
    case Kind::kLeaves:
      if (theirs.key_hashes.size() != theirs.leaf_hashes.size() || theirs.key_hashes.size() < 2 ||
          theirs.key_hashes.size() > kMaxListedLeaves) {
        return malformed("leaves");
      }
      break;
    case Kind::kDetails:
      if (nested || theirs.digits.size() != theirs.details.size() ||
          theirs.digits.size() > kMaxDetails) {
        return malformed("details");
      }
      break;
    case Kind::kSums:
      if (!nested || path.size() >= kMaxPathDigits || theirs.leaf_count <= kMaxListedLeaves ||
          theirs.leaf_count > kMaxSummedLeaves) {
        return malformed("sums");
      }
      break;
    case Kind::kEmpty:
    case Kind::kLeaf:
      break;
  }
  return Status::OK();
}

NodeSummary DiffComparer::Probe(const std::string& path, size_t pending) const {
  // Few questions at this level: few differences, each alone in its lines.
  // Many: a few differences a probe, which the follower peels out of three
  // families of lines (a fourth would cost more than the false candidates
  // it saves once peeling has cleared most of them).
  int families = pending <= 8 ? kMinFoldFamilies : kProbeFoldFamilies;
  return ProbeSummary(master_, path, salt_, hash_bytes_, families);
}

Status DiffComparer::OnSummary(const std::string& path, const NodeSummary& theirs) {
  using Kind = NodeSummary::Kind;
  if (Status s = Validate(path, theirs, /*nested=*/false); !s.ok()) return s;
  if (theirs.kind == Kind::kDetails) {
    // The children the follower found differing from our probe; the others
    // are equal (or a collision hid them, which the residue shows).
    std::string child = path;
    child.push_back('\0');
    for (size_t i = 0; i < theirs.digits.size(); ++i) {
      if (i > 0 && theirs.digits[i] <= theirs.digits[i - 1]) {
        return Status::ProtocolError("Nodes: details not in ascending digit order");
      }
      if (Status s = Validate(child, theirs.details[i], /*nested=*/true); !s.ok()) return s;
      child.back() = static_cast<char>(theirs.digits[i]);
      if (theirs.details[i].kind == Kind::kSums) {
        if (!Decode(child, theirs.details[i])) pending_.push_back(child);
      } else if (Status s = OnSummary(child, theirs.details[i]); !s.ok()) {
        return s;
      }
    }
    return Status::OK();
  }
  NodeRef mine = LocatePrefix(master_, path);
  switch (theirs.kind) {
    case Kind::kEmpty:
      SendAll(mine);
      return Status::OK();
    case Kind::kLeaf:
      MatchLeaves(mine, {theirs.key_hash}, {theirs.leaf_hash});
      return Status::OK();
    case Kind::kLeaves:
      MatchLeaves(mine, theirs.key_hashes, theirs.leaf_hashes);
      return Status::OK();
    case Kind::kFolded: {
      // Which children differ is known only up to the lines: ask about each
      // digit every line of which differs (the follower's answer settles it).
      int families = static_cast<int>(theirs.hashes.size() / 16);
      std::vector<uint64_t> lines =
          FoldChildren(mine, static_cast<int>(path.size()), salt_, hash_bytes_, families);
      for (uint8_t digit : FoldedCandidates(lines, theirs.hashes, families)) {
        pending_.push_back(path + static_cast<char>(digit));
      }
      return Status::OK();
    }
    case Kind::kInner:
    case Kind::kDetails:
    case Kind::kSums:
      break;
  }
  CompareChildren(
      mine, static_cast<int>(path.size()), theirs, salt_, hash_bytes_,
      [&](uint8_t, NodeRef child) { SendAll(child); },
      [&](uint8_t digit) { pending_.push_back(path + static_cast<char>(digit)); });
  return Status::OK();
}

}  // namespace sdiff
