// libFuzzer target for ClientSession, the follower's (and inspector's) side of
// a connection. The input is a script: the master sends a message that fits
// the conversation (Challenge, Welcome, batches at the stream's position, in
// parts or whole, a diff's SyncStart, NodesRequests, Repairs and SyncDone,
// bootstrap chunks, large puts in pieces, Pings), a sample message of any
// type, mutated or not, or raw bytes; the clock advances; the follower asks
// for a diff, closes, or its database refuses a write.
//
// Invariants (test/fuzz/fuzz_support.h, and below): every frame sent decodes;
// a close is final, writes nothing more, and unless clean carries a reason
// and ends in a Reject; the input buffer stays within wire.h's bound; one
// step's output stays within what its input asked for (a Nodes answers at
// most wire::kMaxPathsPerRequest paths, each with a summary of at most 256
// children or with at most kMaxDetails summaries of what differs).
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/client_session.h"
#include "engine/sync.h"
#include "engine/testing/fake_authenticator.h"
#include "engine/testing/memory_replica.h"
#include "test/fuzz/fuzz_support.h"

namespace sdiff::fuzz {
namespace {

using testing::FakeAuthenticator;
using testing::MemoryFollower;

// A StagedWrite that keeps nothing but counts, as the RocksDB follower's
// write batch would hold what it is given.
class CountingStage : public StagedWrite {
 public:
  explicit CountingStage(bool fail) : fail_(fail) {}
  Status AddOps(std::vector<Op>& ops) override {
    ops.clear();
    return fail_ ? Status::IOError("fake stage failure") : Status::OK();
  }
  Status StartPut(FamilyTag, std::string_view, uint64_t) override { return Status::OK(); }
  Status AddValue(std::string_view) override { return Status::OK(); }

 private:
  bool fail_;
};

class ClientFuzz {
 public:
  explicit ClientFuzz(FuzzedDataProvider& in) : in_(in) {}

  void Run() {
    Setup();
    for (int step = 0; step < kMaxSteps && in_.remaining_bytes() > 0; ++step) {
      Step();
      if (watch_.was_closed() && in_.ConsumeBool()) break;
    }
  }

 private:
  void Setup() {
    for (int i = in_.ConsumeIntegralInRange<int>(0, 30); i > 0; --i) {
      follower_.Put(static_cast<FamilyTag>(i % 3), "k" + std::to_string(i), SomeValue(in_));
    }
    FollowerState state;
    if (in_.ConsumeBool()) {
      state.master_id = "master-1";
      state.applied_seq = in_.ConsumeIntegralInRange<uint64_t>(0, 50);
      state.bootstrapping = in_.ConsumeBool();
      state.bootstrap_key = SmallKey(in_);
    }
    follower_.SetState(state);
    ClientOptions options;
    options.role = in_.ConsumeBool() ? Role::kFollower : Role::kInspector;
    const size_t kMaxFrame[] = {wire::kDefaultMaxFrame, 1 << 16, 512};
    options.max_frame = kMaxFrame[in_.ConsumeIntegralInRange<int>(0, 2)];
    options.idle_timeout_ms = in_.ConsumeIntegralInRange<int64_t>(1, 20000);
    options.diff_after_catch_up = in_.ConsumeBool();
    if (in_.ConsumeBool()) options.authenticator = &auth_;
    FollowerHooks hooks = follower_.Hooks(&rng_);
    auto write = std::move(hooks.write);
    hooks.write = [this, write](const ApplyRequest& request) {
      Check(!session_->closed(), "a closed session wrote");
      if (fail_writes_) return Status::IOError("fake: disk full");
      return write(request);
    };
    if (in_.ConsumeBool()) {
      hooks.stage = [this](uint64_t) { return std::make_unique<CountingStage>(fail_writes_); };
    }
    if (in_.ConsumeBool()) {
      hooks.families = [this](const std::vector<FamilyInfo>&) {
        return fail_writes_ ? Status::InvalidArgument("fake: unknown family") : Status::OK();
      };
    }
    session_ = std::make_unique<ClientSession>(options, std::move(hooks), state);
  }

  void Step() {
    input_bytes_ = 0;
    switch (in_.ConsumeIntegralInRange<int>(0, 19)) {
      case 0:
        session_->Start();
        break;
      case 1:
        SendChallenge();
        break;
      case 2:
        SendWelcome();
        break;
      case 3:
      case 4:
        SendBatch();
        break;
      case 5:
        SendBatchInParts();
        break;
      case 6:
        SendSyncStart();
        break;
      case 7:
        SendNodesRequest();
        break;
      case 8:
        SendRepair();
        break;
      case 9:
        Deliver(Frame(SyncDone{sync_id_, 0, in_.ConsumeBool()}));
        break;
      case 10:
        SendBootstrapChunk();
        break;
      case 11:
        SendLargePut();
        break;
      case 12:
        Deliver(Frame(Ping{in_.ConsumeIntegral<uint64_t>(), in_.ConsumeIntegral<uint64_t>()}));
        break;
      case 13:
        Deliver(SampleFrame(in_));
        break;
      case 14:
        Deliver(in_.ConsumeBytesAsString(in_.ConsumeIntegralInRange<size_t>(0, 64)));
        break;
      case 15:
      case 16:
        now_ms_ += in_.ConsumeIntegralInRange<int64_t>(0, 25000);
        session_->OnTick(now_ms_);
        break;
      case 17:
        session_->RequestSync();
        break;
      case 18:
        fail_writes_ = !fail_writes_;
        break;
      case 19:
        session_->Close("fuzz: local close");
        break;
    }
    while (auto event = session_->PollEvent()) {
      Check(!closed_event_, "an event after kClosed");
      if (event->kind == ClientEvent::Kind::kClosed) {
        closed_event_ = true;
        Check(session_->closed(), "kClosed from an open session");
      }
    }
    std::string out = session_->TakeOutput();
    // A step's answer: Nodes of at most kMaxPathsPerRequest summaries, each
    // of at most 256 children of 9 bytes or kMaxDetails summaries of at most
    // kFoldAbove children (or a few leaves), per NodesRequest, and a few
    // small frames (SyncRoot's top summary, Pongs, Reject) per input byte.
    constexpr size_t kPerPath =
        std::max<size_t>(256 * 9 + 64, kMaxDetails * (kFoldAbove * 9 + 64 + 2));
    size_t bound = wire::kMaxPathsPerRequest * kPerPath * requests_ + 64 * input_bytes_ + (8 << 10);
    requests_ = 0;
    Check(out.size() <= bound, "a step's output passed its bound");
    std::vector<Message> sent = DecodeOutput(out);
    // protocol.md: at most kMaxPathsPerRequest paths a request; a master asking more would
    // make the follower build an answer thousands of times its size. (A
    // request delivered whole is not always read as one: the bytes of an
    // earlier, mutated frame may still be waiting for their end, so what
    // counts is the answer.)
    for (const Message& m : sent) {
      if (auto* hello = std::get_if<Hello>(&m)) client_nonce_ = hello->client_nonce;
      if (auto* nodes = std::get_if<Nodes>(&m)) {
        Check(nodes->summaries.size() <= wire::kMaxPathsPerRequest,
              "a NodesRequest of too many paths answered");
      }
    }
    watch_.Step(session_->closed(), session_->error(), sent, false, "master refused: ");
    Check(!session_->wants_write(), "output left after TakeOutput");
  }

  template <typename M>
  static std::string Frame(const M& m) {
    std::string out;
    wire::AppendFrame(m, &out);
    return out;
  }

  // Returns whether the bytes went as they were (not mutated).
  bool Deliver(std::string bytes) {
    bool mutate = in_.ConsumeIntegralInRange<int>(0, 7) == 0;
    if (mutate) Mutate(in_, &bytes);
    input_bytes_ += bytes.size();
    size_t split = in_.ConsumeIntegralInRange<size_t>(0, bytes.size());
    session_->OnBytes(std::string_view(bytes).substr(0, split));
    session_->OnBytes(std::string_view(bytes).substr(split));
    return !mutate;
  }

  // The sequence a script's next batch starts at: the stream's, mostly.
  uint64_t NextSeq() {
    switch (in_.ConsumeIntegralInRange<int>(0, 7)) {
      case 0:
        return in_.ConsumeIntegral<uint64_t>();
      case 1:
        return session_->applied_seq() + 2;  // a gap
      case 2:
        return session_->applied_seq();  // a repeat
      default:
        return session_->applied_seq() + 1;
    }
  }

  void SendChallenge() {
    Challenge challenge;
    challenge.version = in_.ConsumeBool() ? wire::kProtocolVersion : in_.ConsumeIntegral<uint8_t>();
    challenge.server_nonce = std::string(32, 's');
    switch (in_.ConsumeIntegralInRange<int>(0, 2)) {
      case 0:
        challenge.server_proof =
            auth_.Sign(MasterProofMessage(client_nonce_, challenge.server_nonce));
        break;
      case 1:  // a proof for the other role
        challenge.server_proof =
            auth_.Sign(FollowerProofMessage(client_nonce_, challenge.server_nonce));
        break;
      case 2:
        break;
    }
    Deliver(Frame(challenge));
  }

  void SendWelcome() {
    Welcome welcome;
    welcome.master_id = in_.ConsumeBool() ? "master-1" : "master-2";
    welcome.master_seq = in_.ConsumeIntegralInRange<uint64_t>(0, 100);
    welcome.mode = static_cast<StartMode>(in_.ConsumeIntegralInRange<int>(1, 4));
    welcome.resume_from = in_.ConsumeBool() ? follower_.state().applied_seq + 1
                                            : in_.ConsumeIntegralInRange<uint64_t>(0, 100);
    welcome.families = {{0, "default"}, {1, "meta"}, {2, "other"}};
    bootstrap_seq_ = welcome.master_seq;
    Deliver(Frame(welcome));
  }

  void SendBatch() {
    Batch batch;
    batch.seq = NextSeq();
    batch.ops = SomeOps(in_);
    batch.count = in_.ConsumeBool() ? std::max<uint64_t>(batch.ops.size(), 1)
                                    : in_.ConsumeIntegral<uint64_t>();
    Deliver(Frame(batch));
  }

  // A batch as BatchParts with a large put between them, as a master sends a
  // batch too large for one frame; the announced bytes right or not.
  void SendBatchInParts() {
    uint64_t seq = NextSeq();
    std::vector<Op> first = SomeOps(in_), second = SomeOps(in_);
    std::string key = SmallKey(in_), value = SomeValue(in_);
    uint64_t bytes = key.size() + value.size();
    for (const auto* ops : {&first, &second}) {
      for (const Op& op : *ops) bytes += op.key.size() + op.value.size();
    }
    if (in_.ConsumeIntegralInRange<int>(0, 7) == 0) bytes = in_.ConsumeIntegral<uint64_t>();
    uint64_t count = first.size() + second.size() + 1;
    std::string frames;
    wire::AppendFrame(BatchPart{seq, count, bytes, first, false}, &frames);
    if (!value.empty()) {
      wire::AppendFrame(PutStart{PutContext::kBatch, seq, 0, key, value.size()}, &frames);
      for (size_t at = 0; at < value.size(); at += 1000) {
        wire::AppendValuePart(std::string_view(value).substr(at, 1000), &frames);
      }
    }
    wire::AppendFrame(BatchPart{seq, count, bytes, second, true}, &frames);
    Deliver(frames);
  }

  void SendSyncStart() {
    SyncStart start;
    sync_id_ = in_.ConsumeIntegralInRange<uint64_t>(0, 3) + sync_id_;
    start.sync_id = sync_id_;
    start.seq = in_.ConsumeBool() ? session_->applied_seq() : in_.ConsumeIntegral<uint64_t>();
    start.salt = in_.ConsumeIntegral<uint64_t>();
    start.hash_bytes = in_.ConsumeIntegralInRange<uint8_t>(1, 8);
    start.root = in_.ConsumeBool() ? follower_.tree().root_hash() : Hash128{1, 2};
    start.key_count = follower_.tree().size();
    Deliver(Frame(start));
  }

  // Paths into the follower's tree (prefixes of its keys' hashes) and others.
  void SendNodesRequest() {
    NodesRequest request;
    request.sync_id = sync_id_;
    size_t n = in_.ConsumeIntegralInRange<size_t>(0, in_.ConsumeBool() ? 8 : 5000);
    for (size_t i = 0; i < n; ++i) {
      Hash128 h = KeyHash(static_cast<FamilyTag>(i % 3), "k" + std::to_string(i % 31));
      uint8_t bytes[16];
      h.ToBytes(bytes);
      size_t depth = in_.ConsumeIntegralInRange<size_t>(0, 16);
      request.paths.emplace_back(reinterpret_cast<const char*>(bytes), depth);
    }
    // Probes: the follower compares and answers what differs.
    if (in_.ConsumeBool()) {
      request.hash_bytes = in_.ConsumeIntegralInRange<uint8_t>(1, 8);
      uint64_t salt = in_.ConsumeIntegral<uint64_t>();
      int families = in_.ConsumeIntegralInRange<int>(kMinFoldFamilies, kMaxFoldFamilies);
      for (const std::string& path : request.paths) {
        request.summaries.push_back(in_.ConsumeBool() ? NodeSummary{}
                                                      : ProbeSummary(follower_.tree(), path, salt,
                                                                     request.hash_bytes, families));
      }
    }
    ++requests_;
    Deliver(Frame(request));
  }

  void SendRepair() {
    Repair repair;
    repair.sync_id = sync_id_;
    repair.ops = SomeOps(in_, /*ranges=*/in_.ConsumeIntegralInRange<int>(0, 7) == 0);
    for (int i = in_.ConsumeIntegralInRange<int>(0, 3); i > 0; --i) {
      repair.delete_key_hashes.push_back(
          KeyHash(static_cast<FamilyTag>(i % 3),
                  "k" + std::to_string(in_.ConsumeIntegral<uint8_t>() % 31)));
    }
    Deliver(Frame(repair));
  }

  void SendBootstrapChunk() {
    BootstrapChunk chunk;
    chunk.seq = bootstrap_seq_;
    chunk.entries = SomeOps(in_, /*ranges=*/false);
    if (in_.ConsumeBool()) {
      for (Op& op : chunk.entries) op.kind = OpKind::kPut;
    }
    chunk.last = in_.ConsumeBool();
    Deliver(Frame(chunk));
  }

  // A repair or bootstrap put in pieces; the pieces add up, or not.
  void SendLargePut() {
    PutStart start;
    start.context = static_cast<PutContext>(in_.ConsumeIntegralInRange<int>(1, 3));
    start.id = start.context == PutContext::kRepair ? sync_id_ : bootstrap_seq_;
    start.family = in_.ConsumeIntegralInRange<FamilyTag>(0, 2);
    start.key = SmallKey(in_);
    std::string value = SomeValue(in_);
    if (value.empty()) value = "v";
    start.value_size = value.size() + in_.ConsumeIntegralInRange<int>(-1, 1);
    if (start.value_size == 0) start.value_size = 1;
    std::string frames;
    wire::AppendFrame(start, &frames);
    for (size_t at = 0; at < value.size(); at += 700) {
      wire::AppendValuePart(std::string_view(value).substr(at, 700), &frames);
    }
    Deliver(frames);
  }

  FuzzedDataProvider& in_;
  std::mt19937_64 rng_{1};
  MemoryFollower follower_;
  FakeAuthenticator auth_{"fuzz secret"};
  std::unique_ptr<ClientSession> session_;
  bool fail_writes_ = false;
  int64_t now_ms_ = 0;
  size_t input_bytes_ = 0;
  size_t requests_ = 0;  // NodesRequests sent this step
  uint64_t sync_id_ = 1;
  uint64_t bootstrap_seq_ = 0;
  bool closed_event_ = false;
  std::string client_nonce_;
  CloseWatch watch_;
};

}  // namespace
}  // namespace sdiff::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  sdiff::fuzz::ClientFuzz(in).Run();
  return 0;
}
