#include "tls/server_context.h"
#include "tls/openssl_error.h"

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>

namespace kedge::tls {
namespace {

std::atomic<bool> g_http2{false};

/// Session ticket keys shared by every context, rotated every 12 hours; the previous key still
/// decrypts, so a rotation never forces a full handshake on a recent session.
class TicketKeys {
 public:
  struct Key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
  };
  static TicketKeys& get() {
    static TicketKeys keys;
    return keys;
  }
  void current(Key& out) {
    std::lock_guard lock(mutex_);
    rotate_if_due();
    out = keys_[0];
  }
  bool find(const unsigned char name[16], Key& out, bool& renew) {
    std::lock_guard lock(mutex_);
    rotate_if_due();
    for (int i = 0; i < 2; ++i)
      if (std::memcmp(keys_[i].name, name, 16) == 0) {
        out = keys_[i];
        renew = i != 0;
        return true;
      }
    return false;
  }

 private:
  TicketKeys() {
    fresh(keys_[0]);
    fresh(keys_[1]);
    rotated_ = std::chrono::steady_clock::now();
  }
  static void fresh(Key& k) {
    RAND_bytes(k.name, sizeof k.name);
    RAND_bytes(k.aes, sizeof k.aes);
    RAND_bytes(k.hmac, sizeof k.hmac);
  }
  void rotate_if_due() {
    auto now = std::chrono::steady_clock::now();
    if (now - rotated_ < std::chrono::hours(12)) return;
    keys_[1] = keys_[0];
    fresh(keys_[0]);
    rotated_ = now;
  }
  std::mutex mutex_;
  Key keys_[2];
  std::chrono::steady_clock::time_point rotated_;
};

int ticket_callback(SSL*, unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                    EVP_MAC_CTX* mac, int encrypt) {
  TicketKeys::Key key;
  int result = 1;
  if (encrypt) {
    TicketKeys::get().current(key);
    std::memcpy(key_name, key.name, 16);
    if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) return -1;
  } else {
    bool renew = false;
    if (!TicketKeys::get().find(key_name, key, renew)) return 0;  // unknown: full handshake
    result = renew ? 2 : 1;
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac, 32),
                         OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  if (encrypt) {
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv) != 1) return -1;
  } else {
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv) != 1) return -1;
  }
  return result;
}

int alpn_select(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  static const unsigned char kH2[] = {2, 'h', '2'};
  static const unsigned char kH11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  const unsigned char* server = g_http2 ? kH2 : kH11;
  unsigned int server_len = g_http2 ? sizeof kH2 : sizeof kH11;
  // Prefer h2, then http/1.1; a client offering neither gets no ALPN (and HTTP/1.1).
  for (int pass = 0; pass < 2; ++pass) {
    const unsigned char* pref = pass == 0 ? server : kH11;
    unsigned int pref_len = pass == 0 ? server_len : sizeof kH11;
    unsigned char* selected = nullptr;
    if (SSL_select_next_proto(&selected, outlen, pref, pref_len, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
      *out = selected;
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

int sni_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int servername_callback(SSL* ssl, int*, void*) {
  auto* selector = static_cast<SniSelector*>(SSL_get_ex_data(ssl, sni_index()));
  if (!selector) return SSL_TLSEXT_ERR_OK;
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  const ServerContext* chosen = selector->select(name ? name : "");
  if (!chosen) return SSL_TLSEXT_ERR_ALERT_FATAL;
  if (chosen->native() != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, chosen->native());
  return SSL_TLSEXT_ERR_OK;
}

/// Staples the context's OCSP response when the client asked for one and it is still valid.
int status_callback(SSL* ssl, void* arg) {
  OcspStapleConstPtr staple = static_cast<const ServerContext*>(arg)->ocsp_staple();
  if (!staple || staple->expires <= std::time(nullptr)) return SSL_TLSEXT_ERR_NOACK;
  // OpenSSL frees the response with the connection: it gets a copy of its own.
  void* copy = OPENSSL_memdup(staple->der.data(), staple->der.size());
  if (!copy) return SSL_TLSEXT_ERR_NOACK;
  if (SSL_set_tlsext_status_ocsp_resp(ssl, static_cast<unsigned char*>(copy),
                                      static_cast<long>(staple->der.size())) != 1) {
    OPENSSL_free(copy);
    return SSL_TLSEXT_ERR_NOACK;
  }
  return SSL_TLSEXT_ERR_OK;
}

/// The first of `candidates` that issued and signed `leaf`, with a reference of its own.
X509* find_issuer(X509* leaf, const std::vector<X509*>& candidates) {
  for (X509* c : candidates) {
    EVP_PKEY* key = X509_get0_pubkey(c);
    if (X509_check_issued(c, leaf) == X509_V_OK && key && X509_verify(leaf, key) == 1) {
      X509_up_ref(c);
      return c;
    }
  }
  ERR_clear_error();
  return nullptr;
}

std::time_t asn1_to_time(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return timegm(&tm);
}

}  // namespace

void set_http2_enabled(bool enabled) { g_http2 = enabled; }

void attach_sni_selector(SSL* ssl, SniSelector* selector) {
  SSL_set_ex_data(ssl, sni_index(), selector);
}

ServerContext::~ServerContext() {
  if (ctx_) SSL_CTX_free(ctx_);
  if (issuer_) X509_free(issuer_);
}

X509* ServerContext::leaf() const { return SSL_CTX_get0_certificate(ctx_); }

Result<ServerContextConstPtr> ServerContext::from_pem(std::string_view cert_pem,
                                                      std::string_view key_pem, std::string source,
                                                      std::string_view ca_pem) {
  ERR_clear_error();
  std::shared_ptr<ServerContext> out(new ServerContext());
  out->source_ = std::move(source);
  std::unique_ptr<BIO, decltype(&BIO_free)> cert_bio(
      BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> leaf(
      PEM_read_bio_X509_AUX(cert_bio.get(), nullptr, nullptr, nullptr), X509_free);
  if (!leaf) return fail("tls.crt: no PEM certificate: " + openssl_error());
  std::vector<std::unique_ptr<X509, decltype(&X509_free)>> chain;
  while (X509* extra = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr))
    chain.emplace_back(extra, X509_free);
  ERR_clear_error();  // the end of the PEM stream is reported as an error

  std::unique_ptr<BIO, decltype(&BIO_free)> key_bio(
      BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())), BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (!key) return fail("tls.key: no PEM private key: " + openssl_error());

  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    ERR_clear_error();
    return fail("tls.key does not match the certificate in tls.crt");
  }
  const ASN1_TIME* not_before = X509_get0_notBefore(leaf.get());
  const ASN1_TIME* not_after = X509_get0_notAfter(leaf.get());
  if (X509_cmp_current_time(not_after) <= 0)
    return fail(fmt::format("tls.crt: certificate expired"));
  if (X509_cmp_current_time(not_before) > 0)
    return fail(fmt::format("tls.crt: certificate is not valid yet"));
  out->not_after_ = asn1_to_time(not_after);

  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return fail("cannot create SSL_CTX: " + openssl_error());
  out->ctx_ = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // Mozilla's "intermediate" TLS 1.2 suites; TLS 1.3 suites are OpenSSL's defaults.
  SSL_CTX_set_cipher_list(ctx,
                          "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                          "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                          "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_callback);
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, nullptr);
  SSL_CTX_set_tlsext_servername_callback(ctx, servername_callback);
  // On every context: the SNI callback may switch the connection to any of them.
  SSL_CTX_set_tlsext_status_cb(ctx, status_callback);
  SSL_CTX_set_tlsext_status_arg(ctx, out.get());
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate(ctx, leaf.get()) != 1) return fail("tls.crt: " + openssl_error());
  for (auto& c : chain)
    if (SSL_CTX_add1_chain_cert(ctx, c.get()) != 1)
      return fail("tls.crt chain: " + openssl_error());
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) return fail("tls.key: " + openssl_error());
  if (SSL_CTX_check_private_key(ctx) != 1)
    return fail("tls.key does not match the certificate in tls.crt");

  if (auto* names = static_cast<GENERAL_NAMES*>(
          X509_get_ext_d2i(leaf.get(), NID_subject_alt_name, nullptr, nullptr))) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
      if (n->type == GEN_DNS) {
        const ASN1_STRING* s = n->d.dNSName;
        out->dns_names_.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                     ASN1_STRING_length(s));
      }
    }
    GENERAL_NAMES_free(names);
  }

  std::vector<X509*> candidates;
  for (auto& c : chain) candidates.push_back(c.get());
  std::vector<std::unique_ptr<X509, decltype(&X509_free)>> cas;
  if (!ca_pem.empty()) {
    std::unique_ptr<BIO, decltype(&BIO_free)> ca_bio(
        BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size())), BIO_free);
    while (X509* ca = PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr)) {
      cas.emplace_back(ca, X509_free);
      candidates.push_back(ca);
    }
    ERR_clear_error();
  }
  out->issuer_ = find_issuer(leaf.get(), candidates);
  return out;
}

bool ServerContext::covers(std::string_view host) const {
  X509* cert = SSL_CTX_get0_certificate(ctx_);
  return cert && X509_check_host(cert, host.data(), host.size(), 0, nullptr) == 1;
}

PemPair make_self_signed(const std::vector<std::string>& dns_names, int valid_days, bool ecdsa,
                         int not_before_days) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      ecdsa ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048), EVP_PKEY_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), static_cast<long>(not_before_days) * 86400 - 60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(valid_days) * 86400);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  std::string cn =
      dns_names.empty() ? "Kubernetes Ingress Controller Fake Certificate" : dns_names.front();
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("kedge"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  std::string san;
  for (const auto& n : dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + n;
  if (san.empty()) san = "DNS:ingress.local";
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert.get(), cert.get(), nullptr, nullptr, 0);
  if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, san.c_str())) {
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(cert.get(), key.get(), EVP_sha256());
  auto to_pem = [](auto write) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    write(bio.get());
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(n));
  };
  PemPair out;
  out.cert = to_pem([&](BIO* b) { PEM_write_bio_X509(b, cert.get()); });
  out.key = to_pem([&](BIO* b) {
    PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  return out;
}

}  // namespace kedge::tls
