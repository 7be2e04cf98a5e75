// sdiff-demo: the original merklet demo's story with real RocksDB databases in
// temporary directories and TCP on loopback. The master holds key1..key3, the
// follower holds a stale `key`; key4 streams to the follower (which still
// holds `key`), then a diff makes the two identical. Exits 0 only if the
// follower ends equal to the master.
#include <fmt/format.h>
#include <rocksdb/db.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include "plugin/follower.h"
#include "plugin/master.h"
#include "tools/daemon_util.h"

namespace {

using namespace std::chrono_literals;
using Contents = std::map<std::string, std::string>;

Contents Scan(rocksdb::DB* db) {
  Contents out;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next())
    out[it->key().ToString()] = it->value().ToString();
  return out;
}

std::string Show(const Contents& c) {
  std::string out;
  for (const auto& [k, v] : c) out += fmt::format("{}{}={}", out.empty() ? "" : " ", k, v);
  return out.empty() ? "(empty)" : out;
}

void PrintStates(const char* title, rocksdb::DB* master, rocksdb::DB* follower) {
  fmt::print("{}\n  master:   {}\n  follower: {}\n", title, Show(Scan(master)),
             Show(Scan(follower)));
}

// Polls `done` until it holds or `timeout` passes.
template <typename Fn>
bool WaitUntil(Fn done, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

int Fail(const std::string& what) {
  fmt::print(stderr, "sdiff-demo: {}\n", what);
  return 1;
}

int RunDemo(const std::string& dir, uint16_t port) {
  // The master: an application's database with three keys.
  rocksdb::Options options;
  options.create_if_missing = true;
  options.WAL_ttl_seconds = 3600;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status rs = rocksdb::DB::Open(options, dir + "/master", &raw);
  if (!rs.ok()) return Fail("cannot open the master database: " + rs.ToString());
  std::unique_ptr<rocksdb::DB> master_db(raw);
  for (int i = 1; i <= 3; ++i) {
    master_db->Put(rocksdb::WriteOptions(), "key" + std::to_string(i), "value" + std::to_string(i));
  }
  // The follower: a replica that holds something the master does not.
  rs = rocksdb::DB::Open(options, dir + "/follower", &raw);
  if (!rs.ok()) return Fail("cannot create the follower database: " + rs.ToString());
  raw->Put(rocksdb::WriteOptions(), "key", "stale");
  delete raw;

  sdiff::plugin::MasterOptions mo;
  mo.server.listen = "127.0.0.1:" + std::to_string(port);
  mo.diff_on_connect = false;  // the story diffs when asked, not at connect
  std::unique_ptr<sdiff::plugin::Master> master;
  sdiff::Status s = sdiff::plugin::Master::Attach(master_db.get(), {}, mo, &master);
  if (!s.ok()) return Fail(s.ToString());

  sdiff::plugin::FollowerOptions fo;
  fo.db_path = dir + "/follower";
  fo.client.master = "127.0.0.1:" + std::to_string(master->port());
  fo.client.session.diff_after_catch_up = false;
  fo.discard = true;  // the stale `key` is the follower's own: the diff is to remove it
  std::unique_ptr<sdiff::plugin::Follower> follower;
  s = sdiff::plugin::Follower::Open(fo, &follower);
  if (!s.ok()) return Fail(s.ToString());
  if (!follower->WaitFor([](const auto& st) { return st.connected; }, 10s)) {
    return Fail("the follower did not connect: " + follower->status().last_error);
  }
  PrintStates("1. connected (stream only, no diff yet)", master_db.get(), follower->db());

  master_db->Put(rocksdb::WriteOptions(), "key4", "value4");
  master->NotifyWrite();
  if (!WaitUntil([&] { return Scan(follower->db()).count("key4") == 1; }, 10s)) {
    return Fail("key4 did not stream to the follower");
  }
  PrintStates("2. key4 streamed: the follower has it, and still its stale `key`", master_db.get(),
              follower->db());

  follower->RequestSync();
  if (!follower->WaitFor([](const auto& st) { return st.diffs >= 1; }, 10s)) {
    return Fail("the diff did not finish: " + follower->status().last_error);
  }
  PrintStates("3. after one diff", master_db.get(), follower->db());
  bool equal = Scan(master_db.get()) == Scan(follower->db());
  fmt::print("follower equals master: {} (diff repaired {} keys)\n", equal ? "yes" : "NO",
             follower->status().last_diff_repaired);
  follower.reset();
  master.reset();
  return equal ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sdiff-demo: stream a write to a follower, then repair it with one diff",
               "sdiff-demo"};
  sdiff::tools::AddVersionFlag(app, "sdiff-demo");
  uint16_t port = 0;
  app.add_option("--port", port, "master port on 127.0.0.1 (default: any free port)");
  if (int rc = sdiff::tools::ParseOrExit(app, argc, argv); rc >= 0) return rc;
  spdlog::set_level(spdlog::level::warn);
  char tmpl[] = "/tmp/sdiff-demo-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return Fail("cannot create a temporary directory");
  std::string dir = tmpl;
  int rc = RunDemo(dir, port);
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return rc;
}
