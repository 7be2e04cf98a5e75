// libFuzzer target for the handshake and its authentication, over the record
// layer, as a connection runs them: a ServerSession and a ClientSession, each
// behind a net::RecordChannel, each side with its own shared secret (the same
// or not, or none) and net::HmacAuthenticator, and the bytes between them
// crossing in pieces the input chooses, or changed on the way (a byte
// flipped or replaced, bytes dropped, inserted or sent twice). A second mode
// feeds arbitrary bytes straight into a RecordChannel.
//
// Invariants: a record layer hands a session only a prefix of what its peer
// sealed (a changed, dropped, repeated or forged record fails, and the
// connection closes); its buffer stays within a hello and one record; sides
// with different secrets never get past the handshake (no Welcome, neither
// streams); and, with the same secret and nothing changed, both do.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "engine/client_session.h"
#include "engine/server_session.h"
#include "engine/testing/memory_replica.h"
#include "net/hmac_authenticator.h"
#include "net/record_channel.h"
#include "test/fuzz/fuzz_support.h"

namespace sdiff::fuzz {
namespace {

using net::RecordChannel;
using testing::MemoryFollower;
using testing::MemoryMaster;

// A hello, one partial record and one more read's worth: what a channel may
// hold between calls (its largest tag is 16 bytes).
constexpr size_t kMaxChunk = 8 << 10;
constexpr size_t kChannelBound =
    net::kRecordHelloSize + 4 + net::kMaxRecordPayload + 16 + kMaxChunk;

// One direction of a connection: what the sender sealed, what is in flight,
// and what the receiver opened.
struct Direction {
  std::string sealed_plain;  // every byte the sender's session produced
  std::string wire;          // records not yet delivered
  std::string opened;        // payloads the receiver's channel handed on
  bool closed = false;       // the receiver's channel failed: no more reads
};

class HandshakeFuzz {
 public:
  explicit HandshakeFuzz(FuzzedDataProvider& in) : in_(in), master_("master-1") {}

  void Run() {
    if (in_.ConsumeIntegralInRange<int>(0, 3) == 0) return RawRecords();
    std::string master_secret = Secret(), follower_secret = Secret();
    if (in_.ConsumeBool()) follower_secret = master_secret;
    same_secret_ = master_secret == follower_secret;
    if (!master_secret.empty())
      master_auth_ = std::make_unique<net::HmacAuthenticator>(master_secret);
    if (!follower_secret.empty()) {
      follower_auth_ = std::make_unique<net::HmacAuthenticator>(follower_secret);
    }
    Check(RecordChannel::Create(master_secret, true, &master_records_).ok(), "record channel");
    Check(RecordChannel::Create(follower_secret, false, &follower_records_).ok(), "record channel");

    ServerOptions server_options = master_.Options();
    server_options.authenticator = master_auth_.get();
    hooks_ = master_.Hooks(&rng_);
    server_ = std::make_unique<ServerSession>(server_options, hooks_);
    ClientOptions client_options;
    client_options.role = in_.ConsumeBool() ? Role::kFollower : Role::kInspector;
    client_options.authenticator = follower_auth_.get();
    client_ =
        std::make_unique<ClientSession>(client_options, follower_.Hooks(&rng_), FollowerState{});
    to_master_.wire = follower_records_->hello();
    to_follower_.wire = master_records_->hello();
    client_->Start();
    Flush();
    for (int step = 0; step < kMaxSteps && in_.remaining_bytes() > 0; ++step) {
      switch (in_.ConsumeIntegralInRange<int>(0, 4)) {
        case 0:
        case 1:
          Deliver(&to_master_, true, in_.ConsumeIntegralInRange<size_t>(1, kMaxChunk));
          break;
        case 2:
        case 3:
          Deliver(&to_follower_, false, in_.ConsumeIntegralInRange<size_t>(1, kMaxChunk));
          break;
        case 4:
          Tamper(in_.ConsumeBool() ? &to_master_ : &to_follower_);
          break;
      }
      Flush();
      Checks();
    }
    // Everything still in flight crosses, unchanged.
    for (int i = 0; i < 100 && !(to_master_.wire.empty() && to_follower_.wire.empty()); ++i) {
      Deliver(&to_master_, true, kMaxChunk);
      Deliver(&to_follower_, false, kMaxChunk);
      Flush();
      Checks();
    }
    if (same_secret_ && !tampered_) {
      Check(server_->streaming() && client_->streaming(), "the same secret did not get through");
    }
  }

 private:
  // Empty (no secret), one of two fixed secrets, or bytes from the input.
  std::string Secret() {
    switch (in_.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:
        return "";
      case 1:
        return "a shared secret of 32 bytes here";
      case 2:
        return "another secret, also 32 bytes!!";
      default:
        return in_.ConsumeRandomLengthString(40);
    }
  }

  void Checks() {
    for (const Direction* d : {&to_master_, &to_follower_}) {
      Check(d->sealed_plain.starts_with(d->opened), "a record layer passed on bytes not sent");
    }
    Check(master_records_->buffered_bytes() <= kChannelBound, "a record layer held too much");
    Check(follower_records_->buffered_bytes() <= kChannelBound, "a record layer held too much");
    if (!same_secret_ && master_auth_ && follower_auth_) {
      Check(!server_->streaming() && !client_->streaming(), "different secrets got through");
    }
  }

  // Seals what each session has to send.
  void Flush() {
    for (int i = 0; i < 4; ++i) {
      std::string out = client_->TakeOutput();
      to_master_.sealed_plain += out;
      follower_records_->Seal(out, &to_master_.wire);
      while (server_->PollEvent()) {
      }
      ServeDbRequestsNow(*server_, hooks_);
      while (client_->PollEvent()) {
      }
      std::string server_out = server_->wants_write() ? server_->TakeOutput() : std::string();
      if (!server_out.empty()) {
        for (const Message& m : DecodeOutput(server_out)) {
          Check(!std::holds_alternative<Welcome>(m) || same_secret_ || !master_auth_,
                "a Welcome to a peer with another secret");
        }
      }
      to_follower_.sealed_plain += server_out;
      master_records_->Seal(server_out, &to_follower_.wire);
      if (out.empty() && server_out.empty()) break;
    }
  }

  void Deliver(Direction* d, bool to_master, size_t n) {
    if (d->closed || d->wire.empty()) return;
    std::string chunk = d->wire.substr(0, n);
    d->wire.erase(0, chunk.size());
    RecordChannel& channel = to_master ? *master_records_ : *follower_records_;
    std::string plain;
    Status s = channel.Open(chunk, &plain);
    d->opened += plain;
    if (to_master) {
      server_->OnBytes(plain);
    } else {
      client_->OnBytes(plain);
    }
    if (!s.ok()) {
      Check(!s.message().empty(), "a record layer failed with no reason");
      d->closed = true;
    }
  }

  void Tamper(Direction* d) {
    if (d->wire.empty()) return;
    size_t at = in_.ConsumeIntegralInRange<size_t>(0, d->wire.size() - 1);
    size_t n = in_.ConsumeIntegralInRange<size_t>(1, 32);
    switch (in_.ConsumeIntegralInRange<int>(0, 4)) {
      case 0:
        d->wire[at] ^= static_cast<char>(1 << in_.ConsumeIntegralInRange<int>(0, 7));
        break;
      case 1:
        d->wire[at] = static_cast<char>(in_.ConsumeIntegral<uint8_t>());
        break;
      case 2:
        d->wire.erase(at, n);
        break;
      case 3:
        d->wire.insert(at, in_.ConsumeBytesAsString(n));
        break;
      case 4:
        d->wire.insert(at, d->wire.substr(at, n));
        break;
    }
    tampered_ = true;
  }

  // Arbitrary bytes into a channel of either mode, in pieces.
  void RawRecords() {
    std::string secret = in_.ConsumeBool() ? "" : "a shared secret of 32 bytes here";
    std::unique_ptr<RecordChannel> channel;
    Check(RecordChannel::Create(secret, in_.ConsumeBool(), &channel).ok(), "record channel");
    // A valid hello of the right mode first, most of the time.
    std::unique_ptr<RecordChannel> peer;
    Check(RecordChannel::Create(secret, false, &peer).ok(), "record channel");
    std::string bytes = in_.ConsumeBool() ? peer->hello() : std::string();
    if (in_.ConsumeBool()) peer->Seal(in_.ConsumeRandomLengthString(6000), &bytes);
    bytes += in_.ConsumeRemainingBytesAsString();
    std::string plain;
    for (size_t at = 0; at < bytes.size();) {
      size_t n = std::min(bytes.size() - at, size_t{1} + (bytes[at] & 0xff) * 32);
      Status s = channel->Open(std::string_view(bytes).substr(at, n), &plain);
      Check(channel->buffered_bytes() <= kChannelBound, "a record layer held too much");
      if (!s.ok()) {
        Check(!s.message().empty(), "a record layer failed with no reason");
        break;
      }
      at += n;
    }
  }

  FuzzedDataProvider& in_;
  std::mt19937_64 rng_{1};
  MemoryMaster master_;
  MemoryFollower follower_;
  std::unique_ptr<net::HmacAuthenticator> master_auth_, follower_auth_;
  std::unique_ptr<RecordChannel> master_records_, follower_records_;
  MasterHooks hooks_;  // the server's, to serve its database requests
  std::unique_ptr<ServerSession> server_;
  std::unique_ptr<ClientSession> client_;
  Direction to_master_, to_follower_;
  bool same_secret_ = false;
  bool tampered_ = false;
};

}  // namespace
}  // namespace sdiff::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  sdiff::fuzz::HandshakeFuzz(in).Run();
  return 0;
}
