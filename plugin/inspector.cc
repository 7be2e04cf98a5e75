// InspectMaster: an engine ClientSession in the inspector role, with hooks
// that record (and, repairing, apply) what the master's diff sends.
#include "plugin/inspector.h"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <utility>

#include "engine/client_session.h"
#include "engine/hash.h"
#include "net/hmac_authenticator.h"
#include "net/secure_random.h"
#include "plugin/tree_scan.h"
#include "plugin/write_batch_op.h"

namespace sdiff::plugin {
namespace {

// An inspector-role ClientSession as the session runner drives it: done when
// the subclass says so (then a well-finished session, whatever the close says).
class InspectorSession : public net::ClientProtocol {
 public:
  InspectorSession(const Authenticator* authenticator, FollowerHooks hooks)
      : session_(Options(authenticator), std::move(hooks), FollowerState{}) {}

  void Start() override { session_.Start(); }
  void OnBytes(std::string_view bytes) override {
    session_.OnBytes(bytes);
    Poll();
  }
  void OnTick(int64_t now_ms) override {
    session_.OnTick(now_ms);
    Poll();
  }
  std::string TakeOutput() override { return session_.TakeOutput(); }
  bool finished() const override { return done_ || session_.closed(); }
  Status error() const override { return done_ ? Status::OK() : session_.error(); }

 protected:
  // Each event until the job is done; it ends it with Finish().
  virtual void OnEvent(const ClientEvent& event) = 0;
  void Finish(std::string_view why) {
    done_ = true;
    session_.Close(why);
  }

  ClientSession session_;

 private:
  static ClientOptions Options(const Authenticator* authenticator) {
    ClientOptions o;
    o.role = Role::kInspector;
    o.diff_after_catch_up = false;
    o.authenticator = authenticator;
    return o;
  }
  void Poll() {
    while (auto event = session_.PollEvent()) {
      if (!done_) OnEvent(*event);
    }
  }

  bool done_ = false;
};

class InspectorProtocol : public InspectorSession {
 public:
  InspectorProtocol(rocksdb::DB* db, const FamilyResolver& resolve, bool repair,
                    const Authenticator* authenticator, InspectResult* result)
      : InspectorSession(authenticator, Hooks(this)),
        db_(db),
        resolve_(resolve),
        repair_(repair),
        result_(result) {}

  // Builds the tree for these families before connecting (see InspectMaster).
  Status Prebuild(const std::vector<FamilyInfo>& families) { return Build(families); }

 private:
  // Called only once the session runs, when every member exists.
  static FollowerHooks Hooks(InspectorProtocol* self) {
    FollowerHooks h;
    h.families = [self](const std::vector<FamilyInfo>& families) { return self->Build(families); };
    h.write = [self](const ApplyRequest& request) { return self->Write(request); };
    h.snapshot = [self] { return self->tree_.Snapshot(); };
    h.random_bytes = net::SecureRandomBytes;
    return h;
  }

  // The master's families are known: build our tree with its tags.
  Status Build(const std::vector<FamilyInfo>& families) {
    if (built_for_ == families) return Status::OK();  // prebuilt, the families unchanged
    built_for_ = families;
    tree_.Clear();
    names_.clear();
    handles_.clear();
    result_->families.clear();
    TaggedFamilies present;
    for (const FamilyInfo& f : families) {
      names_[f.tag] = f.name;
      result_->families.push_back(f.name);
      rocksdb::ColumnFamilyHandle* handle = nullptr;
      Status s = resolve_(f.name, /*create=*/false, &handle);
      if (!s.ok()) return s;
      if (handle == nullptr) continue;  // none here: every master key is "+"
      handles_[f.tag] = handle;
      present.emplace_back(f.tag, handle);
    }
    Status s = ScanIntoTree(db_, /*snapshot=*/nullptr, present, TreeScanOptions(), &tree_);
    if (!s.ok()) return s;
    result_->local_keys = tree_.size();
    return Status::OK();
  }

  Status Write(const ApplyRequest& request) {
    if (request.source == ApplyRequest::Source::kStateOnly) return Status::OK();
    if (request.source != ApplyRequest::Source::kRepair) {
      return Status::ProtocolError("the master sent an inspector a stream or a bootstrap");
    }
    rocksdb::WriteBatch batch;
    std::vector<const Op*> changes;  // the ops that differ, to apply
    for (const Op& op : request.ops) {
      auto name = names_.find(op.family);
      if (name == names_.end()) {
        return Status::ProtocolError("repair in an unknown family tag " +
                                     std::to_string(op.family));
      }
      // The master reads what it sends after the diff: a key may have become
      // equal meanwhile (deleted there and absent here, or set to our value).
      std::optional<Hash128> held = tree_.Find(op.family, op.key);
      DiffKind kind = DiffKind::kOnlyInA;
      if (op.kind == OpKind::kPut) {
        if (held && *held == LeafHash(tree_.hasher()(op.family, op.key), op.value)) continue;
        kind = held ? DiffKind::kValueDiffers : DiffKind::kOnlyInB;
      } else if (!held) {
        continue;
      }
      seen_.try_emplace({name->second, op.key}, kind);
      changes.push_back(&op);
    }
    if (!repair_ || changes.empty()) return Status::OK();
    for (const Op* op : changes) {
      rocksdb::ColumnFamilyHandle* handle = nullptr;
      Status s = Handle(op->family, &handle);
      if (!s.ok()) return s;
      rocksdb::Status rs = AddOp(*op, handle, &batch);
      if (!rs.ok()) return Status::IOError(rs.ToString());
    }
    rocksdb::Status rs = db_->Write(rocksdb::WriteOptions(), &batch);
    if (!rs.ok()) return Status::IOError("repairing the database: " + rs.ToString());
    for (const Op* op : changes) {
      if (op->kind == OpKind::kPut) {
        Status s = tree_.Put(op->family, op->key, op->value);
        if (!s.ok()) return s;
      } else {
        tree_.Erase(op->family, op->key);
      }
    }
    return Status::OK();
  }

  // The handle for a family tag, creating the family if the database lacks it.
  Status Handle(FamilyTag tag, rocksdb::ColumnFamilyHandle** handle) {
    if (auto it = handles_.find(tag); it != handles_.end()) {
      *handle = it->second;
      return Status::OK();
    }
    Status s = resolve_(names_[tag], /*create=*/true, handle);
    if (s.ok() && *handle == nullptr) s = Status::IOError("cannot create family " + names_[tag]);
    if (s.ok()) handles_[tag] = *handle;
    return s;
  }

  // One complete diff is the whole job (an incomplete one is retried by the
  // master with a new salt; keys it already reported are not listed twice).
  void OnEvent(const ClientEvent& event) override {
    // An inspector is always diffed; any other start would leave it
    // answering pings, waiting for a diff that never comes.
    if (event.kind == ClientEvent::Kind::kWelcome && event.mode != StartMode::kDiff) {
      return session_.Close("the master did not start a diff of this inspector");
    }
    if (event.kind != ClientEvent::Kind::kSyncDone) return;
    if (!event.complete) {
      // The master gives up after its max_sync_retries (8); do not follow one
      // that never does.
      if (++incomplete_ > kMaxIncompleteDiffs) {
        session_.Close("the master's diff did not complete after " +
                       std::to_string(kMaxIncompleteDiffs) + " attempts");
      }
      return;
    }
    for (auto& [family_key, kind] : seen_) {
      result_->differences.push_back({family_key.first, family_key.second, kind});
    }
    Finish("inspection finished");
  }

  rocksdb::DB* db_;
  const FamilyResolver& resolve_;
  bool repair_;
  InspectResult* result_;
  MerkleTree tree_;
  std::optional<std::vector<FamilyInfo>> built_for_;  // the families tree_ holds
  std::map<FamilyTag, std::string> names_;
  std::map<FamilyTag, rocksdb::ColumnFamilyHandle*> handles_;
  std::map<std::pair<std::string, std::string>, DiffKind> seen_;
  static constexpr int kMaxIncompleteDiffs = 32;
  int incomplete_ = 0;  // diffs the master ended with a retry
};

// A session that only learns the master's families from its Welcome.
class FamiliesProbe : public InspectorSession {
 public:
  explicit FamiliesProbe(const Authenticator* authenticator)
      : InspectorSession(authenticator, Hooks()) {}
  const std::vector<FamilyInfo>& families() const { return session_.families(); }

 private:
  static FollowerHooks Hooks() {
    FollowerHooks h;
    h.write = [](const ApplyRequest&) {
      return Status::ProtocolError("the master sent data before its Welcome was answered");
    };
    h.snapshot = [] { return TreeView(); };
    h.random_bytes = net::SecureRandomBytes;
    return h;
  }
  void OnEvent(const ClientEvent& event) override {
    if (event.kind == ClientEvent::Kind::kWelcome) Finish("column families known");
  }
};

}  // namespace

Status InspectMaster(rocksdb::DB* db, const FamilyResolver& families, const InspectOptions& options,
                     InspectResult* result) {
  *result = InspectResult{};
  std::unique_ptr<net::HmacAuthenticator> authenticator;
  if (!options.secret.empty()) {
    authenticator = std::make_unique<net::HmacAuthenticator>(options.secret);
  }
  // Reading the local database into a tree takes as long as the database is
  // big, and a session blocked in it answers no pings: the master would drop
  // it as silent (after 15 s). So a first short session learns the master's
  // families, the tree is built with no connection open, and a second session
  // diffs it (rebuilding only if the families changed in between).
  // connect.deadline bounds the whole call: the second session gets what
  // the probe and the build left of it.
  const auto start = std::chrono::steady_clock::now();
  FamiliesProbe probe(authenticator.get());
  Status s = net::RunClientSession(options.connect, &probe, options.secret);
  if (!s.ok()) return s;
  InspectorProtocol protocol(db, families, options.repair, authenticator.get(), result);
  s = protocol.Prebuild(probe.families());
  if (!s.ok()) return s;
  net::ClientRunOptions connect = options.connect;
  if (connect.deadline.count() > 0) {
    auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    if (spent >= connect.deadline) {
      return Status::IOError("the master did not finish within " +
                             std::to_string(connect.deadline.count()) + " ms");
    }
    connect.deadline -= spent;
  }
  return net::RunClientSession(connect, &protocol, options.secret);
}

}  // namespace sdiff::plugin
