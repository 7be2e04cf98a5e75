// The client's answer to a master's Challenge.
#include "engine/client_handshake.h"

#include "engine/wire.h"

namespace sdiff {

Status AnswerChallenge(const Challenge& challenge, std::string_view client_nonce,
                       const Authenticator* authenticator, Auth* auth) {
  if (challenge.version != wire::kProtocolVersion) {
    return Status::ProtocolError("master chose protocol version " +
                                 std::to_string(challenge.version));
  }
  auth->client_proof.clear();
  if (authenticator == nullptr) return Status::OK();
  if (challenge.server_proof.empty()) {
    return Status::ProtocolError("master did not prove the shared secret");
  }
  if (!authenticator->Verify(MasterProofMessage(client_nonce, challenge.server_nonce),
                             challenge.server_proof)) {
    return Status::ProtocolError("master failed authentication: wrong secret");
  }
  auth->client_proof =
      authenticator->Sign(FollowerProofMessage(client_nonce, challenge.server_nonce));
  return Status::OK();
}

}  // namespace sdiff
