// The auditor's protocol state machine:
//
//   state           message      -> action
//   kIdle           (Start)      -> Hello(role kAuditor)           -> kAwaitChallenge
//   kAwaitChallenge Challenge    -> check master's proof, Auth     -> kAwaitWelcome
//   kAwaitWelcome   Welcome      -> wait for the audit             -> kAwaitReport
//   kAwaitReport    Ping         -> Pong
//                   AuditReport  -> keep it                        -> kDone
//   kDone           anything     -> ignored (the master closes)
//   (tick)          nothing from the master for idle_timeout_ms    -> closed
//   any but kDone   Reject       -> closed
//   anything else is a protocol error: Reject, closed.
#include "engine/audit_session.h"

#include "engine/client_handshake.h"

namespace sdiff {

AuditSession::AuditSession(AuditorOptions options, AuditorHooks hooks)
    : options_(std::move(options)), hooks_(std::move(hooks)), reader_(options_.max_frame) {}

void AuditSession::Start() {
  if (state_ != State::kIdle) return;
  Send(ClientHello(Role::kAuditor, hooks_.random_bytes, &client_nonce_));
  state_ = State::kAwaitChallenge;
}

void AuditSession::OnBytes(std::string_view bytes) {
  if (closed() || done()) return;
  last_received_ms_ = now_ms_;
  Status s = reader_.Drain(bytes, [this](Message& message) {
    Handle(message);
    return !closed() && !done();
  });
  if (!s.ok()) Fail(s);
}

void AuditSession::Handle(Message& message) {
  if (auto* reject = std::get_if<Reject>(&message)) {
    state_ = State::kClosed;
    error_ = Status::Aborted("master refused: " + reject->reason);
    return;
  }
  switch (state_) {
    case State::kAwaitChallenge:
      if (auto* challenge = std::get_if<Challenge>(&message)) {
        Auth auth;
        Status s = AnswerChallenge(*challenge, client_nonce_, options_.authenticator, &auth);
        if (!s.ok()) return Fail(s, RejectCode::kAuth);
        Send(auth);
        state_ = State::kAwaitWelcome;
        return;
      }
      break;
    case State::kAwaitWelcome:
      if (auto* welcome = std::get_if<Welcome>(&message)) {
        master_id_ = welcome->master_id;
        state_ = State::kAwaitReport;
        return;
      }
      break;
    case State::kAwaitReport:
      if (auto* ping = std::get_if<Ping>(&message)) {
        Send(Pong{0, ping->master_time_ms});
        return;
      }
      if (auto* report = std::get_if<AuditReport>(&message)) {
        report_ = std::move(*report);
        state_ = State::kDone;
        return;
      }
      break;
    case State::kIdle:
    case State::kDone:
    case State::kClosed:
      break;
  }
  Fail(Status::ProtocolError(std::string("unexpected ") + MessageName(message)));
}

void AuditSession::OnTick(int64_t now_ms) {
  now_ms_ = now_ms;
  if (last_received_ms_ < 0) last_received_ms_ = now_ms;
  if (state_ != State::kIdle && !closed() && !done() &&
      now_ms - last_received_ms_ > options_.idle_timeout_ms) {
    Fail(Status::IOError("nothing from the master for " + std::to_string(options_.idle_timeout_ms) +
                         " ms"));
  }
}

void AuditSession::Close(std::string_view reason) {
  if (closed() || done()) return;
  Fail(Status::Aborted(std::string(reason)), RejectCode::kShutdown);
}

void AuditSession::Fail(Status status, RejectCode code) {
  if (closed()) return;
  Send(Reject{code, status.message()});
  state_ = State::kClosed;
  error_ = std::move(status);
}

}  // namespace sdiff
