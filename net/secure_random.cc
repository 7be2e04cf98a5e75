// SecureRandomBytes: OpenSSL first, the OS random device as the fallback.
#include "net/secure_random.h"

#include <openssl/rand.h>

#include <random>

namespace sdiff::net {

void SecureRandomBytes(uint8_t* out, size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) == 1) return;
  std::random_device device;
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(device());
}

}  // namespace sdiff::net
