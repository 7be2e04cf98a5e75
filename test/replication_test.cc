// End to end: a real RocksDB master (Master::Attach) and a real RocksDB
// follower (Follower::Open) over loopback. Equality is a full scan of both
// databases, every replicated column family, matched by name.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>

#include "plugin/follower.h"
#include "plugin/master.h"
#include "test/support/rocks_util.h"
#include "test/support/wait.h"

namespace sdiff::plugin {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
using Contents = testing::FamilyContents;
using testing::ScanAll;

constexpr auto kDeadline = 15s;
const std::vector<std::string> kFamilies = {"default", "meta", "other"};

// A master database with three column families, as an application opens it.
struct MasterDb {
  std::string dir;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  std::unique_ptr<Master> master;
  KeyHasher hasher = &KeyHash;

  explicit MasterDb(const std::string& path) : dir(path) {
    rocksdb::Options o;
    o.create_if_missing = o.create_missing_column_families = true;
    o.WAL_ttl_seconds = 3600;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& name : kFamilies) cfs.emplace_back(name, o);
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(o, dir, cfs, &handles, &raw);
    EXPECT_TRUE(s.ok()) << s.ToString();
    db.reset(raw);
  }
  ~MasterDb() {
    master.reset();
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  }
  void Attach(const std::function<void(MasterOptions&)>& tune = {}) {
    MasterOptions o;
    o.server.listen = "127.0.0.1:0";
    o.server.logger = testing::QuietLogger();
    o.bootstrap_min_keys = 50;
    o.key_hasher = hasher;
    if (tune) tune(o);
    Status s = Master::Attach(db.get(), handles, o, &master);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void Put(int cf, const std::string& k, const std::string& v) {
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[cf], k, v).ok());
    master->NotifyWrite();
  }
  Contents Scan() { return ScanAll(db.get(), handles); }
  // Until the tailer has taken every write in: the master decides between
  // copy, bootstrap and diff by the keys in its tree, which lags the DB.
  bool WaitTailed() {
    return testing::WaitUntil(
        [&] { return master->status().tailed_seq >= db->GetLatestSequenceNumber(); }, kDeadline);
  }
};

class ReplicationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sdiff-repl-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    follower_.reset();
    masters_.clear();
    std::filesystem::remove_all(dir_);
  }

  MasterDb& NewMaster(const std::string& name, const std::function<void(MasterOptions&)>& tune = {},
                      KeyHasher hasher = &KeyHash) {
    masters_.push_back(std::make_unique<MasterDb>(dir_ + "/" + name));
    masters_.back()->hasher = hasher;
    masters_.back()->Attach(tune);
    return *masters_.back();
  }

  void OpenFollower(const MasterDb& m, bool clone_files = true) {
    FollowerOptions o;
    o.clone_files = clone_files;
    o.key_hasher = m.hasher;
    o.db_path = dir_ + "/follower";
    o.client.master = "127.0.0.1:" + std::to_string(m.master->port());
    o.client.backoff_initial = 20ms;
    o.client.backoff_max = 200ms;
    o.client.logger = testing::QuietLogger();
    Status s = Follower::Open(o, &follower_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  Contents FollowerScan() {
    std::vector<std::string> names;
    rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir_ + "/follower", &names);
    // The replica is open in the follower; read it as other processes would,
    // through a secondary instance.
    rocksdb::Options o;
    o.max_open_files = -1;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& n : names) cfs.emplace_back(n, o);
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::OpenAsSecondary(o, dir_ + "/follower", dir_ + "/secondary",
                                                     cfs, &handles, &raw);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) return {};
    Contents out = ScanAll(raw, handles);
    for (auto* h : handles) raw->DestroyColumnFamilyHandle(h);
    delete raw;
    return out;
  }

  // Waits until the follower holds exactly what the master holds.
  bool Converges(MasterDb& m) {
    auto end = std::chrono::steady_clock::now() + kDeadline;
    while (std::chrono::steady_clock::now() < end) {
      if (follower_->WaitFor(
              [&](const FollowerStatus& s) {
                return s.connected && s.applied_seq >= m.master->status().tailed_seq &&
                       s.keys == m.master->status().keys;
              },
              200ms) &&
          FollowerScan() == m.Scan()) {
        return true;
      }
    }
    return false;
  }

  std::string dir_;
  std::vector<std::unique_ptr<MasterDb>> masters_;
  std::unique_ptr<Follower> follower_;
};

TEST_F(ReplicationTest, EveryRecordKindAcrossFamilies) {
  MasterDb& m = NewMaster("master");
  OpenFollower(m);
  m.Put(0, "a", "1");
  m.Put(1, "a", "meta");
  m.Put(2, "bin\0key"s, "\0v"s);
  m.Put(0, "empty", "");
  m.Put(0, "big", std::string(1 << 20, 'B'));
  rocksdb::WriteBatch batch;
  batch.Put(m.handles[0], "b", "2");
  batch.Delete(m.handles[0], "a");
  batch.SingleDelete(m.handles[1], "ghost");
  for (int i = 0; i < 10; ++i) batch.Put(m.handles[2], "r" + std::to_string(i), "r");
  batch.DeleteRange(m.handles[2], "r2", "r7");
  ASSERT_TRUE(m.db->Write(rocksdb::WriteOptions(), &batch).ok());
  m.master->NotifyWrite();
  EXPECT_TRUE(Converges(m));
}

TEST_F(ReplicationTest, RestartedFollowerResumesWithoutRepairs) {
  MasterDb& m = NewMaster("master");
  for (int i = 0; i < 20; ++i) m.Put(i % 3, "k" + std::to_string(i), "v");
  OpenFollower(m);
  ASSERT_TRUE(Converges(m));
  follower_.reset();
  for (int i = 0; i < 20; ++i) m.Put(0, "later" + std::to_string(i), "v");
  OpenFollower(m);
  ASSERT_TRUE(Converges(m));
  ASSERT_TRUE(follower_->WaitFor([](const FollowerStatus& s) { return s.diffs >= 1; }, kDeadline));
  FollowerStatus s = follower_->status();
  EXPECT_EQ(s.last_start, StartMode::kResume);
  EXPECT_EQ(s.last_diff_repaired, 0u) << "the catch-up diff found nothing to repair";
}

TEST_F(ReplicationTest, EmptyFollowerBootstrapsThenStreams) {
  MasterDb& m = NewMaster("master");
  for (int i = 0; i < 200; ++i) m.Put(i % 3, "pre" + std::to_string(i), std::string(50, 'x'));
  ASSERT_TRUE(m.WaitTailed());  // else a loaded machine's master may hold < 50 keys: a diff
  OpenFollower(m, /*clone_files=*/false);  // test/clone_test.cc covers the copy
  for (int i = 0; i < 20; ++i) m.Put(1, "during" + std::to_string(i), "d");
  ASSERT_TRUE(Converges(m));
  EXPECT_EQ(follower_->status().last_start, StartMode::kBootstrap);
  EXPECT_FALSE(follower_->status().cloned);
}

TEST_F(ReplicationTest, EmptyFollowerCopiesTheFilesThenStreams) {
  MasterDb& m = NewMaster("master");
  for (int i = 0; i < 200; ++i) m.Put(i % 3, "pre" + std::to_string(i), std::string(50, 'x'));
  ASSERT_TRUE(m.WaitTailed());  // else a loaded machine's master may refuse: "too few keys"
  OpenFollower(m);
  EXPECT_TRUE(follower_->status().cloned);
  for (int i = 0; i < 20; ++i) m.Put(1, "during" + std::to_string(i), "d");
  ASSERT_TRUE(Converges(m));
  EXPECT_EQ(follower_->status().last_start, StartMode::kResume);
}

TEST_F(ReplicationTest, FollowerOfAnotherMasterIsResyncedNotMixed) {
  MasterDb& a = NewMaster("a");
  for (int i = 0; i < 30; ++i) a.Put(0, "from-a" + std::to_string(i), "a");
  OpenFollower(a);
  ASSERT_TRUE(Converges(a));
  follower_.reset();
  MasterDb& b = NewMaster("b");
  for (int i = 0; i < 10; ++i) b.Put(2, "from-b" + std::to_string(i), "b");
  OpenFollower(b);
  ASSERT_TRUE(Converges(b));
  EXPECT_EQ(follower_->status().master_id, b.master->master_id());
  EXPECT_NE(follower_->status().last_start, StartMode::kResume);
}

// A write larger than the follower's backlog limit waits for the link, sent a
// piece at a time, instead of dropping the follower again after every
// reconnect; the writes after it follow.
TEST_F(ReplicationTest, WriteLargerThanTheBacklogLimitReplicatesWithoutReconnecting) {
  MasterDb& m = NewMaster("master", [](MasterOptions& o) {
    o.server.connection.high_water_bytes = 1 << 20;
    o.server.connection.low_water_bytes = 256 << 10;
    o.server.bulk_frame_bytes = 64 << 10;
  });
  m.Put(0, "before", "b");
  OpenFollower(m, /*clone_files=*/false);  // a refused cloner would count as rejected
  ASSERT_TRUE(Converges(m));
  m.Put(0, "huge", std::string(4 << 20, 'h'));  // 4 times the limit, in one value
  rocksdb::WriteBatch batch;                    // and in one batch of many values
  for (int i = 0; i < 40; ++i) {
    batch.Put(m.handles[i % 3], "part" + std::to_string(i), std::string(100 << 10, 'a' + i % 26));
  }
  batch.Delete(m.handles[0], "before");
  ASSERT_TRUE(m.db->Write(rocksdb::WriteOptions(), &batch).ok());
  for (int i = 0; i < 20; ++i) m.Put(1, "after" + std::to_string(i), "a");
  ASSERT_TRUE(Converges(m));
  FollowerStatus s = follower_->status();
  EXPECT_EQ(s.connects, 1u) << s.last_error;
  EXPECT_EQ(s.reconnects, 0u) << s.last_error;
  EXPECT_EQ(m.master->status().server.rejected, 0u);
}

// Bootstrap and repair send a value larger than a frame in pieces too.
TEST_F(ReplicationTest, LargeValuesBootstrapAndRepairInPieces) {
  MasterDb& m = NewMaster("master", [](MasterOptions& o) {
    o.server.connection.high_water_bytes = 1 << 20;
    o.server.connection.low_water_bytes = 256 << 10;
    o.server.bulk_frame_bytes = 64 << 10;
  });
  for (int i = 0; i < 60; ++i) m.Put(i % 3, "k" + std::to_string(i), "v");
  m.Put(0, "huge", std::string(4 << 20, 'h'));
  m.Put(2, "large", std::string(300 << 10, 'l'));
  ASSERT_TRUE(m.WaitTailed());
  OpenFollower(m, /*clone_files=*/false);
  ASSERT_TRUE(Converges(m));
  FollowerStatus s = follower_->status();
  EXPECT_EQ(s.last_start, StartMode::kBootstrap) << s.last_error;
  EXPECT_EQ(s.connects, 1u) << s.last_error;
  // Damage the replica behind the follower's back: the catch-up diff after
  // the resume repairs both values.
  follower_.reset();
  {
    rocksdb::Options o;
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(o, dir_ + "/follower", &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& n : names) cfs.emplace_back(n, o);
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir_ + "/follower", cfs, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "default") {
        ASSERT_TRUE(db->Delete({}, handles[i], "huge").ok());
      }
      if (names[i] == "other") {
        ASSERT_TRUE(db->Put({}, handles[i], "large", "stale").ok());
      }
    }
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  }
  OpenFollower(m, /*clone_files=*/false);
  ASSERT_TRUE(Converges(m));
  ASSERT_TRUE(follower_->WaitFor([](const FollowerStatus& s) { return s.diffs >= 1; }, kDeadline));
  s = follower_->status();
  EXPECT_EQ(s.last_start, StartMode::kResume) << s.last_error;
  EXPECT_EQ(s.last_diff_repaired, 2u);
  EXPECT_EQ(s.connects, 1u) << s.last_error;
}

// The full sizes, opt-in (SDIFF_LARGE_TESTS=1): a 256 MiB value and a 512 MiB
// batch by stream with the default limits, then the same data to a second,
// empty follower by bootstrap, which sends the large value as pieces.
TEST_F(ReplicationTest, LargeValueAndBatchAtFullSize) {
  const char* env = std::getenv("SDIFF_LARGE_TESTS");
  if (env == nullptr || std::string(env) != "1") {
    GTEST_SKIP() << "set SDIFF_LARGE_TESTS=1 to run (about 3 GiB of memory, a minute or more)";
  }
  constexpr auto kLong = 180s;
  MasterDb& m = NewMaster("master", [](MasterOptions& o) {
    o.bootstrap_min_keys = 5;
    if (std::getenv("SDIFF_LARGE_TESTS_LOG") != nullptr) o.server.logger = spdlog::default_logger();
  });
  m.Put(0, "before", "b");
  OpenFollower(m, /*clone_files=*/false);
  ASSERT_TRUE(Converges(m));
  auto matches = [&](Follower& f) {
    return f.WaitFor(
        [&](const FollowerStatus& s) {
          // The tailer must have taken in every write (tailed_seq alone
          // would let a follower match a master stuck before the batch).
          MasterStatus ms = m.master->status();
          return ms.tailed_seq >= ms.db_seq && s.connected && s.applied_seq >= ms.tailed_seq &&
                 s.keys == ms.keys && f.tree().root_hash() == ms.root;
        },
        std::chrono::duration_cast<std::chrono::milliseconds>(kLong));
  };
  m.Put(0, "value256", std::string(256 << 20, 'v'));
  {
    rocksdb::WriteBatch batch;
    for (int i = 0; i < 512; ++i) {
      batch.Put(m.handles[i % 3], "batch" + std::to_string(i), std::string(1 << 20, 'a' + i % 26));
    }
    ASSERT_TRUE(m.db->Write(rocksdb::WriteOptions(), &batch).ok());
  }
  m.master->NotifyWrite();
  m.Put(1, "after", "a");
  ASSERT_TRUE(matches(*follower_))
      << "tailed " << m.master->status().tailed_seq << " of " << m.master->status().db_seq
      << ", follower applied " << follower_->status().applied_seq;
  FollowerStatus s = follower_->status();
  EXPECT_EQ(s.connects, 1u) << s.last_error;
  EXPECT_EQ(s.reconnects, 0u) << s.last_error;
  follower_.reset();
  std::filesystem::remove_all(dir_ + "/follower");
  OpenFollower(m, /*clone_files=*/false);
  ASSERT_TRUE(matches(*follower_));
  s = follower_->status();
  EXPECT_EQ(s.last_start, StartMode::kBootstrap)
      << s.last_error << "; master rebuilds " << m.master->status().rebuilds;
  EXPECT_EQ(s.connects, 1u) << s.last_error;
}

// "collide-b" has the key hash of "collide-a"; every other key its own.
Hash128 CollidingHasher(FamilyTag family, std::string_view key) {
  return KeyHash(family, key == "collide-b" ? std::string_view("collide-a") : key);
}

// Two keys with one 128-bit key hash: both reach the follower's database,
// every other key keeps flowing, the tree (which holds the lesser) is the same
// on both sides and after a rebuild from a scan, and nothing rebuilds in a loop.
TEST_F(ReplicationTest, KeyHashCollisionReplicatesWithoutRebuilding) {
  MasterDb& m = NewMaster("master", {}, &CollidingHasher);
  OpenFollower(m, /*clone_files=*/false);
  m.Put(0, "before", "1");
  ASSERT_TRUE(Converges(m));
  m.Put(0, "collide-b", "b1");
  m.Put(0, "collide-a", "a1");  // the lesser comes second: it takes the trie's place
  m.Put(0, "after", "2");
  ASSERT_TRUE(Converges(m)) << "rebuilds: " << m.master->status().rebuilds;
  MasterStatus st = m.master->status();
  EXPECT_EQ(st.rebuilds, 0u);
  EXPECT_EQ(st.left_out_keys, 1u);
  EXPECT_EQ(st.keys, 3u);  // before, collide-a, after
  m.Put(0, "collide-b", "b2");
  m.Put(0, "later", "3");
  ASSERT_TRUE(Converges(m));

  // A write outside the WAL makes the master rebuild its tree from a scan and
  // the follower diff: the scan's tree is the tailer's, so the diff repairs
  // only that write, and a diff after it finds nothing (were the trees to
  // differ, every diff would repair the colliding key again).
  rocksdb::WriteOptions no_wal;
  no_wal.disableWAL = true;
  ASSERT_TRUE(m.db->Put(no_wal, m.handles[0], "unlogged", "4").ok());
  m.Put(0, "logged", "5");
  ASSERT_TRUE(testing::WaitUntil([&] { return m.master->status().rebuilds == 1; }, kDeadline));
  // The stream jumped over the rebuilt sequences: the follower's applied
  // sequence reaches the master's again with the next write.
  m.Put(0, "after-rebuild", "6");
  ASSERT_TRUE(Converges(m));
  uint64_t diffs = follower_->status().diffs;
  follower_->RequestSync();
  EXPECT_TRUE(follower_->WaitFor(
      [&](const FollowerStatus& s) { return s.diffs > diffs && s.last_diff_repaired == 0; },
      kDeadline))
      << "every diff repairs something: the trees differ";
  st = m.master->status();
  EXPECT_EQ(st.rebuilds, 1u);
  EXPECT_EQ(st.left_out_keys, 1u);
  // Deleting the key in the trie brings the other in, on both sides.
  ASSERT_TRUE(m.db->Delete(rocksdb::WriteOptions(), m.handles[0], "collide-a").ok());
  m.master->NotifyWrite();
  ASSERT_TRUE(Converges(m));
  EXPECT_EQ(m.master->status().left_out_keys, 0u);
  diffs = follower_->status().diffs;
  follower_->RequestSync();
  EXPECT_TRUE(follower_->WaitFor(
      [&](const FollowerStatus& s) { return s.diffs > diffs && s.last_diff_repaired == 0; },
      kDeadline))
      << "every diff repairs something: the trees differ";
  EXPECT_EQ(m.master->status().rebuilds, 1u);
}

}  // namespace
}  // namespace sdiff::plugin
