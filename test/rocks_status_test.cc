// RocksDB statuses in sdiff's terms (plugin/rocks_status.h): the kinds a
// mapped status keeps, and a held LOCK told apart from every other error,
// on the messages a real RocksDB gives when another opener has the database.
#include "plugin/rocks_status.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

namespace sdiff::plugin {
namespace {

class RocksStatusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sdiff-rocks-status-XXXXXX";
    dir_ = mkdtemp(tmpl);
    options_.create_if_missing = true;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  rocksdb::Status Open(std::unique_ptr<rocksdb::DB>* db) {
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(options_, dir_, &raw);
    db->reset(raw);
    return s;
  }

  std::string dir_;
  rocksdb::Options options_;
};

TEST_F(RocksStatusTest, ADatabaseThisProcessHoldsIsLocked) {
  std::unique_ptr<rocksdb::DB> first, second;
  ASSERT_TRUE(Open(&first).ok());
  rocksdb::Status s = Open(&second);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(IsLockHeld(s)) << s.ToString();
}

TEST_F(RocksStatusTest, ADatabaseAnotherProcessHoldsIsLocked) {
  {
    std::unique_ptr<rocksdb::DB> db;
    ASSERT_TRUE(Open(&db).ok());  // makes the LOCK file
  }
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // only async-signal-safe calls: take the lock, say so, wait
    int fd = open((dir_ + "/LOCK").c_str(), O_RDWR);
    struct flock lock {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    char ok = (fd >= 0 && fcntl(fd, F_SETLK, &lock) == 0) ? '1' : '0';
    (void)!write(ready[1], &ok, 1);
    pause();
    _exit(0);
  }
  close(ready[1]);
  char ok = 0;
  ASSERT_EQ(read(ready[0], &ok, 1), 1);
  close(ready[0]);
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::Status s = Open(&db);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_EQ(ok, '1');
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(IsLockHeld(s)) << s.ToString();
}

TEST_F(RocksStatusTest, OtherErrorsThatMentionALockOrABlockAreNot) {
  EXPECT_FALSE(IsLockHeld(rocksdb::Status::OK()));
  EXPECT_FALSE(IsLockHeld(rocksdb::Status::Corruption("block checksum mismatch")));
  EXPECT_FALSE(IsLockHeld(rocksdb::Status::IOError("While reading block", "000012.sst")));
  EXPECT_FALSE(IsLockHeld(rocksdb::Status::IOError("while open a file for lock", "x")));
  EXPECT_FALSE(IsLockHeld(rocksdb::Status::Busy("lock")));
}

TEST_F(RocksStatusTest, AMappedStatusKeepsItsKindAndSaysWhat) {
  Status s = FromRocks(rocksdb::Status::Corruption("bad record"), "cannot read x");
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_EQ(s.message(), "cannot read x: Corruption: bad record");
  EXPECT_TRUE(FromRocks(rocksdb::Status::NotFound(), "k").IsNotFound());
  EXPECT_TRUE(FromRocks(rocksdb::Status::InvalidArgument("no"), "k").IsInvalidArgument());
  EXPECT_TRUE(FromRocks(rocksdb::Status::IOError("disk"), "k").IsIOError());
  EXPECT_TRUE(FromRocks(rocksdb::Status::Busy(), "k").IsIOError());  // anything else
}

}  // namespace
}  // namespace sdiff::plugin
