// HMAC-SHA256 through OpenSSL's one-shot HMAC(), and the secret-file loader.
#include "net/hmac_authenticator.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace sdiff::net {

HmacAuthenticator::HmacAuthenticator(std::string secret) : secret_(std::move(secret)) {}

HmacAuthenticator::~HmacAuthenticator() { OPENSSL_cleanse(secret_.data(), secret_.size()); }

std::string HmacAuthenticator::Sign(std::string_view message) const {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  // std::string's data() is never null, so an empty secret or message is fine.
  if (HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac,
           &mac_len) == nullptr ||
      mac_len != kMacBytes) {
    return std::string();
  }
  return std::string(reinterpret_cast<const char*>(mac), mac_len);
}

bool HmacAuthenticator::Verify(std::string_view message, std::string_view mac) const {
  std::string expected = Sign(message);
  // The length is public (always 32), so checking it first leaks nothing.
  return !expected.empty() && mac.size() == expected.size() &&
         CRYPTO_memcmp(expected.data(), mac.data(), mac.size()) == 0;
}

namespace {

// Closes the descriptor on every return path.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Status LoadSecretFile(const std::string& path, std::string* secret, std::string* warning) {
  if (warning != nullptr) warning->clear();
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return Status::IOError(
        fmt::format("cannot open secret file {}: {}", path, std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return Status::IOError(
        fmt::format("cannot stat secret file {}: {}", path, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(fmt::format("secret file {} is not a regular file", path));
  }
  auto too_large = [&](size_t size) {
    return Status::InvalidArgument(fmt::format("secret file {} is {} bytes; the limit is {}", path,
                                               size, kMaxSecretFileBytes));
  };
  if (static_cast<size_t>(st.st_size) > kMaxSecretFileBytes) {
    return too_large(static_cast<size_t>(st.st_size));
  }

  // Read one byte past the limit, in case the file grew after fstat.
  std::string contents(kMaxSecretFileBytes + 1, '\0');
  size_t size = 0;
  while (size < contents.size()) {
    ssize_t n = ::read(fd.get(), contents.data() + size, contents.size() - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      OPENSSL_cleanse(contents.data(), contents.size());
      return Status::IOError(
          fmt::format("cannot read secret file {}: {}", path, std::strerror(error)));
    }
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  if (size > kMaxSecretFileBytes) {
    OPENSSL_cleanse(contents.data(), contents.size());
    return too_large(size);
  }
  contents.resize(size);
  if (contents.ends_with("\r\n")) {
    contents.resize(contents.size() - 2);
  } else if (contents.ends_with('\n')) {
    contents.resize(contents.size() - 1);
  }
  if (contents.empty()) {
    return Status::InvalidArgument(fmt::format("secret file {} is empty", path));
  }
  if (contents.size() < kMinSecretBytes) {
    size_t n = contents.size();
    OPENSSL_cleanse(contents.data(), contents.size());
    return Status::InvalidArgument(
        fmt::format("secret in {} is {} bytes; use at least {}", path, n, kMinSecretBytes));
  }

  if ((st.st_mode & 077) != 0 && warning != nullptr) {
    *warning = fmt::format(
        "secret file {} is accessible by group or others (mode {:04o}); run chmod 600 on it", path,
        st.st_mode & 07777);
  }
  *secret = std::move(contents);
  return Status::OK();
}

}  // namespace sdiff::net
