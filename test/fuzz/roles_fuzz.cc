// libFuzzer target for the one-purpose client sessions: WriterSession,
// CloneSession and AuditSession (the first byte picks one). The input is a
// script: the master sends a message that fits the conversation (Challenge
// with a right or wrong proof, Welcome, WriteAcks in or out of order, the
// file chunks of a copy, an AuditReport, Pings), a sample message of any
// type, mutated or not, or raw bytes; the clock advances; the local side
// submits a write or closes.
//
// Invariants (test/fuzz/fuzz_support.h, and below): every frame sent decodes;
// a close is final and, unless clean, carries a reason and ends in a Reject;
// a writer's acks come in submission order and never outnumber its writes;
// a cloner writes only checked chunks, and nothing once finished.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/audit_session.h"
#include "engine/clone_session.h"
#include "engine/hash.h"
#include "engine/testing/fake_authenticator.h"
#include "engine/writer_session.h"
#include "test/fuzz/fuzz_support.h"

namespace sdiff::fuzz {
namespace {

using testing::FakeAuthenticator;

enum class Kind { kWriter, kCloner, kAuditor };

class RolesFuzz {
 public:
  explicit RolesFuzz(FuzzedDataProvider& in) : in_(in) {}

  void Run() {
    kind_ = static_cast<Kind>(in_.ConsumeIntegralInRange<int>(0, 2));
    const Authenticator* auth = in_.ConsumeBool() ? &auth_ : nullptr;
    size_t max_frame = in_.ConsumeBool() ? wire::kDefaultMaxFrame : 600;
    int64_t idle = in_.ConsumeIntegralInRange<int64_t>(1, 20000);
    auto random = [this](uint8_t* out, size_t n) {
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(rng_());
    };
    switch (kind_) {
      case Kind::kWriter:
        writer_ = std::make_unique<WriterSession>(WriterOptions{max_frame, idle, auth},
                                                  WriterHooks{random});
        break;
      case Kind::kCloner: {
        CloneHooks hooks{random, nullptr};
        hooks.write = [this](const FileChunk& chunk) {
          Check(!clone_->finished(), "a finished cloner wrote");
          Check(IsPlainFileName(chunk.name), "a cloner wrote a file with a path in its name");
          Check(DataHash64(chunk.data) == chunk.data_hash, "a cloner wrote an unchecked chunk");
          Check(chunk.offset + chunk.data.size() <= chunk.file_size, "a chunk past its file");
          return fail_writes_ ? Status::IOError("fake: disk full") : Status::OK();
        };
        clone_ =
            std::make_unique<CloneSession>(CloneOptions{max_frame, idle, auth}, std::move(hooks));
        break;
      }
      case Kind::kAuditor:
        audit_ = std::make_unique<AuditSession>(AuditorOptions{max_frame, idle, auth},
                                                AuditorHooks{random});
        break;
    }
    for (int step = 0; step < kMaxSteps && in_.remaining_bytes() > 0; ++step) {
      Step();
      if (watch_.was_closed() && in_.ConsumeBool()) break;
    }
  }

 private:
  bool closed() const {
    switch (kind_) {
      case Kind::kWriter:
        return writer_->closed();
      case Kind::kCloner:
        return clone_->closed();
      case Kind::kAuditor:
        return audit_->closed();
    }
    return false;
  }
  const Status& error() const {
    return kind_ == Kind::kWriter   ? writer_->error()
           : kind_ == Kind::kCloner ? clone_->error()
                                    : audit_->error();
  }
  std::string TakeOutput() {
    return kind_ == Kind::kWriter   ? writer_->TakeOutput()
           : kind_ == Kind::kCloner ? clone_->TakeOutput()
                                    : audit_->TakeOutput();
  }

  void Step() {
    size_t input = 0;
    switch (in_.ConsumeIntegralInRange<int>(0, 11)) {
      case 0:
        if (writer_) writer_->Start();
        if (clone_) clone_->Start();
        if (audit_) audit_->Start();
        break;
      case 1:
        input = SendChallenge();
        break;
      case 2: {
        Welcome welcome;
        welcome.master_id = "master-1";
        welcome.mode = in_.ConsumeBool()
                           ? StartMode::kFiles
                           : static_cast<StartMode>(in_.ConsumeIntegral<uint8_t>() % 4 + 1);
        welcome.resume_from = 1;
        welcome.families = {{0, "default"}};
        input = Deliver(Frame(welcome));
        break;
      }
      case 3:
        input = SendRoleMessage();
        break;
      case 4:
        input = SendRoleMessage();
        break;
      case 5:
        input =
            Deliver(Frame(Ping{in_.ConsumeIntegral<uint64_t>(), in_.ConsumeIntegral<uint64_t>()}));
        break;
      case 6:
        input = Deliver(SampleFrame(in_));
        break;
      case 7:
        input = Deliver(in_.ConsumeBytesAsString(in_.ConsumeIntegralInRange<size_t>(0, 64)));
        break;
      case 8:
        now_ms_ += in_.ConsumeIntegralInRange<int64_t>(0, 25000);
        if (writer_) writer_->OnTick(now_ms_);
        if (clone_) clone_->OnTick(now_ms_);
        if (audit_) audit_->OnTick(now_ms_);
        break;
      case 9:
        if (writer_ && writer_->Submit(SomeOps(in_)) != 0) ++submitted_;
        fail_writes_ = !fail_writes_;
        break;
      case 10:
        if (writer_) writer_->Close("fuzz: local close");
        if (clone_) clone_->Close("fuzz: local close");
        if (audit_) audit_->Close("fuzz: local close");
        break;
      case 11:
        input = Deliver(Frame(Reject{RejectCode::kRole, in_.ConsumeRandomLengthString(8)}));
        break;
    }
    std::string out = TakeOutput();
    // A Pong per Ping, an Auth per Challenge, the Writes that waited for the
    // Welcome, and a Reject: small frames for each input byte.
    Check(out.size() <= 64 * input + (1 << 20) * submitted_ + (4 << 10), "output past its bound");
    std::vector<Message> sent = DecodeOutput(out);
    for (const Message& m : sent) {
      if (auto* hello = std::get_if<Hello>(&m)) client_nonce_ = hello->client_nonce;
    }
    bool clean_ok = (clone_ && clone_->done()) || (audit_ && audit_->done());
    watch_.Step(closed(), error(), sent, clean_ok, "master refused: ");
    if (writer_) {
      while (auto ack = writer_->PollAck()) {
        Check(ack->id == ++acked_, "a WriteAck out of order");
      }
      Check(acked_ + writer_->in_flight() <= submitted_ + 0, "more acks than writes");
    }
    if (clone_ && clone_->done()) Check(clone_->error().ok(), "a finished copy with an error");
    if (audit_ && audit_->done()) Check(audit_->report().has_value(), "done with no report");
  }

  template <typename M>
  static std::string Frame(const M& m) {
    std::string out;
    wire::AppendFrame(m, &out);
    return out;
  }

  size_t Deliver(std::string bytes) {
    if (in_.ConsumeIntegralInRange<int>(0, 7) == 0) Mutate(in_, &bytes);
    size_t split = in_.ConsumeIntegralInRange<size_t>(0, bytes.size());
    for (std::string_view piece :
         {std::string_view(bytes).substr(0, split), std::string_view(bytes).substr(split)}) {
      if (writer_) writer_->OnBytes(piece);
      if (clone_) clone_->OnBytes(piece);
      if (audit_) audit_->OnBytes(piece);
    }
    return bytes.size();
  }

  size_t SendChallenge() {
    Challenge challenge;
    challenge.version = in_.ConsumeBool() ? wire::kProtocolVersion : in_.ConsumeIntegral<uint8_t>();
    challenge.server_nonce = std::string(32, 's');
    switch (in_.ConsumeIntegralInRange<int>(0, 2)) {
      case 0:
        challenge.server_proof =
            auth_.Sign(MasterProofMessage(client_nonce_, challenge.server_nonce));
        break;
      case 1:
        challenge.server_proof =
            FakeAuthenticator("other secret")
                .Sign(MasterProofMessage(client_nonce_, challenge.server_nonce));
        break;
      case 2:
        break;
    }
    return Deliver(Frame(challenge));
  }

  // What the master sends a role after its Welcome.
  size_t SendRoleMessage() {
    switch (kind_) {
      case Kind::kWriter: {
        WriteAck ack;
        ack.id = in_.ConsumeBool() ? acked_ + 1 : in_.ConsumeIntegralInRange<uint64_t>(0, 5);
        ack.seq = in_.ConsumeIntegral<uint64_t>();
        if (in_.ConsumeBool()) ack.error = "fake: not written";
        return Deliver(Frame(ack));
      }
      case Kind::kCloner:
        return Deliver(NextChunk());
      case Kind::kAuditor: {
        AuditReport report;
        report.keys = in_.ConsumeIntegral<uint64_t>();
        if (in_.ConsumeBool()) report.error = "fake: audit failed";
        return Deliver(Frame(report));
      }
    }
    return 0;
  }

  // The next chunk of a copy of up to three small files, mostly right: now
  // and then a name, offset, size, hash or `last` that is not.
  std::string NextChunk() {
    FileChunk chunk;
    if (file_left_ == 0) {
      ++file_;
      file_size_ = in_.ConsumeIntegralInRange<uint64_t>(0, 600);
      file_left_ = file_size_;
      file_offset_ = 0;
    }
    chunk.name = "00" + std::to_string(file_) + ".sst";
    chunk.file_size = file_size_;
    chunk.offset = file_offset_;
    size_t n = static_cast<size_t>(
        std::min<uint64_t>(file_left_, in_.ConsumeIntegralInRange<uint64_t>(1, 300)));
    chunk.data.assign(n, static_cast<char>('0' + file_ % 10));
    chunk.data_hash = DataHash64(chunk.data);
    file_offset_ += n;
    file_left_ -= n;
    chunk.last = file_left_ == 0 && (file_ >= 3 || in_.ConsumeBool());
    switch (in_.ConsumeIntegralInRange<int>(0, 15)) {
      case 0:
        chunk.name = in_.ConsumeBool() ? "../escape" : "a/b";
        break;
      case 1:
        chunk.offset += in_.ConsumeIntegralInRange<uint64_t>(1, 10);
        break;
      case 2:
        chunk.file_size = in_.ConsumeIntegral<uint64_t>();
        break;
      case 3:
        chunk.data_hash ^= 1;
        break;
      case 4:
        chunk.last = !chunk.last;
        break;
      case 5:
        file_ = 0;  // a name sent before
        break;
      default:
        break;
    }
    return Frame(chunk);
  }

  FuzzedDataProvider& in_;
  std::mt19937_64 rng_{1};
  Kind kind_ = Kind::kWriter;
  FakeAuthenticator auth_{"fuzz secret"};
  std::unique_ptr<WriterSession> writer_;
  std::unique_ptr<CloneSession> clone_;
  std::unique_ptr<AuditSession> audit_;
  std::string client_nonce_;
  bool fail_writes_ = false;
  int64_t now_ms_ = 0;
  uint64_t submitted_ = 0;
  uint64_t acked_ = 0;
  int file_ = 0;
  uint64_t file_size_ = 0, file_left_ = 0, file_offset_ = 0;
  CloseWatch watch_;
};

}  // namespace
}  // namespace sdiff::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  sdiff::fuzz::RolesFuzz(in).Run();
  return 0;
}
