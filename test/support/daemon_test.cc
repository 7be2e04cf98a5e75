// DaemonTest's helpers: RocksDB set-up and read-back, secret files, and the
// master daemon's start.
#include "test/support/daemon_test.h"

#include <rocksdb/db.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace sdiff::testing {

void DaemonTest::SetUp() {
  char tmpl[] = "/tmp/sdiff-daemon-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  dir_ = tmpl;
}

void DaemonTest::TearDown() { std::filesystem::remove_all(dir_); }

void DaemonTest::WriteDb(const std::string& path, const Contents& contents) {
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(o, path, &db).ok());
  for (const auto& [k, v] : contents) EXPECT_TRUE(db->Put(rocksdb::WriteOptions(), k, v).ok());
  delete db;
}

Contents DaemonTest::ReadSecondary(const std::string& path) {
  rocksdb::Options o;
  o.max_open_files = -1;
  rocksdb::DB* db = nullptr;
  if (!rocksdb::DB::OpenAsSecondary(o, path, dir_ + "/secondary", &db).ok()) return {};
  Contents out;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next())
    out[it->key().ToString()] = it->value().ToString();
  it.reset();
  delete db;
  return out;
}

void DaemonTest::WriteSecret(const std::string& path, const std::string& secret) {
  std::ofstream(path) << secret << "\n";
  std::filesystem::permissions(
      path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

std::unique_ptr<ChildProcess> DaemonTest::StartMaster(const std::string& db,
                                                      const std::vector<std::string>& extra,
                                                      uint16_t* port) {
  std::vector<std::string> argv = {ProgramPath("sdiff-rocks-master"), "--db=" + db,
                                   "--listen=127.0.0.1:0"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto master = ChildProcess::Start(argv);
  *port = 0;
  auto printed_port = [](const std::string& out, const std::string&) {
    size_t at = out.find("on port ");
    return at != std::string::npos && out.find('\n', at) != std::string::npos;
  };
  if (master && master->WaitForOutput(printed_port, kProgramDeadline)) {
    *port =
        static_cast<uint16_t>(std::stoi(master->out().substr(master->out().find("on port ") + 8)));
  }
  return master;
}

Contents NumberedKeys(int n) {
  Contents c;
  for (int i = 0; i < n; ++i) c["key" + std::to_string(i)] = "value" + std::to_string(i);
  return c;
}

}  // namespace sdiff::testing
