// The frame codec of wire.h. docs/protocol.md, "Frames and messages", is the
// byte-by-byte specification; the encoders and decoders below follow it field by field.
#include "engine/wire.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <limits>
#include <type_traits>
#include <utility>
#include <variant>

namespace sdiff::wire {
namespace {

constexpr size_t kMaxVarintBytes = 10;  // 64 bits, 7 per byte
constexpr size_t kMaxNonceBytes = 64;   // nonces and proofs
constexpr size_t kMaxMasterIdBytes = 255;
constexpr size_t kMaxFileNameBytes = 255;
constexpr uint8_t kDataHashBytes = 8;  // a FileChunk's data_hash, little-endian
constexpr size_t kMaxPathDigits = 16;  // a Hash128 has 16 digits
constexpr size_t kMaxChildren = 256;
constexpr size_t kMaxListedChildren = 32;  // above this, digits are sent as a bitmap
constexpr size_t kBitmapBytes = 32;        // one bit per digit 0..255
constexpr size_t kHashBytes = 16;
constexpr size_t kMinOpBytes = 4;       // kind, family, key length, value length
constexpr size_t kMinFamilyBytes = 2;   // tag, name length
constexpr size_t kMinPathBytes = 1;     // length
constexpr size_t kMinSummaryBytes = 1;  // kind (kEmpty)
constexpr size_t kFoldLines = 16;       // lines per family of a folded summary
constexpr size_t kMaxFoldFamilies = 4;
constexpr size_t kMaxListedLeafCount = 16;  // a kLeaves summary's limit on the wire
constexpr size_t kMinExampleBytes = 1;      // length (empty)

// The largest Hello (type byte and body) must fit the handshake's frame limit:
// versions and role, the nonce, master_id, two varints, the bool, the family
// (3 bytes at most), the bootstrap key; each string after its 1- or 2-byte length.
constexpr size_t kMaxHelloFrame = 1 + 3 + (1 + kMaxNonceBytes) + (2 + kMaxMasterIdBytes) +
                                  2 * kMaxVarintBytes + 1 + 3 + (2 + kMaxBootstrapKeyBytes);
static_assert(kMaxHelloFrame <= kMaxHandshakeFrame);
static_assert(kMaxBootstrapKeyBytes < (1 << 14));  // its length takes 2 varint bytes at most

// The frame's type byte is the Message alternative's index plus one.
template <MessageType t>
using AlternativeOf = std::variant_alternative_t<static_cast<size_t>(t) - 1, Message>;
static_assert(std::is_same_v<AlternativeOf<MessageType::kHello>, Hello>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kChallenge>, Challenge>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kAuth>, Auth>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kWelcome>, Welcome>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kReject>, Reject>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kBatch>, Batch>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kSyncRequest>, SyncRequest>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kSyncStart>, SyncStart>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kSyncRoot>, SyncRoot>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kNodesRequest>, NodesRequest>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kNodes>, Nodes>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kRepair>, Repair>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kSyncDone>, SyncDone>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kBootstrapChunk>, BootstrapChunk>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kPing>, Ping>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kPong>, Pong>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kWrite>, Write>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kWriteAck>, WriteAck>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kFileChunk>, FileChunk>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kBatchPart>, BatchPart>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kPutStart>, PutStart>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kValuePart>, ValuePart>);
static_assert(std::is_same_v<AlternativeOf<MessageType::kAuditReport>, AuditReport>);
static_assert(std::variant_size_v<Message> == static_cast<size_t>(MessageType::kAuditReport));

bool ValidHashBytes(uint8_t n) { return n >= 1 && n <= 8; }

// ---- encoding ----

class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}

  void U8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void Bool(bool v) { U8(v ? 1 : 0); }
  template <typename E>
  void Enum(E v) {
    U8(static_cast<uint8_t>(v));
  }
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      U8(static_cast<uint8_t>(v) | 0x80);
      v >>= 7;
    }
    U8(static_cast<uint8_t>(v));
  }
  void Bytes(std::string_view s) {
    Varint(s.size());
    out_->append(s);
  }
  void Hash(const Hash128& h) {
    uint8_t bytes[kHashBytes];
    h.ToBytes(bytes);
    out_->append(reinterpret_cast<const char*>(bytes), kHashBytes);
  }
  // The low `width` bytes of v, little-endian; wider bits are not sent.
  void Truncated(uint64_t v, uint8_t width) {
    for (uint8_t i = 0; i < width; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
  }

 private:
  std::string* out_;
};

void Encode(Writer& w, const Op& op) {
  w.Enum(op.kind);
  w.Varint(op.family);
  w.Bytes(op.key);
  w.Bytes(op.value);
}

void Encode(Writer& w, std::span<const Op> ops) {
  w.Varint(ops.size());
  for (const Op& op : ops) Encode(w, op);
}

void EncodeDigits(Writer& w, const std::vector<uint8_t>& digits) {
  if (digits.size() == kMaxChildren) {
    // Every digit: nothing to say beyond the count.
  } else if (digits.size() <= kMaxListedChildren) {
    for (uint8_t d : digits) w.U8(d);
  } else {
    uint8_t bitmap[kBitmapBytes] = {};
    for (uint8_t d : digits) bitmap[d / 8] |= static_cast<uint8_t>(1u << (d % 8));
    for (uint8_t b : bitmap) w.U8(b);
  }
}

void Encode(Writer& w, const NodeSummary& s, uint8_t hash_bytes) {
  using Kind = NodeSummary::Kind;
  w.Enum(s.kind);
  // The caller's summary must be well formed: the decoder rejects anything else.
  switch (s.kind) {
    case Kind::kEmpty:
      return;
    case Kind::kLeaf:
      w.Hash(s.key_hash);
      w.Hash(s.leaf_hash);
      return;
    case Kind::kInner:
      assert(!s.digits.empty() && s.digits.size() <= kMaxChildren);
      assert(s.digits.size() == s.hashes.size());
      assert(std::is_sorted(s.digits.begin(), s.digits.end()) &&
             std::adjacent_find(s.digits.begin(), s.digits.end()) == s.digits.end());
      w.Varint(s.digits.size());
      EncodeDigits(w, s.digits);
      for (uint64_t h : s.hashes) w.Truncated(h, hash_bytes);
      return;
    case Kind::kFolded:
      assert(s.hashes.size() % kFoldLines == 0 && s.hashes.size() >= 2 * kFoldLines &&
             s.hashes.size() <= kFoldLines * kMaxFoldFamilies);
      w.U8(static_cast<uint8_t>(s.hashes.size() / kFoldLines));
      for (uint64_t h : s.hashes) w.Truncated(h, hash_bytes);
      return;
    case Kind::kLeaves:
      assert(s.key_hashes.size() == s.leaf_hashes.size() && s.key_hashes.size() >= 2 &&
             s.key_hashes.size() <= kMaxListedLeafCount);
      w.Varint(s.key_hashes.size());
      for (size_t i = 0; i < s.key_hashes.size(); ++i) {
        w.Hash(s.key_hashes[i]);
        w.Hash(s.leaf_hashes[i]);
      }
      return;
    case Kind::kSums:
      w.Varint(s.leaf_count);
      w.Hash(s.key_hash);
      w.Hash(s.leaf_hash);
      w.Hash(s.check);
      return;
    case Kind::kDetails:
      assert(s.digits.size() == s.details.size() && s.digits.size() <= kMaxChildren);
      assert(std::is_sorted(s.digits.begin(), s.digits.end()) &&
             std::adjacent_find(s.digits.begin(), s.digits.end()) == s.digits.end());
      w.Varint(s.digits.size());
      if (!s.digits.empty()) EncodeDigits(w, s.digits);
      for (const NodeSummary& detail : s.details) {
        assert(detail.kind != Kind::kDetails);
        Encode(w, detail, hash_bytes);
      }
      return;
  }
}

void Encode(Writer& w, const Hello& m) {
  assert(m.client_nonce.size() <= kMaxNonceBytes && m.master_id.size() <= kMaxMasterIdBytes &&
         m.bootstrap_key.size() <= kMaxBootstrapKeyBytes);
  w.U8(m.min_version);
  w.U8(m.max_version);
  w.Enum(m.role);
  w.Bytes(m.client_nonce);
  w.Bytes(m.master_id);
  w.Varint(m.applied_seq);
  w.Varint(m.key_count);
  w.Bool(m.bootstrapping);
  w.Varint(m.bootstrap_family);
  w.Bytes(m.bootstrap_key);
}

void Encode(Writer& w, const Challenge& m) {
  w.U8(m.version);
  w.Bytes(m.server_nonce);
  w.Bytes(m.server_proof);
}

void Encode(Writer& w, const Auth& m) { w.Bytes(m.client_proof); }

void Encode(Writer& w, const Welcome& m) {
  w.Bytes(m.master_id);
  w.Varint(m.master_seq);
  w.Enum(m.mode);
  w.Varint(m.resume_from);
  w.Varint(m.families.size());
  for (const FamilyInfo& f : m.families) {
    w.Varint(f.tag);
    w.Bytes(f.name);
  }
}

void Encode(Writer& w, const Reject& m) {
  w.Enum(m.code);
  w.Bytes(m.reason);
}

void Encode(Writer& w, const Batch& m) {
  w.Varint(m.seq);
  w.Varint(m.count);
  Encode(w, m.ops);
}

void Encode(Writer&, const SyncRequest&) {}

void Encode(Writer& w, const SyncStart& m) {
  w.Varint(m.sync_id);
  w.Varint(m.seq);
  w.Varint(m.salt);
  w.U8(m.hash_bytes);
  w.Hash(m.root);
  w.Varint(m.key_count);
}

void Encode(Writer& w, const SyncRoot& m) {
  assert(ValidHashBytes(m.hash_bytes));
  w.U8(m.hash_bytes);
  w.Varint(m.sync_id);
  w.Hash(m.root);
  w.Varint(m.key_count);
  w.Bool(m.equal);
  Encode(w, m.top, m.hash_bytes);
}

void Encode(Writer& w, const NodesRequest& m) {
  assert(ValidHashBytes(m.hash_bytes));
  assert(m.summaries.empty() || m.summaries.size() == m.paths.size());
  w.U8(m.hash_bytes);
  w.Varint(m.sync_id);
  w.Varint(m.paths.size());
  for (const std::string& path : m.paths) {
    assert(path.size() <= kMaxPathDigits);
    w.Bytes(path);
  }
  w.Varint(m.summaries.size());
  for (const NodeSummary& s : m.summaries) Encode(w, s, m.hash_bytes);
}

void Encode(Writer& w, const Nodes& m) {
  assert(ValidHashBytes(m.hash_bytes));
  w.U8(m.hash_bytes);
  w.Varint(m.sync_id);
  w.Varint(m.summaries.size());
  for (const NodeSummary& s : m.summaries) Encode(w, s, m.hash_bytes);
}

void Encode(Writer& w, const Repair& m) {
  w.Varint(m.sync_id);
  Encode(w, m.ops);
  w.Varint(m.delete_key_hashes.size());
  for (const Hash128& h : m.delete_key_hashes) w.Hash(h);
}

void Encode(Writer& w, const SyncDone& m) {
  w.Varint(m.sync_id);
  w.Varint(m.repaired);
  w.Bool(m.retry);
}

void Encode(Writer& w, const BootstrapChunk& m) {
  w.Varint(m.seq);
  Encode(w, m.entries);
  w.Bool(m.last);
}

void Encode(Writer& w, const Ping& m) {
  w.Varint(m.master_seq);
  w.Varint(m.master_time_ms);
}

void Encode(Writer& w, const Pong& m) {
  w.Varint(m.applied_seq);
  w.Varint(m.echo_time_ms);
}

void Encode(Writer& w, const Write& m) {
  w.Varint(m.id);
  Encode(w, m.ops);
}

void Encode(Writer& w, const WriteAck& m) {
  w.Varint(m.id);
  w.Varint(m.seq);
  w.Bytes(m.error);
}

void Encode(Writer& w, const FileChunk& m) {
  assert(!m.name.empty() && m.name.size() <= kMaxFileNameBytes);
  assert(m.data.size() <= m.file_size && m.offset <= m.file_size - m.data.size());
  w.Bytes(m.name);
  w.Varint(m.file_size);
  w.Varint(m.offset);
  w.Bytes(m.data);
  w.Truncated(m.data_hash, kDataHashBytes);
  w.Bool(m.last);
}

void Encode(Writer& w, const BatchPart& m) {
  w.Varint(m.seq);
  w.Varint(m.count);
  w.Varint(m.bytes);
  Encode(w, m.ops);
  w.Bool(m.last);
}

void Encode(Writer& w, const PutStart& m) {
  assert(m.value_size >= 1 && m.value_size <= kMaxValueBytes);
  w.Enum(m.context);
  w.Varint(m.id);
  w.Varint(m.family);
  w.Bytes(m.key);
  w.Varint(m.value_size);
}

void Encode(Writer& w, const ValuePart& m) {
  assert(!m.data.empty());
  w.Bytes(m.data);
}

void Encode(Writer& w, const AuditReport& m) {
  assert(m.examples.size() <= kMaxAuditExamples);
  w.Varint(m.seq);
  w.Varint(m.keys);
  w.Varint(m.mismatches);
  w.Varint(m.examples.size());
  for (const std::string& example : m.examples) {
    assert(example.size() <= kMaxAuditExampleBytes);
    w.Bytes(example);
  }
  w.Varint(m.micros);
  w.Bytes(m.error);
}

// ---- decoding ----

// Consumes a body from the front. The first failure is kept; every later read
// fails too, so decoders can chain reads with && and stop at the first false.
class Reader {
 public:
  // `memory_limit`: the most memory the decoded message may take.
  Reader(std::string_view in, const char* message, size_t memory_limit)
      : in_(in), message_(message), memory_left_(memory_limit) {}

  // Accounts for memory the decoded message will hold; fails past the limit.
  bool Charge(const char* field, size_t bytes) {
    if (!status_.ok()) return false;
    if (bytes > memory_left_) {
      return Fail(fmt::format("{} would take the decoded message past its memory limit", field));
    }
    memory_left_ -= bytes;
    return true;
  }

  // Names the element being decoded, for errors: "op 3: key ...".
  void SetElement(const char* element, size_t index = kNoIndex) {
    element_ = element;
    index_ = index;
  }

  bool U8(const char* field, uint8_t* v) {
    if (!Need(field, 1)) return false;
    *v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }

  bool Bool(const char* field, bool* v) {
    uint8_t b;
    if (!U8(field, &b)) return false;
    if (b > 1) return Fail(fmt::format("{} byte {} is not 0 or 1", field, b));
    *v = b == 1;
    return true;
  }

  // An enum sent as one byte; only the values lo..hi are defined.
  template <typename E>
  bool Enum(const char* field, uint8_t lo, uint8_t hi, E* v) {
    uint8_t b;
    if (!U8(field, &b)) return false;
    if (b < lo || b > hi) return Fail(fmt::format("{} {} is not a defined value", field, b));
    *v = static_cast<E>(b);
    return true;
  }

  // LEB128, minimally encoded: at most 10 bytes, no bits above 64, no high zero bytes.
  bool Varint(const char* field, uint64_t* v) {
    uint64_t result = 0;
    for (size_t i = 0; i < kMaxVarintBytes; ++i) {
      if (i >= in_.size()) return Fail(fmt::format("{} varint truncated", field));
      uint8_t b = static_cast<uint8_t>(in_[i]);
      if (i == kMaxVarintBytes - 1 && b > 1) {
        return Fail(b & 0x80 ? fmt::format("{} varint longer than {} bytes", field, kMaxVarintBytes)
                             : fmt::format("{} varint overflows 64 bits", field));
      }
      result |= uint64_t{b & 0x7fu} << (7 * i);
      if ((b & 0x80) == 0) {
        if (b == 0 && i > 0) return Fail(fmt::format("{} varint is not minimally encoded", field));
        in_.remove_prefix(i + 1);
        *v = result;
        return true;
      }
    }
    return false;  // not reached: the tenth byte either ends the varint or fails above
  }

  bool Family(const char* field, FamilyTag* v) {
    uint64_t n;
    if (!Varint(field, &n)) return false;
    if (n > std::numeric_limits<FamilyTag>::max()) {
      return Fail(fmt::format("{} {} exceeds {}", field, n, std::numeric_limits<FamilyTag>::max()));
    }
    *v = static_cast<FamilyTag>(n);
    return true;
  }

  bool HashBytes(const char* field, uint8_t* v) {
    if (!U8(field, v)) return false;
    if (!ValidHashBytes(*v)) return Fail(fmt::format("{} {} outside 1..8", field, *v));
    return true;
  }

  // A varint length, then that many bytes; at most `limit` of them.
  bool Bytes(const char* field, std::string* s, size_t limit = std::numeric_limits<size_t>::max()) {
    uint64_t n;
    if (!Varint(field, &n)) return false;
    if (n > limit) return Fail(fmt::format("{} length {} exceeds limit {}", field, n, limit));
    if (n > in_.size()) {
      return Fail(fmt::format("{} length {} exceeds remaining {} bytes", field, n, in_.size()));
    }
    if (!Charge(field, n)) return false;
    s->assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }

  bool Hash(const char* field, Hash128* h) {
    if (!Need(field, kHashBytes)) return false;
    *h = Hash128::FromBytes(reinterpret_cast<const uint8_t*>(in_.data()));
    in_.remove_prefix(kHashBytes);
    return true;
  }

  // `width` bytes, little-endian.
  bool Truncated(const char* field, uint8_t width, uint64_t* v) {
    if (!Need(field, width)) return false;
    uint64_t result = 0;
    for (uint8_t i = 0; i < width; ++i) result |= uint64_t{static_cast<uint8_t>(in_[i])} << (8 * i);
    in_.remove_prefix(width);
    *v = result;
    return true;
  }

  // A varint element count, checked against the bytes left: each element takes
  // at least `min_bytes`. Only a count that passes may size an allocation.
  // Each element also takes `element_bytes` of memory once decoded.
  bool Count(const char* field, size_t min_bytes, size_t element_bytes, size_t* count) {
    uint64_t n;
    if (!Varint(field, &n)) return false;
    if (n > in_.size() / min_bytes) {
      return Fail(
          fmt::format("{} {} exceeds remaining {} bytes{}", field, n, in_.size(),
                      min_bytes > 1 ? fmt::format(" (each takes at least {})", min_bytes) : ""));
    }
    if (!Charge(field, n * element_bytes)) return false;
    *count = static_cast<size_t>(n);
    return true;
  }

  // `n` raw bytes, which the caller reads through the returned pointer.
  bool Raw(const char* field, size_t n, const uint8_t** p) {
    if (!Need(field, n)) return false;
    *p = reinterpret_cast<const uint8_t*>(in_.data());
    in_.remove_prefix(n);
    return true;
  }

  size_t remaining() const { return in_.size(); }

  bool Fail(std::string_view what) {
    if (status_.ok()) {
      std::string where = element_ == nullptr  ? ""
                          : index_ == kNoIndex ? fmt::format("{}: ", element_)
                                               : fmt::format("{} {}: ", element_, index_);
      status_ = Status::Corruption(fmt::format("{}: {}{}", message_, where, what));
    }
    return false;
  }

  // The status of the whole body: the first failure, or trailing bytes.
  Status Finish() {
    SetElement(nullptr);
    if (status_.ok() && !in_.empty()) {
      Fail(fmt::format("{} trailing bytes after the body", in_.size()));
    }
    return status_;
  }

 private:
  static constexpr size_t kNoIndex = std::numeric_limits<size_t>::max();

  bool Need(const char* field, size_t n) {
    if (!status_.ok()) return false;
    if (in_.size() < n) {
      return Fail(fmt::format("{} truncated: needs {} bytes, {} remain", field, n, in_.size()));
    }
    return true;
  }

  std::string_view in_;
  const char* message_;
  size_t memory_left_;
  const char* element_ = nullptr;
  size_t index_ = kNoIndex;
  Status status_;
};

bool Decode(Reader& r, Op* op) {
  return r.Enum("kind", 1, 3, &op->kind) && r.Family("family", &op->family) &&
         r.Bytes("key", &op->key) && r.Bytes("value", &op->value);
}

bool Decode(Reader& r, const char* count_field, const char* element, std::vector<Op>* ops) {
  size_t n;
  if (!r.Count(count_field, kMinOpBytes, sizeof(Op), &n)) return false;
  ops->resize(n);
  for (size_t i = 0; i < n; ++i) {
    r.SetElement(element, i);
    if (!Decode(r, &(*ops)[i])) return false;
  }
  r.SetElement(nullptr);
  return true;
}

bool DecodeDigits(Reader& r, size_t count, std::vector<uint8_t>* digits) {
  const uint8_t* p;
  if (count == kMaxChildren) {
    digits->resize(kMaxChildren);
    for (size_t d = 0; d < kMaxChildren; ++d) (*digits)[d] = static_cast<uint8_t>(d);
    return true;
  }
  if (count <= kMaxListedChildren) {
    if (!r.Raw("digits", count, &p)) return false;
    digits->assign(p, p + count);
    for (size_t i = 1; i < count; ++i) {
      if (p[i] <= p[i - 1]) {
        return r.Fail(fmt::format("digits not strictly ascending ({} after {})", p[i], p[i - 1]));
      }
    }
    return true;
  }
  if (!r.Raw("digit bitmap", kBitmapBytes, &p)) return false;
  size_t bits = 0;
  for (size_t i = 0; i < kBitmapBytes; ++i) bits += std::popcount(p[i]);
  if (bits != count) {
    return r.Fail(fmt::format("digit bitmap has {} bits set, child count is {}", bits, count));
  }
  digits->reserve(count);
  for (size_t d = 0; d < kMaxChildren; ++d) {
    if (p[d / 8] & (1u << (d % 8))) digits->push_back(static_cast<uint8_t>(d));
  }
  return true;
}

// `nested`: a detail of a kDetails answer, which may not be one itself; only
// a detail may be kSums.
bool Decode(Reader& r, uint8_t hash_bytes, NodeSummary* s, bool nested = false) {
  using Kind = NodeSummary::Kind;
  if (!r.Enum("kind", 0, 6, &s->kind)) return false;
  if ((s->kind == Kind::kDetails && nested) || (s->kind == Kind::kSums && !nested)) {
    return r.Fail(nested ? "kind 5 (details) inside details" : "kind 6 (sums) outside details");
  }
  switch (s->kind) {
    case Kind::kEmpty:
      return true;
    case Kind::kSums:
      return r.Varint("leaf count", &s->leaf_count) && r.Hash("key_hash", &s->key_hash) &&
             r.Hash("leaf_hash", &s->leaf_hash) && r.Hash("check", &s->check);
    case Kind::kLeaf:
      return r.Hash("key_hash", &s->key_hash) && r.Hash("leaf_hash", &s->leaf_hash);
    case Kind::kInner:
      break;
    case Kind::kFolded: {
      uint8_t families;
      if (!r.U8("families", &families)) return false;
      if (families < 2 || families > kMaxFoldFamilies) {
        return r.Fail(fmt::format("families {} outside 2..{}", families, kMaxFoldFamilies));
      }
      size_t count = families * kFoldLines;
      if (count * hash_bytes > r.remaining()) {
        return r.Fail(fmt::format("{} lines need {} bytes, {} remain", count, count * hash_bytes,
                                  r.remaining()));
      }
      if (!r.Charge("lines", count * sizeof(uint64_t))) return false;
      s->hashes.resize(count);
      for (uint64_t& h : s->hashes) {
        if (!r.Truncated("line", hash_bytes, &h)) return false;
      }
      return true;
    }
    case Kind::kLeaves: {
      uint64_t count;
      if (!r.Varint("leaf count", &count)) return false;
      if (count < 2 || count > kMaxListedLeafCount) {
        return r.Fail(fmt::format("leaf count {} outside 2..{}", count, kMaxListedLeafCount));
      }
      if (count * 2 * kHashBytes > r.remaining()) {
        return r.Fail(fmt::format("{} leaves need {} bytes, {} remain", count,
                                  count * 2 * kHashBytes, r.remaining()));
      }
      if (!r.Charge("leaves", count * 2 * sizeof(Hash128))) return false;
      s->key_hashes.resize(count);
      s->leaf_hashes.resize(count);
      for (size_t i = 0; i < count; ++i) {
        if (!(r.Hash("key_hash", &s->key_hashes[i]) && r.Hash("leaf_hash", &s->leaf_hashes[i]))) {
          return false;
        }
      }
      return true;
    }
    case Kind::kDetails: {
      uint64_t count;
      if (!r.Varint("detail count", &count)) return false;
      if (count > kMaxChildren) {
        return r.Fail(fmt::format("detail count {} exceeds {}", count, kMaxChildren));
      }
      size_t digit_bytes = count == kMaxChildren         ? 0
                           : count <= kMaxListedChildren ? count
                                                         : kBitmapBytes;
      // Each detail takes at least its kind byte.
      if (digit_bytes + count * kMinSummaryBytes > r.remaining()) {
        return r.Fail(fmt::format("{} details need at least {} bytes, {} remain", count,
                                  digit_bytes + count * kMinSummaryBytes, r.remaining()));
      }
      if (!r.Charge("details", count * (sizeof(uint8_t) + sizeof(NodeSummary)))) return false;
      if (count > 0 && !DecodeDigits(r, count, &s->digits)) return false;
      s->details.resize(count);
      for (NodeSummary& detail : s->details) {
        if (!Decode(r, hash_bytes, &detail, /*nested=*/true)) return false;
      }
      return true;
    }
  }
  uint64_t count;
  if (!r.Varint("child count", &count)) return false;
  if (count < 1 || count > kMaxChildren) {
    return r.Fail(fmt::format("child count {} outside 1..{}", count, kMaxChildren));
  }
  size_t digit_bytes = count == kMaxChildren         ? 0
                       : count <= kMaxListedChildren ? count
                                                     : kBitmapBytes;
  size_t needed = digit_bytes + count * hash_bytes;
  if (needed > r.remaining()) {
    return r.Fail(
        fmt::format("{} children need {} bytes, {} remain", count, needed, r.remaining()));
  }
  if (!r.Charge("children", count * (sizeof(uint8_t) + sizeof(uint64_t)))) return false;
  if (!DecodeDigits(r, count, &s->digits)) return false;
  s->hashes.resize(count);
  for (uint64_t& h : s->hashes) {
    if (!r.Truncated("hash", hash_bytes, &h)) return false;
  }
  return true;
}

bool Decode(Reader& r, Hello* m) {
  return r.U8("min_version", &m->min_version) && r.U8("max_version", &m->max_version) &&
         r.Enum("role", 1, 5, &m->role) &&
         r.Bytes("client_nonce", &m->client_nonce, kMaxNonceBytes) &&
         r.Bytes("master_id", &m->master_id, kMaxMasterIdBytes) &&
         r.Varint("applied_seq", &m->applied_seq) && r.Varint("key_count", &m->key_count) &&
         r.Bool("bootstrapping", &m->bootstrapping) &&
         r.Family("bootstrap_family", &m->bootstrap_family) &&
         r.Bytes("bootstrap_key", &m->bootstrap_key, kMaxBootstrapKeyBytes);
}

bool Decode(Reader& r, Challenge* m) {
  return r.U8("version", &m->version) &&
         r.Bytes("server_nonce", &m->server_nonce, kMaxNonceBytes) &&
         r.Bytes("server_proof", &m->server_proof, kMaxNonceBytes);
}

bool Decode(Reader& r, Auth* m) {
  return r.Bytes("client_proof", &m->client_proof, kMaxNonceBytes);
}

bool Decode(Reader& r, Welcome* m) {
  size_t n;
  if (!(r.Bytes("master_id", &m->master_id, kMaxMasterIdBytes) &&
        r.Varint("master_seq", &m->master_seq) && r.Enum("mode", 1, 4, &m->mode) &&
        r.Varint("resume_from", &m->resume_from) &&
        r.Count("family count", kMinFamilyBytes, sizeof(FamilyInfo), &n))) {
    return false;
  }
  m->families.resize(n);
  for (size_t i = 0; i < n; ++i) {
    r.SetElement("family", i);
    if (!(r.Family("tag", &m->families[i].tag) && r.Bytes("name", &m->families[i].name))) {
      return false;
    }
  }
  return true;
}

bool Decode(Reader& r, Reject* m) {
  return r.Enum("code", 1, 7, &m->code) && r.Bytes("reason", &m->reason);
}

bool Decode(Reader& r, Batch* m) {
  return r.Varint("seq", &m->seq) && r.Varint("count", &m->count) &&
         Decode(r, "op count", "op", &m->ops);
}

bool Decode(Reader&, SyncRequest*) { return true; }

bool Decode(Reader& r, SyncStart* m) {
  return r.Varint("sync_id", &m->sync_id) && r.Varint("seq", &m->seq) &&
         r.Varint("salt", &m->salt) && r.HashBytes("hash_bytes", &m->hash_bytes) &&
         r.Hash("root", &m->root) && r.Varint("key_count", &m->key_count);
}

bool Decode(Reader& r, SyncRoot* m) {
  if (!(r.HashBytes("hash_bytes", &m->hash_bytes) && r.Varint("sync_id", &m->sync_id) &&
        r.Hash("root", &m->root) && r.Varint("key_count", &m->key_count) &&
        r.Bool("equal", &m->equal))) {
    return false;
  }
  r.SetElement("top summary");
  return Decode(r, m->hash_bytes, &m->top);
}

bool Decode(Reader& r, NodesRequest* m) {
  size_t n;
  if (!(r.HashBytes("hash_bytes", &m->hash_bytes) && r.Varint("sync_id", &m->sync_id) &&
        r.Count("path count", kMinPathBytes, sizeof(std::string), &n))) {
    return false;
  }
  m->paths.resize(n);
  for (size_t i = 0; i < n; ++i) {
    r.SetElement("path", i);
    if (!r.Bytes("digits", &m->paths[i], kMaxPathDigits)) return false;
  }
  r.SetElement(nullptr);
  if (!r.Count("summary count", kMinSummaryBytes, sizeof(NodeSummary), &n)) return false;
  if (n != 0 && n != m->paths.size()) {
    return r.Fail(
        fmt::format("summary count {} is neither 0 nor the path count {}", n, m->paths.size()));
  }
  m->summaries.resize(n);
  for (size_t i = 0; i < n; ++i) {
    r.SetElement("summary", i);
    if (!Decode(r, m->hash_bytes, &m->summaries[i])) return false;
  }
  return true;
}

bool Decode(Reader& r, Nodes* m) {
  size_t n;
  if (!(r.HashBytes("hash_bytes", &m->hash_bytes) && r.Varint("sync_id", &m->sync_id) &&
        r.Count("summary count", kMinSummaryBytes, sizeof(NodeSummary), &n))) {
    return false;
  }
  m->summaries.resize(n);
  for (size_t i = 0; i < n; ++i) {
    r.SetElement("summary", i);
    if (!Decode(r, m->hash_bytes, &m->summaries[i])) return false;
  }
  return true;
}

bool Decode(Reader& r, Repair* m) {
  size_t n;
  if (!(r.Varint("sync_id", &m->sync_id) && Decode(r, "op count", "op", &m->ops) &&
        r.Count("delete_key_hashes count", kHashBytes, sizeof(Hash128), &n))) {
    return false;
  }
  m->delete_key_hashes.resize(n);
  for (Hash128& h : m->delete_key_hashes) {
    if (!r.Hash("delete_key_hash", &h)) return false;
  }
  return true;
}

bool Decode(Reader& r, SyncDone* m) {
  return r.Varint("sync_id", &m->sync_id) && r.Varint("repaired", &m->repaired) &&
         r.Bool("retry", &m->retry);
}

bool Decode(Reader& r, BootstrapChunk* m) {
  return r.Varint("seq", &m->seq) && Decode(r, "entry count", "entry", &m->entries) &&
         r.Bool("last", &m->last);
}

bool Decode(Reader& r, Ping* m) {
  return r.Varint("master_seq", &m->master_seq) && r.Varint("master_time_ms", &m->master_time_ms);
}

bool Decode(Reader& r, Pong* m) {
  return r.Varint("applied_seq", &m->applied_seq) && r.Varint("echo_time_ms", &m->echo_time_ms);
}

bool Decode(Reader& r, Write* m) {
  return r.Varint("id", &m->id) && Decode(r, "op count", "op", &m->ops);
}

bool Decode(Reader& r, WriteAck* m) {
  return r.Varint("id", &m->id) && r.Varint("seq", &m->seq) && r.Bytes("error", &m->error);
}

bool Decode(Reader& r, FileChunk* m) {
  if (!(r.Bytes("name", &m->name, kMaxFileNameBytes) && r.Varint("file_size", &m->file_size) &&
        r.Varint("offset", &m->offset) && r.Bytes("data", &m->data) &&
        r.Truncated("data_hash", kDataHashBytes, &m->data_hash) && r.Bool("last", &m->last))) {
    return false;
  }
  if (m->name.empty()) return r.Fail("name is empty");
  if (m->data.size() > m->file_size || m->offset > m->file_size - m->data.size()) {
    return r.Fail(fmt::format("offset {} plus {} bytes of data passes file_size {}", m->offset,
                              m->data.size(), m->file_size));
  }
  return true;
}

bool Decode(Reader& r, BatchPart* m) {
  return r.Varint("seq", &m->seq) && r.Varint("count", &m->count) && r.Varint("bytes", &m->bytes) &&
         Decode(r, "op count", "op", &m->ops) && r.Bool("last", &m->last);
}

bool Decode(Reader& r, PutStart* m) {
  if (!(r.Enum("context", 1, 3, &m->context) && r.Varint("id", &m->id) &&
        r.Family("family", &m->family) && r.Bytes("key", &m->key) &&
        r.Varint("value_size", &m->value_size))) {
    return false;
  }
  if (m->value_size < 1 || m->value_size > kMaxValueBytes) {
    return r.Fail(fmt::format("value_size {} outside 1..{}", m->value_size, kMaxValueBytes));
  }
  return true;
}

bool Decode(Reader& r, ValuePart* m) {
  if (!r.Bytes("data", &m->data)) return false;
  if (m->data.empty()) return r.Fail("data is empty");
  return true;
}

bool Decode(Reader& r, AuditReport* m) {
  size_t n;
  if (!(r.Varint("seq", &m->seq) && r.Varint("keys", &m->keys) &&
        r.Varint("mismatches", &m->mismatches) &&
        r.Count("example count", kMinExampleBytes, sizeof(std::string), &n))) {
    return false;
  }
  if (n > kMaxAuditExamples) {
    return r.Fail(fmt::format("example count {} exceeds limit {}", n, kMaxAuditExamples));
  }
  m->examples.resize(n);
  for (size_t i = 0; i < n; ++i) {
    r.SetElement("example", i);
    if (!r.Bytes("key", &m->examples[i], kMaxAuditExampleBytes)) return false;
  }
  r.SetElement(nullptr);
  return r.Varint("micros", &m->micros) && r.Bytes("error", &m->error);
}

template <size_t I>
Status DecodeAlternative(std::string_view body, size_t memory_limit, Message* message) {
  auto& value = message->emplace<I>();
  Reader r(body, MessageName(*message), memory_limit);
  Decode(r, &value);
  return r.Finish();
}

using Decoder = Status (*)(std::string_view body, size_t memory_limit, Message* message);

// kDecoders[type - 1] decodes the body of a frame of that type.
constexpr auto kDecoders = []<size_t... I>(std::index_sequence<I...>) {
  return std::array<Decoder, sizeof...(I)>{&DecodeAlternative<I>...};
}
(std::make_index_sequence<std::variant_size_v<Message>>());

// M's position in the variant; its frame type is that plus one.
template <typename M, typename... Alternatives>
constexpr size_t AlternativeIndex(const std::variant<Alternatives...>*) {
  constexpr bool same[] = {std::is_same_v<M, Alternatives>...};
  for (size_t i = 0; i < sizeof...(Alternatives); ++i) {
    if (same[i]) return i;
  }
  return sizeof...(Alternatives);
}

uint32_t LoadLength(const char* p) {
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= uint32_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return n;
}

}  // namespace

namespace {

// Appends a frame of `type` whose body `encode` writes, then fills in its length.
template <typename Fn>
void AppendFrameOf(MessageType type, std::string* out, Fn&& encode) {
  size_t start = out->size();
  out->append(kFrameHeaderSize, '\0');
  Writer w(out);
  w.U8(static_cast<uint8_t>(type));
  encode(w);
  size_t length = out->size() - start - kFrameHeaderSize;
  assert(length <= std::numeric_limits<uint32_t>::max());  // the prefix is a u32
  for (size_t i = 0; i < kFrameHeaderSize; ++i) {
    (*out)[start + i] = static_cast<char>(length >> (8 * i));
  }
}

}  // namespace

template <MessageAlternative M>
void AppendFrame(const M& message, std::string* out) {
  constexpr auto type =
      static_cast<MessageType>(AlternativeIndex<M>(static_cast<Message*>(nullptr)) + 1);
  AppendFrameOf(type, out, [&](Writer& w) { Encode(w, message); });
}

void AppendBatchPart(uint64_t seq, uint64_t count, uint64_t bytes, std::span<const Op> ops,
                     bool last, std::string* out) {
  AppendFrameOf(MessageType::kBatchPart, out, [&](Writer& w) {
    w.Varint(seq);
    w.Varint(count);
    w.Varint(bytes);
    Encode(w, ops);
    w.Bool(last);
  });
}

void AppendValuePart(std::string_view data, std::string* out) {
  assert(!data.empty());
  AppendFrameOf(MessageType::kValuePart, out, [&](Writer& w) { w.Bytes(data); });
}

// For the other translation units: one per alternative of Message.
template void AppendFrame(const Hello&, std::string*);
template void AppendFrame(const Challenge&, std::string*);
template void AppendFrame(const Auth&, std::string*);
template void AppendFrame(const Welcome&, std::string*);
template void AppendFrame(const Reject&, std::string*);
template void AppendFrame(const Batch&, std::string*);
template void AppendFrame(const SyncRequest&, std::string*);
template void AppendFrame(const SyncStart&, std::string*);
template void AppendFrame(const SyncRoot&, std::string*);
template void AppendFrame(const NodesRequest&, std::string*);
template void AppendFrame(const Nodes&, std::string*);
template void AppendFrame(const Repair&, std::string*);
template void AppendFrame(const SyncDone&, std::string*);
template void AppendFrame(const BootstrapChunk&, std::string*);
template void AppendFrame(const Ping&, std::string*);
template void AppendFrame(const Pong&, std::string*);
template void AppendFrame(const Write&, std::string*);
template void AppendFrame(const WriteAck&, std::string*);
template void AppendFrame(const FileChunk&, std::string*);
template void AppendFrame(const BatchPart&, std::string*);
template void AppendFrame(const PutStart&, std::string*);
template void AppendFrame(const ValuePart&, std::string*);
template void AppendFrame(const AuditReport&, std::string*);

void AppendFrame(const Message& message, std::string* out) {
  std::visit([out](const auto& m) { AppendFrame(m, out); }, message);
}

Status DecodeFrame(std::string_view type_and_body, Message* message, size_t memory_limit) {
  if (type_and_body.empty()) return Status::Corruption("frame: no type byte");
  uint8_t type = static_cast<uint8_t>(type_and_body[0]);
  if (type < 1 || type > kDecoders.size()) {
    return Status::Corruption(fmt::format("frame: unknown message type {}", type));
  }
  return kDecoders[type - 1](type_and_body.substr(1), memory_limit, message);
}

Status FrameReader::Next(Message* message, bool* got) {
  *got = false;
  if (!error_.ok()) return error_;
  std::string_view pending = std::string_view(buffer_).substr(consumed_);
  if (pending.size() < kFrameHeaderSize) return Status::OK();
  uint32_t length = LoadLength(pending.data());
  if (length == 0) {
    return Fail(Status::Corruption("frame: length 0; a frame holds at least its type byte"));
  }
  if (length > max_frame_) {
    return Fail(
        Status::Corruption(fmt::format("frame: length {} exceeds limit {}", length, max_frame_)));
  }
  if (pending.size() - kFrameHeaderSize < length) {
    Compact();
    return Status::OK();
  }
  Status s = DecodeFrame(pending.substr(kFrameHeaderSize, length), message, max_frame_);
  if (!s.ok()) return Fail(std::move(s));
  consumed_ += kFrameHeaderSize + length;
  Compact();
  *got = true;
  return Status::OK();
}

Status FrameReader::Drain(std::string_view bytes, const std::function<bool(Message&)>& handle) {
  Append(bytes);
  for (;;) {
    Message message;
    bool got = false;
    Status s = Next(&message, &got);
    if (!s.ok() || !got) return s;
    if (!handle(message)) return Status::OK();
  }
}

void FrameReader::Compact() {
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ >= buffer_.size() - consumed_) {
    // Moving the unconsumed tail costs no more than the bytes consumed since
    // the last move, so compaction is amortised O(1) a byte.
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
}

Status FrameReader::Fail(Status error) {
  error_ = std::move(error);
  std::string().swap(buffer_);
  consumed_ = 0;
  return error_;
}

}  // namespace sdiff::wire
