// embedded_master: an application that owns a RocksDB and has sdiff serve it
// to followers. It opens (or creates) the database in DIR, attaches an
// sdiff::Master, writes KEYS keys of its own, and serves until SIGINT or SIGTERM.
//
//   embedded_master DIR [--listen HOST:PORT] [--keys N]
//
// Once followers can connect it prints "listening on HOST:PORT" on stdout;
// with port 0 (the default) the OS picks the port, and scripts read it there.
// Follow it with examples/follower_reader or `sdiff-rocks-follower`.
#include <pthread.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <sdiff/master.h>
#include <sdiff/version.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "embedded_master: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  std::string listen = "127.0.0.1:0";
  long keys = 1000;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--listen" && i + 1 < argc) {
      listen = argv[++i];
    } else if (arg == "--keys" && i + 1 < argc) {
      keys = std::atol(argv[++i]);
    } else if (dir.empty() && arg[0] != '-') {
      dir = arg;
    } else {
      dir.clear();
      break;
    }
  }
  if (dir.empty() || keys < 0) {
    std::fprintf(stderr, "usage: embedded_master DIR [--listen HOST:PORT] [--keys N]\n");
    return 2;
  }

  // The master runs threads of its own, which inherit this mask: the stop
  // signals then reach only the sigwait at the end of main.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  // 1. The application's own database. sdiff asks two things of its options:
  // the master's listener, which tells it of files ingested outside the WAL,
  // and WAL files kept a few minutes, from which a follower coming back resumes.
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.WAL_ttl_seconds = 600;
  std::shared_ptr<rocksdb::EventListener> listener = sdiff::NewMasterListener();
  db_options.listeners.push_back(listener);
  rocksdb::DB* raw = nullptr;
  rocksdb::Status rs = rocksdb::DB::Open(db_options, dir, &raw);
  if (!rs.ok()) return Fail("opening " + dir + ": " + rs.ToString());
  std::unique_ptr<rocksdb::DB> db(raw);

  // 2. Attach: builds the merkle tree from a snapshot, then tails the WAL and
  // serves followers. Without a secret it accepts followers on loopback only;
  // set options.secret (and options.tls) to serve other machines.
  sdiff::MasterOptions options;
  options.listen = listen;
  options.listener = listener;
  std::unique_ptr<sdiff::Master> master;
  sdiff::Status s = sdiff::Master::Attach(db.get(), {db->DefaultColumnFamily()}, options, &master);
  if (!s.ok()) return Fail("attaching the master: " + s.ToString());
  const std::string host = listen.substr(0, listen.rfind(':'));
  std::printf("listening on %s:%u (sdiff %s)\n", host.c_str(), unsigned{master->port()},
              sdiff::kVersion);
  std::fflush(stdout);

  // 3. The application writes as it always did; NotifyWrite after a write
  // streams it to the followers at once instead of at the next poll.
  for (long i = 0; i < keys; ++i) {
    char key[32];
    std::snprintf(key, sizeof key, "key-%08ld", i);
    rs = db->Put(rocksdb::WriteOptions(), key, "value-" + std::to_string(i));
    if (!rs.ok()) return Fail(std::string("writing ") + key + ": " + rs.ToString());
    master->NotifyWrite();
  }
  std::printf("wrote %ld keys\n", keys);
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop, &sig);
  sdiff::MasterStatus status = master->status();
  std::printf("stopping on %s: %zu keys, root %s, %zu follower(s)\n",
              sig == SIGINT ? "SIGINT" : "SIGTERM", status.keys, status.root.c_str(),
              status.sessions.size());
  master.reset();  // stops serving and tailing; before the database it tails
  return 0;        // `db` closes the database
}
