// The client's Hello, and its answer to a master's Challenge.
#include "engine/client_handshake.h"

#include "engine/wire.h"

namespace sdiff {
namespace {
constexpr size_t kNonceBytes = 32;  // the master refuses any other length
}  // namespace

Hello ClientHello(Role role, const RandomBytesFun& random_bytes, std::string* client_nonce) {
  client_nonce->assign(kNonceBytes, '\0');
  random_bytes(reinterpret_cast<uint8_t*>(client_nonce->data()), kNonceBytes);
  Hello hello;
  hello.min_version = wire::kProtocolVersion;
  hello.max_version = wire::kProtocolVersion;
  hello.role = role;
  hello.client_nonce = *client_nonce;
  return hello;
}

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
