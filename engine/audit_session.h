// AuditSession: an auditor's connection to a master (`sdiff-ldb --master
// audit`), sans-I/O. It asks the master for one self-audit (its merkle tree
// checked against its database) and receives the outcome.
//
// Hello (role kAuditor), Challenge, Auth, Welcome, then the master runs the
// audit (seconds on a large database, during which it sends Pings, answered
// here with Pongs) and sends one AuditReport; the session is then done and
// the master closes the connection.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "engine/authenticator.h"
#include "engine/client_handshake.h"
#include "engine/messages.h"
#include "engine/status.h"
#include "engine/wire.h"

namespace sdiff {

struct AuditorOptions {
  size_t max_frame = wire::kDefaultMaxFrame;
  // Nothing from the master (not even a Ping) for this long: close.
  int64_t idle_timeout_ms = 15000;
  const Authenticator* authenticator = nullptr;  // null: no shared secret
};

struct AuditorHooks {
  RandomBytesFun random_bytes;
};

class AuditSession {
 public:
  AuditSession(AuditorOptions options, AuditorHooks hooks);
  AuditSession(const AuditSession&) = delete;
  AuditSession& operator=(const AuditSession&) = delete;

  void Start();  // sends Hello
  void OnBytes(std::string_view bytes);
  void OnTick(int64_t now_ms);
  void Close(std::string_view reason);

  std::string TakeOutput() { return std::exchange(out_, {}); }

  // The report arrived: nothing more to do.
  bool done() const { return state_ == State::kDone; }
  bool closed() const { return state_ == State::kClosed; }
  // Why the session closed without a report; OK otherwise.
  const Status& error() const { return error_; }
  // The master's report, once done(). Its `error` may say the audit failed.
  const std::optional<AuditReport>& report() const { return report_; }
  const std::string& master_id() const { return master_id_; }  // from the Welcome

 private:
  enum class State { kIdle, kAwaitChallenge, kAwaitWelcome, kAwaitReport, kDone, kClosed };

  void Handle(Message& message);
  template <MessageAlternative M>
  void Send(const M& message) {
    wire::AppendFrame(message, &out_);
  }
  void Fail(Status status, RejectCode code = RejectCode::kProtocol);

  AuditorOptions options_;
  AuditorHooks hooks_;
  wire::FrameReader reader_;
  std::string out_;
  State state_ = State::kIdle;
  Status error_;
  std::string client_nonce_;
  std::string master_id_;
  std::optional<AuditReport> report_;
  int64_t now_ms_ = -1;
  int64_t last_received_ms_ = -1;
};

}  // namespace sdiff
