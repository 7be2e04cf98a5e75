// The master's protocol state machine. State transitions live in Handle():
//
//   state        message        -> action
//   kAwaitHello  Hello          -> Challenge                       -> kAwaitAuth
//   kAwaitAuth   Auth           -> Welcome (resume|diff|bootstrap|files) -> kStreaming
//   kStreaming   SyncRequest    -> a diff (now, or after the one running)
//                SyncRoot       -> NodesRequest | repair            (diff: kAwaitRoot)
//                Nodes          -> NodesRequest | repair            (diff: kAwaitNodes)
//                Pong           -> note the follower's applied sequence
//                Write          -> WriteAck                        (writers only)
//   (output)     cloner's files -> FileChunk ... last: release them -> kClosed, OK
//   any          Reject         -> closed
//   anything else is a protocol error: Reject, closed.
// Roles: a follower streams (resume, diff or bootstrap); an inspector gets no
// stream and is diffed once, at once; a writer gets neither and sends Writes;
// a cloner gets neither: Welcome (mode kFiles), the master's files, and a
// clean close; it may send only Pongs.
#include "engine/server_session.h"

#include <algorithm>
#include <utility>

namespace sdiff {
namespace {

constexpr size_t kNonceBytes = 32;
constexpr size_t kMaxPathsPerRequest = 4096;
constexpr size_t kReadGroup = 256;          // keys per ReadFun call while repairing
constexpr size_t kDeletesPerFrame = 65536;  // follower-only key hashes per Repair frame

size_t OpBytes(const Op& op) { return op.key.size() + op.value.size() + 16; }

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
  if (!s.ok()) Fail(RejectCode::kProtocol, s);
}

void ServerSession::Handle(Message& message) {
  if (auto* reject = std::get_if<Reject>(&message)) {
    state_ = State::kClosed;
    error_ = Status::Aborted("follower closed the session: " + reject->reason);
    return Event({ServerEvent::Kind::kClosed, 0, 0, false, 0, error_});
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
        return;
      }
      if (auto* write = std::get_if<Write>(&message)) return HandleWrite(*write);
      // Writers and cloners take part in no diff.
      if (hello_.role == Role::kWriter || hello_.role == Role::kCloner) break;
      if (std::holds_alternative<SyncRequest>(message)) return RequestSync();
      if (auto* root = std::get_if<SyncRoot>(&message)) return HandleSyncRoot(*root);
      if (auto* nodes = std::get_if<Nodes>(&message)) return HandleNodes(*nodes);
      break;
    case State::kClosed:
      return;
  }
  Fail(RejectCode::kProtocol,
       Status::ProtocolError(std::string("unexpected ") + MessageName(message)));
}

void ServerSession::HandleHello(Hello& hello) {
  if (hello.min_version > wire::kProtocolVersion || hello.max_version < wire::kProtocolVersion) {
    return Fail(RejectCode::kVersion,
                Status::ProtocolError("no common protocol version: follower speaks " +
                                      std::to_string(hello.min_version) + ".." +
                                      std::to_string(hello.max_version) + ", master speaks " +
                                      std::to_string(wire::kProtocolVersion)));
  }
  if (hello.client_nonce.size() != kNonceBytes) {
    return Fail(RejectCode::kProtocol, Status::ProtocolError("Hello: nonce must be 32 bytes"));
  }
  if (hello.role == Role::kWriter && !hooks_.write) {
    return Fail(RejectCode::kRole, Status::ProtocolError("this master does not accept writers"));
  }
  if (hello.role == Role::kCloner && !hooks_.open_files) {
    return Fail(RejectCode::kRole, Status::ProtocolError("this master does not serve its files"));
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
      return Fail(
          RejectCode::kAuth,
          Status::ProtocolError("authentication required: this master has a shared secret"));
    }
    if (!options_.authenticator->Verify(FollowerProofMessage(hello_.client_nonce, server_nonce_),
                                        auth.client_proof)) {
      return Fail(RejectCode::kAuth, Status::ProtocolError("authentication failed: wrong secret"));
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
  if (hello_.role == Role::kCloner) return StartCloning(welcome);
  bool same_master = hello_.master_id == options_.master_id;
  bool follower = hello_.role == Role::kFollower;
  if (!follower) {
    welcome.mode = StartMode::kDiff;  // no stream; an inspector is diffed below
    welcome.resume_from = current + 1;
  } else if (same_master && !hello_.bootstrapping && hello_.applied_seq > 0 &&
             hello_.applied_seq <= current && hooks_.can_resume(hello_.applied_seq)) {
    welcome.mode = StartMode::kResume;
    welcome.resume_from = hello_.applied_seq + 1;
  } else if ((hello_.key_count == 0 || (hello_.bootstrapping && same_master)) &&
             hooks_.open_bootstrap && hooks_.key_count() >= options_.bootstrap_min_keys) {
    bool resume = hello_.bootstrapping && same_master;
    bootstrap_seq_ = hooks_.open_bootstrap(resume, hello_.bootstrap_family, hello_.bootstrap_key);
    welcome.mode = StartMode::kBootstrap;
    welcome.master_seq = bootstrap_seq_;
    welcome.resume_from = bootstrap_seq_ + 1;
    bootstrapping_ = true;
  } else {
    welcome.mode = StartMode::kDiff;
    welcome.resume_from = current + 1;
  }
  Send(welcome);
  state_ = State::kStreaming;
  stream_from_ = welcome.resume_from;
  sent_seq_ = welcome.resume_from - 1;
  if (follower) Event({ServerEvent::Kind::kStreamFrom, stream_from_, 0, false, 0, Status::OK()});
  if (hello_.role == Role::kInspector ||
      (follower && welcome.mode == StartMode::kDiff && options_.diff_on_connect)) {
    RequestSync();
  }
}

// A cloner: Welcome (mode kFiles), then the files come out of TakeOutput.
void ServerSession::StartCloning(Welcome& welcome) {
  uint64_t keys = hooks_.key_count();
  if (keys < options_.bootstrap_min_keys) {
    return Fail(
        RejectCode::kRole,
        Status::ProtocolError("the master holds " + std::to_string(keys) + " keys, fewer than " +
                              std::to_string(options_.bootstrap_min_keys) +
                              ": follow it instead of copying its files"));
  }
  std::unique_ptr<FileSource> source;
  Status s = hooks_.open_files(&source);
  if (!s.ok()) {
    // A configuration a copy would not reproduce is a refusal the cloner
    // expects; anything else is the master failing.
    return Fail(
        s.code() == Status::Code::kInvalidArgument ? RejectCode::kRole : RejectCode::kInternal, s);
  }
  if (source == nullptr || source->files().empty()) {
    return Fail(RejectCode::kInternal, Status::IOError("the master has no files to copy"));
  }
  for (const FileSource::File& file : source->files()) {
    if (!IsPlainFileName(file.name)) {
      return Fail(RejectCode::kInternal,
                  Status::InvalidArgument("file \"" + file.name + "\" is not a plain file name"));
    }
  }
  files_ = std::move(source);
  file_index_ = 0;
  file_offset_ = 0;
  welcome.mode = StartMode::kFiles;
  welcome.resume_from = welcome.master_seq + 1;
  Send(welcome);
  state_ = State::kStreaming;
}

void ServerSession::HandleWrite(const Write& write) {
  if (hello_.role != Role::kWriter) {
    return Fail(RejectCode::kProtocol, Status::ProtocolError("Write from a non-writer"));
  }
  WriteAck ack;
  ack.id = write.id;
  // A writer keeps several writes in flight: those it sent before hearing of
  // a failure must not be committed behind it, so a session's committed
  // writes are always the ones before its first failure.
  if (failed_write_) {
    ack.error = "not written: write " + std::to_string(*failed_write_) + " before it failed";
    return Send(ack);
  }
  for (const Op& op : write.ops) {
    bool known = std::any_of(options_.families.begin(), options_.families.end(),
                             [&](const FamilyInfo& f) { return f.tag == op.family; });
    if (!known) {
      ack.error = "no replicated column family has tag " + std::to_string(op.family);
      break;
    }
  }
  if (ack.error.empty()) {
    Status s = hooks_.write(write.ops, &ack.seq);
    if (!s.ok()) ack.error = s.ToString();
  }
  if (!ack.error.empty()) {
    ack.seq = 0;
    failed_write_ = write.id;
  }
  Send(ack);
}

void ServerSession::OnBatch(const Batch& batch) {
  if (state_ != State::kStreaming || hello_.role != Role::kFollower) return;
  uint64_t last = batch.seq + std::max<uint64_t>(batch.count, 1) - 1;
  if (last <= sent_seq_) return;  // before the stream's start, or sent already
  Send(batch);
  sent_seq_ = last;
}

void ServerSession::RequestSync() {
  if (hello_.role == Role::kWriter || hello_.role == Role::kCloner) return;
  if (state_ != State::kStreaming || bootstrapping_ || sync_phase_ != SyncPhase::kIdle) {
    if (sync_phase_ != SyncPhase::kWantSnapshot) sync_again_ = true;
    return;
  }
  sync_phase_ = SyncPhase::kWantSnapshot;
  Event({ServerEvent::Kind::kWantSnapshot, sent_seq_, 0, false, 0, Status::OK()});
}

void ServerSession::StartSync(TreeView snapshot) {
  if (state_ != State::kStreaming || sync_phase_ != SyncPhase::kWantSnapshot) return;
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
  deletes_sent_ = false;
  outstanding_.clear();
}

void ServerSession::HandleSyncRoot(const SyncRoot& root) {
  if (sync_phase_ != SyncPhase::kAwaitRoot || root.sync_id != sync_id_) {
    return Fail(RejectCode::kProtocol, Status::ProtocolError("SyncRoot outside its diff"));
  }
  if (root.equal) {
    if (root.root != comparer_->master_root()) {
      return Fail(RejectCode::kProtocol,
                  Status::ProtocolError("SyncRoot: claims equal roots but root differs"));
    }
    return FinishSync();
  }
  if (root.hash_bytes != options_.hash_bytes) {
    return Fail(RejectCode::kProtocol, Status::ProtocolError("SyncRoot: wrong hash width"));
  }
  Status s = comparer_->OnRoot(root.root, root.top);
  if (!s.ok()) return Fail(RejectCode::kProtocol, s);
  AskOrRepair();
}

void ServerSession::HandleNodes(const Nodes& nodes) {
  if (sync_phase_ != SyncPhase::kAwaitNodes || nodes.sync_id != sync_id_ || outstanding_.empty()) {
    return Fail(RejectCode::kProtocol, Status::ProtocolError("Nodes outside its diff"));
  }
  const std::vector<std::string>& paths = outstanding_.front();
  if (nodes.summaries.size() != paths.size() || nodes.hash_bytes != options_.hash_bytes) {
    return Fail(RejectCode::kProtocol,
                Status::ProtocolError("Nodes: " + std::to_string(nodes.summaries.size()) +
                                      " summaries for " + std::to_string(paths.size()) + " paths"));
  }
  for (size_t i = 0; i < paths.size(); ++i) {
    Status s = comparer_->OnSummary(paths[i], nodes.summaries[i]);
    if (!s.ok()) return Fail(RejectCode::kProtocol, s);
  }
  outstanding_.pop_front();
  if (outstanding_.empty()) AskOrRepair();
}

// Sends the next level's questions, all at once in frames of bounded size, or
// moves on to repair when nothing is left to ask.
void ServerSession::AskOrRepair() {
  std::vector<std::string> paths = comparer_->TakePending();
  if (paths.empty()) {
    sync_phase_ = SyncPhase::kRepairing;
    return;
  }
  ++round_trips_;
  for (size_t begin = 0; begin < paths.size(); begin += kMaxPathsPerRequest) {
    size_t end = std::min(paths.size(), begin + kMaxPathsPerRequest);
    NodesRequest request;
    request.sync_id = sync_id_;
    request.paths.assign(std::make_move_iterator(paths.begin() + begin),
                         std::make_move_iterator(paths.begin() + end));
    Send(request);
    outstanding_.push_back(std::move(request.paths));
  }
  sync_phase_ = SyncPhase::kAwaitNodes;
}

// One Repair frame: current values (or deletes) of keys the diff found, read
// now, so that the frame is right at its place in the stream.
void ServerSession::EmitRepairFrame() {
  std::vector<KeyRef>& keys = comparer_->to_send();
  Repair repair;
  repair.sync_id = sync_id_;
  size_t bytes = 0;
  while (next_to_send_ < keys.size() && bytes < options_.bulk_frame_bytes) {
    size_t end = std::min(keys.size(), next_to_send_ + kReadGroup);
    std::vector<KeyRef> group(keys.begin() + next_to_send_, keys.begin() + end);
    std::vector<std::optional<std::string>> values;
    Status s = hooks_.read(group, &values);
    if (!s.ok() || values.size() != group.size()) {
      return Fail(RejectCode::kInternal,
                  s.ok() ? Status::IOError("read returned the wrong number of values") : s);
    }
    for (size_t i = 0; i < group.size(); ++i) {
      Op op;
      op.kind = values[i] ? OpKind::kPut : OpKind::kDelete;
      op.family = group[i].family;
      op.key = std::move(group[i].key);
      if (values[i]) op.value = std::move(*values[i]);
      bytes += OpBytes(op);
      repair.ops.push_back(std::move(op));
    }
    next_to_send_ = end;
  }
  if (next_to_send_ == keys.size() && !deletes_sent_) {
    std::vector<Hash128>& only = comparer_->follower_only();
    size_t take = std::min(only.size(), kDeletesPerFrame);
    repair.delete_key_hashes.assign(only.end() - take, only.end());
    only.resize(only.size() - take);
    deletes_sent_ = only.empty();
  }
  repaired_ += repair.ops.size() + repair.delete_key_hashes.size();
  if (!repair.ops.empty() || !repair.delete_key_hashes.empty()) Send(repair);
  if (next_to_send_ == keys.size() && deletes_sent_) FinishSync();
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
  Event({ServerEvent::Kind::kSyncDone, sent_seq_, repaired_, complete, round_trips_, Status::OK()});
  if (!complete) {
    if (++retries_ > options_.max_sync_retries) {
      return Fail(RejectCode::kInternal,
                  Status::Aborted("diff did not converge after " +
                                  std::to_string(options_.max_sync_retries) + " attempts"));
    }
    return RequestSync();
  }
  retries_ = 0;
  ++syncs_completed_;
  if (std::exchange(sync_again_, false)) RequestSync();
}

void ServerSession::EmitBootstrapChunk() {
  BootstrapChunk chunk;
  chunk.seq = bootstrap_seq_;
  chunk.last = hooks_.scan_bootstrap(options_.bulk_frame_bytes, &chunk.entries);
  Send(chunk);
  if (chunk.last) {
    bootstrapping_ = false;
    if (std::exchange(sync_again_, false)) RequestSync();
  }
}

// The next piece of the current file. The chunk marked last ends the session:
// the files are released at once, and the net layer closes after sending.
void ServerSession::EmitFileChunk() {
  const FileSource::File& file = files_->files()[file_index_];
  FileChunk chunk;
  chunk.data = std::move(file_buffer_);
  chunk.name = file.name;
  chunk.file_size = file.size;
  chunk.offset = file_offset_;
  // At least a byte a chunk, so a zero bulk_frame_bytes still makes progress.
  size_t chunk_bytes = std::min(options_.bulk_frame_bytes, options_.file_chunk_bytes);
  size_t want = static_cast<size_t>(
      std::min<uint64_t>(file.size - file_offset_, std::max<size_t>(chunk_bytes, 1)));
  if (want == 0) chunk.data.clear();
  if (want > 0) {
    Status s = files_->Read(file_index_, file_offset_, want, &chunk.data);
    if (!s.ok()) return Fail(RejectCode::kInternal, s);
    if (chunk.data.size() != want) {
      return Fail(
          RejectCode::kInternal,
          Status::IOError("file " + file.name + (chunk.data.size() < want ? " shrank" : " grew") +
                          " while being copied: " + std::to_string(chunk.data.size()) +
                          " bytes at offset " + std::to_string(file_offset_) + " of its " +
                          std::to_string(file.size) + ", expected " + std::to_string(want)));
    }
  }
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
  if (chunk.last) {
    files_.reset();
    state_ = State::kClosed;
    error_ = Status::OK();
    Event({ServerEvent::Kind::kClosed, 0, 0, false, 0, error_});
  }
}

std::string ServerSession::TakeOutput() {
  while (state_ == State::kStreaming && out_.size() < options_.bulk_frame_bytes) {
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
  return std::exchange(out_, {});
}

bool ServerSession::wants_write() const {
  return !out_.empty() || (state_ == State::kStreaming &&
                           (sync_phase_ == SyncPhase::kRepairing || bootstrapping_ || files_));
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
    return Fail(RejectCode::kProtocol,
                Status::Aborted("follower silent for " +
                                std::to_string(now_ms - last_received_ms_) + " ms"));
  }
  if (state_ == State::kStreaming && now_ms >= next_ping_ms_) {
    Send(Ping{hooks_.current_seq(), static_cast<uint64_t>(now_ms)});
    next_ping_ms_ = now_ms + options_.ping_interval_ms;
  }
}

void ServerSession::Close(RejectCode code, std::string_view reason) {
  Fail(code, Status::Aborted(reason));
}

void ServerSession::Fail(RejectCode code, Status status) {
  if (closed()) return;
  Send(Reject{code, status.message()});
  state_ = State::kClosed;
  error_ = std::move(status);
  comparer_.reset();
  files_.reset();
  Event({ServerEvent::Kind::kClosed, 0, 0, false, 0, error_});
}

std::string ServerSession::RandomBytes(size_t n) {
  std::string out(n, '\0');
  hooks_.random_bytes(reinterpret_cast<uint8_t*>(out.data()), n);
  return out;
}

}  // namespace sdiff
