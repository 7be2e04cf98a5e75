// Builds Asio SSL contexts; Asio's exceptions are caught here and become Status.
#include "net/tls.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <utility>

namespace sdiff::net {
namespace {

namespace ssl = boost::asio::ssl;

// OpenSSL's own message for a missing file is vague ("system lib"); ours names it.
Status CheckReadable(const char* what, const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::IOError(fmt::format("cannot read {} {}: {}", what, path, std::strerror(errno)));
  }
  ::close(fd);
  return Status::OK();
}

// Whether `path` holds a PEM private key OpenSSL can parse, to tell a bad key
// file from a good key that belongs to another certificate.
bool IsPrivateKeyFile(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "r");
  if (file == nullptr) return false;
  EVP_PKEY* key = PEM_read_PrivateKey(file, nullptr, nullptr, nullptr);
  std::fclose(file);
  bool parsed = key != nullptr;
  EVP_PKEY_free(key);
  ERR_clear_error();
  return parsed;
}

// May throw (Asio's constructor does when OpenSSL cannot allocate).
Status NewContext(ssl::context::method method, std::unique_ptr<ssl::context>* out) {
  auto context = std::make_unique<ssl::context>(method);
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  // The options only take versions away; the floor also covers any added later.
  if (SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION) != 1) {
    ERR_clear_error();
    return Status::IOError("cannot set TLS 1.2 as the minimum protocol version");
  }
  *out = std::move(context);
  return Status::OK();
}

// Loads our certificate chain and its private key, checking they match.
Status UseCertificateAndKey(const TlsOptions& options, ssl::context* context) {
  Status s = CheckReadable("certificate file", options.cert_file);
  if (!s.ok()) return s;
  s = CheckReadable("private key file", options.key_file);
  if (!s.ok()) return s;

  boost::system::error_code ec;
  context->use_certificate_chain_file(options.cert_file, ec);
  if (ec) {
    return Status::InvalidArgument(fmt::format("cannot load a PEM certificate chain from {}: {}",
                                               options.cert_file, ec.message()));
  }
  auto mismatch = [&] {
    return Status::InvalidArgument(
        fmt::format("private key in {} does not match the certificate in {}", options.key_file,
                    options.cert_file));
  };
  context->use_private_key_file(options.key_file, ssl::context::pem, ec);
  if (ec) {
    // OpenSSL refuses a key that does not match the certificate already loaded.
    if (IsPrivateKeyFile(options.key_file)) return mismatch();
    return Status::InvalidArgument(
        fmt::format("cannot load a PEM private key from {}: {}", options.key_file, ec.message()));
  }
  if (SSL_CTX_check_private_key(context->native_handle()) != 1) {
    ERR_clear_error();
    return mismatch();
  }
  return Status::OK();
}

Status UseCa(const std::string& ca_file, ssl::context* context) {
  Status s = CheckReadable("CA file", ca_file);
  if (!s.ok()) return s;
  boost::system::error_code ec;
  context->load_verify_file(ca_file, ec);
  if (ec) {
    return Status::InvalidArgument(
        fmt::format("cannot load PEM CA certificates from {}: {}", ca_file, ec.message()));
  }
  return Status::OK();
}

// OpenSSL fills a certificate's cache of decoded extensions (key
// identifiers, purposes) the first time the certificate is used. Two
// handshakes that do that at once on different threads race inside
// libcrypto (TSan saw it: the master's two I/O threads verifying
// clients against the same CA). Filling the caches here, on the thread that
// builds the context, leaves the handshakes only reads.
void FillCertificateCaches(ssl::context* context) {
  SSL_CTX* ctx = context->native_handle();
  auto fill = [](X509* cert) {
    if (cert != nullptr) X509_check_purpose(cert, -1, 0);
  };
  fill(SSL_CTX_get0_certificate(ctx));
  STACK_OF(X509)* chain = nullptr;
  if (SSL_CTX_get0_chain_certs(ctx, &chain) == 1 && chain != nullptr) {
    for (int i = 0; i < sk_X509_num(chain); ++i) fill(sk_X509_value(chain, i));
  }
  if (X509_STORE* store = SSL_CTX_get_cert_store(ctx)) {
    STACK_OF(X509_OBJECT)* objects = X509_STORE_get0_objects(store);
    for (int i = 0; i < sk_X509_OBJECT_num(objects); ++i) {
      fill(X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objects, i)));
    }
  }
  ERR_clear_error();
}

Status Unexpected(const char* side, const std::exception& e) {
  return Status::IOError(fmt::format("cannot set up the TLS {} context: {}", side, e.what()));
}

}  // namespace

Status MakeServerTlsContext(const TlsOptions& options, std::unique_ptr<ssl::context>* out) {
  if (options.cert_file.empty() || options.key_file.empty()) {
    return Status::InvalidArgument("a TLS server needs both a certificate file and a key file");
  }
  try {
    std::unique_ptr<ssl::context> context;
    Status s = NewContext(ssl::context::tls_server, &context);
    if (!s.ok()) return s;
    s = UseCertificateAndKey(options, context.get());
    if (!s.ok()) return s;
    if (!options.ca_file.empty()) {
      s = UseCa(options.ca_file, context.get());
      if (!s.ok()) return s;
      // Name the acceptable CAs in the CertificateRequest, so clients pick the right certificate.
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.ca_file.c_str());
      if (names != nullptr) SSL_CTX_set_client_CA_list(context->native_handle(), names);
      ERR_clear_error();
      context->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    } else {
      context->set_verify_mode(ssl::verify_none);
    }
    FillCertificateCaches(context.get());
    *out = std::move(context);
    return Status::OK();
  } catch (const std::exception& e) {
    return Unexpected("server", e);
  }
}

Status MakeClientTlsContext(const TlsOptions& options, std::unique_ptr<ssl::context>* out) {
  if (options.cert_file.empty() != options.key_file.empty()) {
    return Status::InvalidArgument(
        "a TLS client certificate needs both a certificate file and a key file, or neither");
  }
  try {
    std::unique_ptr<ssl::context> context;
    Status s = NewContext(ssl::context::tls_client, &context);
    if (!s.ok()) return s;
    if (!options.cert_file.empty()) {
      s = UseCertificateAndKey(options, context.get());
      if (!s.ok()) return s;
    }
    if (!options.ca_file.empty()) {
      s = UseCa(options.ca_file, context.get());
      if (!s.ok()) return s;
    } else {
      boost::system::error_code ec;
      context->set_default_verify_paths(ec);
      if (ec) {
        return Status::IOError(
            fmt::format("cannot load the system's default CA certificates: {}", ec.message()));
      }
    }
    context->set_verify_mode(ssl::verify_peer);
    FillCertificateCaches(context.get());
    *out = std::move(context);
    return Status::OK();
  } catch (const std::exception& e) {
    return Unexpected("client", e);
  }
}

}  // namespace sdiff::net
