// sdiff-fault-app: an application that embeds RocksDB and sdiff's Master, for
// the fault harness (test/fault/harness.py). It opens (creating) a database
// with the families "default" and "other", attaches a Master that serves
// followers and writers like sdiff-rocks-master, and writes on its own until
// SIGTERM or SIGINT (SIGUSR1 stops the writes, and it goes on serving): puts, deletes and batches
// of several keys across both families, each one DB::Write (fsynced with --sync).
//
// Its stdout tells the harness what it wrote: before each write, one line per
// op, "W <n> <family> <key> <value or ->"; once the write returned OK, "A <n>"
// (acknowledged); a failed write, "F <n> <reason>". A line cut by a SIGKILL
// is incomplete and ignored. The first line of each process is "app started".
#include <rocksdb/db.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "net/hmac_authenticator.h"
#include "plugin/master.h"

namespace {

std::atomic<bool> stopping{false};
std::atomic<bool> paused{false};

void OnStopSignal(int) { stopping = true; }
void OnPauseSignal(int) { paused = true; }

int Fail(const std::string& why) {
  std::fprintf(stderr, "sdiff-fault-app: %s\n", why.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sdiff;
  CLI::App app{"sdiff-fault-app: an application embedding RocksDB and an sdiff master"};
  std::string db_path, listen, secret_file;
  uint64_t seed = 1;
  bool sync = false;
  double min_free_mb = 256, resume_window_mb = 64, backlog_mb = 64;
  app.add_option("--db", db_path)->required();
  app.add_option("--listen", listen)->required();
  app.add_option("--secret-file", secret_file)->required();
  app.add_option("--seed", seed);
  app.add_option("--min-free-mb", min_free_mb);
  app.add_option("--resume-window-mb", resume_window_mb);
  app.add_option("--follower-backlog-mb", backlog_mb);
  app.add_flag("--sync", sync);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_default_logger(spdlog::stderr_color_mt("app"));  // stdout: the write lines
  signal(SIGTERM, OnStopSignal);
  signal(SIGINT, OnStopSignal);
  signal(SIGUSR1, OnPauseSignal);
  std::printf("app started\n");
  std::fflush(stdout);

  auto listener = std::make_shared<plugin::MasterListener>();
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.listeners.push_back(listener);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = {
      {rocksdb::kDefaultColumnFamilyName, options}, {"other", options}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status rs = rocksdb::DB::Open(options, db_path, descriptors, &handles, &raw);
  if (!rs.ok()) return Fail("cannot open " + db_path + ": " + rs.ToString());
  std::unique_ptr<rocksdb::DB> db(raw);

  plugin::MasterOptions master_options;
  master_options.listener = listener;
  master_options.server.listen = listen;
  master_options.allow_writers = true;
  master_options.sync_writes = sync;
  master_options.min_free_bytes = static_cast<uint64_t>(min_free_mb * (1 << 20));
  master_options.resume_window_bytes = static_cast<size_t>(resume_window_mb * (1 << 20));
  master_options.server.connection.high_water_bytes = static_cast<size_t>(backlog_mb * (1 << 20));
  Status s = net::LoadSecretFile(secret_file, &master_options.server.secret);
  if (!s.ok()) return Fail(s.ToString());
  std::unique_ptr<plugin::Master> master;
  s = plugin::Master::Attach(db.get(), handles, master_options, &master);
  if (!s.ok()) return Fail(s.ToString());

  const char* family_names[] = {"default", "other"};
  std::mt19937_64 rng(seed);
  rocksdb::WriteOptions write_options;
  write_options.sync = sync;
  for (uint64_t n = 1; !stopping; ++n) {
    if (paused) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    rocksdb::WriteBatch batch;
    const int ops = rng() % 4 == 0 ? 1 + static_cast<int>(rng() % 8) : 1;
    for (int i = 0; i < ops; ++i) {
      const int family = static_cast<int>(rng() % 2);
      char key[16];
      std::snprintf(key, sizeof key, "a%05u", static_cast<unsigned>(rng() % 3000));
      if (rng() % 5 == 0) {
        std::printf("W %llu %s %s -\n", static_cast<unsigned long long>(n), family_names[family],
                    key);
        rs = batch.Delete(handles[family], key);
      } else {
        std::string value = "v" + std::to_string(seed) + "." + std::to_string(n) + ".";
        value.resize(value.size() + rng() % 300, static_cast<char>('a' + rng() % 26));
        std::printf("W %llu %s %s %s\n", static_cast<unsigned long long>(n), family_names[family],
                    key, value.c_str());
        rs = batch.Put(handles[family], key, value);
      }
      if (!rs.ok()) return Fail("cannot build a write batch: " + rs.ToString());
    }
    std::fflush(stdout);
    rs = db->Write(write_options, &batch);
    if (rs.ok()) {
      std::printf("A %llu\n", static_cast<unsigned long long>(n));
      master->NotifyWrite();
    } else {
      std::printf("F %llu %s\n", static_cast<unsigned long long>(n), rs.ToString().c_str());
    }
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }

  master.reset();
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  rs = db->Close();
  if (!rs.ok()) return Fail("closing " + db_path + ": " + rs.ToString());
  return 0;
}
