// Sample messages for the wire tests and the fuzzer's seeds.
#include "test/wire_samples.h"

#include <cstdint>
#include <limits>

#include "engine/wire.h"

namespace sdiff::wire {

using namespace std::string_literals;

namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

std::string AllByteValues(size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>(i * 37));  // starts with NUL
  return s;
}

}  // namespace

NodeSummary SampleInner(int count, int hash_bytes) {
  NodeSummary s;
  s.kind = NodeSummary::Kind::kInner;
  uint64_t mask = hash_bytes == 8 ? kMax : (uint64_t{1} << (8 * hash_bytes)) - 1;
  for (int i = 0; i < count; ++i) {
    s.digits.push_back(static_cast<uint8_t>(count == 256 ? i : (i * 255) / std::max(count - 1, 1)));
    s.hashes.push_back((0x0123456789abcdefULL * (i + 1)) & mask);
  }
  if (count > 0) s.hashes[0] = mask;  // the widest value the width allows
  return s;
}

std::vector<Message> SampleMessages() {
  std::vector<Message> out;
  out.push_back(Hello{.min_version = 1,
                      .max_version = 255,
                      .role = Role::kWriter,
                      .client_nonce = AllByteValues(32),
                      .master_id = "",
                      .applied_seq = kMax,
                      .key_count = 123456789,
                      .bootstrapping = true,
                      .bootstrap_family = 65535,
                      .bootstrap_key = "k\0ey\xff"s});
  out.push_back(Hello{.min_version = 1,
                      .max_version = 1,
                      .role = Role::kAuditor,
                      .client_nonce = AllByteValues(64),
                      .master_id = {},
                      .bootstrap_key = {}});
  out.push_back(Challenge{.version = 1, .server_nonce = AllByteValues(64), .server_proof = ""});
  out.push_back(Auth{.client_proof = AllByteValues(32)});
  out.push_back(Auth{});
  out.push_back(Welcome{.master_id = "2c1f0b7e-7d1e-4f6b-9a51-5d2b9e0c4a11",
                        .master_seq = kMax,
                        .mode = StartMode::kResume,
                        .resume_from = uint64_t{1} << 63,
                        .families = {{0, "default"}, {65535, "\0cf"s}, {7, ""}}});
  out.push_back(Welcome{.master_id = {}, .mode = StartMode::kBootstrap, .families = {}});
  out.push_back(Reject{.code = RejectCode::kInternal, .reason = "queue full:\n\0 too slow"s});
  out.push_back(Batch{.seq = kMax - 2,
                      .count = 3,
                      .ops = {{OpKind::kPut, 0, "a", "v\0"s},
                              {OpKind::kDelete, 1, "", ""},
                              {OpKind::kDeleteRange, 65535, "a\0"s, "z\xff"s}}});
  out.push_back(Batch{.seq = 1, .count = 0, .ops = {}});
  out.push_back(SyncRequest{});
  out.push_back(SyncStart{.sync_id = 7,
                          .seq = kMax,
                          .salt = 0xdeadbeefcafebabeULL,
                          .hash_bytes = 3,
                          .root = {kMax, 1},
                          .key_count = 1000000});
  out.push_back(SyncRoot{.sync_id = kMax,
                         .root = {0x0011223344556677ULL, 0x8899aabbccddeeffULL},
                         .key_count = 2,
                         .equal = false,
                         .top = SampleInner(256, 8),
                         .hash_bytes = 8});
  out.push_back(SyncRoot{.sync_id = 1, .root = {}, .equal = true, .top = {}, .hash_bytes = 1});
  out.push_back(NodesRequest{.sync_id = 3,
                             .paths = {"", "\0"s, std::string(16, '\xff'), "\xff\0\x80"s},
                             .summaries = {},
                             .hash_bytes = 8});
  NodeSummary leaf;
  leaf.kind = NodeSummary::Kind::kLeaf;
  leaf.key_hash = {1, 2};
  leaf.leaf_hash = {kMax, 0};
  NodeSummary folded;
  folded.kind = NodeSummary::Kind::kFolded;
  for (uint64_t i = 0; i < 64; ++i) folded.hashes.push_back((i * 0x9e37) & 0xffff);
  NodeSummary leaves;
  leaves.kind = NodeSummary::Kind::kLeaves;
  leaves.key_hashes = {{1, 2}, {3, 4}, {kMax, kMax}};
  leaves.leaf_hashes = {{5, 6}, {0, 0}, {kMax, 1}};
  NodeSummary sums;
  sums.kind = NodeSummary::Kind::kSums;
  sums.leaf_count = 64;
  sums.key_hash = {7, kMax};
  sums.leaf_hash = {0, 9};
  sums.check = {kMax, 3};
  NodeSummary details;
  details.kind = NodeSummary::Kind::kDetails;
  details.digits = {0, 7, 9, 255};
  details.details = {NodeSummary{}, leaf, sums, SampleInner(3, 2)};
  NodeSummary no_details;
  no_details.kind = NodeSummary::Kind::kDetails;
  out.push_back(NodesRequest{.sync_id = 4,
                             .paths = {"", "\x01"s, "\x02\x03"s},
                             .summaries = {folded, SampleInner(3, 2), NodeSummary{}},
                             .hash_bytes = 2});
  out.push_back(Nodes{
      .sync_id = 3,
      .summaries = {NodeSummary{}, leaf, SampleInner(3, 2), SampleInner(32, 2), SampleInner(33, 2),
                    SampleInner(1, 2), folded, leaves, details, no_details},
      .hash_bytes = 2});
  out.push_back(Nodes{.sync_id = 4, .summaries = {SampleInner(256, 1)}, .hash_bytes = 1});
  out.push_back(Repair{
      .sync_id = 3,
      .ops = {{OpKind::kPut, 2, "key", std::string(300, 'v')}, {OpKind::kDelete, 2, "gone", ""}},
      .delete_key_hashes = {{kMax, kMax}, {0, 0}}});
  out.push_back(SyncDone{.sync_id = kMax, .repaired = 42, .retry = true});
  out.push_back(BootstrapChunk{
      .seq = 99,
      .entries = {{OpKind::kPut, 0, "a", AllByteValues(200)}, {OpKind::kPut, 0, "b", ""}},
      .last = true});
  out.push_back(Ping{.master_seq = kMax, .master_time_ms = 1700000000000});
  out.push_back(Pong{.applied_seq = 0, .echo_time_ms = kMax});
  out.push_back(Write{.id = 7,
                      .ops = {{OpKind::kPut, 1, AllByteValues(3), "v"},
                              {OpKind::kDelete, 0, "gone", ""},
                              {OpKind::kDeleteRange, 0, "a", "m"}}});
  out.push_back(WriteAck{.id = kMax, .seq = 12, .error = ""});
  out.push_back(WriteAck{.id = 1, .seq = 0, .error = "IO error: disk full"});
  out.push_back(FileChunk{.name = "000012.sst",
                          .file_size = kMax,
                          .offset = kMax - 300,
                          .data = AllByteValues(300),
                          .data_hash = 0x8899aabbccddeeffULL,
                          .last = false});
  out.push_back(FileChunk{.name = std::string(255, '\xff'),
                          .file_size = 0,
                          .offset = 0,
                          .data = "",
                          .data_hash = kMax,
                          .last = true});
  out.push_back(BatchPart{
      .seq = kMax - 3,
      .count = 4,
      .bytes = 1 << 30,
      .ops = {{OpKind::kPut, 2, "k", AllByteValues(100)}, {OpKind::kDeleteRange, 0, "a", "z"}},
      .last = false});
  out.push_back(BatchPart{.seq = 5, .count = 1, .bytes = 0, .ops = {}, .last = true});
  out.push_back(PutStart{.context = PutContext::kBatch,
                         .id = 7,
                         .family = 65535,
                         .key = AllByteValues(5),
                         .value_size = kMaxValueBytes});
  out.push_back(PutStart{
      .context = PutContext::kBootstrap, .id = kMax, .family = 0, .key = "", .value_size = 1});
  out.push_back(ValuePart{.data = AllByteValues(300)});
  out.push_back(
      AuditReport{.seq = kMax,
                  .keys = 1000000,
                  .mismatches = 3,
                  .examples = {"default:k\\x00", std::string(kMaxAuditExampleBytes, 'e'), ""},
                  .micros = 1234567,
                  .error = ""});
  AuditReport failed;
  failed.error = "Aborted: the scan was cancelled\n\0"s;
  out.push_back(failed);
  return out;
}

std::string FrameOf(const Message& m) {
  std::string out;
  AppendFrame(m, &out);
  return out;
}

}  // namespace sdiff::wire
