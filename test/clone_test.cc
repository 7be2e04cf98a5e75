// Cloning: an empty Follower copies a real master's RocksDB files
// (plugin/clone.h, plugin/db_files.h) and then streams from the copy's
// sequence. Each test checks the replica by scanning both databases whole.
#include "plugin/clone.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/utilities/transaction_db.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "plugin/follower.h"
#include "plugin/follower_store.h"
#include "plugin/master.h"
#include "test/support/rocks_util.h"
#include "test/support/wait.h"

namespace sdiff::plugin {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr auto kDeadline = 20s;
// "default" spelled out: rocksdb::kDefaultColumnFamilyName may not be initialised yet.
const std::vector<std::string> kFamilies = {"default", "left", "right"};

using testing::ConcatOperator;
using Contents = testing::FamilyContents;
using testing::ScanAll;

// Every replicated family of the follower's database, scanned.
Contents ScanFollower(Follower* follower) {
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  for (const std::string& name : kFamilies) {
    rocksdb::ColumnFamilyHandle* h = follower->column_family(name);
    if (h != nullptr) handles.push_back(h);
  }
  return ScanAll(follower->db(), handles);
}

class CloneTest : public ::testing::Test {
 protected:
  CloneTest() {
    char tmpl[] = "/tmp/sdiff-clone-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~CloneTest() override {
    follower_.reset();
    master_.reset();
    if (db_) {
      for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
      db_->Close();
    }
    fs::remove_all(dir_);
  }

  void OpenMaster(bool merge_operator = false, bool transactions = false) {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.create_missing_column_families = true;
    o.WAL_ttl_seconds = 3600;
    if (merge_operator) o.merge_operator = std::make_shared<ConcatOperator>();
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const std::string& name : kFamilies) cfs.emplace_back(name, o);
    rocksdb::Status s;
    transactions_ = transactions;
    if (transactions) {
      rocksdb::TransactionDB* raw = nullptr;
      s = rocksdb::TransactionDB::Open(o, rocksdb::TransactionDBOptions(), dir_ + "/master", cfs,
                                       &handles_, &raw);
      db_.reset(raw);
    } else {
      rocksdb::DB* raw = nullptr;
      s = rocksdb::DB::Open(o, dir_ + "/master", cfs, &handles_, &raw);
      db_.reset(raw);
    }
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // Keys in every family: some flushed to SST files, some only in the
  // memtable and WAL, a range delete and a delete among them.
  void Fill(int keys) {
    for (int i = 0; i < keys; ++i) {
      Put(i % 3, "k" + std::to_string(i), std::string(50 + i % 7, static_cast<char>('a' + i % 26)));
      if (i == keys / 2) {
        ASSERT_TRUE(db_->Flush(rocksdb::FlushOptions(), handles_).ok());
      }
    }
    if (!transactions_) {  // a TransactionDB has no DeleteRange
      ASSERT_TRUE(db_->DeleteRange(rocksdb::WriteOptions(), handles_[1], "k10", "k20").ok());
    }
    ASSERT_TRUE(db_->Delete(rocksdb::WriteOptions(), handles_[0], "k0").ok());
    Put(2, "", "empty key");
    Put(2, std::string("bin\0ary", 7), std::string("\0\xff", 2));
  }

  void Put(int cf, const std::string& k, const std::string& v) {
    ASSERT_TRUE(db_->Put(rocksdb::WriteOptions(), handles_[cf], k, v).ok());
    if (master_) master_->NotifyWrite();
  }

  void Attach(MasterOptions options = {},
              std::vector<rocksdb::ColumnFamilyHandle*> replicated = {}) {
    options.server.listen = "127.0.0.1:0";
    options.server.logger = testing::QuietLogger();
    options.bootstrap_min_keys = 100;
    Status s =
        Master::Attach(db_.get(), replicated.empty() ? handles_ : replicated, options, &master_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  FollowerOptions Options() {
    FollowerOptions o;
    o.db_path = dir_ + "/follower";
    o.client.master = "127.0.0.1:" + std::to_string(master_->port());
    o.client.backoff_initial = 20ms;
    o.client.backoff_max = 200ms;
    o.client.logger = testing::QuietLogger();
    return o;
  }

  // CloneFromMaster called directly, into `path`, from this test's master.
  CloneFromMasterOptions CloneOptions(const std::string& path) {
    CloneFromMasterOptions o;
    o.db_path = path;
    o.connect.master = "127.0.0.1:" + std::to_string(master_->port());
    return o;
  }

  void OpenFollower(FollowerOptions options) {
    Status s = Follower::Open(std::move(options), &follower_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  Contents MasterData() { return ScanAll(db_.get(), handles_); }

  // The follower holds the master's data and streams; its catch-up diff ran.
  void ExpectConvergedAndDiffed() {
    Contents want = MasterData();
    ASSERT_TRUE(follower_->WaitFor(
        [&](const FollowerStatus& s) {
          return s.connected && s.diffs >= 1 && s.applied_seq >= db_->GetLatestSequenceNumber();
        },
        kDeadline))
        << follower_->status().last_error;
    EXPECT_EQ(ScanFollower(follower_.get()), want);
  }

  std::string dir_;
  bool transactions_ = false;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::unique_ptr<Master> master_;
  std::unique_ptr<Follower> follower_;
};

TEST_F(CloneTest, EmptyFollowerCopiesTheFilesResumesAndFindsNothingToRepair) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster());
  ASSERT_NO_FATAL_FAILURE(Fill(600));
  ASSERT_NO_FATAL_FAILURE(Attach());
  Contents before = MasterData();
  uint64_t master_seq = db_->GetLatestSequenceNumber();

  ASSERT_NO_FATAL_FAILURE(OpenFollower(Options()));
  FollowerStatus status = follower_->status();
  ASSERT_TRUE(status.cloned);
  EXPECT_GT(status.clone_bytes, 0u);
  EXPECT_EQ(status.clone_seq, master_seq);
  // Readable and equal as soon as Open returns, before any connection.
  EXPECT_EQ(ScanFollower(follower_.get()), before);
  // Its tree is built after Open, behind the stream.
  EXPECT_TRUE(follower_->WaitFor([&](const FollowerStatus& s) { return s.keys == before.size(); },
                                 kDeadline));
  EXPECT_FALSE(fs::exists(CloneStagingPath(dir_ + "/follower")));

  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed());
  status = follower_->status();
  EXPECT_EQ(status.last_start, StartMode::kResume);  // from the copy's sequence
  EXPECT_EQ(status.last_diff_repaired, 0u);          // the copy was exact
  EXPECT_EQ(status.master_id, master_->master_id());

  // Then it streams.
  Put(1, "after", "clone");
  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed());

  // The replica has an identity of its own, and the master deletes files again.
  std::string master_identity, replica_identity;
  ASSERT_TRUE(db_->GetDbIdentity(master_identity).ok());
  ASSERT_TRUE(follower_->db()->GetDbIdentity(replica_identity).ok());
  EXPECT_NE(master_identity, replica_identity);
  // The cloner's session ends on the master's side a little after the copy
  // is done on the follower's; then it gives file deletions back. (RocksDB
  // 7.8 reports "1" while deletions are enabled, despite its docs. They are
  // also disabled for a moment whenever the tailer lists the WAL files, which
  // GetSortedWalFiles does around its scan: so this waits for "1" rather
  // than comparing with a reading taken before the copy.)
  std::string deletions;
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        return db_->GetProperty(rocksdb::DB::Properties::kIsFileDeletionsEnabled, &deletions) &&
               deletions == "1";
      },
      kDeadline))
      << deletions;
}

TEST_F(CloneTest, WritesDuringTheCopyAreNotLost) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster());
  ASSERT_NO_FATAL_FAILURE(Fill(300));
  ASSERT_NO_FATAL_FAILURE(Attach());
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      rocksdb::Status s = db_->Put(rocksdb::WriteOptions(), handles_[i % 3],
                                   "w" + std::to_string(i % 500), "v" + std::to_string(i));
      if (!s.ok()) break;
      master_->NotifyWrite();
      written.fetch_add(1);
    }
  });
  // No catch-up diff: only the stream from the copy's sequence can make the
  // replica whole, so a copy whose sequence overstated its data would show.
  FollowerOptions options = Options();
  options.client.session.diff_after_catch_up = false;
  ASSERT_NO_FATAL_FAILURE(OpenFollower(options));
  bool cloned = follower_->status().cloned;
  // Keep writing while the follower resumes from the copy's sequence.
  std::this_thread::sleep_for(50ms);
  stop = true;
  writer.join();
  EXPECT_TRUE(cloned);
  EXPECT_GT(written.load(), 0);
  uint64_t last = db_->GetLatestSequenceNumber();
  ASSERT_TRUE(follower_->WaitFor(
      [&](const FollowerStatus& s) { return s.connected && s.applied_seq >= last; }, kDeadline));
  FollowerStatus status = follower_->status();
  EXPECT_EQ(status.last_start, StartMode::kResume);
  EXPECT_EQ(status.diffs, 0u);
  EXPECT_EQ(ScanFollower(follower_.get()), MasterData());
}

// A clone streams at once; its tree is built behind the stream, from a
// snapshot, and then takes every write made meanwhile. The catch-up diff
// waits for the tree instead of holding up the stream, and finds nothing:
// a write missing from the tree would be "repaired".
TEST_F(CloneTest, TheCloneStreamsWhileItsTreeIsBuiltAndTheTreeTakesEveryWrite) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster());
  ASSERT_NO_FATAL_FAILURE(Fill(600));
  ASSERT_NO_FATAL_FAILURE(Attach());
  std::atomic<bool> scanned{false}, release{false};
  FollowerOptions options = Options();
  options.before_tree_built = [&] {
    scanned = true;
    testing::WaitUntil([&] { return release.load(); }, kDeadline);
  };
  ASSERT_NO_FATAL_FAILURE(OpenFollower(options));
  ASSERT_TRUE(follower_->status().cloned);
  ASSERT_TRUE(testing::WaitUntil([&] { return scanned.load(); }, kDeadline));

  // Puts, an overwrite, a delete and a range delete, none in the scanned
  // snapshot; more of them than the builder applies under the store's lock
  // (it takes the rest in rounds), some of those then written again.
  for (int b = 0; b < 10; ++b) {
    rocksdb::WriteBatch batch;
    for (int i = 0; i < 500; ++i) {
      ASSERT_TRUE(batch.Put(handles_[1], "bulk" + std::to_string(b * 500 + i), "v").ok());
    }
    ASSERT_TRUE(db_->Write(rocksdb::WriteOptions(), &batch).ok());
    master_->NotifyWrite();
  }
  Put(1, "bulk7", "written again");
  ASSERT_TRUE(db_->Delete(rocksdb::WriteOptions(), handles_[1], "bulk8").ok());
  Put(0, "new", "during the build");
  Put(1, "k4", "overwritten during the build");
  ASSERT_TRUE(db_->Delete(rocksdb::WriteOptions(), handles_[2], "k5").ok());
  ASSERT_TRUE(db_->DeleteRange(rocksdb::WriteOptions(), handles_[0], "k30", "k40").ok());
  Put(2, "last", "write");
  const uint64_t last = db_->GetLatestSequenceNumber();
  ASSERT_TRUE(follower_->WaitFor(
      [&](const FollowerStatus& s) { return s.connected && s.applied_seq >= last; }, kDeadline))
      << follower_->status().last_error;
  FollowerStatus status = follower_->status();
  EXPECT_EQ(status.last_start, StartMode::kResume);
  EXPECT_FALSE(status.tree_built);
  EXPECT_EQ(status.diffs, 0u);  // the catch-up diff waits for the tree
  EXPECT_EQ(ScanFollower(follower_.get()), MasterData());

  release = true;
  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed());
  status = follower_->status();
  EXPECT_TRUE(status.tree_built);
  EXPECT_EQ(status.keys, MasterData().size());
  EXPECT_EQ(status.last_diff_repaired, 0u);
}

TEST_F(CloneTest, LeftoverStagingDirectoryIsReplaced) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster());
  ASSERT_NO_FATAL_FAILURE(Fill(300));
  ASSERT_NO_FATAL_FAILURE(Attach());
  // An earlier clone that died half way left a staging directory.
  std::string staging = CloneStagingPath(dir_ + "/follower");
  fs::create_directories(staging);
  std::ofstream(staging + "/000007.sst") << "half a file";
  ASSERT_NO_FATAL_FAILURE(OpenFollower(Options()));
  EXPECT_TRUE(follower_->status().cloned);
  EXPECT_FALSE(fs::exists(staging));
  EXPECT_EQ(ScanFollower(follower_.get()), MasterData());
}

TEST_F(CloneTest, PathWithATrailingSlashIsCloned) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster());
  ASSERT_NO_FATAL_FAILURE(Fill(300));
  ASSERT_NO_FATAL_FAILURE(Attach());
  FollowerOptions options = Options();
  options.db_path += "/";
  ASSERT_NO_FATAL_FAILURE(OpenFollower(options));
  EXPECT_TRUE(follower_->status().cloned);
  EXPECT_EQ(CloneStagingPath(options.db_path), dir_ + "/follower.sdiff-clone");
  EXPECT_FALSE(fs::exists(dir_ + "/follower.sdiff-clone"));
  EXPECT_EQ(ScanFollower(follower_.get()), MasterData());
}

TEST_F(CloneTest, PathsNamingNoDirectoryOfTheirOwnAreRefused) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster());
  ASSERT_NO_FATAL_FAILURE(Fill(300));
  ASSERT_NO_FATAL_FAILURE(Attach());
  for (const std::string& path : std::vector<std::string>{".", "./", "..", "/"}) {
    CloneFromMasterOptions clone = CloneOptions(path);
    CloneResult result;
    Status s = CloneFromMaster(clone, &result);
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << path << ": " << s.ToString();
    EXPECT_EQ(CloneStagingPath(path), "") << path;
  }
}

TEST_F(CloneTest, LeftoverStagingIsRemovedEvenWithoutAClone) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster());
  ASSERT_NO_FATAL_FAILURE(Attach());
  std::string staging = CloneStagingPath(dir_ + "/follower");
  fs::create_directories(staging);
  std::ofstream(staging + "/000007.sst") << "half a file";
  FollowerOptions options = Options();
  options.clone_files = false;
  ASSERT_NO_FATAL_FAILURE(OpenFollower(options));
  EXPECT_FALSE(follower_->status().cloned);
  EXPECT_FALSE(fs::exists(staging));
}

TEST_F(CloneTest, EmptyDirectoryMadeInAdvanceIsCloned) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster());
  ASSERT_NO_FATAL_FAILURE(Fill(300));
  ASSERT_NO_FATAL_FAILURE(Attach());
  fs::create_directories(dir_ + "/follower");
  ASSERT_NO_FATAL_FAILURE(OpenFollower(Options()));
  EXPECT_TRUE(follower_->status().cloned);
  EXPECT_EQ(ScanFollower(follower_.get()), MasterData());
}

// Each way a master refuses a copy: the follower starts empty and is
// brought up by the master's bootstrap or diff instead, and ends equal.
TEST_F(CloneTest, MasterWithAMergeOperatorBootstrapsInstead) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster(/*merge_operator=*/true));
  ASSERT_NO_FATAL_FAILURE(Fill(300));
  ASSERT_TRUE(db_->Merge(rocksdb::WriteOptions(), handles_[0], "k3", "+merged").ok());
  ASSERT_NO_FATAL_FAILURE(Attach());
  ASSERT_NO_FATAL_FAILURE(OpenFollower(Options()));
  EXPECT_FALSE(follower_->status().cloned);
  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed());
  EXPECT_EQ(follower_->status().last_start, StartMode::kBootstrap);
}

// A TransactionDB's WAL may hold prepared transactions, which a plain DB
// cannot open: its files are not copied.
TEST_F(CloneTest, TransactionDbMasterBootstrapsInstead) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster(/*merge_operator=*/false, /*transactions=*/true));
  ASSERT_NO_FATAL_FAILURE(Fill(300));
  ASSERT_NO_FATAL_FAILURE(Attach(MasterOptions()));
  ASSERT_NO_FATAL_FAILURE(OpenFollower(Options()));
  EXPECT_FALSE(follower_->status().cloned);
  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed());
  EXPECT_EQ(follower_->status().last_start, StartMode::kBootstrap);
}

TEST_F(CloneTest, FamiliesTheMasterDoesNotReplicateAreNeverCopied) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster());
  ASSERT_NO_FATAL_FAILURE(Fill(300));
  ASSERT_NO_FATAL_FAILURE(Attach({}, {handles_[0], handles_[1]}));  // not "right"
  ASSERT_NO_FATAL_FAILURE(OpenFollower(Options()));
  EXPECT_FALSE(follower_->status().cloned);
  EXPECT_EQ(follower_->column_family("right"), nullptr);
  Contents want;
  for (auto& [fk, v] : MasterData()) {
    if (fk.first != "right") want[fk] = v;
  }
  ASSERT_TRUE(follower_->WaitFor(
      [&](const FollowerStatus& s) { return s.connected && s.diffs >= 1; }, kDeadline));
  EXPECT_EQ(ScanFollower(follower_.get()), want);
}

TEST_F(CloneTest, SmallMasterOrServeFilesOffIsDiffedInstead) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster());
  ASSERT_NO_FATAL_FAILURE(Fill(60));  // under bootstrap_min_keys (100)
  ASSERT_NO_FATAL_FAILURE(Attach());
  ASSERT_NO_FATAL_FAILURE(OpenFollower(Options()));
  EXPECT_FALSE(follower_->status().cloned);
  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed());
  EXPECT_EQ(follower_->status().last_start, StartMode::kDiff);

  follower_.reset();
  master_.reset();
  fs::remove_all(dir_ + "/follower");
  ASSERT_NO_FATAL_FAILURE(Fill(300));
  MasterOptions off;
  off.serve_files = false;
  ASSERT_NO_FATAL_FAILURE(Attach(off));
  ASSERT_NO_FATAL_FAILURE(OpenFollower(Options()));
  EXPECT_FALSE(follower_->status().cloned);
  ASSERT_NO_FATAL_FAILURE(ExpectConvergedAndDiffed());
  EXPECT_EQ(follower_->status().last_start, StartMode::kBootstrap);
}

TEST_F(CloneTest, WrongSecretLeavesNothingBehind) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster());
  ASSERT_NO_FATAL_FAILURE(Fill(300));
  MasterOptions options;
  options.server.secret = "right secret";
  ASSERT_NO_FATAL_FAILURE(Attach(options));
  CloneFromMasterOptions clone = CloneOptions(dir_ + "/follower");
  clone.secret = "wrong secret";
  std::vector<Progress> reports;
  clone.progress = [&](const Progress& p) { reports.push_back(p); };
  CloneResult result;
  Status s = CloneFromMaster(clone, &result);
  EXPECT_FALSE(s.ok());
  // The failed work still ends its progress.
  ASSERT_FALSE(reports.empty());
  EXPECT_TRUE(reports.back().finished);
  EXPECT_EQ(reports.back().kind, Progress::Kind::kClone);
  EXPECT_NE(s.message().find("secret"), std::string::npos) << s.message();
  EXPECT_FALSE(fs::exists(clone.db_path));
  EXPECT_FALSE(fs::exists(CloneStagingPath(clone.db_path)));

  clone.secret = "right secret";
  s = CloneFromMaster(clone, &result);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(result.master_id, master_->master_id());
  EXPECT_TRUE(fs::exists(clone.db_path + "/CURRENT"));
}

TEST_F(CloneTest, ANonEmptyDirectoryIsNeverCloned) {
  ASSERT_NO_FATAL_FAILURE(OpenMaster());
  ASSERT_NO_FATAL_FAILURE(Fill(300));
  ASSERT_NO_FATAL_FAILURE(Attach());
  CloneFromMasterOptions clone = CloneOptions(dir_ + "/follower");
  fs::create_directories(clone.db_path);
  std::ofstream(clone.db_path + "/notes.txt") << "mine";
  CloneResult result;
  Status s = CloneFromMaster(clone, &result);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_TRUE(fs::exists(clone.db_path + "/notes.txt"));
  EXPECT_FALSE(fs::exists(clone.db_path + "/CURRENT"));
}

}  // namespace
}  // namespace sdiff::plugin
