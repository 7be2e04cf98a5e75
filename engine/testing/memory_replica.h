// In-memory master and follower stores that implement the sessions' hooks,
// for the deterministic simulation tests and the diff benchmark. They stand in
// for RocksDB: a sorted map per side, the side's merkle tree, and (master) the
// log of committed batches that a WAL would hold.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/client_session.h"
#include "engine/merkle_tree.h"
#include "engine/server_session.h"

namespace sdiff::testing {

using KeyValueMap = std::map<std::pair<FamilyTag, std::string>, std::string>;

// Applies ops to a map and its tree, as a follower's WriteFun or the master's commit would.
Status ApplyOps(const std::vector<Op>& ops, KeyValueMap* data, MerkleTree* tree);

class MemoryMaster {
 public:
  MemoryMaster(std::string id, KeyHasher hasher = &KeyHash);

  // Commits one batch and returns it as the stream carries it.
  const Batch& Write(std::vector<Op> ops);
  // Forgets log entries below `seq`, as a WAL purge does.
  void PurgeLogBefore(uint64_t seq);

  // Hooks for one session; `rng` must outlive the session.
  MasterHooks Hooks(std::mt19937_64* rng);
  ServerOptions Options() const;

  const std::string& id() const { return id_; }
  uint64_t seq() const { return seq_; }
  const KeyValueMap& data() const { return data_; }
  const MerkleTree& tree() const { return tree_; }
  // Committed batches from `from` on, for a session that resumes there.
  std::vector<const Batch*> LogFrom(uint64_t from) const;

 private:
  std::string id_;
  KeyValueMap data_;
  MerkleTree tree_;
  uint64_t seq_ = 0;
  std::vector<Batch> log_;
};

class MemoryFollower {
 public:
  explicit MemoryFollower(KeyHasher hasher = &KeyHash) : tree_(hasher) {}

  FollowerHooks Hooks(std::mt19937_64* rng);

  // What survives a restart: data and replication state. The tree is rebuilt.
  void Restart();
  // Direct edits that bypass replication, as damage or another writer would.
  void Put(FamilyTag family, const std::string& key, const std::string& value);
  void Delete(FamilyTag family, const std::string& key);
  void Wipe();
  // Replaces the data wholesale and rebuilds the tree.
  void Load(KeyValueMap data);
  void SetState(FollowerState state) { state_ = std::move(state); }

  const KeyValueMap& data() const { return data_; }
  const MerkleTree& tree() const { return tree_; }
  const FollowerState& state() const { return state_; }
  // Every stream batch applied, as the write hook received it.
  const std::vector<std::vector<Op>>& stream_applies() const { return stream_applies_; }
  std::vector<uint64_t>& stream_apply_seqs() { return stream_apply_seqs_; }

 private:
  KeyValueMap data_;
  MerkleTree tree_;
  FollowerState state_;
  std::vector<std::vector<Op>> stream_applies_;
  std::vector<uint64_t> stream_apply_seqs_;
};

}  // namespace sdiff::testing
