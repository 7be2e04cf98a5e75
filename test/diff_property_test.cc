// The diff between a master and a follower joined in memory converges for
// random data and random differences: with the real key hasher, with one that
// forces long shared key-hash prefixes (deep tries with collapsed chains),
// and with one-byte truncated hashes, whose collisions hide differences that
// the residue check finds, so the master diffs again with a new salt.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/hash.h"
#include "engine/merkle_tree.h"
#include "engine/sync.h"
#include "engine/testing/link.h"
#include "engine/testing/memory_replica.h"

namespace sdiff::testing {
namespace {

// The real key hash with its first ten digits cut to 0 or 1.
Hash128 DeepTrieHasher(FamilyTag family, std::string_view key) {
  uint8_t bytes[16];
  KeyHash(family, key).ToBytes(bytes);
  for (int i = 0; i < 10; ++i) bytes[i] &= 1;
  return Hash128::FromBytes(bytes);
}

// Only the last five digits of the real key hash: every key shares an
// 11-digit prefix, so the trie is one long chain, then a few levels.
Hash128 LastDigitsHasher(FamilyTag family, std::string_view key) {
  uint8_t bytes[16];
  KeyHash(family, key).ToBytes(bytes);
  for (int i = 0; i < 11; ++i) bytes[i] = 0;
  return Hash128::FromBytes(bytes);
}

// The real key hash with its first digit cut to 0 or 1.
Hash128 TwoFirstDigitsHasher(FamilyTag family, std::string_view key) {
  uint8_t bytes[16];
  KeyHash(family, key).ToBytes(bytes);
  bytes[0] &= 1;
  return Hash128::FromBytes(bytes);
}

Op Put(std::string key, std::string value) {
  return Op{OpKind::kPut, 0, std::move(key), std::move(value)};
}

struct Outcome {
  LinkStats stats;
  bool converged = false;
};

// n keys on the master; the follower has them with d random differences
// (changed values, missing keys, extra keys), resumes and diffs.
Outcome DiffOnce(KeyHasher hasher, uint8_t hash_bytes, size_t n, size_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  MemoryMaster master("m", hasher);
  std::vector<Op> ops;
  for (size_t i = 0; i < n; ++i) ops.push_back(Put("k" + std::to_string(i), "v"));
  if (!ops.empty()) master.Write(std::move(ops));
  KeyValueMap data = master.data();
  for (size_t i = 0; i < d; ++i) {
    std::string key = "k" + std::to_string(rng() % (n + d));
    switch (rng() % 3) {
      case 0:
        data[{0, key}] = "changed" + std::to_string(i);
        break;
      case 1:
        data.erase({0, key});
        break;
      default:
        data[{0, "extra" + std::to_string(rng() % 1000)}] = "x";
        break;
    }
  }
  MemoryFollower follower(hasher);
  follower.Load(std::move(data));
  follower.SetState(FollowerState{master.id(), master.seq(), false, 0, ""});
  LinkOptions options;
  options.server.hash_bytes = hash_bytes;
  options.server.max_sync_retries = 64;
  Link link(&master, &follower, &rng, options);
  link.Start();
  Outcome outcome;
  outcome.converged = link.RunUntilQuiet() && !link.closed() && link.quiescent() &&
                      follower.data() == master.data() &&
                      follower.tree().root_hash() == master.tree().root_hash();
  outcome.stats = link.stats();
  return outcome;
}

void DiffConverges(KeyHasher hasher, uint8_t hash_bytes) {
  const auto n = *rc::gen::inRange<size_t>(0, 3000);
  const auto d = *rc::gen::inRange<size_t>(0, 150);
  const auto seed = *rc::gen::arbitrary<uint64_t>();
  Outcome outcome = DiffOnce(hasher, hash_bytes, n, d, seed);
  RC_ASSERT(outcome.converged);
  RC_ASSERT(outcome.stats.syncs >= 1);
}

RC_GTEST_PROP(DiffProperty, ConvergesWithTheRealHasher, ()) { DiffConverges(&KeyHash, 2); }
RC_GTEST_PROP(DiffProperty, ConvergesInADeepTrie, ()) { DiffConverges(&DeepTrieHasher, 2); }
RC_GTEST_PROP(DiffProperty, ConvergesBelowALongSharedPrefix, ()) {
  DiffConverges(&LastDigitsHasher, 2);
}
RC_GTEST_PROP(DiffProperty, ConvergesThroughTruncatedHashCollisions, ()) {
  DiffConverges(&KeyHash, 1);
}
// Keys under two first digits only: the second level's prefixes hold 5 to 64
// keys each, which the follower names by their sums, and a hundred
// differences put two or more under many of them, which the sums cannot name
// (the master probes those prefixes instead).
RC_GTEST_PROP(DiffProperty, ConvergesWhereSumsHoldSeveralDifferences, ()) {
  DiffConverges(&TwoFirstDigitsHasher, 2);
}

// One-byte hashes over a few hundred differences: a collision hides one in
// nearly every first diff (each differing child compared misses with
// probability 1/256, a folded line as well), the residue shows it, and the
// next diff, salted anew, finds it.
TEST(DiffTest, CollisionsOfOneByteHashesAreFoundByARetry) {
  Outcome outcome = DiffOnce(&KeyHash, 1, 20000, 600, 7);
  EXPECT_TRUE(outcome.converged);
  EXPECT_GT(outcome.stats.retries, 0);
  EXPECT_GE(outcome.stats.syncs, 1);
}

// A probe of a whole key hash (16 digits) has no children to compare: the
// answer is the follower's summary of the path, its leaf there or nothing.
TEST(DiffTest, ProbeOfAWholeKeyHashIsAnsweredWithItsSummary) {
  MerkleTree tree;
  tree.Put(0, "a", "1");
  tree.Put(0, "b", "2");
  uint8_t bytes[16];
  KeyHash(0, "a").ToBytes(bytes);
  std::string path(reinterpret_cast<const char*>(bytes), 16);
  NodeSummary answer;
  ASSERT_TRUE(AnswerProbe(tree, path, NodeSummary{}, 9, 2, &answer).ok());
  EXPECT_EQ(answer.kind, NodeSummary::Kind::kLeaf);
  EXPECT_EQ(answer, Summarize(tree, path, 9, 2));
  path.back() = static_cast<char>(path.back() ^ 1);
  ASSERT_TRUE(AnswerProbe(tree, path, NodeSummary{}, 9, 2, &answer).ok());
  EXPECT_EQ(answer.kind, NodeSummary::Kind::kEmpty);
}

// A follower answers a probe with the children that differ, each with its
// own summary; children it does not name are equal.
TEST(DiffTest, ProbeIsAnsweredWithTheChildrenThatDiffer) {
  MerkleTree master, follower;
  for (int i = 0; i < 3000; ++i) {
    std::string key = "k" + std::to_string(i);
    master.Put(0, key, "v");
    follower.Put(0, key, i == 42 ? "changed" : "v");
  }
  uint8_t bytes[16];
  KeyHash(0, "k42").ToBytes(bytes);
  for (int families : {0, 2, 4}) {
    NodeSummary probe = ProbeSummary(master, "", 5, 2, families);
    EXPECT_EQ(probe.kind, families ? NodeSummary::Kind::kFolded : NodeSummary::Kind::kInner);
    NodeSummary answer;
    ASSERT_TRUE(AnswerProbe(follower, "", probe, 5, 2, &answer).ok());
    ASSERT_EQ(answer.kind, NodeSummary::Kind::kDetails);
    EXPECT_EQ(answer.digits, std::vector<uint8_t>{bytes[0]}) << families << " families";
    ASSERT_EQ(answer.details.size(), 1u);
    // About 12 keys there: named by their sums, not by their children.
    std::string child(1, static_cast<char>(bytes[0]));
    ASSERT_EQ(answer.details[0].kind, NodeSummary::Kind::kSums);
    size_t keys = 0;
    follower.ForEach([&](FamilyTag, std::string_view, const Hash128&) { ++keys; });
    EXPECT_GT(answer.details[0].leaf_count, kMaxListedLeaves);
    EXPECT_LT(answer.details[0].leaf_count, keys);
    EXPECT_EQ(answer.details[0].leaf_hash, LocatePrefix(follower, child).hash());
  }
  // A probe the follower cannot compare is a protocol error.
  NodeSummary leaf;
  leaf.kind = NodeSummary::Kind::kLeaf;
  NodeSummary answer;
  EXPECT_EQ(AnswerProbe(follower, "", leaf, 5, 2, &answer).code(), Status::Code::kProtocolError);
}

// The master's half of a diff of two trees of 3,000 keys whose differences
// lie under one first digit (about 12 keys): the follower's answer to the
// master's probe of the root names that child by its sums.
class SumsTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kSalt = 11;

  SumsTest() {
    for (int i = 0; i < 3000; ++i) {
      std::string key = "k" + std::to_string(i);
      master_.Put(0, key, "v");
      follower_.Put(0, key, "v");
    }
  }

  // The follower's answer to the master's probe of the root, given to a
  // comparer as the follower's root summary; the comparer is left in comparer_.
  NodeSummary Answer() {
    NodeSummary probe = ProbeSummary(master_, "", kSalt, 2, kMinFoldFamilies);
    NodeSummary answer;
    EXPECT_TRUE(AnswerProbe(follower_, "", probe, kSalt, 2, &answer).ok());
    comparer_ = std::make_unique<DiffComparer>(master_, kSalt, 2);
    EXPECT_TRUE(comparer_->OnRoot(follower_.root_hash(), answer).ok());
    return answer;
  }

  // One difference: the answer names its child by its sums, from which the
  // comparer names the difference, and the diff is complete.
  void ExpectNamed(const std::vector<KeyRef>& sent, const std::vector<Hash128>& follower_only) {
    NodeSummary answer = Answer();
    ASSERT_EQ(answer.details.size(), 1u);
    EXPECT_EQ(answer.details[0].kind, NodeSummary::Kind::kSums);
    EXPECT_TRUE(comparer_->finished());
    EXPECT_TRUE(comparer_->complete());
    EXPECT_EQ(comparer_->to_send(), sent);
    EXPECT_EQ(comparer_->follower_only(), follower_only);
  }

  static std::string Digit0(std::string_view key) {
    return std::string(1, static_cast<char>(KeyHash(0, key).digit(0)));
  }

  MerkleTree master_, follower_;
  std::unique_ptr<DiffComparer> comparer_;
};

TEST_F(SumsTest, AChangedValueIsNamed) {
  follower_.Put(0, "k42", "changed");
  ExpectNamed({{0, "k42"}}, {});
}

TEST_F(SumsTest, AKeyOnlyTheMasterHoldsIsNamed) {
  follower_.Erase(0, "k42");
  ExpectNamed({{0, "k42"}}, {});
}

TEST_F(SumsTest, AKeyOnlyTheFollowerHoldsIsNamed) {
  follower_.Put(0, "extra", "x");
  ExpectNamed({}, {KeyHash(0, "extra")});
}

// Two differences under one child: the sums name neither, so the master
// probes the child, and the follower's answer to that finishes the diff.
TEST_F(SumsTest, TwoDifferencesUnderOneChildAreProbed) {
  std::string second;
  for (int i = 0; second.empty(); ++i) {
    std::string key = "k" + std::to_string(i);
    if (key != "k42" && Digit0(key) == Digit0("k42")) second = key;
  }
  follower_.Put(0, "k42", "changed");
  follower_.Erase(0, second);
  NodeSummary answer = Answer();
  ASSERT_EQ(answer.details.size(), 1u);
  EXPECT_EQ(answer.details[0].kind, NodeSummary::Kind::kSums);
  EXPECT_FALSE(comparer_->complete());
  EXPECT_TRUE(comparer_->to_send().empty());
  std::vector<std::string> pending = comparer_->TakePending();
  ASSERT_EQ(pending, std::vector<std::string>{Digit0("k42")});
  NodeSummary probe = comparer_->Probe(pending[0], pending.size());
  NodeSummary next;
  ASSERT_TRUE(AnswerProbe(follower_, pending[0], probe, kSalt, 2, &next).ok());
  ASSERT_TRUE(comparer_->OnSummary(pending[0], next).ok());
  EXPECT_TRUE(comparer_->TakePending().empty());
  EXPECT_TRUE(comparer_->complete());
  std::vector<KeyRef> sent = comparer_->to_send();
  std::sort(sent.begin(), sent.end(),
            [](const KeyRef& a, const KeyRef& b) { return a.key < b.key; });
  std::vector<KeyRef> expected{{0, "k42"}, {0, second}};
  std::sort(expected.begin(), expected.end(),
            [](const KeyRef& a, const KeyRef& b) { return a.key < b.key; });
  EXPECT_EQ(sent, expected);
}

// Sums that do not add up to one difference (here: a check that matches no
// key) are never taken for one: the master probes the child.
TEST_F(SumsTest, SumsThatNameNoKeyAreProbed) {
  follower_.Put(0, "k42", "changed");
  NodeSummary answer = Answer();
  ASSERT_EQ(answer.details.size(), 1u);
  answer.details[0].check.lo ^= 1;
  comparer_ = std::make_unique<DiffComparer>(master_, kSalt, 2);
  ASSERT_TRUE(comparer_->OnRoot(follower_.root_hash(), answer).ok());
  EXPECT_TRUE(comparer_->to_send().empty());
  EXPECT_EQ(comparer_->TakePending(), std::vector<std::string>{Digit0("k42")});
}

TEST_F(SumsTest, MalformedSumsAreAProtocolError) {
  follower_.Put(0, "k42", "changed");
  NodeSummary answer = Answer();
  for (uint64_t count : {uint64_t{4}, uint64_t{65}, ~uint64_t{0}}) {
    NodeSummary bad = answer;
    bad.details[0].leaf_count = count;
    DiffComparer comparer(master_, kSalt, 2);
    EXPECT_EQ(comparer.OnRoot(follower_.root_hash(), bad).code(), Status::Code::kProtocolError)
        << count;
  }
  // Only a detail of an answer may be sums.
  DiffComparer comparer(master_, kSalt, 2);
  EXPECT_EQ(comparer.OnRoot(follower_.root_hash(), answer.details[0]).code(),
            Status::Code::kProtocolError);
}

}  // namespace
}  // namespace sdiff::testing
