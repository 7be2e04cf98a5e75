// Map-backed master and follower stores for tests and benchmarks.
#include "engine/testing/memory_replica.h"

#include <algorithm>

namespace sdiff::testing {

Status ApplyOps(const std::vector<Op>& ops, KeyValueMap* data, MerkleTree* tree) {
  for (const Op& op : ops) {
    switch (op.kind) {
      case OpKind::kPut: {
        Status s = tree->Put(op.family, op.key, op.value);
        if (!s.ok()) return s;
        (*data)[{op.family, op.key}] = op.value;
        break;
      }
      case OpKind::kDelete:
        tree->Erase(op.family, op.key);
        data->erase({op.family, op.key});
        break;
      case OpKind::kDeleteRange: {
        auto it = data->lower_bound({op.family, op.key});
        while (it != data->end() && it->first.first == op.family && it->first.second < op.value) {
          tree->Erase(op.family, it->first.second);
          it = data->erase(it);
        }
        break;
      }
    }
  }
  return Status::OK();
}

MemoryMaster::MemoryMaster(std::string id, KeyHasher hasher) : id_(std::move(id)), tree_(hasher) {}

const Batch& MemoryMaster::Write(std::vector<Op> ops) {
  Batch batch;
  batch.seq = seq_ + 1;
  batch.count = std::max<uint64_t>(ops.size(), 1);
  Status s = ApplyOps(ops, &data_, &tree_);
  (void)s;  // tests use keys whose hashes never fully collide
  batch.ops = std::move(ops);
  seq_ += batch.count;
  log_.push_back(std::move(batch));
  return log_.back();
}

void MemoryMaster::PurgeLogBefore(uint64_t seq) {
  size_t keep = 0;
  while (keep < log_.size() && LastSeq(log_[keep]) < seq) ++keep;
  log_.erase(log_.begin(), log_.begin() + keep);
}

std::vector<const Batch*> MemoryMaster::LogFrom(uint64_t from) const {
  std::vector<const Batch*> out;
  for (const Batch& b : log_) {
    if (LastSeq(b) >= from) out.push_back(&b);
  }
  return out;
}

ServerOptions MemoryMaster::Options() const {
  ServerOptions options;
  options.master_id = id_;
  options.families = {{0, "default"}, {1, "meta"}, {2, "other"}};
  return options;
}

MasterHooks MemoryMaster::Hooks(std::mt19937_64* rng) {
  struct BootstrapCursor {
    KeyValueMap snapshot;
    KeyValueMap::const_iterator next;
  };
  auto cursor = std::make_shared<BootstrapCursor>();
  MasterHooks hooks;
  hooks.current_seq = [this] { return seq_; };
  hooks.key_count = [this] { return static_cast<uint64_t>(tree_.size()); };
  // As the RocksDB master's (BatchLog::CanResume): the follower's position
  // must end a batch whose successor the log still holds. Inside a batch it
  // holds a history this master never streamed.
  hooks.can_resume = [this](uint64_t seq) {
    return seq == seq_ ||
           std::any_of(log_.begin(), log_.end(), [&](const Batch& b) { return b.seq == seq + 1; });
  };
  hooks.read = [this](const std::vector<KeyRef>& keys,
                      std::vector<std::optional<std::string>>* values) {
    values->clear();
    for (const KeyRef& k : keys) {
      auto it = data_.find({k.family, k.key});
      values->push_back(it == data_.end() ? std::nullopt : std::optional(it->second));
    }
    return Status::OK();
  };
  hooks.open_bootstrap = [this, cursor](bool resume, FamilyTag family, const std::string& key) {
    cursor->snapshot = data_;
    cursor->next = resume ? cursor->snapshot.upper_bound({family, key}) : cursor->snapshot.begin();
    return seq_;
  };
  hooks.scan_bootstrap = [cursor](size_t max_bytes, std::vector<Op>* out) {
    size_t bytes = 0;
    while (cursor->next != cursor->snapshot.end() && bytes < max_bytes) {
      const auto& [fk, value] = *cursor->next;
      out->push_back(Op{OpKind::kPut, fk.first, fk.second, value});
      bytes += fk.second.size() + value.size() + 8;
      ++cursor->next;
    }
    return cursor->next == cursor->snapshot.end();
  };
  hooks.random_bytes = [rng](uint8_t* out, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>((*rng)());
  };
  return hooks;
}

FollowerHooks MemoryFollower::Hooks(std::mt19937_64* rng) {
  FollowerHooks hooks;
  hooks.write = [this](const ApplyRequest& request) {
    Status s = ApplyOps(request.ops, &data_, &tree_);
    if (!s.ok()) return s;
    state_ = request.state;
    if (request.source == ApplyRequest::Source::kStream) {
      stream_applies_.push_back(request.ops);
      stream_apply_seqs_.push_back(request.stream_seq);
    }
    return Status::OK();
  };
  hooks.snapshot = [this] { return TreeView(tree_.Snapshot()); };
  hooks.random_bytes = [rng](uint8_t* out, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>((*rng)());
  };
  return hooks;
}

void MemoryFollower::Restart() {
  MerkleTree rebuilt(tree_.hasher());
  for (const auto& [fk, value] : data_) {
    Status s = rebuilt.Put(fk.first, fk.second, value);
    (void)s;
  }
  tree_ = std::move(rebuilt);
}

void MemoryFollower::Put(FamilyTag family, const std::string& key, const std::string& value) {
  ApplyOps({Op{OpKind::kPut, family, key, value}}, &data_, &tree_);
}

void MemoryFollower::Delete(FamilyTag family, const std::string& key) {
  ApplyOps({Op{OpKind::kDelete, family, key, {}}}, &data_, &tree_);
}

void MemoryFollower::Load(KeyValueMap data) {
  data_ = std::move(data);
  Restart();
}

void MemoryFollower::Wipe() {
  data_.clear();
  tree_.Clear();
}

}  // namespace sdiff::testing
