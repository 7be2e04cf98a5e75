// ClientSession: the follower's side of a connection to the master, sans-I/O.
//
// Inputs: bytes received (OnBytes), a request to diff (RequestSync), time
// (OnTick). Outputs: bytes to send (TakeOutput), events (PollEvent), and calls
// to FollowerHooks: `write` applies master batches (the consecutive ones that
// arrived in one OnBytes call, each whole), a repair or a bootstrap chunk
// atomically together with the follower's replication state, `snapshot`
// returns the follower's tree as of its last applied write.
//
// The follower converges to the master: on connect it resumes the stream when
// the master's log allows, else the master diffs it, or bootstraps it when it
// is empty; after catching up it always runs one more diff, which costs one
// exchange of root hashes when nothing is wrong. Until a diff completes, the
// state it persists says "not resumable" (applied_seq 0).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/authenticator.h"
#include "engine/merkle_tree.h"
#include "engine/messages.h"
#include "engine/status.h"
#include "engine/wire.h"

namespace sdiff {

// What a follower keeps about its replication, persisted atomically with data.
struct FollowerState {
  std::string master_id;     // whom it follows; empty: nobody yet
  uint64_t applied_seq = 0;  // last master sequence applied; 0: not resumable
  bool bootstrapping = false;
  FamilyTag bootstrap_family = 0;  // bootstrap progress: last entry applied
  std::string bootstrap_key;
  friend bool operator==(const FollowerState&, const FollowerState&) = default;
};

// A write too large for one frame (a batch in parts, a put whose value comes
// in pieces), built up by the embedder as its frames arrive and written by
// FollowerHooks::write in one atomic write (ApplyRequest::staged). Destroyed
// unwritten when the connection ends first.
class StagedWrite {
 public:
  virtual ~StagedWrite() = default;
  // Whole ops, after everything added before; may move their contents out.
  virtual Status AddOps(std::vector<Op>& ops) = 0;
  // A put whose value arrives through AddValue, value_size bytes in all
  // (checked by the session: at most wire::kMaxValueBytes, never more bytes).
  virtual Status StartPut(FamilyTag family, std::string_view key, uint64_t value_size) = 0;
  virtual Status AddValue(std::string_view data) = 0;
};

struct ApplyRequest {
  enum class Source { kStream, kRepair, kBootstrap, kStateOnly };
  Source source;
  const std::vector<Op>& ops;  // apply all or none
  const FollowerState& state;  // persist with the ops
  // kStream: the first sequence of the first master batch in `ops`. A stream
  // write may hold several consecutive master batches, each whole; `state`
  // is as of the last.
  uint64_t stream_seq = 0;
  // Not null: a staged write (FollowerHooks::stage) to write first, in the
  // same atomic write as `ops` and `state`.
  StagedWrite* staged = nullptr;
  // The stream's position once this write is applied: the last master
  // sequence the follower has applied or been brought to (a diff's start,
  // a bootstrap's snapshot), persisted or not. `state.applied_seq` says it
  // only once the replica is known consistent (0 until then); a relay
  // (plugin/relay.h) needs it always, to relay with the master's sequences.
  uint64_t position = 0;
};

struct FollowerHooks {
  // Optional: the master's column families (tags and names), at each Welcome,
  // before any write that uses them. An error closes the session.
  std::function<Status(const std::vector<FamilyInfo>&)> families;
  std::function<Status(const ApplyRequest&)> write;
  // Optional: a place to build a write that arrives in pieces, so that it is
  // held once (in the form the embedder writes it), not also as ops. Null:
  // the session gathers the ops and hands them to `write` whole.
  // `expected_bytes`: its keys and values added up, as the master announced
  // them (checked by the session once all have come; at most a batch's or a
  // value's worth), for the embedder to reserve its buffer once.
  std::function<std::unique_ptr<StagedWrite>(uint64_t expected_bytes)> stage;
  // The tree as of the last write. A store still building its tree (behind
  // the stream, after a clone) makes this wait until it is built.
  std::function<TreeView()> snapshot;
  std::function<void(uint8_t* out, size_t n)> random_bytes;
  // Optional: false while the tree is being built, so that the diff after
  // catching up waits (on ticks) instead of holding up the stream in
  // `snapshot`. Null: always ready.
  std::function<bool()> tree_ready;
  // Optional: the keys held, for the Hello (an empty follower is
  // bootstrapped), without waiting for a tree being built. Null:
  // snapshot().size().
  std::function<uint64_t()> key_count;
};

struct ClientOptions {
  Role role = Role::kFollower;
  size_t max_frame = wire::kDefaultMaxFrame;
  int64_t idle_timeout_ms = 15000;  // nothing from the master for this long: close
  // After (re)connecting and catching up, diff once to verify what resuming
  // trusted. Off: only the diffs asked for run.
  bool diff_after_catch_up = true;
  const Authenticator* authenticator = nullptr;  // null: no shared secret
};

struct ClientEvent {
  enum class Kind {
    kWelcome,   // mode: how the master chose to bring us up to date
    kSyncDone,  // a diff finished (repaired keys; complete, or a retry follows)
    kClosed,    // status says why
  };
  Kind kind;
  StartMode mode = StartMode::kDiff;
  uint64_t repaired = 0;
  bool complete = false;
  Status status;

  static ClientEvent Welcome(StartMode mode) {
    ClientEvent e = Of(Kind::kWelcome);
    e.mode = mode;
    return e;
  }
  static ClientEvent SyncDone(uint64_t repaired, bool complete) {
    ClientEvent e = Of(Kind::kSyncDone);
    e.repaired = repaired;
    e.complete = complete;
    return e;
  }
  static ClientEvent Closed(Status status) {
    ClientEvent e = Of(Kind::kClosed);
    e.status = std::move(status);
    return e;
  }
  static ClientEvent Of(Kind kind) {
    ClientEvent e;
    e.kind = kind;
    return e;
  }
};

class ClientSession {
 public:
  ClientSession(ClientOptions options, FollowerHooks hooks, FollowerState state);
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  void Start();  // sends Hello
  void OnBytes(std::string_view bytes);
  void RequestSync();
  void OnTick(int64_t now_ms);
  void Close(std::string_view reason);

  std::string TakeOutput() { return std::exchange(out_, {}); }
  bool wants_write() const { return !out_.empty(); }
  std::optional<ClientEvent> PollEvent();

  bool closed() const { return state_ == State::kClosed; }
  const Status& error() const { return error_; }
  bool streaming() const { return state_ == State::kStreaming; }
  const FollowerState& follower_state() const { return persisted_; }
  uint64_t applied_seq() const { return applied_seq_; }
  uint64_t master_seq() const { return master_seq_; }
  // How long the follower has been behind the newest master sequence it has
  // heard of (from Welcome, batches or pings); 0 when caught up. Measured on
  // the follower's own clock (OnTick), so no clocks are compared.
  int64_t lag_ms() const { return behind_since_ms_ < 0 ? 0 : now_ms_ - behind_since_ms_; }
  bool consistent() const { return consistent_; }
  bool in_sync() const { return in_sync_; }
  // No diff running or asked for, no bootstrap, nothing to send.
  bool idle() const {
    return !in_sync_ && !sync_requested_ && !sync_again_ && !persisted_.bootstrapping &&
           assembling_ == Assembly::kNone && out_.empty();
  }
  bool bootstrapping() const { return persisted_.bootstrapping; }
  const std::vector<FamilyInfo>& families() const { return families_; }
  uint64_t syncs_completed() const { return syncs_completed_; }
  uint64_t last_repaired() const { return last_repaired_; }

 private:
  enum class State { kIdle, kAwaitChallenge, kAwaitWelcome, kStreaming, kClosed };
  // A write arriving in pieces: a batch in parts, or one large repair or
  // bootstrap put. Nothing else may come between its frames.
  enum class Assembly { kNone, kBatch, kRepairPut, kBootstrapPut };

  void Handle(Message& message);
  void HandleChallenge(const Challenge& challenge);
  void HandleWelcome(const Welcome& welcome);
  void QueueBatch(Batch& batch);  // takes the batch's ops
  bool CheckStreamSeq(uint64_t seq);
  void AdvanceStream(uint64_t seq, uint64_t count);
  void HandlePiece(Message& message);
  void HandleBatchPart(BatchPart& part);
  void HandlePutStart(const PutStart& start);
  void HandleValuePart(const ValuePart& part);
  void BeginStaged(Assembly assembly, uint64_t expected_bytes);
  bool ApplyStaged(ApplyRequest::Source source, uint64_t stream_seq = 0);
  void KeepAlive();
  void ReportApplied();
  bool FlushStream();
  void HandleSyncStart(const SyncStart& start);
  void HandleNodes(const NodesRequest& request);
  void HandleRepair(const Repair& repair);
  void BeginRepair();
  void HandleSyncDone(const SyncDone& done);
  void HandleBootstrap(const BootstrapChunk& chunk);
  bool Apply(ApplyRequest::Source source, const std::vector<Op>& ops, uint64_t stream_seq = 0,
             StagedWrite* staged = nullptr);
  void Track(const std::vector<Op>& ops);
  bool Streamed(FamilyTag family, const std::string& key) const;
  void StopTracking();
  void NoteProgress();
  void MaybeRequestCatchUpSync();
  template <MessageAlternative M>
  void Send(const M& message) {
    wire::AppendFrame(message, &out_);
  }
  void Fail(Status status, RejectCode code = RejectCode::kProtocol);

  ClientOptions options_;
  FollowerHooks hooks_;
  wire::FrameReader reader_;
  std::string out_;
  std::deque<ClientEvent> events_;
  State state_ = State::kIdle;
  Status error_;

  FollowerState persisted_;  // what the last write recorded
  std::string client_nonce_;
  std::vector<FamilyInfo> families_;
  uint64_t applied_seq_ = 0;   // last stream sequence applied this session
  uint64_t expected_seq_ = 0;  // the sequence the next batch should start at
  uint64_t master_seq_ = 0;    // the master's newest sequence we heard of
  uint64_t catch_up_seq_ = 0;  // Welcome's master_seq: caught up once applied
  bool consistent_ = false;    // data equals the master's as of applied_seq_
  bool catch_up_sync_due_ = false;

  // The diff in progress.
  bool in_sync_ = false;
  bool gap_during_sync_ = false;  // the stream skipped sequences since SyncStart
  bool sync_requested_ = false;
  bool sync_again_ = false;
  uint64_t sync_id_ = 0;
  uint64_t salt_ = 0;
  uint8_t hash_bytes_ = 0;
  TreeView snapshot_;       // the diff's; released once the repairs begin
  bool repairing_ = false;  // a Repair came: the master asks nothing more
  uint64_t repaired_ = 0;
  uint64_t last_repaired_ = 0;
  uint64_t syncs_completed_ = 0;

  // Keys the stream wrote since a diff's snapshot or a bootstrap's start: a
  // repair or bootstrap entry for them is older than what we have.
  bool tracking_ = false;
  std::set<std::pair<FamilyTag, std::string>> streamed_keys_;
  std::vector<Op> streamed_ranges_;

  // Stream batches received in one OnBytes call and not yet written: applied
  // as one write, bounded so a long burst does not build one huge write.
  static constexpr size_t kMaxGroupOps = 10000;
  static constexpr size_t kMaxGroupBytes = 4 << 20;
  std::vector<Op> pending_ops_;
  size_t pending_bytes_ = 0;
  size_t pending_batches_ = 0;
  uint64_t pending_first_seq_ = 0;

  // The write arriving in pieces.
  Assembly assembling_ = Assembly::kNone;
  std::unique_ptr<StagedWrite> staged_;
  std::vector<Op>* gathered_ = nullptr;  // without a stage hook: staged_'s ops
  uint64_t part_seq_ = 0;                // kBatch: the batch's seq and count
  uint64_t part_count_ = 0;
  uint64_t part_bytes_ = 0;    // ... its keys and values, as announced
  uint64_t staged_bytes_ = 0;  // keys and values received so far
  bool put_open_ = false;      // a PutStart's value is arriving
  bool put_skipped_ = false;   // ... for a key the stream wrote since: dropped
  uint64_t value_left_ = 0;
  FamilyTag put_family_ = 0;  // kBootstrapPut: the entry, for the progress
  std::string put_key_;
  uint64_t bootstrap_seq_ = 0;  // the bootstrap's snapshot sequence (Welcome)
  // Pings queue behind a large write: a Pong now and then while its pieces
  // arrive keeps the master from taking us for silent.
  static constexpr int64_t kKeepAliveMs = 1000;
  int64_t last_pong_ms_ = -1;
  bool waiting_for_tree_ = false;  // the catch-up diff waits for the store's tree
  uint64_t reported_seq_ = 0;      // applied_seq_ as of our last Pong

  int64_t now_ms_ = -1;
  int64_t last_received_ms_ = -1;
  int64_t behind_since_ms_ = -1;  // when applied_seq_ fell behind master_seq_; -1: not behind
};

}  // namespace sdiff
