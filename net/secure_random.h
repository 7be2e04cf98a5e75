// Random bytes for nonces and salts, from OpenSSL's generator.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sdiff::net {

// Fills out[0..n) from OpenSSL's RAND_bytes, or from the OS random device if
// OpenSSL has no entropy source.
void SecureRandomBytes(uint8_t* out, size_t n);

}  // namespace sdiff::net
