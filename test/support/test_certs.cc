// Builds a small PKI with OpenSSL's C API: two CAs, a server and a client leaf.
#include "test/support/test_certs.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <utility>
#include <vector>

namespace sdiff::testing {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free_all(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct ExtensionFree {
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;

// The OpenSSL error queue as one line, and cleared.
std::string OpenSslError(const std::string& what) {
  std::string text = what;
  while (unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    text += text == what ? ": " : "; ";
    text += buf;
  }
  return text;
}

Pkey NewKey() { return Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); }

struct Extension {
  int nid;
  const char* value;
};

// A certificate for `subject_key` named CN=`common_name`, signed by `issuer_key`
// as `issuer` (null: self-signed).
Status NewCertificate(const std::string& common_name, EVP_PKEY* subject_key, X509* issuer,
                      EVP_PKEY* issuer_key, const std::vector<Extension>& extensions, Cert* out) {
  Cert cert(X509_new());
  if (!cert) return Status::IOError(OpenSslError("X509_new"));
  // A random positive 64-bit serial, as the RFC 5280 uniqueness rule expects.
  unsigned char serial_bytes[8];
  std::unique_ptr<BIGNUM, BnFree> serial;
  if (RAND_bytes(serial_bytes, sizeof(serial_bytes)) == 1) {
    serial_bytes[0] &= 0x7f;
    serial.reset(BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr));
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  bool ok = serial && X509_set_version(cert.get(), X509_VERSION_3) == 1 &&
            BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) != nullptr &&
            X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60 * 60) != nullptr &&
            X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 60 * 60) != nullptr &&
            X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       reinterpret_cast<const unsigned char*>(common_name.c_str()),
                                       -1, -1, 0) == 1 &&
            X509_set_issuer_name(cert.get(),
                                 issuer != nullptr ? X509_get_subject_name(issuer) : name) == 1 &&
            X509_set_pubkey(cert.get(), subject_key) == 1;
  if (!ok) return Status::IOError(OpenSslError("cannot fill in certificate " + common_name));

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
  for (const Extension& e : extensions) {
    std::unique_ptr<X509_EXTENSION, ExtensionFree> ext(
        X509V3_EXT_nconf_nid(nullptr, &ctx, e.nid, e.value));
    if (!ext || X509_add_ext(cert.get(), ext.get(), -1) != 1) {
      return Status::IOError(OpenSslError(std::string("cannot add extension ") + OBJ_nid2sn(e.nid) +
                                          "=" + e.value + " to " + common_name));
    }
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) {
    return Status::IOError(OpenSslError("cannot sign certificate " + common_name));
  }
  *out = std::move(cert);
  return Status::OK();
}

Status NewCa(const std::string& common_name, Pkey* key, Cert* cert) {
  *key = NewKey();
  if (!*key) return Status::IOError(OpenSslError("cannot generate a key for " + common_name));
  return NewCertificate(common_name, key->get(), nullptr, key->get(),
                        {{NID_basic_constraints, "critical,CA:TRUE"},
                         {NID_key_usage, "critical,keyCertSign,cRLSign"},
                         {NID_subject_key_identifier, "hash"}},
                        cert);
}

Status NewLeaf(const std::string& common_name, const char* extended_usage, const char* alt_names,
               X509* ca, EVP_PKEY* ca_key, Pkey* key, Cert* cert) {
  *key = NewKey();
  if (!*key) return Status::IOError(OpenSslError("cannot generate a key for " + common_name));
  std::vector<Extension> extensions = {{NID_basic_constraints, "critical,CA:FALSE"},
                                       {NID_key_usage, "critical,digitalSignature"},
                                       {NID_ext_key_usage, extended_usage},
                                       {NID_subject_key_identifier, "hash"},
                                       {NID_authority_key_identifier, "keyid"}};
  if (alt_names != nullptr) extensions.push_back({NID_subject_alt_name, alt_names});
  return NewCertificate(common_name, key->get(), ca, ca_key, extensions, cert);
}

Status WritePem(const std::string& path, X509* cert, EVP_PKEY* key) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_file(path.c_str(), "w"));
  if (!bio) return Status::IOError(OpenSslError("cannot create " + path));
  bool ok = cert != nullptr ? PEM_write_bio_X509(bio.get(), cert) == 1
                            : PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr,
                                                       nullptr) == 1;
  if (!ok || BIO_flush(bio.get()) != 1) {
    return Status::IOError(OpenSslError("cannot write " + path));
  }
  return Status::OK();
}

}  // namespace

Status MakeTestCertificates(const std::string& dir, TestCerts* out) {
  TestCerts certs;
  certs.dir = dir;
  certs.ca_cert = dir + "/ca.pem";
  certs.server_cert = dir + "/server.pem";
  certs.server_key = dir + "/server.key";
  certs.client_cert = dir + "/client.pem";
  certs.client_key = dir + "/client.key";
  certs.other_ca_cert = dir + "/other_ca.pem";

  Pkey ca_key, other_ca_key, server_key, client_key;
  Cert ca, other_ca, server, client;
  Status s = NewCa("sdiff test CA", &ca_key, &ca);
  if (s.ok()) s = NewCa("sdiff other test CA", &other_ca_key, &other_ca);
  if (s.ok()) {
    s = NewLeaf("localhost", "serverAuth", "DNS:localhost,IP:127.0.0.1", ca.get(), ca_key.get(),
                &server_key, &server);
  }
  if (s.ok()) {
    s = NewLeaf("sdiff-test-client", "clientAuth", nullptr, ca.get(), ca_key.get(), &client_key,
                &client);
  }
  if (s.ok()) s = WritePem(certs.ca_cert, ca.get(), nullptr);
  if (s.ok()) s = WritePem(certs.other_ca_cert, other_ca.get(), nullptr);
  if (s.ok()) s = WritePem(certs.server_cert, server.get(), nullptr);
  if (s.ok()) s = WritePem(certs.server_key, nullptr, server_key.get());
  if (s.ok()) s = WritePem(certs.client_cert, client.get(), nullptr);
  if (s.ok()) s = WritePem(certs.client_key, nullptr, client_key.get());
  if (!s.ok()) return s;
  *out = std::move(certs);
  return Status::OK();
}

}  // namespace sdiff::testing
