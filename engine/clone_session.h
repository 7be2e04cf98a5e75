// CloneSession: an empty follower copying the master's database files, sans-I/O.
//
// Before it opens a database of its own, an empty follower can ask the master
// for a consistent copy of its files (Hello with role kCloner): the master
// answers Welcome (mode kFiles, its identity and column families) and sends
// every file as FileChunk frames, one file after another, each in order, then
// closes. The session checks each chunk (a plain name, offsets in order, sizes
// that add up, the data's checksum) before handing it to `write`; the copy is
// whole once the chunk marked last has been written.
//
// A master that cannot serve its files (too few keys to be worth it, or a
// configuration a copy would not reproduce) rejects with kRole; the follower
// then opens an empty database and is brought up to date the usual way.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>

#include "engine/authenticator.h"
#include "engine/client_handshake.h"
#include "engine/messages.h"
#include "engine/status.h"
#include "engine/wire.h"

namespace sdiff {

struct CloneOptions {
  size_t max_frame = wire::kDefaultMaxFrame;
  int64_t idle_timeout_ms = 15000;               // nothing from the master for this long: close
  const Authenticator* authenticator = nullptr;  // null: no shared secret
};

struct CloneHooks {
  RandomBytesFun random_bytes;
  // Writes a checked chunk: its data goes at chunk.offset of file chunk.name
  // (offset 0 starts a new file). An error closes the session.
  std::function<Status(const FileChunk& chunk)> write;
};

class CloneSession {
 public:
  CloneSession(CloneOptions options, CloneHooks hooks);
  CloneSession(const CloneSession&) = delete;
  CloneSession& operator=(const CloneSession&) = delete;

  void Start();  // sends Hello
  void OnBytes(std::string_view bytes);
  void OnTick(int64_t now_ms);
  void Close(std::string_view reason);

  std::string TakeOutput() { return std::exchange(out_, {}); }
  bool wants_write() const { return !out_.empty(); }

  // The last chunk arrived and every file is whole: the copy is complete.
  bool done() const { return state_ == State::kDone; }
  bool closed() const { return state_ == State::kClosed; }
  bool finished() const { return done() || closed(); }
  const Status& error() const { return error_; }  // why it closed; OK when done
  // The code of the master's Reject when the master refused us (error() is
  // then Aborted "master refused: <reason>"); nullopt for any other outcome.
  // kRole means the master does not serve its files to us: open an empty
  // database and follow it instead.
  std::optional<RejectCode> reject_code() const { return reject_code_; }
  bool refused_role() const { return reject_code_ == RejectCode::kRole; }
  // The master's identity, sequence and families, once welcomed.
  const Welcome& welcome() const { return welcome_; }
  bool welcomed() const { return welcomed_; }
  uint64_t files_received() const { return names_.size(); }  // started so far
  uint64_t bytes_received() const { return bytes_; }         // file data so far

 private:
  enum class State { kIdle, kAwaitChallenge, kAwaitWelcome, kReceiving, kDone, kClosed };

  void Handle(Message& message);
  void HandleChunk(const FileChunk& chunk);
  template <MessageAlternative M>
  void Send(const M& message) {
    wire::AppendFrame(message, &out_);
  }
  void Fail(Status status, RejectCode code = RejectCode::kProtocol);

  CloneOptions options_;
  CloneHooks hooks_;
  wire::FrameReader reader_;
  std::string out_;
  State state_ = State::kIdle;
  Status error_;
  std::optional<RejectCode> reject_code_;
  std::string client_nonce_;
  Welcome welcome_;
  bool welcomed_ = false;
  std::unordered_set<std::string> names_;  // files started (no name twice)
  std::string current_;                    // the file being received; "" between files
  uint64_t current_size_ = 0;
  uint64_t current_offset_ = 0;  // bytes of it received
  uint64_t bytes_ = 0;
  int64_t now_ms_ = -1;
  int64_t last_received_ms_ = -1;
};

}  // namespace sdiff
