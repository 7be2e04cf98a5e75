// Chained followers in one process (issue 14, section 1): the batch log's
// relay calls (AppendApplied, Correct), and RocksDB followers that serve
// followers of their own (plugin/relay.h) behind an in-memory master over
// loopback: the origin's identity and sequences reach the end of the chain,
// a follower of a follower resumes, diffs and bootstraps as from the master,
// and a middle node restarted costs its followers a resume or a diff.
#include "plugin/relay.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "net/master_server.h"
#include "plugin/batch_log.h"
#include "plugin/follower.h"
#include "test/support/memory_hub.h"
#include "test/support/rocks_util.h"
#include "test/support/wait.h"

namespace sdiff::plugin {
namespace {

using namespace std::chrono_literals;
using testing::KeyValueMap;
using testing::MemoryHub;
using testing::QuietLogger;
using testing::WaitUntil;

constexpr auto kDeadline = 20s;

// ---- the batch log's relay calls ----

// Records what a session would be handed.
class RecordingSink : public BatchSink {
 public:
  void OnBatches(std::vector<StreamBatch> batches) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& b : batches) seqs_.push_back(b.batch->seq);
  }
  void OnSnapshot(TreeView snapshot, uint64_t seq) override {
    std::lock_guard<std::mutex> lock(mu_);
    snapshots_.emplace_back(seq, snapshot.root_hash());
  }
  std::vector<uint64_t> seqs() {
    std::lock_guard<std::mutex> lock(mu_);
    return seqs_;
  }
  std::vector<std::pair<uint64_t, Hash128>> snapshots() {
    std::lock_guard<std::mutex> lock(mu_);
    return snapshots_;
  }

 private:
  std::mutex mu_;
  std::vector<uint64_t> seqs_;
  std::vector<std::pair<uint64_t, Hash128>> snapshots_;
};

std::shared_ptr<Batch> MakeBatch(uint64_t seq, uint64_t count, const std::string& key) {
  auto batch = std::make_shared<Batch>();
  batch->seq = seq;
  batch->count = count;
  batch->ops.push_back(Op{OpKind::kPut, 0, key, "v"});
  return batch;
}

TEST(BatchLogRelayTest, AppendAppliedTakesTheGivenTreeAndKeepsTheWindow) {
  BatchLog log(BatchLogOptions{
      .resume_window_bytes = 1 << 20, .key_hasher = &KeyHash, .logger = QuietLogger()});
  MerkleTree follower;  // the follower store's tree, which the log must take as it is
  ASSERT_TRUE(follower.Put(0, "a", "1").ok());
  log.Correct(follower.Snapshot(), 10);  // where the relay's replica stands
  EXPECT_EQ(log.tailed_seq(), 10u);
  EXPECT_FALSE(log.CanResume(10)) << "nobody resumes at a position set outside the stream";

  auto sink = std::make_shared<RecordingSink>();
  log.Subscribe(sink, 11);
  ASSERT_TRUE(follower.Put(0, "b", "2").ok());
  ASSERT_TRUE(log.AppendApplied(MakeBatch(11, 3, "b"), follower.Snapshot()).ok());
  EXPECT_EQ(log.tailed_seq(), 13u);
  EXPECT_EQ(log.key_count(), 2u);
  EXPECT_EQ(log.stats().root, follower.root_hash());
  EXPECT_TRUE(log.CanResume(13));
  EXPECT_FALSE(log.CanResume(12)) << "inside the relayed batch";
  EXPECT_FALSE(log.CanResume(10)) << "at the correction";

  // A batch that does not follow is refused: a jump is a Correct.
  Status s = log.AppendApplied(MakeBatch(20, 1, "c"), follower.Snapshot());
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_EQ(log.tailed_seq(), 13u);

  // A snapshot asked for beyond the tree waits until the log gets there.
  log.RequestSnapshot(sink, 14);
  EXPECT_TRUE(sink->snapshots().empty());
  ASSERT_TRUE(follower.Put(0, "c", "3").ok());
  ASSERT_TRUE(log.AppendApplied(MakeBatch(14, 1, "c"), follower.Snapshot()).ok());
  log.Flush();
  EXPECT_EQ(sink->seqs(), (std::vector<uint64_t>{11, 14}));
  ASSERT_EQ(sink->snapshots().size(), 1u);
  EXPECT_EQ(sink->snapshots()[0].first, 14u);
  EXPECT_EQ(sink->snapshots()[0].second, follower.root_hash());
  EXPECT_TRUE(log.CanResume(13));
  EXPECT_TRUE(log.CanResume(14));

  // A repair changes the tree outside the stream: nobody at or before it
  // resumes, and a snapshot now has the repaired tree.
  ASSERT_TRUE(follower.Put(0, "a", "repaired").ok());
  log.Correct(follower.Snapshot(), 14);
  EXPECT_FALSE(log.CanResume(14));
  EXPECT_FALSE(log.CanResume(13));
  EXPECT_EQ(log.stats().root, follower.root_hash());
  log.RequestSnapshot(sink, 14);
  ASSERT_EQ(sink->snapshots().size(), 2u);
  EXPECT_EQ(sink->snapshots()[1].second, follower.root_hash());
  ASSERT_TRUE(log.AppendApplied(MakeBatch(15, 1, "d"), follower.Snapshot()).ok());
  EXPECT_TRUE(log.CanResume(15)) << "after the correction the stream is resumable again";
  log.Unsubscribe(sink.get());
}

TEST(BatchLogRelayTest, MerkleTreeFromAViewSharesItAndCopiesOnWrite) {
  MerkleTree original;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(original.Put(0, "k" + std::to_string(i), "v").ok());
  TreeView view = original.Snapshot();
  MerkleTree taken(view);
  EXPECT_EQ(taken.size(), 100u);
  EXPECT_EQ(taken.root_hash(), view.root_hash());
  ASSERT_TRUE(taken.Put(0, "k0", "changed").ok());
  EXPECT_NE(taken.root_hash(), view.root_hash());
  EXPECT_EQ(original.root_hash(), view.root_hash()) << "the view's nodes were copied, not changed";
}

// ---- followers of followers, in one process ----

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sdiff-relay-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Everything in the follower's replicated families, by the hub's tags.
KeyValueMap Scan(Follower* follower) {
  KeyValueMap out;
  for (const auto& [name, tag] : std::map<std::string, FamilyTag>{{"default", 0}, {"meta", 1}}) {
    rocksdb::ColumnFamilyHandle* handle = follower->column_family(name);
    if (handle == nullptr) continue;
    std::unique_ptr<rocksdb::Iterator> it(
        follower->db()->NewIterator(rocksdb::ReadOptions(), handle));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      out[{tag, it->key().ToString()}] = it->value().ToString();
    }
  }
  return out;
}

class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net::MasterServerOptions options;
    options.listen = "127.0.0.1:0";
    options.logger = QuietLogger();
    ASSERT_TRUE(net::MasterServer::Start(&hub_, options, &master_).ok());
  }
  void TearDown() override { master_->Stop(); }

  // A follower of HOST:upstream_port into `name`; it serves followers of its
  // own on `listen_port` (0: any) when `relay`.
  FollowerOptions Options(const std::string& name, uint16_t upstream_port, bool relay,
                          uint16_t listen_port = 0) {
    FollowerOptions options;
    options.db_path = dir_.sub(name);
    options.client.master = "127.0.0.1:" + std::to_string(upstream_port);
    options.client.backoff_initial = 20ms;
    options.client.backoff_max = 200ms;
    options.client.logger = QuietLogger();
    options.audit.interval = 0ms;
    if (relay) {
      options.relay.server.listen = "127.0.0.1:" + std::to_string(listen_port);
      options.relay.bootstrap_min_keys = 500;
    }
    return options;
  }

  std::unique_ptr<Follower> Open(FollowerOptions options) {
    std::unique_ptr<Follower> follower;
    Status s = Follower::Open(std::move(options), &follower);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return follower;
  }

  void Fill(int n, const std::string& prefix) {
    for (int i = 0; i < n; ++i) {
      hub_.Write({Op{OpKind::kPut, static_cast<FamilyTag>(i % 2), prefix + std::to_string(i),
                     "v" + std::to_string(i)}});
    }
  }

  // Waits until the follower, connected, holds the hub's data at the hub's
  // sequence, persisted (a diff has completed since its last start).
  void ExpectEqualToTheMaster(Follower* follower, const std::string& who) {
    bool equal = WaitUntil(
        [&] {
          FollowerStatus status = follower->status();
          return status.connected && status.applied_seq == hub_.seq() &&
                 follower->WaitForSequence(hub_.seq(), 0ms).ok() && Scan(follower) == hub_.Data();
        },
        kDeadline);
    EXPECT_TRUE(equal) << who << ": applied " << follower->status().applied_seq << " of "
                       << hub_.seq() << ", last error: " << follower->status().last_error;
    EXPECT_EQ(follower->status().master_id, "origin") << who;
  }

  TempDir dir_;
  MemoryHub hub_{"origin"};
  std::unique_ptr<net::MasterServer> master_;
};

TEST_F(RelayTest, AFollowerOfAFollowerGetsTheOriginsIdentityAndSequences) {
  Fill(40, "pre");
  auto f1 = Open(Options("f1", master_->port(), /*relay=*/true));
  ASSERT_NE(f1->port(), 0);
  auto f2 = Open(Options("f2", f1->port(), /*relay=*/false));
  ExpectEqualToTheMaster(f1.get(), "f1");
  ExpectEqualToTheMaster(f2.get(), "f2");

  // Every kind of op, a batch of many ops, and a value too large for one
  // frame (its batch comes in parts: staged in a RocksDB write batch on f1,
  // read back from it to be relayed).
  hub_.Write(
      {Op{OpKind::kPut, 0, "big", std::string(3 << 20, 'x')}, Op{OpKind::kPut, 1, "m", "1"}});
  hub_.Write({Op{OpKind::kDelete, 0, "pre0", ""}, Op{OpKind::kDeleteRange, 1, "pre1", "pre3"},
              Op{OpKind::kPut, 1, "pre25", "after-range"}});
  Fill(30, "post");
  ExpectEqualToTheMaster(f1.get(), "f1");
  ExpectEqualToTheMaster(f2.get(), "f2");
  EXPECT_EQ(f2->tree().root_hash(), f1->tree().root_hash());

  // f2's lag is measured from the origin: it heard of the master's sequence.
  EXPECT_TRUE(f2->WaitFor(
      [&](const FollowerStatus& s) { return s.master_seq == hub_.seq() && s.lag_seqs == 0; },
      kDeadline));
  FollowerStatus status = f1->status();
  ASSERT_TRUE(status.relay.has_value());
  EXPECT_EQ(status.relay->seq, hub_.seq());
  EXPECT_EQ(status.relay->unavailable, "");
  ASSERT_TRUE(
      WaitUntil([&] { return f1->status().relay->server.sessions.size() == 1; }, kDeadline));
  EXPECT_TRUE(WaitUntil(
      [&] { return f1->status().relay->server.sessions[0].applied_seq == hub_.seq(); }, kDeadline));
  EXPECT_FALSE(f2->status().relay.has_value());
}

TEST_F(RelayTest, TheMiddleNodeRestartedCostsItsFollowerAResumeOrADiff) {
  Fill(60, "a");
  FollowerOptions middle = Options("f1", master_->port(), /*relay=*/true);
  auto f1 = Open(middle);
  uint16_t port = f1->port();
  auto f2 = Open(Options("f2", port, /*relay=*/false));
  ExpectEqualToTheMaster(f2.get(), "f2");
  // Streamed past f1's own first diff: nobody resumes at a position a repair
  // was made at (the stream there did not carry it), as on a master after a
  // self-audit's correction.
  Fill(5, "a2");
  ExpectEqualToTheMaster(f2.get(), "f2");

  // f2 away and back: it resumes from f1's window.
  FollowerOptions leaf = Options("f2", port, false);
  f2.reset();
  Fill(20, "b");
  f2 = Open(leaf);
  ExpectEqualToTheMaster(f2.get(), "f2");
  EXPECT_EQ(f2->status().last_start, StartMode::kResume);

  // f1 restarted on the same port while the master writes: f2 comes back to
  // it and resumes or diffs; it never gets everything again.
  f1.reset();
  Fill(20, "c");
  middle.relay.server.listen = "127.0.0.1:" + std::to_string(port);
  f1 = Open(middle);
  Fill(20, "d");
  ExpectEqualToTheMaster(f1.get(), "f1");
  ExpectEqualToTheMaster(f2.get(), "f2");
  FollowerStatus status = f2->status();
  EXPECT_GE(status.connects, 2u);
  EXPECT_EQ(status.bootstraps, 0u);
  // f1 stopped cleanly where f2 was, and reopened there: f2 resumes.
  EXPECT_EQ(status.last_start, StartMode::kResume);
}

TEST_F(RelayTest, AnEmptyFollowerOfARelayIsBootstrappedByKeysNotCopied) {
  for (int b = 0; b < 6; ++b) {  // past the relay's bootstrap_min_keys (500)
    std::vector<Op> ops;
    for (int i = 0; i < 100; ++i) {
      std::string key = "k" + std::to_string(b * 100 + i);
      ops.push_back(Op{OpKind::kPut, static_cast<FamilyTag>(i % 2), key, key});
    }
    hub_.Write(std::move(ops));
  }
  auto f1 = Open(Options("f1", master_->port(), /*relay=*/true));
  ExpectEqualToTheMaster(f1.get(), "f1");
  auto f2 = Open(Options("f2", f1->port(), /*relay=*/false));  // clone_files is on
  ExpectEqualToTheMaster(f2.get(), "f2");
  FollowerStatus status = f2->status();
  EXPECT_FALSE(status.cloned) << "a relay serves no files";
  EXPECT_EQ(status.bootstraps, 1u);
}

TEST_F(RelayTest, ARelayRefusesFollowersUntilItFollowsAMaster) {
  // f1's master is not there: f1 has no identity, and refuses f2.
  std::unique_ptr<net::MasterServer> gone;
  net::MasterServerOptions options;
  options.listen = "127.0.0.1:0";
  options.logger = QuietLogger();
  ASSERT_TRUE(net::MasterServer::Start(&hub_, options, &gone).ok());
  uint16_t nobody = gone->port();
  gone->Stop();
  gone.reset();
  auto f1 = Open(Options("f1", nobody, /*relay=*/true));
  FollowerOptions leaf = Options("f2", f1->port(), false);
  leaf.clone_files = false;
  auto f2 = Open(leaf);
  EXPECT_TRUE(f2->WaitFor(
      [](const FollowerStatus& s) {
        return s.last_error.find("does not follow a master") != std::string::npos;
      },
      kDeadline))
      << f2->status().last_error;
  EXPECT_FALSE(f1->status().relay->unavailable.empty());
  EXPECT_EQ(f2->status().connects, 0u);
}

}  // namespace
}  // namespace sdiff::plugin
