// The messages of the sdiff replication protocol, as values. engine/wire.h turns
// them into frames and back; docs/protocol.md specifies every byte.
//
// Conversation (F = follower, M = master):
//   F: Hello            M: Challenge        F: Auth          M: Welcome | Reject
//   then M streams Batch frames; either side may ask for a diff:
//   F: SyncRequest  (or M decides)   M: SyncStart{root}   F: SyncRoot{root, top summary}
//   M: NodesRequest{paths, its summaries}  F: Nodes{what differs}  ... two trie levels
//   per exchange ...
//   M: Repair{ops}...  M: SyncDone
//   bootstrap of an empty follower: M: BootstrapChunk ... (last = true), then stream
//   liveness: M: Ping  F: Pong
//   a batch too large for one frame: M: BatchPart ... (last = true), with a put
//   whose value alone is too large between two parts as PutStart, ValuePart ...;
//   a repair or bootstrap entry with such a value: PutStart, ValuePart ...
// An inspector (Hello.role kInspector) gets no stream: one diff, then it closes.
// A writer (kWriter, where the master allows writers): W: Write  M: WriteAck ...
// A cloner (kCloner, an empty follower before it opens its database) gets the
// master's database files: M: FileChunk ... (last = true), then M closes.
// An auditor (kAuditor, `sdiff-ldb --master audit`, where the master audits on
// demand) asks for one self-audit: M: AuditReport, then M closes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "engine/hash.h"

namespace sdiff {

// ---- building blocks ----

enum class OpKind : uint8_t {
  kPut = 1,
  kDelete = 2,
  kDeleteRange = 3,  // deletes [key, value) in the family: `value` holds the end key
};

// One write of a master batch, or one repair.
struct Op {
  OpKind kind = OpKind::kPut;
  FamilyTag family = 0;
  std::string key;
  std::string value;  // kPut: the value; kDeleteRange: the exclusive end key
  friend bool operator==(const Op&, const Op&) = default;
};

// What one side holds under one trie prefix, or (kDetails) what differs
// there. Truncated hashes are TruncatedHash values (engine/sync.h).
struct NodeSummary {
  enum class Kind : uint8_t {
    kEmpty = 0,    // no key under the prefix
    kLeaf = 1,     // one key: key_hash, leaf_hash
    kInner = 2,    // two or more keys: digits, hashes
    kFolded = 3,   // two or more keys: hashes holds folded lines
    kLeaves = 4,   // two or more keys, each listed: key_hashes, leaf_hashes
    kDetails = 5,  // an answer to a probe: digits, details
    kSums = 6,     // five or more keys, added up: leaf_count, key_hash, leaf_hash, check
  };
  Kind kind = Kind::kEmpty;
  // kLeaf: the only key under the prefix (key_hash, leaf_hash).
  // kSums (only as a detail of kDetails): leaf_count keys; key_hash is the
  // XOR of their key hashes, leaf_hash of their leaf hashes (the prefix
  // hash), check of their CheckHash values (engine/sync.h), so that the
  // master can name the one key that differs there from these sums and its own.
  Hash128 key_hash;
  Hash128 leaf_hash;
  Hash128 check;
  uint64_t leaf_count = 0;
  // kInner: for each digit at depth prefix.size() under which keys exist, a
  // truncated hash of those keys, ascending digits.
  // kFolded: no digits; hashes holds 16 lines per family of lines (2 to 4
  // families, FoldLine in engine/sync.h): each line the XOR of the truncated
  // hashes of the children on it.
  // kDetails: the digits of the children that differ, ascending; details
  // holds the sender's summary of each (any kind but kDetails).
  std::vector<uint8_t> digits;
  std::vector<uint64_t> hashes;
  std::vector<NodeSummary> details;
  // kLeaves: every key under the prefix (2..kMaxListedLeaves), ascending key hash.
  std::vector<Hash128> key_hashes;
  std::vector<Hash128> leaf_hashes;
  friend bool operator==(const NodeSummary&, const NodeSummary&) = default;
};

// A column family the master replicates: its tag in trees and on the wire.
struct FamilyInfo {
  FamilyTag tag = 0;
  std::string name;
  friend bool operator==(const FamilyInfo&, const FamilyInfo&) = default;
};

enum class Role : uint8_t {
  kFollower = 1,
  kInspector = 2,
  kWriter = 3,
  kCloner = 4,
  kAuditor = 5,
};
enum class StartMode : uint8_t { kResume = 1, kDiff = 2, kBootstrap = 3, kFiles = 4 };
enum class RejectCode : uint8_t {
  kProtocol = 1,  // a malformed or unexpected message
  kVersion = 2,   // no common protocol version
  kAuth = 3,      // missing or wrong proof
  kRole = 4,      // the role is not served here
  kOverload = 5,  // too many connections, or a follower too slow to keep up
  kShutdown = 6,
  kInternal = 7,
};

// ---- messages ----

struct Hello {  // F -> M, first frame
  uint8_t min_version = 0;
  uint8_t max_version = 0;
  Role role = Role::kFollower;
  std::string client_nonce;    // 32 random bytes
  std::string master_id;       // master db identity the follower last followed; empty if none
  uint64_t applied_seq = 0;    // last master sequence applied, 0 if none
  uint64_t key_count = 0;      // keys the follower holds (empty followers bootstrap)
  bool bootstrapping = false;  // an interrupted bootstrap: resume after the key below
  FamilyTag bootstrap_family = 0;
  std::string bootstrap_key;
  friend bool operator==(const Hello&, const Hello&) = default;
};

struct Challenge {           // M -> F
  uint8_t version = 0;       // chosen protocol version
  std::string server_nonce;  // 32 random bytes
  std::string server_proof;  // MAC over both nonces, or empty without a secret
  friend bool operator==(const Challenge&, const Challenge&) = default;
};

struct Auth {                // F -> M
  std::string client_proof;  // MAC over both nonces, or empty without a secret
  friend bool operator==(const Auth&, const Auth&) = default;
};

struct Welcome {  // M -> F
  std::string master_id;
  uint64_t master_seq = 0;  // last sequence committed on the master
  StartMode mode = StartMode::kDiff;
  uint64_t resume_from = 0;  // kResume: the first sequence the stream will carry
  std::vector<FamilyInfo> families;
  friend bool operator==(const Welcome&, const Welcome&) = default;
};

struct Reject {  // either way, then the connection closes
  RejectCode code = RejectCode::kProtocol;
  std::string reason;
  friend bool operator==(const Reject&, const Reject&) = default;
};

struct Batch {         // M -> F: one master WriteBatch, applied atomically
  uint64_t seq = 0;    // sequence of the first op
  uint64_t count = 0;  // sequence numbers the batch consumes (>= ops.size())
  std::vector<Op> ops;
  friend bool operator==(const Batch&, const Batch&) = default;
};
// The memory a batch holds, roughly: what stream windows and backlogs count.
size_t BatchBytes(const Batch& batch);
// The last sequence number the batch consumes. A batch on the stream consumes
// at least one (a count of 0, from an older peer, is read as 1).
inline uint64_t LastSeq(uint64_t seq, uint64_t count) { return seq + (count == 0 ? 1 : count) - 1; }
inline uint64_t LastSeq(const Batch& batch) { return LastSeq(batch.seq, batch.count); }

// M -> F: one piece of a batch whose frame would be too large. The parts of a
// batch come in order, nothing else between them but the PutStart and
// ValuePart frames of its large puts; the follower applies the batch
// atomically when the part marked `last` arrives.
struct BatchPart {
  uint64_t seq = 0;    // the batch's first sequence, the same in every part
  uint64_t count = 0;  // the same in every part
  // The lengths of every key and value of the whole batch added up, the same
  // in every part: the follower reserves its write once (and checks it).
  uint64_t bytes = 0;
  std::vector<Op> ops;  // the batch's next ops, each whole
  bool last = false;
  friend bool operator==(const BatchPart&, const BatchPart&) = default;
};

// Where a put sent in pieces belongs.
enum class PutContext : uint8_t {
  kBatch = 1,      // the batch whose parts are arriving: after its last part's ops
  kRepair = 2,     // the running diff: one repair, applied alone
  kBootstrap = 3,  // the bootstrap: one entry, applied alone
};

// M -> F: a put whose value is too large for one frame; ValuePart frames with
// exactly value_size bytes in all follow at once.
struct PutStart {
  PutContext context = PutContext::kBatch;
  uint64_t id = 0;  // kBatch: the batch's seq; kRepair: the sync_id; kBootstrap: the snapshot's seq
  FamilyTag family = 0;
  std::string key;
  uint64_t value_size = 0;  // 1..2^32-1 (RocksDB's limit on a value)
  friend bool operator==(const PutStart&, const PutStart&) = default;
};

struct ValuePart {   // M -> F: the next bytes of the value a PutStart began
  std::string data;  // not empty
  friend bool operator==(const ValuePart&, const ValuePart&) = default;
};

struct SyncRequest {  // F -> M: please diff
  friend bool operator==(const SyncRequest&, const SyncRequest&) = default;
};

struct SyncStart {  // M -> F, at a stream position: both sides snapshot here
  uint64_t sync_id = 0;
  uint64_t seq = 0;  // the last stream sequence before this frame
  uint64_t salt = 0;
  uint8_t hash_bytes = 0;  // width of truncated hashes in summaries, 1..8
  Hash128 root;            // master's root hash
  uint64_t key_count = 0;  // master's key count
  friend bool operator==(const SyncStart&, const SyncStart&) = default;
};

struct SyncRoot {  // F -> M
  uint64_t sync_id = 0;
  Hash128 root;
  uint64_t key_count = 0;
  bool equal = false;      // root == master's: nothing more follows
  NodeSummary top;         // !equal: summary of the empty prefix
  uint8_t hash_bytes = 8;  // width of the truncated hashes in `top`, 1..8 (SyncStart's)
  friend bool operator==(const SyncRoot&, const SyncRoot&) = default;
};

// M -> F: about these prefixes, please. With `summaries` (one per path, the
// master's children there: kEmpty, kInner or kFolded) the follower compares
// and answers what differs (kDetails); without, its summary of each path.
struct NodesRequest {
  uint64_t sync_id = 0;
  std::vector<std::string> paths;      // digit strings, at most 16 digits
  std::vector<NodeSummary> summaries;  // empty, or one per path
  uint8_t hash_bytes = 8;              // width of the truncated hashes in `summaries`, 1..8
  friend bool operator==(const NodesRequest&, const NodesRequest&) = default;
};

struct Nodes {  // F -> M: one summary (or kDetails answer) per requested path, same order
  uint64_t sync_id = 0;
  std::vector<NodeSummary> summaries;
  uint8_t hash_bytes = 8;  // width of the truncated hashes in `summaries`, 1..8 (SyncStart's)
  friend bool operator==(const Nodes&, const Nodes&) = default;
};

struct Repair {  // M -> F: writes that make the follower equal, in stream order
  uint64_t sync_id = 0;
  std::vector<Op> ops;                     // kPut or kDelete
  std::vector<Hash128> delete_key_hashes;  // keys only the follower has
  friend bool operator==(const Repair&, const Repair&) = default;
};

struct SyncDone {  // M -> F: the diff is over
  uint64_t sync_id = 0;
  uint64_t repaired = 0;  // keys in the Repair frames of this sync
  bool retry = false;     // a truncated-hash collision hid a difference: a new sync follows
  friend bool operator==(const SyncDone&, const SyncDone&) = default;
};

struct BootstrapChunk {     // M -> F: a snapshot streamed in key order
  uint64_t seq = 0;         // snapshot sequence; the stream continues after it
  std::vector<Op> entries;  // kPut, ascending (family, key)
  bool last = false;
  friend bool operator==(const BootstrapChunk&, const BootstrapChunk&) = default;
};

struct Ping {  // M -> F
  uint64_t master_seq = 0;
  uint64_t master_time_ms = 0;
  friend bool operator==(const Ping&, const Ping&) = default;
};

struct Pong {  // F -> M
  uint64_t applied_seq = 0;
  uint64_t echo_time_ms = 0;  // the Ping's master_time_ms
  friend bool operator==(const Pong&, const Pong&) = default;
};

struct Write {      // writer -> M: ops the master commits as one atomic batch
  uint64_t id = 0;  // echoed in the WriteAck
  std::vector<Op> ops;
  friend bool operator==(const Write&, const Write&) = default;
};

struct WriteAck {  // M -> writer, one per Write, in order
  uint64_t id = 0;
  // The write is committed at or before this master sequence: a follower whose
  // applied sequence reaches it holds the write. 0 when the write failed.
  uint64_t seq = 0;
  std::string error;  // empty: committed; else why nothing was written
  friend bool operator==(const WriteAck&, const WriteAck&) = default;
};

// M -> cloner: a piece of one file of a consistent copy of the master's
// database. Files come one after another, each in order from offset 0; a file
// ends when offset + data.size() reaches file_size (an empty file is one
// chunk with no data).
struct FileChunk {
  std::string name;        // a plain file name ("000012.sst"), no directory
  uint64_t file_size = 0;  // the whole file
  uint64_t offset = 0;     // where `data` starts in the file
  std::string data;
  uint64_t data_hash = 0;  // XXH3-64 of data (DataHash64 in engine/hash.h)
  bool last = false;       // the last chunk of the last file: the copy is whole
  friend bool operator==(const FileChunk&, const FileChunk&) = default;
};

// M -> auditor: the outcome of the self-audit it asked for (the master's tree
// checked against its database at one sequence); then the master closes.
struct AuditReport {
  uint64_t seq = 0;         // the sequence the tree and the data were compared at
  uint64_t keys = 0;        // keys scanned
  uint64_t mismatches = 0;  // keys whose tree entry differed from the data (now corrected)
  // The first few of them, printable ("family:key", other bytes escaped):
  // at most wire::kMaxAuditExamples, each at most wire::kMaxAuditExampleBytes.
  std::vector<std::string> examples;
  uint64_t micros = 0;  // how long the audit took
  std::string error;    // empty: the audit ran; else why it could not (the rest is 0)
  friend bool operator==(const AuditReport&, const AuditReport&) = default;
};

// A name a FileChunk may carry: 1..255 bytes, no '/' or NUL, not "." or "..",
// so that it names a file inside the directory the copy is written to.
bool IsPlainFileName(std::string_view name);

using Message =
    std::variant<Hello, Challenge, Auth, Welcome, Reject, Batch, SyncRequest, SyncStart, SyncRoot,
                 NodesRequest, Nodes, Repair, SyncDone, BootstrapChunk, Ping, Pong, Write, WriteAck,
                 FileChunk, BatchPart, PutStart, ValuePart, AuditReport>;

// M is one of Message's alternatives.
template <typename M, typename V = Message>
struct IsMessageAlternative;
template <typename M, typename... Alternatives>
struct IsMessageAlternative<M, std::variant<Alternatives...>>
    : std::bool_constant<(std::is_same_v<M, Alternatives> || ...)> {};
template <typename M>
concept MessageAlternative = IsMessageAlternative<M>::value;

// Human-readable message name, for errors and logs.
const char* MessageName(const Message& m);
// "follower", "inspector", "writer", "cloner" or "auditor", for logs.
const char* RoleName(Role role);

}  // namespace sdiff
