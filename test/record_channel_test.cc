// The record layer alone: what one side seals the other opens, in any
// pieces; a changed, dropped or reordered record, another secret, another
// mode or another protocol end the connection with a one-line reason.
#include "net/record_channel.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace sdiff::net {
namespace {

struct Pair {
  std::unique_ptr<RecordChannel> client;
  std::unique_ptr<RecordChannel> server;
};

Pair MakePair(const std::string& client_secret, const std::string& server_secret) {
  Pair p;
  EXPECT_TRUE(RecordChannel::Create(client_secret, /*server_side=*/false, &p.client).ok());
  EXPECT_TRUE(RecordChannel::Create(server_secret, /*server_side=*/true, &p.server).ok());
  return p;
}

std::string Bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// What `from` sends after its hello: `plain` sealed.
std::string Wire(RecordChannel& from, const std::string& plain) {
  std::string out = from.hello();
  from.Seal(plain, &out);
  return out;
}

class RecordChannelTest : public ::testing::TestWithParam<bool> {
 protected:
  std::string Secret() const { return GetParam() ? "s3cret" : ""; }
};

TEST_P(RecordChannelTest, WhatOneSideSealsTheOtherOpensInAnyPieces) {
  Pair p = MakePair(Secret(), Secret());
  std::string plain = Bytes(3 * kMaxRecordPayload + 123, 1);
  std::string wire = Wire(*p.client, plain);
  std::mt19937_64 rng(7);
  std::string got;
  for (size_t pos = 0; pos < wire.size();) {
    size_t n = std::min<size_t>(1 + rng() % 3000, wire.size() - pos);
    ASSERT_TRUE(p.server->Open(std::string_view(wire).substr(pos, n), &got).ok());
    pos += n;
  }
  EXPECT_EQ(got, plain);
  EXPECT_EQ(p.server->records_opened(), 4u);
  EXPECT_EQ(p.server->buffered_bytes(), 0u);
  // And the other way, with the server's own key.
  std::string back;
  ASSERT_TRUE(p.client->Open(Wire(*p.server, "pong"), &back).ok());
  EXPECT_EQ(back, "pong");
}

TEST_P(RecordChannelTest, EveryFlippedByteAfterTheHelloIsCaught) {
  const std::string plain = Bytes(2 * kMaxRecordPayload + 10, 2);
  const size_t hello = kRecordHelloSize;
  Pair reference = MakePair(Secret(), Secret());
  const size_t size = Wire(*reference.client, plain).size();
  for (size_t at = hello; at < size; at += 97) {
    Pair p = MakePair(Secret(), Secret());
    std::string wire = Wire(*p.client, plain);
    wire[at] ^= 0x10;
    std::string got;
    Status s = p.server->Open(wire, &got);
    // A flip in the last record's length may announce more bytes: it waits
    // for them (and the idle timeout ends it), delivering nothing of it.
    if (s.ok()) {
      EXPECT_LT(got.size(), plain.size()) << "a flip at byte " << at << " went unnoticed";
    }
    EXPECT_EQ(got, plain.substr(0, got.size())) << "only verified records are delivered";
  }
}

TEST_P(RecordChannelTest, ADroppedOrRepeatedRecordIsCaught) {
  Pair p = MakePair(Secret(), Secret());
  std::string first, second;
  p.client->Seal("one", &first);
  p.client->Seal("two", &second);
  std::string got;
  Status s = p.server->Open(p.client->hello() + second, &got);  // "one" dropped
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(got.empty());

  Pair q = MakePair(Secret(), Secret());
  std::string a;
  q.client->Seal("one", &a);
  got.clear();
  s = q.server->Open(q.client->hello() + a + a, &got);  // replayed
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(got, "one");
}

INSTANTIATE_TEST_SUITE_P(Modes, RecordChannelTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Secret" : "Checksum"; });

TEST(RecordChannelSecretTest, AnotherSecretFailsTheFirstRecord) {
  Pair p = MakePair("right", "wrong");
  std::string got;
  Status s = p.server->Open(Wire(*p.client, "hello"), &got);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(got.empty());
  EXPECT_NE(s.message().find("wrong secret"), std::string::npos) << s.ToString();
}

TEST(RecordChannelSecretTest, OneSideWithoutASecretIsRefused) {
  Pair p = MakePair("", "secret");
  std::string got;
  Status s = p.server->Open(Wire(*p.client, "hello"), &got);
  EXPECT_NE(s.message().find("the peer has no shared secret"), std::string::npos) << s.ToString();
  Pair q = MakePair("secret", "");
  s = q.server->Open(Wire(*q.client, "hello"), &got);
  EXPECT_NE(s.message().find("the peer expects a shared secret"), std::string::npos)
      << s.ToString();
}

// Without a secret the checksum stops corruption, not an attacker; with
// one, a record forged without it fails.
TEST(RecordChannelSecretTest, ARecordForgedWithoutTheSecretFails) {
  Pair p = MakePair("secret", "secret");
  std::unique_ptr<RecordChannel> forger;
  ASSERT_TRUE(RecordChannel::Create("guess", false, &forger).ok());
  std::string forged;
  forger->Seal("write evil", &forged);
  std::string got;
  EXPECT_FALSE(p.server->Open(p.client->hello() + forged, &got).ok());
  EXPECT_TRUE(got.empty());
}

TEST(RecordChannelSecretTest, AnOlderPeerOrAnotherProtocolIsNamed) {
  Pair p = MakePair("", "");
  std::string got;
  // An sdiff before the record layer starts with a frame: a length, a type.
  Status s = p.server->Open(std::string("\x05\x00\x00\x00\x01", 5), &got);
  EXPECT_NE(s.message().find("does not speak sdiff's record layer"), std::string::npos)
      << s.ToString();
  Pair q = MakePair("", "");
  std::string hello = q.client->hello();
  hello[8] = 9;  // version
  s = q.server->Open(hello, &got);
  EXPECT_NE(s.message().find("record layer version 9"), std::string::npos) << s.ToString();
}

TEST(RecordChannelSecretTest, ARecordLongerThanTheLimitIsRefusedBeforeItArrives) {
  Pair p = MakePair("", "");
  std::string got;
  std::string header("\xff\xff\x00\x00", 4);  // 65535 bytes announced
  Status s = p.server->Open(p.client->hello() + header, &got);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("a record of 65535 bytes"), std::string::npos) << s.ToString();
  EXPECT_LT(p.server->buffered_bytes(), 64u);
}

}  // namespace
}  // namespace sdiff::net
