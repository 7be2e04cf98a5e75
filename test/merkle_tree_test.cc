// Behaviour of the merkle tree on hand-picked cases; merkle_tree_property_test.cc
// checks it against a model on random operation sequences.
#include "engine/merkle_tree.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/node_slabs.h"

namespace sdiff {
namespace {

using namespace std::string_literals;

TEST(MerkleTreeTest, EmptyTreeHasZeroRoot) {
  MerkleTree tree;
  EXPECT_EQ(tree.size(), 0u);
  EXPECT_TRUE(tree.root_hash().is_zero());
  EXPECT_FALSE(tree.Find(0, "a"));
  EXPECT_FALSE(tree.Erase(0, "a"));
}

TEST(MerkleTreeTest, PutFindOverwriteErase) {
  MerkleTree tree;
  ASSERT_TRUE(tree.Put(0, "key", "v1").ok());
  EXPECT_EQ(tree.size(), 1u);
  EXPECT_EQ(*tree.Find(0, "key"), LeafHash(KeyHash(0, "key"), "v1"));
  EXPECT_EQ(tree.root_hash(), LeafHash(KeyHash(0, "key"), "v1"));
  ASSERT_TRUE(tree.Put(0, "key", "v2").ok());
  EXPECT_EQ(tree.size(), 1u);
  EXPECT_EQ(*tree.Find(0, "key"), LeafHash(KeyHash(0, "key"), "v2"));
  EXPECT_TRUE(tree.Erase(0, "key"));
  EXPECT_EQ(tree.size(), 0u);
  EXPECT_TRUE(tree.root_hash().is_zero());
}

TEST(MerkleTreeTest, FamiliesSeparateEqualKeys) {
  MerkleTree tree;
  ASSERT_TRUE(tree.Put(0, "k", "a").ok());
  ASSERT_TRUE(tree.Put(1, "k", "b").ok());
  EXPECT_EQ(tree.size(), 2u);
  EXPECT_NE(*tree.Find(0, "k"), *tree.Find(1, "k"));
  EXPECT_TRUE(tree.Erase(1, "k"));
  EXPECT_TRUE(tree.Find(0, "k"));
  EXPECT_FALSE(tree.Find(1, "k"));
}

TEST(MerkleTreeTest, BinaryKeysEmptyValuesAndLargeValues) {
  MerkleTree tree;
  std::string nul_key = "a\0b"s;
  std::string long_key(70000, 'k');
  std::string big_value(1 << 20, 'v');
  ASSERT_TRUE(tree.Put(0, nul_key, "").ok());
  ASSERT_TRUE(tree.Put(0, "a", "").ok());
  ASSERT_TRUE(tree.Put(0, long_key, big_value).ok());
  EXPECT_EQ(tree.size(), 3u);
  EXPECT_EQ(*tree.Find(0, nul_key), LeafHash(KeyHash(0, nul_key), ""));
  EXPECT_EQ(*tree.Find(0, long_key), LeafHash(KeyHash(0, long_key), big_value));
  size_t seen = 0;
  tree.ForEach([&](FamilyTag, std::string_view key, const Hash128&) {
    seen++;
    EXPECT_TRUE(key == nul_key || key == "a" || key == long_key);
  });
  EXPECT_EQ(seen, 3u);
}

TEST(MerkleTreeTest, RootIsXorOfLeafHashes) {
  MerkleTree tree;
  Hash128 expected;
  for (int i = 0; i < 1000; ++i) {
    std::string key = "key" + std::to_string(i);
    ASSERT_TRUE(tree.Put(0, key, "value").ok());
    expected ^= LeafHash(KeyHash(0, key), "value");
  }
  EXPECT_EQ(tree.root_hash(), expected);
}

TEST(MerkleTreeTest, SnapshotIsUnchangedByLaterWrites) {
  MerkleTree tree;
  for (int i = 0; i < 500; ++i) ASSERT_TRUE(tree.Put(0, std::to_string(i), "a").ok());
  TreeView snap = tree.Snapshot();
  Hash128 root = snap.root_hash();
  for (int i = 0; i < 500; i += 2) ASSERT_TRUE(tree.Put(0, std::to_string(i), "b").ok());
  for (int i = 1; i < 500; i += 4) tree.Erase(0, std::to_string(i));
  for (int i = 500; i < 700; ++i) ASSERT_TRUE(tree.Put(0, std::to_string(i), "c").ok());
  EXPECT_EQ(snap.root_hash(), root);
  EXPECT_EQ(snap.size(), 500u);
  EXPECT_EQ(*snap.Find(0, "2"), LeafHash(KeyHash(0, "2"), "a"));
  EXPECT_TRUE(snap.Find(0, "1"));
  EXPECT_FALSE(snap.Find(0, "600"));
}

TEST(MerkleTreeTest, DiffReportsEachKind) {
  MerkleTree a, b;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(a.Put(0, std::to_string(i), "x").ok());
    ASSERT_TRUE(b.Put(0, std::to_string(i), "x").ok());
  }
  ASSERT_TRUE(a.Put(0, "only-a", "1").ok());
  ASSERT_TRUE(b.Put(3, "only-b", "1").ok());
  ASSERT_TRUE(b.Put(0, "7", "changed").ok());
  auto diff = Diff(a, b);
  ASSERT_EQ(diff.size(), 3u);
  std::vector<DiffEntry> expected = {{0, "only-a", DiffKind::kOnlyInA},
                                     {3, "only-b", DiffKind::kOnlyInB},
                                     {0, "7", DiffKind::kValueDiffers}};
  for (const DiffEntry& e : expected) {
    EXPECT_NE(std::find(diff.begin(), diff.end(), e), diff.end()) << e.key;
  }
  EXPECT_TRUE(Diff(a, a).empty());
}

Hash128 ConstantHasher(FamilyTag, std::string_view) { return Hash128{1, 2}; }

// The tree a set of entries gives, whatever the order they were put in.
MerkleTree TreeOf(const std::vector<std::pair<std::string, std::string>>& entries,
                  FamilyTag family = 0) {
  MerkleTree tree(&ConstantHasher);
  for (const auto& [key, value] : entries) EXPECT_TRUE(tree.Put(family, key, value).ok());
  return tree;
}

TEST(MerkleTreeTest, CollidingKeysLeaveTheLeastInTheTrieWhateverTheOrder) {
  MerkleTree ab = TreeOf({{"a", "1"}, {"b", "2"}});
  MerkleTree ba = TreeOf({{"b", "2"}, {"a", "1"}});
  for (const MerkleTree* tree : {&ab, &ba}) {
    EXPECT_EQ(tree->size(), 1u);
    EXPECT_EQ(tree->left_out(), 1u);
    EXPECT_EQ(tree->Find(0, "a"), LeafHash(Hash128{1, 2}, "1"));
    EXPECT_FALSE(tree->Find(0, "b"));
    EXPECT_EQ(tree->root_hash(), LeafHash(Hash128{1, 2}, "1"));
  }
  EXPECT_TRUE(Diff(ab, ba).empty());
  // Families order before keys.
  MerkleTree families(&ConstantHasher);
  ASSERT_TRUE(families.Put(1, "a", "x").ok());
  ASSERT_TRUE(families.Put(0, "z", "y").ok());
  EXPECT_TRUE(families.Find(0, "z"));
  EXPECT_FALSE(families.Find(1, "a"));
}

TEST(MerkleTreeTest, ErasingTheKeyInTheTrieBringsInTheNextLeast) {
  MerkleTree tree = TreeOf({{"c", "3"}, {"a", "1"}, {"b", "2"}, {"b", "2'"}});
  TreeView before = tree.Snapshot();
  EXPECT_EQ(tree.left_out(), 2u);
  EXPECT_TRUE(tree.Erase(0, "a"));
  EXPECT_EQ(tree.size(), 1u);
  EXPECT_EQ(tree.left_out(), 1u);
  EXPECT_EQ(tree.Find(0, "b"), LeafHash(Hash128{1, 2}, "2'"));  // its latest value
  EXPECT_EQ(tree.root_hash(), TreeOf({{"b", "2'"}, {"c", "3"}}).root_hash());
  EXPECT_EQ(before.Find(0, "a"), LeafHash(Hash128{1, 2}, "1"));  // a view keeps what it saw
  EXPECT_TRUE(tree.Erase(0, "c"));                               // a key aside
  EXPECT_EQ(tree.left_out(), 0u);
  EXPECT_EQ(tree.Find(0, "b"), LeafHash(Hash128{1, 2}, "2'"));
  EXPECT_FALSE(tree.Erase(0, "c"));
  EXPECT_TRUE(tree.Erase(0, "b"));
  EXPECT_EQ(tree.size(), 0u);
  EXPECT_TRUE(tree.root_hash().is_zero());
}

TEST(MerkleTreeTest, EraseRangeRemovesKeysAsideToo) {
  MerkleTree tree = TreeOf({{"a", "1"}, {"b", "2"}, {"c", "3"}});
  tree.EraseRange(0, "a", "c");
  EXPECT_EQ(tree.size(), 1u);
  EXPECT_EQ(tree.left_out(), 0u);
  EXPECT_EQ(tree.root_hash(), TreeOf({{"c", "3"}}).root_hash());
  tree.EraseRange(1, "a", "z");  // another family: nothing
  EXPECT_EQ(tree.size(), 1u);
  tree.Clear();
  EXPECT_EQ(tree.left_out(), 0u);
}

// Keys k0..k23 fall in four buckets of one key hash each (by their number mod 4).
Hash128 BucketHasher(FamilyTag family, std::string_view key) {
  return Hash128{family, static_cast<uint64_t>(std::stoi(std::string(key.substr(1))) % 4)};
}

// Random puts, erases and range deletes over colliding keys: the tree kept up
// to date equals one built from the final data in any order, and holds the
// least key of each bucket with its latest value.
TEST(MerkleTreeTest, CollidingKeysGiveTheTreeOfTheDataWhateverTheHistory) {
  std::mt19937_64 rng(20261203);
  for (int round = 0; round < 200; ++round) {
    MerkleTree tree(&BucketHasher);
    std::map<std::pair<FamilyTag, std::string>, std::string> data;
    for (int op = 0; op < 60; ++op) {
      FamilyTag family = static_cast<FamilyTag>(rng() % 2);
      std::string key = "k" + std::to_string(rng() % 24);
      switch (rng() % 5) {
        case 0:
        case 1:
        case 2: {
          std::string value = std::to_string(rng() % 1000);
          ASSERT_TRUE(tree.Put(family, key, value).ok());
          data[{family, key}] = value;
          break;
        }
        case 3:
          EXPECT_EQ(tree.Erase(family, key), data.erase({family, key}) > 0) << key;
          break;
        case 4: {
          std::string end = "k" + std::to_string(rng() % 24);
          tree.EraseRange(family, key, end);
          auto first = data.lower_bound({family, key});
          auto last = data.lower_bound({family, end});
          if (key < end) data.erase(first, last);
          break;
        }
      }
    }
    std::vector<std::pair<std::pair<FamilyTag, std::string>, std::string>> entries(data.begin(),
                                                                                   data.end());
    std::shuffle(entries.begin(), entries.end(), rng);
    MerkleTree rebuilt(&BucketHasher);
    for (const auto& [fk, value] : entries)
      ASSERT_TRUE(rebuilt.Put(fk.first, fk.second, value).ok());
    // Expected: per key hash, the least key (data is ordered) with its value.
    std::map<std::pair<uint64_t, uint64_t>, Hash128> least;
    for (const auto& [fk, value] : data) {
      Hash128 h = BucketHasher(fk.first, fk.second);
      least.emplace(std::make_pair(h.hi, h.lo), LeafHash(h, value));
    }
    Hash128 root;
    for (const auto& [h, leaf] : least) root ^= leaf;
    ASSERT_EQ(tree.root_hash(), root) << "round " << round;
    ASSERT_EQ(rebuilt.root_hash(), root) << "round " << round;
    ASSERT_EQ(tree.size(), least.size());
    ASSERT_EQ(tree.left_out(), data.size() - least.size());
    ASSERT_EQ(rebuilt.left_out(), data.size() - least.size());
    ASSERT_TRUE(Diff(tree, rebuilt).empty());
  }
}

// Every inner node's hash is the XOR of its children's; "" or where not.
std::string CheckHashes(const NodeRef& node) {
  if (!node.is_inner()) return "";
  Hash128 sum;
  for (int i = 0; i < node.child_count(); ++i) {
    sum ^= node.child(i).hash();
    std::string error = CheckHashes(node.child(i));
    if (!error.empty()) return error;
  }
  return sum == node.hash() ? "" : "node at depth " + std::to_string(node.depth());
}

// PrefetchPaths only reads: on an empty tree, a tree of one leaf, and a
// tree of 5,000 keys given 301 hashes at once (present, absent, repeated),
// every node keeps its hash, equal to that of a tree built apart.
TEST(MerkleTreeTest, PrefetchPathsChangesNothing) {
  MerkleTree tree;
  std::vector<Hash128> hashes = {KeyHash(0, "a"), KeyHash(0, "a")};
  tree.PrefetchPaths(hashes);
  EXPECT_EQ(tree.size(), 0u);
  ASSERT_TRUE(tree.Put(0, "a", "v").ok());
  tree.PrefetchPaths(hashes);
  EXPECT_EQ(tree.root_hash(), LeafHash(KeyHash(0, "a"), "v"));

  MerkleTree apart;
  ASSERT_TRUE(apart.Put(0, "a", "v").ok());
  for (int i = 0; i < 5000; ++i) {
    ASSERT_TRUE(tree.Put(0, std::to_string(i), "v").ok());
    ASSERT_TRUE(apart.Put(0, std::to_string(i), "v").ok());
  }
  hashes.clear();
  for (int i = 0; i < 301; ++i) hashes.push_back(KeyHash(0, std::to_string(i * 37 % 6000)));
  tree.PrefetchPaths(hashes);
  tree.PrefetchPaths({});
  EXPECT_EQ(tree.size(), 5001u);
  EXPECT_EQ(tree.root_hash(), apart.root_hash());
  EXPECT_EQ(CheckHashes(tree.root()), "");
  EXPECT_TRUE(Diff(tree, apart).empty());
  for (int i = 0; i < 5000; ++i) {
    ASSERT_EQ(tree.Find(0, std::to_string(i)), LeafHash(KeyHash(0, std::to_string(i)), "v"));
  }
}

// Nodes live in node_slabs: a view dropped on another thread frees nodes the
// writer allocated, and those blocks must come back to the writer's next
// nodes, so rounds of erasing and inserting keep the slabs they had.
TEST(MerkleTreeTest, NodesFreedOnAnotherThreadAreReused) {
  MerkleTree tree;
  TreeView expected;
  size_t slab_bytes_after_first = 0;
  for (int round = 0; round < 12; ++round) {
    for (int i = 0; i < 3000; ++i) {
      ASSERT_TRUE(tree.Put(0, "k" + std::to_string(round) + "/" + std::to_string(i), "v").ok());
    }
    TreeView view = tree.Snapshot();
    for (int i = 0; i < 3000; ++i) {
      ASSERT_TRUE(tree.Erase(0, "k" + std::to_string(round) + "/" + std::to_string(i)));
    }
    EXPECT_EQ(view.size(), 3000u);
    EXPECT_EQ(CheckHashes(view.root()), "");
    // The view holds the round's only copy of its nodes; another thread drops it.
    std::thread([v = std::move(view)]() mutable { v = TreeView(); }).join();
    EXPECT_EQ(tree.size(), 0u);
    if (round == 0) slab_bytes_after_first = node_slabs::GetStats().slab_bytes;
  }
  node_slabs::Stats stats = node_slabs::GetStats();
  // Later rounds reuse the first round's blocks (one more slab of slack for
  // blocks of sizes the rounds' nodes did not share).
  EXPECT_LE(stats.slab_bytes, slab_bytes_after_first + 2 * 64 * 1024);
  EXPECT_LE(stats.free_bytes, stats.slab_bytes);
}

}  // namespace
}  // namespace sdiff
