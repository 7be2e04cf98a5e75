// libFuzzer target for the frame codec: the input is decoded as one frame's type
// and body and fed to a FrameReader as a byte stream. Either must decode to a
// message that re-encodes to the same bytes, or fail with Corruption.
//
// Seeds: SDIFF_WIRE_FUZZ_SEEDS=DIR ./sdiff-wire-fuzz writes a frame of every
// sample message (test/wire_samples.cc) to DIR and exits.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

#include "engine/wire.h"
#include "test/wire_samples.h"

namespace {

using sdiff::Message;
using sdiff::Status;
using namespace sdiff::wire;

constexpr size_t kMaxFrame = 1 << 20;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "wire_fuzz: %s\n", what);
    std::abort();
  }
}

void CheckDecode(std::string_view type_and_body) {
  Message m;
  Status s = DecodeFrame(type_and_body, &m);
  if (!s.ok()) {
    Check(s.IsCorruption(), "DecodeFrame failed with a status other than Corruption");
    return;
  }
  Check(std::string_view(FrameOf(m)).substr(kFrameHeaderSize) == type_and_body,
        "a decoded frame does not re-encode to its bytes");
}

// Feeds the input in two pieces, split where its first byte says.
void CheckStream(std::string_view in) {
  FrameReader reader(kMaxFrame);
  size_t split = in.empty() ? 0 : static_cast<uint8_t>(in[0]) % (in.size() + 1);
  size_t decoded = 0;
  for (std::string_view piece : {in.substr(0, split), in.substr(split)}) {
    reader.Append(piece);
    for (;;) {
      Message m;
      bool got = false;
      Status s = reader.Next(&m, &got);
      if (!s.ok()) {
        Check(s.IsCorruption() && !got, "FrameReader failed with a status other than Corruption");
        Check(reader.Next(&m, &got).message() == s.message(), "a FrameReader error was not final");
        return;
      }
      if (!got) break;
      std::string frame = FrameOf(m);
      Check(in.substr(decoded, frame.size()) == frame, "a streamed frame does not re-encode");
      decoded += frame.size();
    }
  }
}

void WriteSeeds(const char* dir) {
  std::string all;
  int i = 0;
  for (const Message& m : SampleMessages()) {
    std::string frame = FrameOf(m);
    all += frame;
    std::ofstream(std::string(dir) + "/" + std::to_string(i++) + "-" + MessageName(m),
                  std::ios::binary)
        << frame;
  }
  std::ofstream(std::string(dir) + "/stream", std::ios::binary) << all;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("SDIFF_WIRE_FUZZ_SEEDS")) {
    WriteSeeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  CheckDecode(in);
  if (in.size() >= kFrameHeaderSize) CheckDecode(in.substr(kFrameHeaderSize));
  CheckStream(in);
  return 0;
}
