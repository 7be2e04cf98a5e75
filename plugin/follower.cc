// Follower: a RocksFollowerStore with a FollowerClient writing into it.
#include "plugin/follower.h"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "plugin/follower_progress.h"
#include "plugin/follower_store.h"

namespace sdiff::plugin {

Status Follower::Open(FollowerOptions options, std::unique_ptr<Follower>* out) {
  Status checked = CheckReplicaOptions(options.rocks);
  if (!checked.ok()) return checked;
  if (options.discard && !options.ledger.empty()) {
    return Status::InvalidArgument(
        "a ledger records what repairs overwrite, discarding lets them: choose one");
  }
  RocksFollowerStoreOptions store_options;
  store_options.db_path = options.db_path;
  store_options.create_if_missing = options.create_if_missing;
  store_options.sync_writes = options.sync_writes;
  store_options.env = options.env;
  store_options.rocks = options.rocks;
  store_options.logger = options.client.logger;
  store_options.fail_before_write = std::move(options.fail_before_write);
  store_options.before_tree_built = std::move(options.before_tree_built);
  store_options.min_free_bytes = options.min_free_bytes;
  store_options.free_bytes = options.free_bytes;
  store_options.key_hasher = options.key_hasher;
  store_options.ledger_path = options.ledger;
  store_options.unfollowed_data =
      options.discard ? UnfollowedData::kDiscard : UnfollowedData::kRefuse;

  std::unique_ptr<Follower> follower(new Follower());
  auto log = options.client.logger ? options.client.logger : spdlog::default_logger();
  if (options.clone_files && options.create_if_missing) follower->MaybeClone(options);
  // The replica is readable now and streams once connected; its tree (all
  // of a fresh copy's keys, or a restarted replica's) is built behind the
  // stream, so a large replica does not wait for it to catch up.
  store_options.defer_tree = true;
  Status s = RocksFollowerStore::Open(std::move(store_options), &follower->store_);
  if (!s.ok()) return s;
  RemoveStaleStaging(options);
  FollowerStore* store = follower->store_.get();
  if (options.relay.enabled()) {
    follower->relay_ =
        std::make_unique<Relay>(follower->store_.get(), options.relay, options.key_hasher, log);
  }
  if (options.progress) {
    follower->progress_ = std::make_unique<FollowerProgress>(store, std::move(options.progress));
    store = follower->progress_.get();
  }
  s = net::FollowerClient::Start(store, std::move(options.client), &follower->client_);
  if (!s.ok()) return s;
  if (follower->relay_) {
    // The newest master sequence the client heard of: the relay's Pings pass
    // it on, so lag down the chain is measured from the origin master.
    s = follower->relay_->Serve(
        [client = follower->client_.get()] { return client->status().master_seq; });
    if (!s.ok()) return s;
  }
  if (follower->progress_) follower->progress_->Start(follower->client_.get());
  follower->auditor_ = std::make_unique<Auditor>(
      options.audit, log,
      Auditor::Words{"the replica's tree", "its data", "asking the master for a diff"},
      [f = follower.get()](const TreeScanOptions& scan, AuditResult* result) {
        Status s = f->store_->Audit(scan, result);
        if (s.ok() && result->mismatches > 0) f->client_->RequestSync();
        return s;
      });
  *out = std::move(follower);
  return Status::OK();
}

// Copies the master's files into a database path that holds nothing yet.
// Any failure leaves the path as it was: the follower then starts empty.
void Follower::MaybeClone(const FollowerOptions& options) {
  if (!CanCloneInto(options.db_path)) return;
  auto log = options.client.logger ? options.client.logger : spdlog::default_logger();
  CloneFromMasterOptions clone;
  clone.db_path = options.db_path;
  clone.connect.master = options.client.master;
  clone.connect.tls = options.client.tls;
  clone.connect.connect_timeout = options.client.connect_timeout;
  clone.connect.connection = options.client.connection;
  clone.connect.connection.handshake_timeout = options.client.handshake_timeout;
  clone.secret = options.client.secret;
  clone.progress = options.progress;
  clone.rocks = options.rocks;
  CloneResult result;
  log->info("empty: asking master {} for a copy of its files", options.client.master);
  auto start = std::chrono::steady_clock::now();
  Status s = CloneFromMaster(clone, &result);
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (s.ok()) {
    log->info("copied the master's files: {} files, {} bytes in {:.0f} ms, at master sequence {}",
              result.files, result.bytes, ms, result.seq);
    clone_ = result;
  } else if (s.code() == Status::Code::kNotFound) {
    log->info("not copying the master's files ({}); starting empty", s.message());
  } else {
    log->warn("copying the master's files failed ({}); starting empty", s.message());
  }
}

// A copy that a crash (or a failed clone that could not clean up) left
// beside the database: as big as the master's database, and never used.
void Follower::RemoveStaleStaging(const FollowerOptions& options) {
  std::string staging = CloneStagingPath(options.db_path);
  std::error_code ec;
  if (staging.empty() || !std::filesystem::exists(staging, ec)) return;
  auto log = options.client.logger ? options.client.logger : spdlog::default_logger();
  std::filesystem::remove_all(staging, ec);
  if (ec) {
    log->warn("cannot remove the unfinished copy {}: {}", staging, ec.message());
  } else {
    log->info("removed the unfinished copy {}", staging);
  }
}

Follower::~Follower() {
  if (store_) store_->StopBuildingTree();  // a diff waiting for the tree ends
  auditor_.reset();                        // an audit under way stops scanning
  if (progress_) progress_->Stop();        // it reads the client's status
  if (relay_) relay_->Stop();              // its sessions read the database and the client
  client_.reset();                         // no write may be in flight when the DB closes
  progress_.reset();
  relay_.reset();
  store_.reset();
}

FollowerStatus Follower::status() const {
  FollowerStatus s = Compose(client_->status());
  s.audit = auditor_->stats();
  if (relay_) s.relay = relay_->status();
  return s;
}

Status Follower::Audit(AuditResult* result) { return auditor_->Run(result); }

FollowerStatus Follower::Compose(const net::FollowerClientStatus& c) const {
  FollowerStatus s;
  s.connected = c.connected;
  s.master_seq = c.master_seq;
  // Before the first connection the client knows nothing; the disk does.
  s.applied_seq = c.connects > 0 ? c.applied_seq : store_->State().applied_seq;
  s.lag_seqs = s.master_seq > s.applied_seq ? s.master_seq - s.applied_seq : 0;
  s.lag_ms = c.connected ? c.lag_ms : 0;
  s.bytes_in = c.bytes_in;
  s.bytes_out = c.bytes_out;
  s.last_diff_unix_ms = c.last_sync_unix_ms;
  s.last_diff_repaired = c.last_repaired;
  s.diffs = c.syncs;
  s.connects = c.connects;
  s.reconnects = c.reconnects;
  s.bootstraps = c.bootstraps;
  s.last_start = c.last_mode;
  s.last_error = c.last_error;
  s.master_id = store_->State().master_id;
  s.keys = store_->keys();
  s.tree_built = store_->tree_built();
  s.cloned = clone_.has_value();
  s.clone_bytes = clone_ ? clone_->bytes : 0;
  s.clone_seq = clone_ ? clone_->seq : 0;
  return s;
}

void Follower::RequestSync() { client_->RequestSync(); }

// The client notifies after every applied write, so waking on its changes
// sees the store's too; short slices bound a notification that slips by.
bool Follower::WaitFor(std::function<bool(const FollowerStatus&)> pred,
                       std::chrono::milliseconds timeout) const {
  constexpr std::chrono::milliseconds kSlice{50};
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return pred(status());
    if (client_->WaitFor([&](const net::FollowerClientStatus& c) { return pred(Compose(c)); },
                         std::min(left, kSlice))) {
      return true;
    }
  }
}

// The persisted state, not the stream position: until a diff after a
// non-resume start completes, the replica may lack older writes.
Status Follower::WaitForSequence(uint64_t seq, std::chrono::milliseconds timeout) const {
  auto holds = [&](const FollowerStatus&) { return store_->State().applied_seq >= seq; };
  if (WaitFor(holds, timeout)) return Status::OK();
  return Status::TimedOut(
      "the replica holds master sequence " + std::to_string(store_->State().applied_seq) +
      ", not " + std::to_string(seq) + ", after " + std::to_string(timeout.count()) + " ms");
}

rocksdb::DB* Follower::db() { return store_->db(); }

rocksdb::ColumnFamilyHandle* Follower::column_family(std::string_view name) const {
  return store_->family(name);
}

TreeView Follower::tree() const { return store_->tree(); }

}  // namespace sdiff::plugin
