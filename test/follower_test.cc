// The RocksDB follower against an in-memory master over loopback: stream
// convergence, restart and resume, repair of a damaged replica, a foreign
// master, atomicity across failing writes, secondary readers and bad paths.
// Real RocksDB in temporary directories; every wait has a deadline.
#include "plugin/follower.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "net/master_server.h"
#include "plugin/follower_store.h"
#include "test/support/memory_hub.h"
#include "test/support/rocks_util.h"

namespace sdiff::plugin {
namespace {

using namespace std::chrono_literals;
using testing::KeyValueMap;
using testing::MemoryHub;

constexpr auto kDeadline = 20s;

// MemoryMaster::Options()'s families.
const std::map<std::string, FamilyTag> kTags = {{"default", 0}, {"meta", 1}, {"other", 2}};
constexpr FamilyTag kUnknownTag = 0xffff;

using testing::QuietLogger;

RocksFollowerStoreOptions StoreOptions(const std::string& path) {
  RocksFollowerStoreOptions options;
  options.db_path = path;
  options.logger = QuietLogger();
  return options;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sdiff-follower-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

bool WaitUntil(const std::function<bool()>& condition,
               std::chrono::milliseconds deadline = kDeadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

Hash128 RootOf(const KeyValueMap& data) {
  MerkleTree tree;
  for (const auto& [fk, value] : data) EXPECT_TRUE(tree.Put(fk.first, fk.second, value).ok());
  return tree.root_hash();
}

std::vector<std::string> FamilyNames(const std::string& path) {
  std::vector<std::string> names;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return names;
}

void ScanInto(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* handle, FamilyTag tag,
              KeyValueMap* out) {
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handle));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    (*out)[{tag, it->key().ToString()}] = it->value().ToString();
  }
  EXPECT_TRUE(it->status().ok()) << it->status().ToString();
}

// Everything in every column family of the follower's DB but __sdiff; a family
// the master does not have lands under kUnknownTag, so it shows in comparisons.
KeyValueMap Scan(Follower* follower, const std::string& path) {
  KeyValueMap out;
  for (const std::string& name : FamilyNames(path)) {
    if (name == kMetaFamily) continue;
    rocksdb::ColumnFamilyHandle* handle = follower->column_family(name);
    if (handle == nullptr) {
      ADD_FAILURE() << "no handle for column family " << name;
      continue;
    }
    ScanInto(follower->db(), handle, kTags.count(name) ? kTags.at(name) : kUnknownTag, &out);
  }
  return out;
}

// Opens a follower's DB directly, behind replication's back.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const std::string& name : FamilyNames(path))
      descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(rocksdb::DBOptions(), path, descriptors, &handles_, &db);
    EXPECT_TRUE(s.ok()) << s.ToString();
    db_.reset(db);
    for (size_t i = 0; i < descriptors.size(); ++i) by_name_[descriptors[i].name] = handles_[i];
  }
  ~RawDb() {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    db_->Close();
  }
  rocksdb::DB* db() { return db_.get(); }
  rocksdb::ColumnFamilyHandle* cf(const std::string& name) { return by_name_.at(name); }
  KeyValueMap Data() {
    KeyValueMap out;
    for (const auto& [name, handle] : by_name_) {
      if (name != kMetaFamily) ScanInto(db(), handle, kTags.at(name), &out);
    }
    return out;
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> by_name_;
};

class FollowerTest : public ::testing::Test {
 protected:
  std::unique_ptr<net::MasterServer> StartMaster(MemoryHub* hub) {
    net::MasterServerOptions options;
    options.listen = "127.0.0.1:0";
    options.logger = QuietLogger();
    std::unique_ptr<net::MasterServer> server;
    Status s = net::MasterServer::Start(hub, options, &server);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return server;
  }

  FollowerOptions Options(const net::MasterServer& master) {
    FollowerOptions options;
    options.db_path = dir_.sub("replica");
    options.client.master = "127.0.0.1:" + std::to_string(master.port());
    options.client.backoff_initial = 20ms;
    options.client.backoff_max = 200ms;
    options.client.logger = QuietLogger();
    return options;
  }

  std::unique_ptr<Follower> Open(FollowerOptions options) {
    std::unique_ptr<Follower> follower;
    Status s = Follower::Open(std::move(options), &follower);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return follower;
  }

  // Waits until the follower's DB and tree equal the hub's data, then checks both.
  void ExpectConverged(Follower* follower, MemoryHub* hub, const std::string& path) {
    bool equal = WaitUntil([&] {
      KeyValueMap data = hub->Data();
      return Scan(follower, path) == data && follower->tree().root_hash() == RootOf(data);
    });
    KeyValueMap data = hub->Data();
    EXPECT_TRUE(equal) << "last error: " << follower->status().last_error;
    EXPECT_EQ(Scan(follower, path).size(), data.size());
    EXPECT_TRUE(Scan(follower, path) == data);
    EXPECT_EQ(follower->tree().root_hash(), RootOf(data));
    EXPECT_EQ(follower->status().keys, data.size());
  }

  // Converged, and the diff that follows every (re)connect has finished.
  void ExpectConvergedAndDiffed(Follower* follower, MemoryHub* hub, const std::string& path) {
    ExpectConverged(follower, hub, path);
    ASSERT_TRUE(follower->WaitFor([](const FollowerStatus& s) { return s.diffs >= 1; }, kDeadline));
  }

  void Fill(MemoryHub* hub, int n, const std::string& prefix) {
    for (int i = 0; i < n; ++i) {
      hub->Write({Op{OpKind::kPut, static_cast<FamilyTag>(i % 3), prefix + std::to_string(i),
                     "v" + std::to_string(i)}});
    }
  }

  TempDir dir_;
};

TEST_F(FollowerTest, StreamConvergesAcrossFamiliesAndOpKinds) {
  MemoryHub hub("stream-master");
  Fill(&hub, 60, "pre");
  auto master = StartMaster(&hub);
  FollowerOptions options = Options(*master);
  std::string path = options.db_path;
  auto follower = Open(std::move(options));
  ExpectConverged(follower.get(), &hub, path);

  const std::string nul_key("k\0ey\0", 5), nul_value("\0v\0", 3);
  hub.Write({Op{OpKind::kPut, 1, nul_key, nul_value}, Op{OpKind::kPut, 2, "empty", ""},
             Op{OpKind::kPut, 0, "big", std::string(1 << 20, 'x')}});
  hub.Write({Op{OpKind::kPut, 0, "pre0", "overwritten"}, Op{OpKind::kDelete, 1, "pre1", ""},
             Op{OpKind::kDelete, 2, "never-there", ""}});
  // A range over keys on disk and one put earlier in the same batch; a put
  // after the range in the same batch survives it.
  hub.Write({Op{OpKind::kPut, 1, "pre2x", "in-batch"}, Op{OpKind::kDeleteRange, 1, "pre2", "pre4"},
             Op{OpKind::kPut, 1, "pre3z", "after-range"}});
  hub.Write({Op{OpKind::kDeleteRange, 2, "zzz", "aaa"}});  // empty range: nothing
  hub.Write({Op{OpKind::kPut, 2, std::string("\0", 1), std::string(1, '\xff')}});
  ExpectConverged(follower.get(), &hub, path);

  KeyValueMap data = hub.Data();
  EXPECT_EQ(data.count({1, "pre2x"}), 0u);
  EXPECT_EQ(data.at({1, "pre3z"}), "after-range");
  std::string value;
  ASSERT_TRUE(follower->db()
                  ->Get(rocksdb::ReadOptions(), follower->column_family("meta"), nul_key, &value)
                  .ok());
  EXPECT_EQ(value, nul_value);
  FollowerStatus status = follower->status();
  EXPECT_TRUE(status.connected);
  EXPECT_EQ(status.master_id, "stream-master");
  EXPECT_TRUE(follower->WaitFor(
      [&](const FollowerStatus& s) { return s.applied_seq == hub.seq() && s.lag_seqs == 0; },
      kDeadline));
  EXPECT_GE(status.diffs, 1u);
  EXPECT_GT(status.last_diff_unix_ms, 0);
  // The 1 MiB value alone came over the wire; caught up, it is not behind.
  EXPECT_TRUE(follower->WaitFor([](const FollowerStatus& s) { return s.lag_ms == 0; }, kDeadline));
  status = follower->status();
  EXPECT_GT(status.bytes_in, uint64_t{1} << 20);
  EXPECT_GT(status.bytes_out, 0u);
  master->Stop();
}

TEST_F(FollowerTest, EmptyReplicaBootstraps) {
  MemoryHub hub("big-master");
  for (int b = 0; b < 110; ++b) {  // past the master's bootstrap_min_keys (10000)
    std::vector<Op> ops;
    for (int i = 0; i < 100; ++i) {
      std::string key = "b" + std::to_string(b * 100 + i);
      ops.push_back(Op{OpKind::kPut, static_cast<FamilyTag>(i % 3), key, key});
    }
    hub.Write(std::move(ops));
  }
  auto master = StartMaster(&hub);
  FollowerOptions options = Options(*master);
  std::string path = options.db_path;
  auto follower = Open(std::move(options));
  ExpectConverged(follower.get(), &hub, path);
  EXPECT_EQ(follower->status().last_start, StartMode::kBootstrap);
  master->Stop();
}

TEST_F(FollowerTest, RestartResumesAndRebuildsTheSameTree) {
  MemoryHub hub("restart-master");
  Fill(&hub, 100, "a");
  auto master = StartMaster(&hub);
  FollowerOptions options = Options(*master);
  std::string path = options.db_path;
  auto follower = Open(options);
  // Resumable once the first diff has recorded the position.
  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed(follower.get(), &hub, path));
  Hash128 root = follower->tree().root_hash();
  follower.reset();

  {  // The tree rebuilt from disk is the one we had, and the state says where we were.
    std::unique_ptr<RocksFollowerStore> store;
    ASSERT_TRUE(RocksFollowerStore::Open(StoreOptions(path), &store).ok());
    EXPECT_EQ(store->tree().root_hash(), root);
    EXPECT_EQ(store->State().master_id, "restart-master");
    EXPECT_EQ(store->State().applied_seq, hub.seq());
  }

  uint64_t repaired_before = master->stats().keys_repaired;  // the first diff filled it
  Fill(&hub, 50, "b");
  hub.Write({Op{OpKind::kDeleteRange, 0, "a0", "a5"}});
  follower = Open(options);
  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed(follower.get(), &hub, path));
  FollowerStatus status = follower->status();
  EXPECT_EQ(status.last_start, StartMode::kResume);
  EXPECT_EQ(status.connects, 1u);
  EXPECT_EQ(status.last_diff_repaired, 0u);  // the catch-up diff found nothing to fix
  EXPECT_EQ(master->stats().keys_repaired, repaired_before);
  master->Stop();
}

TEST_F(FollowerTest, DamagedReplicaIsRepairedOnReopen) {
  MemoryHub hub("damage-master");
  Fill(&hub, 90, "k");
  auto master = StartMaster(&hub);
  FollowerOptions options = Options(*master);
  std::string path = options.db_path;
  auto follower = Open(options);
  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed(follower.get(), &hub, path));
  follower.reset();

  {
    RawDb raw(path);
    rocksdb::WriteOptions w;
    ASSERT_TRUE(raw.db()->Put(w, raw.cf("default"), "extra", "rogue").ok());
    ASSERT_TRUE(raw.db()->Delete(w, raw.cf("meta"), "k1").ok());         // missing
    ASSERT_TRUE(raw.db()->Put(w, raw.cf("other"), "k2", "stale").ok());  // stale
    ASSERT_NE(raw.Data(), hub.Data());
  }

  follower = Open(options);
  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed(follower.get(), &hub, path));
  FollowerStatus status = follower->status();
  EXPECT_EQ(status.last_start, StartMode::kResume);  // the state trusted the disk...
  EXPECT_GT(status.last_diff_repaired, 0u);          // ...and the catch-up diff fixed it
  master->Stop();
}

// A state record this version cannot read costs a diff, not the replica.
TEST_F(FollowerTest, UnreadableStateRecordFallsBackToADiff) {
  MemoryHub hub("state-master");
  Fill(&hub, 40, "k");
  auto master = StartMaster(&hub);
  FollowerOptions options = Options(*master);
  std::string path = options.db_path;
  auto follower = Open(options);
  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed(follower.get(), &hub, path));
  follower.reset();
  {
    RawDb raw(path);
    ASSERT_TRUE(
        raw.db()
            ->Put(rocksdb::WriteOptions(), raw.cf(std::string(kMetaFamily)), "state", "\x7fgarbage")
            .ok());
  }
  hub.Put("later", "write");
  follower = Open(options);
  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed(follower.get(), &hub, path));
  EXPECT_EQ(follower->status().last_start, StartMode::kDiff);
  EXPECT_EQ(follower->status().master_id, "state-master");
  master->Stop();
}

TEST_F(FollowerTest, ForeignMasterReplacesEverything) {
  MemoryHub a("master-a");
  Fill(&a, 80, "a");
  a.Write({Op{OpKind::kPut, 1, "shared", "from-a"}});
  auto master_a = StartMaster(&a);
  FollowerOptions options = Options(*master_a);
  std::string path = options.db_path;
  auto follower = Open(options);
  ExpectConverged(follower.get(), &a, path);
  follower.reset();
  master_a->Stop();

  MemoryHub b("master-b");
  Fill(&b, 40, "b");
  b.Write({Op{OpKind::kPut, 1, "shared", "from-b"}});
  auto master_b = StartMaster(&b);
  options.client.master = "127.0.0.1:" + std::to_string(master_b->port());
  follower = Open(options);
  ExpectConverged(follower.get(), &b, path);  // equal to B: nothing of A is left
  EXPECT_TRUE(follower->WaitFor(
      [](const FollowerStatus& s) { return s.master_id == "master-b" && s.diffs >= 1; },
      kDeadline));
  EXPECT_EQ(follower->status().last_start, StartMode::kDiff);
  EXPECT_GT(follower->status().last_diff_repaired, 0u);
  master_b->Stop();
}

// Batches of three keys that must appear together. Writes start failing after
// a few, as a dying disk would; whatever is on disk afterwards holds whole
// batches only, a prefix of the stream, with a state that matches it.
TEST_F(FollowerTest, FailingWritesLeaveNoHalfBatch) {
  MemoryHub hub("atomic-master");
  auto master = StartMaster(&hub);
  FollowerOptions options = Options(*master);
  std::string path = options.db_path;
  std::atomic<bool> failing{false};
  std::atomic<int> failures{0};
  options.fail_before_write = [&]() {
    if (!failing) return Status::OK();
    ++failures;
    return Status::IOError("injected: disk gone");
  };
  auto follower = Open(options);
  ASSERT_TRUE(follower->WaitFor([](const FollowerStatus& s) { return s.diffs >= 1; }, kDeadline));
  // The disk fails after the first half; batches that arrive together are
  // written together, so the failed writes hold one batch or several.
  constexpr int kBatches = 20;
  for (int i = 0; i < kBatches; ++i) {
    if (i == kBatches / 2) {
      uint64_t seq = hub.seq();
      ASSERT_TRUE(follower->WaitFor([seq](const FollowerStatus& s) { return s.applied_seq >= seq; },
                                    kDeadline));
      failing = true;
    }
    std::string n = std::to_string(100 + i);
    hub.Write({Op{OpKind::kPut, 0, n + "a", n}, Op{OpKind::kPut, 1, n + "b", n},
               Op{OpKind::kPut, 2, n + "c", n}});
  }
  ASSERT_TRUE(WaitUntil([&] { return failures >= 2; }));  // failed, reconnected, failed again
  follower.reset();

  {
    RawDb raw(path);
    KeyValueMap data = raw.Data();
    int whole = 0;
    for (int i = 0; i < kBatches; ++i) {
      std::string n = std::to_string(100 + i);
      int present = data.count({0, n + "a"}) + data.count({1, n + "b"}) + data.count({2, n + "c"});
      EXPECT_TRUE(present == 0 || present == 3) << "batch " << i << " half applied: " << present;
      if (present == 3) {
        EXPECT_EQ(whole, i) << "batches applied out of order";
        ++whole;
      }
    }
    EXPECT_GT(whole, 0);
    EXPECT_LT(whole, kBatches);
    EXPECT_EQ(data.size(), 3u * whole);
  }
  {
    std::unique_ptr<RocksFollowerStore> store;
    ASSERT_TRUE(RocksFollowerStore::Open(StoreOptions(path), &store).ok());
    // Each batch is three sequences and three keys: the state matches the data.
    uint64_t applied = store->State().applied_seq;
    EXPECT_TRUE(applied == 0 || applied == store->keys()) << applied << " " << store->keys();
  }

  options.fail_before_write = nullptr;
  follower = Open(options);
  ExpectConverged(follower.get(), &hub, path);
  master->Stop();
}

// A RocksDB that was never a replica: refused as it is (its own data would
// be overwritten); told to discard it, its data counts as held from the
// first Hello (so it is diffed, not bootstrapped), and the first diff
// removes what the master lacks.
TEST_F(FollowerTest, PlainRocksDbBecomesAnEqualReplica) {
  MemoryHub hub("plain-master");
  Fill(&hub, 30, "m");
  auto master = StartMaster(&hub);
  FollowerOptions options = Options(*master);
  std::string path = options.db_path;
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, path, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::ColumnFamilyHandle* meta = nullptr;
    ASSERT_TRUE(db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "meta", &meta).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "m0", "old").ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "local-only", "x").ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), meta, "m1", "v1").ok());
    db->DestroyColumnFamilyHandle(meta);
    db->Close();
  }
  std::unique_ptr<Follower> refused;
  Status s = Follower::Open(options, &refused);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("holds data but no follower state"), std::string::npos)
      << s.ToString();
  options.discard = true;
  auto follower = Open(options);
  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed(follower.get(), &hub, path));
  EXPECT_EQ(follower->status().last_start, StartMode::kDiff);
  master->Stop();
}

TEST_F(FollowerTest, SecondaryInstanceSeesReplicatedWrites) {
  MemoryHub hub("secondary-master");
  Fill(&hub, 30, "s");
  auto master = StartMaster(&hub);
  FollowerOptions options = Options(*master);
  std::string path = options.db_path;
  auto follower = Open(options);
  ExpectConverged(follower.get(), &hub, path);

  rocksdb::Options secondary_options;
  secondary_options.max_open_files = -1;  // required of a secondary instance
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : FamilyNames(path))
    descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status rs = rocksdb::DB::OpenAsSecondary(secondary_options, path, dir_.sub("secondary"),
                                                    descriptors, &handles, &raw);
  ASSERT_TRUE(rs.ok()) << rs.ToString();
  std::unique_ptr<rocksdb::DB> secondary(raw);
  rocksdb::ColumnFamilyHandle* meta = nullptr;
  for (size_t i = 0; i < descriptors.size(); ++i) {
    if (descriptors[i].name == "meta") meta = handles[i];
  }
  ASSERT_NE(meta, nullptr);
  std::string value;
  EXPECT_TRUE(secondary->Get(rocksdb::ReadOptions(), meta, "s1", &value).ok());
  EXPECT_EQ(value, "v1");
  EXPECT_TRUE(secondary->Get(rocksdb::ReadOptions(), meta, "late", &value).IsNotFound());

  hub.Write({Op{OpKind::kPut, 1, "late", "arrival"}, Op{OpKind::kDelete, 1, "s1", ""}});
  ExpectConverged(follower.get(), &hub, path);
  ASSERT_TRUE(secondary->TryCatchUpWithPrimary().ok());
  EXPECT_TRUE(secondary->Get(rocksdb::ReadOptions(), meta, "late", &value).ok());
  EXPECT_EQ(value, "arrival");
  EXPECT_TRUE(secondary->Get(rocksdb::ReadOptions(), meta, "s1", &value).IsNotFound());

  for (auto* h : handles) secondary->DestroyColumnFamilyHandle(h);
  secondary->Close();
  master->Stop();
}

TEST_F(FollowerTest, BadPathsGiveClearErrors) {
  FollowerOptions options;
  options.client.logger = QuietLogger();
  std::unique_ptr<Follower> follower;

  options.db_path = dir_.sub("a-file");
  std::ofstream(options.db_path) << "not a database";
  Status s = Follower::Open(options, &follower);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(options.db_path), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("not a directory"), std::string::npos) << s.ToString();

  options.db_path = dir_.sub("missing");
  options.create_if_missing = false;
  s = Follower::Open(options, &follower);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_NE(s.message().find(options.db_path), std::string::npos) << s.ToString();
  EXPECT_FALSE(std::filesystem::exists(options.db_path));

  options.db_path = dir_.sub("junk");
  std::filesystem::create_directory(options.db_path);
  std::ofstream(options.db_path + "/notes.txt") << "hello";
  options.create_if_missing = true;
  s = Follower::Open(options, &follower);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not a RocksDB database"), std::string::npos) << s.ToString();

  options.db_path = dir_.sub("shared");
  std::unique_ptr<Follower> first;
  ASSERT_TRUE(Follower::Open(options, &first).ok());
  s = Follower::Open(options, &follower);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("lock"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find(options.db_path), std::string::npos) << s.ToString();
  EXPECT_EQ(s.message().find('\n'), std::string::npos);
}

// One write of several master batches, ops out of key order, a key written
// twice and then deleted: each key ends as its last write said, and the tree
// matches the data.
TEST(FollowerStoreWriteTest, ManyBatchesInOneWriteKeepEachKeysOrder) {
  TempDir dir;
  std::string path = dir.sub("replica");
  {
    std::unique_ptr<RocksFollowerStore> store;
    ASSERT_TRUE(RocksFollowerStore::Open(StoreOptions(path), &store).ok());
    FollowerHooks hooks = store->Hooks();
    ASSERT_TRUE(hooks.families({{0, "default"}, {1, "meta"}}).ok());
    std::vector<Op> ops = {
        {OpKind::kPut, 0, "m", "1"}, {OpKind::kPut, 1, "a", "x"},   {OpKind::kPut, 0, "b", "1"},
        {OpKind::kPut, 0, "m", "2"}, {OpKind::kDelete, 0, "b", ""}, {OpKind::kPut, 0, "a", "1"},
        {OpKind::kPut, 0, "b", "3"}, {OpKind::kDelete, 1, "a", ""}, {OpKind::kPut, 0, "z", "9"},
        {OpKind::kPut, 0, "m", "3"}, {OpKind::kDelete, 0, "z", ""}};
    FollowerState state;
    state.master_id = "m1";
    state.applied_seq = 11;
    ASSERT_TRUE(hooks.write(ApplyRequest{ApplyRequest::Source::kStream, ops, state, 1}).ok());
    KeyValueMap expected = {{{0, "a"}, "1"}, {{0, "b"}, "3"}, {{0, "m"}, "3"}};
    EXPECT_EQ(store->tree().root_hash(), RootOf(expected));
    EXPECT_EQ(store->keys(), 3u);
    EXPECT_EQ(store->State(), state);
  }
  RawDb raw(path);
  EXPECT_EQ(raw.Data(), (KeyValueMap{{{0, "a"}, "1"}, {{0, "b"}, "3"}, {{0, "m"}, "3"}}));
}

// A diff waiting for a tree built behind the stream (defer_tree) is let go
// when the store stops building, so a follower closing mid-build does not
// wait for the whole scan; the builder itself stops at the store's end.
TEST(FollowerStoreWriteTest, AWaitForTheTreeEndsWhenTheStoreStopsBuildingIt) {
  TempDir dir;
  std::string path = dir.sub("replica");
  {
    std::unique_ptr<RocksFollowerStore> store;
    ASSERT_TRUE(RocksFollowerStore::Open(StoreOptions(path), &store).ok());
    FollowerHooks hooks = store->Hooks();
    ASSERT_TRUE(hooks.families({{0, "default"}}).ok());
    std::vector<Op> ops = {{OpKind::kPut, 0, "a", "1"}, {OpKind::kPut, 0, "b", "2"}};
    FollowerState state{"m1", 2, false, 0, ""};
    ASSERT_TRUE(hooks.write(ApplyRequest{ApplyRequest::Source::kStream, ops, state, 2}).ok());
  }
  std::atomic<bool> scanned{false}, release{false}, got_tree{false};
  RocksFollowerStoreOptions options = StoreOptions(path);
  options.defer_tree = true;
  options.before_tree_built = [&] {
    scanned = true;
    WaitUntil([&] { return release.load(); });
  };
  std::unique_ptr<RocksFollowerStore> store;
  ASSERT_TRUE(RocksFollowerStore::Open(options, &store).ok());
  ASSERT_TRUE(store->Prepare().ok());
  ASSERT_TRUE(WaitUntil([&] { return scanned.load(); }));
  FollowerHooks hooks = store->Hooks();
  EXPECT_FALSE(hooks.tree_ready());
  EXPECT_GT(hooks.key_count(), 0u);  // RocksDB's estimate: the Hello must not say "empty"
  EXPECT_EQ(store->keys(), 0u);
  std::thread diff([&] {
    hooks.snapshot();
    got_tree = true;
  });
  store->StopBuildingTree();
  EXPECT_TRUE(WaitUntil([&] { return got_tree.load(); }));
  diff.join();
  release = true;
  store.reset();  // joins the builder
}

TEST(FollowerStoreEncodingTest, StateAndFamiliesRoundTripAndRejectDamage) {
  FollowerState state{std::string("m\0id", 4), 1234567890123ull, true, 7, std::string("k\0", 2)};
  FollowerState decoded;
  ASSERT_TRUE(DecodeState(EncodeState(state), &decoded).ok());
  EXPECT_EQ(decoded, state);
  std::string bytes = EncodeState(state);
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeState(bytes.substr(0, n), &decoded).ok()) << n;
  }
  EXPECT_FALSE(DecodeState(bytes + "x", &decoded).ok());
  bytes[0] = 9;
  EXPECT_TRUE(DecodeState(bytes, &decoded).IsCorruption());

  std::map<FamilyTag, std::string> families = {{0, "default"}, {5, "x"}}, out;
  ASSERT_TRUE(DecodeFamilies(EncodeFamilies(families), &out).ok());
  EXPECT_EQ(out, families);
  bytes = EncodeFamilies(families);
  EXPECT_FALSE(DecodeFamilies(bytes.substr(0, bytes.size() - 1), &out).ok());
}

}  // namespace
}  // namespace sdiff::plugin
