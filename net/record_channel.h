// RecordChannel: integrity for every byte a connection carries, below the
// protocol's frames. Without it a byte flipped on the path (a bad NIC, a
// middlebox, an attacker after the handshake) could land in a replica as a
// value that no diff ever questions, since the diff compares with the
// master's tree, not with what the follower was sent.
//
// Each side first sends a hello, then its bytes as records:
//   hello   magic "SDIFFREC" (8) | version u8 | mode u8 | salt (16)
//   record  length u32 little-endian (1..kMaxRecordPayload) | payload | tag
//   alert   0 u32 | reason length u8 | reason: the sender closes the
//           connection, and why (a record of ours that failed its check).
//           Unauthenticated: it can only end a connection, as a reset can.
// The tag covers the record's number in its direction (0, 1, 2, ...), its
// length and its payload, so a changed, dropped, repeated or reordered record
// fails:
//   mode 0 (no shared secret): XXH3-64 of the payload seeded with the record
//     number, 8 bytes: it catches corruption, not an attacker;
//   mode 1 (shared secret): AES-256-GCM with the payload as authenticated
//     data only (GMAC), the record number as nonce, 16 bytes, under a key
//     per direction derived with HKDF-SHA256 from the secret, the sender's
//     salt and the direction. A peer without the secret can neither forge
//     nor alter a record, nor replay one from another connection.
// The payloads, joined, are the protocol's byte stream (docs/protocol.md).
// Sans-I/O: bytes in, bytes out; not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "engine/status.h"

namespace sdiff::net {

// The most payload one record carries: a master accepts no more than this
// from a peer that has not authenticated, so records stay within the few KiB
// such a peer may cost (wire::kMaxHandshakeFrame).
inline constexpr size_t kMaxRecordPayload = 4 << 10;
inline constexpr size_t kRecordHelloSize = 8 + 1 + 1 + 16;

class RecordChannel {
 public:
  // `secret` empty: checksums (mode 0). `server_side`: which direction is ours.
  static Status Create(std::string_view secret, bool server_side,
                       std::unique_ptr<RecordChannel>* out);
  ~RecordChannel();
  RecordChannel(const RecordChannel&) = delete;
  RecordChannel& operator=(const RecordChannel&) = delete;

  // The hello, to send before any record.
  const std::string& hello() const { return hello_; }
  // Appends `plain` to *out as records.
  void Seal(std::string_view plain, std::string* out);
  // Takes bytes received; appends the payloads of the records they complete,
  // verified, to *plain. An error (a tampered or corrupted record, a peer in
  // another mode or speaking something else) means: close the connection.
  Status Open(std::string_view bytes, std::string* plain);
  // An alert telling the peer why we close (at most 255 bytes of `reason`).
  static std::string Alert(std::string_view reason);
  // Bytes received and held until their record is complete.
  size_t buffered_bytes() const { return in_.size(); }
  uint64_t records_opened() const { return in_count_; }

 private:
  struct Keys;
  RecordChannel() = default;
  Status ReadHello();
  // Writes the tag of a record to `tag`; returns its size, 0 if OpenSSL failed.
  static constexpr size_t kMaxTagSize = 16;
  size_t Tag(bool sending, uint64_t number, std::string_view payload, char tag[kMaxTagSize]);

  bool secret_mode_ = false;
  bool server_side_ = false;
  std::string secret_;
  std::string hello_;
  std::unique_ptr<Keys> keys_;
  bool peer_hello_ = false;
  std::string in_;  // received, not yet a whole record (or the hello)
  uint64_t out_count_ = 0;
  uint64_t in_count_ = 0;
};

}  // namespace sdiff::net
