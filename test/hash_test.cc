// Known answers for the hash layout of docs/protocol.md.
#include "engine/hash.h"

#include <gtest/gtest.h>

namespace sdiff {
namespace {

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

}  // namespace
}  // namespace sdiff
