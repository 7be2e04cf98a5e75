// DaemonTest: the base fixture of the tests that run the real programs: a
// temporary directory, small RocksDB databases written and read as another
// process would, secret files, and the master daemon started on a port the
// OS picks.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "test/support/child_process.h"

namespace sdiff::testing {

using Contents = std::map<std::string, std::string>;

inline constexpr std::chrono::seconds kProgramDeadline{30};

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Creates a database holding `contents` in its default family.
  void WriteDb(const std::string& path, const Contents& contents);
  // The default family of a database, read as another process would
  // (a secondary instance); empty if it cannot be opened.
  Contents ReadSecondary(const std::string& path);
  // A secret file only its owner may read.
  void WriteSecret(const std::string& path, const std::string& secret);
  // Starts sdiff-rocks-master on 127.0.0.1:0 with `extra` flags; *port is the
  // port it printed, 0 if it did not come up.
  std::unique_ptr<ChildProcess> StartMaster(const std::string& db,
                                            const std::vector<std::string>& extra, uint16_t* port);

  std::string dir_;  // removed after the test
};

// key0..key{n-1} mapped to value0..value{n-1}.
Contents NumberedKeys(int n);

}  // namespace sdiff::testing
