// Shared pieces of the session fuzz targets (test/fuzz/*_fuzz.cc): reading a
// fuzz input as a script of operations, the sample messages as raw material,
// frame mutations, and the invariant checks every session must pass. Header
// only, so each target stays one translation unit plus the engine.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "engine/messages.h"
#include "engine/status.h"
#include "engine/wire.h"
#include "test/wire_samples.h"

namespace sdiff::fuzz {

// An invariant failed: print it and abort, so libFuzzer keeps the input.
inline void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant failed: %s\n", what);
    std::abort();
  }
}

// One script step at most this many bytes of input to a session: the bound
// on what a step may append to a FrameReader (its A in wire.h's F + 4 + A).
constexpr size_t kMaxDelivery = 1 << 16;
// Steps per input: enough for a handshake, a diff of a few levels and some
// faults; more only slows each run down.
constexpr int kMaxSteps = 200;

// Every frame of the sample messages (test/wire_samples.cc), encoded once.
inline const std::vector<std::string>& SampleFrames() {
  static const std::vector<std::string> frames = [] {
    std::vector<std::string> out;
    for (const Message& m : wire::SampleMessages()) out.push_back(wire::FrameOf(m));
    return out;
  }();
  return frames;
}

// Changes a few bytes of a frame (its length, type or any field), cuts it
// short, or lengthens it, as the script says.
inline void Mutate(FuzzedDataProvider& in, std::string* frame) {
  int edits = in.ConsumeIntegralInRange<int>(1, 3);
  for (int i = 0; i < edits && !frame->empty(); ++i) {
    size_t at = in.ConsumeIntegralInRange<size_t>(0, frame->size() - 1);
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:
        (*frame)[at] = static_cast<char>(in.ConsumeIntegral<uint8_t>());
        break;
      case 1:
        (*frame)[at] ^= static_cast<char>(1 << in.ConsumeIntegralInRange<int>(0, 7));
        break;
      case 2:
        frame->resize(at);
        break;
      case 3:
        frame->insert(at, in.ConsumeBytesAsString(in.ConsumeIntegralInRange<size_t>(1, 8)));
        break;
    }
  }
}

// A sample frame, mutated or not.
inline std::string SampleFrame(FuzzedDataProvider& in) {
  const std::vector<std::string>& frames = SampleFrames();
  std::string frame = frames[in.ConsumeIntegralInRange<size_t>(0, frames.size() - 1)];
  if (in.ConsumeBool()) Mutate(in, &frame);
  return frame;
}

// A short key from a small alphabet, so that scripts revisit the same keys.
inline std::string SmallKey(FuzzedDataProvider& in) {
  return "k" + std::to_string(in.ConsumeIntegralInRange<int>(0, 63));
}

// A value of 0..300 bytes, or now and then one larger than a small
// bulk_frame_bytes, so that puts go in pieces.
inline std::string SomeValue(FuzzedDataProvider& in) {
  size_t size = in.ConsumeBool() ? in.ConsumeIntegralInRange<size_t>(0, 300)
                                 : in.ConsumeIntegralInRange<size_t>(0, 5000);
  return std::string(size, static_cast<char>('a' + in.ConsumeIntegralInRange<int>(0, 25)));
}

// Ops over families 0..2 (those MemoryMaster replicates) and, rarely, 9.
inline std::vector<Op> SomeOps(FuzzedDataProvider& in, bool ranges = true) {
  std::vector<Op> ops(in.ConsumeIntegralInRange<size_t>(0, 6));
  for (Op& op : ops) {
    int kind = in.ConsumeIntegralInRange<int>(0, ranges ? 5 : 4);
    op.kind = kind < 3 ? OpKind::kPut : kind < 5 ? OpKind::kDelete : OpKind::kDeleteRange;
    op.family = static_cast<FamilyTag>(
        in.ConsumeIntegralInRange<int>(0, 3) == 3 ? 9 : in.ConsumeIntegralInRange<int>(0, 2));
    op.key = SmallKey(in);
    if (op.kind == OpKind::kPut) op.value = SomeValue(in);
    if (op.kind == OpKind::kDeleteRange) op.value = SmallKey(in);
  }
  return ops;
}

// Splits the frames in `bytes` (what a session sent) and checks that each is
// well formed: a session never sends a frame its peer could not decode.
inline std::vector<Message> DecodeOutput(std::string_view bytes) {
  wire::FrameReader reader(size_t{1} << 31);
  reader.Append(bytes);
  std::vector<Message> out;
  for (;;) {
    Message m;
    bool got = false;
    Status s = reader.Next(&m, &got);
    Check(s.ok(), "a session sent a malformed frame");
    if (!got) break;
    out.push_back(std::move(m));
  }
  Check(reader.buffered() == 0, "a session sent part of a frame");
  return out;
}

// What every session promises about its end, checked after every step:
//  - once closed it stays closed and sends nothing more (beyond what it had
//    queued when it closed, which the caller drains at once);
//  - a close for any reason but a clean end carries a non-empty reason, and
//    (unless the peer closed first, with its own Reject) the last frame it
//    sent is a Reject saying so.
class CloseWatch {
 public:
  // `closed`: the session's closed(); `error`: its error(); `output`: the
  // frames it sent this step; `clean_end_ok`: an OK close is allowed (a
  // finished audit or copy).
  void Step(bool closed, const Status& error, const std::vector<Message>& output, bool clean_end_ok,
            std::string_view peer_reject_prefix) {
    if (was_closed_) {
      Check(closed, "a closed session opened again");
      Check(output.empty(), "a closed session sent more");
      return;
    }
    if (!closed) return;
    was_closed_ = true;
    if (error.ok()) {
      Check(clean_end_ok, "a session closed with no reason");
      return;
    }
    Check(!error.message().empty(), "a session closed with an empty reason");
    if (error.message().starts_with(peer_reject_prefix)) return;
    Check(!output.empty() && std::holds_alternative<Reject>(output.back()),
          "a session closed without sending a Reject last");
    Check(!std::get<Reject>(output.back()).reason.empty(), "a Reject with no reason");
  }
  bool was_closed() const { return was_closed_; }

 private:
  bool was_closed_ = false;
};

}  // namespace sdiff::fuzz
