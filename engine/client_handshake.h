// The client's half of the handshake (Hello, Challenge, Auth), shared by every
// client role: followers and inspectors (ClientSession) and writers
// (WriterSession).
#pragma once

#include <string>
#include <string_view>

#include "engine/authenticator.h"
#include "engine/messages.h"
#include "engine/status.h"

namespace sdiff {

// Checks the master's Challenge (the chosen version, and its proof of the
// shared secret when we have one) and makes the Auth to send back.
Status AnswerChallenge(const Challenge& challenge, std::string_view client_nonce,
                       const Authenticator* authenticator, Auth* auth);

}  // namespace sdiff
