// MasterServer runs sessions' database work (repair reads, bootstrap scans,
// writes, file reads) on its database workers, never on an I/O thread: a
// slow read holds up its own session and nothing else.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "net/follower_client.h"
#include "net/master_server.h"
#include "test/support/memory_hub.h"
#include "test/support/rocks_util.h"
#include "test/support/wait.h"

namespace sdiff::net {
namespace {

using namespace std::chrono_literals;
using testing::MemoryFollowerStore;
using testing::MemoryHub;
using testing::QuietLogger;
using testing::WaitUntil;

constexpr auto kDeadline = 10s;

// A hub whose repair reads, once held, wait until the test releases them
// (at most kDeadline), as a read from a slow disk would.
class SlowReadHub : public MemoryHub {
 public:
  SlowReadHub() : MemoryHub("slow-read-master") {}

  MasterHooks SessionHooks() override {
    MasterHooks h = MemoryHub::SessionHooks();
    h.read = [this, inner = h.read](const std::vector<KeyRef>& keys,
                                    std::vector<std::optional<std::string>>* values) {
      std::unique_lock lock(mu_);
      if (hold_) {
        ++held_;
        changed_.notify_all();
        changed_.wait_for(lock, kDeadline, [this] { return !hold_; });
        ++returned_;
      }
      lock.unlock();
      return inner(keys, values);
    };
    return h;
  }

  void Hold() {
    std::lock_guard lock(mu_);
    hold_ = true;
  }
  void Release() {
    std::lock_guard lock(mu_);
    hold_ = false;
    changed_.notify_all();
  }
  int held() {
    std::lock_guard lock(mu_);
    return held_;
  }
  int returned() {
    std::lock_guard lock(mu_);
    return returned_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  bool hold_ = false;  // GUARDED_BY(mu_)
  int held_ = 0;       // GUARDED_BY(mu_): reads that waited
  int returned_ = 0;   // GUARDED_BY(mu_): of which are done
};

std::unique_ptr<FollowerClient> StartFollower(MemoryFollowerStore* store, uint16_t port) {
  FollowerClientOptions o;
  o.master = "127.0.0.1:" + std::to_string(port);
  o.backoff_initial = 20ms;
  o.backoff_max = 200ms;
  o.logger = QuietLogger();
  std::unique_ptr<FollowerClient> client;
  Status s = FollowerClient::Start(store, o, &client);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return client;
}

// Follower A's diff holds a repair read for 500 ms and more. Meanwhile
// follower B, on the same master with a single I/O thread (before the
// database workers, A's read held that thread and every session on it),
// gets a new write and its pings: its Pongs move its applied sequence in
// the master's stats. Only then does A's read return, and A converges.
TEST(DbWorkerTest, ASlowRepairReadDelaysNeitherAnotherSessionsStreamNorItsPings) {
  SlowReadHub hub;
  for (int i = 0; i < 50; ++i) hub.Put("key" + std::to_string(i), "value" + std::to_string(i));
  MasterServerOptions o;
  o.listen = "127.0.0.1:0";
  o.threads = 1;
  o.ping_interval_ms = 50;
  o.logger = QuietLogger();
  std::unique_ptr<MasterServer> master;
  ASSERT_TRUE(MasterServer::Start(&hub, o, &master).ok());

  MemoryFollowerStore b_store;
  auto b = StartFollower(&b_store, master->port());
  ASSERT_TRUE(b_store.WaitForData(hub.Data(), kDeadline));

  hub.Hold();
  MemoryFollowerStore a_store;  // empty: every key is repaired
  auto a = StartFollower(&a_store, master->port());
  ASSERT_TRUE(WaitUntil([&] { return hub.held() == 1; }, kDeadline));
  auto held_at = std::chrono::steady_clock::now();

  hub.Put("live", "while A's read is held");
  uint64_t seq = hub.seq();
  EXPECT_TRUE(b_store.WaitForData(hub.Data(), kDeadline)) << "B's stream waited for A's read";
  auto b_pong = [&] {
    for (const SessionStats& s : master->stats().sessions) {
      if (s.applied_seq == seq) return true;  // only B has applied it
    }
    return false;
  };
  EXPECT_TRUE(WaitUntil(b_pong, kDeadline)) << "B's pings waited for A's read";
  EXPECT_EQ(hub.returned(), 0) << "A's read must still be held";
  // Held for 500 ms at least, B's pings and Pongs going on all along.
  ASSERT_TRUE(WaitUntil([&] { return std::chrono::steady_clock::now() - held_at >= 500ms; }, 2s));
  EXPECT_EQ(hub.returned(), 0);
  hub.Put("later", "also while held");
  EXPECT_TRUE(b_store.WaitForData(hub.Data(), kDeadline));
  EXPECT_EQ(hub.returned(), 0);

  hub.Release();
  EXPECT_TRUE(a_store.WaitForData(hub.Data(), kDeadline)) << a->status().last_error;
  EXPECT_EQ(hub.returned(), 1);
  a.reset();
  b.reset();
  master->Stop();
}

}  // namespace
}  // namespace sdiff::net
