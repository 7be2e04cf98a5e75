// The follower's protocol state machine. State transitions live in Handle():
//
//   state            message         -> action
//   kIdle            (Start)         -> Hello                        -> kAwaitChallenge
//   kAwaitChallenge  Challenge       -> check master's proof, Auth   -> kAwaitWelcome
//   kAwaitWelcome    Welcome         -> resume | await diff | bootstrap -> kStreaming
//   kStreaming       Batch           -> apply atomically (consecutive ones together)
//                    SyncStart       -> snapshot, SyncRoot
//                    NodesRequest    -> Nodes from the snapshot: what differs from
//                                       the master's summaries, or our own summaries
//                    Repair          -> apply, minus keys streamed since the snapshot
//                    SyncDone        -> consistent (or await the retry)
//                    BootstrapChunk  -> apply, minus keys streamed since it began
//                    BatchPart       -> stage; the last one applies the batch (kBatch)
//                    PutStart        -> stage a put whose value follows: in a batch
//                                       (kBatch), a repair (kRepairPut), a bootstrap
//                                       entry (kBootstrapPut)
//                    Ping            -> Pong
//                    (end of OnBytes) -> Pong with the applied sequence, if it moved
//   kStreaming, assembling a write in pieces (nothing else may come between):
//     kBatch         BatchPart of the batch, PutStart of a put in it, ValuePart
//     kRepairPut, kBootstrapPut   ValuePart; the last one applies the put
//   any              Reject          -> closed
//   anything else is a protocol error: Reject, closed.
#include "engine/client_session.h"

#include <algorithm>

#include "engine/client_handshake.h"
#include "engine/sync.h"
#include "engine/wire.h"

namespace sdiff {
namespace {

// Without a stage hook: the pieces gathered as ops, written whole.
class GatheredWrite : public StagedWrite {
 public:
  Status AddOps(std::vector<Op>& ops) override {
    for (Op& op : ops) ops_.push_back(std::move(op));
    return Status::OK();
  }
  Status StartPut(FamilyTag family, std::string_view key, uint64_t) override {
    ops_.push_back(Op{OpKind::kPut, family, std::string(key), {}});
    return Status::OK();
  }
  Status AddValue(std::string_view data) override {
    ops_.back().value.append(data);
    return Status::OK();
  }
  std::vector<Op>* ops() { return &ops_; }

 private:
  std::vector<Op> ops_;
};

const std::vector<Op> kNoOps;

// More than a master could hold in one write batch: a BatchPart announcing
// more is malformed, not large.
constexpr uint64_t kMaxBatchBytes = uint64_t{1} << 40;

std::string KeyHashPath(const Hash128& key_hash) {
  uint8_t bytes[16];
  key_hash.ToBytes(bytes);
  return std::string(reinterpret_cast<const char*>(bytes), sizeof(bytes));
}

}  // namespace

ClientSession::ClientSession(ClientOptions options, FollowerHooks hooks, FollowerState state)
    : options_(std::move(options)),
      hooks_(std::move(hooks)),
      reader_(options_.max_frame),
      persisted_(std::move(state)) {}

void ClientSession::Start() {
  if (state_ != State::kIdle) return;
  Hello hello = ClientHello(options_.role, hooks_.random_bytes, &client_nonce_);
  hello.master_id = persisted_.master_id;
  hello.applied_seq = persisted_.applied_seq;
  hello.key_count = hooks_.key_count ? hooks_.key_count() : hooks_.snapshot().size();
  hello.bootstrapping = persisted_.bootstrapping;
  hello.bootstrap_family = persisted_.bootstrap_family;
  // A longer key goes as its prefix: the master resumes there and re-sends a
  // few keys we have, rather than the Hello outgrowing the handshake's limit.
  hello.bootstrap_key = persisted_.bootstrap_key.substr(0, wire::kMaxBootstrapKeyBytes);
  Send(hello);
  state_ = State::kAwaitChallenge;
}

// Consecutive stream batches that arrive together are applied as one write
// (see QueueBatch); anything else, an error or the end of the bytes applies
// them first, so every other message sees them written.
void ClientSession::OnBytes(std::string_view bytes) {
  if (closed()) return;
  last_received_ms_ = now_ms_;
  reader_.Append(bytes);
  for (;;) {
    Message message;
    bool got = false;
    Status s = reader_.Next(&message, &got);
    if (!s.ok()) {
      if (FlushStream()) Fail(s);
      return;
    }
    if (!got) break;
    if (auto* batch = std::get_if<Batch>(&message);
        batch != nullptr && streaming() && assembling_ == Assembly::kNone) {
      QueueBatch(*batch);
      if (closed()) return;
      if (pending_ops_.size() >= kMaxGroupOps || pending_bytes_ >= kMaxGroupBytes) {
        if (!FlushStream()) return;
      }
      continue;
    }
    if (!FlushStream()) return;
    Handle(message);
    if (closed()) return;
  }
  if (FlushStream()) ReportApplied();
}

void ClientSession::Handle(Message& message) {
  if (auto* reject = std::get_if<Reject>(&message)) {
    state_ = State::kClosed;
    error_ = Status::Aborted("master refused: " + reject->reason);
    staged_.reset();
    gathered_ = nullptr;
    events_.push_back(ClientEvent::Closed(error_));
    return;
  }
  switch (state_) {
    case State::kAwaitChallenge:
      if (auto* m = std::get_if<Challenge>(&message)) return HandleChallenge(*m);
      break;
    case State::kAwaitWelcome:
      if (auto* m = std::get_if<Welcome>(&message)) return HandleWelcome(*m);
      break;
    case State::kStreaming:
      if (assembling_ != Assembly::kNone) return HandlePiece(message);
      if (auto* m = std::get_if<BatchPart>(&message)) return HandleBatchPart(*m);
      if (auto* m = std::get_if<PutStart>(&message)) return HandlePutStart(*m);
      if (auto* m = std::get_if<Batch>(&message)) {
        QueueBatch(*m);
        FlushStream();
        return;
      }
      if (auto* m = std::get_if<SyncStart>(&message)) return HandleSyncStart(*m);
      if (auto* m = std::get_if<NodesRequest>(&message)) return HandleNodes(*m);
      if (auto* m = std::get_if<Repair>(&message)) return HandleRepair(*m);
      if (auto* m = std::get_if<SyncDone>(&message)) return HandleSyncDone(*m);
      if (auto* m = std::get_if<BootstrapChunk>(&message)) return HandleBootstrap(*m);
      if (auto* m = std::get_if<Ping>(&message)) {
        master_seq_ = std::max(master_seq_, m->master_seq);
        NoteProgress();
        Send(Pong{applied_seq_, m->master_time_ms});
        last_pong_ms_ = now_ms_;
        reported_seq_ = applied_seq_;
        return;
      }
      break;
    case State::kIdle:
    case State::kClosed:
      break;
  }
  Fail(Status::ProtocolError(std::string("unexpected ") + MessageName(message)));
}

void ClientSession::HandleChallenge(const Challenge& challenge) {
  Auth auth;
  Status s = AnswerChallenge(challenge, client_nonce_, options_.authenticator, &auth);
  if (!s.ok()) return Fail(s);
  Send(auth);
  state_ = State::kAwaitWelcome;
}

void ClientSession::HandleWelcome(const Welcome& welcome) {
  if (welcome.resume_from == 0) {
    return Fail(Status::ProtocolError("Welcome: the stream cannot resume from sequence 0"));
  }
  if (welcome.mode == StartMode::kFiles) {
    return Fail(Status::ProtocolError("Welcome: files are sent only to a cloner"));
  }
  if (welcome.master_id != persisted_.master_id) {
    // Progress through another master's bootstrap means nothing here.
    persisted_.bootstrap_family = 0;
    persisted_.bootstrap_key.clear();
  }
  families_ = welcome.families;
  if (hooks_.families) {
    Status s = hooks_.families(families_);
    if (!s.ok()) {
      return Fail(Status::IOError("cannot take the master's column families: " + s.ToString()),
                  RejectCode::kInternal);
    }
  }
  master_seq_ = welcome.master_seq;
  catch_up_seq_ = welcome.master_seq;
  expected_seq_ = welcome.resume_from;
  switch (welcome.mode) {
    case StartMode::kResume:
      if (welcome.master_id == persisted_.master_id
              ? welcome.resume_from != persisted_.applied_seq + 1
              : persisted_.applied_seq == 0 || persisted_.bootstrapping) {
        return Fail(Status::ProtocolError("Welcome: resume from " +
                                          std::to_string(welcome.resume_from) +
                                          " does not follow our state"));
      }
      if (welcome.master_id != persisted_.master_id) {
        // A lineage resume: the master (a promoted follower) found our
        // master and applied sequence in its lineage, where its own history
        // stands at resume_from - 1. The catch-up diff checks it as any resume.
        persisted_.master_id = welcome.master_id;
        persisted_.applied_seq = welcome.resume_from - 1;
      }
      applied_seq_ = persisted_.applied_seq;
      consistent_ = true;
      catch_up_sync_due_ = true;
      break;
    case StartMode::kDiff:
      // The master diffs us right away; until that completes we are not resumable.
      persisted_.master_id = welcome.master_id;
      persisted_.applied_seq = 0;
      persisted_.bootstrapping = false;
      applied_seq_ = welcome.resume_from - 1;
      consistent_ = false;
      break;
    case StartMode::kBootstrap:
      bootstrap_seq_ = welcome.master_seq;
      persisted_.master_id = welcome.master_id;
      persisted_.applied_seq = 0;
      persisted_.bootstrapping = true;
      applied_seq_ = welcome.resume_from - 1;
      consistent_ = false;
      catch_up_sync_due_ = true;
      tracking_ = true;
      break;
    case StartMode::kFiles:
      break;  // refused above
  }
  state_ = State::kStreaming;
  NoteProgress();
  events_.push_back(ClientEvent::Welcome(welcome.mode));
  MaybeRequestCatchUpSync();
}

// Checks a stream batch and adds it to the pending group; FlushStream writes
// the group. A batch that breaks the stream fails the session after the
// batches before it are written, as if each had been applied on arrival.
void ClientSession::QueueBatch(Batch& batch) {
  if (batch.seq < expected_seq_) {
    if (!FlushStream()) return;
    CheckStreamSeq(batch.seq);
    return;
  }
  AdvanceStream(batch.seq, batch.count);
  if (tracking_) Track(batch.ops);
  if (pending_batches_++ == 0) pending_first_seq_ = batch.seq;
  for (Op& op : batch.ops) {
    pending_bytes_ += op.key.size() + op.value.size();
    pending_ops_.push_back(std::move(op));
  }
}

// A batch must not start before the stream's next sequence.
bool ClientSession::CheckStreamSeq(uint64_t seq) {
  if (seq >= expected_seq_) return true;
  Fail(Status::ProtocolError("Batch at sequence " + std::to_string(seq) +
                             " repeats the stream (expected " + std::to_string(expected_seq_) +
                             ")"));
  return false;
}

void ClientSession::AdvanceStream(uint64_t seq, uint64_t count) {
  if (seq > expected_seq_) {
    // Writes are missing between the two: only a diff started after them can
    // bring them back (one running now compares snapshots taken before).
    consistent_ = false;
    catch_up_sync_due_ = true;
    gap_during_sync_ = in_sync_;
  }
  applied_seq_ = LastSeq(seq, count);
  expected_seq_ = applied_seq_ + 1;
  master_seq_ = std::max(master_seq_, applied_seq_);
}

// ---- writes in pieces ----

// The next frame of the write being assembled: only its own pieces may come.
void ClientSession::HandlePiece(Message& message) {
  KeepAlive();
  if (auto* m = std::get_if<ValuePart>(&message); m != nullptr && put_open_) {
    return HandleValuePart(*m);
  }
  if (assembling_ == Assembly::kBatch && !put_open_) {
    if (auto* m = std::get_if<BatchPart>(&message)) return HandleBatchPart(*m);
    if (auto* m = std::get_if<PutStart>(&message)) return HandlePutStart(*m);
  }
  Fail(Status::ProtocolError(std::string(MessageName(message)) + " inside a " +
                             (put_open_ ? "value" : "batch") + " sent in pieces"));
}

void ClientSession::BeginStaged(Assembly assembly, uint64_t expected_bytes) {
  assembling_ = assembly;
  staged_bytes_ = 0;
  if (hooks_.stage) {
    staged_ = hooks_.stage(expected_bytes);
    gathered_ = nullptr;
  } else {
    auto gathered = std::make_unique<GatheredWrite>();
    gathered_ = gathered->ops();
    staged_ = std::move(gathered);
  }
}

void ClientSession::HandleBatchPart(BatchPart& part) {
  if (assembling_ == Assembly::kNone) {
    if (!CheckStreamSeq(part.seq)) return;
    // A batch holds at most what a RocksDB write batch can (a u32 of ops,
    // u32 lengths): a larger announcement is not a batch a master has.
    if (part.bytes > kMaxBatchBytes) {
      return Fail(
          Status::ProtocolError("BatchPart: a batch of " + std::to_string(part.bytes) + " bytes"));
    }
    BeginStaged(Assembly::kBatch, part.bytes);
    part_seq_ = part.seq;
    part_count_ = part.count;
    part_bytes_ = part.bytes;
  } else if (part.seq != part_seq_ || part.count != part_count_ || part.bytes != part_bytes_) {
    return Fail(Status::ProtocolError("BatchPart of batch " + std::to_string(part.seq) +
                                      " inside batch " + std::to_string(part_seq_)));
  }
  if (tracking_) Track(part.ops);
  for (const Op& op : part.ops) staged_bytes_ += op.key.size() + op.value.size();
  Status s = staged_->AddOps(part.ops);
  if (!s.ok()) return Fail(s, RejectCode::kInternal);
  if (!part.last) return;
  if (staged_bytes_ != part_bytes_) {
    return Fail(Status::ProtocolError("BatchPart: the batch holds " +
                                      std::to_string(staged_bytes_) + " bytes, announced " +
                                      std::to_string(part_bytes_)));
  }
  AdvanceStream(part_seq_, part_count_);
  if (!ApplyStaged(ApplyRequest::Source::kStream, part_seq_)) return;
  NoteProgress();
  MaybeRequestCatchUpSync();
}

void ClientSession::HandlePutStart(const PutStart& start) {
  bool fits = false;
  switch (start.context) {
    case PutContext::kBatch:
      fits = assembling_ == Assembly::kBatch && start.id == part_seq_;
      break;
    case PutContext::kRepair:
      fits = assembling_ == Assembly::kNone && in_sync_ && start.id == sync_id_;
      if (fits) BeginRepair();
      break;
    case PutContext::kBootstrap:
      fits =
          assembling_ == Assembly::kNone && persisted_.bootstrapping && start.id == bootstrap_seq_;
      break;
  }
  if (!fits) return Fail(Status::ProtocolError("PutStart outside its batch, diff or bootstrap"));
  if (start.context == PutContext::kBatch) {
    if (tracking_) streamed_keys_.emplace(start.family, start.key);
    put_skipped_ = false;
  } else {
    BeginStaged(
        start.context == PutContext::kRepair ? Assembly::kRepairPut : Assembly::kBootstrapPut,
        start.key.size() + start.value_size);
    // The stream wrote this key since the snapshot: what we hold is newer.
    put_skipped_ = Streamed(start.family, start.key);
    put_family_ = start.family;
    put_key_ = start.key;
  }
  put_open_ = true;
  value_left_ = start.value_size;
  staged_bytes_ += start.key.size() + start.value_size;  // ValueParts bring no more
  if (put_skipped_) return;
  Status s = staged_->StartPut(start.family, start.key, start.value_size);
  if (!s.ok()) return Fail(s, RejectCode::kInternal);
}

void ClientSession::HandleValuePart(const ValuePart& part) {
  if (part.data.size() > value_left_) {
    return Fail(Status::ProtocolError("ValuePart: " + std::to_string(part.data.size()) +
                                      " bytes where the value has " + std::to_string(value_left_) +
                                      " left"));
  }
  value_left_ -= part.data.size();
  if (!put_skipped_) {
    Status s = staged_->AddValue(part.data);
    if (!s.ok()) return Fail(s, RejectCode::kInternal);
  }
  if (value_left_ > 0) return;
  put_open_ = false;
  if (assembling_ == Assembly::kRepairPut) {
    if (put_skipped_) {
      staged_.reset();
      assembling_ = Assembly::kNone;
      return;
    }
    ++repaired_;
    ApplyStaged(ApplyRequest::Source::kRepair);
  } else if (assembling_ == Assembly::kBootstrapPut) {
    persisted_.bootstrap_family = put_family_;
    persisted_.bootstrap_key = std::move(put_key_);
    if (put_skipped_) staged_.reset();  // the progress is still written
    ApplyStaged(ApplyRequest::Source::kBootstrap);
  }
}

// A Pong the master did not ask for (echo 0): what it notes is that we are
// alive and where we are.
void ClientSession::KeepAlive() {
  if (now_ms_ < 0 || (last_pong_ms_ >= 0 && now_ms_ - last_pong_ms_ < kKeepAliveMs)) return;
  Send(Pong{applied_seq_, 0});
  last_pong_ms_ = now_ms_;
  reported_seq_ = applied_seq_;
}

// After the writes one OnBytes call brought (each read from the socket: a
// group of batches, a batch's last part), one unasked Pong tells the master
// how far we have applied, so a writer waiting for followers hears at once
// rather than at the next Ping; a burst of batches still costs one Pong.
void ClientSession::ReportApplied() {
  if (options_.role != Role::kFollower || !streaming() || applied_seq_ <= reported_seq_) return;
  Send(Pong{applied_seq_, 0});
  reported_seq_ = applied_seq_;
}

// Writes what was assembled, in one atomic write with the state.
bool ClientSession::ApplyStaged(ApplyRequest::Source source, uint64_t stream_seq) {
  std::unique_ptr<StagedWrite> staged = std::move(staged_);
  std::vector<Op>* gathered = std::exchange(gathered_, nullptr);
  assembling_ = Assembly::kNone;
  if (staged == nullptr) return Apply(source, kNoOps, stream_seq);
  if (gathered != nullptr) return Apply(source, *gathered, stream_seq);
  return Apply(source, kNoOps, stream_seq, staged.get());
}

// Writes the pending stream batches, whole, in one atomic write with the state
// as of the last of them. Returns false if the session is closed.
bool ClientSession::FlushStream() {
  if (closed()) return false;
  if (pending_batches_ == 0) return true;
  bool ok = Apply(ApplyRequest::Source::kStream, pending_ops_, pending_first_seq_);
  pending_ops_.clear();
  pending_bytes_ = 0;
  pending_batches_ = 0;
  if (!ok) return false;
  NoteProgress();
  MaybeRequestCatchUpSync();
  return true;
}

void ClientSession::HandleSyncStart(const SyncStart& start) {
  if (in_sync_) return Fail(Status::ProtocolError("SyncStart while a diff runs"));
  if (start.seq > applied_seq_) {
    // The master's tree jumped past its stream (it rebuilt after data
    // reached its database outside the WAL): no batch will carry what lies
    // between, this diff brings the replica to start.seq, and the stream
    // goes on after it. Until the diff completes the position is not
    // persisted (consistent_), so a crash meanwhile diffs again.
    consistent_ = false;
    applied_seq_ = start.seq;
    expected_seq_ = applied_seq_ + 1;
    master_seq_ = std::max(master_seq_, applied_seq_);
  }
  in_sync_ = true;
  gap_during_sync_ = false;
  sync_requested_ = false;
  sync_id_ = start.sync_id;
  salt_ = start.salt;
  hash_bytes_ = start.hash_bytes;
  repaired_ = 0;
  snapshot_ = hooks_.snapshot();
  repairing_ = false;
  streamed_keys_.clear();
  streamed_ranges_.clear();
  tracking_ = true;
  SyncRoot root;
  root.sync_id = sync_id_;
  root.root = snapshot_.root_hash();
  root.key_count = snapshot_.size();
  root.equal = root.root == start.root;
  root.hash_bytes = hash_bytes_;
  // Folded: a difference or two show in a few lines, many in every one.
  if (!root.equal) root.top = Summarize(snapshot_, "", salt_, hash_bytes_, kRootFoldFamilies);
  Send(root);
}

void ClientSession::HandleNodes(const NodesRequest& request) {
  if (!in_sync_ || request.sync_id != sync_id_) {
    return Fail(Status::ProtocolError("NodesRequest outside its diff"));
  }
  // Each path costs the master a few bytes and us a summary of up to 256
  // children: past the protocol's limit a request is an amplification, not
  // a question a master asks.
  if (request.paths.size() > wire::kMaxPathsPerRequest) {
    return Fail(Status::ProtocolError("NodesRequest: " + std::to_string(request.paths.size()) +
                                      " paths, more than " +
                                      std::to_string(wire::kMaxPathsPerRequest)));
  }
  if (repairing_) return Fail(Status::ProtocolError("NodesRequest after the diff's repairs"));
  bool probed = !request.summaries.empty();
  if (probed &&
      (request.summaries.size() != request.paths.size() || request.hash_bytes != hash_bytes_)) {
    return Fail(Status::ProtocolError("NodesRequest: summaries do not match its paths"));
  }
  Nodes nodes;
  nodes.sync_id = sync_id_;
  nodes.hash_bytes = hash_bytes_;
  nodes.summaries.resize(request.paths.size());
  for (size_t i = 0; i < request.paths.size(); ++i) {
    const std::string& path = request.paths[i];
    if (!probed) {
      nodes.summaries[i] = Summarize(snapshot_, path, salt_, hash_bytes_);
      continue;
    }
    Status s =
        AnswerProbe(snapshot_, path, request.summaries[i], salt_, hash_bytes_, &nodes.summaries[i]);
    if (!s.ok()) return Fail(s);
  }
  Send(nodes);
}

void ClientSession::HandleRepair(const Repair& repair) {
  if (!in_sync_ || repair.sync_id != sync_id_) {
    return Fail(Status::ProtocolError("Repair outside its diff"));
  }
  std::vector<Op> ops;
  ops.reserve(repair.ops.size() + repair.delete_key_hashes.size());
  for (const Op& op : repair.ops) {
    if (op.kind != OpKind::kPut && op.kind != OpKind::kDelete) {
      return Fail(Status::ProtocolError("Repair: only puts and deletes repair"));
    }
    if (!Streamed(op.family, op.key)) ops.push_back(op);
  }
  BeginRepair();
  if (!repair.delete_key_hashes.empty()) {
    // The keys by their hashes, in the tree as it is now: a key the diff
    // found only here is as it was at the snapshot unless the stream wrote
    // it since (then it is skipped either way); repairs never put it. The
    // view goes before the write, which would otherwise copy what it shares.
    TreeView now = hooks_.snapshot();
    for (const Hash128& key_hash : repair.delete_key_hashes) {
      NodeRef leaf = LocatePrefix(now, KeyHashPath(key_hash));
      if (leaf.empty() || !leaf.is_leaf() || leaf.key_hash() != key_hash) continue;
      std::string key(leaf.key());
      if (Streamed(leaf.family(), key)) continue;
      ops.push_back(Op{OpKind::kDelete, leaf.family(), std::move(key), {}});
    }
  }
  repaired_ += ops.size();
  if (!ops.empty()) Apply(ApplyRequest::Source::kRepair, ops);
}

// The master sends repairs only once it has nothing more to ask (step 7 of
// the diff in docs/protocol.md): the snapshot that answered its questions
// goes now, so that the repairs write the tree in place rather than copy
// every node on their paths that the snapshot still shares (a node of 256
// children costs 256 reference counts to copy, and as many to free).
void ClientSession::BeginRepair() {
  repairing_ = true;
  snapshot_ = TreeView();
}

void ClientSession::HandleSyncDone(const SyncDone& done) {
  if (!in_sync_ || done.sync_id != sync_id_) {
    return Fail(Status::ProtocolError("SyncDone outside its diff"));
  }
  in_sync_ = false;
  repairing_ = false;
  snapshot_ = TreeView();
  last_repaired_ = repaired_;
  if (!done.retry && !gap_during_sync_) {
    ++syncs_completed_;
    catch_up_sync_due_ = false;
    if (!consistent_) {
      consistent_ = true;
      if (!Apply(ApplyRequest::Source::kStateOnly, {})) return;
    }
  }
  StopTracking();
  events_.push_back(ClientEvent::SyncDone(repaired_, /*complete=*/!done.retry));
  if (std::exchange(sync_again_, false)) RequestSync();
  MaybeRequestCatchUpSync();
}

void ClientSession::HandleBootstrap(const BootstrapChunk& chunk) {
  if (!persisted_.bootstrapping) {
    return Fail(Status::ProtocolError("BootstrapChunk outside a bootstrap"));
  }
  std::vector<Op> ops;
  ops.reserve(chunk.entries.size());
  for (const Op& op : chunk.entries) {
    if (op.kind != OpKind::kPut) return Fail(Status::ProtocolError("BootstrapChunk: not a put"));
    if (!Streamed(op.family, op.key)) ops.push_back(op);
  }
  if (!chunk.entries.empty()) {
    persisted_.bootstrap_family = chunk.entries.back().family;
    persisted_.bootstrap_key = chunk.entries.back().key;
  }
  if (chunk.last) {
    persisted_.bootstrapping = false;
    persisted_.bootstrap_key.clear();
    persisted_.bootstrap_family = 0;
  }
  if (!Apply(ApplyRequest::Source::kBootstrap, ops)) return;
  if (chunk.last) {
    StopTracking();
    MaybeRequestCatchUpSync();
  }
}

// Writes through the embedder, with the state to persist alongside.
bool ClientSession::Apply(ApplyRequest::Source source, const std::vector<Op>& ops,
                          uint64_t stream_seq, StagedWrite* staged) {
  persisted_.applied_seq = consistent_ ? applied_seq_ : 0;
  Status s = hooks_.write(ApplyRequest{source, ops, persisted_, stream_seq, staged, applied_seq_});
  if (!s.ok()) {
    Fail(Status::IOError("applying to the replica failed: " + s.ToString()), RejectCode::kInternal);
    return false;
  }
  return true;
}

void ClientSession::Track(const std::vector<Op>& ops) {
  for (const Op& op : ops) {
    if (op.kind == OpKind::kDeleteRange) {
      streamed_ranges_.push_back(op);
    } else {
      streamed_keys_.emplace(op.family, op.key);
    }
  }
}

bool ClientSession::Streamed(FamilyTag family, const std::string& key) const {
  // Most diffs see no stream write: no lookup (it would copy the key).
  if (!tracking_ || (streamed_keys_.empty() && streamed_ranges_.empty())) return false;
  if (streamed_keys_.count({family, key}) != 0) return true;
  for (const Op& range : streamed_ranges_) {
    if (range.family == family && range.key <= key && key < range.value) return true;
  }
  return false;
}

void ClientSession::NoteProgress() {
  if (applied_seq_ >= master_seq_) {
    behind_since_ms_ = -1;
  } else if (behind_since_ms_ < 0) {
    behind_since_ms_ = std::max<int64_t>(now_ms_, 0);
  }
}

void ClientSession::StopTracking() {
  if (in_sync_ || persisted_.bootstrapping) return;
  tracking_ = false;
  streamed_keys_.clear();
  streamed_ranges_.clear();
}

// After (re)connecting, once the stream has caught up with where the master
// was at Welcome, one diff checks what resuming trusted.
void ClientSession::MaybeRequestCatchUpSync() {
  waiting_for_tree_ = false;
  if (catch_up_sync_due_ && options_.diff_after_catch_up && !persisted_.bootstrapping &&
      applied_seq_ >= catch_up_seq_) {
    // A tree still being built would hold up the stream: ask on a later tick.
    waiting_for_tree_ = hooks_.tree_ready && !hooks_.tree_ready();
    if (!waiting_for_tree_) RequestSync();
  }
}

void ClientSession::RequestSync() {
  if (state_ != State::kStreaming) return;
  if (in_sync_) {
    sync_again_ = true;
    return;
  }
  if (sync_requested_ || persisted_.bootstrapping) return;
  Send(SyncRequest{});
  sync_requested_ = true;
}

void ClientSession::OnTick(int64_t now_ms) {
  now_ms_ = now_ms;
  if (closed()) return;
  if (last_received_ms_ < 0) last_received_ms_ = now_ms;
  if (now_ms - last_received_ms_ > options_.idle_timeout_ms) {
    Fail(
        Status::Aborted("master silent for " + std::to_string(now_ms - last_received_ms_) + " ms"));
    return;
  }
  if (waiting_for_tree_) MaybeRequestCatchUpSync();
}

void ClientSession::Close(std::string_view reason) {
  Fail(Status::Aborted(reason), RejectCode::kShutdown);
}

std::optional<ClientEvent> ClientSession::PollEvent() {
  if (events_.empty()) return std::nullopt;
  ClientEvent event = std::move(events_.front());
  events_.pop_front();
  return event;
}

void ClientSession::Fail(Status status, RejectCode code) {
  if (closed()) return;
  Send(Reject{code, status.message()});
  state_ = State::kClosed;
  error_ = std::move(status);
  staged_.reset();  // a write in pieces not wholly received is never written
  gathered_ = nullptr;
  events_.push_back(ClientEvent::Closed(error_));
}

}  // namespace sdiff
