// The frame codec on random messages and on random or damaged bytes: round
// trips, no crash, Corruption for whatever is not a frame, and decoded sizes
// bounded by the input's size.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "engine/wire.h"
#include "test/wire_samples.h"

namespace sdiff::wire {
namespace {

namespace gen = rc::gen;

// ---- generators ----

rc::Gen<uint64_t> GenU64() {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  return gen::weightedOneOf<uint64_t>(
      {{3, gen::arbitrary<uint64_t>()},
       {1,
        gen::element<uint64_t>(0, 1, 127, 128, 16383, 16384, uint64_t{1} << 63, kMax - 1, kMax)}});
}

rc::Gen<FamilyTag> GenFamily() {
  return gen::weightedOneOf<FamilyTag>(
      {{3, gen::arbitrary<FamilyTag>()}, {1, gen::element<FamilyTag>(0, 127, 128, 65535)}});
}

// Binary strings: any byte, NUL included.
rc::Gen<std::string> GenBytes() { return gen::container<std::string>(gen::arbitrary<char>()); }

rc::Gen<std::string> GenBytes(size_t max_size) {
  return gen::mapcat(gen::inRange<size_t>(0, max_size + 1), [](size_t n) {
    return gen::container<std::string>(n, gen::arbitrary<char>());
  });
}

rc::Gen<Hash128> GenHash() {
  return gen::construct<Hash128>(gen::arbitrary<uint64_t>(), gen::arbitrary<uint64_t>());
}

template <typename E>
rc::Gen<E> GenEnum(uint8_t lo, uint8_t hi) {
  return gen::cast<E>(gen::inRange<int>(lo, hi + 1));
}

rc::Gen<Op> GenOp() {
  return gen::build<Op>(gen::set(&Op::kind, GenEnum<OpKind>(1, 3)),
                        gen::set(&Op::family, GenFamily()), gen::set(&Op::key, GenBytes()),
                        gen::set(&Op::value, GenBytes()));
}

rc::Gen<std::vector<Op>> GenOps() { return gen::container<std::vector<Op>>(GenOp()); }

// Ascending child digits, 1..256 of them: few (the list form) or many (the bitmap).
rc::Gen<std::vector<uint8_t>> GenDigits() {
  auto few = gen::map(gen::nonEmpty(gen::unique<std::vector<uint8_t>>(gen::arbitrary<uint8_t>())),
                      [](std::vector<uint8_t> d) {
                        std::sort(d.begin(), d.end());
                        return d;
                      });
  auto many = gen::map(gen::container<std::vector<bool>>(256, gen::arbitrary<bool>()),
                       [](const std::vector<bool>& present) {
                         std::vector<uint8_t> d;
                         for (int i = 0; i < 256; ++i) {
                           if (present[i]) d.push_back(static_cast<uint8_t>(i));
                         }
                         if (d.empty()) d.push_back(0);
                         return d;
                       });
  std::vector<uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
  return gen::weightedOneOf<std::vector<uint8_t>>({{4, few}, {4, many}, {1, gen::just(all)}});
}

// A summary of any kind but kDetails.
rc::Gen<NodeSummary> GenPlainSummary(int hash_bytes) {
  uint64_t mask = hash_bytes == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * hash_bytes)) - 1;
  auto leaf = gen::map(gen::pair(GenHash(), GenHash()), [](std::pair<Hash128, Hash128> h) {
    NodeSummary s;
    s.kind = NodeSummary::Kind::kLeaf;
    s.key_hash = h.first;
    s.leaf_hash = h.second;
    return s;
  });
  auto inner = gen::mapcat(GenDigits(), [mask](std::vector<uint8_t> digits) {
    size_t n = digits.size();
    return gen::map(gen::container<std::vector<uint64_t>>(n, GenU64()),
                    [mask, digits = std::move(digits)](std::vector<uint64_t> hashes) {
                      NodeSummary s;
                      s.kind = NodeSummary::Kind::kInner;
                      s.digits = digits;
                      for (uint64_t& h : hashes) h &= mask;
                      s.hashes = std::move(hashes);
                      return s;
                    });
  });
  auto folded = gen::mapcat(gen::inRange(2, 5), [mask](int families) {
    return gen::map(gen::container<std::vector<uint64_t>>(16 * families, GenU64()),
                    [mask](std::vector<uint64_t> lines) {
                      NodeSummary s;
                      s.kind = NodeSummary::Kind::kFolded;
                      for (uint64_t& h : lines) h &= mask;
                      s.hashes = std::move(lines);
                      return s;
                    });
  });
  auto leaves = gen::mapcat(gen::inRange<size_t>(2, 17), [](size_t n) {
    return gen::map(gen::pair(gen::container<std::vector<Hash128>>(n, GenHash()),
                              gen::container<std::vector<Hash128>>(n, GenHash())),
                    [](std::pair<std::vector<Hash128>, std::vector<Hash128>> h) {
                      NodeSummary s;
                      s.kind = NodeSummary::Kind::kLeaves;
                      s.key_hashes = std::move(h.first);
                      s.leaf_hashes = std::move(h.second);
                      return s;
                    });
  });
  return gen::oneOf(gen::just(NodeSummary{}), leaf, inner, folded, leaves);
}

// kSums, which only a detail may be.
rc::Gen<NodeSummary> GenSums() {
  return gen::map(gen::tuple(GenU64(), GenHash(), GenHash(), GenHash()),
                  [](std::tuple<uint64_t, Hash128, Hash128, Hash128> t) {
                    NodeSummary s;
                    s.kind = NodeSummary::Kind::kSums;
                    std::tie(s.leaf_count, s.key_hash, s.leaf_hash, s.check) = t;
                    return s;
                  });
}

rc::Gen<NodeSummary> GenSummary(int hash_bytes) {
  // kDetails: a few differing children, each a summary of another kind.
  auto detail = gen::weightedOneOf<NodeSummary>({{4, GenPlainSummary(hash_bytes)}, {1, GenSums()}});
  auto details = gen::mapcat(gen::unique<std::vector<uint8_t>>(gen::arbitrary<uint8_t>()),
                             [detail](std::vector<uint8_t> digits) {
                               std::sort(digits.begin(), digits.end());
                               if (digits.size() > 8) digits.resize(8);
                               size_t n = digits.size();
                               return gen::map(
                                   gen::container<std::vector<NodeSummary>>(n, detail),
                                   [digits = std::move(digits)](std::vector<NodeSummary> children) {
                                     NodeSummary s;
                                     s.kind = NodeSummary::Kind::kDetails;
                                     s.digits = digits;
                                     s.details = std::move(children);
                                     return s;
                                   });
                             });
  return gen::weightedOneOf<NodeSummary>({{5, GenPlainSummary(hash_bytes)}, {1, details}});
}

// A chunk whose data lies within its file (offset + size <= file_size, without
// wrapping), so that it decodes.
rc::Gen<FileChunk> GenFileChunk() {
  auto name = gen::mapcat(gen::inRange<size_t>(1, 256), [](size_t n) {
    return gen::container<std::string>(n, gen::arbitrary<char>());
  });
  return gen::map(gen::tuple(name, GenBytes(), GenU64(), GenU64(), gen::arbitrary<uint64_t>(),
                             gen::arbitrary<bool>()),
                  [](std::tuple<std::string, std::string, uint64_t, uint64_t, uint64_t, bool> t) {
                    auto& [name, data, offset, tail, hash, last] = t;
                    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
                    FileChunk c;
                    c.offset = std::min(offset, kMax - data.size());
                    c.file_size = c.offset + data.size();
                    c.file_size += std::min(tail, kMax - c.file_size);
                    c.name = std::move(name);
                    c.data = std::move(data);
                    c.data_hash = hash;
                    c.last = last;
                    return c;
                  });
}

template <typename T>
rc::Gen<Message> AsMessage(rc::Gen<T> g) {
  return gen::map(std::move(g), [](T m) { return Message(std::move(m)); });
}

rc::Gen<Message> GenMessage() {
  auto hash_bytes = gen::inRange<int>(1, 9);
  return gen::oneOf(
      AsMessage(gen::build<Hello>(
          gen::set(&Hello::min_version), gen::set(&Hello::max_version),
          gen::set(&Hello::role, GenEnum<Role>(1, 5)), gen::set(&Hello::client_nonce, GenBytes(64)),
          gen::set(&Hello::master_id, GenBytes(255)), gen::set(&Hello::applied_seq, GenU64()),
          gen::set(&Hello::key_count, GenU64()), gen::set(&Hello::bootstrapping),
          gen::set(&Hello::bootstrap_family, GenFamily()),
          gen::set(&Hello::bootstrap_key, GenBytes(wire::kMaxBootstrapKeyBytes)))),
      AsMessage(gen::build<Challenge>(gen::set(&Challenge::version),
                                      gen::set(&Challenge::server_nonce, GenBytes(64)),
                                      gen::set(&Challenge::server_proof, GenBytes(64)))),
      AsMessage(gen::build<Auth>(gen::set(&Auth::client_proof, GenBytes(64)))),
      AsMessage(gen::build<Welcome>(
          gen::set(&Welcome::master_id, GenBytes(255)), gen::set(&Welcome::master_seq, GenU64()),
          gen::set(&Welcome::mode, GenEnum<StartMode>(1, 4)),
          gen::set(&Welcome::resume_from, GenU64()),
          gen::set(&Welcome::families,
                   gen::container<std::vector<FamilyInfo>>(
                       gen::build<FamilyInfo>(gen::set(&FamilyInfo::tag, GenFamily()),
                                              gen::set(&FamilyInfo::name, GenBytes())))))),
      AsMessage(gen::build<Reject>(gen::set(&Reject::code, GenEnum<RejectCode>(1, 7)),
                                   gen::set(&Reject::reason, GenBytes()))),
      AsMessage(gen::build<Batch>(gen::set(&Batch::seq, GenU64()),
                                  gen::set(&Batch::count, GenU64()),
                                  gen::set(&Batch::ops, GenOps()))),
      AsMessage(gen::just(SyncRequest{})),
      AsMessage(gen::build<SyncStart>(
          gen::set(&SyncStart::sync_id, GenU64()), gen::set(&SyncStart::seq, GenU64()),
          gen::set(&SyncStart::salt, GenU64()),
          gen::set(&SyncStart::hash_bytes, gen::cast<uint8_t>(hash_bytes)),
          gen::set(&SyncStart::root, GenHash()), gen::set(&SyncStart::key_count, GenU64()))),
      AsMessage(gen::mapcat(hash_bytes,
                            [](int hb) {
                              return gen::build<SyncRoot>(
                                  gen::set(&SyncRoot::sync_id, GenU64()),
                                  gen::set(&SyncRoot::root, GenHash()),
                                  gen::set(&SyncRoot::key_count, GenU64()),
                                  gen::set(&SyncRoot::equal),
                                  gen::set(&SyncRoot::top, GenSummary(hb)),
                                  gen::set(&SyncRoot::hash_bytes, gen::just<uint8_t>(hb)));
                            })),
      AsMessage(gen::mapcat(
          gen::pair(hash_bytes, gen::container<std::vector<std::string>>(GenBytes(16))),
          [](std::pair<int, std::vector<std::string>> hb_paths) {
            auto [hb, paths] = std::move(hb_paths);
            size_t n = paths.size();
            // No summaries, or one per path.
            auto summaries =
                gen::oneOf(gen::just(std::vector<NodeSummary>()),
                           gen::container<std::vector<NodeSummary>>(n, GenPlainSummary(hb)));
            return gen::build<NodesRequest>(
                gen::set(&NodesRequest::sync_id, GenU64()),
                gen::set(&NodesRequest::paths, gen::just(std::move(paths))),
                gen::set(&NodesRequest::summaries, summaries),
                gen::set(&NodesRequest::hash_bytes, gen::just<uint8_t>(hb)));
          })),
      AsMessage(gen::mapcat(hash_bytes,
                            [](int hb) {
                              return gen::build<Nodes>(
                                  gen::set(&Nodes::sync_id, GenU64()),
                                  gen::set(
                                      &Nodes::summaries,
                                      gen::container<std::vector<NodeSummary>>(GenSummary(hb))),
                                  gen::set(&Nodes::hash_bytes, gen::just<uint8_t>(hb)));
                            })),
      AsMessage(gen::build<Repair>(
          gen::set(&Repair::sync_id, GenU64()), gen::set(&Repair::ops, GenOps()),
          gen::set(&Repair::delete_key_hashes, gen::container<std::vector<Hash128>>(GenHash())))),
      AsMessage(gen::build<SyncDone>(gen::set(&SyncDone::sync_id, GenU64()),
                                     gen::set(&SyncDone::repaired, GenU64()),
                                     gen::set(&SyncDone::retry))),
      AsMessage(gen::build<BootstrapChunk>(gen::set(&BootstrapChunk::seq, GenU64()),
                                           gen::set(&BootstrapChunk::entries, GenOps()),
                                           gen::set(&BootstrapChunk::last))),
      AsMessage(gen::build<Ping>(gen::set(&Ping::master_seq, GenU64()),
                                 gen::set(&Ping::master_time_ms, GenU64()))),
      AsMessage(gen::build<Pong>(gen::set(&Pong::applied_seq, GenU64()),
                                 gen::set(&Pong::echo_time_ms, GenU64()))),
      AsMessage(gen::build<Write>(gen::set(&Write::id, GenU64()), gen::set(&Write::ops, GenOps()))),
      AsMessage(gen::build<WriteAck>(gen::set(&WriteAck::id, GenU64()),
                                     gen::set(&WriteAck::seq, GenU64()),
                                     gen::set(&WriteAck::error, GenBytes()))),
      AsMessage(GenFileChunk()),
      AsMessage(gen::build<BatchPart>(
          gen::set(&BatchPart::seq, GenU64()), gen::set(&BatchPart::count, GenU64()),
          gen::set(&BatchPart::bytes, GenU64()), gen::set(&BatchPart::ops, GenOps()),
          gen::set(&BatchPart::last))),
      AsMessage(gen::build<PutStart>(
          gen::set(&PutStart::context, GenEnum<PutContext>(1, 3)),
          gen::set(&PutStart::id, GenU64()), gen::set(&PutStart::family, GenFamily()),
          gen::set(&PutStart::key, GenBytes()),
          gen::set(&PutStart::value_size, gen::inRange<uint64_t>(1, wire::kMaxValueBytes + 1)))),
      AsMessage(gen::build<ValuePart>(
          gen::set(&ValuePart::data,
                   gen::suchThat(GenBytes(), [](const std::string& d) { return !d.empty(); })))),
      AsMessage(gen::build<AuditReport>(
          gen::set(&AuditReport::seq, GenU64()), gen::set(&AuditReport::keys, GenU64()),
          gen::set(&AuditReport::mismatches, GenU64()),
          gen::set(&AuditReport::examples,
                   gen::mapcat(gen::inRange<size_t>(0, wire::kMaxAuditExamples + 1),
                               [](size_t n) {
                                 return gen::container<std::vector<std::string>>(
                                     n, GenBytes(wire::kMaxAuditExampleBytes));
                               })),
          gen::set(&AuditReport::micros, GenU64()), gen::set(&AuditReport::error, GenBytes()))));
}

// ---- what a decoded message holds ----

// Memory a decoded message owns: elements (vector slots and string bytes on the
// heap) and the bytes they take.
struct Footprint {
  size_t elements = 0;
  size_t bytes = 0;

  void Add(const std::string& s) {
    if (s.capacity() > std::string().capacity()) {  // beyond the inline buffer
      elements += s.capacity();
      bytes += s.capacity() + 1;
    }
  }
  void Add(const Hash128&) {}
  void Add(uint8_t) {}
  void Add(uint64_t) {}
  void Add(const Op& op) {
    Add(op.key);
    Add(op.value);
  }
  void Add(const FamilyInfo& f) { Add(f.name); }
  void Add(const NodeSummary& s) {
    Add(s.digits);
    Add(s.hashes);
    Add(s.details);
    Add(s.key_hashes);
    Add(s.leaf_hashes);
  }
  template <typename T>
  void Add(const std::vector<T>& v) {
    elements += v.capacity();
    bytes += v.capacity() * sizeof(T);
    for (const T& x : v) Add(x);
  }
  void Add(const Message& m) {
    std::visit(
        [this](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, Hello>) {
            Add(x.client_nonce);
            Add(x.master_id);
            Add(x.bootstrap_key);
          } else if constexpr (std::is_same_v<T, Challenge>) {
            Add(x.server_nonce);
            Add(x.server_proof);
          } else if constexpr (std::is_same_v<T, Auth>) {
            Add(x.client_proof);
          } else if constexpr (std::is_same_v<T, Welcome>) {
            Add(x.master_id);
            Add(x.families);
          } else if constexpr (std::is_same_v<T, Reject>) {
            Add(x.reason);
          } else if constexpr (std::is_same_v<T, Batch>) {
            Add(x.ops);
          } else if constexpr (std::is_same_v<T, SyncRoot>) {
            Add(x.top);
          } else if constexpr (std::is_same_v<T, NodesRequest>) {
            Add(x.paths);
            Add(x.summaries);
          } else if constexpr (std::is_same_v<T, Nodes>) {
            Add(x.summaries);
          } else if constexpr (std::is_same_v<T, Repair>) {
            Add(x.ops);
            Add(x.delete_key_hashes);
          } else if constexpr (std::is_same_v<T, BootstrapChunk>) {
            Add(x.entries);
          } else if constexpr (std::is_same_v<T, Write>) {
            Add(x.ops);
          } else if constexpr (std::is_same_v<T, WriteAck>) {
            Add(x.error);
          } else if constexpr (std::is_same_v<T, FileChunk>) {
            Add(x.name);
            Add(x.data);
          } else if constexpr (std::is_same_v<T, BatchPart>) {
            Add(x.ops);
          } else if constexpr (std::is_same_v<T, PutStart>) {
            Add(x.key);
          } else if constexpr (std::is_same_v<T, ValuePart>) {
            Add(x.data);
          } else if constexpr (std::is_same_v<T, AuditReport>) {
            Add(x.examples);
            Add(x.error);
          }
        },
        m);
  }
};

// Decodes `type_and_body`. It must either fail with Corruption or decode to a
// message that re-encodes to the same bytes (the encoding is canonical) and
// holds at most a bounded multiple of the input's size.
void CheckDecode(std::string_view type_and_body) {
  Message m;
  Status s = DecodeFrame(type_and_body, &m);
  if (!s.ok()) {
    RC_ASSERT(s.IsCorruption());
    RC_ASSERT(!s.message().empty());
    return;
  }
  std::string again = FrameOf(m);
  RC_ASSERT(std::string_view(again).substr(kFrameHeaderSize) == type_and_body);
  Footprint f;
  f.Add(m);
  // Every count is checked against the bytes it must cover, and strings are
  // at most twice their length (the allocator's growth step).
  RC_ASSERT(f.elements <= 4 * type_and_body.size());
  // The costliest element per input byte is a one-byte empty summary, which
  // decodes into a whole NodeSummary.
  RC_ASSERT(f.bytes <= sizeof(NodeSummary) * type_and_body.size());
}

// Feeds `stream` to a FrameReader in pieces, pulling frames after each piece.
// Frames that decode must re-encode to their bytes; an error must be final.
void CheckStream(std::string_view stream, const std::vector<size_t>& cuts, size_t max_frame) {
  FrameReader reader(max_frame);
  size_t fed = 0;
  size_t decoded = 0;  // stream bytes of the frames decoded so far
  Status error;
  for (size_t i = 0; i <= cuts.size() && error.ok(); ++i) {
    size_t end = i < cuts.size() ? std::min(stream.size(), fed + cuts[i]) : stream.size();
    reader.Append(stream.substr(fed, end - fed));
    fed = end;
    for (;;) {
      Message m;
      bool got = false;
      error = reader.Next(&m, &got);
      if (!error.ok()) {
        RC_ASSERT(error.IsCorruption());
        RC_ASSERT(!got);
        break;
      }
      if (!got) break;
      std::string frame = FrameOf(m);
      RC_ASSERT(stream.substr(decoded, frame.size()) == frame);
      decoded += frame.size();
      RC_ASSERT(reader.buffered() == fed - decoded);
    }
  }
  if (error.ok()) return;
  Message m;
  bool got = true;
  RC_ASSERT(reader.Next(&m, &got).message() == error.message());
  RC_ASSERT(!got);
}

RC_GTEST_PROP(WirePropertyTest, RandomMessagesRoundTrip, ()) {
  Message m = *GenMessage();
  std::string frame = FrameOf(m);
  Message decoded;
  Status s = DecodeFrame(std::string_view(frame).substr(kFrameHeaderSize), &decoded);
  RC_ASSERT(s.ok());
  RC_ASSERT(decoded == m);
  CheckDecode(std::string_view(frame).substr(kFrameHeaderSize));
}

RC_GTEST_PROP(WirePropertyTest, RandomStreamsSplitAnywhereRoundTrip, ()) {
  auto messages = *gen::container<std::vector<Message>>(GenMessage());
  auto cuts = *gen::container<std::vector<size_t>>(gen::inRange<size_t>(0, 300));
  std::string stream;
  for (const Message& m : messages) AppendFrame(m, &stream);
  CheckStream(stream, cuts, kDefaultMaxFrame);
}

RC_GTEST_PROP(WirePropertyTest, RandomBytesDecodeOrFailCleanly, ()) {
  std::string bytes = *GenBytes();
  auto type = *gen::inRange<int>(0, 18);
  CheckDecode(bytes);
  CheckDecode(std::string(1, static_cast<char>(type)) + bytes);
  CheckStream(bytes, *gen::container<std::vector<size_t>>(gen::inRange<size_t>(0, 50)), 1 << 20);
}

// Damages a valid stream of frames: flips, inserts, deletes, truncates.
std::string Mutate(std::string s) {
  int n = *gen::inRange(1, 6);
  for (int i = 0; i < n; ++i) {
    size_t at = *gen::inRange<size_t>(0, s.size() + 1);
    switch (*gen::inRange(0, 5)) {
      case 0:
        if (at < s.size()) s[at] ^= static_cast<char>(1 << *gen::inRange(0, 8));
        break;
      case 1:
        if (at < s.size()) s[at] = *gen::arbitrary<char>();
        break;
      case 2:
        s.insert(at, 1, *gen::arbitrary<char>());
        break;
      case 3:
        if (at < s.size()) s.erase(at, 1);
        break;
      case 4:
        s.resize(at);
        break;
    }
  }
  return s;
}

RC_GTEST_PROP(WirePropertyTest, MutatedFramesDecodeOrFailCleanly, ()) {
  std::string frame = FrameOf(*GenMessage());
  std::string damaged = Mutate(frame);
  if (damaged.size() >= kFrameHeaderSize) {
    CheckDecode(std::string_view(damaged).substr(kFrameHeaderSize));
  }
  std::string stream = damaged + FrameOf(*GenMessage());
  CheckStream(stream, *gen::container<std::vector<size_t>>(gen::inRange<size_t>(0, 100)), 1 << 20);
}

RC_GTEST_PROP(WirePropertyTest, MutatedSamplesDecodeOrFailCleanly, ()) {
  std::vector<Message> samples = SampleMessages();
  const Message& m = *gen::elementOf(samples);
  std::string damaged = Mutate(FrameOf(m));
  if (damaged.size() >= kFrameHeaderSize) {
    CheckDecode(std::string_view(damaged).substr(kFrameHeaderSize));
  }
}

}  // namespace
}  // namespace sdiff::wire
