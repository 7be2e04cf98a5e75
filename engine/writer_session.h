// WriterSession: a writer's connection to a master that accepts writers, sans-I/O.
//
// After the handshake (Hello with role kWriter, Challenge, Auth, Welcome) the
// writer sends Write frames, each a set of ops the master commits as one
// atomic batch through its own write path (so followers get them like any
// other write), and the master answers each with a WriteAck, in order.
// Writes submitted before the Welcome wait for it. Every Write stays "in
// flight" until its ack; callers bound the pipeline with in_flight().
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/authenticator.h"
#include "engine/client_handshake.h"
#include "engine/messages.h"
#include "engine/status.h"
#include "engine/wire.h"

namespace sdiff {

struct WriterOptions {
  size_t max_frame = wire::kDefaultMaxFrame;
  // Nothing from the master for this long, or no WriteAck while writes are in
  // flight: close.
  int64_t idle_timeout_ms = 15000;
  const Authenticator* authenticator = nullptr;  // null: no shared secret
};

struct WriterHooks {
  RandomBytesFun random_bytes;
};

class WriterSession {
 public:
  WriterSession(WriterOptions options, WriterHooks hooks);
  WriterSession(const WriterSession&) = delete;
  WriterSession& operator=(const WriterSession&) = delete;

  void Start();  // sends Hello
  void OnBytes(std::string_view bytes);
  void OnTick(int64_t now_ms);
  void Close(std::string_view reason);

  // Queues `ops` as one Write; returns its id (1, 2, ...). Sent at once when
  // ready(), else after the Welcome. Ignored once closed.
  uint64_t Submit(std::vector<Op> ops);
  // Acks in the order the writes were submitted.
  std::optional<WriteAck> PollAck();

  std::string TakeOutput() { return std::exchange(out_, {}); }
  bool wants_write() const { return !out_.empty(); }

  bool ready() const { return state_ == State::kReady; }  // welcomed
  bool closed() const { return state_ == State::kClosed; }
  const Status& error() const { return error_; }
  size_t in_flight() const { return in_flight_; }  // submitted, not yet acked
  // The master's replicated column families (from the Welcome): a writer
  // names families by their tags.
  const std::vector<FamilyInfo>& families() const { return families_; }

 private:
  enum class State { kIdle, kAwaitChallenge, kAwaitWelcome, kReady, kClosed };

  void Handle(Message& message);
  template <MessageAlternative M>
  void Send(const M& message) {
    wire::AppendFrame(message, &out_);
  }
  void Fail(Status status, RejectCode code = RejectCode::kProtocol);

  WriterOptions options_;
  WriterHooks hooks_;
  wire::FrameReader reader_;
  std::string out_;
  State state_ = State::kIdle;
  Status error_;
  std::string client_nonce_;
  std::vector<FamilyInfo> families_;
  std::deque<Write> waiting_;  // submitted before the Welcome
  std::deque<WriteAck> acks_;
  uint64_t next_id_ = 1;
  uint64_t next_ack_id_ = 1;  // acks must come in order
  size_t in_flight_ = 0;
  int64_t now_ms_ = -1;
  int64_t last_received_ms_ = -1;
  int64_t ack_wait_since_ms_ = -1;  // first tick with writes in flight since the last ack
};

}  // namespace sdiff
