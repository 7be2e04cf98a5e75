// Throwaway certificates for TLS tests, made at test time with OpenSSL's C API
// so no key material lives in the repository and nothing expires.
#pragma once

#include <string>

#include "engine/status.h"

namespace sdiff::testing {

// Paths of PEM files under `dir`. Keys are EC P-256, certificates valid from an
// hour ago for a day.
struct TestCerts {
  std::string dir;
  std::string ca_cert;      // self-signed CA that issued the two below
  std::string server_cert;  // CN=localhost, SAN DNS:localhost and IP:127.0.0.1, serverAuth
  std::string server_key;
  std::string client_cert;  // CN=sdiff-test-client, clientAuth
  std::string client_key;
  std::string other_ca_cert;  // an unrelated self-signed CA, for "wrong CA" tests
};

// Writes the files into the existing directory `dir`, overwriting any there.
Status MakeTestCertificates(const std::string& dir, TestCerts* out);

}  // namespace sdiff::testing
