// The inspector, writer and auditor roles of the protocol, sans-I/O: an
// inspector is diffed once and streamed nothing; a writer's Writes are
// committed through the master's write hook and acknowledged in order, and
// only where the master takes writers; an auditor asks for one self-audit,
// which the embedder runs, and gets its report.
#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/audit_session.h"
#include "engine/server_session.h"
#include "engine/testing/fake_authenticator.h"
#include "engine/testing/link.h"
#include "engine/testing/memory_replica.h"
#include "engine/wire.h"
#include "engine/writer_session.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace sdiff {
namespace {

using testing::Link;
using testing::LinkOptions;
using testing::MemoryFollower;
using testing::MemoryMaster;

using testing::FakeAuthenticator;

class RolesTest : public ::testing::Test {
 protected:
  void WriteKeys(int from, int to) {
    for (int i = from; i < to; ++i) {
      master_.Write({Op{OpKind::kPut, 0, "key" + std::to_string(i), "v" + std::to_string(i)}});
    }
  }

  std::mt19937_64 rng_{77};
  MemoryMaster master_{"m1"};
};

// ---- inspector ----

TEST_F(RolesTest, InspectorIsDiffedOnceAndGetsNoStream) {
  WriteKeys(0, 40);
  MemoryFollower inspector;  // empty: a follower would be bootstrapped
  inspector.Put(0, "stale", "x");
  LinkOptions options;
  options.server.bootstrap_min_keys = 1;
  options.client.role = Role::kInspector;
  options.client.diff_after_catch_up = false;
  Link link(&master_, &inspector, &rng_, options);
  link.Start();
  ASSERT_TRUE(link.RunUntilQuiet());
  EXPECT_EQ(link.stats().bootstraps, 0);
  EXPECT_EQ(link.stats().diffs, 1);
  EXPECT_EQ(link.stats().syncs, 1);
  EXPECT_EQ(link.stats().repaired, 41u);  // 40 missing keys and one stale
  EXPECT_EQ(inspector.data(), master_.data());

  const Batch& batch = master_.Write({Op{OpKind::kPut, 0, "later", "v"}});
  link.OnMasterBatch(batch);
  ASSERT_TRUE(link.RunUntilQuiet());
  EXPECT_TRUE(inspector.stream_applies().empty());
  EXPECT_EQ(inspector.data().count({0, "later"}), 0u);
  EXPECT_FALSE(link.closed());
}

TEST_F(RolesTest, InspectorIsDiffedEvenWhenItCouldResume) {
  WriteKeys(0, 10);
  MemoryFollower inspector;
  inspector.SetState(FollowerState{.master_id = "m1", .applied_seq = master_.seq()});
  LinkOptions options;
  options.server.diff_on_connect = false;  // inspectors are diffed regardless
  options.client.role = Role::kInspector;
  options.client.diff_after_catch_up = false;
  Link link(&master_, &inspector, &rng_, options);
  link.Start();
  ASSERT_TRUE(link.RunUntilQuiet());
  EXPECT_EQ(link.stats().resumes, 0);
  EXPECT_EQ(link.stats().syncs, 1);
  EXPECT_EQ(inspector.data(), master_.data());
}

// ---- writer ----

class WriterTest : public RolesTest {
 protected:
  // A master session whose write hook commits into master_.
  std::unique_ptr<ServerSession> Server(bool takes_writers, const Authenticator* auth = nullptr) {
    ServerOptions options = master_.Options();
    options.authenticator = auth;
    if (max_frame_ != 0) options.max_frame = max_frame_;
    MasterHooks hooks = master_.Hooks(&rng_);
    if (takes_writers) {
      hooks.write = [this](const std::vector<Op>& ops, uint64_t* seq) {
        if (fail_writes_ || (!ops.empty() && ops[0].key == "fails")) {
          return Status::IOError("disk full");
        }
        master_.Write(ops);
        *seq = master_.seq();
        return Status::OK();
      };
    }
    hooks_ = hooks;
    return std::make_unique<ServerSession>(options, hooks);
  }

  WriterSession Writer(const Authenticator* auth = nullptr) {
    return WriterSession(WriterOptions{.authenticator = auth},
                         WriterHooks{.random_bytes = [this](uint8_t* out, size_t n) {
                           for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(rng_());
                         }});
  }

  // Moves bytes both ways until neither side has anything to say, the
  // server's writes committed as it asks.
  void Exchange(ServerSession& server, WriterSession& writer) {
    for (int round = 0; round < 100; ++round) {
      std::string to_master = writer.TakeOutput();
      if (!to_master.empty()) server.OnBytes(to_master);
      bool served = ServeDbRequestsNow(server, hooks_);
      std::string to_writer = server.TakeOutput();
      if (!to_writer.empty()) writer.OnBytes(to_writer);
      if (to_master.empty() && to_writer.empty() && !served) return;
    }
    FAIL() << "the sessions did not settle";
  }

  static std::vector<WriteAck> Acks(WriterSession& writer) {
    std::vector<WriteAck> acks;
    while (auto ack = writer.PollAck()) acks.push_back(*ack);
    return acks;
  }

  bool fail_writes_ = false;
  size_t max_frame_ = 0;  // 0: the default
  MasterHooks hooks_;     // the last Server's
};

TEST_F(WriterTest, WritesAreCommittedInOrderAndAcknowledged) {
  auto server = Server(true);
  WriterSession writer = Writer();
  writer.Start();
  // Submitted before the Welcome: they wait for it.
  EXPECT_EQ(writer.Submit({Op{OpKind::kPut, 0, "a", "1"}, Op{OpKind::kPut, 0, "b", "2"}}), 1u);
  EXPECT_EQ(writer.Submit({Op{OpKind::kDelete, 0, "a", ""}}), 2u);
  EXPECT_EQ(writer.in_flight(), 2u);
  Exchange(*server, writer);
  ASSERT_TRUE(writer.ready()) << writer.error().ToString();
  EXPECT_EQ(writer.Submit({Op{OpKind::kPut, 0, "c", "3"}}), 3u);
  Exchange(*server, writer);

  std::vector<WriteAck> acks = Acks(writer);
  ASSERT_EQ(acks.size(), 3u);
  for (size_t i = 0; i < acks.size(); ++i) {
    EXPECT_EQ(acks[i].id, i + 1);
    EXPECT_TRUE(acks[i].error.empty()) << acks[i].error;
  }
  EXPECT_LT(acks[0].seq, acks[1].seq);
  EXPECT_LT(acks[1].seq, acks[2].seq);
  EXPECT_EQ(acks[2].seq, master_.seq());
  EXPECT_EQ(writer.in_flight(), 0u);
  EXPECT_EQ(master_.data(), (testing::KeyValueMap{{{0, "b"}, "2"}, {{0, "c"}, "3"}}));
  EXPECT_FALSE(server->closed());
  EXPECT_EQ(writer.families(), master_.Options().families);
}

TEST_F(WriterTest, WriterGetsNoStreamAndNoDiff) {
  auto server = Server(true);
  WriterSession writer = Writer();
  writer.Start();
  Exchange(*server, writer);
  ASSERT_TRUE(writer.ready());
  server->OnBatch(master_.Write({Op{OpKind::kPut, 0, "k", "v"}}));
  server->RequestSync();
  EXPECT_TRUE(server->TakeOutput().empty());
  EXPECT_FALSE(server->closed());
}

TEST_F(WriterTest, MasterThatTakesNoWritersRefusesThem) {
  auto server = Server(false);
  WriterSession writer = Writer();
  writer.Start();
  writer.Submit({Op{OpKind::kPut, 0, "a", "1"}});
  Exchange(*server, writer);
  EXPECT_TRUE(server->closed());
  ASSERT_TRUE(writer.closed());
  EXPECT_NE(writer.error().ToString().find("does not accept writers"), std::string::npos)
      << writer.error().ToString();
  EXPECT_TRUE(master_.data().empty());
}

TEST_F(WriterTest, WrongSecretIsRefusedBeforeAnyWrite) {
  FakeAuthenticator master_secret("right"), writer_secret("wrong");
  auto server = Server(true, &master_secret);
  WriterSession writer = Writer(&writer_secret);
  writer.Start();
  writer.Submit({Op{OpKind::kPut, 0, "a", "1"}});
  Exchange(*server, writer);
  EXPECT_TRUE(writer.closed());
  EXPECT_TRUE(server->closed());
  EXPECT_TRUE(master_.data().empty());
}

TEST_F(WriterTest, RightSecretWrites) {
  FakeAuthenticator secret("right");
  auto server = Server(true, &secret);
  WriterSession writer = Writer(&secret);
  writer.Start();
  writer.Submit({Op{OpKind::kPut, 0, "a", "1"}});
  Exchange(*server, writer);
  EXPECT_EQ(Acks(writer).size(), 1u);
  EXPECT_EQ(master_.data().size(), 1u);
}

// A refused write refuses the writes after it in the session too: a writer
// keeps several in flight, and those sent before it heard of the failure must
// not be committed behind it (sdiff-ldb's load promises that the acknowledged
// writes are committed and the later ones are not).
TEST_F(WriterTest, BadWriteIsRefusedAndSoAreTheWritesAfterIt) {
  auto server = Server(true);
  WriterSession writer = Writer();
  writer.Start();
  Exchange(*server, writer);
  writer.Submit({Op{OpKind::kPut, 9, "a", "1"}});  // no family has tag 9
  Exchange(*server, writer);
  writer.Submit({Op{OpKind::kPut, 0, "c", "1"}});
  Exchange(*server, writer);

  std::vector<WriteAck> acks = Acks(writer);
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_NE(acks[0].error.find("tag 9"), std::string::npos) << acks[0].error;
  EXPECT_EQ(acks[0].seq, 0u);
  EXPECT_NE(acks[1].error.find("write 1"), std::string::npos) << acks[1].error;
  EXPECT_EQ(acks[1].seq, 0u);
  EXPECT_TRUE(master_.data().empty());
  EXPECT_TRUE(writer.ready());
  EXPECT_FALSE(server->closed());
}

TEST_F(WriterTest, WritesInFlightBehindAFailedOneAreNotCommitted) {
  auto server = Server(true);
  WriterSession writer = Writer();
  writer.Start();
  Exchange(*server, writer);
  writer.Submit({Op{OpKind::kPut, 0, "a", "1"}});
  writer.Submit({Op{OpKind::kPut, 0, "fails", "1"}});
  writer.Submit({Op{OpKind::kPut, 0, "b", "1"}});  // sent before the failure is known
  Exchange(*server, writer);

  std::vector<WriteAck> acks = Acks(writer);
  ASSERT_EQ(acks.size(), 3u);
  EXPECT_TRUE(acks[0].error.empty()) << acks[0].error;
  EXPECT_NE(acks[1].error.find("disk full"), std::string::npos) << acks[1].error;
  EXPECT_NE(acks[2].error.find("write 2"), std::string::npos) << acks[2].error;
  EXPECT_EQ(master_.data(), (testing::KeyValueMap{{{0, "a"}, "1"}}));
}

TEST_F(WriterTest, WriterAnswersPings) {
  auto server = Server(true);
  WriterSession writer = Writer();
  writer.Start();
  Exchange(*server, writer);
  server->OnTick(0);
  server->OnTick(5000);  // past the ping interval: the master pings
  Exchange(*server, writer);
  server->OnTick(16000);  // the writer's pong kept the session alive
  EXPECT_FALSE(server->closed()) << server->error().ToString();
  EXPECT_TRUE(writer.ready()) << writer.error().ToString();
}

// The session commits a writer's writes one at a time, each as a request to
// its embedder, and acknowledges them in order as the answers come. Those
// queued behind reach max_frame bytes: the embedder stops reading the peer.
TEST_F(WriterTest, WritesAreCommittedOneAtATimeAndAQueueOfAFrameStopsTheReading) {
  max_frame_ = 4096;
  auto server = Server(true);
  WriterSession writer = Writer();
  writer.Start();
  Exchange(*server, writer);
  ASSERT_TRUE(writer.ready());
  for (uint64_t id = 1; id <= 4; ++id) {
    writer.Submit({Op{OpKind::kPut, 0, "k" + std::to_string(id), std::string(1500, 'v')}});
  }
  server->OnBytes(writer.TakeOutput());
  EXPECT_FALSE(server->wants_input()) << "three writes of 1.5 KB queued behind the first";
  for (uint64_t id = 1; id <= 4; ++id) {
    SCOPED_TRACE(id);
    EXPECT_TRUE(server->TakeOutput().empty()) << "no ack before the commit";
    std::optional<DbRequest> commit = server->PollDbRequest();
    ASSERT_TRUE(commit.has_value());
    EXPECT_EQ(commit->kind, DbRequest::Kind::kCommitWrite);
    ASSERT_EQ(commit->ops.size(), 1u);
    EXPECT_EQ(commit->ops[0].key, "k" + std::to_string(id));
    EXPECT_FALSE(server->PollDbRequest().has_value()) << "one write at a time";
    EXPECT_EQ(master_.seq(), id - 1);
    server->OnDbAnswer(ServeDbRequest(hooks_, std::move(*commit)));
    EXPECT_TRUE(server->wants_input());
    EXPECT_EQ(master_.seq(), id);
    writer.OnBytes(server->TakeOutput());
    std::vector<WriteAck> acks = Acks(writer);
    ASSERT_EQ(acks.size(), 1u);
    EXPECT_EQ(acks[0].id, id);
    EXPECT_EQ(acks[0].seq, id);
  }
  EXPECT_TRUE(server->idle());
}

// A master that answers Pings but never acknowledges a write must not hold
// the writer (sdiff-ldb put or load) forever.
TEST_F(WriterTest, WriteNeverAcknowledgedTimesOut) {
  auto server = Server(true);
  WriterSession writer = Writer();
  writer.OnTick(0);
  writer.Start();
  Exchange(*server, writer);
  ASSERT_TRUE(writer.ready());
  writer.Submit({Op{OpKind::kPut, 0, "a", "1"}});
  writer.TakeOutput();  // lost on the way: no ack will come
  for (int64_t now = 1000; now <= 30000 && !writer.closed(); now += 1000) {
    std::string ping;
    wire::AppendFrame(Ping{master_.seq(), static_cast<uint64_t>(now)}, &ping);
    writer.OnTick(now);
    writer.OnBytes(ping);
  }
  ASSERT_TRUE(writer.closed());
  EXPECT_NE(writer.error().ToString().find("WriteAck"), std::string::npos)
      << writer.error().ToString();
}

// A follower (or inspector) that sends a Write breaks the protocol.
TEST_F(WriterTest, WriteFromAFollowerClosesTheSession) {
  auto server = Server(true);
  std::string frames;
  Hello hello{.min_version = wire::kProtocolVersion,
              .max_version = wire::kProtocolVersion,
              .role = Role::kFollower,
              .client_nonce = std::string(32, 'n')};
  wire::AppendFrame(hello, &frames);
  wire::AppendFrame(Auth{}, &frames);
  wire::AppendFrame(Write{.id = 1, .ops = {Op{OpKind::kPut, 0, "a", "1"}}}, &frames);
  server->OnBytes(frames);
  EXPECT_TRUE(server->closed());
  EXPECT_TRUE(master_.data().empty());
}

// ---- auditor ----

class AuditorTest : public RolesTest {
 protected:
  // A master session that audits on demand (or refuses auditors). Its hook
  // only counts: the session must leave running it to the embedder.
  std::unique_ptr<ServerSession> Server(bool audits, const Authenticator* auth = nullptr) {
    ServerOptions options = master_.Options();
    options.authenticator = auth;
    MasterHooks hooks = master_.Hooks(&rng_);
    if (audits) {
      hooks.audit = [this](AuditReport*) {
        ++hook_calls_;
        return Status::OK();
      };
    }
    return std::make_unique<ServerSession>(options, hooks);
  }

  AuditSession Auditor(const Authenticator* auth = nullptr) {
    return AuditSession(AuditorOptions{.authenticator = auth},
                        AuditorHooks{.random_bytes = [this](uint8_t* out, size_t n) {
                          for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(rng_());
                        }});
  }

  static void Exchange(ServerSession& server, AuditSession& auditor) {
    for (int round = 0; round < 100; ++round) {
      std::string to_master = auditor.TakeOutput();
      if (!to_master.empty()) server.OnBytes(to_master);
      std::string to_auditor = server.TakeOutput();
      if (!to_auditor.empty()) auditor.OnBytes(to_auditor);
      if (to_master.empty() && to_auditor.empty()) return;
    }
    FAIL() << "the sessions did not settle";
  }

  // The kRunAudit events the session emitted (and the last one's sequence).
  static int AuditsAskedFor(ServerSession& server, uint64_t* seq = nullptr) {
    int n = 0;
    while (auto event = server.PollEvent()) {
      if (event->kind != ServerEvent::Kind::kRunAudit) continue;
      ++n;
      if (seq != nullptr) *seq = event->seq;
    }
    return n;
  }

  int hook_calls_ = 0;
};

TEST_F(AuditorTest, AuditorGetsTheReportOfTheAuditTheEmbedderRan) {
  WriteKeys(0, 5);
  auto server = Server(true);
  AuditSession auditor = Auditor();
  auditor.Start();
  Exchange(*server, auditor);
  uint64_t seq = 0;
  ASSERT_EQ(AuditsAskedFor(*server, &seq), 1);
  EXPECT_EQ(seq, master_.seq());
  EXPECT_EQ(hook_calls_, 0);  // the embedder runs it, off its I/O thread
  EXPECT_FALSE(auditor.done());
  EXPECT_FALSE(server->closed());
  EXPECT_EQ(auditor.master_id(), "m1");

  AuditReport report{.seq = master_.seq(),
                     .keys = 5,
                     .mismatches = 2,
                     .examples = {"default:key1", "default:key\\x00"},
                     .micros = 1500,
                     .error = ""};
  server->OnAuditDone(Status::OK(), report);
  Exchange(*server, auditor);
  ASSERT_TRUE(auditor.done()) << auditor.error().ToString();
  EXPECT_TRUE(auditor.error().ok());
  EXPECT_EQ(auditor.report(), report);
  // The session ends itself, without error: the auditor got what it came for.
  EXPECT_TRUE(server->closed());
  EXPECT_TRUE(server->error().ok()) << server->error().ToString();
  EXPECT_EQ(AuditsAskedFor(*server), 0);
}

TEST_F(AuditorTest, FailedAuditIsTheReportsError) {
  auto server = Server(true);
  AuditSession auditor = Auditor();
  auditor.Start();
  Exchange(*server, auditor);
  ASSERT_EQ(AuditsAskedFor(*server), 1);
  server->OnAuditDone(Status::Aborted("the scan was cancelled"),
                      AuditReport{.seq = 9, .keys = 3, .examples = {"half-done"}});
  Exchange(*server, auditor);
  ASSERT_TRUE(auditor.done());
  ASSERT_TRUE(auditor.report().has_value());
  EXPECT_NE(auditor.report()->error.find("the scan was cancelled"), std::string::npos)
      << auditor.report()->error;
  EXPECT_EQ(auditor.report()->keys, 0u);  // nothing of a failed audit is reported as found
  EXPECT_TRUE(auditor.report()->examples.empty());
}

TEST_F(AuditorTest, ReportIsCutToTheWireLimits) {
  auto server = Server(true);
  AuditSession auditor = Auditor();
  auditor.Start();
  Exchange(*server, auditor);
  ASSERT_EQ(AuditsAskedFor(*server), 1);
  AuditReport report;
  report.mismatches = 100;
  report.examples.assign(wire::kMaxAuditExamples + 4,
                         std::string(wire::kMaxAuditExampleBytes + 10, 'k'));
  server->OnAuditDone(Status::OK(), report);
  Exchange(*server, auditor);
  ASSERT_TRUE(auditor.done()) << auditor.error().ToString();
  ASSERT_EQ(auditor.report()->examples.size(), wire::kMaxAuditExamples);
  EXPECT_EQ(auditor.report()->examples[0].size(), wire::kMaxAuditExampleBytes);
  EXPECT_EQ(auditor.report()->mismatches, 100u);
}

TEST_F(AuditorTest, MasterWithoutTheHookRefusesAuditors) {
  auto server = Server(false);
  AuditSession auditor = Auditor();
  auditor.Start();
  Exchange(*server, auditor);
  EXPECT_TRUE(server->closed());
  EXPECT_EQ(AuditsAskedFor(*server), 0);
  ASSERT_TRUE(auditor.closed());
  EXPECT_FALSE(auditor.done());
  EXPECT_NE(auditor.error().ToString().find("does not audit on demand"), std::string::npos)
      << auditor.error().ToString();
}

TEST_F(AuditorTest, WrongSecretIsRefusedBeforeTheAudit) {
  FakeAuthenticator master_secret("right"), auditor_secret("wrong");
  auto server = Server(true, &master_secret);
  AuditSession auditor = Auditor(&auditor_secret);
  auditor.Start();
  Exchange(*server, auditor);
  EXPECT_TRUE(auditor.closed());
  EXPECT_FALSE(auditor.error().ok());
  EXPECT_TRUE(server->closed());
  EXPECT_EQ(AuditsAskedFor(*server), 0);
}

TEST_F(AuditorTest, NoProofIsRefusedWhereTheMasterHasASecret) {
  FakeAuthenticator master_secret("right");
  auto server = Server(true, &master_secret);
  AuditSession auditor = Auditor();  // no secret: an empty proof
  auditor.Start();
  Exchange(*server, auditor);
  EXPECT_TRUE(server->closed());
  EXPECT_NE(server->error().ToString().find("authentication required"), std::string::npos)
      << server->error().ToString();
  EXPECT_TRUE(auditor.closed());
  EXPECT_EQ(AuditsAskedFor(*server), 0);
}

TEST_F(AuditorTest, RightSecretIsAudited) {
  FakeAuthenticator secret("right");
  auto server = Server(true, &secret);
  AuditSession auditor = Auditor(&secret);
  auditor.Start();
  Exchange(*server, auditor);
  EXPECT_EQ(AuditsAskedFor(*server), 1);
  server->OnAuditDone(Status::OK(), AuditReport{.keys = 7});
  Exchange(*server, auditor);
  ASSERT_TRUE(auditor.done()) << auditor.error().ToString();
  EXPECT_EQ(auditor.report()->keys, 7u);
}

// An audit of a large database takes longer than the idle timeout: the
// master's Pings and the auditor's Pongs keep both sides waiting.
TEST_F(AuditorTest, LongAuditKeepsTheConnectionAlive) {
  auto server = Server(true);
  AuditSession auditor = Auditor();
  server->OnTick(0);
  auditor.OnTick(0);
  auditor.Start();
  Exchange(*server, auditor);
  ASSERT_EQ(AuditsAskedFor(*server), 1);
  for (int64_t now = 1000; now <= 60000; now += 1000) {
    server->OnTick(now);
    auditor.OnTick(now);
    Exchange(*server, auditor);
  }
  ASSERT_FALSE(server->closed()) << server->error().ToString();
  ASSERT_FALSE(auditor.closed()) << auditor.error().ToString();
  server->OnAuditDone(Status::OK(), AuditReport{});
  Exchange(*server, auditor);
  EXPECT_TRUE(auditor.done());
}

TEST_F(AuditorTest, SilentMasterTimesOut) {
  auto server = Server(true);
  AuditSession auditor = Auditor();
  auditor.OnTick(0);
  auditor.Start();
  Exchange(*server, auditor);
  auditor.OnTick(16000);  // no Ping came
  ASSERT_TRUE(auditor.closed());
  EXPECT_NE(auditor.error().ToString().find("nothing from the master"), std::string::npos)
      << auditor.error().ToString();
}

// An auditor takes part in no diff and writes nothing.
TEST_F(AuditorTest, AuditorMaySendOnlyPongs) {
  for (const Message& extra : {Message{SyncRequest{}}, Message{Write{.id = 1}},
                               Message{SyncRoot{.sync_id = 1, .equal = true}}}) {
    auto server = Server(true);
    std::string frames;
    Hello hello{.min_version = wire::kProtocolVersion,
                .max_version = wire::kProtocolVersion,
                .role = Role::kAuditor,
                .client_nonce = std::string(32, 'n')};
    wire::AppendFrame(hello, &frames);
    wire::AppendFrame(Auth{}, &frames);
    wire::AppendFrame(Pong{}, &frames);
    server->OnBytes(frames);
    ASSERT_FALSE(server->closed()) << server->error().ToString();
    frames.clear();
    wire::AppendFrame(extra, &frames);
    server->OnBytes(frames);
    EXPECT_TRUE(server->closed()) << MessageName(extra);
    EXPECT_FALSE(server->error().ok()) << MessageName(extra);
    // The audit asked for is answered no more.
    server->TakeOutput();
    server->OnAuditDone(Status::OK(), AuditReport{});
    EXPECT_TRUE(server->TakeOutput().empty()) << MessageName(extra);
  }
}

// A report before the Welcome, or anything but a Ping or the report after
// it, breaks the protocol.
TEST_F(AuditorTest, UnexpectedFrameClosesTheAuditor) {
  AuditSession auditor = Auditor();
  auditor.Start();
  std::string frame;
  wire::AppendFrame(AuditReport{}, &frame);
  auditor.OnBytes(frame);
  ASSERT_TRUE(auditor.closed());
  EXPECT_FALSE(auditor.done());
  EXPECT_NE(auditor.error().ToString().find("unexpected AuditReport"), std::string::npos)
      << auditor.error().ToString();
}

}  // namespace
}  // namespace sdiff
