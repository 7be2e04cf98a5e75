// libFuzzer target for a real master and follower session joined by an
// in-memory link that the input controls: frames cross one at a time, or are
// dropped, repeated, swapped with the next, cut short or corrupted on the
// way; the master commits batches, the follower's data is damaged behind
// replication's back, the clock advances, either side asks for a diff, and
// the connection is dropped and made again (the follower restarting or not).
//
// Invariants: every frame either session sends decodes; a close is final
// and, unless the peer closed first, ends in a Reject with a reason; and the
// protocol's promise: once the faults stop, a fresh connection brings the
// follower to exactly the master's data (equal key-value maps after a diff
// that completed), whatever state the faulty connections left it in.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/client_session.h"
#include "engine/server_session.h"
#include "engine/testing/memory_replica.h"
#include "test/fuzz/fuzz_support.h"

namespace sdiff::fuzz {
namespace {

using testing::MemoryFollower;
using testing::MemoryMaster;

// Splits a session's output into its frames (each whole, as sessions send).
void SplitFrames(std::string_view bytes, std::deque<std::string>* frames) {
  while (bytes.size() >= wire::kFrameHeaderSize) {
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    size_t length = size_t{p[0]} | size_t{p[1]} << 8 | size_t{p[2]} << 16 | size_t{p[3]} << 24;
    size_t n = std::min(bytes.size(), wire::kFrameHeaderSize + length);
    frames->emplace_back(bytes.substr(0, n));
    bytes.remove_prefix(n);
  }
  Check(bytes.empty(), "a session sent part of a frame");
}

class PairFuzz {
 public:
  explicit PairFuzz(FuzzedDataProvider& in) : in_(in), master_("master-1") {}

  void Run() {
    options_ = master_.Options();
    options_.hash_bytes = in_.ConsumeIntegralInRange<uint8_t>(1, 3);
    const size_t kBulk[] = {100, 2000, size_t{1} << 20};
    options_.bulk_frame_bytes = kBulk[in_.ConsumeIntegralInRange<int>(0, 2)];
    options_.bootstrap_min_keys = in_.ConsumeIntegralInRange<uint64_t>(1, 30);
    options_.ping_interval_ms = 500;
    options_.idle_timeout_ms = 3000;
    for (int i = in_.ConsumeIntegralInRange<int>(0, 30); i > 0; --i) {
      master_.Write({Op{OpKind::kPut, static_cast<FamilyTag>(i % 3), "k" + std::to_string(i),
                        SomeValue(in_)}});
    }
    Connect();
    for (int step = 0; step < kMaxSteps && in_.remaining_bytes() > 0; ++step) Step();
    Converge();
  }

 private:
  void Connect() {
    hooks_ = master_.Hooks(&rng_);
    server_ = std::make_unique<ServerSession>(options_, hooks_);
    ClientOptions client_options;
    client_options.idle_timeout_ms = 3000;
    client_ =
        std::make_unique<ClientSession>(client_options, follower_.Hooks(&rng_), follower_.state());
    to_follower_.clear();
    to_master_.clear();
    server_watch_ = CloseWatch();
    client_watch_ = CloseWatch();
    last_sync_complete_ = false;
    client_->Start();
    Pump();
  }

  void Step() {
    switch (in_.ConsumeIntegralInRange<int>(0, 11)) {
      case 0:
      case 1:
      case 2:
        Cross(&to_follower_, /*to_master=*/false);
        break;
      case 3:
      case 4:
        Cross(&to_master_, /*to_master=*/true);
        break;
      case 5:
        Fault(in_.ConsumeBool() ? &to_follower_ : &to_master_);
        break;
      case 6: {
        const Batch& batch = master_.Write(SomeOps(in_));
        server_->OnBatch(batch);
        break;
      }
      case 7:
        if (in_.ConsumeBool()) {
          follower_.Put(in_.ConsumeIntegralInRange<FamilyTag>(0, 2), SmallKey(in_), "damage");
        } else {
          follower_.Delete(in_.ConsumeIntegralInRange<FamilyTag>(0, 2), SmallKey(in_));
        }
        break;
      case 8:
        now_ms_ += in_.ConsumeIntegralInRange<int64_t>(0, 4000);
        server_->OnTick(now_ms_);
        client_->OnTick(now_ms_);
        break;
      case 9:
        if (in_.ConsumeBool()) {
          server_->RequestSync();
        } else {
          client_->RequestSync();
        }
        break;
      case 10:
        if (in_.ConsumeBool()) follower_.Restart();
        Connect();
        break;
      case 11:
        if (server_->closed() || client_->closed()) Connect();
        break;
    }
    Pump();
  }

  // Moves the next frame across, whole or in two calls.
  void Cross(std::deque<std::string>* queue, bool to_master) {
    if (queue->empty()) return;
    std::string frame = std::move(queue->front());
    queue->pop_front();
    size_t split =
        in_.ConsumeBool() ? frame.size() : in_.ConsumeIntegralInRange<size_t>(0, frame.size());
    for (std::string_view piece :
         {std::string_view(frame).substr(0, split), std::string_view(frame).substr(split)}) {
      if (to_master) {
        server_->OnBytes(piece);
      } else {
        client_->OnBytes(piece);
      }
    }
  }

  void Fault(std::deque<std::string>* queue) {
    if (queue->empty()) return;
    switch (in_.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:
        queue->pop_front();
        break;
      case 1:
        queue->push_front(queue->front());
        break;
      case 2:
        if (queue->size() >= 2) std::swap((*queue)[0], (*queue)[1]);
        break;
      case 3:
        Mutate(in_, &queue->front());
        break;
    }
  }

  // The embedder's duties, and the checks on what each side sends.
  void Pump() {
    for (int round = 0; round < 1000; ++round) {
      bool progress = false;
      while (auto event = server_->PollEvent()) {
        progress = true;
        if (event->kind == ServerEvent::Kind::kStreamFrom) {
          for (const Batch* batch : master_.LogFrom(event->seq)) server_->OnBatch(*batch);
        } else if (event->kind == ServerEvent::Kind::kWantSnapshot) {
          server_->StartSync(master_.tree().Snapshot());
        } else if (event->kind == ServerEvent::Kind::kSyncDone) {
          last_sync_complete_ = event->complete;
        }
      }
      progress = ServeDbRequestsNow(*server_, hooks_) || progress;
      while (client_->PollEvent()) progress = true;
      std::vector<Message> server_sent, client_sent;
      // The link holds a window of frames: the master produces more only
      // as the follower reads, as net/ does with its high-water mark.
      if (to_follower_.size() < 16 && server_->wants_write()) {
        std::string out = server_->TakeOutput();
        server_sent = DecodeOutput(out);
        SplitFrames(out, &to_follower_);
        progress = progress || !out.empty();
      }
      if (server_->closed()) {
        while (server_->wants_write()) {
          std::string out = server_->TakeOutput();
          for (Message& m : DecodeOutput(out)) server_sent.push_back(std::move(m));
          SplitFrames(out, &to_follower_);
        }
      }
      std::string out = client_->TakeOutput();
      client_sent = DecodeOutput(out);
      SplitFrames(out, &to_master_);
      server_watch_.Step(server_->closed(), server_->error(), server_sent, false,
                         "follower closed the session: ");
      client_watch_.Step(client_->closed(), client_->error(), client_sent, false,
                         "master refused: ");
      if (!progress && out.empty()) return;
    }
  }

  // No more faults: a fresh connection, both sides' frames delivered until
  // nothing moves, then one more diff asked for and run to its end.
  void Converge() {
    Connect();
    for (int phase = 0; phase < 2; ++phase) {
      if (phase == 1) client_->RequestSync();
      Pump();
      for (int i = 0; i < 100000 && !(to_follower_.empty() && to_master_.empty()); ++i) {
        while (!to_follower_.empty()) CrossWhole(&to_follower_, false);
        while (!to_master_.empty()) CrossWhole(&to_master_, true);
        Pump();
      }
      Check(!server_->closed() && !client_->closed(), "a clean connection closed");
    }
    Check(last_sync_complete_, "the last diff did not complete");
    Check(follower_.data() == master_.data(), "the follower differs from the master");
  }

  void CrossWhole(std::deque<std::string>* queue, bool to_master) {
    std::string frame = std::move(queue->front());
    queue->pop_front();
    if (to_master) {
      server_->OnBytes(frame);
    } else {
      client_->OnBytes(frame);
    }
    Pump();
  }

  FuzzedDataProvider& in_;
  std::mt19937_64 rng_{1};
  MemoryMaster master_;
  MemoryFollower follower_;
  ServerOptions options_;
  MasterHooks hooks_;  // the server's, to serve its database requests
  std::unique_ptr<ServerSession> server_;
  std::unique_ptr<ClientSession> client_;
  std::deque<std::string> to_follower_, to_master_;
  CloseWatch server_watch_, client_watch_;
  bool last_sync_complete_ = false;
  int64_t now_ms_ = 0;
};

}  // namespace
}  // namespace sdiff::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  sdiff::fuzz::PairFuzz(in).Run();
  return 0;
}
