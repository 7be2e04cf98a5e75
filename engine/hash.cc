// XXH3-128 key and leaf hashes, XXH3-64 data hashes; the layout is described in hash.h.
#include "engine/hash.h"

#include <bit>
#include <cstring>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace sdiff {

void Hash128::ToBytes(uint8_t out[16]) const {
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
    out[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
  }
}

Hash128 Hash128::FromBytes(const uint8_t in[16]) {
  Hash128 h;
  for (int i = 0; i < 8; ++i) {
    h.hi = (h.hi << 8) | in[i];
    h.lo = (h.lo << 8) | in[8 + i];
  }
  return h;
}

std::string Hash128::ToHex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  uint8_t bytes[16];
  ToBytes(bytes);
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}

int FirstDifferingDigit(const Hash128& a, const Hash128& b, int from) {
  // Mask off the digits before `from`, then count leading equal bits.
  uint64_t hi = a.hi ^ b.hi;
  uint64_t lo = a.lo ^ b.lo;
  if (from >= 16) return 16;
  if (from >= 8) {
    hi = 0;
    lo &= ~uint64_t{0} >> (8 * (from - 8));
  } else if (from > 0) {
    hi &= ~uint64_t{0} >> (8 * from);
  }
  if (hi != 0) return std::countl_zero(hi) / 8;
  if (lo != 0) return 8 + std::countl_zero(lo) / 8;
  return 16;
}

Hash128 KeyHash(FamilyTag family, std::string_view key) {
  XXH128_hash_t h = XXH3_128bits_withSeed(key.data(), key.size(), family);
  return Hash128{h.high64, h.low64};
}

Hash128 LeafHash(const Hash128& key_hash, std::string_view value) {
  // One-shot over a stack copy for small values; streaming (same result) otherwise.
  constexpr size_t kInlineValue = 240;
  XXH128_hash_t h;
  if (value.size() <= kInlineValue) {
    uint8_t buf[16 + kInlineValue];
    key_hash.ToBytes(buf);
    if (!value.empty()) std::memcpy(buf + 16, value.data(), value.size());
    h = XXH3_128bits(buf, 16 + value.size());
  } else {
    uint8_t prefix[16];
    key_hash.ToBytes(prefix);
    XXH3_state_t state;
    XXH3_128bits_reset(&state);
    XXH3_128bits_update(&state, prefix, sizeof(prefix));
    XXH3_128bits_update(&state, value.data(), value.size());
    h = XXH3_128bits_digest(&state);
  }
  return Hash128{h.high64, h.low64};
}

struct LeafHashStream::State {
  XXH3_state_t xxh;
};

LeafHashStream::LeafHashStream(const Hash128& key_hash) : state_(std::make_unique<State>()) {
  uint8_t prefix[16];
  key_hash.ToBytes(prefix);
  XXH3_128bits_reset(&state_->xxh);
  XXH3_128bits_update(&state_->xxh, prefix, sizeof(prefix));
}

LeafHashStream::~LeafHashStream() = default;

void LeafHashStream::Update(std::string_view piece) {
  XXH3_128bits_update(&state_->xxh, piece.data(), piece.size());
}

Hash128 LeafHashStream::Finish() const {
  XXH128_hash_t h = XXH3_128bits_digest(&state_->xxh);
  return Hash128{h.high64, h.low64};
}

uint64_t DataHash64(std::string_view bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

}  // namespace sdiff
