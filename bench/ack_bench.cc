// `sdiff-bench acks`: the latency of one write through the master (the
// writer role, as sdiff-ldb put sends it) on loopback, one write in flight,
// with --min-acks 0 (acknowledged once committed) and 1 (once a follower in
// this process has applied it). A sample is the time from handing a write to
// the writer session to its ack: commit, the round trip, and with min-acks 1
// the stream to the follower, its apply and its report.
#include <fmt/format.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "bench/plugin_bench.h"
#include "bench/rocks_util.h"
#include "net/writer_client.h"
#include "plugin/follower.h"
#include "plugin/master.h"

namespace sdiff::bench {
namespace {

constexpr char kSecret[] = "an sdiff-bench secret of more than sixteen bytes";

struct AckResult {
  size_t min_acks = 0;
  size_t writes = 0;
  double p50_us = 0, p99_us = 0, max_us = 0;
};

AckResult Measure(size_t min_acks, size_t writes) {
  TempDir dir;
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  Check(rocksdb::DB::Open(o, dir.sub("master"), &raw), "opening the master");
  std::unique_ptr<rocksdb::DB> db(raw);
  Check(db->Put(rocksdb::WriteOptions(), "seed", "1"), "seeding the master");

  plugin::MasterOptions mo;
  mo.server.listen = "127.0.0.1:0";
  mo.server.logger = BenchLogger("master");
  mo.server.secret = kSecret;
  mo.server.min_acks = min_acks;
  mo.allow_writers = true;
  std::unique_ptr<plugin::Master> master;
  Check(plugin::Master::Attach(db.get(), {db->DefaultColumnFamily()}, mo, &master), "attaching");

  plugin::FollowerOptions fo;
  fo.db_path = dir.sub("follower");
  fo.client.master = "127.0.0.1:" + std::to_string(master->port());
  fo.client.secret = kSecret;
  fo.client.logger = BenchLogger("follower");
  std::unique_ptr<plugin::Follower> follower;
  Check(plugin::Follower::Open(fo, &follower), "opening the follower");
  // Measured from a follower the master counts: caught up and diffed.
  Check(master->WaitForFollowers(db->GetLatestSequenceNumber(), 1, std::chrono::seconds(60)),
        "waiting for the follower");

  std::vector<int64_t> samples;
  samples.reserve(writes);
  int64_t sent_ns = 0;
  size_t n = 0;
  net::WriterClientOptions wo;
  wo.connect.master = fo.client.master;
  wo.secret = kSecret;
  wo.max_in_flight = 1;  // each write waits for the last one's ack
  net::NextWrite next = [&](const std::vector<FamilyInfo>& families, std::vector<Op>* ops,
                            bool* more) {
    int64_t now = MonotonicNs();
    if (n > 0) samples.push_back(now - sent_ns);
    if (n == writes) {
      *more = false;
      return Status::OK();
    }
    ops->push_back(
        Op{OpKind::kPut, families.front().tag, fmt::format("key{:08}", n), std::string(100, 'v')});
    ++n;
    sent_ns = MonotonicNs();
    return Status::OK();
  };
  net::WriteSummary summary;
  Check(net::WriteThroughMaster(wo, next, &summary), "writing through the master");
  if (summary.unreplicated != 0) {
    fmt::print(stderr, "sdiff-bench: {} writes not replicated: {}\n", summary.unreplicated,
               summary.unreplicated_error);
  }
  follower.reset();
  master.reset();

  std::sort(samples.begin(), samples.end());
  AckResult r;
  r.min_acks = min_acks;
  r.writes = samples.size();
  r.p50_us = Percentile(samples, 0.50) / 1e3;
  r.p99_us = Percentile(samples, 0.99) / 1e3;
  r.max_us = samples.empty() ? 0 : samples.back() / 1e3;
  return r;
}

}  // namespace

int RunAckBench(const AckBenchOptions& options) {
  std::vector<AckResult> results;
  for (size_t m : options.min_acks) results.push_back(Measure(m, options.writes));
  if (options.json) {
    fmt::print("{{\"bench\": \"acks\", \"results\": [");
    for (size_t i = 0; i < results.size(); ++i) {
      const AckResult& r = results[i];
      fmt::print(
          "{}{{\"min_acks\": {}, \"writes\": {}, \"p50_us\": {:.1f}, \"p99_us\": {:.1f}, "
          "\"max_us\": {:.1f}}}",
          i == 0 ? "" : ", ", r.min_acks, r.writes, r.p50_us, r.p99_us, r.max_us);
    }
    fmt::print("]}}\n");
    return 0;
  }
  fmt::print(
      "write latency through the master on loopback, one write in flight, 100-byte values\n");
  fmt::print("{:>9} {:>8} {:>9} {:>9} {:>9}\n", "min-acks", "writes", "p50 us", "p99 us", "max us");
  for (const AckResult& r : results) {
    fmt::print("{:>9} {:>8} {:>9.1f} {:>9.1f} {:>9.1f}\n", r.min_acks, r.writes, r.p50_us, r.p99_us,
               r.max_us);
  }
  return 0;
}

}  // namespace sdiff::bench
