// TLS contexts for the master's listener and the follower's connections:
// TLS 1.2 or later, certificates from PEM files, optional mutual TLS.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "engine/status.h"

namespace sdiff::net {

// PEM file paths. All empty (the default) means plain TCP.
struct TlsOptions {
  std::string cert_file;  // our certificate chain, leaf first
  std::string key_file;   // the private key of that leaf
  std::string ca_file;    // the CA(s) the peer's certificate must chain to
  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
};

// The master's context. cert_file and key_file are required and must match.
// With ca_file, every follower must present a certificate that chains to it
// (mutual TLS); without, followers are not asked for one.
// Errors (InvalidArgument or IOError) name the offending file.
Status MakeServerTlsContext(const TlsOptions& options,
                            std::unique_ptr<boost::asio::ssl::context>* out);

// A follower's context. The master's certificate must chain to ca_file or,
// without it, to the system's default trust store. cert_file and key_file,
// both or neither, give the follower a certificate for mutual TLS.
// The context does not check the master's name: each connection must set SNI
// and a verify callback such as boost::asio::ssl::host_name_verification(host).
Status MakeClientTlsContext(const TlsOptions& options,
                            std::unique_ptr<boost::asio::ssl::context>* out);

}  // namespace sdiff::net
