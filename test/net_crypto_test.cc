// Tests of net/'s crypto building blocks: the HMAC authenticator and its secret
// file, the TLS contexts, and real TLS handshakes over loopback with
// certificates made at test time (test/support/test_certs.h).
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "engine/status.h"
#include "net/hmac_authenticator.h"
#include "net/tls.h"
#include "test/support/test_certs.h"

namespace sdiff::net {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;
using boost::system::error_code;

std::string FromHex(std::string_view hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return bytes;
}

// A fresh directory under /tmp, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/sdiff-crypto-XXXXXX";
    if (::mkdtemp(pattern) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(path_, ignored);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }  // empty if mkdtemp failed
  std::string File(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// Writes `contents` to `path` with permission bits `mode` (umask aside).
void WriteFile(const std::string& path, std::string_view contents, mode_t mode = 0600) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << contents;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

// --- HmacAuthenticator ---

TEST(HmacAuthenticatorTest, Rfc4231TestCase2) {
  HmacAuthenticator hmac("Jefe");
  EXPECT_EQ(hmac.Sign("what do ya want for nothing?"),
            FromHex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
}

TEST(HmacAuthenticatorTest, SignsWithinTheWireLimit) {
  HmacAuthenticator hmac("a secret of some length");
  EXPECT_EQ(hmac.Sign("").size(), HmacAuthenticator::kMacBytes);
  EXPECT_EQ(hmac.Sign(std::string(100000, 'x')).size(), HmacAuthenticator::kMacBytes);
}

TEST(HmacAuthenticatorTest, VerifyAcceptsTheRightMac) {
  HmacAuthenticator hmac("Jefe");
  std::string message = "what do ya want for nothing?";
  EXPECT_TRUE(hmac.Verify(message, hmac.Sign(message)));
}

TEST(HmacAuthenticatorTest, VerifyRejectsAFlippedBit) {
  HmacAuthenticator hmac("Jefe");
  std::string message = "what do ya want for nothing?";
  std::string mac = hmac.Sign(message);
  for (size_t byte : {size_t{0}, mac.size() / 2, mac.size() - 1}) {
    std::string bad = mac;
    bad[byte] ^= 0x01;
    EXPECT_FALSE(hmac.Verify(message, bad)) << "byte " << byte;
  }
}

TEST(HmacAuthenticatorTest, VerifyRejectsATruncatedMac) {
  HmacAuthenticator hmac("Jefe");
  std::string mac = hmac.Sign("message");
  EXPECT_FALSE(hmac.Verify("message", mac.substr(0, mac.size() - 1)));
  EXPECT_FALSE(hmac.Verify("message", mac.substr(0, 16)));
  EXPECT_FALSE(hmac.Verify("message", mac + '\0'));
}

TEST(HmacAuthenticatorTest, VerifyRejectsAnEmptyMac) {
  HmacAuthenticator hmac("Jefe");
  EXPECT_FALSE(hmac.Verify("message", ""));
}

TEST(HmacAuthenticatorTest, VerifyRejectsAnotherSecretOrMessage) {
  HmacAuthenticator hmac("secret one, long enough");
  HmacAuthenticator other("secret two, long enough");
  EXPECT_FALSE(other.Verify("message", hmac.Sign("message")));
  EXPECT_FALSE(hmac.Verify("messagf", hmac.Sign("message")));
}

// --- LoadSecretFile ---

class SecretFileTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed"; }

  TempDir dir_;
  std::string secret_ = "unchanged";
  std::string warning_ = "unchanged";
};

TEST_F(SecretFileTest, LoadsTheWholeFile) {
  std::string path = dir_.File("secret");
  WriteFile(path, std::string("0123456789abcdef\0 with NUL", 26));
  ASSERT_TRUE(LoadSecretFile(path, &secret_, &warning_).ok());
  EXPECT_EQ(secret_, std::string("0123456789abcdef\0 with NUL", 26));
  EXPECT_EQ(warning_, "");
}

TEST_F(SecretFileTest, MissingFileIsAnIOErrorNamingThePath) {
  std::string path = dir_.File("absent");
  Status s = LoadSecretFile(path, &secret_, &warning_);
  EXPECT_TRUE(s.IsIOError()) << s.ToString();
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
  EXPECT_EQ(secret_, "unchanged");
}

TEST_F(SecretFileTest, DirectoryIsRefused) {
  Status s = LoadSecretFile(dir_.path(), &secret_);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(dir_.path()), std::string::npos) << s.message();
}

TEST_F(SecretFileTest, EmptyFileIsRefused) {
  std::string path = dir_.File("secret");
  WriteFile(path, "");
  Status s = LoadSecretFile(path, &secret_);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(s.message(), "secret file " + path + " is empty");
}

TEST_F(SecretFileTest, LoneNewlineIsEmpty) {
  std::string path = dir_.File("secret");
  WriteFile(path, "\r\n");
  Status s = LoadSecretFile(path, &secret_);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(s.message(), "secret file " + path + " is empty");
}

TEST_F(SecretFileTest, ShortSecretIsRefused) {
  std::string path = dir_.File("secret");
  WriteFile(path, "fifteen bytes!!\n");
  Status s = LoadSecretFile(path, &secret_);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(s.message(), "secret in " + path + " is 15 bytes; use at least 16");
  EXPECT_EQ(secret_, "unchanged");
}

TEST_F(SecretFileTest, SixteenBytesAreEnough) {
  std::string path = dir_.File("secret");
  WriteFile(path, "sixteen bytes!!!\n");
  ASSERT_TRUE(LoadSecretFile(path, &secret_).ok());
  EXPECT_EQ(secret_, "sixteen bytes!!!");
}

TEST_F(SecretFileTest, FileOverFourKibibytesIsRefused) {
  std::string path = dir_.File("secret");
  WriteFile(path, std::string(kMaxSecretFileBytes, 'k'));
  ASSERT_TRUE(LoadSecretFile(path, &secret_).ok());
  EXPECT_EQ(secret_.size(), kMaxSecretFileBytes);

  WriteFile(path, std::string(kMaxSecretFileBytes + 1, 'k'));
  Status s = LoadSecretFile(path, &secret_);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(s.message(), "secret file " + path + " is 4097 bytes; the limit is 4096");
}

TEST_F(SecretFileTest, StripsOneTrailingLf) {
  std::string path = dir_.File("secret");
  WriteFile(path, "a secret, long enough\n\n");
  ASSERT_TRUE(LoadSecretFile(path, &secret_).ok());
  EXPECT_EQ(secret_, "a secret, long enough\n");
}

TEST_F(SecretFileTest, StripsOneTrailingCrlf) {
  std::string path = dir_.File("secret");
  WriteFile(path, "a secret, long enough\r\n");
  ASSERT_TRUE(LoadSecretFile(path, &secret_).ok());
  EXPECT_EQ(secret_, "a secret, long enough");

  WriteFile(path, "a secret, long enough\r\n\r\n");
  ASSERT_TRUE(LoadSecretFile(path, &secret_).ok());
  EXPECT_EQ(secret_, "a secret, long enough\r\n");

  // A lone CR is part of the secret.
  WriteFile(path, "a secret, long enough\r");
  ASSERT_TRUE(LoadSecretFile(path, &secret_).ok());
  EXPECT_EQ(secret_, "a secret, long enough\r");
}

TEST_F(SecretFileTest, WarnsWhenGroupOrOthersCanRead) {
  std::string path = dir_.File("secret");
  WriteFile(path, "a secret, long enough\n", 0644);
  Status s = LoadSecretFile(path, &secret_, &warning_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(secret_, "a secret, long enough");
  EXPECT_NE(warning_.find(path), std::string::npos) << warning_;
  EXPECT_NE(warning_.find("0644"), std::string::npos) << warning_;
  // Without a place for the warning the secret still loads.
  EXPECT_TRUE(LoadSecretFile(path, &secret_).ok());
}

TEST_F(SecretFileTest, NoWarningForOwnerOnly) {
  std::string path = dir_.File("secret");
  WriteFile(path, "a secret, long enough\n", 0600);
  ASSERT_TRUE(LoadSecretFile(path, &secret_, &warning_).ok());
  EXPECT_EQ(warning_, "");
}

// --- TLS contexts ---

class TlsContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
    Status s = testing::MakeTestCertificates(dir_.path(), &certs_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  TlsOptions ServerOptions() const { return {certs_.server_cert, certs_.server_key, ""}; }
  TlsOptions MutualServerOptions() const {
    return {certs_.server_cert, certs_.server_key, certs_.ca_cert};
  }
  TlsOptions ClientOptions() const { return {"", "", certs_.ca_cert}; }
  TlsOptions MutualClientOptions() const {
    return {certs_.client_cert, certs_.client_key, certs_.ca_cert};
  }

  // Checks `s` failed and its message mentions `needle` (a path, usually).
  static void ExpectErrorMentioning(const Status& s, const std::string& needle) {
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.ToString();
  }

  TempDir dir_;
  testing::TestCerts certs_;
  std::unique_ptr<ssl::context> context_;
};

TEST_F(TlsContextTest, MakeTestCertificatesWritesEveryFile) {
  EXPECT_EQ(certs_.dir, dir_.path());
  for (const std::string& path : {certs_.ca_cert, certs_.server_cert, certs_.server_key,
                                  certs_.client_cert, certs_.client_key, certs_.other_ca_cert}) {
    EXPECT_EQ(path.rfind(dir_.path() + "/", 0), 0u) << path;
    std::error_code ec;
    EXPECT_GT(std::filesystem::file_size(path, ec), 0u) << path;
  }
}

TEST(TlsOptionsTest, EnabledIfAnyFileIsSet) {
  EXPECT_FALSE(TlsOptions{}.enabled());
  EXPECT_TRUE((TlsOptions{"c", "", ""}.enabled()));
  EXPECT_TRUE((TlsOptions{"", "k", ""}.enabled()));
  EXPECT_TRUE((TlsOptions{"", "", "ca"}.enabled()));
}

TEST_F(TlsContextTest, ServerContextFromTestCertificates) {
  Status s = MakeServerTlsContext(ServerOptions(), &context_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_NE(context_, nullptr);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(context_->native_handle()), TLS1_2_VERSION);
  EXPECT_EQ(SSL_CTX_get_verify_mode(context_->native_handle()), SSL_VERIFY_NONE);

  s = MakeServerTlsContext(MutualServerOptions(), &context_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(SSL_CTX_get_verify_mode(context_->native_handle()),
            SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
}

TEST_F(TlsContextTest, ClientContextFromTestCertificates) {
  Status s = MakeClientTlsContext(ClientOptions(), &context_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_NE(context_, nullptr);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(context_->native_handle()), TLS1_2_VERSION);
  EXPECT_EQ(SSL_CTX_get_verify_mode(context_->native_handle()), SSL_VERIFY_PEER);

  s = MakeClientTlsContext(MutualClientOptions(), &context_);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(TlsContextTest, ClientWithoutCaUsesTheSystemStore) {
  Status s = MakeClientTlsContext(TlsOptions{}, &context_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(SSL_CTX_get_verify_mode(context_->native_handle()), SSL_VERIFY_PEER);
}

TEST_F(TlsContextTest, ServerNeedsCertificateAndKey) {
  EXPECT_TRUE(MakeServerTlsContext({"", "", certs_.ca_cert}, &context_).IsInvalidArgument());
  EXPECT_TRUE(MakeServerTlsContext({certs_.server_cert, "", ""}, &context_).IsInvalidArgument());
  EXPECT_TRUE(MakeServerTlsContext({"", certs_.server_key, ""}, &context_).IsInvalidArgument());
  EXPECT_EQ(context_, nullptr);
}

TEST_F(TlsContextTest, ClientCertificateNeedsBothFiles) {
  EXPECT_TRUE(MakeClientTlsContext({certs_.client_cert, "", certs_.ca_cert}, &context_)
                  .IsInvalidArgument());
  EXPECT_TRUE(
      MakeClientTlsContext({"", certs_.client_key, certs_.ca_cert}, &context_).IsInvalidArgument());
  EXPECT_EQ(context_, nullptr);
}

TEST_F(TlsContextTest, MissingFilesAreNamed) {
  std::string absent = dir_.File("absent.pem");
  ExpectErrorMentioning(MakeServerTlsContext({absent, certs_.server_key, ""}, &context_), absent);
  ExpectErrorMentioning(MakeServerTlsContext({certs_.server_cert, absent, ""}, &context_), absent);
  ExpectErrorMentioning(
      MakeServerTlsContext({certs_.server_cert, certs_.server_key, absent}, &context_), absent);
  ExpectErrorMentioning(MakeClientTlsContext({"", "", absent}, &context_), absent);
  ExpectErrorMentioning(MakeClientTlsContext({absent, certs_.client_key, ""}, &context_), absent);
  EXPECT_TRUE(MakeClientTlsContext({"", "", absent}, &context_).IsIOError());
  EXPECT_EQ(context_, nullptr);
}

TEST_F(TlsContextTest, GarbagePemIsNamed) {
  std::string garbage = dir_.File("garbage.pem");
  WriteFile(garbage, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
  ExpectErrorMentioning(MakeServerTlsContext({garbage, certs_.server_key, ""}, &context_), garbage);
  ExpectErrorMentioning(MakeServerTlsContext({certs_.server_cert, garbage, ""}, &context_),
                        garbage);
  ExpectErrorMentioning(
      MakeServerTlsContext({certs_.server_cert, certs_.server_key, garbage}, &context_), garbage);
  ExpectErrorMentioning(MakeClientTlsContext({"", "", garbage}, &context_), garbage);

  std::string text = dir_.File("text.pem");
  WriteFile(text, "just some text\n");
  Status s = MakeServerTlsContext({text, certs_.server_key, ""}, &context_);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  ExpectErrorMentioning(s, text);
  EXPECT_EQ(context_, nullptr);
}

TEST_F(TlsContextTest, MismatchedKeyIsNamed) {
  Status s = MakeServerTlsContext({certs_.server_cert, certs_.client_key, ""}, &context_);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(s.message(), "private key in " + certs_.client_key +
                             " does not match the certificate in " + certs_.server_cert);
  s = MakeClientTlsContext({certs_.client_cert, certs_.server_key, certs_.ca_cert}, &context_);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  ExpectErrorMentioning(s, "does not match");
  EXPECT_EQ(context_, nullptr);
}

// --- TLS handshakes over loopback ---

// What each side saw: the handshake's error or, after a good handshake, that
// of a short message the server sends and the client reads. Empty if the side
// had not finished when the deadline passed.
struct HandshakeOutcome {
  std::optional<error_code> server;
  std::optional<error_code> client;
  bool ok() const { return server && !*server && client && !*client; }
};

std::ostream& operator<<(std::ostream& os, const std::optional<error_code>& ec) {
  if (!ec) return os << "(unfinished)";
  return os << (*ec ? ec->message() : "ok");
}

std::ostream& operator<<(std::ostream& os, const HandshakeOutcome& outcome) {
  return os << "server: " << outcome.server << "; client: " << outcome.client;
}

// One connection between the two contexts on 127.0.0.1, the client checking
// the server's certificate names `host`. Everything runs on this thread.
HandshakeOutcome Handshake(ssl::context& server_context, ssl::context& client_context,
                           const std::string& host = "localhost") {
  static constexpr std::string_view kGreeting = "hello";
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  ssl::stream<tcp::socket> server(io, server_context);
  ssl::stream<tcp::socket> client(io, client_context);
  HandshakeOutcome outcome;
  std::string received(kGreeting.size(), '\0');

  // A side that fails closes its socket, so the other is not left waiting.
  auto server_done = [&](error_code ec) {
    outcome.server = ec;
    if (ec) server.lowest_layer().close();
  };
  auto client_done = [&](error_code ec) {
    outcome.client = ec;
    if (ec) client.lowest_layer().close();
  };

  acceptor.async_accept(server.next_layer(), [&](error_code ec) {
    if (ec) return server_done(ec);
    server.async_handshake(ssl::stream_base::server, [&](error_code ec) {
      if (ec) return server_done(ec);
      asio::async_write(server, asio::buffer(kGreeting),
                        [&](error_code ec, size_t) { server_done(ec); });
    });
  });

  error_code not_an_address;
  asio::ip::make_address(host, not_an_address);
  // SNI carries host names only, never addresses (RFC 6066).
  if (not_an_address) SSL_set_tlsext_host_name(client.native_handle(), host.c_str());
  client.set_verify_callback(ssl::host_name_verification(host));
  client.next_layer().async_connect(acceptor.local_endpoint(), [&](error_code ec) {
    if (ec) return client_done(ec);
    client.async_handshake(ssl::stream_base::client, [&](error_code ec) {
      if (ec) return client_done(ec);
      // Under TLS 1.3 the server checks the client's certificate after the
      // client's handshake completes; a read is where the client learns of it.
      asio::async_read(client, asio::buffer(received), [&](error_code ec, size_t) {
        if (!ec && received != kGreeting) ec = asio::error::invalid_argument;
        client_done(ec);
      });
    });
  });

  io.run_for(std::chrono::seconds(10));
  return outcome;
}

class TlsHandshakeTest : public TlsContextTest {
 protected:
  std::unique_ptr<ssl::context> Server(const TlsOptions& options) {
    std::unique_ptr<ssl::context> context;
    Status s = MakeServerTlsContext(options, &context);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return context;
  }
  std::unique_ptr<ssl::context> Client(const TlsOptions& options) {
    std::unique_ptr<ssl::context> context;
    Status s = MakeClientTlsContext(options, &context);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return context;
  }
};

TEST_F(TlsHandshakeTest, SucceedsWithTheRightCa) {
  auto server = Server(ServerOptions());
  auto client = Client(ClientOptions());
  ASSERT_TRUE(server && client);
  HandshakeOutcome outcome = Handshake(*server, *client);
  EXPECT_TRUE(outcome.ok()) << outcome;
}

TEST_F(TlsHandshakeTest, SucceedsByIpAddress) {
  auto server = Server(ServerOptions());
  auto client = Client(ClientOptions());
  ASSERT_TRUE(server && client);
  HandshakeOutcome outcome = Handshake(*server, *client, "127.0.0.1");
  EXPECT_TRUE(outcome.ok()) << outcome;
}

TEST_F(TlsHandshakeTest, FailsWithAnotherCa) {
  auto server = Server(ServerOptions());
  auto client = Client({"", "", certs_.other_ca_cert});
  ASSERT_TRUE(server && client);
  HandshakeOutcome outcome = Handshake(*server, *client);
  ASSERT_TRUE(outcome.server && outcome.client) << outcome;
  EXPECT_TRUE(*outcome.server) << outcome;
  EXPECT_NE(outcome.client->message().find("certificate verify failed"), std::string::npos)
      << outcome;
}

TEST_F(TlsHandshakeTest, FailsForAnotherHostName) {
  auto server = Server(ServerOptions());
  auto client = Client(ClientOptions());
  ASSERT_TRUE(server && client);
  HandshakeOutcome outcome = Handshake(*server, *client, "replica.example.com");
  ASSERT_TRUE(outcome.server && outcome.client) << outcome;
  EXPECT_TRUE(*outcome.server) << outcome;
  EXPECT_NE(outcome.client->message().find("certificate verify failed"), std::string::npos)
      << outcome;
}

TEST_F(TlsHandshakeTest, MutualTlsSucceedsWithAClientCertificate) {
  auto server = Server(MutualServerOptions());
  auto client = Client(MutualClientOptions());
  ASSERT_TRUE(server && client);
  HandshakeOutcome outcome = Handshake(*server, *client);
  EXPECT_TRUE(outcome.ok()) << outcome;
}

TEST_F(TlsHandshakeTest, MutualTlsFailsWithoutAClientCertificate) {
  auto server = Server(MutualServerOptions());
  auto client = Client(ClientOptions());
  ASSERT_TRUE(server && client);
  HandshakeOutcome outcome = Handshake(*server, *client);
  ASSERT_TRUE(outcome.server && outcome.client) << outcome;
  EXPECT_NE(outcome.server->message().find("peer did not return a certificate"), std::string::npos)
      << outcome;
  EXPECT_TRUE(*outcome.client) << outcome;
}

TEST_F(TlsHandshakeTest, MutualTlsFailsWithAClientCertificateFromAnotherCa) {
  // The server trusts only the other CA, so our client's certificate does not chain.
  auto server = Server({certs_.server_cert, certs_.server_key, certs_.other_ca_cert});
  auto client = Client(MutualClientOptions());
  ASSERT_TRUE(server && client);
  HandshakeOutcome outcome = Handshake(*server, *client);
  ASSERT_TRUE(outcome.server && outcome.client) << outcome;
  EXPECT_NE(outcome.server->message().find("certificate verify failed"), std::string::npos)
      << outcome;
  EXPECT_TRUE(*outcome.client) << outcome;
}

}  // namespace
}  // namespace sdiff::net
