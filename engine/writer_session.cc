// The writer's protocol state machine:
//
//   state           message    -> action
//   kIdle           (Start)    -> Hello(role kWriter)            -> kAwaitChallenge
//   kAwaitChallenge Challenge  -> check master's proof, Auth     -> kAwaitWelcome
//   kAwaitWelcome   Welcome    -> send the writes that waited    -> kReady
//   kReady          WriteAck   -> the oldest write is done
//                   Ping       -> Pong
//   (tick)          writes in flight, no WriteAck for idle_timeout_ms -> closed
//   any             Reject     -> closed
//   anything else is a protocol error: Reject, closed.
#include "engine/writer_session.h"

#include "engine/client_handshake.h"

namespace sdiff {

WriterSession::WriterSession(WriterOptions options, WriterHooks hooks)
    : options_(std::move(options)), hooks_(std::move(hooks)), reader_(options_.max_frame) {}

void WriterSession::Start() {
  if (state_ != State::kIdle) return;
  Send(ClientHello(Role::kWriter, hooks_.random_bytes, &client_nonce_));
  state_ = State::kAwaitChallenge;
}

void WriterSession::OnBytes(std::string_view bytes) {
  if (closed()) return;
  last_received_ms_ = now_ms_;
  Status s = reader_.Drain(bytes, [this](Message& message) {
    Handle(message);
    return !closed();
  });
  if (!s.ok()) Fail(s);
}

void WriterSession::Handle(Message& message) {
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
        families_ = welcome->families;
        state_ = State::kReady;
        for (Write& write : waiting_) Send(write);
        waiting_.clear();
        return;
      }
      break;
    case State::kReady:
      if (auto* ack = std::get_if<WriteAck>(&message)) {
        if (in_flight_ == 0 || ack->id != next_ack_id_) {
          return Fail(Status::ProtocolError("WriteAck for write " + std::to_string(ack->id) +
                                            ", expected " + std::to_string(next_ack_id_)));
        }
        ++next_ack_id_;
        --in_flight_;
        ack_wait_since_ms_ = -1;  // progress: the next tick starts a new wait
        acks_.push_back(std::move(*ack));
        return;
      }
      if (auto* ping = std::get_if<Ping>(&message)) {
        Send(Pong{0, ping->master_time_ms});
        return;
      }
      break;
    case State::kIdle:
    case State::kClosed:
      break;
  }
  Fail(Status::ProtocolError(std::string("unexpected ") + MessageName(message)));
}

void WriterSession::OnTick(int64_t now_ms) {
  now_ms_ = now_ms;
  if (last_received_ms_ < 0) last_received_ms_ = now_ms;
  if (state_ != State::kIdle && !closed() &&
      now_ms - last_received_ms_ > options_.idle_timeout_ms) {
    return Fail(Status::IOError("nothing from the master for " +
                                std::to_string(options_.idle_timeout_ms) + " ms"));
  }
  // Pings keep the connection alive but acknowledge nothing: a master that
  // sends only them must not hold the writes (and the writer) forever.
  if (!ready() || in_flight_ == 0) {
    ack_wait_since_ms_ = -1;
  } else if (ack_wait_since_ms_ < 0) {
    ack_wait_since_ms_ = now_ms;
  } else if (now_ms - ack_wait_since_ms_ > options_.idle_timeout_ms) {
    Fail(Status::IOError("no WriteAck from the master for " +
                         std::to_string(options_.idle_timeout_ms) + " ms"));
  }
}

void WriterSession::Close(std::string_view reason) {
  if (closed()) return;
  Fail(Status::Aborted(std::string(reason)), RejectCode::kShutdown);
}

uint64_t WriterSession::Submit(std::vector<Op> ops) {
  if (closed()) return 0;
  uint64_t id = next_id_++;
  Write write{id, std::move(ops)};
  ++in_flight_;
  if (ready()) {
    Send(write);
  } else {
    waiting_.push_back(std::move(write));
  }
  return id;
}

std::optional<WriteAck> WriterSession::PollAck() {
  if (acks_.empty()) return std::nullopt;
  WriteAck ack = std::move(acks_.front());
  acks_.pop_front();
  return ack;
}

void WriterSession::Fail(Status status, RejectCode code) {
  if (closed()) return;
  Send(Reject{code, status.message()});
  state_ = State::kClosed;
  error_ = std::move(status);
}

}  // namespace sdiff
