// The merkle tree checked against a std::map model on random operation sequences,
// with the real key hasher, with one that forces deep tries with collapsed
// chains, and with one whose digits bunch far from an even spread.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <map>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/hash.h"
#include "engine/merkle_tree.h"

namespace sdiff {
namespace {

using Key = std::pair<FamilyTag, std::string>;
using Model = std::map<Key, std::string>;

constexpr size_t kMaxOps = 200;

// The real key hash with each of its first kCollidingDigits bytes cut to 0 or 1: keys
// share long hash prefixes, so the trie grows deep and has collapsed chains.
constexpr int kCollidingDigits = 10;
Hash128 PrefixCollidingHasher(FamilyTag family, std::string_view key) {
  uint8_t bytes[16];
  KeyHash(family, key).ToBytes(bytes);
  for (int i = 0; i < kCollidingDigits; ++i) bytes[i] &= 1;
  return Hash128::FromBytes(bytes);
}

// The real key hash with its first two bytes bunched: digits below 128 near
// 0, digits from 128 near 255. Inner nodes then hold children far from an
// even spread over 0..255, both ways, which is where a search that starts
// from the even-spread position must walk or bisect further.
uint8_t Bunch(uint8_t b) {
  if (b < 128) return static_cast<uint8_t>(b * b >> 7);
  int from_top = 255 - b;
  return static_cast<uint8_t>(255 - (from_top * from_top >> 7));
}
Hash128 BunchedDigitsHasher(FamilyTag family, std::string_view key) {
  uint8_t bytes[16];
  KeyHash(family, key).ToBytes(bytes);
  bytes[0] = Bunch(bytes[0]);
  bytes[1] = Bunch(bytes[1]);
  return Hash128::FromBytes(bytes);
}

bool KeyHashLess(const Hash128& a, const Hash128& b) {
  return std::tie(a.hi, a.lo) < std::tie(b.hi, b.lo);
}

Hash128 ModelLeafHash(KeyHasher hasher, const Key& key, std::string_view value) {
  return LeafHash(hasher(key.first, key.second), value);
}

std::string HexBytes(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string Describe(FamilyTag family, std::string_view key) {
  return std::to_string(family) + ":\"" + HexBytes(key) + "\"";
}

std::string Describe(const DiffEntry& e) {
  static constexpr const char* kKinds[] = {"kOnlyInA", "kOnlyInB", "kValueDiffers"};
  return Describe(e.family, e.key) + " " + kKinds[static_cast<int>(e.kind)];
}

// Fails the current rapidcheck case with `error` unless it is empty.
void RcRequire(const std::string& error) {
  if (!error.empty()) RC_FAIL(error);
}

// ---- Operations and their generators ----

enum class OpKind { kPut, kOverwrite, kErase, kEraseAbsent, kSnapshot };

struct Op {
  OpKind kind;
  FamilyTag family;  // kPut, kEraseAbsent
  std::string key;   // kPut, kEraseAbsent
  std::string value;
  size_t pick;  // kOverwrite, kErase, kSnapshot: which entry or snapshot, modulo the count
};

std::ostream& operator<<(std::ostream& os, const Op& op) {
  static constexpr const char* kKinds[] = {"Put", "Overwrite", "Erase", "EraseAbsent", "Snapshot"};
  return os << kKinds[static_cast<int>(op.kind)] << "(" << Describe(op.family, op.key)
            << ", value \"" << HexBytes(op.value) << "\", pick " << op.pick << ")";
}

rc::Gen<FamilyTag> GenFamily() { return rc::gen::element<FamilyTag>(0, 1, 7); }

// Short keys over {a, b, NUL} repeat often, so puts overwrite and erases hit; arbitrary
// binary keys (empty ones and embedded NULs included) cover the rest.
rc::Gen<std::string> GenKey() {
  return rc::gen::weightedOneOf<std::string>({
      {3, rc::gen::mapcat(rc::gen::inRange(0, 4),
                          [](int n) {
                            return rc::gen::container<std::string>(
                                n, rc::gen::element('a', 'b', '\0'));
                          })},
      {1, rc::gen::container<std::string>(rc::gen::arbitrary<char>())},
  });
}

// Empty and tiny values, arbitrary binary ones, and some past LeafHash's one-shot limit.
rc::Gen<std::string> GenValue() {
  return rc::gen::weightedOneOf<std::string>({
      {3,
       rc::gen::element(std::string(), std::string("v"), std::string("w"), std::string("\0x", 2))},
      {2, rc::gen::container<std::string>(rc::gen::arbitrary<char>())},
      {1, rc::gen::map(rc::gen::inRange<size_t>(241, 600),
                       [](size_t n) { return std::string(n, 'z'); })},
  });
}

rc::Gen<Op> GenOp(bool snapshots) {
  auto kind = snapshots ? rc::gen::weightedElement<OpKind>({{4, OpKind::kPut},
                                                            {3, OpKind::kOverwrite},
                                                            {2, OpKind::kErase},
                                                            {1, OpKind::kEraseAbsent},
                                                            {1, OpKind::kSnapshot}})
                        : rc::gen::weightedElement<OpKind>({{4, OpKind::kPut},
                                                            {3, OpKind::kOverwrite},
                                                            {2, OpKind::kErase},
                                                            {1, OpKind::kEraseAbsent}});
  return rc::gen::apply(
      [](OpKind k, FamilyTag family, std::string key, std::string value, size_t pick) {
        return Op{k, family, std::move(key), std::move(value), pick};
      },
      kind, GenFamily(), GenKey(), GenValue(), rc::gen::arbitrary<size_t>());
}

rc::Gen<std::vector<Op>> GenOps(size_t max_ops = kMaxOps, bool snapshots = false) {
  return rc::gen::mapcat(rc::gen::inRange<size_t>(0, max_ops + 1), [snapshots](size_t n) {
    return rc::gen::container<std::vector<Op>>(n, GenOp(snapshots));
  });
}

// ---- A tree and its model ----

class ModelledTree {
 public:
  explicit ModelledTree(KeyHasher hasher) : tree_(hasher) {}

  // Applies a non-snapshot op to both; returns "" or what went wrong.
  std::string Apply(const Op& op) {
    Key key{op.family, op.key};
    if ((op.kind == OpKind::kOverwrite || op.kind == OpKind::kErase) && !model_.empty()) {
      key = std::next(model_.begin(), static_cast<long>(op.pick % model_.size()))->first;
    }
    if (op.kind == OpKind::kEraseAbsent) {
      while (model_.contains(key)) key.second += '\xff';
    }
    touched_.insert(key);
    if (op.kind == OpKind::kPut || op.kind == OpKind::kOverwrite) {
      Status s = tree_.Put(key.first, key.second, op.value);
      if (!s.ok()) return "Put " + Describe(key.first, key.second) + ": " + s.ToString();
      model_[key] = op.value;
    } else {
      bool present = model_.erase(key) > 0;
      if (tree_.Erase(key.first, key.second) != present) {
        return "Erase " + Describe(key.first, key.second) + " returned " +
               (present ? "false" : "true");
      }
    }
    return "";
  }

  MerkleTree& tree() { return tree_; }
  const MerkleTree& tree() const { return tree_; }
  const Model& model() const { return model_; }
  // Every key an op has put or erased, present or not.
  const std::set<Key>& touched() const { return touched_; }

 private:
  MerkleTree tree_;
  Model model_;
  std::set<Key> touched_;
};

// A tree holding `model`, built by puts in an order shuffled by `seed`.
MerkleTree Build(const Model& model, KeyHasher hasher, uint64_t seed) {
  std::vector<std::pair<Key, std::string>> entries(model.begin(), model.end());
  std::mt19937_64 rng(seed);
  std::shuffle(entries.begin(), entries.end(), rng);
  MerkleTree tree(hasher);
  for (const auto& [key, value] : entries) {
    Status s = tree.Put(key.first, key.second, value);
    if (!s.ok()) ADD_FAILURE() << s.ToString();
  }
  return tree;
}

// ---- Invariant checks ----

// What the structure walk saw.
struct TreeShape {
  int max_inner_depth = -1;
  bool depth_jump = false;  // an inner node deeper than its parent's depth + 1
};

struct WalkedLeaf {
  FamilyTag family;
  std::string key;
  Hash128 key_hash;
  Hash128 hash;
};

// Walks the trie from root(), checking the layout described in merkle_tree.h.
class StructureChecker {
 public:
  explicit StructureChecker(TreeShape* shape) : shape_(shape) {}

  std::string Check(const TreeView& tree) {
    NodeRef root = tree.root();
    if (root.empty()) {
      return tree.size() == 0 ? "" : "empty root with size " + std::to_string(tree.size());
    }
    Walk(root, -1);
    if (!error_.empty()) return error_;
    if (leaves_.size() != tree.size()) {
      return "walk found " + std::to_string(leaves_.size()) + " leaves, size() is " +
             std::to_string(tree.size());
    }
    for (size_t i = 1; i < leaves_.size(); ++i) {
      if (!KeyHashLess(leaves_[i - 1].key_hash, leaves_[i].key_hash)) {
        return "leaves out of key-hash order at " + Describe(leaves_[i].family, leaves_[i].key);
      }
    }
    return "";
  }

  const std::vector<WalkedLeaf>& leaves() const { return leaves_; }

 private:
  void Fail(const std::string& what) {
    if (error_.empty()) error_ = what;
  }

  // `parent_depth` is -1 for the root.
  void Walk(NodeRef node, int parent_depth) {
    if (node.empty()) return Fail("empty child node");
    if (node.is_leaf()) {
      Hash128 kh = node.key_hash();
      for (const auto& [depth, digit] : path_) {
        if (kh.digit(depth) != digit) {
          return Fail("leaf " + Describe(node.family(), node.key()) + " hangs under digit " +
                      std::to_string(digit) + " at depth " + std::to_string(depth) +
                      " but its key hash has " + std::to_string(kh.digit(depth)));
        }
      }
      leaves_.push_back({node.family(), std::string(node.key()), kh, node.hash()});
      return;
    }
    const int depth = node.depth();
    const std::string where = "inner node at depth " + std::to_string(depth);
    shape_->max_inner_depth = std::max(shape_->max_inner_depth, depth);
    if (depth <= parent_depth || depth >= 16) {
      return Fail(where + " under a parent at depth " + std::to_string(parent_depth));
    }
    if (depth > parent_depth + 1) shape_->depth_jump = true;
    if (node.child_count() < 2) {
      return Fail(where + " has " + std::to_string(node.child_count()) + " children");
    }
    Hash128 xor_of_children;
    size_t first_leaf = leaves_.size();
    for (int i = 0; i < node.child_count(); ++i) {
      uint8_t digit = node.child_digit(i);
      if (i > 0 && digit <= node.child_digit(i - 1)) {
        return Fail(where + ": child digits not strictly increasing");
      }
      NodeRef child = node.child(i);
      if (node.FindChild(digit).hash() != child.hash()) {
        return Fail(where + ": FindChild(" + std::to_string(digit) + ") is another child");
      }
      xor_of_children ^= child.hash();
      path_.emplace_back(depth, digit);
      Walk(child, depth);
      path_.pop_back();
      if (!error_.empty()) return;
    }
    if (node.hash() != xor_of_children) {
      return Fail(where + ": hash is not the XOR of its children's");
    }
    // Every leaf below shares the digits the collapsed chain skipped, and AnyKeyHash's.
    Hash128 any = node.AnyKeyHash();
    const Hash128& first = leaves_[first_leaf].key_hash;
    for (size_t i = first_leaf; i < leaves_.size(); ++i) {
      for (int d = parent_depth + 1; d < depth; ++d) {
        if (leaves_[i].key_hash.digit(d) != first.digit(d)) {
          return Fail(where + ": leaves below differ at skipped depth " + std::to_string(d));
        }
      }
    }
    for (int d = 0; d < depth; ++d) {
      if (any.digit(d) != first.digit(d)) {
        return Fail(where + ": AnyKeyHash is not of a leaf below");
      }
    }
  }

  TreeShape* shape_;
  std::vector<std::pair<int, uint8_t>> path_;  // (depth, digit) of each inner ancestor
  std::vector<WalkedLeaf> leaves_;
  std::string error_;
};

// Checks `tree` against `model`: size, root hash, structure, what the walk and ForEach
// visit, and Find for each of `probes`. Returns "" or the first thing that is wrong.
std::string CheckTree(const TreeView& tree, const Model& model, const std::set<Key>& probes,
                      TreeShape* shape = nullptr) {
  KeyHasher hasher = tree.hasher();
  if (tree.size() != model.size()) {
    return "size " + std::to_string(tree.size()) + ", model has " + std::to_string(model.size());
  }
  Hash128 xor_of_leaves;
  for (const auto& [key, value] : model) xor_of_leaves ^= ModelLeafHash(hasher, key, value);
  if (tree.root_hash() != xor_of_leaves) {
    return "root hash " + tree.root_hash().ToHex() + ", XOR of model leaves " +
           xor_of_leaves.ToHex();
  }

  TreeShape local_shape;
  StructureChecker checker(shape != nullptr ? shape : &local_shape);
  if (std::string error = checker.Check(tree); !error.empty()) return error;
  for (const WalkedLeaf& leaf : checker.leaves()) {
    auto it = model.find(Key{leaf.family, leaf.key});
    if (it == model.end()) {
      return "walk found " + Describe(leaf.family, leaf.key) + ", not in model";
    }
    if (leaf.hash != ModelLeafHash(hasher, it->first, it->second)) {
      return "walk found wrong leaf hash for " + Describe(leaf.family, leaf.key);
    }
  }

  std::vector<WalkedLeaf> visited;
  tree.ForEach([&](FamilyTag family, std::string_view key, const Hash128& hash) {
    visited.push_back({family, std::string(key), hasher(family, key), hash});
  });
  if (visited.size() != model.size()) {
    return "ForEach visited " + std::to_string(visited.size()) + " entries, model has " +
           std::to_string(model.size());
  }
  for (size_t i = 0; i < visited.size(); ++i) {
    const WalkedLeaf& v = visited[i];
    auto it = model.find(Key{v.family, v.key});
    if (it == model.end()) return "ForEach visited " + Describe(v.family, v.key) + ", not in model";
    if (v.hash != ModelLeafHash(hasher, it->first, it->second)) {
      return "ForEach gave wrong leaf hash for " + Describe(v.family, v.key);
    }
    if (i > 0 && !KeyHashLess(visited[i - 1].key_hash, v.key_hash)) {
      return "ForEach out of key-hash order at " + Describe(v.family, v.key);
    }
  }

  for (const Key& key : probes) {
    std::optional<Hash128> found = tree.Find(key.first, key.second);
    auto it = model.find(key);
    if (it == model.end()) {
      if (found) {
        return "Find " + Describe(key.first, key.second) + ": present, model has it absent";
      }
    } else if (!found) {
      return "Find " + Describe(key.first, key.second) + ": absent, model has it";
    } else if (*found != ModelLeafHash(hasher, key, it->second)) {
      return "Find " + Describe(key.first, key.second) + ": wrong leaf hash";
    }
  }
  return "";
}

std::set<Key> KeysOf(const Model& model) {
  std::set<Key> keys;
  for (const auto& entry : model) keys.insert(entry.first);
  return keys;
}

// ---- Diff against the models ----

std::vector<std::string> ExpectedDiff(const Model& a, const Model& b) {
  std::vector<std::string> out;
  for (const auto& [key, value] : a) {
    auto it = b.find(key);
    if (it == b.end()) {
      out.push_back(Describe({key.first, key.second, DiffKind::kOnlyInA}));
    } else if (it->second != value) {
      out.push_back(Describe({key.first, key.second, DiffKind::kValueDiffers}));
    }
  }
  for (const auto& [key, value] : b) {
    if (!a.contains(key)) out.push_back(Describe({key.first, key.second, DiffKind::kOnlyInB}));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The diff as a sorted list, with kOnlyInA and kOnlyInB swapped if `mirror`.
std::vector<std::string> AsSortedSet(const std::vector<DiffEntry>& diff, bool mirror = false) {
  std::vector<std::string> out;
  for (DiffEntry e : diff) {
    if (mirror && e.kind != DiffKind::kValueDiffers) {
      e.kind = e.kind == DiffKind::kOnlyInA ? DiffKind::kOnlyInB : DiffKind::kOnlyInA;
    }
    out.push_back(Describe(e));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Diff(a, b) is the models' symmetric difference, and Diff(b, a) its mirror image.
void RcCheckDiff(const TreeView& a, const Model& ma, const TreeView& b, const Model& mb) {
  std::vector<std::string> expected = ExpectedDiff(ma, mb);
  RC_ASSERT(AsSortedSet(Diff(a, b)) == expected);
  RC_ASSERT(AsSortedSet(Diff(b, a), /*mirror=*/true) == expected);
}

// "" if every entry of `diff` comes after the previous one in key-hash order, as
// merkle_tree.h promises.
std::string CheckKeyHashOrder(const std::vector<DiffEntry>& diff, KeyHasher hasher) {
  for (size_t i = 1; i < diff.size(); ++i) {
    Hash128 prev = hasher(diff[i - 1].family, diff[i - 1].key);
    Hash128 cur = hasher(diff[i].family, diff[i].key);
    if (!KeyHashLess(prev, cur)) {
      return "Diff entry " + Describe(diff[i]) + " (key hash " + cur.ToHex() + ") follows " +
             Describe(diff[i - 1]) + " (key hash " + prev.ToHex() + ")";
    }
  }
  return "";
}

// ---- Properties, each run with every hasher ----

void MatchesModelAfterEveryStep(KeyHasher hasher) {
  ModelledTree t(hasher);
  for (const Op& op : *GenOps()) {
    RcRequire(t.Apply(op));
    RcRequire(CheckTree(t.tree(), t.model(), t.touched()));
  }
}

void RootHashDependsOnlyOnContents(KeyHasher hasher) {
  ModelledTree t(hasher);
  for (const Op& op : *GenOps()) RcRequire(t.Apply(op));
  const Model& model = t.model();

  MerkleTree shuffled = Build(model, hasher, *rc::gen::arbitrary<uint64_t>());

  // Another order, with overwritten values and extra keys along the way.
  std::vector<std::pair<Key, std::string>> entries(model.begin(), model.end());
  std::mt19937_64 rng(*rc::gen::arbitrary<uint64_t>());
  std::shuffle(entries.begin(), entries.end(), rng);
  std::vector<Key> extras;
  for (const std::string& k : *rc::gen::container<std::vector<std::string>>(GenKey())) {
    Key extra{*GenFamily(), k};
    while (model.contains(extra)) extra.second += '\x01';
    extras.push_back(extra);
  }
  MerkleTree noisy(hasher);
  size_t next_extra = 0;
  for (const auto& [key, value] : entries) {
    if (rng() % 2) RC_ASSERT(noisy.Put(key.first, key.second, value + "stale").ok());
    if (next_extra < extras.size()) {
      RC_ASSERT(noisy.Put(extras[next_extra].first, extras[next_extra].second, "extra").ok());
      ++next_extra;
    }
    RC_ASSERT(noisy.Put(key.first, key.second, value).ok());
  }
  for (const Key& extra : extras) noisy.Erase(extra.first, extra.second);

  RC_ASSERT(shuffled.root_hash().ToHex() == t.tree().root_hash().ToHex());
  RC_ASSERT(noisy.root_hash().ToHex() == t.tree().root_hash().ToHex());
  RcRequire(CheckTree(shuffled, model, KeysOf(model)));
  RcRequire(CheckTree(noisy, model, KeysOf(model)));
}

void DifferentContentsGiveDifferentRootHashes(KeyHasher hasher) {
  ModelledTree a(hasher);
  for (const Op& op : *GenOps()) RcRequire(a.Apply(op));
  Hash128 a_root = a.tree().root_hash();

  // One change to a copy that shares a's nodes: a new key, a new value or one key fewer.
  MerkleTree changed = a.tree();
  Model changed_model = a.model();
  const int change = a.model().empty() ? 0 : *rc::gen::inRange(0, 3);
  if (change == 0) {
    Key key{*GenFamily(), *GenKey()};
    while (changed_model.contains(key)) key.second += '\x01';
    std::string value = *GenValue();
    RC_ASSERT(changed.Put(key.first, key.second, value).ok());
    changed_model[key] = value;
  } else {
    size_t index = *rc::gen::inRange<size_t>(0, a.model().size());
    const auto& [key, value] = *std::next(a.model().begin(), static_cast<long>(index));
    if (change == 1) {
      RC_ASSERT(changed.Put(key.first, key.second, value + "!").ok());
      changed_model[key] = value + "!";
    } else {
      RC_ASSERT(changed.Erase(key.first, key.second));
      changed_model.erase(key);
    }
  }
  RC_ASSERT(changed.root_hash().ToHex() != a_root.ToHex());
  RC_ASSERT(a.tree().root_hash().ToHex() == a_root.ToHex());
  RC_ASSERT(Build(changed_model, hasher, 1).root_hash().ToHex() == changed.root_hash().ToHex());

  // Two unrelated histories: equal roots exactly when the contents are equal.
  ModelledTree b(hasher);
  for (const Op& op : *GenOps(20)) RcRequire(b.Apply(op));
  ModelledTree c(hasher);
  for (const Op& op : *GenOps(20)) RcRequire(c.Apply(op));
  RC_ASSERT((b.model() == c.model()) == (b.tree().root_hash() == c.tree().root_hash()));
}

void DiffIsTheModelsSymmetricDifference(KeyHasher hasher) {
  ModelledTree a(hasher);
  for (const Op& op : *GenOps(kMaxOps / 2)) RcRequire(a.Apply(op));
  ModelledTree b = a;  // shares every node with a until they are written
  for (const Op& op : *GenOps(kMaxOps / 2)) RcRequire(a.Apply(op));
  for (const Op& op : *GenOps(kMaxOps / 2)) RcRequire(b.Apply(op));
  MerkleTree fresh_b = Build(b.model(), hasher, *rc::gen::arbitrary<uint64_t>());

  RcCheckDiff(a.tree(), a.model(), b.tree(), b.model());
  RcCheckDiff(a.tree(), a.model(), fresh_b, b.model());
  RC_ASSERT(Diff(a.tree(), a.tree()).empty());
  RC_ASSERT(Diff(a.tree(), a.tree().Snapshot()).empty());
  RC_ASSERT(Diff(b.tree(), fresh_b).empty());
  RC_ASSERT(Diff(TreeView(hasher), TreeView(hasher)).empty());
  RcCheckDiff(TreeView(hasher), Model(), a.tree(), a.model());
}

void DiffIsInKeyHashOrder(KeyHasher hasher) {
  ModelledTree a(hasher);
  for (const Op& op : *GenOps(kMaxOps / 2)) RcRequire(a.Apply(op));
  ModelledTree b = a;
  for (const Op& op : *GenOps(kMaxOps / 2)) RcRequire(a.Apply(op));
  for (const Op& op : *GenOps(kMaxOps / 2)) RcRequire(b.Apply(op));
  RcRequire(CheckKeyHashOrder(Diff(a.tree(), b.tree()), hasher));
}

void SnapshotsKeepTheirContents(KeyHasher hasher) {
  ModelledTree live(hasher);
  std::vector<std::pair<TreeView, Model>> snapshots;
  for (const Op& op : *GenOps(kMaxOps, /*snapshots=*/true)) {
    if (op.kind != OpKind::kSnapshot) {
      RcRequire(live.Apply(op));
    } else if (op.pick % 4 == 0 && !snapshots.empty()) {
      // Dropping a snapshot releases the nodes only it still holds.
      snapshots.erase(snapshots.begin() + static_cast<long>(op.pick % snapshots.size()));
    } else {
      snapshots.emplace_back(live.tree().Snapshot(), live.model());
    }
  }
  for (const auto& [view, model] : snapshots) {
    RcRequire(CheckTree(view, model, live.touched()));
    RC_ASSERT(view.root_hash().ToHex() == Build(model, hasher, 7).root_hash().ToHex());
    RcCheckDiff(view, model, live.tree(), live.model());
  }
  RcRequire(CheckTree(live.tree(), live.model(), live.touched()));
}

// Prefetching paths (of keys present, absent and erased, in groups larger
// than PrefetchPaths walks at once) changes neither the tree nor a snapshot
// that shares its nodes.
void PrefetchingPathsChangesNothing(KeyHasher hasher) {
  ModelledTree live(hasher);
  std::vector<std::pair<TreeView, Model>> snapshots;
  for (const Op& op : *GenOps(kMaxOps, /*snapshots=*/true)) {
    if (op.kind != OpKind::kSnapshot) {
      RcRequire(live.Apply(op));
      continue;
    }
    snapshots.emplace_back(live.tree().Snapshot(), live.model());
    std::vector<Hash128> hashes;
    for (const auto& [family, key] : live.touched()) hashes.push_back(hasher(family, key));
    hashes.push_back(hasher(0, "never written"));
    live.tree().PrefetchPaths(hashes);
    RcRequire(CheckTree(live.tree(), live.model(), live.touched()));
  }
  for (const auto& [view, model] : snapshots) RcRequire(CheckTree(view, model, live.touched()));
}

#define SDIFF_PROP_WITH_EVERY_HASHER(Name)                                                \
  RC_GTEST_PROP(MerkleTreeProperty, Name, ()) { Name(&KeyHash); }                         \
  RC_GTEST_PROP(MerkleTreeProperty, Name##DeepTrie, ()) { Name(&PrefixCollidingHasher); } \
  RC_GTEST_PROP(MerkleTreeProperty, Name##BunchedDigits, ()) { Name(&BunchedDigitsHasher); }

SDIFF_PROP_WITH_EVERY_HASHER(MatchesModelAfterEveryStep)
SDIFF_PROP_WITH_EVERY_HASHER(RootHashDependsOnlyOnContents)
SDIFF_PROP_WITH_EVERY_HASHER(DifferentContentsGiveDifferentRootHashes)
SDIFF_PROP_WITH_EVERY_HASHER(DiffIsTheModelsSymmetricDifference)
SDIFF_PROP_WITH_EVERY_HASHER(DiffIsInKeyHashOrder)
SDIFF_PROP_WITH_EVERY_HASHER(SnapshotsKeepTheirContents)
SDIFF_PROP_WITH_EVERY_HASHER(PrefetchingPathsChangesNothing)

// ---- Fixed cases ----

Model NumberedModel(int count, FamilyTag family = 0) {
  Model model;
  for (int i = 0; i < count; ++i) {
    model[{family, "key" + std::to_string(i)}] = "v" + std::to_string(i % 7);
  }
  return model;
}

// Proves the seam works: with PrefixCollidingHasher the trie is deep and collapses chains.
TEST(MerkleTreeShapeTest, PrefixCollidingHasherMakesCollapsedChains) {
  Model model = NumberedModel(300);
  MerkleTree tree = Build(model, &PrefixCollidingHasher, 1);
  TreeShape shape;
  ASSERT_EQ(CheckTree(tree, model, KeysOf(model), &shape), "");
  EXPECT_TRUE(shape.depth_jump);
  EXPECT_GE(shape.max_inner_depth, 3);

  // Erasing collapses nodes left with one child into their parents' chains.
  for (int i = 0; i < 300; i += 2) {
    Key key{0, "key" + std::to_string(i)};
    ASSERT_TRUE(tree.Erase(key.first, key.second));
    model.erase(key);
    ASSERT_EQ(CheckTree(tree, model, {key}), "") << "after erasing key" << i;
  }
}

TEST(MerkleTreeShapeTest, TwentyThousandRealKeysMakeThreeLevels) {
  Model model = NumberedModel(20000);
  MerkleTree tree = Build(model, &KeyHash, 2);
  TreeShape shape;
  ASSERT_EQ(CheckTree(tree, model, KeysOf(model), &shape), "");
  EXPECT_GE(shape.max_inner_depth, 2);

  TreeView before = tree.Snapshot();
  Model before_model = model;
  for (int i = 0; i < 20000; i += 2) {
    ASSERT_TRUE(tree.Erase(0, "key" + std::to_string(i)));
    model.erase({0, "key" + std::to_string(i)});
  }
  ASSERT_TRUE(tree.Put(0, "key1", "changed").ok());
  model[{0, "key1"}] = "changed";
  ASSERT_EQ(CheckTree(tree, model, KeysOf(before_model)), "");
  ASSERT_EQ(CheckTree(before, before_model, KeysOf(before_model)), "");
  EXPECT_EQ(AsSortedSet(Diff(before, tree)), ExpectedDiff(before_model, model));
}

// Inner nodes of hundreds of children whose digits bunch far from an even
// spread: every key is still found where it is, and only there.
TEST(MerkleTreeShapeTest, TwentyThousandKeysWithBunchedDigits) {
  Model model = NumberedModel(20000);
  MerkleTree tree = Build(model, &BunchedDigitsHasher, 3);
  ASSERT_EQ(CheckTree(tree, model, KeysOf(model)), "");
  Model all = model;
  for (int i = 0; i < 20000; i += 3) {
    ASSERT_TRUE(tree.Erase(0, "key" + std::to_string(i)));
    model.erase({0, "key" + std::to_string(i)});
  }
  ASSERT_EQ(CheckTree(tree, model, KeysOf(all)), "");
  EXPECT_EQ(tree.root_hash(), Build(model, &BunchedDigitsHasher, 4).root_hash());
}

// Takes the key hash from the key itself, 32 hex digits, so a test can put keys exactly
// where it wants them in the trie.
Hash128 HexKeyHasher(FamilyTag, std::string_view key) {
  uint8_t bytes[16] = {};
  for (size_t i = 0; i < 16 && 2 * i + 1 < key.size(); ++i) {
    bytes[i] = static_cast<uint8_t>(std::stoi(std::string(key.substr(2 * i, 2)), nullptr, 16));
  }
  return Hash128::FromBytes(bytes);
}

// Diff promises key-hash order, also where the two tries hold subtrees at the same
// place under different hash prefixes; pairing their children by the digit at the
// deeper branch depth alone would interleave them.
TEST(MerkleTreeDiffTest, DiffIsInKeyHashOrderWhenPrefixesDiffer) {
  // Real key hashes: k0 = 013ac1..., k359 = 016475..., so a's root branches at depth 1
  // under prefix 01; b is the single leaf k1 = 3f02cb..., which must come out last.
  MerkleTree a, b;
  ASSERT_TRUE(a.Put(0, "k0", "v").ok());
  ASSERT_TRUE(a.Put(0, "k359", "v").ok());
  ASSERT_TRUE(b.Put(0, "k1", "v").ok());
  ASSERT_EQ(a.root().depth(), 1);
  std::vector<DiffEntry> diff = Diff(a, b);
  EXPECT_EQ(AsSortedSet(diff),
            ExpectedDiff({{{0, "k0"}, "v"}, {{0, "k359"}, "v"}}, {{{0, "k1"}, "v"}}));
  EXPECT_EQ(CheckKeyHashOrder(diff, &KeyHash), "");

  // Both roots branch at depth 2, under prefixes 00 01 and 00 02: all of c, then all of d.
  MerkleTree c(&HexKeyHasher), d(&HexKeyHasher);
  ASSERT_TRUE(c.Put(0, "00010500000000000000000000000000", "x").ok());
  ASSERT_TRUE(c.Put(0, "00010600000000000000000000000000", "x").ok());
  ASSERT_TRUE(d.Put(0, "00020000000000000000000000000000", "x").ok());
  ASSERT_TRUE(d.Put(0, "00020100000000000000000000000000", "x").ok());
  ASSERT_EQ(c.root().depth(), 2);
  ASSERT_EQ(d.root().depth(), 2);
  diff = Diff(c, d);
  EXPECT_EQ(diff.size(), 4u);
  EXPECT_EQ(CheckKeyHashOrder(diff, &HexKeyHasher), "");
}

// A thread reads a snapshot while this one keeps writing the tree it came from.
void ReadSnapshotWhileWriting(KeyHasher hasher) {
  constexpr int kKeys = 2000;
  constexpr int kReads = 200;
  constexpr int kMaxWrites = 400000;
  MerkleTree tree = Build(NumberedModel(kKeys), hasher, 3);
  const TreeView snapshot = tree.Snapshot();
  std::vector<WalkedLeaf> expected;
  snapshot.ForEach([&](FamilyTag family, std::string_view key, const Hash128& hash) {
    expected.push_back({family, std::string(key), Hash128{}, hash});
  });
  const Hash128 expected_root = snapshot.root_hash();

  std::atomic<bool> writing{false};
  std::atomic<bool> reader_done{false};
  int mismatches = 0;
  std::thread reader([&] {
    // Reading before the writer runs would test nothing: on a busy machine
    // this thread could finish every round before the writer is scheduled.
    while (!writing.load(std::memory_order_acquire)) std::this_thread::yield();
    for (int round = 0; round < kReads; ++round) {
      TreeView view = snapshot;  // copying races the writer's reference counting
      size_t i = 0;
      view.ForEach([&](FamilyTag family, std::string_view key, const Hash128& hash) {
        if (i >= expected.size() || expected[i].family != family || expected[i].key != key ||
            expected[i].hash != hash) {
          ++mismatches;
        }
        ++i;
      });
      if (i != expected.size()) ++mismatches;
      for (int k = 0; k < 20; ++k) {
        const WalkedLeaf& e = expected[(round * 20 + k) % expected.size()];
        std::optional<Hash128> found = view.Find(e.family, e.key);
        if (!found || *found != e.hash) ++mismatches;
      }
      if (view.Find(0, "absent") || view.root_hash() != expected_root ||
          view.size() != expected.size()) {
        ++mismatches;
      }
    }
    reader_done.store(true, std::memory_order_release);
  });

  int writes = 0;
  int write_failures = 0;
  writing.store(true, std::memory_order_release);
  // At least one write, even if the reader is done before this thread runs again.
  for (; writes == 0 || (writes < kMaxWrites && !reader_done.load(std::memory_order_acquire));
       ++writes) {
    std::string key = "key" + std::to_string(writes % (2 * kKeys));
    switch (writes % 5) {
      case 0:
      case 1:
        write_failures += !tree.Put(0, key, "w" + std::to_string(writes)).ok();
        break;
      case 2:
        tree.Erase(0, key);
        break;
      case 3:
        write_failures += !tree.Put(1, key, "").ok();
        break;
      case 4: {
        TreeView brief = tree.Snapshot();  // so later writes copy shared nodes again
        break;
      }
    }
  }
  reader.join();
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(write_failures, 0);
  Model model = NumberedModel(kKeys);
  EXPECT_EQ(CheckTree(snapshot, model, KeysOf(model)), "");
}

TEST(MerkleTreeConcurrencyTest, SnapshotReadWhileTreeIsWritten) {
  ReadSnapshotWhileWriting(&KeyHash);
}

TEST(MerkleTreeConcurrencyTest, SnapshotReadWhileDeepTreeIsWritten) {
  ReadSnapshotWhileWriting(&PrefixCollidingHasher);
}

}  // namespace
}  // namespace sdiff
