// The record layer's cost: seal and open `megabytes` in sends of each size,
// in each mode, and print the CPU per byte and per send.
#include "bench/records_bench.h"

#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "net/record_channel.h"

namespace sdiff::bench {

int RunRecordsBench(const RecordsBenchOptions& options) {
  std::string rows;
  if (!options.json) {
    fmt::print("{:>8} {:>10} {:>12} {:>12} {:>14} {:>14}\n", "mode", "send B", "seal MB/s",
               "open MB/s", "seal ns/send", "open ns/send");
  }
  for (bool secret : {false, true}) {
    for (size_t send : options.sends) {
      std::unique_ptr<net::RecordChannel> sender, receiver;
      const std::string key = secret ? "a shared secret of 16+ bytes" : "";
      if (!net::RecordChannel::Create(key, false, &sender).ok() ||
          !net::RecordChannel::Create(key, true, &receiver).ok()) {
        fmt::print(stderr, "cannot create a record channel\n");
        return 1;
      }
      const std::string payload = RandomStrings(1, send, 7)[0];
      const size_t sends = std::max<size_t>(1, (options.megabytes << 20) / send);
      // Sealed all first, then opened all: each clock read covers a whole
      // loop, not one send (a read of the CPU clock costs about a small send).
      std::vector<std::string> wire(sends);
      double t0 = CpuSeconds();
      for (std::string& w : wire) sender->Seal(payload, &w);
      const double seal_cpu = CpuSeconds() - t0;
      std::string plain;
      Status s = receiver->Open(sender->hello(), &plain);
      t0 = CpuSeconds();
      for (size_t i = 0; i < sends && s.ok(); ++i) {
        plain.clear();
        s = receiver->Open(wire[i], &plain);
        KeepAlive(plain.size());
      }
      const double open_cpu = CpuSeconds() - t0;
      if (!s.ok()) {
        fmt::print(stderr, "{}\n", s.ToString());
        return 1;
      }
      const double mb = static_cast<double>(sends * send) / 1e6;
      const char* mode = secret ? "mac" : "checksum";
      if (options.json) {
        rows += fmt::format(
            "{}{{\"mode\":\"{}\",\"send_bytes\":{},\"seal_mb_s\":{:.0f},\"open_mb_s\":{:.0f},"
            "\"seal_ns_per_send\":{:.0f},\"open_ns_per_send\":{:.0f}}}",
            rows.empty() ? "" : ",", mode, send, mb / seal_cpu, mb / open_cpu,
            seal_cpu * 1e9 / sends, open_cpu * 1e9 / sends);
      } else {
        fmt::print("{:>8} {:>10} {:>12.0f} {:>12.0f} {:>14.0f} {:>14.0f}\n", mode, send,
                   mb / seal_cpu, mb / open_cpu, seal_cpu * 1e9 / sends, open_cpu * 1e9 / sends);
      }
    }
  }
  if (options.json) fmt::print("{{\"records\":[{}]}}\n", rows);
  return 0;
}

}  // namespace sdiff::bench
