// The shared-secret proof the handshake carries, behind an interface so the
// engine stays free of crypto libraries: net/ implements it with HMAC-SHA256.
#pragma once

#include <string>
#include <string_view>

namespace sdiff {

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // A MAC of `message` under the shared secret, at most 64 bytes (the wire limit).
  virtual std::string Sign(std::string_view message) const = 0;
  // Whether `mac` is Sign(message); compares in constant time.
  virtual bool Verify(std::string_view message, std::string_view mac) const = 0;
};

// The messages the two proofs sign: each binds the proving side's role and
// both nonces, so a proof cannot be replayed into another connection or role.
std::string MasterProofMessage(std::string_view client_nonce, std::string_view server_nonce);
std::string FollowerProofMessage(std::string_view client_nonce, std::string_view server_nonce);

}  // namespace sdiff
