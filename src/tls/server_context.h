#pragma once

#include "common/result.h"

#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using SSL_CTX = struct ssl_ctx_st;
using SSL = struct ssl_st;

namespace kedge::tls {

/// A certificate chain and key, loaded into an SSL_CTX with kedge's TLS policy: TLS 1.2 and 1.3
/// only, a modern cipher list, session tickets with rotating keys, ALPN (h2 when enabled,
/// http/1.1). Immutable once built; shared by every worker through snapshots.
/// Thread: any (read-only). Owner: shared_ptr, held by snapshots and the certificate cache.
class ServerContext {
 public:
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  /// Parses PEM (leaf first, then its chain) and a PEM key (RSA or ECDSA), and refuses a chain
  /// that does not parse, a key that does not match, or a certificate outside its validity.
  static Result<std::shared_ptr<const ServerContext>> from_pem(std::string_view cert_pem,
                                                               std::string_view key_pem,
                                                               std::string source);

  SSL_CTX* native() const { return ctx_; }
  const std::string& source() const { return source_; }  // e.g. "Secret ns/name"
  const std::vector<std::string>& dns_names() const { return dns_names_; }
  std::time_t not_after() const { return not_after_; }
  /// Whether the certificate is valid for `host` (SAN, wildcards as RFC 6125 allows).
  bool covers(std::string_view host) const;

 private:
  ServerContext() = default;
  SSL_CTX* ctx_ = nullptr;
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
