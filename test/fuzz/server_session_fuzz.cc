// libFuzzer target for ServerSession, the master's side of a connection, in
// every role it serves (follower, inspector, writer, cloner, auditor). The
// input is a script: the peer sends a well-formed message that fits the
// conversation (Hello, Auth, the answers a diff asks for, Pongs, Writes), a
// sample message of any type, mutated or not, or raw bytes; the clock
// advances; the master commits a batch, asks for a diff, finishes an audit or
// closes. The peer answers a diff from a tree of its own, so scripts reach
// repairs, bootstraps and file copies, not just the handshake. The session's
// database requests are answered at once or steps later, or never (it closes
// first).
//
// Invariants (test/fuzz/fuzz_support.h, and below): every frame sent decodes;
// a close is final and, unless clean, carries a reason and ends in a Reject;
// the input buffer stays within wire.h's bound, and one TakeOutput within
// bulk_frame_bytes plus the frames the step's input and ticks called for;
// one database request out at a time.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/server_session.h"
#include "engine/sync.h"
#include "engine/testing/fake_authenticator.h"
#include "engine/testing/memory_replica.h"
#include "test/fuzz/fuzz_support.h"

namespace sdiff::fuzz {
namespace {

using testing::FakeAuthenticator;
using testing::MemoryMaster;

// A few small files for cloners, read from a pattern; `fail_at` makes one
// read fail, `shrink` makes a file shorter than it said.
class FakeFiles : public FileSource {
 public:
  FakeFiles(std::vector<File> files, int fail_at, bool shrink)
      : files_(std::move(files)), fail_at_(fail_at), shrink_(shrink) {}
  const std::vector<File>& files() const override { return files_; }
  Status Read(size_t index, uint64_t offset, size_t max_bytes, std::string* out) override {
    if (reads_++ == fail_at_) return Status::IOError("fake read failure");
    uint64_t size = files_[index].size - (shrink_ && index == 0 ? 1 : 0);
    size_t n = static_cast<size_t>(std::min<uint64_t>(max_bytes, size - std::min(size, offset)));
    out->assign(n, static_cast<char>('0' + index));
    return Status::OK();
  }

 private:
  std::vector<File> files_;
  int fail_at_;
  bool shrink_;
  int reads_ = 0;
};

class ServerFuzz {
 public:
  explicit ServerFuzz(FuzzedDataProvider& in) : in_(in), master_("master-1") {}

  void Run() {
    Setup();
    for (int step = 0; step < kMaxSteps && in_.remaining_bytes() > 0; ++step) {
      Step();
      if (watch_.was_closed() && in_.ConsumeBool()) break;
    }
  }

 private:
  void Setup() {
    int keys = in_.ConsumeIntegralInRange<int>(0, 40);
    for (int i = 0; i < keys; ++i) {
      master_.Write({Op{OpKind::kPut, static_cast<FamilyTag>(i % 3), "k" + std::to_string(i),
                        SomeValue(in_)}});
    }
    // The peer's tree: the master's, with some keys changed, dropped or added.
    for (const auto& [fk, value] : master_.data()) {
      int what = in_.ConsumeIntegralInRange<int>(0, 3);
      if (what == 0) continue;
      (void)peer_tree_.Put(fk.first, fk.second, what == 1 ? value + "x" : value);
    }
    for (int i = in_.ConsumeIntegralInRange<int>(0, 4); i > 0; --i) {
      (void)peer_tree_.Put(0, "extra" + std::to_string(i), "v");
    }
    ServerOptions options = master_.Options();
    options.hash_bytes = in_.ConsumeIntegralInRange<uint8_t>(1, 8);
    const size_t kBulk[] = {64, 512, 4096, size_t{1} << 20};
    options.bulk_frame_bytes = kBulk[in_.ConsumeIntegralInRange<int>(0, 3)];
    options.file_chunk_bytes = in_.ConsumeIntegralInRange<size_t>(0, 300);
    const size_t kMaxFrame[] = {wire::kDefaultMaxFrame, 1 << 16, 2048};
    options.max_frame = kMaxFrame[in_.ConsumeIntegralInRange<int>(0, 2)];
    options.bootstrap_min_keys = in_.ConsumeIntegralInRange<uint64_t>(0, 20);
    options.ping_interval_ms = in_.ConsumeIntegralInRange<int64_t>(1, 2000);
    options.idle_timeout_ms = in_.ConsumeIntegralInRange<int64_t>(1, 20000);
    options.max_sync_retries = in_.ConsumeIntegralInRange<int>(0, 3);
    options.diff_on_connect = in_.ConsumeBool();
    if (in_.ConsumeBool()) options.authenticator = &auth_;
    bulk_ = options.bulk_frame_bytes;
    max_frame_ = options.max_frame;

    MasterHooks hooks = master_.Hooks(&rng_);
    if (in_.ConsumeBool()) {
      hooks.write = [this](const std::vector<Op>& ops, uint64_t* seq) {
        if (fail_writes_) return Status::IOError("fake write failure");
        const Batch& batch = master_.Write(ops);
        *seq = LastSeq(batch);
        pending_batches_.push_back(batch);
        return Status::OK();
      };
    }
    if (in_.ConsumeBool()) {
      std::vector<FileSource::File> files(in_.ConsumeIntegralInRange<size_t>(0, 3));
      for (size_t i = 0; i < files.size(); ++i) {
        files[i].name = in_.ConsumeBool() ? "00" + std::to_string(i) + ".sst" : "../x";
        files[i].size = in_.ConsumeIntegralInRange<uint64_t>(0, 700);
      }
      int fail_at = in_.ConsumeIntegralInRange<int>(-1, 6);
      bool shrink = in_.ConsumeBool();
      bool refuse = in_.ConsumeBool();
      hooks.open_files = [files, fail_at, shrink, refuse](std::unique_ptr<FileSource>* out) {
        if (refuse) return Status::InvalidArgument("fake: files would not reproduce the db");
        *out = std::make_unique<FakeFiles>(files, fail_at, shrink);
        return Status::OK();
      };
    }
    if (in_.ConsumeBool()) {
      hooks.audit = [](AuditReport*) { return Status::OK(); };  // never called by the session
    }
    has_writer_ = static_cast<bool>(hooks.write);
    hooks_ = hooks;
    session_ = std::make_unique<ServerSession>(options, std::move(hooks));
  }

  void Step() {
    input_bytes_ = 0;
    ticks_ = 0;
    switch (in_.ConsumeIntegralInRange<int>(0, 15)) {
      case 0:
        SendHello();
        break;
      case 1:
        SendAuth();
        break;
      case 2:
        AnswerSyncStart();
        break;
      case 3:
        AnswerNodesRequest();
        break;
      case 4:
        Deliver(Frame(Pong{in_.ConsumeIntegral<uint64_t>(), 0}));
        break;
      case 5:
        Deliver(Frame(SyncRequest{}));
        break;
      case 6:
        Deliver(Frame(Write{in_.ConsumeIntegralInRange<uint64_t>(0, 9), SomeOps(in_)}));
        break;
      case 7:
        Deliver(SampleFrame(in_));
        break;
      case 8:
        Deliver(in_.ConsumeBytesAsString(in_.ConsumeIntegralInRange<size_t>(0, 64)));
        break;
      case 9:
      case 10:
        now_ms_ += in_.ConsumeIntegralInRange<int64_t>(0, 25000);
        ++ticks_;
        session_->OnTick(now_ms_);
        break;
      case 11: {
        const Batch& batch = master_.Write(SomeOps(in_));
        session_->OnBatch(std::make_shared<const Batch>(batch));
        ++batches_fed_;
        break;
      }
      case 12:
        session_->RequestSync();
        break;
      case 13:
        if (snapshot_wanted_) {
          snapshot_wanted_ = false;
          // Now and then as after a rebuild: the tree ahead of the stream.
          uint64_t jump = in_.ConsumeBool() ? master_.seq() + in_.ConsumeIntegral<uint8_t>() : 0;
          session_->StartSync(master_.tree().Snapshot(), jump);
        } else {
          fail_writes_ = !fail_writes_;
        }
        break;
      case 14:
        if (audit_wanted_) {
          audit_wanted_ = false;
          AuditReport report;
          report.keys = master_.tree().size();
          report.examples.assign(in_.ConsumeIntegralInRange<size_t>(0, 40), std::string(1500, 'e'));
          session_->OnAuditDone(in_.ConsumeBool() ? Status::OK() : Status::IOError("fake"),
                                std::move(report));
        } else {
          session_->OnAuditDone(Status::OK(), AuditReport{});  // not asked for: ignored
        }
        break;
      case 15:
        session_->Close("fuzz: local close");
        break;
    }
    Embed();
    Drain(in_.ConsumeIntegralInRange<int>(0, 3));
    if (session_->closed()) Drain(1 << 30);
    watch_.Step(session_->closed(), session_->error(), step_output_, clean_end_ok(),
                "follower closed the session: ");
    step_output_.clear();
    // wire.h's bound for FrameReader::buffer_capacity().
    Check(session_->input_buffer_bytes() <= 4 * (session_->max_frame() + 4) + 2 * kMaxDelivery,
          "the input buffer grew past its bound");
    Check(session_->batches_held() <= batches_fed_ + pending_batches_.size(),
          "more batches held than were fed");
  }

  // An OK close is a finished copy or audit; nothing else.
  bool clean_end_ok() const {
    return session_->peer_role() == Role::kCloner || session_->peer_role() == Role::kAuditor;
  }

  // The embedder's side: the stream, snapshots, audits, as net/ does them.
  void Embed() {
    while (auto event = session_->PollEvent()) {
      Check(!closed_event_, "an event after kClosed");
      switch (event->kind) {
        case ServerEvent::Kind::kStreamFrom:
          for (const Batch* batch : master_.LogFrom(event->seq)) {
            session_->OnBatch(*batch);
            ++batches_fed_;
          }
          break;
        case ServerEvent::Kind::kWantSnapshot:
          snapshot_wanted_ = true;
          break;
        case ServerEvent::Kind::kRunAudit:
          audit_wanted_ = true;
          break;
        case ServerEvent::Kind::kSyncDone:
          break;
        case ServerEvent::Kind::kClosed:
          closed_event_ = true;
          Check(session_->closed(), "kClosed from an open session");
          break;
      }
    }
    // Its database work, answered now or in a later step (the database
    // worker is slow), possibly after the session closed.
    if (auto request = session_->PollDbRequest()) {
      Check(!held_request_, "a database request while another is out");
      held_request_ = std::move(*request);
    }
    while (held_request_ && in_.ConsumeBool()) {
      DbAnswer answer = ServeDbRequest(hooks_, std::move(*held_request_));
      held_request_.reset();
      session_->OnDbAnswer(std::move(answer));
      if (auto request = session_->PollDbRequest()) held_request_ = std::move(*request);
    }
    // Writes the session committed reach it by the stream, as in the plugin.
    for (const Batch& batch : pending_batches_) {
      session_->OnBatch(batch);
      ++batches_fed_;
    }
    pending_batches_.clear();
  }

  // Takes output up to `takes` times (fewer: the connection has no room).
  // Each take is within bulk_frame_bytes, plus the largest frame the session
  // makes (a FileChunk, a Batch of at most bulk_frame_bytes), plus the
  // control frames this step's input and ticks asked for: at most 1024 bytes
  // of answer per byte received (a folded summary of 34 bytes can name all
  // 256 children, each probed with a path and our summary of up to 64
  // one-byte hashes) and a Ping per tick.
  // WriteAcks answer writes committed since, and are not counted.
  void Drain(int takes) {
    for (int i = 0; i < takes && session_->wants_write(); ++i) {
      std::string out = session_->TakeOutput();
      size_t bound = 2 * bulk_ + (128 << 10) + 1024 * input_bytes_ + 64 * ticks_;
      size_t acks = 0;
      std::vector<Message> messages = DecodeOutput(out);
      for (const Message& m : messages) {
        if (const auto* ack = std::get_if<WriteAck>(&m)) acks += Frame(*ack).size();
      }
      Check(out.size() - acks <= bound, "TakeOutput returned more than its bound");
      input_bytes_ = ticks_ = 0;
      for (Message& m : messages) Observe(m);
    }
  }

  // Remembers what the peer must answer.
  void Observe(Message& m) {
    if (auto* c = std::get_if<Challenge>(&m)) server_nonce_ = c->server_nonce;
    if (auto* s = std::get_if<SyncStart>(&m)) sync_starts_.push_back(*s);
    if (auto* r = std::get_if<NodesRequest>(&m)) requests_.push_back(*r);
    if (auto* c = std::get_if<FileChunk>(&m)) {
      Check(c->data_hash == DataHash64(c->data), "a FileChunk whose hash does not match");
      Check(IsPlainFileName(c->name), "a FileChunk with a name that is not plain");
    }
    step_output_.push_back(std::move(m));
  }

  template <typename M>
  static std::string Frame(const M& m) {
    std::string out;
    wire::AppendFrame(m, &out);
    return out;
  }

  // Hands `bytes` to the session, in one call or split in two.
  void Deliver(std::string bytes) {
    if (bytes.size() > kMaxDelivery) bytes.resize(kMaxDelivery);
    if (in_.ConsumeIntegralInRange<int>(0, 7) == 0) Mutate(in_, &bytes);
    input_bytes_ += bytes.size();
    size_t split = in_.ConsumeIntegralInRange<size_t>(0, bytes.size());
    session_->OnBytes(std::string_view(bytes).substr(0, split));
    session_->OnBytes(std::string_view(bytes).substr(split));
  }

  void SendHello() {
    Hello hello;
    hello.min_version = in_.ConsumeBool() ? wire::kProtocolVersion : in_.ConsumeIntegral<uint8_t>();
    hello.max_version = in_.ConsumeBool() ? wire::kProtocolVersion : in_.ConsumeIntegral<uint8_t>();
    hello.role = static_cast<Role>(in_.ConsumeIntegralInRange<int>(1, 5));
    if (!has_writer_ && hello.role == Role::kWriter && in_.ConsumeBool())
      hello.role = Role::kFollower;
    client_nonce_.assign(in_.ConsumeBool() ? 32 : in_.ConsumeIntegralInRange<size_t>(0, 40), 'n');
    hello.client_nonce = client_nonce_;
    hello.master_id = in_.ConsumeBool() ? master_.id() : "other";
    uint64_t back = in_.ConsumeIntegralInRange<uint64_t>(0, 3);
    hello.applied_seq = in_.ConsumeBool() ? master_.seq() - std::min(master_.seq(), back)
                                          : in_.ConsumeIntegral<uint64_t>();
    hello.key_count = in_.ConsumeBool() ? 0 : peer_tree_.size();
    hello.bootstrapping = in_.ConsumeBool();
    hello.bootstrap_family = in_.ConsumeIntegralInRange<FamilyTag>(0, 2);
    hello.bootstrap_key = SmallKey(in_);
    Deliver(Frame(hello));
  }

  void SendAuth() {
    Auth auth;
    switch (in_.ConsumeIntegralInRange<int>(0, 2)) {
      case 0:
        auth.client_proof = auth_.Sign(FollowerProofMessage(client_nonce_, server_nonce_));
        break;
      case 1:
        auth.client_proof = auth_.Sign(MasterProofMessage(client_nonce_, server_nonce_));
        break;
      case 2:
        break;
    }
    Deliver(Frame(auth));
  }

  // The peer's SyncRoot, from its own tree, with a field now and then wrong.
  void AnswerSyncStart() {
    if (sync_starts_.empty()) return Deliver(SampleFrame(in_));
    SyncStart start = sync_starts_.front();
    sync_starts_.pop_front();
    sync_ = start;
    SyncRoot root;
    root.sync_id = start.sync_id + (in_.ConsumeIntegralInRange<int>(0, 7) == 0 ? 1 : 0);
    TreeView view = peer_tree_.Snapshot();
    root.root = view.root_hash();
    root.key_count = view.size();
    root.equal = root.root == start.root || in_.ConsumeIntegralInRange<int>(0, 7) == 0;
    root.hash_bytes = in_.ConsumeIntegralInRange<int>(0, 7) == 0
                          ? in_.ConsumeIntegralInRange<uint8_t>(1, 8)
                          : start.hash_bytes;
    if (!root.equal) root.top = Summarize(view, "", start.salt, root.hash_bytes);
    Deliver(Frame(root));
  }

  // The peer's Nodes for the oldest request, from its own tree; now and then
  // with a summary too few or of the wrong width.
  void AnswerNodesRequest() {
    if (requests_.empty()) return Deliver(SampleFrame(in_));
    NodesRequest request = std::move(requests_.front());
    requests_.pop_front();
    Nodes nodes;
    nodes.sync_id = request.sync_id;
    nodes.hash_bytes = sync_.hash_bytes;
    if (in_.ConsumeIntegralInRange<int>(0, 7) == 0) {
      nodes.hash_bytes = in_.ConsumeIntegralInRange<uint8_t>(1, 8);
    }
    TreeView view = peer_tree_.Snapshot();
    bool answer_probes = !request.summaries.empty() && in_.ConsumeBool();
    for (size_t i = 0; i < request.paths.size(); ++i) {
      NodeSummary summary;
      if (!answer_probes || !AnswerProbe(view, request.paths[i], request.summaries[i], sync_.salt,
                                         nodes.hash_bytes, &summary)
                                 .ok()) {
        summary = Summarize(view, request.paths[i], sync_.salt, nodes.hash_bytes);
      }
      nodes.summaries.push_back(std::move(summary));
    }
    if (!nodes.summaries.empty() && in_.ConsumeIntegralInRange<int>(0, 7) == 0) {
      nodes.summaries.pop_back();
    }
    Deliver(Frame(nodes));
  }

  FuzzedDataProvider& in_;
  std::mt19937_64 rng_{1};
  MemoryMaster master_;
  MerkleTree peer_tree_;
  FakeAuthenticator auth_{"fuzz secret"};
  MasterHooks hooks_;                      // the session's, to serve its requests
  std::optional<DbRequest> held_request_;  // made, not yet answered
  std::unique_ptr<ServerSession> session_;
  size_t bulk_ = 0;
  size_t max_frame_ = 0;
  bool has_writer_ = false;
  bool fail_writes_ = false;
  int64_t now_ms_ = 0;
  size_t input_bytes_ = 0;  // since the last take
  size_t ticks_ = 0;
  size_t batches_fed_ = 0;
  std::vector<Batch> pending_batches_;  // committed by writers, not yet fed
  bool snapshot_wanted_ = false;
  bool audit_wanted_ = false;
  bool closed_event_ = false;
  std::string client_nonce_;
  std::string server_nonce_;
  std::deque<SyncStart> sync_starts_;
  SyncStart sync_;
  std::deque<NodesRequest> requests_;
  std::vector<Message> step_output_;
  CloseWatch watch_;
};

}  // namespace
}  // namespace sdiff::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  sdiff::fuzz::ServerFuzz(in).Run();
  return 0;
}
