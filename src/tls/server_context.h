#pragma once

#include "common/result.h"

#include <atomic>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using SSL_CTX = struct ssl_ctx_st;
using SSL = struct ssl_st;
using X509 = struct x509_st;

namespace kedge::tls {

/// A DER OCSP response for a certificate, already verified, and when it stops being valid.
struct OcspStaple {
  std::string der;
  std::time_t expires = 0;  // nextUpdate (or a bound kedge chose when the responder gave none)
  bool revoked = false;
};
using OcspStapleConstPtr = std::shared_ptr<const OcspStaple>;

/// A certificate chain and key, loaded into an SSL_CTX with kedge's TLS policy: TLS 1.2 and 1.3
/// only, a modern cipher list, session tickets with rotating keys, ALPN (h2 when enabled,
/// http/1.1). Immutable once built, except for its OCSP staple, which the stapler replaces
/// atomically and handshakes that ask for it (status_request) send.
/// Thread: any. Owner: shared_ptr, held by snapshots, the certificate cache and the stapler.
class ServerContext {
 public:
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  /// Parses PEM (leaf first, then its chain) and a PEM key (RSA or ECDSA), and refuses a chain
  /// that does not parse, a key that does not match, or a certificate outside its validity.
  /// `ca_pem` (a Secret's ca.crt, may be empty) is only searched for the leaf's issuer, which
  /// OCSP needs when the chain does not hold it.
  static Result<std::shared_ptr<const ServerContext>> from_pem(std::string_view cert_pem,
                                                               std::string_view key_pem,
                                                               std::string source,
                                                               std::string_view ca_pem = {});

  SSL_CTX* native() const { return ctx_; }
  const std::string& source() const { return source_; }  // e.g. "Secret ns/name"
  const std::vector<std::string>& dns_names() const { return dns_names_; }
  std::time_t not_after() const { return not_after_; }
  /// Whether the certificate is valid for `host` (SAN, wildcards as RFC 6125 allows).
  bool covers(std::string_view host) const;

  X509* leaf() const;
  /// The certificate that signed the leaf, from the chain or ca.crt; null when neither has it.
  X509* issuer() const { return issuer_; }
  /// The staple sent to clients that ask for certificate status; null: none.
  OcspStapleConstPtr ocsp_staple() const { return staple_.load(); }
  void set_ocsp_staple(OcspStapleConstPtr staple) const { staple_.store(std::move(staple)); }

 private:
  ServerContext() = default;
  SSL_CTX* ctx_ = nullptr;
  X509* issuer_ = nullptr;
  mutable std::atomic<OcspStapleConstPtr> staple_;
  std::string source_;
  std::vector<std::string> dns_names_;
  std::time_t not_after_ = 0;
};
using ServerContextConstPtr = std::shared_ptr<const ServerContext>;

/// A self-signed certificate and key in PEM, for the default certificate (as ingress-nginx's
/// "Kubernetes Ingress Controller Fake Certificate") and for tests.
struct PemPair {
  std::string cert;
  std::string key;
};
PemPair make_self_signed(const std::vector<std::string>& dns_names, int valid_days = 365,
                         bool ecdsa = true, int not_before_days = 0);

/// Offers h2 in ALPN (off until HTTP/2 is enabled on a listener).
void set_http2_enabled(bool enabled);

/// Chooses the certificate for a TLS handshake from its SNI name ("" without SNI).
/// Thread: the connection's. Owner: the connection, for the length of its handshake.
class SniSelector {
 public:
  virtual ~SniSelector() = default;
  virtual const ServerContext* select(std::string_view server_name) = 0;
};

/// Makes `selector` decide the certificate of this connection (every ServerContext installs the
/// SNI callback that consults it).
void attach_sni_selector(SSL* ssl, SniSelector* selector);

}  // namespace kedge::tls
