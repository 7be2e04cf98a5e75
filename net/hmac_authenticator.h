// The shared-secret Authenticator: HMAC-SHA256 through OpenSSL, and the loader
// for the secret file that both master and follower are given.
#pragma once

#include <string>
#include <string_view>

#include "engine/authenticator.h"
#include "engine/status.h"

namespace sdiff::net {

// Sign() is HMAC-SHA256(secret, message): 32 raw bytes. Verify() compares in
// constant time. Thread-safe: const after construction, and OpenSSL's one-shot
// HMAC keeps no shared state.
class HmacAuthenticator : public Authenticator {
 public:
  static constexpr size_t kMacBytes = 32;

  // Any secret is accepted here; LoadSecretFile() is where weak secrets are refused.
  explicit HmacAuthenticator(std::string secret);
  ~HmacAuthenticator() override;  // wipes the secret

  HmacAuthenticator(const HmacAuthenticator&) = delete;
  HmacAuthenticator& operator=(const HmacAuthenticator&) = delete;

  // Empty only if OpenSSL fails, which a peer then rejects as a wrong MAC.
  std::string Sign(std::string_view message) const override;
  bool Verify(std::string_view message, std::string_view mac) const override;

 private:
  std::string secret_;  // Constant after construction
};

// Limits on the secret file, in bytes (after the trailing newline is stripped).
inline constexpr size_t kMinSecretBytes = 16;
inline constexpr size_t kMaxSecretFileBytes = 4096;

// Reads the shared secret from `path`: the whole file, less one trailing "\n"
// or "\r\n" (so `echo ... > file` works). Errors name the path: IOError when the
// file cannot be opened or read, InvalidArgument when it is not a regular file,
// is larger than kMaxSecretFileBytes, or the secret is empty or shorter than
// kMinSecretBytes. A file that group or others can access still loads; then, if
// `warning` is not null, it receives a one-line warning for the caller to log
// (otherwise it is cleared).
Status LoadSecretFile(const std::string& path, std::string* secret, std::string* warning = nullptr);

}  // namespace sdiff::net
