// follower_reader: keeps DIR a read replica of a master with sdiff::Follower,
// and reads it as another process would, with sdiff::ReplicaReader.
//
//   follower_reader DIR --master HOST:PORT [--expect-keys N [--timeout-s S]] [--read KEY]
//
// Without --expect-keys it follows until SIGINT or SIGTERM, printing the
// follower's status every few seconds. With it, it exits 0 as soon as the
// replica holds N keys, 1 if S seconds (default 30) pass first. --read then
// prints KEY's value from a ReplicaReader opened on the live replica.
#include <pthread.h>
#include <sdiff/follower.h>
#include <sdiff/replica_reader.h>
#include <signal.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "follower_reader: %s\n", what.c_str());
  return 1;
}

void PrintStatus(const sdiff::FollowerStatus& st) {
  std::printf(
      "%s, %llu keys, applied seq %llu, %llu behind%s%s\n",
      st.connected ? "connected" : "not connected", static_cast<unsigned long long>(st.keys),
      static_cast<unsigned long long>(st.applied_seq), static_cast<unsigned long long>(st.lag_seqs),
      st.last_error.empty() ? "" : ", last error: ", st.last_error.c_str());
  std::fflush(stdout);
}

// A ReplicaReader needs nothing of the Follower but its directory: any
// process on the machine can do this while the follower keeps writing.
int Read(const std::string& replica_dir, const std::string& key) {
  std::unique_ptr<sdiff::ReplicaReader> reader;
  // The reader's own directory, for RocksDB's secondary instance (its info log).
  sdiff::Status s = sdiff::ReplicaReader::Open(replica_dir, replica_dir + ".reader", &reader);
  if (!s.ok()) return Fail("opening a reader: " + s.ToString());
  std::string value;
  s = reader->Get("default", key, &value);
  if (!s.ok()) return Fail("reading " + key + ": " + s.ToString());
  uint64_t seq = 0;
  s = reader->AppliedSeq(&seq);  // 0 while a diff is rewriting the replica
  if (!s.ok()) return Fail("reading the applied sequence: " + s.ToString());
  std::printf("%s = %s (the replica holds the master up to sequence %llu)\n", key.c_str(),
              value.c_str(), static_cast<unsigned long long>(seq));
  // Later: reader->CatchUp() refreshes the view, and Get sees newer writes.
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  sdiff::FollowerOptions options;
  long expect_keys = -1;
  long timeout_s = 30;
  std::string read_key;
  bool usage = false;
  for (int i = 1; i < argc && !usage; ++i) {
    std::string arg = argv[i];
    bool has_value = i + 1 < argc;
    if (arg == "--master" && has_value) {
      options.master = argv[++i];
    } else if (arg == "--expect-keys" && has_value) {
      expect_keys = std::atol(argv[++i]);
    } else if (arg == "--timeout-s" && has_value) {
      timeout_s = std::atol(argv[++i]);
    } else if (arg == "--read" && has_value) {
      read_key = argv[++i];
    } else if (options.db_path.empty() && arg[0] != '-') {
      options.db_path = arg;
    } else {
      usage = true;
    }
  }
  if (usage || options.db_path.empty()) {
    std::fprintf(stderr,
                 "usage: follower_reader DIR --master HOST:PORT [--expect-keys N [--timeout-s S]] "
                 "[--read KEY]\n");
    return 2;
  }

  // The follower runs threads of its own, which inherit this mask: the stop
  // signals then reach only the sigtimedwait below.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  // Open creates DIR if needed and follows the master for as long as
  // `follower` lives: it catches up by a diff (or a copy of the master's
  // files, for a large master), then applies the master's writes as they
  // stream, and reconnects after any failure.
  std::unique_ptr<sdiff::Follower> follower;
  sdiff::Status s = sdiff::Follower::Open(options, &follower);
  if (!s.ok()) return Fail("opening the follower: " + s.ToString());
  std::printf("following %s into %s\n", options.master.c_str(), options.db_path.c_str());
  std::fflush(stdout);

  if (expect_keys < 0) {
    timespec every{5, 0};
    while (sigtimedwait(&stop, nullptr, &every) < 0) PrintStatus(follower->status());
    return 0;  // `follower` stops following, then closes the database
  }

  // Reads through follower->db() see the replica too; WaitFor polls status().
  bool done = follower->WaitFor(
      [expect_keys](const sdiff::FollowerStatus& st) {
        return st.keys >= static_cast<uint64_t>(expect_keys);
      },
      std::chrono::seconds(timeout_s));
  PrintStatus(follower->status());
  if (!done) return Fail("the replica did not reach " + std::to_string(expect_keys) + " keys");
  std::printf("the replica holds %ld keys\n", expect_keys);
  return read_key.empty() ? 0 : Read(options.db_path, read_key);
}
