// sdiff-bench records: what the record layer (net/record_channel.h) costs per
// byte and per record, sealing and opening, with checksums and with MACs.
#pragma once

#include <cstddef>
#include <vector>

namespace sdiff::bench {

struct RecordsBenchOptions {
  bool json = false;
  size_t megabytes = 256;  // sealed and opened per measurement
  // Sizes of the pieces handed to Seal, as a connection's sends are:
  // a small stream batch, one record's worth, a bulk frame.
  std::vector<size_t> sends = {200, 4096, 1 << 20};
};

int RunRecordsBench(const RecordsBenchOptions& options);

}  // namespace sdiff::bench
