// Relay: a follower's replica served to followers of its own (see relay.h).
#include "plugin/relay.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

namespace sdiff::plugin {

net::MasterServerOptions NotListening() {
  net::MasterServerOptions options;
  options.listen.clear();
  return options;
}

Relay::Relay(RocksFollowerStore* store, RelayOptions options, KeyHasher key_hasher,
             std::shared_ptr<spdlog::logger> logger)
    : store_(store),
      options_(std::move(options)),
      logger_(logger ? std::move(logger) : spdlog::default_logger()),
      log_(BatchLogOptions{options_.resume_window_bytes, key_hasher, logger_,
                           options_.server.bulk_frame_bytes}) {
  OnChange(store_->Current());  // a replica that was consistent when it stopped serves at once
  store_->set_on_change([this](const StoreChange& change) { OnChange(change); });
}

Relay::~Relay() {
  Stop();
  store_->set_on_change(nullptr);  // the client that called it has stopped
}

Status Relay::Serve(std::function<uint64_t()> newest_seq) {
  newest_seq_ = std::move(newest_seq);
  net::MasterServerOptions options = options_.server;
  options.logger = logger_;
  std::unique_ptr<net::MasterServer> server;
  Status s = net::MasterServer::Start(this, std::move(options), &server);
  if (!s.ok()) return s;
  net::MutexLock lock(&mu_);
  server_ = std::move(server);
  return Status::OK();
}

net::MasterServer* Relay::server() const {
  net::MutexLock lock(&mu_);
  return server_.get();
}

// Outside mu_: the server's threads, which Stop joins, call the hub.
void Relay::Stop() {
  if (net::MasterServer* server = this->server()) server->Stop();
}

uint16_t Relay::port() const {
  net::MasterServer* server = this->server();
  return server != nullptr ? server->port() : 0;
}

RelayStatus Relay::status() {
  RelayStatus s;
  s.port = port();
  BatchLogStats log = log_.stats();
  s.seq = log.tailed_seq;
  s.keys = log.keys;
  s.unavailable = Unavailable();
  if (net::MasterServer* server = this->server()) s.server = server->stats();
  return s;
}

bool Relay::TakeIdentity(const std::string& master_id) {
  std::vector<FamilyInfo> families = store_->families();
  TaggedFamilies tagged = store_->tagged_families();
  net::MutexLock lock(&mu_);
  if (hooks_ != nullptr && master_id == master_id_ && families == families_) return false;
  bool served = hooks_ != nullptr && !master_id_.empty();
  master_id_ = master_id;
  families_ = std::move(families);
  RocksMasterHooksOptions h;
  h.master_id = master_id_;
  h.bootstrap_min_keys = options_.bootstrap_min_keys;
  h.allow_writers = false;  // writes go to the origin master
  h.min_free_bytes = 0;
  // A copy of the files would carry this replica's RocksDB sequences, not
  // the master's: cloners are refused and new followers bootstrap by keys.
  h.serve_files = false;
  h.bootstrap_snapshot = [store = store_](uint64_t* seq) { return store->SnapshotAtPosition(seq); };
  h.newest_seq = [this] {
    uint64_t heard = newest_seq_ ? newest_seq_() : 0;
    return std::max(heard, log_.tailed_seq());
  };
  h.logger = logger_;
  generations_.push_back(std::make_unique<RocksMasterHooks>(store_->db(), std::move(tagged), &log_,
                                                            nullptr, std::move(h)));
  hooks_ = generations_.back().get();
  if (!master_id_.empty()) {
    logger_->info("relaying master {} ({} column families) to followers of this follower",
                  master_id_, families_.size());
  }
  return served;
}

void Relay::OnChange(const StoreChange& change) {
  const bool changed_identity = TakeIdentity(change.state.master_id);
  std::string unavailable;
  if (change.state.master_id.empty() || change.position == 0 || !change.tree_built) {
    unavailable = "this follower does not follow a master at a known position yet";
  } else if (change.state.bootstrapping) {
    unavailable = "this follower is being bootstrapped by its master";
  }
  {
    net::MutexLock lock(&mu_);
    unavailable_ = unavailable;
  }
  bool sync = false;
  bool back = false;
  if (change.position > 0 && change.tree_built) {
    const uint64_t tailed = log_.tailed_seq();
    back = positioned_ && change.position < tailed;
    if (change.kind == StoreChange::Kind::kStream && positioned_ &&
        change.stream_seq == tailed + 1 && change.position >= change.stream_seq) {
      auto batch = std::make_shared<Batch>();
      batch->seq = change.stream_seq;
      batch->count = change.position - change.stream_seq + 1;
      batch->ops = *change.ops;
      Status s = log_.AppendApplied(std::move(batch), change.tree);
      if (!s.ok()) logger_->error("relay: {}", s.ToString());
      // Until the replica is consistent (its first diff after a start that
      // did not resume), a follower at this position holds what may differ
      // from the master's data at it: it must diff, not resume.
      if (change.state.applied_seq != change.position) log_.Correct(change.tree, change.position);
      log_.Flush();
    } else if (!positioned_ && change.state.applied_seq == change.position) {
      // A replica consistent at its position (reopened after a clean stop):
      // a follower of it at exactly that position may resume, as from a
      // master just attached.
      log_.Reset(MerkleTree(change.tree), change.position);
    } else if (!positioned_ || change.position != tailed ||
               change.tree.root_hash() != log_.stats().root ||
               change.tree.size() != log_.key_count()) {
      log_.Correct(change.tree, change.position);
      sync = positioned_ && !change.state.bootstrapping;
    }
    positioned_ = true;
  }
  net::MasterServer* server = this->server();
  if (server == nullptr) return;
  if (changed_identity || back) {
    logger_->info("relay: {}; disconnecting this follower's followers",
                  changed_identity
                      ? "the master's identity or column families changed"
                      : "the stream went back to sequence " + std::to_string(change.position));
    server->DisconnectAll("the relay's master changed; connect again");
  } else if (sync) {
    server->RequestSyncAll();  // each diffs against the corrected tree
  }
}

ServerOptions Relay::SessionOptions() {
  net::MutexLock lock(&mu_);
  return hooks_->SessionOptions();
}

MasterHooks Relay::SessionHooks() {
  net::MutexLock lock(&mu_);
  return hooks_->Make();
}

void Relay::Subscribe(std::shared_ptr<BatchSink> sink, uint64_t from_seq) {
  log_.Subscribe(std::move(sink), from_seq);
}

void Relay::RequestSnapshot(const std::shared_ptr<BatchSink>& sink, uint64_t seq) {
  log_.RequestSnapshot(sink, seq);
}

void Relay::Unsubscribe(const BatchSink* sink) { log_.Unsubscribe(sink); }

std::string Relay::Unavailable() {
  net::MutexLock lock(&mu_);
  return unavailable_;
}

}  // namespace sdiff::plugin
