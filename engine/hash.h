// The 128-bit hashes that place keys in the merkle tree and summarise values.
//
// Layout (docs/protocol.md, "Hashes", is the normative text):
//   key hash  = XXH3-128(key bytes, seed = column family tag)
//   leaf hash = XXH3-128(canonical(key hash) || value bytes)
//   canonical(h) = the 16 bytes of h, high 64 bits first, each half big-endian
//                  (xxHash's XXH128_canonical_t).
// Byte i of canonical(key hash) is the key's digit at trie depth i.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace sdiff {

// Column families are tagged with a small integer that takes part in the key hash.
using FamilyTag = uint16_t;

struct Hash128 {
  uint64_t hi = 0;
  uint64_t lo = 0;

  // Byte `depth` (0..15) of the canonical form.
  uint8_t digit(int depth) const {
    uint64_t half = depth < 8 ? hi : lo;
    return static_cast<uint8_t>(half >> (56 - 8 * (depth & 7)));
  }
  bool is_zero() const { return (hi | lo) == 0; }

  Hash128& operator^=(const Hash128& o) {
    hi ^= o.hi;
    lo ^= o.lo;
    return *this;
  }
  friend Hash128 operator^(Hash128 a, const Hash128& b) { return a ^= b; }
  friend bool operator==(const Hash128&, const Hash128&) = default;

  // Canonical form: 16 bytes, big-endian hi then lo.
  void ToBytes(uint8_t out[16]) const;
  static Hash128 FromBytes(const uint8_t in[16]);
  std::string ToHex() const;  // 32 lowercase hex digits of the canonical form
};

// Index of the first depth >= `from` at which a and b have different digits, or 16.
int FirstDifferingDigit(const Hash128& a, const Hash128& b, int from = 0);

Hash128 KeyHash(FamilyTag family, std::string_view key);
Hash128 LeafHash(const Hash128& key_hash, std::string_view value);

// LeafHash of a value given in pieces: Finish() equals LeafHash(key_hash,
// the pieces joined), without the whole value in one place.
class LeafHashStream {
 public:
  explicit LeafHashStream(const Hash128& key_hash);
  ~LeafHashStream();
  LeafHashStream(const LeafHashStream&) = delete;
  LeafHashStream& operator=(const LeafHashStream&) = delete;
  void Update(std::string_view piece);
  Hash128 Finish() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// XXH3-64 of `bytes`, seed 0: the checksum of a FileChunk's data.
uint64_t DataHash64(std::string_view bytes);

// How a tree computes key hashes. Production code uses KeyHash; tests swap in
// hashers that make keys share long prefixes, to force deep trees.
using KeyHasher = Hash128 (*)(FamilyTag family, std::string_view key);

}  // namespace sdiff
