// `sdiff-bench stream` (and `audit`, `twopc`): replication lag from master commit to follower
// apply, the follower in a process of its own.
//
// The parent opens a RocksDB, attaches a Master and spawns itself as
// `stream-follower --master=127.0.0.1:PORT --db=DIR`. For each offered rate it
// writes single-put batches for `seconds`, paced by absolute deadlines (put i
// is due at t0 + i/rate; a late writer catches up at once instead of drifting),
// calling NotifyWrite() after each. Each 100-byte value starts with the
// CLOCK_MONOTONIC time taken just before its Write (8 bytes, little-endian)
// and the phase number (4 bytes). The child applies through a
// RocksFollowerStore wrapped in LagRecorder, which after each successful
// stream apply records now - commit time of every put in the batch, per phase.
//
// Parent and child talk in lines over the child's stdin and stdout:
//   child:  "ready"                    connected, first diff done
//   parent: "report PHASE COUNT WAIT_MS"
//   child:  "phase PHASE APPLIED LAST_APPLY_NS CPU_NS N" then a line of N lags
//           in ns (once COUNT puts of PHASE are applied, or WAIT_MS has
//           passed); CPU_NS is the child's CPU time since its previous report
//   parent: "stop" (or end of input)   the child closes its replica and exits
// Every read has a deadline; the child dies with the parent (PR_SET_PDEATHSIG)
// and the parent kills and reaps the child if it does not exit when told.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <rocksdb/db.h>
#include <rocksdb/utilities/transaction.h>
#include <rocksdb/utilities/transaction_db.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "bench/plugin_bench.h"
#include "bench/rocks_util.h"
#include "net/follower_client.h"
#include "plugin/follower_store.h"
#include "plugin/master.h"
#include "test/support/test_certs.h"

extern char** environ;

namespace sdiff::bench {
namespace {

using namespace std::chrono_literals;

constexpr size_t kKeySize = 16;
constexpr size_t kValueSize = 100;
constexpr size_t kStampSize = 12;  // commit time (8) and phase (4) at the front of a value
// A rate is sustained when the follower applied every put within this long
// after the writer's last commit, ...
constexpr int64_t kCatchUpNs = 1'000'000'000;
// ... its lag p99 stayed under this, ...
constexpr double kSustainedP99Ms = 100;
// ... and the writer achieved at least this share of the offered rate.
constexpr double kWriterShare = 0.95;
// How long the parent waits for a phase's puts to be applied before giving up
// on the rest (they would spoil the next phase).
constexpr int64_t kReportWaitMs = 6'000;
constexpr auto kReadyDeadline = 20s;
constexpr auto kExitDeadline = 10s;

// --- the child -------------------------------------------------------------

// Lags of one phase, as the child measured them.
struct PhaseLags {
  uint64_t applied = 0;
  int64_t last_apply_ns = 0;
  std::vector<int64_t> lags_ns;
};

// A FollowerStore that forwards to the replica and, after each successful
// stream write, records the lag of every stamped put in it.
class LagRecorder : public FollowerStore {
 public:
  explicit LagRecorder(FollowerStore* inner) : inner_(inner) {}

  FollowerHooks Hooks() override {
    FollowerHooks hooks = inner_->Hooks();
    hooks.write = [this, write = hooks.write](const ApplyRequest& request) {
      Status s = write(request);
      if (s.ok() && request.source == ApplyRequest::Source::kStream) Record(request.ops);
      return s;
    };
    return hooks;
  }
  FollowerState State() override { return inner_->State(); }

  // Waits until `count` puts of `phase` are applied or `wait` passes.
  PhaseLags Take(uint32_t phase, uint64_t count, std::chrono::milliseconds wait) {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, wait, [&] { return phases_[phase].applied >= count; });
    return std::exchange(phases_[phase], {});
  }

 private:
  void Record(const std::vector<Op>& ops) {
    int64_t now = MonotonicNs();
    std::lock_guard lock(mu_);
    for (const Op& op : ops) {
      if (op.kind != OpKind::kPut || op.value.size() < kStampSize) continue;
      int64_t commit_ns;
      uint32_t phase;
      std::memcpy(&commit_ns, op.value.data(), 8);
      std::memcpy(&phase, op.value.data() + 8, 4);
      PhaseLags& p = phases_[phase];
      ++p.applied;
      p.last_apply_ns = now;
      p.lags_ns.push_back(now - commit_ns);
    }
    changed_.notify_all();
  }

  FollowerStore* inner_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<uint32_t, PhaseLags> phases_;  // GUARDED_BY(mu_)
};

void Reply(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

// --- the parent ------------------------------------------------------------

// The child process: spawned with pipes on its stdin and stdout; killed and
// reaped by the destructor if it has not exited by then.
class Child {
 public:
  static std::unique_ptr<Child> Spawn(const std::vector<std::string>& args) {
    int to_child[2], from_child[2];
    if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0) return nullptr;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&actions, from_child[1], 1);
    // Nothing else of ours (the master's listening socket, its DB files) goes along.
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(to_child[0]);
    close(from_child[1]);
    if (rc != 0) {
      close(to_child[1]);
      close(from_child[0]);
      return nullptr;
    }
    return std::unique_ptr<Child>(new Child(pid, to_child[1], from_child[0]));
  }

  ~Child() {
    if (in_ >= 0) close(in_);
    if (out_ >= 0) close(out_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  bool Send(const std::string& line) {
    std::string s = line + "\n";
    return write(in_, s.data(), s.size()) == static_cast<ssize_t>(s.size());
  }

  // The next line, or nothing once the deadline passes or the child's stdout ends.
  std::optional<std::string> ReadLine(std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{out_, POLLIN, 0};
      int n = poll(&p, 1, static_cast<int>(left.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      char chunk[1 << 16];
      ssize_t got = read(out_, chunk, sizeof chunk);
      if (got <= 0) return std::nullopt;
      buffer_.append(chunk, got);
    }
  }

  // Tells the child to stop and reaps it; kills it after the deadline. True
  // when it exited by itself with status 0.
  bool Stop(std::chrono::milliseconds deadline) {
    Send("stop");
    close(in_);
    in_ = -1;
    auto end = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;  // the destructor kills it
  }

 private:
  Child(pid_t pid, int in, int out) : pid_(pid), in_(in), out_(out) {}
  pid_t pid_;
  int in_;
  int out_;
  std::string buffer_;
};

struct WriterResult {
  uint64_t writes = 0;   // single puts, or transactions
  uint64_t written = 0;  // puts
  int64_t end_ns = 0;    // after the last Write
  double achieved_per_s = 0;
};

// How the paced loop writes: single puts (db->Put), or two-phase-commit
// transactions of `puts` puts each (BeginTransaction, Put..., Prepare, Commit).
struct WriteShape {
  rocksdb::TransactionDB* txn_db = nullptr;  // set: transactions
  uint32_t puts = 1;                         // per transaction
};

// Writes rate * seconds writes of `shape`, write i due at t0 + i / rate.
// Stops early (short of the count) if it is still writing at t0 + 2 * seconds.
// `master` may be null (the plain runs). Each value is stamped just before its
// own Put, so a transaction's lag includes its Prepare and Commit.
WriterResult WritePaced(rocksdb::DB* db, plugin::Master* master, uint64_t rate, double seconds,
                        uint32_t phase, std::mt19937_64* rng, const ValuePool& pool,
                        const WriteShape& shape = {}) {
  const uint64_t n = static_cast<uint64_t>(rate * seconds);
  const double period_ns = 1e9 / rate;
  const int64_t t0 = MonotonicNs();
  const int64_t hard_end = t0 + static_cast<int64_t>(2 * seconds * 1e9);
  rocksdb::WriteOptions write;
  std::string key(kKeySize, '\0');
  std::string value(pool.Get(phase));
  std::memcpy(value.data() + 8, &phase, 4);
  auto next = [&] {
    uint64_t k0 = (*rng)(), k1 = (*rng)();
    std::memcpy(key.data(), &k0, 8);
    std::memcpy(key.data() + 8, &k1, 8);
    int64_t commit = MonotonicNs();
    std::memcpy(value.data(), &commit, 8);
  };
  WriterResult r;
  for (uint64_t i = 0; i < n; ++i) {
    int64_t due = t0 + static_cast<int64_t>(i * period_ns);
    int64_t now = MonotonicNs();
    if (now < due) {
      timespec ts{static_cast<time_t>(due / 1'000'000'000), static_cast<long>(due % 1'000'000'000)};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
      }
    } else if (now > hard_end) {
      break;
    }
    if (shape.txn_db == nullptr) {
      next();
      Check(db->Put(write, key, value), "master write");
      ++r.written;
    } else {
      std::unique_ptr<rocksdb::Transaction> txn(shape.txn_db->BeginTransaction(write));
      Check(txn->SetName(fmt::format("bench-{}", i)), "naming a transaction");
      for (uint32_t j = 0; j < shape.puts; ++j) {
        next();
        Check(txn->Put(key, value), "transaction put");
      }
      Check(txn->Prepare(), "prepare");
      Check(txn->Commit(), "commit");
      r.written += shape.puts;
    }
    if (master != nullptr) master->NotifyWrite();
    ++r.writes;
  }
  r.end_ns = MonotonicNs();
  r.achieved_per_s = r.writes / ((r.end_ns - t0 + period_ns) * 1e-9);
  return r;
}

struct StreamResult {
  uint64_t offered = 0;
  double achieved = 0;
  uint64_t written = 0, applied = 0;
  double catch_up_ms = 0;  // from the writer's last commit to the last apply
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  double master_cpu_us = 0;    // per put: the master process, writer included
  double follower_cpu_us = 0;  // per put: the follower process
  bool sustained = false;
};

// Parses the child's "phase ..." header and lag line into `r`.
bool ParseReport(const std::string& header, const std::string& lags, uint32_t phase,
                 const WriterResult& w, StreamResult* r) {
  std::istringstream h(header);
  std::string word;
  uint32_t got_phase = 0;
  int64_t last_apply_ns = 0, cpu_ns = 0;
  size_t count = 0;
  if (!(h >> word >> got_phase >> r->applied >> last_apply_ns >> cpu_ns >> count) ||
      word != "phase" || got_phase != phase) {
    return false;
  }
  r->follower_cpu_us = w.written == 0 ? 0 : cpu_ns / 1e3 / w.written;
  std::vector<int64_t> samples;
  samples.reserve(count);
  const char* p = lags.c_str();
  char* end = nullptr;
  for (size_t i = 0; i < count; ++i) {
    samples.push_back(std::strtoll(p, &end, 10));
    if (end == p) return false;
    p = end;
  }
  std::sort(samples.begin(), samples.end());
  r->p50_ms = Percentile(samples, 0.50) / 1e6;
  r->p99_ms = Percentile(samples, 0.99) / 1e6;
  r->max_ms = samples.empty() ? 0 : samples.back() / 1e6;
  r->catch_up_ms = r->applied == 0 ? 0 : std::max<int64_t>(0, last_apply_ns - w.end_ns) / 1e6;
  r->sustained = r->applied >= w.written && last_apply_ns - w.end_ns <= kCatchUpNs &&
                 r->p99_ms < kSustainedP99Ms && r->achieved >= kWriterShare * r->offered;
  return true;
}

uint64_t RoundRate(double rate) {
  return std::max<uint64_t>(5'000, static_cast<uint64_t>(rate / 5'000 + 0.5) * 5'000);
}

// Work run on another thread while a phase writes; `writes_done` turns true
// when the writer has finished.
using BesideWrites = std::function<void(const std::atomic<bool>& writes_done)>;

// One phase: paced writes (with `beside` running meanwhile, if set), then the
// child's report of its lags. Nothing when the child does not report.
std::optional<StreamResult> MeasurePhase(Child* child, rocksdb::DB* db, plugin::Master* master,
                                         uint64_t rate, double seconds, uint32_t phase,
                                         std::mt19937_64* rng, const ValuePool& pool,
                                         const BesideWrites& beside = {},
                                         const WriteShape& shape = {}) {
  double cpu0 = CpuSeconds();
  std::atomic<bool> writes_done{false};
  std::thread side;
  if (beside) side = std::thread([&] { beside(writes_done); });
  WriterResult w = WritePaced(db, master, rate, seconds, phase, rng, pool, shape);
  writes_done = true;
  if (side.joinable()) side.join();
  StreamResult r;
  r.offered = rate;
  r.achieved = w.achieved_per_s;
  r.written = w.written;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kReportWaitMs) + 10s;
  std::optional<std::string> header, lags;
  if (child->Send(fmt::format("report {} {} {}", phase, w.written, kReportWaitMs))) {
    header = child->ReadLine(deadline);
    if (header) lags = child->ReadLine(deadline);
  }
  if (!header || !lags || !ParseReport(*header, *lags, phase, w, &r)) {
    fmt::print(stderr, "sdiff-bench: no report from the follower process for phase {}\n", phase);
    return std::nullopt;
  }
  r.master_cpu_us = (CpuSeconds() - cpu0) * 1e6 / std::max<uint64_t>(1, w.written);
  return r;
}

// The rate the master's writer reaches alone: the same single puts as
// WritePaced, unpaced, for `seconds`, into a plain RocksDB with the master's
// options and no plugin. The stream is sustained at full speed when the
// follower keeps up with this.
double PlainPutRate(double seconds, const ValuePool& pool) {
  TempDir dir;
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.WAL_ttl_seconds = 3600;
  rocksdb::DB* raw = nullptr;
  Check(rocksdb::DB::Open(db_options, dir.sub("plain"), &raw), "opening the plain DB");
  std::unique_ptr<rocksdb::DB> db(raw);
  std::mt19937_64 rng(43);
  rocksdb::WriteOptions write;
  std::string key(kKeySize, '\0');
  std::string value(pool.Get(0));
  const int64_t t0 = MonotonicNs(), end = t0 + static_cast<int64_t>(seconds * 1e9);
  uint64_t written = 0;
  int64_t now = t0;
  while (now < end) {
    for (int i = 0; i < 64; ++i, ++written) {  // the clock read once per 64 puts
      uint64_t k0 = rng(), k1 = rng();
      std::memcpy(key.data(), &k0, 8);
      std::memcpy(key.data() + 8, &k1, 8);
      Check(db->Put(write, key, value), "plain write");
    }
    now = MonotonicNs();
  }
  Check(db->Close(), "closing the plain DB");
  return written / ((now - t0) * 1e-9);
}

// A TransactionDB (write-committed, the default policy) with the stream
// master's options.
rocksdb::TransactionDB* OpenTransactionDb(const std::string& path) {
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.WAL_ttl_seconds = 3600;
  rocksdb::TransactionDB* raw = nullptr;
  Check(rocksdb::TransactionDB::Open(db_options, rocksdb::TransactionDBOptions(), path, &raw),
        "opening the master TransactionDB");
  return raw;
}

// The parent's side of `stream` and `audit`: a master DB in a temporary
// directory, attached, with the follower process connected.
struct StreamSetup {
  TempDir dir;
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::TransactionDB* txn_db = nullptr;  // db, when opened for transactions
  std::unique_ptr<plugin::Master> master;
  std::unique_ptr<Child> child;

  // Opens the DB (after `fill` writes to it, if set), attaches and spawns the
  // follower. False (after a line on stderr) when the follower does not get ready.
  bool Start(plugin::MasterOptions master_options,
             const std::function<void(rocksdb::DB*)>& fill = {}, bool transactions = false,
             bool tls = false, int io_threads = 0) {
    if (transactions) {
      txn_db = OpenTransactionDb(dir.sub("master"));
      db.reset(txn_db);
    } else {
      rocksdb::Options db_options;
      db_options.create_if_missing = true;
      db_options.WAL_ttl_seconds = 3600;
      rocksdb::DB* raw = nullptr;
      Check(rocksdb::DB::Open(db_options, dir.sub("master"), &raw), "opening the master DB");
      db.reset(raw);
    }
    if (fill) fill(db.get());
    master_options.server.listen = "127.0.0.1:0";
    master_options.server.logger = BenchLogger("master");
    if (io_threads > 0) master_options.server.threads = io_threads;
    std::vector<std::string> args = {"sdiff-bench", "stream-follower", "",
                                     "--db=" + dir.sub("follower")};
    if (tls) {
      testing::TestCerts certs;
      Check(testing::MakeTestCertificates(dir.path(), &certs), "making TLS certificates");
      master_options.server.tls = {certs.server_cert, certs.server_key, ""};
      args.push_back("--tls-ca=" + certs.ca_cert);
    }
    Check(plugin::Master::Attach(db.get(), {}, master_options, &master), "attaching the master");
    args[2] = fmt::format("--master=127.0.0.1:{}", master->port());
    child = Child::Spawn(args);
    if (!child) {
      fmt::print(stderr, "sdiff-bench: cannot spawn the follower process\n");
      return false;
    }
    if (child->ReadLine(std::chrono::steady_clock::now() + kReadyDeadline) != "ready") {
      fmt::print(stderr, "sdiff-bench: the follower process did not get ready\n");
      return false;
    }
    return true;
  }

  // Stops the child, detaches and closes; true when the child exited cleanly.
  bool Finish() {
    bool clean = child->Stop(kExitDeadline);
    child.reset();
    master.reset();
    Check(db->Close(), "closing the master DB");
    if (!clean) fmt::print(stderr, "sdiff-bench: the follower process did not exit cleanly\n");
    return clean;
  }
};

}  // namespace

int RunStreamFollower(const StreamFollowerOptions& options) {
  // Dies with the parent; if it is already gone, do not start.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 1;
  plugin::RocksFollowerStoreOptions store_options;
  store_options.db_path = options.db;
  store_options.logger = BenchLogger("follower");
  std::unique_ptr<plugin::RocksFollowerStore> store;
  Check(plugin::RocksFollowerStore::Open(store_options, &store), "opening the replica");
  LagRecorder recorder(store.get());
  net::FollowerClientOptions client_options;
  client_options.master = options.master;
  client_options.tls.ca_file = options.tls_ca;
  client_options.logger = store_options.logger;
  client_options.backoff_initial = 20ms;
  client_options.backoff_max = 200ms;
  std::unique_ptr<net::FollowerClient> client;
  Check(net::FollowerClient::Start(&recorder, client_options, &client), "starting the client");
  if (!client->WaitFor(
          [](const net::FollowerClientStatus& s) { return s.connected && s.syncs > 0; },
          kReadyDeadline)) {
    fmt::print(stderr, "stream-follower: not connected: {}\n", client->status().last_error);
    return 1;
  }
  Reply("ready\n");
  double last_cpu = CpuSeconds();

  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string command;
    in >> command;
    if (command == "stop") break;
    uint32_t phase = 0;
    uint64_t count = 0;
    int64_t wait_ms = 0;
    if (command != "report" || !(in >> phase >> count >> wait_ms)) {
      fmt::print(stderr, "stream-follower: bad request '{}'\n", line);
      return 1;
    }
    PhaseLags p = recorder.Take(phase, count, std::chrono::milliseconds(wait_ms));
    double cpu = CpuSeconds();
    fmt::memory_buffer out;
    fmt::format_to(std::back_inserter(out), "phase {} {} {} {} {}\n", phase, p.applied,
                   p.last_apply_ns, static_cast<int64_t>((cpu - last_cpu) * 1e9), p.lags_ns.size());
    last_cpu = cpu;
    for (int64_t lag : p.lags_ns) fmt::format_to(std::back_inserter(out), "{} ", lag);
    out.push_back('\n');
    Reply(fmt::to_string(out));
  }
  client.reset();  // no write in flight when the replica closes
  store.reset();
  return 0;
}

int RunStreamBench(const StreamBenchOptions& options) {
  signal(SIGPIPE, SIG_IGN);  // a dead child's stdin must not kill us
  StreamSetup setup;
  if (!setup.Start({}, {}, /*transactions=*/false, options.tls, options.io_threads)) return 1;

  if (!options.json) {
    fmt::print(
        "single-put batches at a fixed offered rate for {} s each, {}-byte keys, {}-byte values; "
        "the follower runs in its own process over loopback{}.\n"
        "lag = follower apply time - master commit time (CLOCK_MONOTONIC).\n"
        "sustained: the writer achieved >= {:.0f}% of the offered rate, the follower applied "
        "every put within {} ms of the last commit, and lag p99 < {:.0f} ms.\n"
        "M, F us/put: CPU time per put of the master process (writer included) and of the "
        "follower process.\n",
        options.seconds, kKeySize, kValueSize, options.tls ? ", over TLS" : "", kWriterShare * 100,
        kCatchUpNs / 1'000'000, kSustainedP99Ms);
    fmt::print("{:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>10}\n", "offered/s",
               "achieved/s", "p50 ms", "p99 ms", "max ms", "catch-up", "M us/put", "F us/put",
               "sustained");
  }

  std::mt19937_64 rng(42);
  ValuePool pool(kValueSize, 7);
  std::vector<StreamResult> results;
  bool lost_contact = false;
  auto run = [&](uint64_t rate) {
    uint32_t phase = static_cast<uint32_t>(results.size());
    std::optional<StreamResult> measured =
        MeasurePhase(setup.child.get(), setup.db.get(), setup.master.get(), rate, options.seconds,
                     phase, &rng, pool);
    if (!measured) {
      lost_contact = true;
      return false;
    }
    const StreamResult& r = *measured;
    results.push_back(r);
    if (!options.json) {
      fmt::print(
          "{:>10} {:>10.0f} {:>9.3f} {:>9.3f} {:>9.3f} {:>7.0f} ms {:>9.2f} {:>9.2f} {:>10}\n",
          r.offered, r.achieved, r.p50_ms, r.p99_ms, r.max_ms, r.catch_up_ms, r.master_cpu_us,
          r.follower_cpu_us,
          r.sustained             ? "yes"
          : r.applied < r.written ? fmt::format("no ({} left)", r.written - r.applied)
                                  : "no");
      std::fflush(stdout);
    }
    // A follower still behind would spoil the next phase's figures.
    return r.applied >= r.written;
  };

  // The asked-for rates, then upward by half again while sustained, then
  // halving the interval between the best sustained and the first failed rate.
  uint64_t best = 0, failed = 0;
  auto note = [&](const StreamResult& r) {
    if (r.sustained) {
      best = std::max<uint64_t>(best, r.offered);
    } else if (failed == 0 || r.offered < failed) {
      failed = r.offered;
    }
  };
  bool usable = true;
  for (uint64_t rate : options.rates) {
    if (!(usable = run(rate))) break;
    note(results.back());
  }
  for (int probe = 0; usable && probe < options.max_probes && best > 0; ++probe) {
    uint64_t next = failed == 0 ? RoundRate(best * 1.5) : RoundRate((best + failed) / 2.0);
    if (next <= best || (failed != 0 && next >= failed)) break;
    if (!(usable = run(next))) break;
    note(results.back());
  }

  bool clean = setup.Finish();
  if (lost_contact) return 1;
  // Measured after the phases, in the same run, so both see the same machine.
  const double plain = PlainPutRate(options.seconds, pool);

  if (options.json) {
    fmt::print(
        "{{\"benchmark\": \"stream\", \"tls\": {}, \"io_threads\": {}, \"seconds\": {}, "
        "\"results\": [",
        options.tls, options.io_threads, options.seconds);
    for (size_t i = 0; i < results.size(); ++i) {
      const StreamResult& r = results[i];
      fmt::print(
          "{}{{\"offered_puts_per_s\": {}, \"achieved_puts_per_s\": {:.0f}, \"lag_p50_ms\": "
          "{:.3f}, \"lag_p99_ms\": {:.3f}, \"lag_max_ms\": {:.3f}, \"master_cpu_us_per_put\": "
          "{:.2f}, \"follower_cpu_us_per_put\": {:.2f}, \"sustained\": {}}}",
          i ? ", " : "", r.offered, r.achieved, r.p50_ms, r.p99_ms, r.max_ms, r.master_cpu_us,
          r.follower_cpu_us, r.sustained);
    }
    fmt::print("], \"max_sustained_puts_per_s\": {}, \"master_plain_puts_per_s\": {:.0f}}}\n", best,
               plain);
  } else {
    fmt::print("highest sustained offered rate: {} puts/s{}\n", best,
               failed == 0 ? " (no tried rate failed)" : "");
    fmt::print(
        "the master's writer alone (plain RocksDB, no plugin, unpaced single puts, {} s): {:.0f} "
        "puts/s; sustained / alone: {:.2f}\n",
        options.seconds, plain, best / plain);
  }
  return clean ? 0 : 1;
}

}  // namespace sdiff::bench

namespace sdiff::bench {
namespace {

// A 16-byte key whose first 8 bytes are `high` big-endian, so that key order
// follows `high`.
std::string OrderedKey(uint64_t high, uint64_t low) {
  std::string key(kKeySize, '\0');
  for (int i = 0; i < 8; ++i) key[i] = static_cast<char>(high >> (56 - 8 * i));
  std::memcpy(key.data() + 8, &low, 8);
  return key;
}

// Writes `keys` random keys in batches of 1,000, before the master attaches.
void Preload(rocksdb::DB* db, uint64_t keys, std::mt19937_64* rng, const ValuePool& pool) {
  rocksdb::WriteBatch batch;
  for (uint64_t i = 0; i < keys; ++i) {
    Check(batch.Put(OrderedKey((*rng)(), (*rng)()), pool.Get(i)), "preload");
    if (batch.Count() == 1000 || i + 1 == keys) {
      Check(db->Write(rocksdb::WriteOptions(), &batch), "preload");
      batch.Clear();
    }
  }
}

// Deletes a range of the keyspace holding about `keys` of `total` keys.
void DeleteNarrowRange(rocksdb::DB* db, std::mt19937_64* rng, uint64_t keys, uint64_t total) {
  uint64_t begin = (*rng)() >> 1;
  uint64_t width = (~uint64_t{0} / std::max<uint64_t>(total, 1)) * keys;
  Check(db->DeleteRange(rocksdb::WriteOptions(), db->DefaultColumnFamily(), OrderedKey(begin, 0),
                        OrderedKey(begin + width, 0)),
        "range delete");
}

}  // namespace

int RunAuditBench(const AuditBenchOptions& options) {
  signal(SIGPIPE, SIG_IGN);
  StreamSetup setup;
  plugin::MasterOptions master_options;
  master_options.audit.interval = std::chrono::milliseconds(0);  // on demand only
  master_options.audit.max_bytes_per_second = options.rate_mb << 20;
  std::mt19937_64 rng(7);
  ValuePool pool(kValueSize, 11);
  bool ready =
      setup.Start(master_options, [&](rocksdb::DB* db) { Preload(db, options.keys, &rng, pool); });
  if (!ready) return 1;
  rocksdb::DB* db = setup.db.get();
  plugin::Master* master = setup.master.get();

  // The stream alone, then an audit alone, then both together (the phase
  // lasting as long as the audit).
  std::optional<StreamResult> plain =
      MeasurePhase(setup.child.get(), db, master, options.rate, options.seconds, 0, &rng, pool);
  plugin::AuditResult idle, busy;
  Status idle_status = master->Audit(&idle);
  double seconds = std::max(options.seconds, idle.seconds * 1.2 + 0.5);
  Status busy_status;
  std::optional<StreamResult> audited =
      MeasurePhase(setup.child.get(), db, master, options.rate, seconds, 1, &rng, pool,
                   [&](const std::atomic<bool>&) { busy_status = master->Audit(&busy); });

  // A range delete on the whole tree: how long the tailer takes to apply one
  // (it walks every key), then the stream with one every 100 ms beside it.
  std::vector<double> range_ms;
  for (int i = 0; i < 5; ++i) {
    int64_t t0 = MonotonicNs();
    DeleteNarrowRange(db, &rng, 10, options.keys);
    master->NotifyWrite();
    while (master->status().tailed_seq < db->GetLatestSequenceNumber()) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    range_ms.push_back((MonotonicNs() - t0) / 1e6);
  }
  std::sort(range_ms.begin(), range_ms.end());
  std::optional<StreamResult> ranged =
      MeasurePhase(setup.child.get(), db, master, options.rate, options.seconds, 2, &rng, pool,
                   [&](const std::atomic<bool>& writes_done) {
                     std::mt19937_64 side_rng(13);
                     while (!writes_done) {
                       DeleteNarrowRange(db, &side_rng, 10, options.keys);
                       master->NotifyWrite();
                       std::this_thread::sleep_for(std::chrono::milliseconds(100));
                     }
                   });
  bool clean = setup.Finish();
  if (!plain || !audited || !ranged) return 1;
  if (!idle_status.ok() || !busy_status.ok()) {
    fmt::print(stderr, "sdiff-bench: the audit failed: {} / {}\n", idle_status.ToString(),
               busy_status.ToString());
    return 1;
  }

  if (options.json) {
    fmt::print(
        "{{\"benchmark\": \"audit\", \"keys\": {}, \"rate_mb\": {}, \"offered_puts_per_s\": {}, "
        "\"audit_idle_s\": {:.3f}, \"audit_busy_s\": {:.3f}, \"audit_keys\": {}, "
        "\"audit_mismatches\": {}, \"lag_p50_ms\": {:.3f}, \"lag_p99_ms\": {:.3f}, "
        "\"lag_max_ms\": {:.3f}, \"audited_lag_p50_ms\": {:.3f}, \"audited_lag_p99_ms\": {:.3f}, "
        "\"audited_lag_max_ms\": {:.3f}, \"range_delete_tail_ms_median\": {:.1f}, "
        "\"ranged_lag_p99_ms\": {:.3f}, \"ranged_lag_max_ms\": {:.3f}}}\n",
        options.keys, options.rate_mb, options.rate, idle.seconds, busy.seconds, busy.keys,
        idle.mismatches + busy.mismatches, plain->p50_ms, plain->p99_ms, plain->max_ms,
        audited->p50_ms, audited->p99_ms, audited->max_ms, range_ms[range_ms.size() / 2],
        ranged->p99_ms, ranged->max_ms);
  } else {
    fmt::print("master of {} keys ({}-byte keys, {}-byte values), audit paced at {} MiB/s\n",
               options.keys, kKeySize, kValueSize, options.rate_mb);
    fmt::print("audit alone: {:.3f} s; beside {} puts/s: {:.3f} s; {} keys, {} mismatches\n",
               idle.seconds, options.rate, busy.seconds, busy.keys,
               idle.mismatches + busy.mismatches);
    fmt::print("{:>22} {:>9} {:>9} {:>9}\n", "stream lag at " + std::to_string(options.rate),
               "p50 ms", "p99 ms", "max ms");
    fmt::print("{:>22} {:>9.3f} {:>9.3f} {:>9.3f}\n", "no audit", plain->p50_ms, plain->p99_ms,
               plain->max_ms);
    fmt::print("{:>22} {:>9.3f} {:>9.3f} {:>9.3f}\n", "audit running", audited->p50_ms,
               audited->p99_ms, audited->max_ms);
    fmt::print("{:>22} {:>9.3f} {:>9.3f} {:>9.3f}\n", "range delete / 100 ms", ranged->p50_ms,
               ranged->p99_ms, ranged->max_ms);
    fmt::print("one range delete, write to tailed (median of 5): {:.1f} ms\n",
               range_ms[range_ms.size() / 2]);
  }
  return clean ? 0 : 1;
}

int RunTwoPhaseBench(const TwoPhaseBenchOptions& options) {
  signal(SIGPIPE, SIG_IGN);
  std::mt19937_64 rng(17);
  ValuePool pool(kValueSize, 19);
  // The same paced transactions into a plain TransactionDB: what they cost
  // with no plugin, measured in the same run.
  double plain_cpu_us = 0;
  {
    TempDir dir;
    std::unique_ptr<rocksdb::TransactionDB> txn_db(OpenTransactionDb(dir.sub("plain")));
    double cpu0 = CpuSeconds();
    WriterResult w = WritePaced(txn_db.get(), nullptr, options.rate, options.seconds, 0, &rng, pool,
                                WriteShape{txn_db.get(), options.puts});
    plain_cpu_us = (CpuSeconds() - cpu0) * 1e6 / std::max<uint64_t>(1, w.writes);
    Check(txn_db->Close(), "closing the plain TransactionDB");
  }

  StreamSetup setup;
  bool ready = setup.Start(
      {}, [&](rocksdb::DB* db) { Preload(db, options.keys, &rng, pool); },
      /*transactions=*/true);
  if (!ready) return 1;
  plugin::Master* master = setup.master.get();
  const uint64_t rebuilds0 = master->status().rebuilds;
  std::optional<StreamResult> r =
      MeasurePhase(setup.child.get(), setup.db.get(), master, options.rate, options.seconds, 0,
                   &rng, pool, {}, WriteShape{setup.txn_db, options.puts});
  const uint64_t rebuilds = master->status().rebuilds - rebuilds0;
  const bool caught_up = master->status().tailed_seq == setup.db->GetLatestSequenceNumber();
  bool clean = setup.Finish();
  if (!r) return 1;
  // MeasurePhase counts CPU per put; here per transaction.
  const double attached_cpu_us = r->master_cpu_us * options.puts;

  if (options.json) {
    fmt::print(
        "{{\"benchmark\": \"twopc\", \"keys\": {}, \"puts_per_transaction\": {}, "
        "\"offered_transactions_per_s\": {}, \"achieved_transactions_per_s\": {:.0f}, "
        "\"lag_p50_ms\": {:.3f}, \"lag_p99_ms\": {:.3f}, \"lag_max_ms\": {:.3f}, "
        "\"plain_cpu_us_per_transaction\": {:.1f}, \"attached_cpu_us_per_transaction\": {:.1f}, "
        "\"rebuilds\": {}, \"applied_all\": {}, \"tailed_all\": {}}}\n",
        options.keys, options.puts, options.rate, r->achieved, r->p50_ms, r->p99_ms, r->max_ms,
        plain_cpu_us, attached_cpu_us, rebuilds, r->applied >= r->written, caught_up);
  } else {
    fmt::print(
        "master of {} keys (a TransactionDB, write-committed); {} two-phase transactions/s of {} "
        "puts each (BeginTransaction, Put, Prepare, Commit) for {} s; the follower in its own "
        "process over loopback.\n",
        options.keys, options.rate, options.puts, options.seconds);
    fmt::print(
        "achieved {:.0f} transactions/s; lag (each put's stamp before its Put to its "
        "apply) p50 {:.3f} ms, p99 {:.3f} ms, max {:.3f} ms; {} of {} puts applied\n",
        r->achieved, r->p50_ms, r->p99_ms, r->max_ms, r->applied, r->written);
    fmt::print(
        "CPU per transaction, whole process: plain TransactionDB {:.1f} us, attached (writer, "
        "master plugin) {:.1f} us; the plugin's part {:.1f} us\n",
        plain_cpu_us, attached_cpu_us, attached_cpu_us - plain_cpu_us);
    fmt::print("tree rebuilds during the run: {} (goal 0); tailer at the DB's last sequence: {}\n",
               rebuilds, caught_up ? "yes" : "no");
  }
  return clean && rebuilds == 0 ? 0 : 1;
}

}  // namespace sdiff::bench
