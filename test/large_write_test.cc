// Batches and values larger than a frame, in the sans-I/O sessions: with a
// 4 KiB frame limit on the follower, a 100 KiB value or a batch of many ops
// must travel in pieces (BatchPart, PutStart, ValuePart) by stream, repair and
// bootstrap, and apply atomically. replication_test.cc runs the same paths
// over RocksDB and sockets.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/client_session.h"
#include "engine/messages.h"
#include "engine/server_session.h"
#include "engine/testing/link.h"
#include "engine/testing/memory_replica.h"
#include "engine/wire.h"

// Messages are built with designated initializers that name only the fields
// a test is about; the others keep their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace sdiff::testing {
namespace {

constexpr size_t kFrame = 4096;  // the master's piece size
constexpr size_t kLarge = 100 << 10;

Op Put(std::string key, std::string value, FamilyTag family = 0) {
  return Op{OpKind::kPut, family, std::move(key), std::move(value)};
}

// A value whose bytes say where they are, so a piece out of place shows.
std::string Pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7 + i / 4093);
  return s;
}

// Whether the follower holds exactly the master's data (no dump of 100 KiB
// values on failure).
::testing::AssertionResult SameData(const KeyValueMap& follower, const KeyValueMap& master) {
  if (follower == master) return ::testing::AssertionSuccess();
  auto result = ::testing::AssertionFailure();
  result << "follower holds " << follower.size() << " keys, master " << master.size() << ";";
  for (const auto& [key, value] : master) {
    auto it = follower.find(key);
    if (it == follower.end()) {
      result << " missing " << key.second;
    } else if (it->second != value) {
      result << " differs " << key.second << " (" << it->second.size() << " bytes, master "
             << value.size() << ")";
    }
  }
  return result;
}

class LargeWriteTest : public ::testing::Test {
 protected:
  LargeWriteTest() : master_("m1") {
    options_.server.bulk_frame_bytes = kFrame;
    // A frame beyond a piece and its header fails the follower.
    options_.client.max_frame = kFrame + 64;
    options_.window_bytes = kFrame;
  }

  std::unique_ptr<Link> Connect() {
    auto link = std::make_unique<Link>(&master_, &follower_, &rng_, options_);
    link->Start();
    return link;
  }

  MemoryMaster master_;
  MemoryFollower follower_;
  std::mt19937_64 rng_{7};
  LinkOptions options_;
};

TEST_F(LargeWriteTest, StreamedBatchLargerThanAFrameAppliesAtomicallyAtItsLastPart) {
  auto link = Connect();
  ASSERT_TRUE(link->RunUntilQuiet());
  ASSERT_TRUE(link->quiescent());
  std::vector<Op> ops;
  for (int i = 0; i < 60; ++i) ops.push_back(Put("k" + std::to_string(i), Pattern(100, 'a')));
  ops.push_back(Put("big", Pattern(kLarge, 'b')));
  ops.push_back(Put("big2", Pattern(kLarge / 2 + 1, 'c')));  // two large puts in a row
  ops.push_back(Op{OpKind::kDelete, 0, "k3", {}});
  ops.push_back(Op{OpKind::kDeleteRange, 0, "k5", "k6"});
  ops.push_back(Put("last", Pattern(kLarge, 'd')));  // a large put ends the batch
  link->OnMasterBatch(master_.Write(ops));
  // A piece at a time: the follower holds none of the batch until all of it.
  while (link->DeliverToFollower(1000) > 0) {
    if (follower_.data().empty()) continue;
    ASSERT_TRUE(SameData(follower_.data(), master_.data())) << "part of the batch was applied";
  }
  ASSERT_TRUE(link->RunUntilQuiet());
  EXPECT_FALSE(link->closed()) << link->client().error().ToString();
  EXPECT_TRUE(SameData(follower_.data(), master_.data()));
  ASSERT_FALSE(follower_.stream_applies().empty());
  EXPECT_EQ(follower_.stream_applies().back().size(), ops.size()) << "one write, every op";
  EXPECT_EQ(link->client().applied_seq(), master_.seq());
  // Later writes keep flowing.
  link->OnMasterBatch(master_.Write({Put("after", "x")}));
  ASSERT_TRUE(link->RunUntilQuiet());
  EXPECT_TRUE(SameData(follower_.data(), master_.data()));
  EXPECT_TRUE(link->quiescent());
}

TEST_F(LargeWriteTest, SessionEncodesTheSharedBatchAPieceAtATime) {
  auto link = Connect();
  ASSERT_TRUE(link->RunUntilQuiet());
  auto batch = std::make_shared<const Batch>(master_.Write({Put("big", Pattern(kLarge, 'e'))}));
  ServerSession& server = link->server();
  ASSERT_TRUE(server.OnBatch(batch));
  EXPECT_EQ(batch.use_count(), 2) << "the session keeps the batch itself, not a copy";
  EXPECT_EQ(server.batches_held(), 1u);
  size_t takes = 0, bytes = 0;
  while (server.wants_write()) {
    std::string out = server.TakeOutput();
    EXPECT_LE(out.size(), 2 * kFrame) << "output beyond about one piece at a time";
    bytes += out.size();
    ++takes;
  }
  EXPECT_GE(takes, kLarge / (2 * kFrame));
  EXPECT_GE(bytes, kLarge);
  EXPECT_EQ(server.batches_held(), 0u);
  EXPECT_EQ(batch.use_count(), 1) << "let go once encoded";
}

TEST_F(LargeWriteTest, RepairCarriesALargeValueInPieces) {
  for (int i = 0; i < 30; ++i) master_.Write({Put("k" + std::to_string(i), "v")});
  master_.Write({Put("big", Pattern(kLarge, 'f')), Put("big2", Pattern(3 * kFrame, 'g'))});
  follower_.Put(0, "big", "stale");
  follower_.Put(0, "k1", "stale");
  auto link = Connect();
  ASSERT_TRUE(link->RunUntilQuiet());
  EXPECT_FALSE(link->closed()) << link->client().error().ToString();
  EXPECT_EQ(link->stats().diffs, 1);
  EXPECT_TRUE(SameData(follower_.data(), master_.data()));
  EXPECT_EQ(link->stats().repaired, 32u);
  EXPECT_TRUE(link->quiescent());
}

TEST_F(LargeWriteTest, BootstrapCarriesLargeEntriesInPieces) {
  options_.server.bootstrap_min_keys = 1;
  master_.Write({Put("a-big", Pattern(kLarge, 'h'))});  // first in key order
  for (int i = 0; i < 30; ++i) master_.Write({Put("k" + std::to_string(i), Pattern(300, 'i'))});
  master_.Write({Put("m-big", Pattern(kLarge, 'j')), Put("z-big", Pattern(kLarge, 'k'))});
  auto link = Connect();
  ASSERT_TRUE(link->RunUntilQuiet());
  EXPECT_FALSE(link->closed()) << link->client().error().ToString();
  EXPECT_EQ(link->stats().bootstraps, 1);
  EXPECT_TRUE(SameData(follower_.data(), master_.data()));
  EXPECT_FALSE(follower_.state().bootstrapping);
  EXPECT_TRUE(link->quiescent());
}

// ---- the follower's checks, frame by frame ----

std::string Frame(const Message& message) {
  std::string bytes;
  wire::AppendFrame(message, &bytes);
  return bytes;
}

class LargeWriteClientTest : public ::testing::Test {
 protected:
  // A follower session streaming from sequence 1 after a diff Welcome.
  void SetUp() override {
    session_ =
        std::make_unique<ClientSession>(ClientOptions{}, follower_.Hooks(&rng_), FollowerState{});
    session_->Start();
    session_->OnBytes(Frame(Challenge{wire::kProtocolVersion, std::string(32, 'n'), ""}));
    session_->OnBytes(Frame(Welcome{.master_id = "m1",
                                    .master_seq = 0,
                                    .mode = StartMode::kDiff,
                                    .resume_from = 1,
                                    .families = {{0, "default"}}}));
    ASSERT_TRUE(session_->streaming()) << session_->error().ToString();
  }

  void Feed(const std::vector<Message>& messages) {
    std::string bytes;
    for (const Message& m : messages) wire::AppendFrame(m, &bytes);
    session_->OnBytes(bytes);
  }

  void ExpectProtocolError(const std::string& what) {
    ASSERT_TRUE(session_->closed());
    EXPECT_TRUE(session_->error().IsProtocolError()) << session_->error().ToString();
    EXPECT_NE(session_->error().message().find(what), std::string::npos)
        << session_->error().message();
    EXPECT_TRUE(follower_.stream_applies().empty()) << "nothing of the batch is written";
  }

  MemoryFollower follower_;
  std::mt19937_64 rng_{3};
  std::unique_ptr<ClientSession> session_;
};

TEST_F(LargeWriteClientTest, ValuePartWithoutPutStartIsProtocolError) {
  Feed({ValuePart{"x"}});
  ExpectProtocolError("unexpected ValuePart");
}

TEST_F(LargeWriteClientTest, OtherFrameInsideABatchInPartsIsProtocolError) {
  Feed({BatchPart{.seq = 1, .count = 2, .bytes = 2, .ops = {Put("a", "1")}},
        Batch{.seq = 1, .count = 1, .ops = {Put("b", "2")}}});
  ExpectProtocolError("Batch inside a batch sent in pieces");
}

TEST_F(LargeWriteClientTest, PingInsideAValueIsProtocolError) {
  Feed({BatchPart{.seq = 1, .count = 1, .bytes = 6},
        PutStart{.context = PutContext::kBatch, .id = 1, .key = "k", .value_size = 5},
        ValuePart{"ab"}, Ping{}});
  ExpectProtocolError("Ping inside a value sent in pieces");
}

TEST_F(LargeWriteClientTest, ValueLongerThanAnnouncedIsProtocolError) {
  Feed({BatchPart{.seq = 1, .count = 1, .bytes = 6},
        PutStart{.context = PutContext::kBatch, .id = 1, .key = "k", .value_size = 5},
        ValuePart{"abc"}, ValuePart{"def"}});
  ExpectProtocolError("ValuePart: 3 bytes where the value has 2 left");
}

TEST_F(LargeWriteClientTest, PartOfAnotherBatchIsProtocolError) {
  Feed({BatchPart{.seq = 1, .count = 2, .bytes = 4, .ops = {Put("a", "1")}},
        BatchPart{.seq = 2, .count = 1, .bytes = 4, .ops = {Put("b", "2")}, .last = true}});
  ExpectProtocolError("BatchPart of batch 2 inside batch 1");
}

TEST_F(LargeWriteClientTest, BatchSizeOtherThanAnnouncedIsProtocolError) {
  Feed({BatchPart{.seq = 1, .count = 2, .bytes = 5, .ops = {Put("a", "1")}},
        BatchPart{.seq = 1, .count = 2, .bytes = 5, .ops = {Put("b", "2")}, .last = true}});
  ExpectProtocolError("the batch holds 4 bytes, announced 5");
}

TEST_F(LargeWriteClientTest, PutStartOutsideItsContextIsProtocolError) {
  Feed({PutStart{.context = PutContext::kRepair, .id = 1, .key = "k", .value_size = 1}});
  ExpectProtocolError("PutStart outside its batch, diff or bootstrap");
}

TEST_F(LargeWriteClientTest, BatchPartRepeatingTheStreamIsProtocolError) {
  Feed({Batch{.seq = 1, .count = 1, .ops = {Put("a", "1")}},
        BatchPart{.seq = 1, .count = 1, .bytes = 2, .ops = {Put("b", "2")}, .last = true}});
  ASSERT_TRUE(session_->closed());
  EXPECT_NE(session_->error().message().find("repeats the stream"), std::string::npos)
      << session_->error().message();
}

TEST_F(LargeWriteClientTest, BatchCutOffByARejectWritesNothing) {
  Feed({BatchPart{.seq = 1, .count = 2, .bytes = 4, .ops = {Put("a", "1")}},
        Reject{RejectCode::kShutdown, "bye"}});
  ASSERT_TRUE(session_->closed());
  EXPECT_TRUE(follower_.data().empty());
  EXPECT_EQ(session_->applied_seq(), 0u);
}

TEST_F(LargeWriteClientTest, BatchInPartsAppliesOnceWithItsSequence) {
  Feed({BatchPart{.seq = 1, .count = 3, .bytes = 8, .ops = {Put("a", "1")}},
        PutStart{.context = PutContext::kBatch, .id = 1, .key = "k", .value_size = 3},
        ValuePart{"x"}, ValuePart{"yz"},
        BatchPart{.seq = 1, .count = 3, .bytes = 8, .ops = {Put("b", "2")}, .last = true}});
  ASSERT_FALSE(session_->closed()) << session_->error().ToString();
  ASSERT_EQ(follower_.stream_applies().size(), 1u);
  EXPECT_EQ(follower_.stream_applies()[0],
            (std::vector<Op>{Put("a", "1"), Put("k", "xyz"), Put("b", "2")}));
  EXPECT_EQ(follower_.stream_apply_seqs()[0], 1u);
  EXPECT_EQ(session_->applied_seq(), 3u);
}

TEST_F(LargeWriteClientTest, PongsKeepTheMasterListeningWhileAWriteArrives) {
  auto pongs = [&] {
    wire::FrameReader reader;
    reader.Append(session_->TakeOutput());
    int n = 0;
    Message m;
    bool got = false;
    while (reader.Next(&m, &got).ok() && got) n += std::holds_alternative<Pong>(m) ? 1 : 0;
    return n;
  };
  session_->OnTick(1000);
  pongs();
  Feed({BatchPart{.seq = 1, .count = 1, .bytes = 5},
        PutStart{.context = PutContext::kBatch, .id = 1, .key = "k", .value_size = 4}});
  EXPECT_EQ(pongs(), 1) << "the first piece: the master hears from us";
  session_->OnTick(1500);
  Feed({ValuePart{"a"}});
  EXPECT_EQ(pongs(), 0) << "not more than about once a second";
  session_->OnTick(2600);
  Feed({ValuePart{"b"}});
  EXPECT_EQ(pongs(), 1);
  EXPECT_FALSE(session_->closed()) << session_->error().ToString();
}

}  // namespace
}  // namespace sdiff::testing
