// The master's protocol state machine. State transitions live in Handle():
//
//   state        message        -> action
//   kAwaitHello  Hello          -> Challenge                       -> kAwaitAuth
//   kAwaitAuth   Auth           -> Welcome (resume|diff)             -> kStreaming
//                               -> kOpenBootstrap|kOpenFiles request -> kOpening
//   kOpening     (OnDbAnswer)   -> Welcome (bootstrap|files)         -> kStreaming
//   kStreaming   SyncRequest    -> a diff (now, or after the one running)
//                SyncRoot       -> NodesRequest | repair            (diff: kAwaitRoot)
//                Nodes          -> NodesRequest | repair            (diff: kAwaitNodes)
//                Pong           -> note the follower's applied sequence
//                Write          -> kCommitWrite request, one at a time;
//                                  (OnDbAnswer) -> WriteAck          (writers only)
//                                  min_acks: (OnDbAnswer) -> kWaitAcks,
//                                  (OnAcks) -> WriteAck
//   (output)     cloner's files -> FileChunk ... last: release them -> kClosed, OK
//   (OnAuditDone) auditor       -> AuditReport                     -> kClosed, OK
//   (output)     stream batches, repairs, bootstrap entries: encoded in order as
//                TakeOutput is called; one above bulk_frame_bytes in pieces
//                (BatchPart, PutStart, ValuePart), nothing between them
//   (output)     a repair frame, bootstrap chunk or file chunk that needs data
//                first asks for it (kReadKeys, kScanBootstrap, kReadFile) and
//                goes on when OnDbAnswer brings it
//   any          Reject         -> closed
//   anything else is a protocol error: Reject, closed.
// Roles (engine/roles.h holds them as a table): a follower streams (resume,
// diff or bootstrap); an inspector gets no stream and is diffed once, at
// once; a writer gets neither and sends Writes; a cloner gets neither:
// Welcome (mode kFiles), the master's files, and a clean close; it may send
// only Pongs. An auditor gets neither: Welcome, and once the embedder has run
// the audit (kRunAudit), an AuditReport and a clean close; it too may send
// only Pongs (the master pings it while it waits).
#include "engine/server_session.h"

#include <algorithm>
#include <memory>
#include <span>
#include <utility>

#include "engine/roles.h"

namespace sdiff {
namespace {

constexpr size_t kNonceBytes = 32;
constexpr size_t kReadGroup = 256;          // keys per ReadFun call while repairing
constexpr size_t kDeletesPerFrame = 65536;  // follower-only key hashes per Repair frame

constexpr size_t kValuePartOverhead = 16;  // a ValuePart frame's bytes beyond its data

// What an op costs a frame: its bytes, and the memory the follower's decoder
// charges for it (wire.h: a decoded frame takes at most max_frame), so that
// a frame of bulk_frame_bytes worth of ops decodes within that limit.
size_t OpBytes(const Op& op) { return op.key.size() + op.value.size() + sizeof(Op); }

}  // namespace

std::string MasterProofMessage(std::string_view client_nonce, std::string_view server_nonce) {
  return "sdiff master proof\n" + std::string(client_nonce) + std::string(server_nonce);
}

std::string FollowerProofMessage(std::string_view client_nonce, std::string_view server_nonce) {
  return "sdiff follower proof\n" + std::string(client_nonce) + std::string(server_nonce);
}

ServerSession::ServerSession(ServerOptions options, MasterHooks hooks)
    : options_(std::move(options)),
      hooks_(std::move(hooks)),
      reader_(std::min(options_.max_frame, wire::kMaxHandshakeFrame)) {}

void ServerSession::OnBytes(std::string_view bytes) {
  if (closed()) return;
  last_received_ms_ = now_ms_;
  Status s = reader_.Drain(bytes, [this](Message& message) {
    Handle(message);
    return !closed();
  });
  // A frame over the handshake's limit: say which limit it was, as it is not
  // the max_frame an operator configured.
  if (!s.ok() && reader_.max_frame() < options_.max_frame &&
      s.message().starts_with("frame: length") &&
      s.message().find("exceeds limit") != std::string::npos) {
    s = Status::Corruption(s.message() + " (the limit before authentication)");
  }
  if (!s.ok()) Fail(s);
}

void ServerSession::Handle(Message& message) {
  if (auto* reject = std::get_if<Reject>(&message)) {
    return End(Status::Aborted("follower closed the session: " + reject->reason));
  }
  switch (state_) {
    case State::kAwaitHello:
      if (auto* hello = std::get_if<Hello>(&message)) return HandleHello(*hello);
      break;
    case State::kAwaitAuth:
      if (auto* auth = std::get_if<Auth>(&message)) return HandleAuth(*auth);
      break;
    case State::kStreaming:
      if (auto* pong = std::get_if<Pong>(&message)) {
        follower_applied_seq_ = pong->applied_seq;
        if (verify_after_ms_ && pong->echo_time_ms > static_cast<uint64_t>(*verify_after_ms_)) {
          holds_all_ = true;  // it answered a Ping sent after the SyncDone
          verify_after_ms_.reset();
        }
        return;
      }
      if (auto* write = std::get_if<Write>(&message)) return HandleWrite(*write);
      if (!RulesFor(hello_.role).diffs) break;
      if (std::holds_alternative<SyncRequest>(message)) return RequestSync();
      if (auto* root = std::get_if<SyncRoot>(&message)) return HandleSyncRoot(*root);
      if (auto* nodes = std::get_if<Nodes>(&message)) return HandleNodes(*nodes);
      break;
    case State::kOpening:  // the peer waits for its Welcome
      break;
    case State::kClosed:
      return;
  }
  Fail(Status::ProtocolError(std::string("unexpected ") + MessageName(message)));
}

void ServerSession::HandleHello(Hello& hello) {
  if (hello.min_version > wire::kProtocolVersion || hello.max_version < wire::kProtocolVersion) {
    return Fail(Status::ProtocolError("no common protocol version: follower speaks " +
                                      std::to_string(hello.min_version) + ".." +
                                      std::to_string(hello.max_version) + ", master speaks " +
                                      std::to_string(wire::kProtocolVersion)),
                RejectCode::kVersion);
  }
  if (hello.client_nonce.size() != kNonceBytes) {
    return Fail(Status::ProtocolError("Hello: nonce must be 32 bytes"));
  }
  const RoleRules& rules = RulesFor(hello.role);
  if (rules.served != nullptr && !rules.served(hooks_)) {
    return Fail(Status::ProtocolError(rules.refusal), RejectCode::kRole);
  }
  hello_ = std::move(hello);
  server_nonce_ = RandomBytes(kNonceBytes);
  Challenge challenge;
  challenge.version = wire::kProtocolVersion;
  challenge.server_nonce = server_nonce_;
  if (options_.authenticator != nullptr) {
    challenge.server_proof =
        options_.authenticator->Sign(MasterProofMessage(hello_.client_nonce, server_nonce_));
  }
  Send(challenge);
  state_ = State::kAwaitAuth;
}

void ServerSession::HandleAuth(const Auth& auth) {
  if (options_.authenticator != nullptr) {
    if (auth.client_proof.empty()) {
      return Fail(Status::ProtocolError("authentication required: this master has a shared secret"),
                  RejectCode::kAuth);
    }
    if (!options_.authenticator->Verify(FollowerProofMessage(hello_.client_nonce, server_nonce_),
                                        auth.client_proof)) {
      return Fail(Status::ProtocolError("authentication failed: wrong secret"), RejectCode::kAuth);
    }
  }
  // The peer has authenticated (or, with no secret, finished the handshake):
  // from here on it may send frames of the normal size.
  reader_.set_max_frame(options_.max_frame);
  uint64_t current = hooks_.current_seq();
  Welcome welcome;
  welcome.master_id = options_.master_id;
  welcome.master_seq = current;
  welcome.families = options_.families;
  const RoleRules& rules = RulesFor(hello_.role);
  if (rules.copies_files) return StartCloning(welcome);
  bool same_master = hello_.master_id == options_.master_id;
  // Where the follower's history stands in this master's: its applied
  // sequence, or where the lineage says the old master's position lies.
  uint64_t position = same_master ? hello_.applied_seq : 0;
  for (const LineageLink& link : options_.lineage) {
    if (!same_master && hello_.master_id == link.master_id &&
        hello_.applied_seq == link.master_seq) {
      position = link.seq;
    }
  }
  if (!rules.streams) {
    welcome.mode = StartMode::kDiff;  // no stream; an inspector is diffed below
    welcome.resume_from = current + 1;
  } else if (!hello_.bootstrapping && hello_.applied_seq > 0 && position > 0 &&
             position <= current && hooks_.can_resume(position)) {
    welcome.mode = StartMode::kResume;
    welcome.resume_from = position + 1;
    holds_all_ = true;  // it holds what it applied: the resume trusts it
  } else if ((hello_.key_count == 0 || (hello_.bootstrapping && same_master)) &&
             hooks_.open_bootstrap && hooks_.key_count() >= options_.bootstrap_min_keys) {
    // The Welcome names the snapshot's sequence: it waits for the snapshot.
    bool resume = hello_.bootstrapping && same_master;
    welcome_ = std::move(welcome);
    state_ = State::kOpening;
    return Ask(DbRequest::OpenBootstrap(resume, hello_.bootstrap_family, hello_.bootstrap_key));
  } else {
    welcome.mode = StartMode::kDiff;
    welcome.resume_from = current + 1;
  }
  StartStreaming(welcome);
}

void ServerSession::OnBootstrapOpened(const DbAnswer& answer) {
  bootstrap_seq_ = answer.seq;
  welcome_.mode = StartMode::kBootstrap;
  welcome_.master_seq = bootstrap_seq_;
  welcome_.resume_from = bootstrap_seq_ + 1;
  bootstrapping_ = true;
  StartStreaming(welcome_);
}

// Sends the Welcome and starts what the role does: the stream, an audit, a diff.
void ServerSession::StartStreaming(Welcome& welcome) {
  const RoleRules& rules = RulesFor(hello_.role);
  Send(welcome);
  state_ = State::kStreaming;
  stream_from_ = welcome.resume_from;
  sent_seq_ = welcome.resume_from - 1;
  if (rules.streams) {
    Event(ServerEvent::StreamFrom(stream_from_));
  }
  if (rules.audits) {
    audit_running_ = true;
    Event(ServerEvent::RunAudit(welcome.master_seq));
  }
  if (rules.diffed_at_once ||
      (rules.streams && welcome.mode == StartMode::kDiff && options_.diff_on_connect)) {
    RequestSync();
  }
}

// A cloner: Welcome (mode kFiles), then the files come out of TakeOutput.
void ServerSession::StartCloning(Welcome& welcome) {
  uint64_t keys = hooks_.key_count();
  if (keys < options_.bootstrap_min_keys) {
    return Fail(
        Status::ProtocolError("the master holds " + std::to_string(keys) + " keys, fewer than " +
                              std::to_string(options_.bootstrap_min_keys) +
                              ": follow it instead of copying its files"),
        RejectCode::kRole);
  }
  welcome_ = std::move(welcome);
  state_ = State::kOpening;
  Ask(DbRequest::OpenFiles());
}

void ServerSession::OnFilesOpened(DbAnswer& answer) {
  const Status& s = answer.status;
  if (!s.ok()) {
    // A configuration a copy would not reproduce is a refusal the cloner
    // expects; anything else is the master failing.
    return Fail(
        s, s.code() == Status::Code::kInvalidArgument ? RejectCode::kRole : RejectCode::kInternal);
  }
  if (answer.files == nullptr || answer.files->files().empty()) {
    return Fail(Status::IOError("the master has no files to copy"), RejectCode::kInternal);
  }
  for (const FileSource::File& file : answer.files->files()) {
    if (!IsPlainFileName(file.name)) {
      return Fail(Status::InvalidArgument("file \"" + file.name + "\" is not a plain file name"),
                  RejectCode::kInternal);
    }
  }
  files_ = std::move(answer.files);
  file_index_ = 0;
  file_offset_ = 0;
  welcome_.mode = StartMode::kFiles;
  welcome_.resume_from = welcome_.master_seq + 1;
  Send(welcome_);
  state_ = State::kStreaming;
}

// Writes are committed one at a time, in order; those behind the one
// committing wait in writes_ (the embedder stops reading while they reach
// max_frame bytes: wants_input).
void ServerSession::HandleWrite(Write& write) {
  if (!RulesFor(hello_.role).writes) {
    return Fail(Status::ProtocolError("Write from a non-writer"));
  }
  for (const Op& op : write.ops) queued_write_bytes_ += OpBytes(op);
  writes_.push_back(std::move(write));
  CommitNextWrite();
}

void ServerSession::CommitNextWrite() {
  while (!waiting_ && !acking_ && !writes_.empty() && !closed()) {
    Write& write = writes_.front();
    WriteAck ack;
    ack.id = write.id;
    // A writer keeps several writes in flight: those it sent before hearing
    // of a failure must not be committed behind it, so a session's committed
    // writes are always the ones before its first failure.
    if (failed_write_) {
      ack.error = "not written: write " + std::to_string(*failed_write_) + " before it failed";
    }
    for (const Op& op : write.ops) {
      if (!ack.error.empty()) break;
      bool known = std::any_of(options_.families.begin(), options_.families.end(),
                               [&](const FamilyInfo& f) { return f.tag == op.family; });
      if (!known) ack.error = "no replicated column family has tag " + std::to_string(op.family);
    }
    for (const Op& op : write.ops) queued_write_bytes_ -= OpBytes(op);
    if (ack.error.empty()) {
      committing_ = write.id;
      Ask(DbRequest::CommitWrite(std::move(write.ops)));
      writes_.pop_front();
      return;
    }
    if (!failed_write_) failed_write_ = write.id;
    writes_.pop_front();
    Send(ack);
  }
}

void ServerSession::OnWriteCommitted(DbAnswer& answer) {
  WriteAck ack;
  ack.id = *std::exchange(committing_, std::nullopt);
  if (answer.status.ok()) {
    ack.seq = answer.seq;
    if (options_.min_acks > 0) {
      // Held until enough followers have applied it; later writes wait too,
      // so a writer's acks stay in order.
      acking_ = std::move(ack);
      return Event(ServerEvent::WaitAcks(answer.seq));
    }
  } else {
    ack.error = answer.status.ToString();
    failed_write_ = ack.id;
  }
  Send(ack);
  CommitNextWrite();
}

void ServerSession::OnAcks(bool replicated) {
  if (!acking_ || closed()) return;
  WriteAck ack = std::move(*acking_);
  acking_.reset();
  if (!replicated) {
    // Committed all the same (its seq says where): only the promise of
    // replication failed, so later writes go on.
    ack.error = "not replicated: committed at sequence " + std::to_string(ack.seq) +
                ", but fewer than " + std::to_string(options_.min_acks) +
                " followers applied it in time";
  }
  Send(ack);
  CommitNextWrite();
}

bool ServerSession::wants_input() const { return queued_write_bytes_ < options_.max_frame; }

bool ServerSession::OnBatch(const Batch& batch) {
  return OnBatch(std::make_shared<const Batch>(batch));
}

// Queued as it is: TakeOutput encodes it (or copies its shared frame) when
// the connection has room.
bool ServerSession::OnBatch(std::shared_ptr<const Batch> batch,
                            std::shared_ptr<const std::string> frame) {
  if (state_ != State::kStreaming || !RulesFor(hello_.role).streams) return false;
  uint64_t last = LastSeq(*batch);
  if (last <= sent_seq_) return false;  // before the stream's start, or sent already
  Outgoing item;
  item.batch = std::move(batch);
  item.frame = std::move(frame);
  out_.push_back(std::move(item));
  ++batches_held_;
  sent_seq_ = last;
  return true;
}

void ServerSession::RequestSync() {
  if (!RulesFor(hello_.role).diffs) return;
  if (state_ != State::kStreaming || bootstrapping_ || sync_phase_ != SyncPhase::kIdle) {
    if (sync_phase_ != SyncPhase::kWantSnapshot) sync_again_ = true;
    return;
  }
  sync_phase_ = SyncPhase::kWantSnapshot;
  Event(ServerEvent::WantSnapshot(sent_seq_));
}

void ServerSession::RequestCorrection() {
  holds_all_ = false;
  verify_after_ms_.reset();
  correction_sync_floor_ = sync_id_ + (sync_phase_ == SyncPhase::kIdle ? 0 : 1);
  RequestSync();
}

void ServerSession::StartSync(TreeView snapshot, uint64_t snapshot_seq) {
  if (state_ != State::kStreaming || sync_phase_ != SyncPhase::kWantSnapshot) return;
  // Nothing will ever stream what lies between: batches up to the snapshot
  // are its content, and the diff brings them.
  if (RulesFor(hello_.role).streams) sent_seq_ = std::max(sent_seq_, snapshot_seq);
  ++sync_id_;
  uint64_t salt = 0;
  hooks_.random_bytes(reinterpret_cast<uint8_t*>(&salt), sizeof(salt));
  SyncStart start;
  start.sync_id = sync_id_;
  start.seq = sent_seq_;
  start.salt = salt;
  start.hash_bytes = options_.hash_bytes;
  start.root = snapshot.root_hash();
  start.key_count = snapshot.size();
  comparer_ = std::make_unique<DiffComparer>(std::move(snapshot), salt, options_.hash_bytes);
  Send(start);
  sync_phase_ = SyncPhase::kAwaitRoot;
  round_trips_ = 1;
  repaired_ = 0;
  next_to_send_ = 0;
  read_group_ = kReadGroup;
  repair_read_.clear();
  repair_next_ = 0;
  repair_ = Repair{};
  repair_bytes_ = 0;
  deletes_sent_ = false;
  outstanding_.clear();
}

void ServerSession::HandleSyncRoot(const SyncRoot& root) {
  if (sync_phase_ != SyncPhase::kAwaitRoot || root.sync_id != sync_id_) {
    return Fail(Status::ProtocolError("SyncRoot outside its diff"));
  }
  if (root.equal) {
    if (root.root != comparer_->master_root()) {
      return Fail(Status::ProtocolError("SyncRoot: claims equal roots but root differs"));
    }
    return FinishSync();
  }
  if (root.hash_bytes != options_.hash_bytes) {
    return Fail(Status::ProtocolError("SyncRoot: wrong hash width"));
  }
  Status s = comparer_->OnRoot(root.root, root.top);
  if (!s.ok()) return Fail(s);
  AskOrRepair();
}

void ServerSession::HandleNodes(const Nodes& nodes) {
  if (sync_phase_ != SyncPhase::kAwaitNodes || nodes.sync_id != sync_id_ || outstanding_.empty()) {
    return Fail(Status::ProtocolError("Nodes outside its diff"));
  }
  const std::vector<std::string>& paths = outstanding_.front();
  if (nodes.summaries.size() != paths.size() || nodes.hash_bytes != options_.hash_bytes) {
    return Fail(Status::ProtocolError("Nodes: " + std::to_string(nodes.summaries.size()) +
                                      " summaries for " + std::to_string(paths.size()) + " paths"));
  }
  for (size_t i = 0; i < paths.size(); ++i) {
    Status s = comparer_->OnSummary(paths[i], nodes.summaries[i]);
    if (!s.ok()) return Fail(s);
  }
  outstanding_.pop_front();
  if (outstanding_.empty()) AskOrRepair();
}

// Sends the next level's questions, each with our summary of the children
// there for the follower to compare, all at once in frames whose answers fit
// our frame limit, or moves on to repair when nothing is left to ask.
void ServerSession::AskOrRepair() {
  std::vector<std::string> paths = comparer_->TakePending();
  if (paths.empty()) {
    comparer_->ReleaseSnapshot();
    sync_phase_ = SyncPhase::kRepairing;
    return;
  }
  ++round_trips_;
  // An answer per path holds at most kMaxDetails summaries of at most
  // kFoldAbove children (or a few listed leaves) each, once decoded.
  constexpr size_t kMaxAnswerMemory =
      kMaxDetails * (sizeof(NodeSummary) + 1 + kFoldAbove * (sizeof(uint64_t) + 1));
  size_t per_frame =
      std::clamp<size_t>(options_.max_frame / kMaxAnswerMemory, 1, wire::kMaxPathsPerRequest);
  for (size_t begin = 0; begin < paths.size(); begin += per_frame) {
    size_t end = std::min(paths.size(), begin + per_frame);
    NodesRequest request;
    request.sync_id = sync_id_;
    request.hash_bytes = options_.hash_bytes;
    request.paths.assign(std::make_move_iterator(paths.begin() + begin),
                         std::make_move_iterator(paths.begin() + end));
    request.summaries.reserve(request.paths.size());
    for (const std::string& path : request.paths) {
      request.summaries.push_back(comparer_->Probe(path, paths.size()));
    }
    Send(request);
    outstanding_.push_back(std::move(request.paths));
  }
  sync_phase_ = SyncPhase::kAwaitNodes;
}

// One Repair frame: current values (or deletes) of keys the diff found, read
// after the diff's snapshot (the follower drops a repair of a key the stream
// wrote since); at most bulk_frame_bytes of ops (at least one). A value too
// large for a frame goes on its own, as a PutStart and ValueParts. When the
// values read so far run out, the frame waits in repair_ for the next read.
void ServerSession::EmitRepairFrame() {
  std::vector<KeyRef>& keys = comparer_->to_send();
  std::optional<Op> large;
  for (;;) {
    if (repair_next_ == repair_read_.size()) {
      if (next_to_send_ == keys.size()) break;
      size_t end = std::min(keys.size(), next_to_send_ + read_group_);
      return Ask(DbRequest::ReadKeys(
          std::vector<KeyRef>(keys.begin() + next_to_send_, keys.begin() + end)));
    }
    Op& op = repair_read_[repair_next_];
    if (IsLargePut(op)) {
      if (repair_.ops.empty()) large = std::move(repair_read_[repair_next_++]);
      break;
    }
    if (!repair_.ops.empty() && repair_bytes_ + OpBytes(op) > options_.bulk_frame_bytes) break;
    repair_bytes_ += OpBytes(op);
    repair_.ops.push_back(std::move(repair_read_[repair_next_++]));
  }
  Repair repair = std::exchange(repair_, Repair{});
  size_t bytes = std::exchange(repair_bytes_, 0);
  repair.sync_id = sync_id_;
  bool read_all = next_to_send_ == keys.size() && repair_next_ == repair_read_.size();
  if (read_all && !deletes_sent_ && !large) {
    std::vector<Hash128>& only = comparer_->follower_only();
    size_t room = (options_.bulk_frame_bytes - std::min(bytes, options_.bulk_frame_bytes)) /
                  (2 * sizeof(Hash128));
    size_t take = std::min({only.size(), kDeletesPerFrame, std::max<size_t>(room, 1)});
    repair.delete_key_hashes.assign(only.end() - take, only.end());
    only.resize(only.size() - take);
    deletes_sent_ = only.empty();
  }
  repaired_ += repair.ops.size() + repair.delete_key_hashes.size() + (large ? 1 : 0);
  if (!repair.ops.empty() || !repair.delete_key_hashes.empty()) Send(repair);
  if (large) QueueLargePut(PutContext::kRepair, sync_id_, std::move(*large));
  if (read_all && deletes_sent_) FinishSync();
}

// The values of the next group of keys to repair, into repair_read_.
void ServerSession::OnKeysRead(DbAnswer& answer) {
  if (sync_phase_ != SyncPhase::kRepairing) return;  // the diff ended meanwhile
  if (!answer.status.ok() || answer.values.size() != answer.keys.size()) {
    return Fail(answer.status.ok() ? Status::IOError("read returned the wrong number of values")
                                   : answer.status,
                RejectCode::kInternal);
  }
  repair_read_.clear();
  repair_next_ = 0;
  size_t read_bytes = 0;
  for (size_t i = 0; i < answer.keys.size(); ++i) {
    Op op;
    op.kind = answer.values[i] ? OpKind::kPut : OpKind::kDelete;
    op.family = answer.keys[i].family;
    op.key = std::move(answer.keys[i].key);
    if (answer.values[i]) op.value = std::move(*answer.values[i]);
    read_bytes += OpBytes(op);
    repair_read_.push_back(std::move(op));
  }
  next_to_send_ += answer.keys.size();
  // A read holds every value of its group at once: after large values,
  // read a key at a time, so the session holds about one value.
  read_group_ = read_bytes > options_.bulk_frame_bytes ? 1 : std::min(kReadGroup, read_group_ * 2);
}

void ServerSession::FinishSync() {
  bool complete = comparer_->complete();
  SyncDone done;
  done.sync_id = sync_id_;
  done.repaired = repaired_;
  done.retry = !complete;
  Send(done);
  last_round_trips_ = round_trips_;
  comparer_.reset();
  sync_phase_ = SyncPhase::kIdle;
  Event(ServerEvent::SyncDone(sent_seq_, repaired_, complete, round_trips_));
  if (!complete) {
    if (++retries_ > options_.max_sync_retries) {
      return Fail(Status::Aborted("diff did not converge after " +
                                  std::to_string(options_.max_sync_retries) + " attempts"),
                  RejectCode::kInternal);
    }
    return RequestSync();
  }
  retries_ = 0;
  ++syncs_completed_;
  // The follower holds everything once it has applied the repairs: a Pong
  // answering a Ping sent after this SyncDone says so (OnTick sends one, in a
  // later millisecond than every Ping before, so the echo tells them apart).
  if (hello_.role == Role::kFollower && !holds_all_ && !verify_after_ms_ &&
      sync_id_ > correction_sync_floor_) {
    verify_after_ms_ = std::max<int64_t>(last_ping_ms_, 0);
  }
  if (std::exchange(sync_again_, false)) RequestSync();
}

// The next chunk of the snapshot's entries, up to the next entry too large for
// a frame, which goes on its own as a PutStart and ValueParts.
void ServerSession::EmitBootstrapChunk() {
  if (bootstrap_next_ == bootstrap_entries_.size() && !bootstrap_scan_done_) {
    return Ask(DbRequest::ScanBootstrap(options_.bulk_frame_bytes));
  }
  // Entries up to bulk_frame_bytes (at least one), up to a large one.
  size_t end = bootstrap_next_;
  size_t bytes = 0;
  while (end < bootstrap_entries_.size() && !IsLargePut(bootstrap_entries_[end]) &&
         (end == bootstrap_next_ ||
          bytes + OpBytes(bootstrap_entries_[end]) <= options_.bulk_frame_bytes)) {
    bytes += OpBytes(bootstrap_entries_[end++]);
  }
  bool large = end < bootstrap_entries_.size() && IsLargePut(bootstrap_entries_[end]);
  bool more = end < bootstrap_entries_.size();
  BootstrapChunk chunk;
  chunk.seq = bootstrap_seq_;
  chunk.entries.assign(std::make_move_iterator(bootstrap_entries_.begin() + bootstrap_next_),
                       std::make_move_iterator(bootstrap_entries_.begin() + end));
  chunk.last = !more && bootstrap_scan_done_;
  bootstrap_next_ = end;
  if (!chunk.entries.empty() || !large) Send(chunk);
  if (large) {
    QueueLargePut(PutContext::kBootstrap, bootstrap_seq_,
                  std::move(bootstrap_entries_[bootstrap_next_++]));
  }
  if (chunk.last) {
    bootstrapping_ = false;
    std::vector<Op>().swap(bootstrap_entries_);
    bootstrap_next_ = 0;
    if (std::exchange(sync_again_, false)) RequestSync();
  }
}

// The next piece of the current file, read by the embedder (kReadFile).
void ServerSession::EmitFileChunk() {
  size_t want = FileChunkBytes();
  if (want == 0) {
    file_buffer_.clear();
    return SendFileChunk(std::move(file_buffer_), 0);
  }
  Ask(DbRequest::ReadFile(files_, file_index_, file_offset_, want, std::move(file_buffer_)));
}

// The data the next FileChunk carries: at least a byte, so a zero
// bulk_frame_bytes still makes progress; none only at a file's end.
size_t ServerSession::FileChunkBytes() const {
  size_t chunk_bytes = std::min(options_.bulk_frame_bytes, options_.file_chunk_bytes);
  return static_cast<size_t>(std::min<uint64_t>(files_->files()[file_index_].size - file_offset_,
                                                std::max<size_t>(chunk_bytes, 1)));
}

// A FileChunk of `data`, read for `want` bytes. The chunk marked last ends
// the session: the files are released at once, and the net layer closes
// after sending.
void ServerSession::SendFileChunk(std::string data, size_t want) {
  const FileSource::File& file = files_->files()[file_index_];
  if (data.size() != want) {
    return Fail(Status::IOError("file " + file.name + (data.size() < want ? " shrank" : " grew") +
                                " while being copied: " + std::to_string(data.size()) +
                                " bytes at offset " + std::to_string(file_offset_) + " of its " +
                                std::to_string(file.size) + ", expected " + std::to_string(want)),
                RejectCode::kInternal);
  }
  FileChunk chunk;
  chunk.data = std::move(data);
  chunk.name = file.name;
  chunk.file_size = file.size;
  chunk.offset = file_offset_;
  chunk.data_hash = DataHash64(chunk.data);
  file_offset_ += want;
  bool file_done = file_offset_ == file.size;
  chunk.last = file_done && file_index_ + 1 == files_->files().size();
  Send(chunk);
  file_buffer_ = std::move(chunk.data);
  if (file_done) {
    ++file_index_;
    file_offset_ = 0;
  }
  if (chunk.last) End(Status::OK());
}

std::shared_ptr<const std::string> SharedBatchFrame(const Batch& batch, size_t bulk_frame_bytes) {
  size_t total = 0;
  size_t data = 0;
  for (const Op& op : batch.ops) {
    total += OpBytes(op);
    data += op.key.size() + op.value.size();
  }
  if (total > bulk_frame_bytes) return nullptr;  // EncodeBatch sends it in pieces
  // The frame's size at most, so that it is allocated once, not regrown a
  // dozen times for a batch of 100 puts: the header (4), type (1), seq,
  // count and op count (10 each at most); per op its kind (1), family (3)
  // and two lengths (10 each at most).
  auto frame = std::make_shared<std::string>();
  frame->reserve(wire::kFrameHeaderSize + 1 + 3 * 10 + batch.ops.size() * 24 + data);
  wire::AppendFrame(batch, frame.get());
  return frame;
}

bool ServerSession::IsLargePut(const Op& op) const {
  return op.kind == OpKind::kPut && !op.value.empty() && OpBytes(op) > options_.bulk_frame_bytes;
}

void ServerSession::QueueLargePut(PutContext context, uint64_t id, Op op) {
  auto one = std::make_shared<Batch>();
  one->ops.push_back(std::move(op));
  Outgoing item;
  item.batch = std::move(one);
  item.context = context;
  item.id = id;
  out_.push_back(std::move(item));
}

// Output in order, encoded until about bulk_frame_bytes are out; then, with
// nothing left queued, the next bulk frame (repair, bootstrap, file).
std::string ServerSession::TakeOutput() {
  std::string result;
  // Frames made already (a batch's shared frame, control frames) are copied
  // whole: size the output for those at the front at once, rather than
  // growing it, and copying it again, as they are appended.
  size_t ready = 0;
  for (const Outgoing& item : out_) {
    if (ready >= options_.bulk_frame_bytes || (item.batch && !item.frame)) break;
    ready += item.frame ? item.frame->size() : item.bytes.size();
  }
  if (out_.size() > 1) result.reserve(ready);
  for (;;) {
    while (!out_.empty() && result.size() < options_.bulk_frame_bytes) {
      Outgoing& item = out_.front();
      if (!EncodeSome(item, &result)) break;
      if (item.batch && item.context == PutContext::kBatch) --batches_held_;
      out_.pop_front();
    }
    if (!out_.empty() || result.size() >= options_.bulk_frame_bytes ||
        state_ != State::kStreaming || waiting_) {
      break;
    }
    if (sync_phase_ == SyncPhase::kRepairing) {
      EmitRepairFrame();
    } else if (bootstrapping_) {
      EmitBootstrapChunk();
    } else if (files_) {
      EmitFileChunk();
    } else {
      break;
    }
  }
  return result;
}

// Appends frames of `item` until it is done (true) or *out holds about
// bulk_frame_bytes (false: the rest waits for the next TakeOutput).
bool ServerSession::EncodeSome(Outgoing& item, std::string* out) {
  if (!item.batch) {
    if (out->empty()) {
      out->swap(item.bytes);
    } else {
      out->append(item.bytes);
    }
    return true;
  }
  if (item.context != PutContext::kBatch) return EncodeLargePut(item, out);
  return EncodeBatch(item, out);
}

// A batch within bulk_frame_bytes is one Batch frame. A larger one goes in
// BatchParts of whole ops, at least one op each, and each put too large for a
// frame between two parts, as a PutStart and ValueParts.
bool ServerSession::EncodeBatch(Outgoing& item, std::string* out) {
  if (item.frame) {
    // SharedBatchFrame decided, with the same bulk_frame_bytes, that the
    // batch goes whole: its ops need not be read again here.
    out->append(*item.frame);
    ++shared_frames_sent_;
    return true;
  }
  const Batch& batch = *item.batch;
  const size_t budget = options_.bulk_frame_bytes;
  if (!item.started) {
    size_t total = 0;
    item.data_bytes = 0;
    for (const Op& op : batch.ops) {
      total += OpBytes(op);
      item.data_bytes += op.key.size() + op.value.size();
    }
    if (total <= budget) {
      wire::AppendFrame(batch, out);
      return true;
    }
  }
  while (out->size() < budget) {
    size_t end = item.next_op;
    size_t bytes = 0;
    while (!item.put_open && end < batch.ops.size() && !IsLargePut(batch.ops[end]) &&
           (end == item.next_op || bytes + OpBytes(batch.ops[end]) <= budget)) {
      bytes += OpBytes(batch.ops[end++]);
    }
    bool last = end == batch.ops.size();
    if (!item.put_open && (end > item.next_op || !item.started || last)) {
      wire::AppendBatchPart(
          batch.seq, batch.count, item.data_bytes,
          std::span<const Op>(batch.ops).subspan(item.next_op, end - item.next_op), last, out);
      item.started = true;
      item.next_op = end;
      if (last) return true;
      continue;
    }
    // ops[next_op] is a large put, started or not.
    if (!EncodeLargePut(item, out)) return false;
    item.put_open = false;
    item.value_offset = 0;
    ++item.next_op;
  }
  return false;
}

// The large put at item.next_op: its PutStart, then ValueParts of at most
// bulk_frame_bytes until the value is out (true) or *out is full (false).
bool ServerSession::EncodeLargePut(Outgoing& item, std::string* out) {
  const Op& op = item.batch->ops[item.next_op];
  const size_t budget = std::max<size_t>(options_.bulk_frame_bytes, 1);
  if (!item.put_open) {
    PutStart start;
    start.context = item.context;
    start.id = item.context == PutContext::kBatch ? item.batch->seq : item.id;
    start.family = op.family;
    start.key = op.key;
    start.value_size = op.value.size();
    wire::AppendFrame(start, out);
    item.put_open = true;
  }
  // A ValuePart frame (type, length, data) stays within the budget.
  const size_t piece = budget > 2 * kValuePartOverhead ? budget - kValuePartOverhead : budget;
  while (item.value_offset < op.value.size()) {
    if (out->size() >= budget) return false;
    size_t n = std::min(op.value.size() - item.value_offset, piece);
    wire::AppendValuePart(std::string_view(op.value).substr(item.value_offset, n), out);
    item.value_offset += n;
  }
  return true;
}

bool ServerSession::wants_write() const {
  return !out_.empty() || (state_ == State::kStreaming && !waiting_ &&
                           (sync_phase_ == SyncPhase::kRepairing || bootstrapping_ || files_));
}

void ServerSession::Ask(DbRequest request) {
  waiting_ = request.kind;
  request_ = std::move(request);
}

std::optional<DbRequest> ServerSession::PollDbRequest() {
  return std::exchange(request_, std::nullopt);
}

void ServerSession::OnDbAnswer(DbAnswer answer) {
  if (closed() || !waiting_ || answer.kind != *waiting_ || request_) return;
  waiting_.reset();
  switch (answer.kind) {
    case DbRequest::Kind::kReadKeys:
      return OnKeysRead(answer);
    case DbRequest::Kind::kOpenBootstrap:
      return OnBootstrapOpened(answer);
    case DbRequest::Kind::kScanBootstrap:
      bootstrap_entries_ = std::move(answer.ops);
      bootstrap_next_ = 0;
      bootstrap_scan_done_ = answer.done;
      return;
    case DbRequest::Kind::kOpenFiles:
      return OnFilesOpened(answer);
    case DbRequest::Kind::kReadFile:
      if (!answer.status.ok()) return Fail(answer.status, RejectCode::kInternal);
      return SendFileChunk(std::move(answer.data), FileChunkBytes());
    case DbRequest::Kind::kCommitWrite:
      return OnWriteCommitted(answer);
  }
}

bool ServeDbRequestsNow(ServerSession& session, const MasterHooks& hooks) {
  bool served = false;
  while (std::optional<DbRequest> request = session.PollDbRequest()) {
    session.OnDbAnswer(ServeDbRequest(hooks, std::move(*request)));
    served = true;
  }
  return served;
}

std::optional<ServerEvent> ServerSession::PollEvent() {
  if (events_.empty()) return std::nullopt;
  ServerEvent event = std::move(events_.front());
  events_.pop_front();
  return event;
}

void ServerSession::OnTick(int64_t now_ms) {
  now_ms_ = now_ms;
  if (closed()) return;
  if (last_received_ms_ < 0) last_received_ms_ = now_ms;
  if (now_ms - last_received_ms_ > options_.idle_timeout_ms) {
    return Fail(Status::Aborted("follower silent for " +
                                std::to_string(now_ms - last_received_ms_) + " ms"));
  }
  bool verify =
      verify_after_ms_ && last_ping_ms_ <= *verify_after_ms_ && now_ms > *verify_after_ms_;
  if (state_ == State::kStreaming && (now_ms >= next_ping_ms_ || verify)) {
    uint64_t newest = hooks_.newest_seq ? hooks_.newest_seq() : hooks_.current_seq();
    Send(Ping{newest, static_cast<uint64_t>(now_ms)});
    next_ping_ms_ = now_ms + options_.ping_interval_ms;
    last_ping_ms_ = now_ms;
  }
}

void ServerSession::Close(std::string_view reason, RejectCode code) {
  Fail(Status::Aborted(reason), code);
}

void ServerSession::OnAuditDone(const Status& status, AuditReport report) {
  if (!std::exchange(audit_running_, false) || closed()) return;
  if (!status.ok()) {
    report = AuditReport{};
    report.error = status.ToString();
  }
  // Within the frame's limits whatever the hook filled in.
  if (report.examples.size() > wire::kMaxAuditExamples) {
    report.examples.resize(wire::kMaxAuditExamples);
  }
  for (std::string& example : report.examples) {
    if (example.size() > wire::kMaxAuditExampleBytes) example.resize(wire::kMaxAuditExampleBytes);
  }
  Send(report);
  End(Status::OK());
}

void ServerSession::Fail(Status status, RejectCode code) {
  if (closed()) return;
  // Frames already made go out; batches and puts not wholly sent do not (the
  // follower drops a batch or put it did not get whole), nor anything after.
  out_.erase(std::find_if(out_.begin(), out_.end(), [](const Outgoing& o) { return o.batch; }),
             out_.end());
  batches_held_ = 0;
  Send(Reject{code, status.message()});
  End(std::move(status));
}

// Closed: what the session held is released (the files at once), and work
// not handed out yet is not done (a queued write stays unacknowledged).
void ServerSession::End(Status status) {
  state_ = State::kClosed;
  error_ = std::move(status);
  comparer_.reset();
  files_.reset();
  request_.reset();
  writes_.clear();
  queued_write_bytes_ = 0;
  Event(ServerEvent::Closed(error_));
}

std::string ServerSession::RandomBytes(size_t n) {
  std::string out(n, '\0');
  hooks_.random_bytes(reinterpret_cast<uint8_t*>(out.data()), n);
  return out;
}

}  // namespace sdiff
