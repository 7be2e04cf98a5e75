// Frames on the wire: the encoding of engine/messages.h.
//
// Frame layout (docs/protocol.md, "Frames and messages", is the normative text):
//   length  u32 little-endian: bytes that follow (type + body), 1..max_frame
//   type    u8: the message type (MessageType)
//   body    the message's fields, in the order docs/protocol.md gives
// Integers in bodies are LEB128 varints unless fixed-width is said; strings and
// byte strings are a varint length then the bytes; hashes are 16 canonical bytes
// (a FileChunk's 64-bit data hash: 8 bytes little-endian).
// Every length and count is checked against the bytes present before anything
// is allocated, so a frame never costs more memory than its own size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "engine/messages.h"
#include "engine/status.h"

namespace sdiff::wire {

// 2: large batches and values travel in pieces (BatchPart, PutStart, ValuePart).
// 3: the diff compares on both sides (NodesRequest carries the master's
//    summaries, Nodes answers with what differs) and folds large summaries.
constexpr uint8_t kProtocolVersion = 4;
constexpr size_t kFrameHeaderSize = 4;
constexpr size_t kDefaultMaxFrame = 64 << 20;  // 64 MiB
// The largest value a PutStart may announce: RocksDB's own limit (its write
// batches store a value's length in 32 bits).
constexpr uint64_t kMaxValueBytes = (uint64_t{1} << 32) - 1;
// Until a peer has authenticated (proved the shared secret or, with none,
// finished the handshake), a master accepts frames of at most this size and
// reads the socket in pieces no larger: the largest Hello and Auth fit (see
// the static_assert in wire.cc), so a connection that never authenticates
// holds a few KiB, not a 64 MiB frame.
constexpr size_t kMaxHandshakeFrame = 4 << 10;  // 4 KiB
// Hello.bootstrap_key is at most this long. A follower whose last bootstrapped
// key is longer sends a prefix of it: the master resumes at that prefix and
// re-sends the few keys between it and the key, which the follower already has.
constexpr size_t kMaxBootstrapKeyBytes = 2 << 10;  // 2 KiB
// A NodesRequest asks about at most this many trie prefixes. The follower
// answers each with a summary of up to 256 children, or with summaries of up
// to 64 differing children of at most 64 hashes each, so the limit bounds its
// answer (about 35 MiB at 8-byte hashes, 10 MiB at 2) whatever the request's
// frame size.
constexpr size_t kMaxPathsPerRequest = 1024;
// An AuditReport names at most this many differing keys, each in at most this
// many bytes: a report is a summary, never a list of every difference.
constexpr size_t kMaxAuditExamples = 16;
constexpr size_t kMaxAuditExampleBytes = 1 << 10;  // 1 KiB

enum class MessageType : uint8_t {
  kHello = 1,
  kChallenge = 2,
  kAuth = 3,
  kWelcome = 4,
  kReject = 5,
  kBatch = 6,
  kSyncRequest = 7,
  kSyncStart = 8,
  kSyncRoot = 9,
  kNodesRequest = 10,
  kNodes = 11,
  kRepair = 12,
  kSyncDone = 13,
  kBootstrapChunk = 14,
  kPing = 15,
  kPong = 16,
  kWrite = 17,
  kWriteAck = 18,
  kFileChunk = 19,
  kBatchPart = 20,
  kPutStart = 21,
  kValuePart = 22,
  kAuditReport = 23,
};

// Appends one whole frame (header, type, body) for `message` to `out`.
// `message` must be one DecodeFrame accepts (strings and counts within their
// limits, summaries well formed, hash_bytes 1..8); debug builds assert it.
void AppendFrame(const Message& message, std::string* out);
// The same for one alternative, encoded where it is: building a Message from
// it first would copy it (every key and value of a Batch or a Repair).
template <MessageAlternative M>
void AppendFrame(const M& message, std::string* out);

// The frames of a batch or value sent in pieces, encoded from where the data
// lies: a BatchPart of ops[...] and a ValuePart of a slice of a value, with no
// copy into a message value first.
void AppendBatchPart(uint64_t seq, uint64_t count, uint64_t bytes, std::span<const Op> ops,
                     bool last, std::string* out);
void AppendValuePart(std::string_view data, std::string* out);

// Decodes a frame's type byte and body (the bytes after the length prefix).
// Fails with Corruption on an unknown type, a truncated or over-long field,
// trailing bytes, or a value out of its range.
// The decoded message never takes more than `memory_limit` bytes of memory
// (strings, vectors and their elements): a frame cannot make the decoder
// allocate beyond the frame limit, whatever its counts say.
Status DecodeFrame(std::string_view type_and_body, Message* message,
                   size_t memory_limit = kDefaultMaxFrame);

// Splits a byte stream into frames. Feed it bytes as they arrive; pull frames.
class FrameReader {
 public:
  explicit FrameReader(size_t max_frame = kDefaultMaxFrame) : max_frame_(max_frame) {}

  // Bytes that arrive after an error are dropped.
  void Append(std::string_view bytes) {
    if (error_.ok()) buffer_.append(bytes);
  }

  // If a whole frame is buffered: decodes it into *message, sets *got = true.
  // Otherwise *got = false. An error (oversize length, malformed frame) is
  // final: the stream cannot be resynchronised, and every later call returns it.
  // A length prefix of 0 or above max_frame fails as soon as the prefix is here.
  Status Next(Message* message, bool* got);

  // Appends `bytes`, then hands each whole frame to `handle`, in order, until
  // none is left or `handle` returns false (its session closed). Returns the
  // stream's error, if it has one, for the session to fail with.
  Status Drain(std::string_view bytes, const std::function<bool(Message&)>& handle);

  size_t buffered() const { return buffer_.size() - consumed_; }
  // Memory the buffered bytes hold. With max_frame F and appends of at most A
  // bytes the buffer holds a partial frame (under F + 4 bytes), the bytes
  // consumed before it that compaction has not yet dropped (fewer than the
  // partial frame: see Compact) and the append, so under 2 (F + 4) + A; the
  // string's capacity grows by doubling, so at most twice that:
  // 4 (F + 4) + 2 A. (A random stream of frames reaches 2.5 (F + 4 + A).)
  size_t buffer_capacity() const { return buffer_.capacity(); }
  size_t max_frame() const { return max_frame_; }
  // The limit for frames not yet started (a server raises it once its peer
  // has authenticated).
  void set_max_frame(size_t max_frame) { max_frame_ = max_frame; }

 private:
  void Compact();  // drops consumed bytes once they outnumber the pending ones
  Status Fail(Status error);

  size_t max_frame_;
  std::string buffer_;
  size_t consumed_ = 0;  // bytes at the front of buffer_ already decoded
  Status error_;
};

}  // namespace sdiff::wire
