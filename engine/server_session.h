// ServerSession: the master's side of one follower connection, sans-I/O.
//
// Inputs: bytes received (OnBytes), committed master batches (OnBatch), a
// request to diff (RequestSync), a snapshot when asked (StartSync), the
// answers to its database requests (OnDbAnswer), time (OnTick). Outputs:
// bytes to send (TakeOutput), events for the embedder (PollEvent) and
// database requests (PollDbRequest). It calls MasterHooks only for the cheap
// getters (current_seq, key_count, can_resume, random_bytes), never for
// database work. No sockets, threads or clocks inside: every run with the
// same inputs gives the same outputs.
//
// The embedder's duties:
//  - after kStreamFrom(s), feed OnBatch every committed batch from sequence s
//    on, in order (batches before the event, or below s, are ignored);
//  - after kWantSnapshot, call StartSync with the master tree as of the last
//    batch fed to this session, so both sides diff the same stream position;
//  - serve each request PollDbRequest gives (ServeDbRequest with the hooks,
//    off the I/O thread if they may block) and hand its answer to
//    OnDbAnswer; until then the session waits for it (a repair frame, a
//    bootstrap chunk, a file chunk, a write's ack, a Welcome);
//  - stop reading the peer while !wants_input() (a writer's queued writes);
//  - call TakeOutput whenever wants_write() and the connection has room: bulk
//    work (bootstrap, repair) is produced a frame at a time, paced by the reader,
//    and stream batches are encoded only then, from the shared batch (or
//    copied from the frame the hub encoded once for every session): a batch
//    or value larger than bulk_frame_bytes goes out in pieces of about that
//    size (BatchPart, PutStart, ValuePart), never whole in one buffer.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/authenticator.h"
#include "engine/master_hooks.h"
#include "engine/merkle_tree.h"
#include "engine/messages.h"
#include "engine/status.h"
#include "engine/sync.h"
#include "engine/wire.h"

namespace sdiff {

// A point of another master's history that this master's continues: a
// follower that applied `master_id` up to exactly `master_seq` holds this
// master's replicated data as of its own sequence `seq`, so it may resume
// the stream from seq + 1. A promoted follower records one (its old master
// and the sequence it had applied, and its own sequence at the promotion);
// docs/architecture.md, "Lineage".
struct LineageLink {
  std::string master_id;
  uint64_t master_seq = 0;
  uint64_t seq = 0;
  friend bool operator==(const LineageLink&, const LineageLink&) = default;
};

struct ServerOptions {
  std::string master_id;  // identity of the master database
  // Earlier identities whose followers may resume here (see LineageLink).
  // Default: none (followers of another identity diff).
  std::vector<LineageLink> lineage;
  std::vector<FamilyInfo> families;  // what the master replicates
  // The largest frame accepted once the peer has authenticated; before,
  // wire::kMaxHandshakeFrame (or this, if smaller).
  size_t max_frame = wire::kDefaultMaxFrame;
  uint8_t hash_bytes = 2;               // truncated hash width in diff summaries, 1..8
  uint64_t bootstrap_min_keys = 10000;  // empty followers of a master this big bootstrap
  // Target size of repair and bootstrap frames, of the output TakeOutput
  // returns, and of the pieces of a batch or value too large for one frame
  // (a batch whose ops add up to more goes in BatchParts; a put whose value
  // alone is larger goes as a PutStart and ValueParts of this size).
  // Default: 1 MiB. Must be below the follower's max_frame.
  size_t bulk_frame_bytes = 1 << 20;
  // Data in one FileChunk (at most bulk_frame_bytes). Small enough that the
  // master's read, encode and checksum of a chunk, and the follower's decode,
  // checksum and write, each find it in the CPU cache: 256 KiB copies twice
  // as fast as 1 MiB (docs/benchmarks.md, "Clone").
  size_t file_chunk_bytes = 256 << 10;
  // A writer's write is acknowledged only once this many followers have
  // applied it (the session emits kWaitAcks and waits for OnAcks). 0: at once.
  size_t min_acks = 0;
  int64_t ping_interval_ms = 1000;
  int64_t idle_timeout_ms = 15000;  // nothing received for this long: close
  int max_sync_retries = 8;         // consecutive incomplete diffs before giving up
  // Diff a follower that cannot resume as soon as it connects. Off: it only
  // streams until a diff is asked for (on demand or on a schedule).
  bool diff_on_connect = true;
  const Authenticator* authenticator = nullptr;  // null: no shared secret
};

struct ServerEvent {
  enum class Kind {
    kStreamFrom,    // seq: feed OnBatch from this sequence on (followers only)
    kWantSnapshot,  // call StartSync with a tree covering seq (the stream's position)
    kSyncDone,      // a diff finished: repaired keys, complete or retried
    kRunAudit,      // run MasterHooks::audit (off the I/O thread), then call OnAuditDone
    // seq: a writer's write committed there; call OnAcks once min_acks
    // followers have applied it, or when the embedder's deadline passes.
    kWaitAcks,
    kClosed,  // status says why; send what TakeOutput still holds, then close
  };
  Kind kind;
  uint64_t seq = 0;
  uint64_t repaired = 0;
  bool complete = false;
  int round_trips = 0;  // kSyncDone: SyncStart..last Nodes exchanges
  Status status;

  static ServerEvent StreamFrom(uint64_t seq) { return Of(Kind::kStreamFrom, seq); }
  static ServerEvent WantSnapshot(uint64_t seq) { return Of(Kind::kWantSnapshot, seq); }
  static ServerEvent SyncDone(uint64_t seq, uint64_t repaired, bool complete, int round_trips) {
    ServerEvent e = Of(Kind::kSyncDone, seq);
    e.repaired = repaired;
    e.complete = complete;
    e.round_trips = round_trips;
    return e;
  }
  static ServerEvent RunAudit(uint64_t seq) { return Of(Kind::kRunAudit, seq); }
  static ServerEvent WaitAcks(uint64_t seq) { return Of(Kind::kWaitAcks, seq); }
  static ServerEvent Closed(Status status) {
    ServerEvent e = Of(Kind::kClosed, 0);
    e.status = std::move(status);
    return e;
  }
  static ServerEvent Of(Kind kind, uint64_t seq) {
    ServerEvent e;
    e.kind = kind;
    e.seq = seq;
    return e;
  }
};

class ServerSession {
 public:
  ServerSession(ServerOptions options, MasterHooks hooks);
  ServerSession(const ServerSession&) = delete;
  ServerSession& operator=(const ServerSession&) = delete;

  void OnBytes(std::string_view bytes);
  // The session keeps `batch` (shared, not copied) until it has encoded it.
  // `frame`, if not null, must be SharedBatchFrame(*batch, b) with this
  // session's bulk_frame_bytes as b: it is sent as it is (copied, neither
  // encoded again nor its batch's ops read).
  // Returns whether it was queued (false: before the stream's start, sent
  // already, or not a streamed follower).
  bool OnBatch(std::shared_ptr<const Batch> batch,
               std::shared_ptr<const std::string> frame = nullptr);
  bool OnBatch(const Batch& batch);  // a copy, for tests and small embedders
  void RequestSync();
  // The master's data changed outside the stream (its tree was rebuilt after
  // a WAL gap, an audit corrected it, files were ingested): asks for a diff,
  // and until one that starts after this call completes, and the follower
  // answers a Ping sent after it, what it applied no longer proves it holds
  // every write (acked_seq() is 0).
  void RequestCorrection();
  // `snapshot_seq`: the sequence the snapshot stands at, when the tree jumped
  // past the stream (a rebuild): the diff brings the follower there, and the
  // stream goes on after it. 0: at the stream's position.
  void StartSync(TreeView snapshot, uint64_t snapshot_seq = 0);
  void OnTick(int64_t now_ms);
  // Closes the session from the master's side with a reason sent to the peer.
  void Close(std::string_view reason, RejectCode code = RejectCode::kShutdown);
  // The outcome of the audit asked for by kRunAudit: sent to the auditor
  // (a failed audit as the report's error), then the session ends without
  // error. Ignored unless an audit was asked for (the session may have
  // closed meanwhile).
  void OnAuditDone(const Status& status, AuditReport report);
  // The answer to kWaitAcks: whether min_acks followers applied the write
  // in time. Either way it stays committed; if not, its WriteAck keeps its
  // seq and says it was not replicated. Ignored unless acks are awaited.
  void OnAcks(bool replicated);
  // The database request the session waits for, once (see master_hooks.h);
  // nullopt if there is none new.
  std::optional<DbRequest> PollDbRequest();
  // The answer to the request PollDbRequest gave. Ignored once closed.
  void OnDbAnswer(DbAnswer answer);
  // Whether to read more from the peer: false while a writer's writes
  // queued behind the one committing reach max_frame bytes.
  bool wants_input() const;

  // About bulk_frame_bytes of output (more only by one frame), in order.
  std::string TakeOutput();
  bool wants_write() const;
  // Stream batches queued and not yet wholly encoded: the memory this
  // follower keeps alive that a fast one would have let go.
  size_t batches_held() const { return batches_held_; }
  // Stream batches sent as the frame handed with them, not encoded here.
  uint64_t shared_frames_sent() const { return shared_frames_sent_; }
  std::optional<ServerEvent> PollEvent();

  bool closed() const { return state_ == State::kClosed; }
  const Status& error() const { return error_; }
  bool streaming() const { return state_ == State::kStreaming; }
  Role peer_role() const { return hello_.role; }
  uint64_t follower_applied_seq() const { return follower_applied_seq_; }
  // The follower's applied sequence once it is known to hold every write up
  // to it: from the start when it resumed; after a non-resume start, once a
  // complete diff has reached it (a Pong answering a Ping sent after the
  // SyncDone proves it applied the repairs). 0 until then, and for peers
  // that are not followers. What waits for replication count.
  uint64_t acked_seq() const {
    return hello_.role == Role::kFollower && holds_all_ ? follower_applied_seq_ : 0;
  }
  uint64_t sent_seq() const { return sent_seq_; }  // last batch sequence sent
  uint64_t syncs_completed() const { return syncs_completed_; }
  // The frame limit now in force: wire::kMaxHandshakeFrame until the peer
  // has authenticated, ServerOptions::max_frame after.
  size_t max_frame() const { return reader_.max_frame(); }
  // Memory held for the peer's unparsed bytes (a partial frame).
  size_t input_buffer_bytes() const { return reader_.buffer_capacity(); }
  // No diff running or wanted, no bootstrap, clone or audit, nothing to send.
  bool idle() const {
    return sync_phase_ == SyncPhase::kIdle && !sync_again_ && !bootstrapping_ && !files_ &&
           !audit_running_ && out_.empty() && !waiting_ && writes_.empty() && !acking_;
  }
  // Round trips of the last diff (SyncStart..last Nodes), for benchmarks.
  int last_sync_round_trips() const { return last_round_trips_; }

 private:
  // kOpening: authenticated, the Welcome waits for the bootstrap snapshot
  // or the files to be opened.
  enum class State { kAwaitHello, kAwaitAuth, kOpening, kStreaming, kClosed };
  enum class SyncPhase { kIdle, kWantSnapshot, kAwaitRoot, kAwaitNodes, kRepairing };

  void Handle(Message& message);
  void HandleHello(Hello& hello);
  void HandleAuth(const Auth& auth);
  void HandleSyncRoot(const SyncRoot& root);
  void HandleNodes(const Nodes& nodes);
  void HandleWrite(Write& write);
  void CommitNextWrite();
  void OnWriteCommitted(DbAnswer& answer);
  void StartStreaming(Welcome& welcome);
  void OnBootstrapOpened(const DbAnswer& answer);
  void OnFilesOpened(DbAnswer& answer);
  void Ask(DbRequest request);
  void AskOrRepair();
  // One piece of the output: frames ready to send, or a batch (or a lone
  // large put) encoded as the connection drains.
  struct Outgoing {
    std::string bytes;
    std::shared_ptr<const Batch> batch;
    std::shared_ptr<const std::string> frame;  // batch's whole Batch frame, shared (or null)
    PutContext context = PutContext::kBatch;   // kRepair, kBootstrap: batch holds the one put
    uint64_t id = 0;                           // the PutStart's id for those
    size_t next_op = 0;                        // ops before it are sent
    size_t value_offset = 0;                   // of ops[next_op], once its PutStart is sent
    bool put_open = false;                     // ops[next_op]'s PutStart is sent
    bool started = false;                      // a BatchPart of it is sent
    uint64_t data_bytes = 0;                   // its keys and values, once started
  };
  bool EncodeSome(Outgoing& item, std::string* out);
  bool EncodeBatch(Outgoing& item, std::string* out);
  bool EncodeLargePut(Outgoing& item, std::string* out);
  bool IsLargePut(const Op& op) const;
  void QueueLargePut(PutContext context, uint64_t id, Op op);
  void EmitRepairFrame();
  void OnKeysRead(DbAnswer& answer);
  void FinishSync();
  void EmitBootstrapChunk();
  void StartCloning(Welcome& welcome);
  void EmitFileChunk();
  size_t FileChunkBytes() const;
  void SendFileChunk(std::string data, size_t want);
  template <MessageAlternative M>
  void Send(const M& message) {
    if (out_.empty() || out_.back().batch) out_.emplace_back();
    wire::AppendFrame(message, &out_.back().bytes);
  }
  void Fail(Status status, RejectCode code = RejectCode::kProtocol);
  void End(Status status);
  void Event(ServerEvent event) { events_.push_back(std::move(event)); }
  std::string RandomBytes(size_t n);

  ServerOptions options_;
  MasterHooks hooks_;
  wire::FrameReader reader_;
  std::deque<Outgoing> out_;
  size_t batches_held_ = 0;  // stream batches in out_
  uint64_t shared_frames_sent_ = 0;
  std::deque<ServerEvent> events_;
  State state_ = State::kAwaitHello;
  Status error_;

  Hello hello_;
  std::string server_nonce_;
  uint64_t stream_from_ = 0;  // batches below this are not sent
  uint64_t sent_seq_ = 0;
  uint64_t follower_applied_seq_ = 0;
  std::optional<uint64_t> failed_write_;  // a writer's first refused write: later ones are too
  bool audit_running_ = false;            // kRunAudit emitted, OnAuditDone not yet called
  std::deque<Write> writes_;              // a writer's writes not yet committed, in order
  size_t queued_write_bytes_ = 0;         // their ops' bytes
  std::optional<uint64_t> committing_;    // the write whose kCommitWrite is out
  std::optional<WriteAck> acking_;        // committed, kWaitAcks out: sent on OnAcks
  // acked_seq(): the follower holds every write up to its applied sequence;
  // until then, a Pong echoing a Ping later than verify_after_ms_ proves it.
  bool holds_all_ = false;
  std::optional<int64_t> verify_after_ms_;
  // Only a diff numbered above this can restore holds_all_ after a
  // correction (RequestCorrection): one asked for or running before it may
  // compare a tree from before the change.
  uint64_t correction_sync_floor_ = 0;
  int64_t last_ping_ms_ = -1;

  // Database work: the request made and not yet polled, and the kind of the
  // one whose answer is awaited (at most one).
  std::optional<DbRequest> request_;
  std::optional<DbRequest::Kind> waiting_;
  Welcome welcome_;  // kOpening: sent once the answer comes

  // The diff in progress.
  SyncPhase sync_phase_ = SyncPhase::kIdle;
  bool sync_again_ = false;  // asked for while one runs
  uint64_t sync_id_ = 0;
  std::unique_ptr<DiffComparer> comparer_;
  std::deque<std::vector<std::string>> outstanding_;  // paths of unanswered NodesRequests
  size_t next_to_send_ = 0;                           // repair progress in comparer_->to_send()
  size_t read_group_ = 0;                             // keys per read: fewer after large values
  std::vector<Op> repair_read_;                       // read, not yet sent
  size_t repair_next_ = 0;
  Repair repair_;            // the frame being filled, across reads
  size_t repair_bytes_ = 0;  // of its ops
  bool deletes_sent_ = false;
  uint64_t repaired_ = 0;
  int round_trips_ = 0;
  int last_round_trips_ = 0;
  int retries_ = 0;
  uint64_t syncs_completed_ = 0;

  bool bootstrapping_ = false;
  uint64_t bootstrap_seq_ = 0;
  std::vector<Op> bootstrap_entries_;  // scanned, not yet sent (after a large one)
  size_t bootstrap_next_ = 0;
  bool bootstrap_scan_done_ = false;

  // A cloner's copy: the file and offset of the next FileChunk.
  std::shared_ptr<FileSource> files_;
  size_t file_index_ = 0;
  uint64_t file_offset_ = 0;
  std::string file_buffer_;  // each chunk's data, reused: no allocation per chunk

  int64_t now_ms_ = -1;
  int64_t last_received_ms_ = -1;
  int64_t next_ping_ms_ = 0;
};

// The Batch frame (wire::AppendFrame's bytes) a ServerSession with
// `bulk_frame_bytes` sends for `batch` when the batch goes whole; null when it
// would go in pieces (BatchPart, PutStart, ValuePart). The hub encodes each
// batch once with it and hands the frame to every session (OnBatch), so a
// master's cost per batch does not grow with its followers.
std::shared_ptr<const std::string> SharedBatchFrame(const Batch& batch, size_t bulk_frame_bytes);

// Serves `session`'s database requests at once, on this thread, with `hooks`,
// until it waits for none: for tests, benchmarks and embedders whose hooks
// never block. Returns whether it served any.
bool ServeDbRequestsNow(ServerSession& session, const MasterHooks& hooks);

}  // namespace sdiff
