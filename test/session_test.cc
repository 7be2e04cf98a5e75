// Unit tests of the two protocol state machines, one transition at a time:
// ServerSession and ClientSession are driven directly with hand-built frames,
// and what they send back is decoded and checked. The last tests join the two
// over engine/testing/link.h. simulation_test.cc covers random schedules.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/authenticator.h"
#include "engine/client_session.h"
#include "engine/merkle_tree.h"
#include "engine/messages.h"
#include "engine/server_session.h"
#include "engine/sync.h"
#include "engine/testing/fake_authenticator.h"
#include "engine/testing/link.h"
#include "engine/testing/memory_replica.h"
#include "engine/testing/serve_db.h"
#include "engine/wire.h"

// Messages are built with designated initializers that name only the fields
// a test is about; the others keep their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace sdiff {

// Readable failure messages (found by ADL; internal linkage, so no clash).
[[maybe_unused]] static void PrintTo(const FollowerState& s, std::ostream* os) {
  *os << "{master_id=\"" << s.master_id << "\" applied_seq=" << s.applied_seq
      << " bootstrapping=" << s.bootstrapping << " bootstrap_family=" << s.bootstrap_family
      << " bootstrap_key=\"" << s.bootstrap_key << "\"}";
}
[[maybe_unused]] static void PrintTo(const Op& op, std::ostream* os) {
  *os << "{kind=" << static_cast<int>(op.kind) << " family=" << op.family << " key=\"" << op.key
      << "\" value=\"" << op.value << "\"}";
}

namespace testing {
namespace {

constexpr size_t kNonceBytes = 32;

std::string Frame(const Message& message) {
  std::string bytes;
  wire::AppendFrame(message, &bytes);
  return bytes;
}

// Every frame in `bytes`, which must be whole, well-formed frames.
std::vector<Message> Decode(std::string_view bytes) {
  wire::FrameReader reader;
  reader.Append(bytes);
  std::vector<Message> out;
  for (;;) {
    Message message;
    bool got = false;
    Status s = reader.Next(&message, &got);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok() || !got) break;
    out.push_back(std::move(message));
  }
  EXPECT_EQ(reader.buffered(), 0u) << "a partial frame was sent";
  return out;
}

// "Challenge Reject": the message names, for compact assertions on a sequence.
std::string Names(const std::vector<Message>& messages) {
  std::string names;
  for (const Message& m : messages) {
    if (!names.empty()) names += ' ';
    names += MessageName(m);
  }
  return names;
}

template <typename T>
std::vector<T> All(const std::vector<Message>& messages) {
  std::vector<T> out;
  for (const Message& m : messages) {
    if (const T* t = std::get_if<T>(&m)) out.push_back(*t);
  }
  return out;
}

// The one message of type T, or a default one and a test failure.
template <typename T>
T One(const std::vector<Message>& messages) {
  std::vector<T> all = All<T>(messages);
  EXPECT_EQ(all.size(), 1u) << "in: " << Names(messages);
  return all.empty() ? T{} : all.front();
}

// The Reject that must close `messages`.
Reject LastReject(const std::vector<Message>& messages) {
  if (messages.empty() || !std::holds_alternative<Reject>(messages.back())) {
    ADD_FAILURE() << "no closing Reject in: " << Names(messages);
    return Reject{};
  }
  return std::get<Reject>(messages.back());
}

Op Put(std::string key, std::string value, FamilyTag family = 0) {
  return Op{OpKind::kPut, family, std::move(key), std::move(value)};
}
Op Del(std::string key, FamilyTag family = 0) {
  return Op{OpKind::kDelete, family, std::move(key), {}};
}
Op DelRange(std::string begin, std::string end, FamilyTag family = 0) {
  return Op{OpKind::kDeleteRange, family, std::move(begin), std::move(end)};
}

std::optional<std::string> ValueOf(const KeyValueMap& data, const std::string& key,
                                   FamilyTag family = 0) {
  auto it = data.find({family, key});
  if (it == data.end()) return std::nullopt;
  return it->second;
}

// ---------------------------------------------------------------------------
// ServerSession

class ServerSessionTest : public ::testing::Test {
 protected:
  ServerSessionTest() : master_("m1") { options_ = master_.Options(); }

  ServerSession& session() {
    if (!session_) {
      hooks_ = master_.Hooks(&rng_);
      session_ = std::make_unique<ServerSession>(options_, hooks_);
    }
    return *session_;
  }
  void NewSession() { session_.reset(); }

  // Does the database work the session asked for, at once.
  bool Serve() { return ServeDbRequestsNow(session(), hooks_); }
  void Feed(const Message& message) {
    session().OnBytes(Frame(message));
    Serve();
  }
  // What the session sends, its database work done as it asks.
  std::string Take() {
    return testing::TakeOutputServingDb(session(), hooks_, options_.bulk_frame_bytes);
  }
  std::vector<Message> Out() { return Decode(Take()); }
  // Starts a diff on a streaming session and answers with an empty
  // follower's root, without serving anything: the session goes on to
  // repair every key, and has read none yet.
  void DiffWithAnEmptyFollower() {
    session().StartSync(master_.tree().Snapshot());
    SyncStart start = One<SyncStart>(Out());
    session().OnBytes(Frame(SyncRoot{.sync_id = start.sync_id,
                                     .root = MerkleTree().root_hash(),
                                     .top = NodeSummary{},
                                     .hash_bytes = start.hash_bytes}));
  }
  std::vector<ServerEvent> Events() {
    std::vector<ServerEvent> events;
    while (auto e = session().PollEvent()) events.push_back(std::move(*e));
    return events;
  }

  static Hello FollowerHello() {
    return Hello{.min_version = wire::kProtocolVersion,
                 .max_version = wire::kProtocolVersion,
                 .role = Role::kFollower,
                 .client_nonce = std::string(kNonceBytes, 'c')};
  }
  static Hello ResumeHello(std::string master_id, uint64_t applied_seq, uint64_t key_count) {
    Hello hello = FollowerHello();
    hello.master_id = std::move(master_id);
    hello.applied_seq = applied_seq;
    hello.key_count = key_count;
    return hello;
  }

  // Hello, then an Auth that proves the secret if the master has one; returns
  // what the master sent after the Auth (the Welcome first).
  std::vector<Message> Connect(const Hello& hello = FollowerHello()) {
    Feed(hello);
    Challenge challenge = One<Challenge>(Out());
    Auth auth;
    if (options_.authenticator != nullptr) {
      auth.client_proof = options_.authenticator->Sign(
          FollowerProofMessage(hello.client_nonce, challenge.server_nonce));
    }
    Feed(auth);
    std::vector<Message> out = Out();
    EXPECT_FALSE(out.empty() || !std::holds_alternative<Welcome>(out.front()))
        << "expected a Welcome first, got: " << Names(out);
    return out;
  }
  Welcome ConnectWelcome(const Hello& hello = FollowerHello()) {
    return One<Welcome>(Connect(hello));
  }

  // Commits one single-put batch per key: k0=v0, k1=v1, ...
  void WriteKeys(int n) {
    for (int i = 0; i < n; ++i) {
      master_.Write({Put("k" + std::to_string(i), "v" + std::to_string(i))});
    }
  }

  // Expects the session to have closed on its own side: `out`, what it sent
  // last, ends with a Reject carrying `code`, and a kClosed event says why.
  void ExpectRejected(const std::vector<Message>& out, RejectCode code) {
    EXPECT_TRUE(session().closed());
    EXPECT_EQ(LastReject(out).code, code);
    std::vector<ServerEvent> events = Events();
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().kind, ServerEvent::Kind::kClosed);
    EXPECT_FALSE(events.back().status.ok());
  }

  // Plays the follower's half of a diff with `tree`: answers the SyncStart
  // in `out` and every NodesRequest after it. Returns the master's messages
  // after the last answer (Repair and SyncDone frames).
  std::vector<Message> AnswerDiff(const TreeView& tree, std::vector<Message> out) {
    SyncStart start = One<SyncStart>(out);
    SyncRoot root{.sync_id = start.sync_id,
                  .root = tree.root_hash(),
                  .key_count = tree.size(),
                  .equal = tree.root_hash() == start.root,
                  .hash_bytes = start.hash_bytes};
    if (!root.equal) root.top = Summarize(tree, "", start.salt, start.hash_bytes);
    Feed(root);
    for (int level = 0; level < 20; ++level) {
      out = Out();
      std::vector<NodesRequest> requests = All<NodesRequest>(out);
      if (requests.empty()) return out;
      for (const NodesRequest& request : requests) {
        Nodes nodes{.sync_id = request.sync_id, .hash_bytes = start.hash_bytes};
        for (const std::string& path : request.paths) {
          nodes.summaries.push_back(Summarize(tree, path, start.salt, start.hash_bytes));
        }
        Feed(nodes);
      }
    }
    ADD_FAILURE() << "the diff never stopped asking";
    return {};
  }

  std::mt19937_64 rng_{20240601};
  MemoryMaster master_;
  ServerOptions options_;
  FakeAuthenticator authenticator_{"secret"};
  MasterHooks hooks_;  // the session's, to serve its database requests
  std::unique_ptr<ServerSession> session_;
};

TEST_F(ServerSessionTest, HelloIsAnsweredWithChallengeWithoutProofWhenNoSecret) {
  Feed(FollowerHello());
  std::vector<Message> out = Out();
  ASSERT_EQ(Names(out), "Challenge");
  const Challenge& challenge = std::get<Challenge>(out[0]);
  EXPECT_EQ(challenge.version, wire::kProtocolVersion);
  EXPECT_EQ(challenge.server_nonce.size(), kNonceBytes);
  EXPECT_NE(challenge.server_nonce, std::string(kNonceBytes, '\0'));
  EXPECT_TRUE(challenge.server_proof.empty());
  EXPECT_FALSE(session().closed());
  EXPECT_FALSE(session().streaming());
  EXPECT_TRUE(Events().empty());
}

TEST_F(ServerSessionTest, HelloIsAnsweredWithChallengeProvingTheSecret) {
  options_.authenticator = &authenticator_;
  Hello hello = FollowerHello();
  Feed(hello);
  Challenge challenge = One<Challenge>(Out());
  EXPECT_EQ(challenge.version, wire::kProtocolVersion);
  ASSERT_EQ(challenge.server_nonce.size(), kNonceBytes);
  EXPECT_EQ(challenge.server_proof,
            authenticator_.Sign(MasterProofMessage(hello.client_nonce, challenge.server_nonce)));
}

TEST_F(ServerSessionTest, HelloWithoutCommonVersionIsRejected) {
  Hello hello = FollowerHello();
  hello.min_version = wire::kProtocolVersion + 1;
  hello.max_version = wire::kProtocolVersion + 3;
  Feed(hello);
  std::vector<Message> out = Out();
  EXPECT_EQ(Names(out), "Reject");
  ExpectRejected(out, RejectCode::kVersion);
  EXPECT_TRUE(session().error().IsProtocolError());
  EXPECT_NE(session().error().message().find("no common protocol version"), std::string::npos)
      << session().error().message();
  EXPECT_NE(LastReject(out).reason.find("no common protocol version"), std::string::npos);
}

TEST_F(ServerSessionTest, HelloSpeakingOnlyOlderVersionsIsRejected) {
  Hello hello = FollowerHello();
  hello.min_version = 0;
  hello.max_version = wire::kProtocolVersion - 1;
  Feed(hello);
  ExpectRejected(Out(), RejectCode::kVersion);
}

TEST_F(ServerSessionTest, HelloWithNonceNot32BytesIsRejected) {
  for (size_t size : {size_t{0}, size_t{31}, size_t{33}}) {
    SCOPED_TRACE(size);
    NewSession();
    Hello hello = FollowerHello();
    hello.client_nonce.assign(size, 'n');
    Feed(hello);
    std::vector<Message> out = Out();
    EXPECT_EQ(Names(out), "Reject");
    EXPECT_EQ(LastReject(out).code, RejectCode::kProtocol);
    EXPECT_TRUE(session().closed());
    EXPECT_TRUE(session().error().IsProtocolError());
  }
}

TEST_F(ServerSessionTest, WriterRoleIsRejected) {
  Hello hello = FollowerHello();
  hello.role = Role::kWriter;
  Feed(hello);
  std::vector<Message> out = Out();
  EXPECT_EQ(Names(out), "Reject");
  EXPECT_EQ(LastReject(out).code, RejectCode::kRole);
  EXPECT_TRUE(session().closed());
}

TEST_F(ServerSessionTest, InspectorRoleIsServed) {
  Hello hello = FollowerHello();
  hello.role = Role::kInspector;
  Welcome welcome = ConnectWelcome(hello);
  EXPECT_TRUE(session().streaming());
  EXPECT_EQ(session().peer_role(), Role::kInspector);
  EXPECT_EQ(welcome.mode, StartMode::kDiff);
}

TEST_F(ServerSessionTest, WrongSecretIsRejectedBeforeAnyData) {
  options_.authenticator = &authenticator_;
  WriteKeys(3);
  Hello hello = FollowerHello();
  Feed(hello);
  Challenge challenge = One<Challenge>(Out());
  FakeAuthenticator wrong("not the secret");
  Feed(Auth{wrong.Sign(FollowerProofMessage(hello.client_nonce, challenge.server_nonce))});
  // A batch committed now must not reach an unauthenticated peer either.
  session().OnBatch(master_.Write({Put("late", "x")}));
  std::vector<Message> out = Out();
  EXPECT_EQ(Names(out), "Reject");
  EXPECT_EQ(LastReject(out).code, RejectCode::kAuth);
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsProtocolError());
  EXPECT_NE(session().error().message().find("wrong secret"), std::string::npos);
  for (const ServerEvent& e : Events()) EXPECT_EQ(e.kind, ServerEvent::Kind::kClosed);
}

TEST_F(ServerSessionTest, EmptyProofIsRejectedWhenSecretRequired) {
  options_.authenticator = &authenticator_;
  Feed(FollowerHello());
  Out();
  Feed(Auth{});
  std::vector<Message> out = Out();
  EXPECT_EQ(Names(out), "Reject");
  EXPECT_EQ(LastReject(out).code, RejectCode::kAuth);
  EXPECT_TRUE(session().closed());
  EXPECT_NE(session().error().message().find("authentication required"), std::string::npos);
}

TEST_F(ServerSessionTest, ProofForAnotherRoleIsRejected) {
  // The master's own proof, replayed as the follower's, must not pass.
  options_.authenticator = &authenticator_;
  Feed(FollowerHello());
  Challenge challenge = One<Challenge>(Out());
  Feed(Auth{challenge.server_proof});
  EXPECT_EQ(LastReject(Out()).code, RejectCode::kAuth);
  EXPECT_TRUE(session().closed());
}

TEST_F(ServerSessionTest, RightProofIsWelcomed) {
  options_.authenticator = &authenticator_;
  Welcome welcome = ConnectWelcome();
  EXPECT_EQ(welcome.master_id, "m1");
  EXPECT_TRUE(session().streaming());
}

TEST_F(ServerSessionTest, NoSecretAcceptsEmptyProof) {
  Feed(FollowerHello());
  Out();
  Feed(Auth{});
  EXPECT_EQ(Names(Out()), "Welcome");
  EXPECT_TRUE(session().streaming());
}

TEST_F(ServerSessionTest, SameMasterWithLoggedSequenceResumes) {
  WriteKeys(5);
  Welcome welcome = ConnectWelcome(ResumeHello("m1", 3, 3));
  EXPECT_EQ(welcome.mode, StartMode::kResume);
  EXPECT_EQ(welcome.resume_from, 4u);
  EXPECT_EQ(welcome.master_seq, 5u);
  EXPECT_EQ(welcome.master_id, "m1");
  EXPECT_EQ(welcome.families, master_.Options().families);
  std::vector<ServerEvent> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ServerEvent::Kind::kStreamFrom);
  EXPECT_EQ(events[0].seq, 4u);
  EXPECT_TRUE(session().idle());  // no diff: the follower asks once caught up
}

TEST_F(ServerSessionTest, CaughtUpFollowerResumesAtTheNextSequence) {
  WriteKeys(5);
  Welcome welcome = ConnectWelcome(ResumeHello("m1", 5, 5));
  EXPECT_EQ(welcome.mode, StartMode::kResume);
  EXPECT_EQ(welcome.resume_from, 6u);
}

TEST_F(ServerSessionTest, PurgedLogFallsBackToDiff) {
  WriteKeys(5);
  master_.PurgeLogBefore(5);
  Welcome welcome = ConnectWelcome(ResumeHello("m1", 3, 3));
  EXPECT_EQ(welcome.mode, StartMode::kDiff);
  EXPECT_EQ(welcome.resume_from, 6u);
  std::vector<ServerEvent> events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, ServerEvent::Kind::kStreamFrom);
  EXPECT_EQ(events[0].seq, 6u);
  EXPECT_EQ(events[1].kind, ServerEvent::Kind::kWantSnapshot);
}

TEST_F(ServerSessionTest, ForeignMasterIdFallsBackToDiff) {
  WriteKeys(5);
  Welcome welcome = ConnectWelcome(ResumeHello("another-master", 3, 3));
  EXPECT_EQ(welcome.mode, StartMode::kDiff);
  EXPECT_EQ(welcome.master_id, "m1");
  std::vector<ServerEvent> events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].kind, ServerEvent::Kind::kWantSnapshot);
}

TEST_F(ServerSessionTest, FollowerOfAnOldMasterAtItsLineageLinkResumes) {
  // This master's history continues old-master's at old-master's 7 = our 3.
  options_.lineage = {LineageLink{"old-master", 7, 3}};
  WriteKeys(5);
  Welcome welcome = ConnectWelcome(ResumeHello("old-master", 7, 7));
  EXPECT_EQ(welcome.mode, StartMode::kResume);
  EXPECT_EQ(welcome.master_id, "m1");
  EXPECT_EQ(welcome.resume_from, 4u);
  std::vector<ServerEvent> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ServerEvent::Kind::kStreamFrom);
  EXPECT_EQ(events[0].seq, 4u);
}

TEST_F(ServerSessionTest, FollowerOfAnOldMasterElsewhereDiffs) {
  options_.lineage = {LineageLink{"old-master", 7, 3}};
  WriteKeys(5);
  // Behind the link or past it (writes this master never had): not a prefix
  // of this master's history at any sequence it knows.
  for (uint64_t applied : {6u, 8u}) {
    NewSession();
    Welcome welcome = ConnectWelcome(ResumeHello("old-master", applied, applied));
    EXPECT_EQ(welcome.mode, StartMode::kDiff) << applied;
  }
  // Our own followers are not affected by the lineage.
  NewSession();
  EXPECT_EQ(ConnectWelcome(ResumeHello("m1", 3, 3)).mode, StartMode::kResume);
}

TEST_F(ServerSessionTest, AppliedSequenceAheadOfMasterFallsBackToDiff) {
  WriteKeys(5);
  Welcome welcome = ConnectWelcome(ResumeHello("m1", 9, 9));
  EXPECT_EQ(welcome.mode, StartMode::kDiff);
  EXPECT_EQ(welcome.resume_from, 6u);
}

TEST_F(ServerSessionTest, EmptyFollowerOfBigMasterBootstraps) {
  options_.bootstrap_min_keys = 3;
  WriteKeys(3);
  std::vector<Message> out = Connect(FollowerHello());
  ASSERT_EQ(Names(out), "Welcome BootstrapChunk");
  const Welcome& welcome = std::get<Welcome>(out[0]);
  EXPECT_EQ(welcome.mode, StartMode::kBootstrap);
  EXPECT_EQ(welcome.master_seq, 3u);
  EXPECT_EQ(welcome.resume_from, 4u);
  const BootstrapChunk& chunk = std::get<BootstrapChunk>(out[1]);
  EXPECT_EQ(chunk.seq, 3u);
  EXPECT_TRUE(chunk.last);
  EXPECT_EQ(chunk.entries, (std::vector<Op>{Put("k0", "v0"), Put("k1", "v1"), Put("k2", "v2")}));
  std::vector<ServerEvent> events = Events();
  ASSERT_EQ(events.size(), 1u);  // no diff until the follower asks
  EXPECT_EQ(events[0].kind, ServerEvent::Kind::kStreamFrom);
  EXPECT_EQ(events[0].seq, 4u);
  EXPECT_TRUE(session().idle());
}

TEST_F(ServerSessionTest, EmptyFollowerOfSmallMasterIsDiffed) {
  options_.bootstrap_min_keys = 4;
  WriteKeys(3);
  EXPECT_EQ(ConnectWelcome().mode, StartMode::kDiff);
}

TEST_F(ServerSessionTest, EmptyInspectorIsDiffedNotBootstrapped) {
  options_.bootstrap_min_keys = 1;
  WriteKeys(3);
  Hello hello = FollowerHello();
  hello.role = Role::kInspector;
  EXPECT_EQ(ConnectWelcome(hello).mode, StartMode::kDiff);
}

TEST_F(ServerSessionTest, InterruptedBootstrapContinuesAfterLastKey) {
  options_.bootstrap_min_keys = 3;
  WriteKeys(4);
  Hello hello = ResumeHello("m1", 0, 2);
  hello.bootstrapping = true;
  hello.bootstrap_family = 0;
  hello.bootstrap_key = "k1";
  std::vector<Message> out = Connect(hello);
  EXPECT_EQ(One<Welcome>(out).mode, StartMode::kBootstrap);
  BootstrapChunk chunk = One<BootstrapChunk>(out);
  EXPECT_EQ(chunk.entries, (std::vector<Op>{Put("k2", "v2"), Put("k3", "v3")}));
  EXPECT_TRUE(chunk.last);
}

TEST_F(ServerSessionTest, BootstrapIsPacedOneChunkPerTakeAndDefersDiffs) {
  options_.bootstrap_min_keys = 3;
  // One entry per chunk (the entries' bytes and their decoded memory), and
  // output is taken about that much at a time: a chunk per take.
  options_.bulk_frame_bytes = sizeof(Op) + 6;  // "k10" and "v10"
  WriteKeys(30);
  Feed(FollowerHello());
  Out();
  Feed(Auth{});
  Feed(SyncRequest{});  // asked while bootstrapping: waits for the end
  std::vector<BootstrapChunk> chunks;
  int takes = 0;
  while (chunks.empty() || !chunks.back().last) {
    ASSERT_TRUE(session().wants_write());
    std::vector<BootstrapChunk> taken = All<BootstrapChunk>(Out());
    ++takes;
    chunks.insert(chunks.end(), taken.begin(), taken.end());
    if (chunks.empty() || !chunks.back().last) {
      for (const ServerEvent& e : Events()) EXPECT_NE(e.kind, ServerEvent::Kind::kWantSnapshot);
    }
  }
  ASSERT_EQ(chunks.size(), 30u);
  for (const BootstrapChunk& chunk : chunks) EXPECT_EQ(chunk.entries.size(), 1u);
  EXPECT_GE(takes, 5) << "a take holds about bulk_frame_bytes, not the whole snapshot";
  EXPECT_FALSE(session().wants_write());
  std::vector<ServerEvent> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ServerEvent::Kind::kWantSnapshot);
}

TEST_F(ServerSessionTest, MessagesBeforeHandshakeAreProtocolErrors) {
  const std::vector<Message> illegal = {
      Batch{.seq = 1, .count = 1, .ops = {Put("a", "b")}},
      Nodes{.sync_id = 1},
      SyncRoot{.sync_id = 1, .equal = true},
      SyncRequest{},
      Auth{},
      Pong{.applied_seq = 1},
      Challenge{.version = 1, .server_nonce = std::string(kNonceBytes, 's')},
      Welcome{.master_id = "m1"},
      SyncDone{.sync_id = 1},
      Ping{},
  };
  for (const Message& message : illegal) {
    SCOPED_TRACE(MessageName(message));
    NewSession();
    Feed(message);
    std::vector<Message> out = Out();
    EXPECT_EQ(Names(out), "Reject");
    EXPECT_EQ(LastReject(out).code, RejectCode::kProtocol);
    EXPECT_TRUE(session().closed());
    EXPECT_TRUE(session().error().IsProtocolError()) << session().error().ToString();
    EXPECT_NE(session().error().message().find(std::string("unexpected ") + MessageName(message)),
              std::string::npos)
        << session().error().message();
    // Once closed, a well-formed Hello changes nothing.
    Events();
    Feed(FollowerHello());
    EXPECT_TRUE(Out().empty());
    EXPECT_TRUE(Events().empty());
  }
}

TEST_F(ServerSessionTest, SecondHelloIsProtocolError) {
  Feed(FollowerHello());
  Out();
  Feed(FollowerHello());
  ExpectRejected(Out(), RejectCode::kProtocol);
  EXPECT_TRUE(session().error().IsProtocolError());
}

TEST_F(ServerSessionTest, HandshakeMessagesWhileStreamingAreProtocolErrors) {
  const std::vector<Message> illegal = {
      FollowerHello(),
      Auth{},
      Batch{.seq = 1, .count = 1},
      Welcome{},
      Challenge{.version = 1, .server_nonce = std::string(kNonceBytes, 's')},
  };
  for (const Message& message : illegal) {
    SCOPED_TRACE(MessageName(message));
    NewSession();
    ConnectWelcome();
    Events();
    Feed(message);
    ExpectRejected(Out(), RejectCode::kProtocol);
  }
}

TEST_F(ServerSessionTest, NodesWhenNoDiffAskedIsProtocolError) {
  WriteKeys(2);
  ConnectWelcome(ResumeHello("m1", 2, 2));
  Feed(Nodes{.sync_id = 0, .summaries = {NodeSummary{}}, .hash_bytes = options_.hash_bytes});
  ExpectRejected(Out(), RejectCode::kProtocol);
  EXPECT_NE(session().error().message().find("Nodes outside its diff"), std::string::npos);
}

TEST_F(ServerSessionTest, SyncRootWhenNoDiffAskedIsProtocolError) {
  WriteKeys(2);
  ConnectWelcome(ResumeHello("m1", 2, 2));
  Feed(SyncRoot{.sync_id = 0, .root = master_.tree().root_hash(), .equal = true});
  ExpectRejected(Out(), RejectCode::kProtocol);
}

TEST_F(ServerSessionTest, SyncRootWithWrongSyncIdIsProtocolError) {
  WriteKeys(2);
  ConnectWelcome();
  Events();
  session().StartSync(master_.tree().Snapshot());
  SyncStart start = One<SyncStart>(Out());
  Feed(SyncRoot{.sync_id = start.sync_id + 1, .root = start.root, .equal = true});
  ExpectRejected(Out(), RejectCode::kProtocol);
  EXPECT_NE(session().error().message().find("SyncRoot outside its diff"), std::string::npos);
}

TEST_F(ServerSessionTest, SyncRootClaimingEqualWithDifferentRootIsProtocolError) {
  WriteKeys(2);
  ConnectWelcome();
  Events();
  session().StartSync(master_.tree().Snapshot());
  SyncStart start = One<SyncStart>(Out());
  Feed(SyncRoot{.sync_id = start.sync_id, .root = Hash128{1, 2}, .equal = true});
  ExpectRejected(Out(), RejectCode::kProtocol);
  EXPECT_EQ(session().syncs_completed(), 0u);
}

TEST_F(ServerSessionTest, SyncRootWithWrongHashWidthIsProtocolError) {
  WriteKeys(2);
  ConnectWelcome();
  Events();
  session().StartSync(master_.tree().Snapshot());
  SyncStart start = One<SyncStart>(Out());
  MerkleTree empty;
  Feed(SyncRoot{.sync_id = start.sync_id,
                .root = empty.root_hash(),
                .top = NodeSummary{},
                .hash_bytes = static_cast<uint8_t>(start.hash_bytes + 1)});
  ExpectRejected(Out(), RejectCode::kProtocol);
}

TEST_F(ServerSessionTest, NodesWithWrongCountOrSyncIdIsProtocolError) {
  WriteKeys(20);
  MerkleTree follower;  // a different key set: the diff must descend
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(follower.Put(0, "f" + std::to_string(i), "x").ok());
  for (int variant = 0; variant < 2; ++variant) {
    SCOPED_TRACE(variant);
    NewSession();
    ConnectWelcome();
    Events();
    session().StartSync(master_.tree().Snapshot());
    SyncStart start = One<SyncStart>(Out());
    Feed(SyncRoot{.sync_id = start.sync_id,
                  .root = follower.root_hash(),
                  .key_count = follower.size(),
                  .top = Summarize(follower, "", start.salt, start.hash_bytes),
                  .hash_bytes = start.hash_bytes});
    NodesRequest request = One<NodesRequest>(Out());
    ASSERT_FALSE(request.paths.empty());
    Nodes nodes{.sync_id = request.sync_id, .hash_bytes = start.hash_bytes};
    for (const std::string& path : request.paths) {
      nodes.summaries.push_back(Summarize(follower, path, start.salt, start.hash_bytes));
    }
    if (variant == 0) {
      nodes.summaries.pop_back();
    } else {
      nodes.sync_id += 1;
    }
    Feed(nodes);
    ExpectRejected(Out(), RejectCode::kProtocol);
  }
}

TEST_F(ServerSessionTest, IdenticalFollowerFinishesDiffAtTheRoot) {
  WriteKeys(10);
  ConnectWelcome();
  std::vector<ServerEvent> events = Events();
  ASSERT_EQ(events.back().kind, ServerEvent::Kind::kWantSnapshot);
  session().StartSync(master_.tree().Snapshot());
  std::vector<Message> out = Out();
  SyncStart start = One<SyncStart>(out);
  EXPECT_EQ(start.sync_id, 1u);
  EXPECT_EQ(start.seq, 10u);
  EXPECT_EQ(start.hash_bytes, options_.hash_bytes);
  EXPECT_EQ(start.root, master_.tree().root_hash());
  EXPECT_EQ(start.key_count, 10u);
  out = AnswerDiff(master_.tree().Snapshot(), out);
  EXPECT_EQ(Names(out), "SyncDone");
  SyncDone done = One<SyncDone>(out);
  EXPECT_EQ(done.sync_id, 1u);
  EXPECT_EQ(done.repaired, 0u);
  EXPECT_FALSE(done.retry);
  events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ServerEvent::Kind::kSyncDone);
  EXPECT_TRUE(events[0].complete);
  EXPECT_EQ(session().last_sync_round_trips(), 1);
  EXPECT_EQ(session().syncs_completed(), 1u);
  EXPECT_TRUE(session().idle());
}

TEST_F(ServerSessionTest, DiffRepairsChangedMissingAndExtraKeys) {
  WriteKeys(40);
  MerkleTree follower;
  for (int i = 0; i < 40; ++i) {
    if (i == 9) continue;  // missing
    std::string value = i == 3 ? "stale" : "v" + std::to_string(i);
    ASSERT_TRUE(follower.Put(0, "k" + std::to_string(i), value).ok());
  }
  ASSERT_TRUE(follower.Put(0, "extra", "x").ok());
  ConnectWelcome();
  Events();
  session().StartSync(master_.tree().Snapshot());
  std::vector<Message> out = AnswerDiff(follower.Snapshot(), Out());
  EXPECT_GT(session().last_sync_round_trips(), 1);
  std::vector<Op> ops;
  std::vector<Hash128> deletes;
  for (const Repair& repair : All<Repair>(out)) {
    EXPECT_EQ(repair.sync_id, 1u);
    ops.insert(ops.end(), repair.ops.begin(), repair.ops.end());
    deletes.insert(deletes.end(), repair.delete_key_hashes.begin(), repair.delete_key_hashes.end());
  }
  std::sort(ops.begin(), ops.end(), [](const Op& a, const Op& b) { return a.key < b.key; });
  EXPECT_EQ(ops, (std::vector<Op>{Put("k3", "v3"), Put("k9", "v9")}));
  EXPECT_EQ(deletes, (std::vector<Hash128>{KeyHash(0, "extra")}));
  SyncDone done = One<SyncDone>(out);
  EXPECT_EQ(done.repaired, 3u);
  EXPECT_FALSE(done.retry);
  std::vector<ServerEvent> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ServerEvent::Kind::kSyncDone);
  EXPECT_EQ(events[0].repaired, 3u);
  EXPECT_TRUE(events[0].complete);
}

TEST_F(ServerSessionTest, RepairReadsValuesCurrentWhenSent) {
  WriteKeys(5);
  MerkleTree follower;  // empty: every key is repaired
  ConnectWelcome();
  Events();
  session().StartSync(master_.tree().Snapshot());
  SyncStart start = One<SyncStart>(Out());
  Feed(SyncRoot{.sync_id = start.sync_id,
                .root = follower.root_hash(),
                .top = NodeSummary{},
                .hash_bytes = start.hash_bytes});
  EXPECT_TRUE(session().wants_write());
  // Written after the snapshot, before the Repair is produced: the Repair
  // follows that batch in the stream, so it carries the newer value.
  const Batch& batch = master_.Write({Put("k2", "newer"), Del("k4")});
  session().OnBatch(batch);
  std::vector<Message> out = Out();
  ASSERT_EQ(Names(out), "Batch Repair SyncDone");
  std::vector<Op> ops = std::get<Repair>(out[1]).ops;
  std::sort(ops.begin(), ops.end(), [](const Op& a, const Op& b) { return a.key < b.key; });
  EXPECT_EQ(ops, (std::vector<Op>{Put("k0", "v0"), Put("k1", "v1"), Put("k2", "newer"),
                                  Put("k3", "v3"), Del("k4")}));
}

// The session never reads the database itself: a repair frame waits for the
// values it asked for, while stream batches and pings go out as usual.
TEST_F(ServerSessionTest, ARepairWaitsForItsReadWhileTheStreamAndPingsGoOn) {
  WriteKeys(3);
  ConnectWelcome();
  Events();
  session().OnTick(0);
  Out();  // the first Ping
  DiffWithAnEmptyFollower();
  EXPECT_TRUE(session().TakeOutput().empty());
  std::optional<DbRequest> read = session().PollDbRequest();
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->kind, DbRequest::Kind::kReadKeys);
  EXPECT_EQ(read->keys.size(), 3u);
  EXPECT_FALSE(session().PollDbRequest().has_value()) << "asked once";
  EXPECT_FALSE(session().wants_write()) << "nothing to send until the values come";
  EXPECT_FALSE(session().idle());

  session().OnBatch(master_.Write({Put("k9", "v9")}));
  session().OnTick(options_.ping_interval_ms);
  EXPECT_EQ(Names(Decode(session().TakeOutput())), "Batch Ping");
  EXPECT_FALSE(session().PollDbRequest().has_value());

  session().OnDbAnswer(ServeDbRequest(hooks_, std::move(*read)));
  std::vector<Message> out = Decode(session().TakeOutput());
  ASSERT_EQ(Names(out), "Repair SyncDone");
  EXPECT_EQ(std::get<Repair>(out[0]).ops.size(), 3u);
  EXPECT_TRUE(session().idle());
}

// A failed read fails the session, as the master failing (kInternal).
TEST_F(ServerSessionTest, AFailedRepairReadClosesWithAnInternalError) {
  WriteKeys(3);
  ConnectWelcome();
  Events();
  DiffWithAnEmptyFollower();
  EXPECT_TRUE(session().TakeOutput().empty());
  std::optional<DbRequest> read = session().PollDbRequest();
  ASSERT_TRUE(read.has_value());
  DbAnswer answer;
  answer.kind = DbRequest::Kind::kReadKeys;
  answer.status = Status::IOError("disk on fire");
  session().OnDbAnswer(std::move(answer));
  EXPECT_TRUE(session().closed());
  EXPECT_EQ(LastReject(Out()).code, RejectCode::kInternal);
}

// An answer that comes after the session closed, or that was not asked
// for, changes nothing.
TEST_F(ServerSessionTest, AnAnswerNotWaitedForIsIgnored) {
  WriteKeys(3);
  ConnectWelcome();
  Events();
  DbAnswer stray;
  stray.kind = DbRequest::Kind::kScanBootstrap;
  stray.ops = {Put("x", "y")};
  stray.done = true;
  session().OnDbAnswer(stray);
  EXPECT_FALSE(session().closed());
  EXPECT_FALSE(session().wants_write());

  DiffWithAnEmptyFollower();
  session().TakeOutput();
  std::optional<DbRequest> read = session().PollDbRequest();
  ASSERT_TRUE(read.has_value());
  session().Close("test: closing");
  Out();
  session().OnDbAnswer(ServeDbRequest(hooks_, std::move(*read)));
  EXPECT_TRUE(Out().empty()) << "no Repair after the Reject";
}

// The Welcome of a bootstrap names the snapshot's sequence: it waits for the
// snapshot to be opened, and the follower may send nothing meanwhile.
TEST_F(ServerSessionTest, ABootstrapWelcomeWaitsForItsSnapshot) {
  options_.bootstrap_min_keys = 3;
  WriteKeys(3);
  session().OnBytes(Frame(FollowerHello()));
  One<Challenge>(Decode(session().TakeOutput()));
  session().OnBytes(Frame(Auth{}));
  EXPECT_FALSE(session().streaming());
  EXPECT_TRUE(session().TakeOutput().empty());
  std::optional<DbRequest> open = session().PollDbRequest();
  ASSERT_TRUE(open.has_value());
  EXPECT_EQ(open->kind, DbRequest::Kind::kOpenBootstrap);
  EXPECT_FALSE(open->resume);
  master_.Write({Put("k3", "v3")});  // before the snapshot: in it
  session().OnDbAnswer(ServeDbRequest(hooks_, std::move(*open)));
  EXPECT_TRUE(session().streaming());
  Welcome welcome = std::get<Welcome>(Decode(session().TakeOutput()).at(0));
  EXPECT_EQ(welcome.mode, StartMode::kBootstrap);
  EXPECT_EQ(welcome.master_seq, 4u);

  NewSession();
  session().OnBytes(Frame(FollowerHello()));
  session().TakeOutput();
  session().OnBytes(Frame(Auth{}));
  ASSERT_TRUE(session().PollDbRequest().has_value());
  session().OnBytes(Frame(Pong{}));
  EXPECT_TRUE(session().closed());
  EXPECT_EQ(LastReject(Decode(session().TakeOutput())).code, RejectCode::kProtocol);
}

TEST_F(ServerSessionTest, SyncRequestDuringDiffRunsAnotherAfterIt) {
  WriteKeys(3);
  ConnectWelcome();
  Events();
  Feed(SyncRequest{});  // a snapshot is wanted already: this one is covered
  session().StartSync(master_.tree().Snapshot());
  std::vector<Message> out = Out();
  Feed(SyncRequest{});  // arrives while the diff runs: must run after it
  EXPECT_TRUE(Events().empty());
  EXPECT_FALSE(session().idle());
  out = AnswerDiff(master_.tree().Snapshot(), out);
  EXPECT_EQ(Names(out), "SyncDone");
  std::vector<ServerEvent> events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, ServerEvent::Kind::kSyncDone);
  EXPECT_EQ(events[1].kind, ServerEvent::Kind::kWantSnapshot);
  session().StartSync(master_.tree().Snapshot());
  out = AnswerDiff(master_.tree().Snapshot(), Out());
  EXPECT_EQ(One<SyncDone>(out).sync_id, 2u);
  events = Events();
  ASSERT_EQ(events.size(), 1u);  // and no third
  EXPECT_EQ(events[0].kind, ServerEvent::Kind::kSyncDone);
  EXPECT_TRUE(session().idle());
}

TEST_F(ServerSessionTest, StartSyncWithoutWantSnapshotIsIgnored) {
  WriteKeys(2);
  ConnectWelcome(ResumeHello("m1", 2, 2));
  Events();
  session().StartSync(master_.tree().Snapshot());
  EXPECT_TRUE(Out().empty());
  EXPECT_TRUE(session().idle());
}

TEST_F(ServerSessionTest, PongRecordsFollowerAppliedSequence) {
  WriteKeys(2);
  ConnectWelcome(ResumeHello("m1", 2, 2));
  Feed(Pong{.applied_seq = 2, .echo_time_ms = 5});
  EXPECT_EQ(session().follower_applied_seq(), 2u);
  EXPECT_TRUE(Out().empty());
  EXPECT_FALSE(session().closed());
}

TEST_F(ServerSessionTest, GarbageBytesCloseWithCorruption) {
  // A whole frame whose type byte is no message type.
  session().OnBytes(std::string("\x03\x00\x00\x00\xee\x01\x02", 7));
  std::vector<Message> out = Out();
  EXPECT_EQ(Names(out), "Reject");
  EXPECT_EQ(LastReject(out).code, RejectCode::kProtocol);
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsCorruption()) << session().error().ToString();
  std::vector<ServerEvent> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0].status.IsCorruption());
  Feed(FollowerHello());
  EXPECT_TRUE(Out().empty());
}

TEST_F(ServerSessionTest, OversizeLengthPrefixClosesBeforeTheBodyArrives) {
  options_.max_frame = 1024;
  session().OnBytes(std::string("\x01\x04\x00\x00", 4));  // 1025 bytes follow
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsCorruption()) << session().error().ToString();
  EXPECT_NE(session().error().message().find("exceeds"), std::string::npos);
  EXPECT_EQ(LastReject(Out()).code, RejectCode::kProtocol);
}

// A Hello built byte by byte, so that its fields may break the limits the
// encoder asserts: `nonce`, `master_id` and `bootstrap_key` go as given.
std::string RawHello(std::string_view nonce, std::string_view master_id,
                     std::string_view bootstrap_key) {
  auto varint = [](std::string* out, uint64_t v) {
    for (; v >= 0x80; v >>= 7) out->push_back(static_cast<char>(v | 0x80));
    out->push_back(static_cast<char>(v));
  };
  auto bytes = [&](std::string* out, std::string_view b) {
    varint(out, b.size());
    out->append(b);
  };
  std::string body = {1, static_cast<char>(wire::kProtocolVersion),
                      static_cast<char>(wire::kProtocolVersion), 1};  // type, versions, role
  bytes(&body, nonce);
  bytes(&body, master_id);
  body.append({0, 0, 0, 0});  // applied_seq, key_count, bootstrapping, family
  bytes(&body, bootstrap_key);
  uint32_t n = static_cast<uint32_t>(body.size());
  std::string frame = {static_cast<char>(n), static_cast<char>(n >> 8), static_cast<char>(n >> 16),
                       static_cast<char>(n >> 24)};
  return frame + body;
}

TEST_F(ServerSessionTest, HelloOverTheHandshakeFrameLimitClosesBeforeItsBody) {
  // 64 KiB is far below the session's max_frame (64 MiB) but not allowed
  // before the peer has authenticated: the length prefix alone ends it.
  std::string hello = RawHello(std::string(kNonceBytes, 'c'), "", std::string(64 << 10, 'k'));
  session().OnBytes(std::string_view(hello).substr(0, wire::kFrameHeaderSize));
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsCorruption()) << session().error().ToString();
  Reject reject = LastReject(Out());
  EXPECT_EQ(reject.code, RejectCode::kProtocol);
  EXPECT_NE(reject.reason.find("exceeds limit " + std::to_string(wire::kMaxHandshakeFrame)),
            std::string::npos)
      << reject.reason;
  EXPECT_NE(reject.reason.find("before authentication"), std::string::npos) << reject.reason;
  EXPECT_LE(session().input_buffer_bytes(), 2 * wire::kMaxHandshakeFrame);
}

TEST_F(ServerSessionTest, HelloFieldsOverTheirLimitsAreRejected) {
  const std::string nonce(kNonceBytes, 'c');
  struct Case {
    std::string hello;
    std::string field;
  };
  std::vector<Case> cases = {
      {RawHello(std::string(65, 'c'), "", ""), "client_nonce"},
      {RawHello(nonce, std::string(256, 'm'), ""), "master_id"},
      {RawHello(nonce, "", std::string(wire::kMaxBootstrapKeyBytes + 1, 'k')), "bootstrap_key"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    ASSERT_LE(c.hello.size(), wire::kMaxHandshakeFrame);  // the field's limit catches it
    NewSession();
    session().OnBytes(c.hello);
    EXPECT_TRUE(session().closed());
    Reject reject = LastReject(Out());
    EXPECT_EQ(reject.code, RejectCode::kProtocol);
    EXPECT_NE(reject.reason.find(c.field + " length"), std::string::npos) << reject.reason;
    EXPECT_EQ(reject.reason.find("before authentication"), std::string::npos) << reject.reason;
  }
}

TEST_F(ServerSessionTest, LargestHelloFitsTheHandshakeFrameLimit) {
  Hello hello = FollowerHello();
  hello.master_id = std::string(255, 'm');
  hello.applied_seq = ~uint64_t{0};
  hello.key_count = ~uint64_t{0};
  hello.bootstrap_family = 0xFFFF;
  hello.bootstrap_key = std::string(wire::kMaxBootstrapKeyBytes, 'k');
  ASSERT_LE(Frame(hello).size() - wire::kFrameHeaderSize, wire::kMaxHandshakeFrame);
  Feed(hello);
  EXPECT_EQ(Names(Out()), "Challenge");
}

TEST_F(ServerSessionTest, FrameLimitRisesOnlyOnceAuthenticated) {
  options_.authenticator = &authenticator_;
  std::string big_prefix = {0, 0, 1, 0};  // 64 KiB follow
  Feed(FollowerHello());
  Out();
  EXPECT_EQ(session().max_frame(), wire::kMaxHandshakeFrame);  // a Challenge is not enough
  session().OnBytes(big_prefix);
  EXPECT_TRUE(session().closed());

  NewSession();
  ConnectWelcome();
  EXPECT_EQ(session().max_frame(), options_.max_frame);
  session().OnBytes(big_prefix);  // the body may follow
  EXPECT_FALSE(session().closed()) << session().error().ToString();
}

TEST_F(ServerSessionTest, HelloSplitAcrossCallsIsAssembled) {
  std::string bytes = Frame(FollowerHello());
  for (char c : bytes) session().OnBytes(std::string_view(&c, 1));
  EXPECT_EQ(Names(Out()), "Challenge");
}

TEST_F(ServerSessionTest, PeerRejectClosesWithItsReason) {
  ConnectWelcome();
  Events();
  Feed(Reject{RejectCode::kShutdown, "follower going away"});
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsAborted());
  EXPECT_NE(session().error().message().find("follower going away"), std::string::npos);
  EXPECT_TRUE(Out().empty());  // no Reject echoed back
  std::vector<ServerEvent> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ServerEvent::Kind::kClosed);
  EXPECT_NE(events[0].status.message().find("follower going away"), std::string::npos);
}

TEST_F(ServerSessionTest, CloseSendsRejectWithTheGivenCode) {
  ConnectWelcome();
  Events();
  session().Close("master stopping");
  Reject reject = LastReject(Out());
  EXPECT_EQ(reject.code, RejectCode::kShutdown);
  EXPECT_EQ(reject.reason, "master stopping");
  EXPECT_TRUE(session().closed());
  EXPECT_EQ(Events().size(), 1u);
  session().Close("twice");  // closing again sends nothing
  EXPECT_TRUE(Out().empty());
  EXPECT_TRUE(Events().empty());
}

TEST_F(ServerSessionTest, BatchesBeforeStreamingAreIgnored) {
  WriteKeys(2);
  session().OnBatch(*master_.LogFrom(1)[0]);
  EXPECT_TRUE(Out().empty());
  Feed(FollowerHello());
  Out();
  session().OnBatch(*master_.LogFrom(1)[0]);
  EXPECT_TRUE(Out().empty());
  EXPECT_EQ(session().sent_seq(), 0u);
}

TEST_F(ServerSessionTest, BatchesBelowStreamStartOrAlreadySentAreNotResent) {
  WriteKeys(3);
  ConnectWelcome(ResumeHello("m1", 1, 1));  // resumes from 2
  EXPECT_EQ(session().sent_seq(), 1u);
  std::vector<const Batch*> log = master_.LogFrom(1);
  ASSERT_EQ(log.size(), 3u);
  session().OnBatch(*log[0]);  // seq 1: the follower has it
  EXPECT_TRUE(Out().empty());
  session().OnBatch(*log[1]);
  session().OnBatch(*log[1]);
  session().OnBatch(*log[2]);
  std::vector<Message> out = Out();
  ASSERT_EQ(Names(out), "Batch Batch");
  EXPECT_EQ(std::get<Batch>(out[0]), *log[1]);
  EXPECT_EQ(std::get<Batch>(out[1]), *log[2]);
  EXPECT_EQ(session().sent_seq(), 3u);
  // A batch spanning several sequences is sent once, by its last sequence.
  const Batch& wide = master_.Write({Put("a", "1"), Put("b", "2"), Put("c", "3")});
  ASSERT_EQ(wide.count, 3u);
  session().OnBatch(wide);
  session().OnBatch(wide);
  EXPECT_EQ(Names(Out()), "Batch");
  EXPECT_EQ(session().sent_seq(), 6u);
}

// A hub encodes each batch once (SharedBatchFrame) and hands the frame to
// every session: each sends those bytes as they are, the same bytes it would
// have encoded itself, and encodes nothing.
TEST_F(ServerSessionTest, SessionsSendTheBatchFrameEncodedOnceForAll) {
  WriteKeys(2);
  ConnectWelcome(ResumeHello("m1", 2, 2));
  std::unique_ptr<ServerSession> first = std::move(session_);
  NewSession();
  ConnectWelcome(ResumeHello("m1", 2, 2));
  ServerSession& second = session();
  auto batch = std::make_shared<const Batch>(
      master_.Write({Put("a", "1"), Put("b", std::string(300, 'x')), Del("c")}));
  std::shared_ptr<const std::string> frame = SharedBatchFrame(*batch, options_.bulk_frame_bytes);
  ASSERT_NE(frame, nullptr);
  std::string own;
  wire::AppendFrame(*batch, &own);
  EXPECT_EQ(*frame, own);

  ASSERT_TRUE(first->OnBatch(batch, frame));
  ASSERT_TRUE(second.OnBatch(batch, frame));
  std::string from_first = first->TakeOutput();
  std::string from_second = second.TakeOutput();
  EXPECT_EQ(from_first, *frame);
  EXPECT_EQ(from_second, *frame);
  EXPECT_EQ(first->shared_frames_sent(), 1u);
  EXPECT_EQ(second.shared_frames_sent(), 1u);

  // Without a frame a session encodes the batch itself, to the same bytes.
  const Batch& next = master_.Write({Put("d", "4")});
  ASSERT_TRUE(second.OnBatch(next));
  EXPECT_EQ(second.TakeOutput(), Frame(next));
  EXPECT_EQ(second.shared_frames_sent(), 1u);
}

// A batch that goes in pieces gets no shared frame: each session splits it.
TEST_F(ServerSessionTest, ABatchTooLargeForOneFrameHasNoSharedFrame) {
  const Batch& batch = master_.Write({Put("a", std::string(600, 'x')), Put("b", "2")});
  EXPECT_EQ(SharedBatchFrame(batch, 512), nullptr);
  EXPECT_NE(SharedBatchFrame(batch, 4096), nullptr);
}

TEST_F(ServerSessionTest, SilentFollowerTimesOut) {
  options_.idle_timeout_ms = 1000;
  session().OnTick(0);
  session().OnTick(1000);
  EXPECT_FALSE(session().closed());
  session().OnTick(1001);
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsAborted());
  EXPECT_NE(session().error().message().find("silent"), std::string::npos);
  EXPECT_EQ(LastReject(Out()).code, RejectCode::kProtocol);
  EXPECT_EQ(Events().back().kind, ServerEvent::Kind::kClosed);
}

TEST_F(ServerSessionTest, ReceivedBytesPostponeTheTimeout) {
  options_.idle_timeout_ms = 1000;
  session().OnTick(0);
  session().OnTick(900);
  Feed(FollowerHello());  // heard at 900
  session().OnTick(1800);
  EXPECT_FALSE(session().closed());
  session().OnTick(1901);
  EXPECT_TRUE(session().closed());
}

TEST_F(ServerSessionTest, PingEveryIntervalWhileStreaming) {
  options_.ping_interval_ms = 1000;
  session().OnTick(0);  // not streaming yet: no Ping
  EXPECT_TRUE(Out().empty());
  WriteKeys(4);
  ConnectWelcome(ResumeHello("m1", 4, 4));
  session().OnTick(100);
  EXPECT_EQ(One<Ping>(Out()), (Ping{.master_seq = 4, .master_time_ms = 100}));
  session().OnTick(1099);
  EXPECT_TRUE(Out().empty());
  master_.Write({Put("x", "y")});
  session().OnTick(1100);
  EXPECT_EQ(One<Ping>(Out()), (Ping{.master_seq = 5, .master_time_ms = 1100}));
  Feed(Pong{.applied_seq = 4, .echo_time_ms = 1100});
  session().OnTick(2100);
  EXPECT_EQ(One<Ping>(Out()).master_time_ms, 2100u);
}

TEST_F(ServerSessionTest, DiffThatNeverConvergesGivesUp) {
  options_.max_sync_retries = 2;
  WriteKeys(3);
  ConnectWelcome();
  Events();
  // The follower claims a root that its summary (empty) does not explain:
  // the repairs leave a residue, so every diff ends asking for a retry.
  for (int attempt = 0; attempt <= options_.max_sync_retries; ++attempt) {
    SCOPED_TRACE(attempt);
    session().StartSync(master_.tree().Snapshot());
    SyncStart start = One<SyncStart>(Out());
    Feed(SyncRoot{.sync_id = start.sync_id,
                  .root = Hash128{0x1234, 0x5678},
                  .top = NodeSummary{},
                  .hash_bytes = start.hash_bytes});
    std::vector<Message> out = Out();
    EXPECT_TRUE(One<SyncDone>(out).retry);
    if (attempt < options_.max_sync_retries) {
      EXPECT_FALSE(session().closed());
      std::vector<ServerEvent> events = Events();
      ASSERT_EQ(events.size(), 2u);
      EXPECT_FALSE(events[0].complete);
      EXPECT_EQ(events[1].kind, ServerEvent::Kind::kWantSnapshot);
    } else {
      EXPECT_TRUE(session().closed());
      EXPECT_EQ(LastReject(out).code, RejectCode::kInternal);
    }
  }
}

// ---------------------------------------------------------------------------
// ClientSession

struct WriteRecord {
  ApplyRequest::Source source;
  std::vector<Op> ops;
  FollowerState state;
  uint64_t stream_seq;
};

class ClientSessionTest : public ::testing::Test {
 protected:
  ClientSession& session() {
    if (!session_) {
      FollowerHooks hooks = follower_.Hooks(&rng_);
      hooks.write = [this, inner = hooks.write](const ApplyRequest& request) {
        writes_.push_back({request.source, request.ops, request.state, request.stream_seq});
        if (!write_error_.ok()) return write_error_;
        return inner(request);
      };
      session_ = std::make_unique<ClientSession>(options_, std::move(hooks), state_);
    }
    return *session_;
  }
  void NewSession() {
    session_.reset();
    writes_.clear();
  }

  void Feed(const Message& message) { session().OnBytes(Frame(message)); }
  // What the follower sent, but for the reports of its position (unasked
  // Pongs after it applied writes), which go to reports_.
  std::vector<Message> Out() {
    std::vector<Message> out;
    for (Message& m : Decode(session().TakeOutput())) {
      if (auto* pong = std::get_if<Pong>(&m); pong != nullptr && pong->echo_time_ms == 0) {
        reports_.push_back(pong->applied_seq);
      } else {
        out.push_back(std::move(m));
      }
    }
    return out;
  }
  std::vector<uint64_t> reports_;
  std::vector<ClientEvent> Events() {
    std::vector<ClientEvent> events;
    while (auto e = session().PollEvent()) events.push_back(std::move(*e));
    return events;
  }

  Hello Start() {
    session().Start();
    return One<Hello>(Out());
  }

  static Challenge ChallengeFor(const Hello& hello, const Authenticator* authenticator) {
    Challenge challenge{.version = wire::kProtocolVersion,
                        .server_nonce = std::string(kNonceBytes, 's')};
    if (authenticator != nullptr) {
      challenge.server_proof =
          authenticator->Sign(MasterProofMessage(hello.client_nonce, challenge.server_nonce));
    }
    return challenge;
  }

  static Welcome MakeWelcome(StartMode mode, uint64_t master_seq, uint64_t resume_from,
                             std::string master_id = "m1") {
    return Welcome{.master_id = std::move(master_id),
                   .master_seq = master_seq,
                   .mode = mode,
                   .resume_from = resume_from,
                   .families = {{0, "default"}}};
  }

  // Start, answer the Challenge, deliver `welcome`; returns what the follower
  // sent after the Welcome.
  std::vector<Message> Connect(const Welcome& welcome) {
    Hello hello = Start();
    Feed(ChallengeFor(hello, options_.authenticator));
    EXPECT_EQ(Names(Out()), "Auth");
    Feed(welcome);
    EXPECT_TRUE(session().streaming()) << session().error().ToString();
    return Out();
  }

  // Resumes from state_ (master m1), with the master at master_seq.
  std::vector<Message> ConnectResumed(uint64_t master_seq) {
    return Connect(MakeWelcome(StartMode::kResume, master_seq, state_.applied_seq + 1));
  }

  SyncStart MakeSyncStart(uint64_t sync_id, const Hash128& root, uint8_t hash_bytes = 2) {
    return SyncStart{.sync_id = sync_id,
                     .seq = session().applied_seq(),
                     .salt = 0x5eed0000 + sync_id,
                     .hash_bytes = hash_bytes,
                     .root = root,
                     .key_count = 1};
  }

  // Runs one diff that finds nothing: SyncStart with the follower's own root,
  // then SyncDone.
  void RunEqualDiff(uint64_t sync_id) {
    Feed(MakeSyncStart(sync_id, follower_.tree().root_hash()));
    EXPECT_TRUE(One<SyncRoot>(Out()).equal);
    Feed(SyncDone{.sync_id = sync_id});
  }

  // Expects the session to have closed itself over a protocol error.
  void ExpectProtocolError(std::string_view what = "") {
    EXPECT_TRUE(session().closed());
    EXPECT_TRUE(session().error().IsProtocolError()) << session().error().ToString();
    EXPECT_NE(session().error().message().find(what), std::string::npos)
        << session().error().message();
    std::vector<Message> out = Out();
    EXPECT_EQ(LastReject(out).code, RejectCode::kProtocol);
    std::vector<ClientEvent> events = Events();
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().kind, ClientEvent::Kind::kClosed);
    // Later input is ignored.
    Feed(Ping{.master_seq = 1, .master_time_ms = 1});
    EXPECT_TRUE(Out().empty());
    EXPECT_TRUE(Events().empty());
  }

  std::mt19937_64 rng_{99};
  MemoryFollower follower_;
  ClientOptions options_;
  FollowerState state_;
  FakeAuthenticator authenticator_{"secret"};
  std::vector<WriteRecord> writes_;
  Status write_error_;  // when set, the write hook fails with it
  std::unique_ptr<ClientSession> session_;
};

TEST_F(ClientSessionTest, StartSendsHelloCarryingPersistedState) {
  state_ = FollowerState{"m1", 42, true, 1, "bk"};
  follower_.Put(0, "a", "1");
  follower_.Put(1, "b", "2");
  Hello hello = Start();
  EXPECT_EQ(hello.min_version, wire::kProtocolVersion);
  EXPECT_EQ(hello.max_version, wire::kProtocolVersion);
  EXPECT_EQ(hello.role, Role::kFollower);
  EXPECT_EQ(hello.client_nonce.size(), kNonceBytes);
  EXPECT_EQ(hello.master_id, "m1");
  EXPECT_EQ(hello.applied_seq, 42u);
  EXPECT_EQ(hello.key_count, 2u);
  EXPECT_TRUE(hello.bootstrapping);
  EXPECT_EQ(hello.bootstrap_family, 1);
  EXPECT_EQ(hello.bootstrap_key, "bk");
  EXPECT_EQ(session().follower_state(), state_);
  session().Start();  // a second Start sends nothing
  EXPECT_TRUE(Out().empty());
}

TEST_F(ClientSessionTest, StartSendsAPrefixOfABootstrapKeyOverTheHelloLimit) {
  std::string key(wire::kMaxBootstrapKeyBytes + 100, 'k');
  key.back() = 'z';
  state_ = FollowerState{"m1", 0, true, 0, key};
  Hello hello = Start();
  EXPECT_EQ(hello.bootstrap_key, key.substr(0, wire::kMaxBootstrapKeyBytes));
  EXPECT_EQ(session().follower_state().bootstrap_key, key);  // what it has is unchanged
}

TEST_F(ClientSessionTest, StartOfNewFollowerSendsEmptyState) {
  options_.role = Role::kInspector;
  Hello hello = Start();
  EXPECT_EQ(hello.role, Role::kInspector);
  EXPECT_EQ(hello.master_id, "");
  EXPECT_EQ(hello.applied_seq, 0u);
  EXPECT_EQ(hello.key_count, 0u);
  EXPECT_FALSE(hello.bootstrapping);
}

TEST_F(ClientSessionTest, ChallengeWithWrongMasterProofClosesWithoutAuth) {
  options_.authenticator = &authenticator_;
  Hello hello = Start();
  FakeAuthenticator wrong("not the secret");
  Feed(ChallengeFor(hello, &wrong));
  std::vector<Message> out = Out();
  EXPECT_EQ(Names(out), "Reject");
  EXPECT_TRUE(All<Auth>(out).empty());
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsProtocolError());
  EXPECT_NE(session().error().message().find("wrong secret"), std::string::npos);
}

TEST_F(ClientSessionTest, ChallengeWithoutMasterProofClosesWithoutAuth) {
  options_.authenticator = &authenticator_;
  Hello hello = Start();
  Feed(ChallengeFor(hello, nullptr));
  std::vector<Message> out = Out();
  EXPECT_EQ(Names(out), "Reject");
  EXPECT_TRUE(session().closed());
  EXPECT_NE(session().error().message().find("did not prove"), std::string::npos);
}

TEST_F(ClientSessionTest, ChallengeReplayingFollowerProofClosesWithoutAuth) {
  // A proof for the follower's role must not pass as the master's.
  options_.authenticator = &authenticator_;
  Hello hello = Start();
  Challenge challenge = ChallengeFor(hello, nullptr);
  challenge.server_proof =
      authenticator_.Sign(FollowerProofMessage(hello.client_nonce, challenge.server_nonce));
  Feed(challenge);
  EXPECT_EQ(Names(Out()), "Reject");
  EXPECT_TRUE(session().closed());
}

TEST_F(ClientSessionTest, ChallengeWithRightProofIsAnsweredWithOurProof) {
  options_.authenticator = &authenticator_;
  Hello hello = Start();
  Challenge challenge = ChallengeFor(hello, &authenticator_);
  Feed(challenge);
  Auth auth = One<Auth>(Out());
  EXPECT_EQ(auth.client_proof,
            authenticator_.Sign(FollowerProofMessage(hello.client_nonce, challenge.server_nonce)));
  EXPECT_FALSE(session().closed());
}

TEST_F(ClientSessionTest, FollowerWithoutSecretSendsEmptyProof) {
  Hello hello = Start();
  Feed(ChallengeFor(hello, &authenticator_));  // the master's proof is not checked
  EXPECT_EQ(One<Auth>(Out()).client_proof, "");
}

TEST_F(ClientSessionTest, ChallengeWithUnsupportedVersionIsProtocolError) {
  Hello hello = Start();
  Challenge challenge = ChallengeFor(hello, nullptr);
  challenge.version = wire::kProtocolVersion + 1;
  Feed(challenge);
  ExpectProtocolError("version");
}

TEST_F(ClientSessionTest, ResumeWelcomeNotFollowingOurSequenceIsProtocolError) {
  state_ = FollowerState{"m1", 10};
  Start();
  Feed(ChallengeFor(Hello{}, nullptr));
  Out();
  Feed(MakeWelcome(StartMode::kResume, 20, 12));
  ExpectProtocolError("does not follow our state");
  EXPECT_TRUE(writes_.empty());
}

TEST_F(ClientSessionTest, ResumeWelcomeFromAnotherMasterIsALineageResume) {
  // m2, a promoted follower, found (m1, 10) in its lineage at its own 30.
  state_ = FollowerState{"m1", 10};
  std::vector<Message> out = Connect(MakeWelcome(StartMode::kResume, 30, 31, "m2"));
  EXPECT_EQ(Names(out), "SyncRequest");  // caught up: the one diff that checks it
  EXPECT_FALSE(session().closed());
  EXPECT_EQ(session().applied_seq(), 30u);
  EXPECT_EQ(session().follower_state().master_id, "m2");
  EXPECT_EQ(session().follower_state().applied_seq, 30u);
  Feed(Batch{.seq = 31, .count = 1, .ops = {Put("a", "1")}});
  ASSERT_EQ(writes_.size(), 1u);
  EXPECT_EQ(writes_[0].state, (FollowerState{"m2", 31}));  // resumable on m2 from here
}

TEST_F(ClientSessionTest, ResumeWelcomeWithoutAResumablePositionIsProtocolError) {
  state_ = FollowerState{"m1", 0};  // a diff had not completed
  Start();
  Feed(ChallengeFor(Hello{}, nullptr));
  Out();
  Feed(MakeWelcome(StartMode::kResume, 20, 11, "m2"));
  ExpectProtocolError("does not follow our state");
}

TEST_F(ClientSessionTest, ResumeWelcomeCaughtUpAsksForOneDiff) {
  state_ = FollowerState{"m1", 10};
  std::vector<Message> out = ConnectResumed(10);
  EXPECT_EQ(Names(out), "SyncRequest");
  EXPECT_TRUE(session().consistent());
  EXPECT_EQ(session().applied_seq(), 10u);
  EXPECT_EQ(session().families(), (std::vector<FamilyInfo>{{0, "default"}}));
  std::vector<ClientEvent> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ClientEvent::Kind::kWelcome);
  EXPECT_EQ(events[0].mode, StartMode::kResume);
}

TEST_F(ClientSessionTest, ResumeWelcomeBehindAsksForDiffOnceCaughtUp) {
  state_ = FollowerState{"m1", 10};
  EXPECT_TRUE(ConnectResumed(12).empty());
  Feed(Batch{.seq = 11, .count = 1, .ops = {Put("a", "1")}});
  EXPECT_TRUE(Out().empty());
  Feed(Batch{.seq = 12, .count = 1, .ops = {Put("b", "2")}});
  EXPECT_EQ(Names(Out()), "SyncRequest");
  ASSERT_EQ(writes_.size(), 2u);
  EXPECT_EQ(writes_[1].state.applied_seq, 12u);  // resumed: stays resumable
}

TEST_F(ClientSessionTest, DiffWelcomeIsNotResumableUntilDiffCompletes) {
  state_ = FollowerState{"m1", 10};
  follower_.Put(0, "a", "old");
  std::vector<Message> out = Connect(MakeWelcome(StartMode::kDiff, 20, 21));
  EXPECT_TRUE(out.empty());  // the master starts the diff itself
  EXPECT_FALSE(session().consistent());
  EXPECT_EQ(Events()[0].mode, StartMode::kDiff);

  Feed(Batch{.seq = 21, .count = 1, .ops = {Put("b", "1")}});
  ASSERT_EQ(writes_.size(), 1u);
  EXPECT_EQ(writes_[0].source, ApplyRequest::Source::kStream);
  EXPECT_EQ(writes_[0].stream_seq, 21u);
  EXPECT_EQ(writes_[0].state, (FollowerState{"m1", 0}));
  EXPECT_EQ(follower_.state().applied_seq, 0u);

  // A diff that must be retried does not make the replica resumable.
  Feed(MakeSyncStart(1, Hash128{7, 7}));
  EXPECT_FALSE(One<SyncRoot>(Out()).equal);
  Feed(Repair{.sync_id = 1, .ops = {Put("a", "new")}});
  ASSERT_EQ(writes_.size(), 2u);
  EXPECT_EQ(writes_[1].source, ApplyRequest::Source::kRepair);
  EXPECT_EQ(writes_[1].state.applied_seq, 0u);
  Feed(SyncDone{.sync_id = 1, .repaired = 1, .retry = true});
  EXPECT_EQ(writes_.size(), 2u);
  EXPECT_FALSE(session().consistent());
  std::vector<ClientEvent> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ClientEvent::Kind::kSyncDone);
  EXPECT_FALSE(events[0].complete);
  EXPECT_EQ(events[0].repaired, 1u);

  // A complete one does, with a write that carries only the state.
  RunEqualDiff(2);
  ASSERT_EQ(writes_.size(), 3u);
  EXPECT_EQ(writes_[2].source, ApplyRequest::Source::kStateOnly);
  EXPECT_TRUE(writes_[2].ops.empty());
  EXPECT_EQ(writes_[2].state, (FollowerState{"m1", 21}));
  EXPECT_EQ(follower_.state(), (FollowerState{"m1", 21}));
  EXPECT_TRUE(session().consistent());
  EXPECT_EQ(session().syncs_completed(), 1u);

  Feed(Batch{.seq = 22, .count = 1, .ops = {Put("c", "1")}});
  EXPECT_EQ(writes_.back().state.applied_seq, 22u);
}

TEST_F(ClientSessionTest, DiffWelcomeFromNewMasterAdoptsItsId) {
  state_ = FollowerState{"old-master", 10};
  Connect(MakeWelcome(StartMode::kDiff, 5, 6, "m1"));
  Feed(Batch{.seq = 6, .count = 1, .ops = {Put("b", "1")}});
  ASSERT_EQ(writes_.size(), 1u);
  EXPECT_EQ(writes_[0].state, (FollowerState{"m1", 0}));
  RunEqualDiff(1);
  EXPECT_EQ(follower_.state(), (FollowerState{"m1", 6}));
}

TEST_F(ClientSessionTest, BatchRepeatingAppliedSequenceIsProtocolError) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(20);
  Feed(Batch{.seq = 11, .count = 2, .ops = {Put("a", "1"), Put("b", "1")}});
  EXPECT_EQ(session().applied_seq(), 12u);
  Feed(Batch{.seq = 12, .count = 1, .ops = {Put("a", "again")}});
  ExpectProtocolError("repeats the stream");
  EXPECT_EQ(writes_.size(), 1u);
  EXPECT_EQ(ValueOf(follower_.data(), "a"), "1");
}

TEST_F(ClientSessionTest, BatchBelowResumePointIsProtocolError) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(20);
  Feed(Batch{.seq = 10, .count = 1, .ops = {Put("a", "1")}});
  ExpectProtocolError("repeats the stream");
  EXPECT_TRUE(writes_.empty());
}

TEST_F(ClientSessionTest, SequenceGapLosesConsistencyAndAsksForDiff) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  Out();
  RunEqualDiff(1);  // the catch-up diff
  EXPECT_TRUE(Out().empty());
  EXPECT_TRUE(session().consistent());
  Feed(Batch{.seq = 11, .count = 1, .ops = {Put("a", "1")}});
  EXPECT_TRUE(Out().empty());
  Feed(Batch{.seq = 13, .count = 1, .ops = {Put("b", "1")}});  // 12 is missing
  EXPECT_FALSE(session().consistent());
  EXPECT_EQ(Names(Out()), "SyncRequest");
  EXPECT_EQ(session().applied_seq(), 13u);
  EXPECT_EQ(writes_.back().state.applied_seq, 0u);
  EXPECT_FALSE(session().closed());
  // The stream goes on from after the gap.
  Feed(Batch{.seq = 14, .count = 1, .ops = {Put("c", "1")}});
  EXPECT_FALSE(session().closed());
  EXPECT_TRUE(Out().empty());  // asked already
}

// Writes lost after a diff's snapshot are outside what that diff compares, so
// its SyncDone must not declare the replica consistent (nor persist a
// resumable applied_seq); the diff asked for at the gap must do that.
TEST_F(ClientSessionTest, SequenceGapDuringDiffIsNotHealedByThatDiff) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  Out();
  RunEqualDiff(1);
  Feed(MakeSyncStart(2, Hash128{3, 3}));  // the master diffs again
  EXPECT_FALSE(One<SyncRoot>(Out()).equal);
  Feed(Batch{.seq = 11, .count = 1, .ops = {Put("a", "1")}});
  Feed(Batch{.seq = 14, .count = 1, .ops = {Put("b", "1")}});  // 12, 13 lost
  EXPECT_FALSE(session().consistent());
  EXPECT_TRUE(Out().empty());  // deferred until this diff ends
  Feed(SyncDone{.sync_id = 2});
  EXPECT_EQ(Names(Out()), "SyncRequest");
  EXPECT_FALSE(session().consistent());
  EXPECT_EQ(follower_.state().applied_seq, 0u);
}

TEST_F(ClientSessionTest, SyncStartIsAnsweredWithEqualRootWhenRootsMatch) {
  follower_.Put(0, "a", "1");
  follower_.Put(0, "b", "2");
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  Out();
  Feed(MakeSyncStart(1, follower_.tree().root_hash(), 3));
  SyncRoot root = One<SyncRoot>(Out());
  EXPECT_EQ(root.sync_id, 1u);
  EXPECT_TRUE(root.equal);
  EXPECT_EQ(root.root, follower_.tree().root_hash());
  EXPECT_EQ(root.key_count, 2u);
  EXPECT_EQ(root.hash_bytes, 3);
  EXPECT_TRUE(session().in_sync());
}

TEST_F(ClientSessionTest, SyncStartIsAnsweredWithTopSummaryWhenRootsDiffer) {
  for (int i = 0; i < 30; ++i) follower_.Put(0, "k" + std::to_string(i), "v");
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  Out();
  SyncStart start = MakeSyncStart(4, Hash128{1, 1}, 3);
  Feed(start);
  SyncRoot root = One<SyncRoot>(Out());
  EXPECT_EQ(root.sync_id, 4u);
  EXPECT_FALSE(root.equal);
  EXPECT_EQ(root.root, follower_.tree().root_hash());
  EXPECT_EQ(root.key_count, 30u);
  EXPECT_EQ(root.hash_bytes, 3);
  EXPECT_EQ(root.top.kind, NodeSummary::Kind::kInner);
  EXPECT_EQ(root.top, Summarize(follower_.tree(), "", start.salt, 3));
}

TEST_F(ClientSessionTest, SyncStartWhileDiffRunsIsProtocolError) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  Out();
  Feed(MakeSyncStart(1, Hash128{1, 1}));
  Out();
  Feed(MakeSyncStart(2, Hash128{1, 1}));
  ExpectProtocolError("SyncStart while a diff runs");
}

TEST_F(ClientSessionTest, NodesRequestIsAnsweredFromTheSnapshot) {
  for (int i = 0; i < 30; ++i) follower_.Put(0, "k" + std::to_string(i), "v");
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  Out();
  TreeView snapshot = follower_.tree().Snapshot();
  SyncStart start = MakeSyncStart(1, Hash128{1, 1});
  Feed(start);
  NodeSummary top = One<SyncRoot>(Out()).top;
  ASSERT_EQ(top.kind, NodeSummary::Kind::kInner);
  // The stream changes the live tree; answers must still describe the snapshot.
  Feed(Batch{.seq = 11, .count = 1, .ops = {Put("k1", "changed"), Put("new", "x"), Del("k2")}});
  ASSERT_NE(follower_.tree().root_hash(), snapshot.root_hash());
  std::vector<std::string> paths;
  for (uint8_t digit : top.digits) paths.push_back(std::string(1, static_cast<char>(digit)));
  paths.push_back(std::string(1, '\x00') + std::string(1, '\xff'));  // likely empty
  Feed(NodesRequest{.sync_id = 1, .paths = paths});
  Nodes nodes = One<Nodes>(Out());
  EXPECT_EQ(nodes.sync_id, 1u);
  bool live_differs = false;
  for (const std::string& path : paths) {
    live_differs = live_differs || Summarize(follower_.tree(), path, start.salt, 2) !=
                                       Summarize(snapshot, path, start.salt, 2);
  }
  ASSERT_TRUE(live_differs) << "the batch must change some answer for this test to bite";
  EXPECT_EQ(nodes.hash_bytes, start.hash_bytes);
  ASSERT_EQ(nodes.summaries.size(), paths.size());
  for (size_t i = 0; i < paths.size(); ++i) {
    EXPECT_EQ(nodes.summaries[i], Summarize(snapshot, paths[i], start.salt, start.hash_bytes))
        << "path " << i;
  }
}

// A request of more root paths than the protocol allows was answered with
// as many root summaries. Each path costs the master a byte or two and the
// follower a summary of up to 256 children, so a request past the limit is
// refused before any of it is answered (the client fuzz target checks it too).
TEST_F(ClientSessionTest, NodesRequestOfMorePathsThanTheLimitIsRefused) {
  for (int i = 0; i < 300; ++i) follower_.Put(0, "k" + std::to_string(i), "v");
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  Out();
  Feed(MakeSyncStart(1, Hash128{1, 1}));
  ASSERT_EQ(One<SyncRoot>(Out()).top.kind, NodeSummary::Kind::kFolded);  // ~180 children
  Feed(
      NodesRequest{.sync_id = 1, .paths = std::vector<std::string>(wire::kMaxPathsPerRequest, "")});
  EXPECT_EQ(One<Nodes>(Out()).summaries.size(), wire::kMaxPathsPerRequest);
  Feed(NodesRequest{.sync_id = 1,
                    .paths = std::vector<std::string>(wire::kMaxPathsPerRequest + 1, "")});
  std::vector<Message> out = Out();
  ASSERT_EQ(Names(out), "Reject");
  EXPECT_TRUE(session().closed());
  EXPECT_NE(
      session().error().message().find("more than " + std::to_string(wire::kMaxPathsPerRequest)),
      std::string::npos)
      << session().error().ToString();
}

TEST_F(ClientSessionTest, DiffMessagesOutsideADiffAreProtocolErrors) {
  struct Case {
    Message message;
    std::string what;
  };
  const std::vector<Case> cases = {
      {NodesRequest{.sync_id = 1, .paths = {""}}, "NodesRequest outside its diff"},
      {Repair{.sync_id = 1, .ops = {Put("a", "1")}}, "Repair outside its diff"},
      {SyncDone{.sync_id = 1}, "SyncDone outside its diff"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    NewSession();
    state_ = FollowerState{"m1", 10};
    ConnectResumed(20);
    Feed(c.message);
    ExpectProtocolError(c.what);
    EXPECT_TRUE(writes_.empty());
  }
}

TEST_F(ClientSessionTest, DiffMessagesWithAnotherSyncIdAreProtocolErrors) {
  const std::vector<Message> cases = {
      NodesRequest{.sync_id = 2, .paths = {""}},
      Repair{.sync_id = 2, .ops = {Put("a", "1")}},
      SyncDone{.sync_id = 2},
  };
  for (const Message& message : cases) {
    SCOPED_TRACE(MessageName(message));
    NewSession();
    state_ = FollowerState{"m1", 10};
    ConnectResumed(10);
    Out();
    Feed(MakeSyncStart(1, Hash128{1, 1}));
    Out();
    Feed(message);
    ExpectProtocolError("outside its diff");
    EXPECT_TRUE(writes_.empty());
  }
}

TEST_F(ClientSessionTest, RepairSkipsKeysStreamedSinceSyncStart) {
  for (const char* key : {"a", "b", "c", "d"}) follower_.Put(0, key, "old");
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  Out();
  Feed(MakeSyncStart(1, Hash128{1, 1}));
  Out();
  // After the snapshot the stream rewrites a and deletes [c, d).
  Feed(Batch{.seq = 11, .count = 2, .ops = {Put("a", "stream"), DelRange("c", "d")}});
  EXPECT_EQ(ValueOf(follower_.data(), "c"), std::nullopt);
  // The repair was read before those writes reached the follower.
  Feed(Repair{.sync_id = 1,
              .ops = {Put("a", "repair"), Put("b", "repair"), Put("c", "repair"),
                      Put("d", "repair"), Del("e")}});
  EXPECT_EQ(ValueOf(follower_.data(), "a"), "stream");
  EXPECT_EQ(ValueOf(follower_.data(), "b"), "repair");
  EXPECT_EQ(ValueOf(follower_.data(), "c"), std::nullopt);
  EXPECT_EQ(ValueOf(follower_.data(), "d"), "repair");  // the range's end is exclusive
  ASSERT_EQ(writes_.back().source, ApplyRequest::Source::kRepair);
  EXPECT_EQ(writes_.back().ops,
            (std::vector<Op>{Put("b", "repair"), Put("d", "repair"), Del("e")}));
  Feed(SyncDone{.sync_id = 1, .repaired = 5});
  EXPECT_EQ(session().last_repaired(), 3u);
  std::vector<ClientEvent> events = Events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().kind, ClientEvent::Kind::kSyncDone);
  EXPECT_EQ(events.back().repaired, 3u);
  EXPECT_TRUE(events.back().complete);

  // The next diff starts tracking afresh: a is repairable again.
  Feed(MakeSyncStart(2, Hash128{1, 1}));
  Out();
  Feed(Repair{.sync_id = 2, .ops = {Put("a", "repair2")}});
  EXPECT_EQ(ValueOf(follower_.data(), "a"), "repair2");
}

TEST_F(ClientSessionTest, RepairSkipsKeysStreamedInOtherFamiliesOnlyThere) {
  follower_.Put(0, "a", "old");
  follower_.Put(1, "a", "old");
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  Out();
  Feed(MakeSyncStart(1, Hash128{1, 1}));
  Out();
  Feed(Batch{.seq = 11, .count = 1, .ops = {Put("a", "stream", 1)}});
  Feed(Repair{.sync_id = 1, .ops = {Put("a", "repair", 0), Put("a", "repair", 1)}});
  EXPECT_EQ(ValueOf(follower_.data(), "a", 0), "repair");
  EXPECT_EQ(ValueOf(follower_.data(), "a", 1), "stream");
}

TEST_F(ClientSessionTest, RepairDeleteHashesResolveToTheRightKeys) {
  for (const char* key : {"x", "y", "z"}) follower_.Put(0, key, "v");
  follower_.Put(2, "y", "v");
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  Out();
  Feed(MakeSyncStart(1, Hash128{1, 1}));
  Out();
  Feed(Batch{.seq = 11, .count = 1, .ops = {Put("z", "stream"), Put("w", "stream")}});
  Feed(Repair{.sync_id = 1,
              .delete_key_hashes = {KeyHash(0, "y"), KeyHash(0, "z"), KeyHash(0, "w"),
                                    KeyHash(0, "absent")}});
  EXPECT_EQ(ValueOf(follower_.data(), "y"), std::nullopt);
  EXPECT_EQ(ValueOf(follower_.data(), "y", 2), "v");  // same key, other family
  EXPECT_EQ(ValueOf(follower_.data(), "x"), "v");
  EXPECT_EQ(ValueOf(follower_.data(), "z"), "stream");  // streamed since the snapshot
  EXPECT_EQ(ValueOf(follower_.data(), "w"), "stream");  // not in the snapshot
  ASSERT_EQ(writes_.back().source, ApplyRequest::Source::kRepair);
  EXPECT_EQ(writes_.back().ops, (std::vector<Op>{Del("y")}));
}

// The master asks nothing more once it repairs, so the follower lets the
// diff's snapshot go at the first Repair (its writes then change the tree in
// place); a question after that is the master's error, not one to answer
// from a tree that moved on.
TEST_F(ClientSessionTest, NodesRequestAfterARepairIsAProtocolError) {
  for (const char* key : {"a", "b", "c", "d", "e"}) follower_.Put(0, key, "v");
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  Out();
  Feed(MakeSyncStart(1, Hash128{1, 1}));
  Out();
  Feed(NodesRequest{.sync_id = 1, .paths = {""}});
  EXPECT_EQ(One<Nodes>(Out()).summaries.size(), 1u);
  Feed(Repair{.sync_id = 1, .ops = {Put("a", "repair")}});
  EXPECT_EQ(ValueOf(follower_.data(), "a"), "repair");
  Feed(NodesRequest{.sync_id = 1, .paths = {""}});
  ExpectProtocolError("NodesRequest after the diff's repairs");
}

TEST_F(ClientSessionTest, RepairWithRangeDeleteIsProtocolError) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  Out();
  Feed(MakeSyncStart(1, Hash128{1, 1}));
  Out();
  Feed(Repair{.sync_id = 1, .ops = {DelRange("a", "z")}});
  ExpectProtocolError("only puts and deletes");
  EXPECT_TRUE(writes_.empty());
}

TEST_F(ClientSessionTest, BootstrapChunkOutsideBootstrapIsProtocolError) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(20);
  Feed(BootstrapChunk{.seq = 10, .entries = {Put("a", "1")}, .last = true});
  ExpectProtocolError("BootstrapChunk outside a bootstrap");
  EXPECT_TRUE(writes_.empty());
}

TEST_F(ClientSessionTest, BootstrapSkipsKeysStreamedSinceItBegan) {
  std::vector<Message> out = Connect(MakeWelcome(StartMode::kBootstrap, 10, 11));
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(session().bootstrapping());
  EXPECT_EQ(Events()[0].mode, StartMode::kBootstrap);
  Feed(Batch{.seq = 11, .count = 1, .ops = {Put("k2", "stream")}});
  Feed(Batch{.seq = 12, .count = 1, .ops = {Del("k3")}});
  Feed(Batch{.seq = 13, .count = 1, .ops = {DelRange("k5", "k7")}});
  ASSERT_EQ(writes_.size(), 3u);
  EXPECT_EQ(writes_[2].state, (FollowerState{"m1", 0, true, 0, ""}));

  Feed(BootstrapChunk{.seq = 10,
                      .entries = {Put("k1", "boot"), Put("k2", "boot"), Put("k3", "boot")},
                      .last = false});
  EXPECT_EQ(ValueOf(follower_.data(), "k1"), "boot");
  EXPECT_EQ(ValueOf(follower_.data(), "k2"), "stream");
  EXPECT_EQ(ValueOf(follower_.data(), "k3"), std::nullopt);
  ASSERT_EQ(writes_.size(), 4u);
  EXPECT_EQ(writes_[3].source, ApplyRequest::Source::kBootstrap);
  EXPECT_EQ(writes_[3].ops, (std::vector<Op>{Put("k1", "boot")}));
  EXPECT_EQ(writes_[3].state, (FollowerState{"m1", 0, true, 0, "k3"}));
  EXPECT_TRUE(Out().empty());

  Feed(BootstrapChunk{
      .seq = 10,
      .entries = {Put("k4", "boot"), Put("k5", "boot"), Put("k6", "boot"), Put("k7", "boot")},
      .last = true});
  EXPECT_EQ(writes_.back().ops, (std::vector<Op>{Put("k4", "boot"), Put("k7", "boot")}));
  EXPECT_EQ(writes_.back().state, (FollowerState{"m1", 0, false, 0, ""}));
  EXPECT_FALSE(session().bootstrapping());
  EXPECT_FALSE(session().consistent());
  EXPECT_EQ(Names(Out()), "SyncRequest");  // the diff that checks the bootstrap

  RunEqualDiff(1);
  EXPECT_EQ(writes_.back().source, ApplyRequest::Source::kStateOnly);
  EXPECT_EQ(follower_.state(), (FollowerState{"m1", 13}));
  EXPECT_TRUE(session().consistent());
}

TEST_F(ClientSessionTest, BootstrapChunkWithDeleteIsProtocolError) {
  Connect(MakeWelcome(StartMode::kBootstrap, 10, 11));
  Feed(BootstrapChunk{.seq = 10, .entries = {Del("a")}, .last = true});
  ExpectProtocolError("not a put");
  EXPECT_TRUE(writes_.empty());
}

TEST_F(ClientSessionTest, BootstrapChunkAfterTheLastIsProtocolError) {
  Connect(MakeWelcome(StartMode::kBootstrap, 10, 11));
  Feed(BootstrapChunk{.seq = 10, .entries = {Put("a", "1")}, .last = true});
  Out();
  Feed(BootstrapChunk{.seq = 10, .entries = {Put("b", "1")}, .last = true});
  ExpectProtocolError("BootstrapChunk outside a bootstrap");
}

TEST_F(ClientSessionTest, RequestSyncWhileBootstrappingWaitsForTheCatchUpDiff) {
  Connect(MakeWelcome(StartMode::kBootstrap, 10, 11));
  session().RequestSync();
  EXPECT_TRUE(Out().empty());
  Feed(BootstrapChunk{.seq = 10, .entries = {Put("a", "1")}, .last = true});
  EXPECT_EQ(Names(Out()), "SyncRequest");
}

TEST_F(ClientSessionTest, PingIsAnsweredWithPongCarryingAppliedSeq) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(20);
  Feed(Batch{.seq = 11, .count = 3, .ops = {Put("a", "1")}});
  Feed(Ping{.master_seq = 25, .master_time_ms = 777});
  EXPECT_EQ(One<Pong>(Out()), (Pong{.applied_seq = 13, .echo_time_ms = 777}));
  EXPECT_EQ(session().master_seq(), 25u);
}

TEST_F(ClientSessionTest, RequestSyncWhileDiffRunsIsSentAfterSyncDone) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(20);
  session().RequestSync();
  session().RequestSync();  // asked already: one request
  EXPECT_EQ(Names(Out()), "SyncRequest");
  Feed(MakeSyncStart(1, Hash128{1, 1}));
  Out();
  session().RequestSync();
  EXPECT_TRUE(Out().empty());
  EXPECT_FALSE(session().idle());
  Feed(SyncDone{.sync_id = 1});
  EXPECT_EQ(Names(Out()), "SyncRequest");
}

TEST_F(ClientSessionTest, RequestSyncBeforeStreamingIsIgnored) {
  session().RequestSync();
  EXPECT_TRUE(Out().empty());
  Start();
  session().RequestSync();
  EXPECT_TRUE(Out().empty());
}

TEST_F(ClientSessionTest, MessagesOutOfTheirStateAreProtocolErrors) {
  struct Case {
    int stage;  // 0: not started, 1: awaiting Challenge, 2: awaiting Welcome, 3: streaming
    Message message;
  };
  const std::vector<Case> cases = {
      {0, Challenge{.version = 1, .server_nonce = std::string(kNonceBytes, 's')}},
      {0, Batch{.seq = 1, .count = 1}},
      {1, MakeWelcome(StartMode::kDiff, 1, 2)},
      {1, Batch{.seq = 1, .count = 1}},
      {1, Ping{}},
      {2, Challenge{.version = 1, .server_nonce = std::string(kNonceBytes, 's')}},
      {2, Batch{.seq = 1, .count = 1}},
      {2, SyncStart{.sync_id = 1, .hash_bytes = 2}},
      {3, MakeWelcome(StartMode::kDiff, 1, 2)},
      {3, Challenge{.version = 1, .server_nonce = std::string(kNonceBytes, 's')}},
      {3, Hello{.min_version = 1, .max_version = 1, .client_nonce = std::string(32, 'c')}},
      {3, Auth{}},
      {3, SyncRequest{}},
      {3, SyncRoot{.sync_id = 1}},
      {3, Nodes{.sync_id = 1}},
      {3, Pong{}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.stage) + " " + MessageName(c.message));
    NewSession();
    state_ = FollowerState{"m1", 10};
    if (c.stage >= 1) Start();
    if (c.stage >= 2) {
      Feed(ChallengeFor(Hello{}, nullptr));
      Out();
    }
    if (c.stage >= 3) {
      Feed(MakeWelcome(StartMode::kResume, 20, 11));
      Out();
    }
    Feed(c.message);
    ExpectProtocolError(std::string("unexpected ") + MessageName(c.message));
    EXPECT_TRUE(writes_.empty());
  }
}

TEST_F(ClientSessionTest, PeerRejectClosesWithItsReason) {
  Start();
  Feed(Reject{RejectCode::kAuth, "authentication failed: wrong secret"});
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsAborted());
  EXPECT_NE(session().error().message().find("wrong secret"), std::string::npos);
  EXPECT_TRUE(Out().empty());  // no Reject echoed back
  std::vector<ClientEvent> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ClientEvent::Kind::kClosed);
}

TEST_F(ClientSessionTest, GarbageBytesCloseWithCorruption) {
  Start();
  session().OnBytes(std::string("\x00\x00\x00\x00", 4));  // a zero length prefix
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsCorruption()) << session().error().ToString();
  EXPECT_EQ(LastReject(Out()).code, RejectCode::kProtocol);
}

TEST_F(ClientSessionTest, OversizeLengthPrefixClosesWithCorruption) {
  options_.max_frame = 100;
  Start();
  session().OnBytes(std::string("\x65\x00\x00\x00", 4));  // 101 bytes follow
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsCorruption()) << session().error().ToString();
}

TEST_F(ClientSessionTest, WriteFailureClosesWithIOError) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(20);
  write_error_ = Status::IOError("disk full");
  Feed(Batch{.seq = 11, .count = 1, .ops = {Put("a", "1")}});
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsIOError()) << session().error().ToString();
  EXPECT_NE(session().error().message().find("disk full"), std::string::npos);
  EXPECT_NE(LastReject(Out()).reason.find("disk full"), std::string::npos);
  EXPECT_EQ(ValueOf(follower_.data(), "a"), std::nullopt);
  std::vector<ClientEvent> events = Events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().kind, ClientEvent::Kind::kClosed);
  EXPECT_TRUE(events.back().status.IsIOError());
}

// The follower's own disk failing is not the master's protocol fault; the
// Reject should say so (kInternal), as the master's own Fail calls do.
TEST_F(ClientSessionTest, LocalWriteFailureIsNotReportedAsProtocolViolation) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(20);
  write_error_ = Status::IOError("disk full");
  Feed(Batch{.seq = 11, .count = 1, .ops = {Put("a", "1")}});
  EXPECT_EQ(LastReject(Out()).code, RejectCode::kInternal);
}

// Stream batches that arrive in one read are written together: one write
// holding each batch whole, with the state as of the last.
TEST_F(ClientSessionTest, BatchesInOneReadAreAppliedAsOneWrite) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(20);
  writes_.clear();
  session().OnBytes(Frame(Batch{.seq = 11, .count = 2, .ops = {Put("a", "1"), Put("b", "1")}}) +
                    Frame(Batch{.seq = 13, .count = 1, .ops = {Put("a", "2")}}) +
                    Frame(Batch{.seq = 14, .count = 3, .ops = {Del("b"), Put("c", "3")}}));
  ASSERT_EQ(writes_.size(), 1u);
  EXPECT_EQ(writes_[0].source, ApplyRequest::Source::kStream);
  EXPECT_EQ(writes_[0].ops, (std::vector<Op>{Put("a", "1"), Put("b", "1"), Put("a", "2"), Del("b"),
                                             Put("c", "3")}));
  EXPECT_EQ(writes_[0].stream_seq, 11u);
  EXPECT_EQ(writes_[0].state, (FollowerState{"m1", 16}));
  EXPECT_EQ(follower_.state().applied_seq, 16u);
  EXPECT_EQ(session().applied_seq(), 16u);
  EXPECT_EQ(ValueOf(follower_.data(), "a"), "2");
  EXPECT_EQ(ValueOf(follower_.data(), "b"), std::nullopt);
  EXPECT_EQ(ValueOf(follower_.data(), "c"), "3");
  // Caught up with Welcome's master_seq (20) only with the next read.
  EXPECT_TRUE(Out().empty());
  session().OnBytes(Frame(Batch{.seq = 17, .count = 4, .ops = {Put("d", "4")}}));
  EXPECT_EQ(writes_.size(), 2u);
  EXPECT_EQ(Names(Out()), "SyncRequest");
  // One report of its position per read, not per batch: after the Welcome,
  // after the three batches, after the fourth.
  EXPECT_EQ(reports_, (std::vector<uint64_t>{10, 16, 20}));
  Feed(Ping{.master_seq = 20, .master_time_ms = 5});
  EXPECT_EQ(One<Pong>(Out()), (Pong{.applied_seq = 20, .echo_time_ms = 5}));
  Feed(Ping{.master_seq = 20, .master_time_ms = 6});
  Out();
  EXPECT_EQ(reports_.size(), 3u) << "nothing applied since: no report";
}

// Any other message sees the batches before it written: a SyncStart between
// batches snapshots the tree with the earlier ones and without the later.
TEST_F(ClientSessionTest, NonBatchFrameWritesTheBatchesBeforeIt) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  Out();
  RunEqualDiff(1);
  Out();
  writes_.clear();
  MemoryFollower expected;
  expected.Put(0, "a", "1");
  expected.Put(0, "b", "1");
  session().OnBytes(Frame(Batch{.seq = 11, .count = 1, .ops = {Put("a", "1")}}) +
                    Frame(Batch{.seq = 12, .count = 1, .ops = {Put("b", "1")}}) +
                    Frame(MakeSyncStart(2, expected.tree().root_hash())) +
                    Frame(Batch{.seq = 13, .count = 1, .ops = {Put("c", "1")}}) +
                    Frame(Ping{.master_seq = 13, .master_time_ms = 5}));
  ASSERT_EQ(writes_.size(), 2u);
  EXPECT_EQ(writes_[0].ops, (std::vector<Op>{Put("a", "1"), Put("b", "1")}));
  EXPECT_EQ(writes_[0].state.applied_seq, 12u);
  EXPECT_EQ(writes_[1].ops, (std::vector<Op>{Put("c", "1")}));
  EXPECT_EQ(writes_[1].state.applied_seq, 13u);
  std::vector<Message> out = Out();
  ASSERT_EQ(Names(out), "SyncRoot Pong");
  EXPECT_TRUE(std::get<SyncRoot>(out[0]).equal);
  EXPECT_EQ(std::get<Pong>(out[1]).applied_seq, 13u);
}

// A write of several batches that fails persists none of them.
TEST_F(ClientSessionTest, FailedGroupWriteClosesWithoutPersistingAnyBatch) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(13);
  Feed(Batch{.seq = 11, .count = 1, .ops = {Put("a", "1")}});
  ASSERT_EQ(follower_.state().applied_seq, 11u);
  writes_.clear();
  write_error_ = Status::IOError("disk full");
  session().OnBytes(Frame(Batch{.seq = 12, .count = 1, .ops = {Put("a", "2")}}) +
                    Frame(Batch{.seq = 13, .count = 1, .ops = {Put("b", "1")}}) +
                    Frame(Ping{.master_seq = 13, .master_time_ms = 5}));
  ASSERT_EQ(writes_.size(), 1u);
  EXPECT_EQ(writes_[0].ops.size(), 2u);
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsIOError()) << session().error().ToString();
  EXPECT_EQ(Names(Out()), "Reject");  // no Pong, no SyncRequest
  EXPECT_EQ(follower_.state().applied_seq, 11u);
  EXPECT_EQ(ValueOf(follower_.data(), "a"), "1");
  EXPECT_EQ(ValueOf(follower_.data(), "b"), std::nullopt);
}

// A batch that breaks the stream ends the session after the batches before it
// in the same read are written, as when each arrived alone.
TEST_F(ClientSessionTest, RepeatedBatchInAGroupWritesTheOnesBeforeIt) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(20);
  writes_.clear();
  session().OnBytes(Frame(Batch{.seq = 11, .count = 1, .ops = {Put("a", "1")}}) +
                    Frame(Batch{.seq = 11, .count = 1, .ops = {Put("a", "again")}}) +
                    Frame(Batch{.seq = 12, .count = 1, .ops = {Put("b", "1")}}));
  ASSERT_EQ(writes_.size(), 1u);
  EXPECT_EQ(writes_[0].ops, (std::vector<Op>{Put("a", "1")}));
  EXPECT_EQ(follower_.state().applied_seq, 11u);
  ExpectProtocolError("repeats the stream");
  EXPECT_EQ(ValueOf(follower_.data(), "a"), "1");
  EXPECT_EQ(ValueOf(follower_.data(), "b"), std::nullopt);
}

// Long bursts are cut into several writes rather than one unbounded one.
TEST_F(ClientSessionTest, LongBurstOfBatchesIsSplitIntoBoundedWrites) {
  state_ = FollowerState{"m1", 10};
  ConnectResumed(10);
  writes_.clear();
  std::string bytes;
  const uint64_t n = 25000;
  for (uint64_t i = 0; i < n; ++i) {
    bytes += Frame(Batch{.seq = 11 + i, .count = 1, .ops = {Put("k" + std::to_string(i), "v")}});
  }
  session().OnBytes(bytes);
  EXPECT_FALSE(session().closed()) << session().error().ToString();
  ASSERT_GT(writes_.size(), 1u);
  size_t ops = 0;
  for (const WriteRecord& w : writes_) {
    EXPECT_LE(w.ops.size(), 10000u);
    ops += w.ops.size();
  }
  EXPECT_EQ(ops, n);
  EXPECT_EQ(follower_.state().applied_seq, 10 + n);
}

// A master never sends resume_from 0 (its stream starts at 1); taking one
// makes applied_seq wrap to 2^64-1, which is then reported and persisted.
TEST_F(ClientSessionTest, WelcomeWithResumeFromZeroIsProtocolError) {
  Start();
  Feed(ChallengeFor(Hello{}, nullptr));
  Out();
  Feed(MakeWelcome(StartMode::kDiff, 0, 0));
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsProtocolError()) << session().error().ToString();
  EXPECT_NE(session().applied_seq(), UINT64_MAX);
}

// Progress through another master's snapshot means nothing to this one: kept,
// a reconnect would ask the new master to resume after a key it never sent.
TEST_F(ClientSessionTest, BootstrapFromAnotherMasterForgetsOldProgress) {
  state_ = FollowerState{"m0", 0, true, 0, "k5"};
  Connect(MakeWelcome(StartMode::kBootstrap, 10, 11, "m1"));
  Feed(Batch{.seq = 11, .count = 1, .ops = {Put("x", "1")}});
  ASSERT_EQ(writes_.size(), 1u);
  EXPECT_EQ(writes_[0].state, (FollowerState{"m1", 0, true, 0, ""}));
}

TEST_F(ClientSessionTest, SilentMasterTimesOut) {
  options_.idle_timeout_ms = 500;
  Start();
  session().OnTick(0);
  session().OnTick(400);
  Feed(ChallengeFor(Hello{}, nullptr));  // heard at 400
  session().OnTick(900);
  EXPECT_FALSE(session().closed());
  session().OnTick(901);
  EXPECT_TRUE(session().closed());
  EXPECT_TRUE(session().error().IsAborted());
  EXPECT_NE(session().error().message().find("silent"), std::string::npos);
}

// ---------------------------------------------------------------------------
// Both sessions together

// Runs the two sessions against each other until no bytes move, doing the
// embedder's duties as Link does; unlike Link, the hooks are the caller's.
void Converse(ServerSession& server, const MasterHooks& hooks, ClientSession& client,
              const MemoryMaster& master) {
  for (int round = 0; round < 1000; ++round) {
    ServeDbRequestsNow(server, hooks);
    while (auto event = server.PollEvent()) {
      if (event->kind == ServerEvent::Kind::kStreamFrom) {
        for (const Batch* batch : master.LogFrom(event->seq)) server.OnBatch(*batch);
      } else if (event->kind == ServerEvent::Kind::kWantSnapshot) {
        server.StartSync(master.tree().Snapshot());
      }
    }
    std::string to_follower = server.TakeOutput();
    bool served = ServeDbRequestsNow(server, hooks);
    std::string to_master = client.TakeOutput();
    if (to_follower.empty() && to_master.empty() && !served) return;
    client.OnBytes(to_follower);
    server.OnBytes(to_master);
  }
  ADD_FAILURE() << "the sessions never went quiet";
}

class SessionLinkTest : public ::testing::Test {
 protected:
  void WriteKeys(int from, int to) {
    for (int i = from; i < to; ++i) {
      master_.Write({Put("k" + std::to_string(i), "v" + std::to_string(i))});
    }
  }

  std::mt19937_64 rng_{4242};
  MemoryMaster master_{"m1"};
  MemoryFollower follower_;
};

TEST_F(SessionLinkTest, IdenticalFollowerDiffTakesOneRoundTripAndFewBytes) {
  WriteKeys(0, 200);
  Link link(&master_, &follower_, &rng_);
  link.Start();
  ASSERT_TRUE(link.RunUntilQuiet());
  ASSERT_TRUE(link.quiescent());
  ASSERT_EQ(follower_.data(), master_.data());
  LinkStats before = link.stats();
  uint64_t to_follower = link.bytes_to_follower();
  uint64_t to_master = link.bytes_to_master();

  link.RequestSyncFromFollower();
  ASSERT_TRUE(link.RunUntilQuiet());
  EXPECT_TRUE(link.quiescent());
  EXPECT_EQ(link.stats().syncs, before.syncs + 1);
  EXPECT_EQ(link.stats().repaired, before.repaired);
  EXPECT_EQ(link.server().last_sync_round_trips(), 1);
  EXPECT_LT(link.bytes_to_follower() - to_follower, 100u);
  EXPECT_LT(link.bytes_to_master() - to_master, 100u);
  EXPECT_GT(link.bytes_to_follower() - to_follower, 0u);
}

// The diff benchmark's overhead is all bytes but this payload, so it must be
// exactly what the repairs carried: worked out by hand here.
TEST_F(SessionLinkTest, RepairPayloadIsTheKeysAndValuesOfTheRepairedPuts) {
  master_.Write({Put("alpha", "1"), Put("bravo", "22"), Put("charlie", "333")});
  // A follower of this master at its position, with bravo changed, charlie
  // missing and delta extra: it resumes, then its first diff repairs them.
  follower_.Load({{{0, "alpha"}, "1"}, {{0, "bravo"}, "XX"}, {{0, "delta"}, "4444"}});
  follower_.SetState(FollowerState{master_.id(), master_.seq(), false, 0, ""});
  Link link(&master_, &follower_, &rng_);
  link.Start();
  ASSERT_TRUE(link.RunUntilQuiet());
  ASSERT_TRUE(link.quiescent());
  EXPECT_EQ(follower_.data(), master_.data());
  EXPECT_EQ(link.stats().repaired, 3u);
  // bravo=22 and charlie=333 are put: 5+2 and 7+3 bytes; delta's delete
  // carries nothing the follower did not hold.
  EXPECT_EQ(link.stats().repair_payload_bytes, 17u);
}

// A master of `keys` keys and a follower of the same data with three
// differences (a changed value, a missing key, an extra key) that resumes and
// diffs; counts the diff from after the handshake.
struct ThreeDifferences {
  int round_trips = 0;
  uint64_t overhead_bytes = 0;  // both ways, less the repairs' keys and values
  bool equal = false;
};
ThreeDifferences DiffThreeDifferences(int keys, std::mt19937_64* rng) {
  MemoryMaster master("m1");
  std::vector<Op> ops;
  for (int i = 0; i < keys; ++i) ops.push_back(Put("k" + std::to_string(i), "v"));
  master.Write(std::move(ops));
  KeyValueMap data = master.data();
  data[{0, "k7"}] = "changed";
  data.erase({0, "k77"});
  data[{0, "extra"}] = "x";
  MemoryFollower follower;
  follower.Load(std::move(data));
  follower.SetState(FollowerState{master.id(), master.seq(), false, 0, ""});
  Link link(&master, &follower, rng);
  link.Start();
  link.DeliverToMaster(SIZE_MAX);    // Hello
  link.DeliverToFollower(SIZE_MAX);  // Challenge
  link.DeliverToMaster(SIZE_MAX);    // Auth
  uint64_t handshake = link.bytes_to_follower() + link.bytes_to_master();
  ThreeDifferences r;
  r.equal = link.RunUntilQuiet() && !link.closed() && follower.data() == master.data() &&
            link.stats().syncs == 1 && link.stats().retries == 0;
  r.round_trips = link.server().last_sync_round_trips();
  r.overhead_bytes = link.bytes_to_follower() + link.bytes_to_master() - handshake -
                     link.stats().repair_payload_bytes;
  return r;
}

// Few differences among enough keys that the root and its children hold more
// than kFoldAbove children each: the follower's root summary is folded (its
// lines show the three differing children), the master probes each of them
// with its own folded summary, and the follower answers with the leaves that
// differ below. Two exchanges, and bytes that follow the differences, not the
// 40,000 keys: SyncStart and a 129-byte folded root, three probes of 2
// families (65 bytes each), three answers of a leaf or two, the repairs.
TEST_F(SessionLinkTest, FewDifferencesAmongManyKeysTakeTwoExchanges) {
  ThreeDifferences r = DiffThreeDifferences(40000, &rng_);
  ASSERT_TRUE(r.equal);
  EXPECT_EQ(r.round_trips, 2);
  EXPECT_EQ(r.overhead_bytes, 580u);
}

// Fewer keys, a summary of children in full: still two exchanges.
TEST_F(SessionLinkTest, FewDifferencesAmongFewKeysTakeTwoExchanges) {
  ThreeDifferences r = DiffThreeDifferences(2000, &rng_);
  ASSERT_TRUE(r.equal);
  EXPECT_EQ(r.round_trips, 2);
  EXPECT_EQ(r.overhead_bytes, 423u);
}

TEST_F(SessionLinkTest, RestartedFollowerResumesAndEndsEqualWithoutRepairs) {
  WriteKeys(0, 50);
  {
    Link first(&master_, &follower_, &rng_);
    first.Start();
    ASSERT_TRUE(first.RunUntilQuiet());
    ASSERT_TRUE(first.quiescent());
    EXPECT_EQ(first.stats().diffs, 1);
    WriteKeys(50, 60);
    for (const Batch* batch : master_.LogFrom(51)) first.OnMasterBatch(*batch);
    ASSERT_TRUE(first.RunUntilQuiet());
    ASSERT_EQ(follower_.state(), (FollowerState{"m1", 60}));
  }
  WriteKeys(60, 70);  // written while the follower is down
  follower_.Restart();
  Link second(&master_, &follower_, &rng_);
  second.Start();
  ASSERT_TRUE(second.RunUntilQuiet());
  EXPECT_TRUE(second.quiescent());
  EXPECT_EQ(second.stats().resumes, 1);
  EXPECT_EQ(second.stats().diffs, 0);
  EXPECT_EQ(second.stats().bootstraps, 0);
  EXPECT_EQ(second.stats().syncs, 1);  // the catch-up check
  EXPECT_EQ(second.stats().repaired, 0u);
  EXPECT_EQ(second.server().last_sync_round_trips(), 1);
  EXPECT_EQ(follower_.data(), master_.data());
  EXPECT_TRUE(second.client().consistent());
  EXPECT_EQ(follower_.state(), (FollowerState{"m1", 70}));
}

TEST_F(SessionLinkTest, DamagedFollowerIsRepairedOnResume) {
  WriteKeys(0, 50);
  {
    Link first(&master_, &follower_, &rng_);
    first.Start();
    ASSERT_TRUE(first.RunUntilQuiet());
  }
  follower_.Put(0, "rogue", "x");
  follower_.Delete(0, "k7");
  follower_.Put(0, "k8", "damaged");
  follower_.Restart();
  Link second(&master_, &follower_, &rng_);
  second.Start();
  ASSERT_TRUE(second.RunUntilQuiet());
  EXPECT_TRUE(second.quiescent());
  EXPECT_EQ(second.stats().resumes, 1);
  EXPECT_EQ(second.stats().repaired, 3u);
  EXPECT_EQ(follower_.data(), master_.data());
}

TEST_F(SessionLinkTest, AuthenticatedPeersConnectAndMismatchedSecretsDoNot) {
  WriteKeys(0, 5);
  FakeAuthenticator secret("s1"), other("s2");
  {
    LinkOptions options;
    options.server.authenticator = &secret;
    options.client.authenticator = &secret;
    Link link(&master_, &follower_, &rng_, options);
    link.Start();
    ASSERT_TRUE(link.RunUntilQuiet());
    EXPECT_TRUE(link.quiescent());
    EXPECT_EQ(follower_.data(), master_.data());
  }
  MemoryFollower stranger;
  LinkOptions options;
  options.server.authenticator = &secret;
  options.client.authenticator = &other;
  Link link(&master_, &stranger, &rng_, options);
  link.Start();
  ASSERT_TRUE(link.RunUntilQuiet());
  EXPECT_TRUE(link.closed());
  EXPECT_TRUE(link.client().closed());
  EXPECT_TRUE(stranger.data().empty());
}

TEST_F(SessionLinkTest, FollowerWriteFailureClosesBothSidesWithIOError) {
  WriteKeys(0, 5);
  MasterHooks master_hooks = master_.Hooks(&rng_);
  ServerSession server(master_.Options(), master_hooks);
  FollowerHooks hooks = follower_.Hooks(&rng_);
  int writes = 0;
  hooks.write = [&writes](const ApplyRequest&) {
    ++writes;
    return Status::IOError("disk full");
  };
  ClientSession client(ClientOptions{}, std::move(hooks), FollowerState{});
  client.Start();
  Converse(server, master_hooks, client, master_);
  EXPECT_EQ(writes, 1);  // the first repair, then nothing
  EXPECT_TRUE(client.closed());
  EXPECT_TRUE(client.error().IsIOError()) << client.error().ToString();
  EXPECT_NE(client.error().message().find("disk full"), std::string::npos);
  EXPECT_TRUE(server.closed());
  EXPECT_NE(server.error().message().find("disk full"), std::string::npos)
      << server.error().ToString();
  EXPECT_TRUE(follower_.data().empty());
}

}  // namespace
}  // namespace testing
}  // namespace sdiff

namespace sdiff {
namespace {

// Lag is how long the follower has known of a master sequence it has not
// applied yet, on its own clock.
TEST(ClientSessionLagTest, LagCountsFromFallingBehindUntilCaughtUp) {
  std::mt19937_64 rng(7);
  testing::MemoryFollower store;
  ClientSession session(ClientOptions{}, store.Hooks(&rng), FollowerState{});
  session.OnTick(1000);
  session.Start();
  (void)session.TakeOutput();
  std::string in;
  wire::AppendFrame(Challenge{wire::kProtocolVersion, std::string(32, 's'), ""}, &in);
  Welcome welcome;
  welcome.master_id = "m";
  welcome.master_seq = 0;
  welcome.mode = StartMode::kDiff;
  welcome.resume_from = 1;
  wire::AppendFrame(welcome, &in);
  session.OnBytes(in);
  ASSERT_TRUE(session.streaming()) << session.error().ToString();
  EXPECT_EQ(session.lag_ms(), 0);

  in.clear();
  wire::AppendFrame(Ping{5, 0}, &in);  // the master is at 5, we are at 0
  session.OnBytes(in);
  session.OnTick(1250);
  EXPECT_EQ(session.lag_ms(), 250);

  in.clear();
  wire::AppendFrame(Batch{1, 5, {Op{OpKind::kPut, 0, "k", "v"}}}, &in);
  session.OnBytes(in);
  EXPECT_EQ(session.applied_seq(), 5u);
  EXPECT_EQ(session.lag_ms(), 0);
}

}  // namespace
}  // namespace sdiff
