// Known answers for the hash layout of docs/protocol.md.
#include "engine/hash.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/merkle_tree.h"

namespace sdiff {
namespace {

using namespace std::string_literals;

TEST(HashTest, DigitsFollowCanonicalBytes) {
  Hash128 h{0x0011223344556677ULL, 0x8899aabbccddeeffULL};
  EXPECT_EQ(h.ToHex(), "00112233445566778899aabbccddeeff");
  for (int i = 0; i < 16; ++i) EXPECT_EQ(h.digit(i), 0x11 * i) << i;
  uint8_t bytes[16];
  h.ToBytes(bytes);
  EXPECT_EQ(Hash128::FromBytes(bytes), h);
}

TEST(HashTest, FirstDifferingDigit) {
  Hash128 a{0x0011223344556677ULL, 0x8899aabbccddeeffULL};
  Hash128 b = a;
  EXPECT_EQ(FirstDifferingDigit(a, b), 16);
  b.lo ^= 1;
  EXPECT_EQ(FirstDifferingDigit(a, b), 15);
  EXPECT_EQ(FirstDifferingDigit(a, b, 15), 15);
  b.hi ^= 0x0000010000000000ULL;
  EXPECT_EQ(FirstDifferingDigit(a, b), 2);
  EXPECT_EQ(FirstDifferingDigit(a, b, 3), 15);
  EXPECT_EQ(FirstDifferingDigit(a, b, 16), 16);
}

// The expected hex strings below were not produced by this code:
//  - Family-0 key hashes: `xxhsum -H2` (xxHash 0.8.1 CLI; XXH128 is XXH3-128 with seed 0,
//    printed in canonical big-endian form) over files written with printf, for instance
//    `printf 'a\0b' > k && xxhsum -H2 k`.
//  - Family-7 key hashes: xxhsum takes no seed, so a standalone C program that calls
//    libxxhash directly, XXH3_128bits_withSeed(key, len, 7) then XXH128_canonicalFromHash.
//    That is the library this code links, but none of hash.cc's own layout code.
//  - Leaf hashes: `xxhsum -H2` over a file holding the 16 canonical key-hash bytes (the key
//    hash's hex above, written with printf '\x..') followed by the value bytes.
//  - The tree root: the XOR of three of those leaf hashes, computed with python3.
constexpr char kKeyHashEmpty[] = "99aa06d3014798d86001c324468d497f";    // (0, "")
constexpr char kKeyHashKey1[] = "0cf8d7f677fb1341a920d105ebc8e78b";     // (0, "key1")
constexpr char kKeyHashNul[] = "39797789ed4c7ea0d5a06cd078125351";      // (0, "a\0b")
constexpr char kKeyHashF7Key1[] = "375406873daaec0e2c7f4f708747a7e9";   // (7, "key1")
constexpr char kKeyHashF7Empty[] = "76a30bdf56cdfa2ccb4aa04fe72c771f";  // (7, "")

TEST(HashTest, KeyHashKnownAnswers) {
  EXPECT_EQ(KeyHash(0, "").ToHex(), kKeyHashEmpty);
  EXPECT_EQ(KeyHash(0, "key1").ToHex(), kKeyHashKey1);
  EXPECT_EQ(KeyHash(0, "a\0b"s).ToHex(), kKeyHashNul);
  EXPECT_EQ(KeyHash(7, "key1").ToHex(), kKeyHashF7Key1);
  EXPECT_EQ(KeyHash(7, "").ToHex(), kKeyHashF7Empty);
  // The NUL is part of the key, not its end.
  EXPECT_NE(KeyHash(0, "a\0b"s), KeyHash(0, "a"));
}

TEST(HashTest, LeafHashKnownAnswers) {
  Hash128 key1 = KeyHash(0, "key1");
  EXPECT_EQ(LeafHash(key1, "").ToHex(), "438e95f5c368c4beacf6ceb7ff772996");
  EXPECT_EQ(LeafHash(key1, "value1").ToHex(), "6da89f28b8667aef712690aad873fb24");
  EXPECT_EQ(LeafHash(KeyHash(0, ""), "x\0y"s).ToHex(), "4a723d296f1da82af127659c82d2d2ec");
  EXPECT_EQ(LeafHash(KeyHash(0, "a\0b"s), "v").ToHex(), "8fbedffb24c382232195c027299117c5");
  EXPECT_EQ(LeafHash(KeyHash(7, "key1"), "value1").ToHex(), "69c1bc8a8a60c5661725af2f1ca6c4c2");
}

// LeafHash hashes values of up to 240 bytes in one shot and longer ones by streaming;
// both sides of the boundary must give plain XXH3-128 of the concatenation.
TEST(HashTest, LeafHashKnownAnswersAroundStreamingThreshold) {
  Hash128 key1 = KeyHash(0, "key1");
  EXPECT_EQ(LeafHash(key1, std::string(240, 'v')).ToHex(), "9c05bdd63a7f8a4f9938b2d0a4ec30d4");
  EXPECT_EQ(LeafHash(key1, std::string(241, 'v')).ToHex(), "36142bd631221fc05035d12415c75683");
  EXPECT_EQ(LeafHash(key1, std::string(300, 'v')).ToHex(), "46c68c6301d6d93d228cc191665bae1b");
}

TEST(HashTest, TreeRootKnownAnswer) {
  MerkleTree tree;
  ASSERT_TRUE(tree.Put(0, "key1", "value1").ok());
  ASSERT_TRUE(tree.Put(0, "a\0b"s, "v").ok());
  ASSERT_TRUE(tree.Put(0, "", "x\0y"s).ok());
  EXPECT_EQ(tree.root_hash().ToHex(), "a8647dfaf3b850e6a194351173303e0d");
  EXPECT_EQ(tree.root_hash(), LeafHash(KeyHash(0, "key1"), "value1") ^
                                  LeafHash(KeyHash(0, "a\0b"s), "v") ^
                                  LeafHash(KeyHash(0, ""), "x\0y"s));
}

}  // namespace
}  // namespace sdiff
