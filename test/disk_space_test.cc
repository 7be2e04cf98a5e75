// A follower whose disk fills up: it stops applying before RocksDB runs out
// of room (RocksDB 7.8, as Debian builds it, aborted the follower's process
// on the write after a failed one: the fault harness found it, 3 runs of 3),
// says why, backs off instead of reconnecting many times a second, and
// catches up by itself once there is room.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "plugin/follower.h"
#include "test/support/replica_pair.h"
#include "test/support/wait.h"

namespace sdiff::plugin {
namespace {

using namespace std::chrono_literals;

TEST(DiskSpaceTest, AFollowerShortOfRoomStopsApplyingAndCatchesUpOnItsOwn) {
  char tmpl[] = "/tmp/sdiff-disk-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  {
    testing::MasterDb master(dir + "/master");
    ASSERT_TRUE(master.Attach().ok());
    for (int i = 0; i < 60; ++i) master.Put(i % 3, "k" + std::to_string(i), "value");

    std::atomic<uint64_t> free{32 << 20};  // less than the reserve
    FollowerOptions o = testing::QuietFollowerOptions(master, dir + "/follower");
    o.min_free_bytes = 64 << 20;
    o.free_bytes = [&free](const std::string&) { return free.load(); };
    std::unique_ptr<Follower> follower;
    ASSERT_TRUE(Follower::Open(o, &follower).ok());

    ASSERT_TRUE(testing::WaitUntil(
        [&] {
          return follower->status().last_error.find("stops applying until there is room") !=
                 std::string::npos;
        },
        15s))
        << follower->status().last_error;
    EXPECT_EQ(follower->status().keys, 0u) << "nothing may be applied without room";
    // A measurement window, not a wait for an event: a connection that ends
    // right after its handshake must back off (20 ms doubling to 200 ms
    // here), not come back at once. Before, it came back within a few ms,
    // hundreds of times a second.
    const uint64_t connects = follower->status().connects;
    std::this_thread::sleep_for(1s);
    EXPECT_LE(follower->status().connects - connects, 12u);
    EXPECT_EQ(follower->status().keys, 0u);

    free = uint64_t{1} << 40;  // room again
    EXPECT_TRUE(testing::WaitConverged(master, follower.get(), 15s));
    follower.reset();
  }
  std::filesystem::remove_all(dir);
}

// A master whose disk is short of room refuses writes through it with the
// reason, commits nothing of them, and takes them again once there is room.
TEST(DiskSpaceTest, AMasterShortOfRoomRefusesWritesThroughItUntilThereIsRoom) {
  char tmpl[] = "/tmp/sdiff-disk-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  {
    testing::MasterDb master(dir + "/master");
    std::atomic<uint64_t> free{32 << 20};  // less than the reserve
    MasterOptions options;
    options.allow_writers = true;
    options.server.secret = "disk-space-test-secret-0123456789";
    options.min_free_bytes = 64 << 20;
    options.free_bytes = [&free](const std::string&) { return free.load(); };
    ASSERT_TRUE(master.Attach(options).ok());

    const std::string& secret = options.server.secret;
    net::WriteSummary refused;
    Status s = testing::PutThroughMaster(master, secret, "refused", "value", &refused);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("refuses writes through it until there is room"), std::string::npos)
        << s.ToString();
    EXPECT_EQ(refused.writes, 0u);
    EXPECT_TRUE(master.Scan().empty());

    free = uint64_t{1} << 40;  // room again
    net::WriteSummary taken;
    s = testing::PutThroughMaster(master, secret, "taken", "value", &taken);
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(taken.writes, 1u);
    EXPECT_EQ(master.Scan(), (testing::FamilyContents{{{"default", "taken"}, "value"}}));
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sdiff::plugin
