// The cloner's protocol state machine:
//
//   state           message    -> action
//   kIdle           (Start)    -> Hello(role kCloner)            -> kAwaitChallenge
//   kAwaitChallenge Challenge  -> check master's proof, Auth     -> kAwaitWelcome
//   kAwaitWelcome   Welcome    -> (mode kFiles) keep it          -> kReceiving
//   kReceiving      FileChunk  -> check it, write it
//                              -> (last, every file whole)       -> kDone
//                   Ping       -> Pong
//   kDone           anything   -> ignored: the copy is complete
//   (tick)          nothing from the master for idle_timeout_ms  -> closed
//   any             Reject     -> closed
//   anything else is a protocol error: Reject, closed.
#include "engine/clone_session.h"

#include <fmt/format.h>

#include "engine/client_handshake.h"
#include "engine/hash.h"

namespace sdiff {

CloneSession::CloneSession(CloneOptions options, CloneHooks hooks)
    : options_(std::move(options)), hooks_(std::move(hooks)), reader_(options_.max_frame) {}

void CloneSession::Start() {
  if (state_ != State::kIdle) return;
  Send(ClientHello(Role::kCloner, hooks_.random_bytes, &client_nonce_));
  state_ = State::kAwaitChallenge;
}

void CloneSession::OnBytes(std::string_view bytes) {
  if (finished()) return;
  last_received_ms_ = now_ms_;
  Status s = reader_.Drain(bytes, [this](Message& message) {
    Handle(message);
    return !finished();
  });
  if (!s.ok()) Fail(s);
}

void CloneSession::Handle(Message& message) {
  if (auto* reject = std::get_if<Reject>(&message)) {
    state_ = State::kClosed;
    reject_code_ = reject->code;
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
        if (welcome->mode != StartMode::kFiles) {
          return Fail(Status::ProtocolError(
              fmt::format("Welcome: mode {}, but a cloner is sent files (mode {})",
                          static_cast<int>(welcome->mode), static_cast<int>(StartMode::kFiles))));
        }
        welcome_ = std::move(*welcome);
        welcomed_ = true;
        state_ = State::kReceiving;
        return;
      }
      break;
    case State::kReceiving:
      if (auto* chunk = std::get_if<FileChunk>(&message)) return HandleChunk(*chunk);
      if (auto* ping = std::get_if<Ping>(&message)) {
        Send(Pong{0, ping->master_time_ms});
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

// Every check comes before the write: a chunk that fails one is not written.
void CloneSession::HandleChunk(const FileChunk& chunk) {
  if (!IsPlainFileName(chunk.name)) {
    return Fail(
        Status::ProtocolError(fmt::format("FileChunk: {:?} is not a plain file name", chunk.name)));
  }
  bool starts_file = current_.empty();
  if (starts_file) {
    if (names_.count(chunk.name) != 0) {
      return Fail(Status::ProtocolError(
          fmt::format("FileChunk: file {:?} sent a second time", chunk.name)));
    }
    if (chunk.offset != 0) {
      return Fail(Status::ProtocolError(fmt::format(
          "FileChunk: file {:?} starts at offset {}, not 0", chunk.name, chunk.offset)));
    }
  } else {
    if (chunk.name != current_) {
      return Fail(Status::ProtocolError(
          fmt::format("FileChunk: file {:?} before {:?} is whole ({} of its {} bytes)", chunk.name,
                      current_, current_offset_, current_size_)));
    }
    if (chunk.offset != current_offset_ || chunk.file_size != current_size_) {
      return Fail(Status::ProtocolError(
          fmt::format("FileChunk: file {:?} at offset {} of {} bytes, expected offset {} of {}",
                      chunk.name, chunk.offset, chunk.file_size, current_offset_, current_size_)));
    }
  }
  if (chunk.data.size() > chunk.file_size || chunk.offset > chunk.file_size - chunk.data.size()) {
    return Fail(Status::ProtocolError(
        fmt::format("FileChunk: file {:?}: {} bytes at offset {} pass its size {}", chunk.name,
                    chunk.data.size(), chunk.offset, chunk.file_size)));
  }
  if (DataHash64(chunk.data) != chunk.data_hash) {
    return Fail(Status::ProtocolError(
        fmt::format("FileChunk: file {:?}: data at offset {} does not match its hash", chunk.name,
                    chunk.offset)));
  }
  bool file_done = chunk.offset + chunk.data.size() == chunk.file_size;
  if (chunk.last && !file_done) {
    return Fail(Status::ProtocolError(
        fmt::format("FileChunk: marked last, but file {:?} has {} of its {} bytes", chunk.name,
                    chunk.offset + chunk.data.size(), chunk.file_size)));
  }
  Status s = hooks_.write(chunk);
  if (!s.ok()) return Fail(s, RejectCode::kInternal);
  if (starts_file) {
    names_.insert(chunk.name);
    current_ = chunk.name;
    current_size_ = chunk.file_size;
    current_offset_ = 0;
  }
  current_offset_ += chunk.data.size();
  bytes_ += chunk.data.size();
  if (file_done) current_.clear();
  if (chunk.last) state_ = State::kDone;
}

void CloneSession::OnTick(int64_t now_ms) {
  now_ms_ = now_ms;
  if (last_received_ms_ < 0) last_received_ms_ = now_ms;
  if (state_ != State::kIdle && !finished() &&
      now_ms - last_received_ms_ > options_.idle_timeout_ms) {
    Fail(Status::IOError("nothing from the master for " + std::to_string(options_.idle_timeout_ms) +
                         " ms"));
  }
}

void CloneSession::Close(std::string_view reason) {
  if (finished()) return;
  Fail(Status::Aborted(std::string(reason)), RejectCode::kShutdown);
}

void CloneSession::Fail(Status status, RejectCode code) {
  if (finished()) return;
  Send(Reject{code, status.message()});
  state_ = State::kClosed;
  error_ = std::move(status);
}

}  // namespace sdiff
