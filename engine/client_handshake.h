// The client's half of the handshake (Hello, Challenge, Auth), shared by every
// client role: followers and inspectors (ClientSession), writers
// (WriterSession) and cloners (CloneSession).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "engine/authenticator.h"
#include "engine/messages.h"
#include "engine/status.h"

namespace sdiff {

// A Hello for `role`, offering this side's protocol version, with a fresh
// 32-byte nonce from random_bytes; *client_nonce keeps it for AnswerChallenge.
// Fills out[0..n) with random bytes (nonces, salts): a CSPRNG outside tests.
using RandomBytesFun = std::function<void(uint8_t* out, size_t n)>;

Hello ClientHello(Role role, const RandomBytesFun& random_bytes, std::string* client_nonce);

// Checks the master's Challenge (the chosen version, and its proof of the
// shared secret when we have one) and makes the Auth to send back.
Status AnswerChallenge(const Challenge& challenge, std::string_view client_nonce,
                       const Authenticator* authenticator, Auth* auth);

}  // namespace sdiff
