// The cloner role, sans-I/O: a ServerSession serving an in-memory FileSource
// to a CloneSession, both joined in memory, and each side refusing what breaks
// the protocol (the client checked with hand-made frames).
#include "engine/clone_session.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/hash.h"
#include "engine/server_session.h"
#include "engine/testing/fake_authenticator.h"
#include "engine/testing/serve_db.h"
#include "engine/wire.h"

namespace sdiff {
namespace {

using namespace std::string_literals;
using testing::FakeAuthenticator;

// Files held in memory. Read can be made to fail or come up short at one
// file; `released` turns true when the session lets the source go.
class MemoryFiles : public FileSource {
 public:
  MemoryFiles(const std::vector<std::pair<std::string, std::string>>& files, bool* released)
      : released_(released) {
    for (const auto& [name, data] : files) {
      files_.push_back({name, data.size()});
      data_.push_back(data);
    }
  }
  ~MemoryFiles() override { *released_ = true; }

  const std::vector<File>& files() const override { return files_; }
  Status Read(size_t index, uint64_t offset, size_t max_bytes, std::string* out) override {
    ++reads;
    if (fail_index && *fail_index == index) return Status::IOError("disk on fire");
    *out = data_[index].substr(offset, max_bytes);
    if (short_index && *short_index == index) out->resize(out->size() / 2);
    return Status::OK();
  }

  std::optional<size_t> fail_index;   // Read of this file fails
  std::optional<size_t> short_index;  // Read of this file returns half of what it should
  int reads = 0;

 private:
  std::vector<File> files_;
  std::vector<std::string> data_;
  bool* released_;
};

std::string FrameOf(const Message& m) {
  std::string out;
  wire::AppendFrame(m, &out);
  return out;
}

// Every frame in `bytes`, decoded.
std::vector<Message> Frames(std::string_view bytes) {
  std::vector<Message> out;
  wire::FrameReader reader;
  Status s = reader.Drain(bytes, [&](Message& m) {
    out.push_back(std::move(m));
    return true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(reader.buffered(), 0u);
  return out;
}

template <typename T>
std::vector<T> Only(const std::vector<Message>& messages) {
  std::vector<T> out;
  for (const Message& m : messages) {
    if (auto* t = std::get_if<T>(&m)) out.push_back(*t);
  }
  return out;
}

// A chunk whose hash matches its data.
FileChunk Chunk(std::string name, uint64_t file_size, uint64_t offset, std::string data,
                bool last = false) {
  FileChunk c{std::move(name), file_size, offset, std::move(data), 0, last};
  c.data_hash = DataHash64(c.data);
  return c;
}

std::string Random(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

class CloneSessionTest : public ::testing::Test {
 protected:
  CloneSessionTest() {
    files_ = {{"000007.sst", Random(rng_, 350)},
              {"MANIFEST-000005", Random(rng_, 120)},
              {"OPTIONS-000009", ""},
              {"CURRENT", "MANIFEST-000005\n"}};
  }

  std::unique_ptr<ServerSession> Server(bool serves_files = true) {
    ServerOptions options;
    options.master_id = "m1";
    options.families = {{0, "default"}, {3, "meta"}};
    options.bulk_frame_bytes = kBulkFrameBytes;
    options.bootstrap_min_keys = 10;
    options.authenticator = server_auth_;
    MasterHooks hooks;
    hooks.current_seq = [] { return uint64_t{42}; };
    hooks.key_count = [this] { return keys_; };
    hooks.random_bytes = [this](uint8_t* out, size_t n) { Fill(out, n); };
    if (serves_files) {
      hooks.open_files = [this](std::unique_ptr<FileSource>* out) {
        ++opens_;
        if (!open_error_.ok()) return open_error_;
        auto source = std::make_unique<MemoryFiles>(files_, &released_);
        source_ = source.get();
        source->fail_index = fail_index_;
        source->short_index = short_index_;
        *out = std::move(source);
        return Status::OK();
      };
    }
    hooks_ = hooks;
    return std::make_unique<ServerSession>(options, hooks);
  }

  // The server's output, its database work (opening and reading the files)
  // done as it asks.
  std::string Take(ServerSession& server) {
    return testing::TakeOutputServingDb(server, hooks_, kBulkFrameBytes);
  }

  std::unique_ptr<CloneSession> Clone() {
    CloneOptions options;
    options.authenticator = client_auth_;
    CloneHooks hooks;
    hooks.random_bytes = [this](uint8_t* out, size_t n) { Fill(out, n); };
    hooks.write = [this](const FileChunk& chunk) {
      ++writes_;
      if (!write_error_.ok()) return write_error_;
      std::string& file = written_[chunk.name];
      EXPECT_EQ(file.size(), chunk.offset) << chunk.name;
      file += chunk.data;
      return Status::OK();
    };
    return std::make_unique<CloneSession>(options, std::move(hooks));
  }

  void Fill(uint8_t* out, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(rng_());
  }

  // Moves bytes both ways until neither side has anything to say; keeps what
  // the master sent in to_clone_.
  void Exchange(ServerSession& server, CloneSession& clone) {
    for (int round = 0; round < 1000; ++round) {
      std::string to_master = clone.TakeOutput();
      if (!to_master.empty()) server.OnBytes(to_master);
      std::string to_clone = Take(server);
      to_clone_ += to_clone;
      if (!to_clone.empty()) clone.OnBytes(to_clone);
      if (to_master.empty() && to_clone.empty()) return;
    }
    FAIL() << "the sessions did not settle";
  }

  // Hello, Challenge, Auth and the files opened, and nothing more from the
  // master (its Welcome and the first chunk wait for a Take).
  void Handshake(ServerSession& server, CloneSession& clone) {
    clone.Start();
    server.OnBytes(clone.TakeOutput());  // Hello
    clone.OnBytes(Take(server));         // Challenge
    server.OnBytes(clone.TakeOutput());  // Auth
    ServeDbRequestsNow(server, hooks_);  // the files opened: the Welcome waits
  }

  std::vector<ServerEvent> Events(ServerSession& server) {
    std::vector<ServerEvent> events;
    while (auto e = server.PollEvent()) events.push_back(*e);
    return events;
  }

  // Runs a whole session and expects the master to refuse with `code`.
  void ExpectRefused(RejectCode code, std::string_view reason) {
    auto server = Server(serves_files_);
    auto clone = Clone();
    clone->Start();
    Exchange(*server, *clone);
    EXPECT_TRUE(clone->closed());
    EXPECT_FALSE(clone->done());
    EXPECT_TRUE(clone->error().IsAborted()) << clone->error().ToString();
    EXPECT_NE(clone->error().message().find("master refused: "), std::string::npos);
    EXPECT_NE(clone->error().message().find(reason), std::string::npos)
        << clone->error().ToString();
    EXPECT_EQ(clone->reject_code(), code);
    EXPECT_EQ(clone->refused_role(), code == RejectCode::kRole);
    EXPECT_TRUE(server->closed());
    EXPECT_FALSE(server->error().ok());
  }

  static constexpr size_t kBulkFrameBytes = 100;
  std::mt19937_64 rng_{1234};
  MasterHooks hooks_;  // the last Server's
  std::vector<std::pair<std::string, std::string>> files_;
  uint64_t keys_ = 1000;
  bool serves_files_ = true;
  Status open_error_;
  std::optional<size_t> fail_index_, short_index_;
  const Authenticator* server_auth_ = nullptr;
  const Authenticator* client_auth_ = nullptr;
  bool released_ = false;
  MemoryFiles* source_ = nullptr;  // valid until released_
  int opens_ = 0;
  Status write_error_;
  int writes_ = 0;
  std::map<std::string, std::string> written_;
  std::string to_clone_;
};

// ---- the copy ----

TEST(DataHashTest, IsXxh3SixtyFourWithSeedZero) {
  // Known answers from `xxhsum -H3`.
  EXPECT_EQ(DataHash64(""), 0x2d06800538d394c2ULL);
  EXPECT_EQ(DataHash64("abc"), 0x78af5f94892f3950ULL);
}

TEST_F(CloneSessionTest, FilesAreCopiedByteExactInOrder) {
  auto server = Server();
  auto clone = Clone();
  clone->Start();
  Exchange(*server, *clone);

  ASSERT_TRUE(clone->done()) << clone->error().ToString();
  EXPECT_TRUE(clone->finished());
  EXPECT_FALSE(clone->closed());
  EXPECT_TRUE(clone->error().ok());
  EXPECT_EQ(written_, (std::map<std::string, std::string>(files_.begin(), files_.end())));
  EXPECT_EQ(clone->files_received(), 4u);
  EXPECT_EQ(clone->bytes_received(), 350u + 120u + 16u);

  std::vector<FileChunk> chunks = Only<FileChunk>(Frames(to_clone_));
  // 350 bytes in four chunks of at most 100, 120 in two, the empty file in one
  // with no data, CURRENT in one: files one after another, only the end last.
  std::vector<std::pair<std::string, uint64_t>> order;
  for (const FileChunk& c : chunks) order.emplace_back(c.name, c.offset);
  EXPECT_EQ(order, (std::vector<std::pair<std::string, uint64_t>>{{"000007.sst", 0},
                                                                  {"000007.sst", 100},
                                                                  {"000007.sst", 200},
                                                                  {"000007.sst", 300},
                                                                  {"MANIFEST-000005", 0},
                                                                  {"MANIFEST-000005", 100},
                                                                  {"OPTIONS-000009", 0},
                                                                  {"CURRENT", 0}}));
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].last, i + 1 == chunks.size()) << i;
    EXPECT_LE(chunks[i].data.size(), 100u);
    EXPECT_EQ(chunks[i].data_hash, DataHash64(chunks[i].data));
  }
  EXPECT_EQ(chunks[6].file_size, 0u);
  EXPECT_TRUE(chunks[6].data.empty());
}

TEST_F(CloneSessionTest, WelcomeCarriesTheMastersIdentityInModeFiles) {
  auto server = Server();
  auto clone = Clone();
  clone->Start();
  Exchange(*server, *clone);
  ASSERT_TRUE(clone->welcomed());
  const Welcome& welcome = clone->welcome();
  EXPECT_EQ(welcome.mode, StartMode::kFiles);
  EXPECT_EQ(welcome.master_id, "m1");
  EXPECT_EQ(welcome.master_seq, 42u);
  EXPECT_EQ(welcome.resume_from, 43u);
  EXPECT_EQ(welcome.families, (std::vector<FamilyInfo>{{0, "default"}, {3, "meta"}}));
}

TEST_F(CloneSessionTest, MasterReleasesTheFilesAndClosesCleanlyAfterTheLastChunk) {
  auto server = Server();
  auto clone = Clone();
  Handshake(*server, *clone);
  EXPECT_EQ(opens_, 1);
  EXPECT_FALSE(released_);
  std::vector<ServerEvent> events = Events(*server);
  // A cloner is streamed nothing and diffed never.
  for (const ServerEvent& e : events) {
    EXPECT_NE(e.kind, ServerEvent::Kind::kStreamFrom);
    EXPECT_NE(e.kind, ServerEvent::Kind::kWantSnapshot);
  }
  EXPECT_TRUE(server->streaming());
  EXPECT_FALSE(server->idle());

  std::string sent;
  while (server->wants_write()) {
    EXPECT_FALSE(released_);
    sent += Take(*server);
  }
  // The source went with the chunk marked last, before the cloner got a byte.
  EXPECT_TRUE(released_);
  EXPECT_TRUE(server->closed());
  EXPECT_TRUE(server->error().ok()) << server->error().ToString();
  EXPECT_TRUE(server->idle());
  events = Events(*server);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ServerEvent::Kind::kClosed);
  EXPECT_TRUE(events[0].status.ok());
  std::vector<Message> frames = Frames(sent);
  EXPECT_TRUE(Only<Reject>(frames).empty());  // a clean close sends no Reject
  ASSERT_FALSE(frames.empty());
  EXPECT_TRUE(std::get<FileChunk>(frames.back()).last);

  clone->OnBytes(sent);
  EXPECT_TRUE(clone->done());
  EXPECT_TRUE(clone->TakeOutput().empty());  // nothing to say back
}

TEST_F(CloneSessionTest, OneTakeOutputGivesAboutBulkFrameBytes) {
  files_ = {{"big.sst", Random(rng_, 1000)}};
  auto server = Server();
  auto clone = Clone();
  Handshake(*server, *clone);
  std::vector<Message> first = Frames(Take(*server));  // Welcome and the first chunk
  ASSERT_EQ(first.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<Welcome>(first[0]));
  EXPECT_EQ(std::get<FileChunk>(first[1]).data.size(), 100u);
  for (int i = 1; i < 10; ++i) {
    ASSERT_TRUE(server->wants_write());
    std::string out = Take(*server);
    std::vector<FileChunk> chunks = Only<FileChunk>(Frames(out));
    ASSERT_EQ(chunks.size(), 1u) << i;  // a frame a call, not the whole file
    EXPECT_EQ(chunks[0].offset, 100u * i);
    EXPECT_LT(out.size(), 150u);
    EXPECT_EQ(chunks[0].last, i == 9);
  }
  EXPECT_FALSE(server->wants_write());
  EXPECT_TRUE(released_);
  EXPECT_TRUE(server->closed());
}

TEST_F(CloneSessionTest, RightSecretCopies) {
  FakeAuthenticator auth("s3cret");
  server_auth_ = &auth;
  client_auth_ = &auth;
  auto server = Server();
  auto clone = Clone();
  clone->Start();
  Exchange(*server, *clone);
  EXPECT_TRUE(clone->done()) << clone->error().ToString();
  EXPECT_EQ(written_.size(), 4u);
}

TEST_F(CloneSessionTest, PingsAreAnsweredAndRequestSyncIsIgnored) {
  files_ = {{"big.sst", Random(rng_, 1000)}};
  auto server = Server();
  auto clone = Clone();
  server->OnTick(0);
  clone->OnTick(0);
  Handshake(*server, *clone);
  clone->OnBytes(Take(*server));  // Welcome and a chunk
  server->RequestSync();
  server->OnTick(2000);  // past the ping interval
  std::string out = Take(*server);
  ASSERT_EQ(Only<Ping>(Frames(out)).size(), 1u);
  clone->OnBytes(out);
  std::vector<Pong> pongs = Only<Pong>(Frames(clone->TakeOutput()));
  ASSERT_EQ(pongs.size(), 1u);
  EXPECT_EQ(pongs[0].echo_time_ms, 2000u);
  server->OnBytes(FrameOf(pongs[0]));
  for (const ServerEvent& e : Events(*server)) {
    EXPECT_NE(e.kind, ServerEvent::Kind::kWantSnapshot);
  }
  EXPECT_FALSE(server->closed());
  Exchange(*server, *clone);
  EXPECT_TRUE(clone->done()) << clone->error().ToString();
  EXPECT_EQ(written_["big.sst"], files_[0].second);
}

// ---- refusals by the master ----

TEST_F(CloneSessionTest, MasterWithoutTheHookRefusesCloners) {
  serves_files_ = false;
  ExpectRefused(RejectCode::kRole, "does not serve its files");
  EXPECT_EQ(writes_, 0);
}

TEST_F(CloneSessionTest, MasterWithTooFewKeysRefusesCloners) {
  keys_ = 9;
  ExpectRefused(RejectCode::kRole, "holds 9 keys, fewer than 10");
  EXPECT_EQ(writes_, 0);
  EXPECT_EQ(opens_, 0);
}

TEST_F(CloneSessionTest, OpenFilesErrorRefusesWithItsMessage) {
  open_error_ = Status::InvalidArgument("a merge operator: files would not reproduce it");
  ExpectRefused(RejectCode::kRole, "a merge operator: files would not reproduce it");
  EXPECT_EQ(writes_, 0);
  EXPECT_EQ(opens_, 1);
}

// The master failing to list its files is not a refusal the cloner expects.
TEST_F(CloneSessionTest, OpenFilesIoErrorIsAnInternalError) {
  open_error_ = Status::IOError("cannot list the database files: disk on fire");
  ExpectRefused(RejectCode::kInternal, "disk on fire");
  EXPECT_EQ(writes_, 0);
}

TEST_F(CloneSessionTest, SourceWithNoFilesIsAnInternalError) {
  files_.clear();
  ExpectRefused(RejectCode::kInternal, "no files");
  EXPECT_EQ(writes_, 0);
}

TEST_F(CloneSessionTest, SourceWithAPathForANameIsAnInternalError) {
  files_.push_back({"../escape", "x"});
  ExpectRefused(RejectCode::kInternal, "not a plain file name");
  EXPECT_EQ(writes_, 0);
  EXPECT_TRUE(released_);
}

TEST_F(CloneSessionTest, WrongSecretIsRefusedBeforeAnyFileIsOpened) {
  FakeAuthenticator master_auth("right"), clone_auth("wrong");
  server_auth_ = &master_auth;
  client_auth_ = &clone_auth;
  auto server = Server();
  auto clone = Clone();
  clone->Start();
  Exchange(*server, *clone);
  EXPECT_TRUE(clone->closed());
  EXPECT_TRUE(clone->error().IsProtocolError()) << clone->error().ToString();
  EXPECT_NE(clone->error().message().find("wrong secret"), std::string::npos);
  EXPECT_TRUE(server->closed());
  EXPECT_EQ(opens_, 0);
  EXPECT_EQ(writes_, 0);
}

TEST_F(CloneSessionTest, ClonerWithoutTheSecretIsRefused) {
  FakeAuthenticator auth("right");
  server_auth_ = &auth;
  auto server = Server();
  auto clone = Clone();
  clone->Start();
  Exchange(*server, *clone);
  EXPECT_TRUE(clone->closed());
  EXPECT_TRUE(server->closed());
  EXPECT_EQ(opens_, 0);
  EXPECT_EQ(writes_, 0);
}

TEST_F(CloneSessionTest, ReadErrorRejectsWithInternal) {
  fail_index_ = 1;
  ExpectRefused(RejectCode::kInternal, "disk on fire");
  EXPECT_TRUE(released_);
  EXPECT_EQ(writes_, 4);  // the first file's chunks, before the failing read
  EXPECT_EQ(written_["000007.sst"], files_[0].second);
}

TEST_F(CloneSessionTest, ShortReadRejectsWithInternalInsteadOfLooping) {
  short_index_ = 0;
  ExpectRefused(RejectCode::kInternal, "000007.sst shrank");
  EXPECT_TRUE(released_);
  EXPECT_EQ(writes_, 0);
}

TEST_F(CloneSessionTest, ClonerSendingDiffMessagesIsAProtocolError) {
  SyncRoot root;
  root.hash_bytes = 2;
  Nodes nodes;
  nodes.hash_bytes = 2;
  for (const Message& bad : std::vector<Message>{SyncRequest{}, root, nodes, Write{}}) {
    SCOPED_TRACE(MessageName(bad));
    released_ = false;
    auto server = Server();
    auto clone = Clone();
    Handshake(*server, *clone);
    Events(*server);
    server->OnBytes(FrameOf(bad));
    EXPECT_TRUE(server->closed());
    EXPECT_TRUE(server->error().IsProtocolError()) << server->error().ToString();
    EXPECT_TRUE(released_);
    std::vector<Reject> rejects = Only<Reject>(Frames(Take(*server)));
    ASSERT_EQ(rejects.size(), 1u);
    EXPECT_EQ(rejects[0].code, RejectCode::kProtocol);
    std::vector<ServerEvent> events = Events(*server);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].kind, ServerEvent::Kind::kClosed);
    EXPECT_FALSE(events[0].status.ok());
  }
}

// ---- the cloner's checks, on hand-made frames ----

class CloneClientTest : public CloneSessionTest {
 protected:
  // A clone past its handshake (with no secret), fed by hand.
  std::unique_ptr<CloneSession> Welcomed(StartMode mode = StartMode::kFiles) {
    auto clone = Clone();
    clone->Start();
    clone->OnBytes(FrameOf(Challenge{wire::kProtocolVersion, std::string(32, 's'), ""}));
    clone->TakeOutput();  // Hello, Auth
    clone->OnBytes(FrameOf(Welcome{"m1", 42, mode, 43, {{0, "default"}}}));
    return clone;
  }

  // Feeds `good` (each must be written), then `bad`; expects a protocol
  // error, a Reject sent, and `bad` not written.
  void ExpectBadChunk(const std::vector<FileChunk>& good, std::string_view bad_frame,
                      std::string_view error) {
    auto clone = Welcomed();
    for (const FileChunk& c : good) clone->OnBytes(FrameOf(c));
    ASSERT_FALSE(clone->finished()) << clone->error().ToString();
    ASSERT_EQ(writes_, static_cast<int>(good.size()));
    clone->OnBytes(bad_frame);
    EXPECT_TRUE(clone->closed());
    EXPECT_FALSE(clone->done());
    EXPECT_TRUE(clone->error().IsProtocolError() || clone->error().IsCorruption())
        << clone->error().ToString();
    EXPECT_NE(clone->error().message().find(error), std::string::npos) << clone->error().ToString();
    EXPECT_EQ(writes_, static_cast<int>(good.size()));
    std::vector<Reject> rejects = Only<Reject>(Frames(clone->TakeOutput()));
    ASSERT_EQ(rejects.size(), 1u);
    EXPECT_EQ(rejects[0].code, RejectCode::kProtocol);
  }
  void ExpectBadChunk(const std::vector<FileChunk>& good, const FileChunk& bad,
                      std::string_view error) {
    ExpectBadChunk(good, FrameOf(bad), error);
  }
};

TEST_F(CloneClientTest, WellFormedChunksAreWrittenAndTheLastFinishes) {
  auto clone = Welcomed();
  ASSERT_TRUE(clone->welcomed());
  for (const FileChunk& c : {Chunk("a", 6, 0, "abc"), Chunk("a", 6, 3, "def"), Chunk("e", 0, 0, ""),
                             Chunk("b", 1, 0, "z", true)}) {
    clone->OnBytes(FrameOf(c));
  }
  EXPECT_TRUE(clone->done()) << clone->error().ToString();
  EXPECT_EQ(written_, (std::map<std::string, std::string>{{"a", "abcdef"}, {"e", ""}, {"b", "z"}}));
  EXPECT_EQ(clone->files_received(), 3u);
  EXPECT_EQ(clone->bytes_received(), 7u);
}

TEST_F(CloneClientTest, NamesThatAreNotPlainFileNamesAreRefused) {
  for (std::string name : {"../x"s, "a/b"s, "/abs"s, "."s, ".."s, "a\0b"s}) {
    SCOPED_TRACE(name);
    writes_ = 0;
    ExpectBadChunk({}, Chunk(name, 1, 0, "x"), "not a plain file name");
  }
}

TEST_F(CloneClientTest, EmptyOrOverlongNamesAreRefusedByTheDecoder) {
  // AppendFrame will not encode these, so the bytes are made by hand: type,
  // name, file_size 0, offset 0, no data, hash, last.
  std::string tail = "\0\0\0"s + std::string(8, '\0') + "\0"s;
  std::string empty = "\x13\0"s + tail;
  std::string overlong = "\x13\x80\x02"s + std::string(256, 'n') + tail;
  for (const std::string& body : {empty, overlong}) {
    writes_ = 0;
    std::string frame(4, '\0');
    frame[0] = static_cast<char>(body.size());
    frame[1] = static_cast<char>(body.size() >> 8);
    ExpectBadChunk({}, frame + body, "FileChunk: name");
  }
}

TEST_F(CloneClientTest, OffsetGapIsRefused) {
  ExpectBadChunk({Chunk("a", 10, 0, "xxxx")}, Chunk("a", 10, 5, "yyyyy"),
                 "expected offset 4 of 10");
}

TEST_F(CloneClientTest, RepeatedOffsetIsRefused) {
  ExpectBadChunk({Chunk("a", 10, 0, "xxxx")}, Chunk("a", 10, 0, "xxxx"), "expected offset 4");
}

TEST_F(CloneClientTest, NewFileNotAtOffsetZeroIsRefused) {
  ExpectBadChunk({}, Chunk("a", 10, 3, "xxx"), "starts at offset 3, not 0");
}

TEST_F(CloneClientTest, FileSizeThatChangesIsRefused) {
  ExpectBadChunk({Chunk("a", 10, 0, "xxxx")}, Chunk("a", 6, 4, "yy"), "expected offset 4 of 10");
}

TEST_F(CloneClientTest, DataBeyondTheFileSizeIsRefused) {
  // The encoder will not make this one either: 4 bytes at offset 8 of a 10-byte file.
  std::string body = "\x13"s + "\x01"s + "a"s + "\x0a\x08"s + "\x04"s + "wxyz"s;
  uint64_t hash = DataHash64("wxyz");
  for (int i = 0; i < 8; ++i) body.push_back(static_cast<char>(hash >> (8 * i)));
  body += "\0"s;
  std::string frame = "\0\0\0\0"s;
  frame[0] = static_cast<char>(body.size());
  ExpectBadChunk({Chunk("a", 10, 0, "01234567")}, frame + body, "passes file_size 10");
}

TEST_F(CloneClientTest, WrongHashIsRefused) {
  FileChunk bad = Chunk("a", 4, 0, "data");
  bad.data_hash ^= 1;
  ExpectBadChunk({}, bad, "does not match its hash");
}

TEST_F(CloneClientTest, NewFileBeforeThePreviousIsWholeIsRefused) {
  ExpectBadChunk({Chunk("a", 10, 0, "xxxx")}, Chunk("b", 2, 0, "bb"),
                 "\"b\" before \"a\" is whole (4 of its 10 bytes)");
}

TEST_F(CloneClientTest, SameFileTwiceIsRefused) {
  ExpectBadChunk({Chunk("a", 2, 0, "aa"), Chunk("b", 0, 0, "")}, Chunk("a", 2, 0, "aa"),
                 "sent a second time");
}

TEST_F(CloneClientTest, LastWithTheFileIncompleteIsRefused) {
  ExpectBadChunk({}, Chunk("a", 10, 0, "xxxx", true), "marked last, but file \"a\" has 4 of");
}

TEST_F(CloneClientTest, ChunkBeforeTheWelcomeIsRefused) {
  auto clone = Clone();
  clone->Start();
  clone->OnBytes(FrameOf(Challenge{wire::kProtocolVersion, std::string(32, 's'), ""}));
  clone->TakeOutput();
  clone->OnBytes(FrameOf(Chunk("a", 1, 0, "x", true)));
  EXPECT_TRUE(clone->closed());
  EXPECT_FALSE(clone->welcomed());
  EXPECT_TRUE(clone->error().IsProtocolError());
  EXPECT_NE(clone->error().message().find("unexpected FileChunk"), std::string::npos);
  EXPECT_EQ(writes_, 0);
}

TEST_F(CloneClientTest, WelcomeInAnotherModeIsRefused) {
  for (StartMode mode : {StartMode::kResume, StartMode::kDiff, StartMode::kBootstrap}) {
    writes_ = 0;
    auto clone = Welcomed(mode);
    EXPECT_TRUE(clone->closed());
    EXPECT_FALSE(clone->welcomed());
    EXPECT_TRUE(clone->error().IsProtocolError());
    EXPECT_NE(clone->error().message().find("a cloner is sent files"), std::string::npos);
    clone->OnBytes(FrameOf(Chunk("a", 1, 0, "x", true)));
    EXPECT_EQ(writes_, 0);
  }
}

TEST_F(CloneClientTest, WriteErrorClosesWithInternal) {
  write_error_ = Status::IOError("no space left");
  auto clone = Welcomed();
  clone->OnBytes(FrameOf(Chunk("a", 1, 0, "x", true)));
  EXPECT_TRUE(clone->closed());
  EXPECT_FALSE(clone->done());
  EXPECT_TRUE(clone->error().IsIOError());
  EXPECT_EQ(clone->error().message(), "no space left");
  std::vector<Reject> rejects = Only<Reject>(Frames(clone->TakeOutput()));
  ASSERT_EQ(rejects.size(), 1u);
  EXPECT_EQ(rejects[0].code, RejectCode::kInternal);
}

TEST_F(CloneClientTest, BytesAfterTheLastChunkAreIgnored) {
  auto clone = Welcomed();
  clone->OnBytes(FrameOf(Chunk("a", 1, 0, "x", true)) + FrameOf(Chunk("b", 1, 0, "y")));
  ASSERT_TRUE(clone->done());
  clone->OnBytes("garbage that is no frame");
  clone->OnBytes(FrameOf(Ping{1, 2}));
  clone->Close("shutting down");
  EXPECT_TRUE(clone->done());
  EXPECT_TRUE(clone->error().ok());
  EXPECT_EQ(writes_, 1);
  EXPECT_TRUE(clone->TakeOutput().empty());
}

TEST_F(CloneClientTest, PingIsAnsweredWithPong) {
  auto clone = Welcomed();
  clone->OnBytes(FrameOf(Ping{7, 1234}));
  std::vector<Pong> pongs = Only<Pong>(Frames(clone->TakeOutput()));
  ASSERT_EQ(pongs.size(), 1u);
  EXPECT_EQ(pongs[0].echo_time_ms, 1234u);
  EXPECT_FALSE(clone->finished());
}

TEST_F(CloneClientTest, SilentMasterTimesOut) {
  auto clone = Clone();
  clone->OnTick(0);
  clone->Start();
  clone->OnTick(15000);
  EXPECT_FALSE(clone->closed());
  clone->OnTick(15001);
  EXPECT_TRUE(clone->closed());
  EXPECT_TRUE(clone->error().IsIOError());
  EXPECT_NE(clone->error().message().find("nothing from the master"), std::string::npos);
}

TEST_F(CloneClientTest, CloseSendsShutdown) {
  auto clone = Welcomed();
  clone->Close("stopping");
  EXPECT_TRUE(clone->closed());
  EXPECT_TRUE(clone->error().IsAborted());
  EXPECT_EQ(clone->reject_code(), std::nullopt);  // we closed; the master refused nothing
  std::vector<Reject> rejects = Only<Reject>(Frames(clone->TakeOutput()));
  ASSERT_EQ(rejects.size(), 1u);
  EXPECT_EQ(rejects[0].code, RejectCode::kShutdown);
}

TEST_F(CloneClientTest, HelloAsksForTheClonerRoleWithA32ByteNonce) {
  auto clone = Clone();
  clone->Start();
  std::vector<Hello> hellos = Only<Hello>(Frames(clone->TakeOutput()));
  ASSERT_EQ(hellos.size(), 1u);
  EXPECT_EQ(hellos[0].role, Role::kCloner);
  EXPECT_EQ(hellos[0].client_nonce.size(), 32u);
  EXPECT_EQ(hellos[0].min_version, wire::kProtocolVersion);
}

}  // namespace
}  // namespace sdiff
