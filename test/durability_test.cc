// Durable acknowledgements: with sync_writes (sdiff-rocks-master --sync) a
// write through the master is acknowledged only once the master's WAL holds
// it on disk, and with sync_writes on a follower (sdiff-rocks-follower
// --sync) every batch it applied is on disk. Each test copies the database
// as a power loss would leave it (test/support/power_loss_fs.h: each file
// cut to what was synced) and opens the copy. The same test without the
// option shows the copy losing the write, so the model can see a loss.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "plugin/follower.h"
#include "test/support/power_loss_fs.h"
#include "test/support/replica_pair.h"
#include "test/support/wait.h"

namespace sdiff::plugin {
namespace {

using namespace std::chrono_literals;

const std::string kSecret = "durability-test-secret-0123456789";

class DurabilityTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sdiff-durable-XXXXXX";
    dir_ = mkdtemp(tmpl);
    fs_ = std::make_shared<testing::PowerLossFileSystem>();
    env_ = rocksdb::NewCompositeEnv(fs_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  bool sync() const { return GetParam(); }

  // The value of `key` in family `family` of the copy of `db_dir` that a
  // power loss would leave; "" when it is missing. A copy that does not
  // open fails the test.
  std::string AfterPowerLoss(const std::string& db_dir, const std::string& family,
                             const std::string& key) {
    const std::string copy = db_dir + "-after-power-loss";
    std::filesystem::remove_all(copy);
    EXPECT_TRUE(fs_->CopyAsAfterPowerLoss(db_dir, copy));
    std::vector<std::string> names;
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), copy, &names);
    EXPECT_TRUE(s.ok()) << s.ToString();
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    size_t wanted = 0;
    for (size_t i = 0; i < names.size(); ++i) {
      descriptors.emplace_back(names[i], rocksdb::ColumnFamilyOptions());
      if (names[i] == family) wanted = i;
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    s = rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), copy, descriptors, &handles, &raw);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) return "";
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string value;
    s = db->Get(rocksdb::ReadOptions(), handles[wanted], key, &value);
    EXPECT_TRUE(s.ok() || s.IsNotFound()) << s.ToString();
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    return s.ok() ? value : "";
  }

  std::string dir_;
  std::shared_ptr<testing::PowerLossFileSystem> fs_;
  std::unique_ptr<rocksdb::Env> env_;
};

TEST_P(DurabilityTest, AWriteThroughTheMasterIsOnDiskWhenAcknowledgedOnlyWithSync) {
  testing::MasterDbOptions db_options;
  db_options.tune = [this](rocksdb::Options* o) { o->env = env_.get(); };
  testing::MasterDb master(dir_ + "/master", db_options);
  MasterOptions options;
  options.allow_writers = true;
  options.server.secret = kSecret;
  options.sync_writes = sync();
  ASSERT_TRUE(master.Attach(options).ok());

  net::WriteSummary summary;
  Status s = testing::PutThroughMaster(master, kSecret, "acked", "value", &summary);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(summary.writes, 1u);  // acknowledged

  if (sync()) {
    EXPECT_EQ(AfterPowerLoss(master.dir, "default", "acked"), "value");
  } else {
    EXPECT_EQ(AfterPowerLoss(master.dir, "default", "acked"), "");
  }
}

TEST_P(DurabilityTest, AFollowersAppliedBatchesAreOnDiskOnlyWithSync) {
  testing::MasterDb master(dir_ + "/master");
  ASSERT_TRUE(master.Attach().ok());
  FollowerOptions o = testing::QuietFollowerOptions(master, dir_ + "/follower");
  o.sync_writes = sync();
  o.env = env_.get();
  std::unique_ptr<Follower> follower;
  ASSERT_TRUE(Follower::Open(o, &follower).ok());
  ASSERT_TRUE(testing::WaitUntil([&] { return follower->status().connected; }, 15s));
  for (int i = 0; i < 10; ++i) master.Put(0, "k" + std::to_string(i), "v" + std::to_string(i));
  ASSERT_TRUE(testing::WaitConverged(master, follower.get(), 15s));

  if (sync()) {
    EXPECT_EQ(AfterPowerLoss(o.db_path, "default", "k9"), "v9");
  } else {
    EXPECT_EQ(AfterPowerLoss(o.db_path, "default", "k9"), "");
  }
}

INSTANTIATE_TEST_SUITE_P(SyncOrNot, DurabilityTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Synced" : "NotSynced";
                         });

}  // namespace
}  // namespace sdiff::plugin
