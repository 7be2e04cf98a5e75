// The record layer's sealing and checking: XXH3 checksums, or GMAC under
// HKDF-derived keys (OpenSSL).
#include "net/record_channel.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "net/secure_random.h"

namespace sdiff::net {
namespace {

constexpr char kMagic[8] = {'S', 'D', 'I', 'F', 'F', 'R', 'E', 'C'};
constexpr uint8_t kVersion = 1;
constexpr uint8_t kModeChecksum = 0;
constexpr uint8_t kModeSecret = 1;
constexpr size_t kSaltSize = 16;
constexpr size_t kLengthSize = 4;
constexpr size_t kChecksumTagSize = 8;
constexpr size_t kMacTagSize = 16;
constexpr size_t kKeySize = 32;

void PutFixed32(uint32_t v, std::string* out) {
  char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
               static_cast<char>(v >> 24)};
  out->append(b, 4);
}

uint32_t GetFixed32(const char* p) {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  return uint32_t{u[0]} | uint32_t{u[1]} << 8 | uint32_t{u[2]} << 16 | uint32_t{u[3]} << 24;
}

// HKDF-SHA256(secret, salt, info) -> 32 bytes.
bool DeriveKey(std::string_view secret, std::string_view salt, std::string_view info,
               unsigned char key[kKeySize]) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return false;
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  EVP_KDF_free(kdf);
  if (ctx == nullptr) return false;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_octet_string(
                             OSSL_KDF_PARAM_KEY, const_cast<char*>(secret.data()), secret.size()),
                         OSSL_PARAM_construct_octet_string(
                             OSSL_KDF_PARAM_SALT, const_cast<char*>(salt.data()), salt.size()),
                         OSSL_PARAM_construct_octet_string(
                             OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()), info.size()),
                         OSSL_PARAM_construct_end()};
  bool ok = EVP_KDF_derive(ctx, key, kKeySize, params) == 1;
  EVP_KDF_CTX_free(ctx);
  return ok;
}

std::string_view DirectionLabel(bool from_server) {
  return from_server ? "sdiff records v1: master to peer" : "sdiff records v1: peer to master";
}

}  // namespace

// One AES-256-GCM context per direction, keyed once; each record sets its nonce.
struct RecordChannel::Keys {
  EVP_CIPHER_CTX* send = nullptr;
  EVP_CIPHER_CTX* receive = nullptr;
  ~Keys() {
    EVP_CIPHER_CTX_free(send);
    EVP_CIPHER_CTX_free(receive);
  }
  static EVP_CIPHER_CTX* NewContext(const unsigned char key[kKeySize]) {
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    if (ctx != nullptr && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key, nullptr) == 1) {
      return ctx;
    }
    EVP_CIPHER_CTX_free(ctx);
    return nullptr;
  }
};

Status RecordChannel::Create(std::string_view secret, bool server_side,
                             std::unique_ptr<RecordChannel>* out) {
  std::unique_ptr<RecordChannel> c(new RecordChannel());
  c->secret_mode_ = !secret.empty();
  c->server_side_ = server_side;
  c->secret_.assign(secret);
  c->hello_.assign(kMagic, sizeof(kMagic));
  c->hello_.push_back(static_cast<char>(kVersion));
  c->hello_.push_back(static_cast<char>(c->secret_mode_ ? kModeSecret : kModeChecksum));
  std::string salt(kSaltSize, '\0');
  SecureRandomBytes(reinterpret_cast<uint8_t*>(salt.data()), salt.size());
  c->hello_ += salt;
  if (c->secret_mode_) {
    c->keys_ = std::make_unique<Keys>();
    unsigned char key[kKeySize];
    if (!DeriveKey(secret, salt, DirectionLabel(server_side), key) ||
        (c->keys_->send = Keys::NewContext(key)) == nullptr) {
      OPENSSL_cleanse(key, sizeof(key));
      return Status::IOError("record layer: cannot derive a key (OpenSSL)");
    }
    OPENSSL_cleanse(key, sizeof(key));
  }
  *out = std::move(c);
  return Status::OK();
}

RecordChannel::~RecordChannel() { OPENSSL_cleanse(secret_.data(), secret_.size()); }

size_t RecordChannel::Tag(bool sending, uint64_t number, std::string_view payload,
                          char tag[kMaxTagSize]) {
  static_assert(kChecksumTagSize <= kMaxTagSize && kMacTagSize <= kMaxTagSize);
  if (!secret_mode_) {
    uint64_t h = XXH3_64bits_withSeed(payload.data(), payload.size(), number);
    for (size_t i = 0; i < kChecksumTagSize; ++i) tag[i] = static_cast<char>(h >> (8 * i));
    return kChecksumTagSize;
  }
  EVP_CIPHER_CTX* ctx = sending ? keys_->send : keys_->receive;
  unsigned char nonce[12] = {};
  for (int i = 0; i < 8; ++i) nonce[i] = static_cast<unsigned char>(number >> (8 * i));
  const uint32_t size = static_cast<uint32_t>(payload.size());
  const unsigned char length[4] = {
      static_cast<unsigned char>(size), static_cast<unsigned char>(size >> 8),
      static_cast<unsigned char>(size >> 16), static_cast<unsigned char>(size >> 24)};
  int n = 0;
  unsigned char none[1];
  bool ok =
      EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce) == 1 &&
      EVP_EncryptUpdate(ctx, nullptr, &n, length, sizeof(length)) == 1 &&
      EVP_EncryptUpdate(ctx, nullptr, &n, reinterpret_cast<const unsigned char*>(payload.data()),
                        static_cast<int>(payload.size())) == 1 &&
      EVP_EncryptFinal_ex(ctx, none, &n) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kMacTagSize, tag) == 1;
  // A failing OpenSSL call yields no tag: no record verifies, the
  // connection closes.
  return ok ? kMacTagSize : 0;
}

void RecordChannel::Seal(std::string_view plain, std::string* out) {
  const size_t tag_size = secret_mode_ ? kMacTagSize : kChecksumTagSize;
  const size_t records = (plain.size() + kMaxRecordPayload - 1) / kMaxRecordPayload;
  out->reserve(out->size() + plain.size() + records * (kLengthSize + tag_size));
  while (!plain.empty()) {
    std::string_view payload = plain.substr(0, kMaxRecordPayload);
    plain.remove_prefix(payload.size());
    PutFixed32(static_cast<uint32_t>(payload.size()), out);
    out->append(payload);
    char tag[kMaxTagSize];
    out->append(tag, Tag(/*sending=*/true, out_count_++, payload, tag));
  }
}

std::string RecordChannel::Alert(std::string_view reason) {
  reason = reason.substr(0, 255);
  std::string out;
  PutFixed32(0, &out);
  out.push_back(static_cast<char>(reason.size()));
  out.append(reason);
  return out;
}

Status RecordChannel::ReadHello() {
  const uint8_t version = static_cast<uint8_t>(in_[8]);
  const uint8_t mode = static_cast<uint8_t>(in_[9]);
  if (version != kVersion) {
    return Status::ProtocolError("the peer speaks record layer version " + std::to_string(version) +
                                 "; this sdiff speaks " + std::to_string(kVersion));
  }
  if (mode != kModeChecksum && mode != kModeSecret) {
    return Status::ProtocolError("the peer's record layer mode " + std::to_string(mode) +
                                 " is unknown");
  }
  if ((mode == kModeSecret) != secret_mode_) {
    return Status::ProtocolError(
        secret_mode_ ? "wrong secret: authentication required, and the peer has no shared secret"
                     : "wrong secret: authentication required: the peer expects a shared secret "
                       "(--secret-file), and we have none");
  }
  if (secret_mode_) {
    unsigned char key[kKeySize];
    std::string_view salt(in_.data() + 10, kSaltSize);
    bool ok = DeriveKey(secret_, salt, DirectionLabel(!server_side_), key) &&
              (keys_->receive = Keys::NewContext(key)) != nullptr;
    OPENSSL_cleanse(key, sizeof(key));
    if (!ok) return Status::IOError("record layer: cannot derive a key (OpenSSL)");
  }
  peer_hello_ = true;
  return Status::OK();
}

Status RecordChannel::Open(std::string_view bytes, std::string* plain) {
  in_.append(bytes);
  size_t pos = 0;
  Status result;
  if (!peer_hello_) {
    if (std::memcmp(in_.data(), kMagic, std::min(in_.size(), sizeof(kMagic))) != 0) {
      return Status::ProtocolError(
          "the peer does not speak sdiff's record layer: an sdiff older than protocol 3, or "
          "another service on that port");
    }
    if (in_.size() < kRecordHelloSize) return Status::OK();
    result = ReadHello();
    if (!result.ok()) return result;
    pos = kRecordHelloSize;
  }
  const size_t tag_size = secret_mode_ ? kMacTagSize : kChecksumTagSize;
  while (in_.size() - pos >= kLengthSize) {
    const uint32_t length = GetFixed32(in_.data() + pos);
    if (length == 0) {  // an alert: the peer is closing
      if (in_.size() - pos < kLengthSize + 1) break;
      const size_t reason = static_cast<uint8_t>(in_[pos + kLengthSize]);
      if (in_.size() - pos < kLengthSize + 1 + reason) break;
      result = Status::Aborted("the peer closed the connection: " +
                               in_.substr(pos + kLengthSize + 1, reason));
      break;
    }
    if (length > kMaxRecordPayload) {
      result = Status::ProtocolError("a record of " + std::to_string(length) + " bytes (at most " +
                                     std::to_string(kMaxRecordPayload) +
                                     "): the bytes were corrupted on the way, or the peer is "
                                     "not sdiff");
      break;
    }
    if (in_.size() - pos < kLengthSize + length + tag_size) break;
    std::string_view payload(in_.data() + pos + kLengthSize, length);
    std::string_view tag(payload.data() + length, tag_size);
    char expected[kMaxTagSize];
    if (Tag(/*sending=*/false, in_count_, payload, expected) != tag.size() ||
        CRYPTO_memcmp(expected, tag.data(), tag.size()) != 0) {
      result = Status::Corruption(
          secret_mode_ ? "record " + std::to_string(in_count_) +
                             " fails its MAC: wrong secret, or the bytes were changed on the way"
                       : "record " + std::to_string(in_count_) +
                             " fails its checksum: the bytes were corrupted on the way");
      break;
    }
    plain->append(payload);
    ++in_count_;
    pos += kLengthSize + length + tag_size;
  }
  in_.erase(0, pos);
  return result;
}

}  // namespace sdiff::net
