// OCSP stapling: the responder URL, what a response must be to be stapled, the staple in a
// handshake, and the stapler's loop with a fake responder.
#include "tls/ocsp.h"
#include "tls/server_context.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <thread>

namespace kedge::tls {
namespace {

using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

struct Cert {
  X509Ptr cert{nullptr, X509_free};
  KeyPtr key{nullptr, EVP_PKEY_free};
  X509* get() const { return cert.get(); }
};

/// A certificate for `cn`, signed by `issuer` (self-signed when null), with extensions given
/// as openssl.cnf values by NID.
Cert make_cert(const std::string& cn, const Cert* issuer,
               const std::vector<std::pair<int, std::string>>& extensions, long serial) {
  Cert c;
  c.key.reset(EVP_EC_gen("P-256"));
  c.cert.reset(X509_new());
  X509* x = c.cert.get();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 30 * 86400);
  X509_set_pubkey(x, c.key.get());
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* signer = issuer ? issuer->get() : x;
  X509_set_issuer_name(x, X509_get_subject_name(signer));
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, signer, x, nullptr, nullptr, 0);
  for (const auto& [nid, value] : extensions) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
    EXPECT_NE(ext, nullptr) << value;
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(x, issuer ? issuer->key.get() : c.key.get(), EVP_sha256());
  return c;
}

Cert make_ca(const std::string& cn) {
  return make_cert(cn, nullptr,
                   {{NID_basic_constraints, "critical,CA:TRUE"},
                    {NID_key_usage, "critical,keyCertSign,cRLSign"},
                    {NID_subject_key_identifier, "hash"}},
                   1);
}

constexpr const char* kUrl = "http://127.0.0.1:9/ocsp";

Cert make_leaf(const Cert& ca, long serial,
               const std::string& aia = std::string("OCSP;URI:") + kUrl) {
  std::vector<std::pair<int, std::string>> ext = {{NID_basic_constraints, "CA:FALSE"},
                                                  {NID_subject_alt_name, "DNS:shop.example.com"},
                                                  {NID_authority_key_identifier, "keyid"}};
  if (!aia.empty()) ext.emplace_back(NID_info_access, aia);
  return make_cert("shop.example.com", &ca, ext, serial);
}

std::string pem(X509* x) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_X509(bio.get(), x);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

struct ResponseSpec {
  int status = V_OCSP_CERTSTATUS_GOOD;
  long this_update = -60;   // seconds from now
  long next_update = 3600;  // seconds from now
  int response_status = OCSP_RESPONSE_STATUS_SUCCESSFUL;
};

/// A DER OCSP response about `cert` (as issued by `issuer`), signed by `signer`.
std::string make_response(X509* cert, X509* issuer, const Cert& signer, ResponseSpec spec = {}) {
  if (spec.response_status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    OCSP_RESPONSE* r = OCSP_response_create(spec.response_status, nullptr);
    unsigned char* der = nullptr;
    int n = i2d_OCSP_RESPONSE(r, &der);
    std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
    OPENSSL_free(der);
    OCSP_RESPONSE_free(r);
    return out;
  }
  OCSP_BASICRESP* basic = OCSP_BASICRESP_new();
  OCSP_CERTID* id = OCSP_cert_to_id(nullptr, cert, issuer);
  ASN1_TIME* this_update = X509_gmtime_adj(nullptr, spec.this_update);
  ASN1_TIME* next_update = X509_gmtime_adj(nullptr, spec.next_update);
  ASN1_TIME* revoked_at = X509_gmtime_adj(nullptr, -600);
  bool revoked = spec.status == V_OCSP_CERTSTATUS_REVOKED;
  EXPECT_NE(OCSP_basic_add1_status(basic, id, spec.status,
                                   revoked ? OCSP_REVOKED_STATUS_KEYCOMPROMISE : 0,
                                   revoked ? revoked_at : nullptr, this_update, next_update),
            nullptr);
  EXPECT_EQ(OCSP_basic_sign(basic, signer.get(), signer.key.get(), EVP_sha256(), nullptr, 0), 1);
  OCSP_RESPONSE* r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic);
  unsigned char* der = nullptr;
  int n = i2d_OCSP_RESPONSE(r, &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  OCSP_RESPONSE_free(r);
  OCSP_BASICRESP_free(basic);
  OCSP_CERTID_free(id);
  ASN1_TIME_free(this_update);
  ASN1_TIME_free(next_update);
  ASN1_TIME_free(revoked_at);
  return out;
}

/// Handshakes in memory with a client that asks for certificate status; returns the staple it
/// received ("" for none).
std::string staple_received(const ServerContext& server, bool ask = true) {
  SSL_CTX* client_ctx = SSL_CTX_new(TLS_client_method());
  SSL* client = SSL_new(client_ctx);
  SSL* srv = SSL_new(server.native());
  if (ask) SSL_set_tlsext_status_type(client, TLSEXT_STATUSTYPE_ocsp);
  SSL_set_tlsext_host_name(client, "shop.example.com");
  BIO *client_bio = nullptr, *server_bio = nullptr;
  BIO_new_bio_pair(&client_bio, 0, &server_bio, 0);
  SSL_set_bio(client, client_bio, client_bio);
  SSL_set_bio(srv, server_bio, server_bio);
  SSL_set_connect_state(client);
  SSL_set_accept_state(srv);
  bool client_done = false, server_done = false;
  for (int i = 0; i < 100 && !(client_done && server_done); ++i) {
    if (!client_done) client_done = SSL_do_handshake(client) == 1;
    if (!server_done) server_done = SSL_do_handshake(srv) == 1;
  }
  EXPECT_TRUE(client_done && server_done);
  const unsigned char* resp = nullptr;
  long n = SSL_get_tlsext_status_ocsp_resp(client, &resp);
  std::string out = n > 0 && resp ? std::string(reinterpret_cast<const char*>(resp), n) : "";
  SSL_free(client);
  SSL_free(srv);
  SSL_CTX_free(client_ctx);
  return out;
}

class Ocsp : public ::testing::Test {
 protected:
  Cert ca = make_ca("Test CA");
  Cert leaf = make_leaf(ca, 1001);
};

TEST_F(Ocsp, ResponderUrlComesFromAuthorityInformationAccess) {
  EXPECT_EQ(ocsp_responder_url(leaf.get()), kUrl);
  Cert two =
      make_leaf(ca, 1002, "caIssuers;URI:http://ca.example/ca.crt,OCSP;URI:http://o.example/");
  EXPECT_EQ(ocsp_responder_url(two.get()), "http://o.example/");
  EXPECT_EQ(ocsp_responder_url(make_leaf(ca, 1003, "").get()), "");
  EXPECT_EQ(ocsp_responder_url(make_leaf(ca, 1004, "caIssuers;URI:http://ca/").get()), "");
  EXPECT_EQ(ocsp_responder_url(nullptr), "");
}

TEST_F(Ocsp, GoodResponseSignedByTheIssuerIsAccepted) {
  std::string der = make_response(leaf.get(), ca.get(), ca);
  auto staple = verify_ocsp_response(der, leaf.get(), ca.get());
  ASSERT_TRUE(staple) << staple.error().message;
  EXPECT_EQ(staple->der, der);
  EXPECT_FALSE(staple->revoked);
  EXPECT_NEAR(static_cast<double>(staple->expires), static_cast<double>(std::time(nullptr) + 3600),
              5);
}

TEST_F(Ocsp, RevokedResponseIsAcceptedAsRevoked) {
  auto staple = verify_ocsp_response(
      make_response(leaf.get(), ca.get(), ca, {.status = V_OCSP_CERTSTATUS_REVOKED}), leaf.get(),
      ca.get());
  ASSERT_TRUE(staple) << staple.error().message;
  EXPECT_TRUE(staple->revoked);
}

TEST_F(Ocsp, DelegatedResponderNeedsTheOcspSigningUsage) {
  Cert delegated = make_cert("Responder", &ca,
                             {{NID_basic_constraints, "CA:FALSE"},
                              {NID_ext_key_usage, "OCSPSigning"},
                              {NID_authority_key_identifier, "keyid"}},
                             2001);
  auto ok =
      verify_ocsp_response(make_response(leaf.get(), ca.get(), delegated), leaf.get(), ca.get());
  EXPECT_TRUE(ok) << ok.error().message;
  // Another certificate of the same CA may not answer for it.
  Cert sibling = make_leaf(ca, 2002);
  auto refused =
      verify_ocsp_response(make_response(leaf.get(), ca.get(), sibling), leaf.get(), ca.get());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("not signed by the issuer"), std::string::npos)
      << refused.error().message;
}

TEST_F(Ocsp, ResponseSignedByAStrangerIsRefused) {
  Cert stranger = make_ca("Stranger CA");
  // About the right certificate (the CertID is public), signed by someone else.
  auto refused =
      verify_ocsp_response(make_response(leaf.get(), ca.get(), stranger), leaf.get(), ca.get());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("not signed by the issuer"), std::string::npos)
      << refused.error().message;
  // A stranger's CA with the same name as ours.
  Cert impostor = make_ca("Test CA");
  EXPECT_FALSE(
      verify_ocsp_response(make_response(leaf.get(), ca.get(), impostor), leaf.get(), ca.get()));
}

TEST_F(Ocsp, ResponseForAnotherCertificateIsRefused) {
  Cert other = make_leaf(ca, 1005);
  auto refused =
      verify_ocsp_response(make_response(other.get(), ca.get(), ca), leaf.get(), ca.get());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("no status for this certificate"), std::string::npos)
      << refused.error().message;
}

TEST_F(Ocsp, ExpiredUnknownUnsuccessfulAndGarbageAreRefused) {
  auto expired = verify_ocsp_response(
      make_response(leaf.get(), ca.get(), ca, {.this_update = -7200, .next_update = -3600}),
      leaf.get(), ca.get());
  ASSERT_FALSE(expired);
  EXPECT_NE(expired.error().message.find("nextUpdate"), std::string::npos);
  EXPECT_FALSE(verify_ocsp_response(
      make_response(leaf.get(), ca.get(), ca, {.this_update = 3600, .next_update = 7200}),
      leaf.get(), ca.get()));
  EXPECT_FALSE(verify_ocsp_response(
      make_response(leaf.get(), ca.get(), ca, {.status = V_OCSP_CERTSTATUS_UNKNOWN}), leaf.get(),
      ca.get()));
  auto later = verify_ocsp_response(
      make_response(leaf.get(), ca.get(), ca, {.response_status = OCSP_RESPONSE_STATUS_TRYLATER}),
      leaf.get(), ca.get());
  ASSERT_FALSE(later);
  EXPECT_NE(later.error().message.find("trylater"), std::string::npos) << later.error().message;
  EXPECT_FALSE(verify_ocsp_response("not DER", leaf.get(), ca.get()));
  std::string der = make_response(leaf.get(), ca.get(), ca);
  EXPECT_FALSE(verify_ocsp_response(der + "x", leaf.get(), ca.get()));
}

TEST_F(Ocsp, IssuerComesFromTheChainOrCaCrt) {
  std::string key = pem(leaf.key.get());
  auto with_chain = ServerContext::from_pem(pem(leaf.get()) + pem(ca.get()), key, "chain");
  ASSERT_TRUE(with_chain) << with_chain.error().message;
  ASSERT_NE((*with_chain)->issuer(), nullptr);
  EXPECT_EQ(X509_cmp((*with_chain)->issuer(), ca.get()), 0);

  auto alone = ServerContext::from_pem(pem(leaf.get()), key, "alone");
  ASSERT_TRUE(alone);
  EXPECT_EQ((*alone)->issuer(), nullptr);

  Cert stranger = make_ca("Test CA");  // same name, other key: not the issuer
  auto with_ca =
      ServerContext::from_pem(pem(leaf.get()), key, "ca.crt", pem(stranger.get()) + pem(ca.get()));
  ASSERT_TRUE(with_ca);
  ASSERT_NE((*with_ca)->issuer(), nullptr);
  EXPECT_EQ(X509_cmp((*with_ca)->issuer(), ca.get()), 0);
}

TEST_F(Ocsp, StapleIsSentToClientsThatAskWhileValid) {
  auto context =
      ServerContext::from_pem(pem(leaf.get()) + pem(ca.get()), pem(leaf.key.get()), "test");
  ASSERT_TRUE(context) << context.error().message;
  const ServerContext& server = **context;
  EXPECT_EQ(staple_received(server), "");

  std::string der = make_response(leaf.get(), ca.get(), ca);
  auto staple = verify_ocsp_response(der, leaf.get(), ca.get());
  ASSERT_TRUE(staple);
  server.set_ocsp_staple(std::make_shared<OcspStaple>(*staple));
  EXPECT_EQ(staple_received(server), der);
  EXPECT_EQ(staple_received(server, /*ask=*/false), "");

  OcspStaple expired = *staple;
  expired.expires = std::time(nullptr) - 1;
  server.set_ocsp_staple(std::make_shared<OcspStaple>(expired));
  EXPECT_EQ(staple_received(server), "");
}

TEST(OcspSchedule, RefreshAtHalfTheValidityWithinBounds) {
  using std::chrono::seconds;
  const seconds hour(3600);
  EXPECT_EQ(refresh_delay(1000, 1000 + 7 * 86400, hour), hour);
  EXPECT_EQ(refresh_delay(1000, 1000 + 1800, hour), seconds(900));
  EXPECT_EQ(refresh_delay(1000, 1000 + 30, hour), seconds(60));
  EXPECT_EQ(refresh_delay(1000, 1000 + 60, seconds(1)), seconds(1));
  EXPECT_EQ(retry_delay(1, hour), seconds(10));
  EXPECT_EQ(retry_delay(2, hour), seconds(20));
  EXPECT_EQ(retry_delay(50, hour), seconds(600));
  EXPECT_EQ(retry_delay(3, seconds(1)), seconds(1));
}

/// Polls `done` for up to 5 s.
template <typename F>
bool eventually(F done) {
  for (int i = 0; i < 500; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST_F(Ocsp, StaplerFetchesVerifiesAndStaples) {
  auto good = *ServerContext::from_pem(pem(leaf.get()) + pem(ca.get()), pem(leaf.key.get()),
                                       "Secret web/good");
  Cert leaf2 = make_leaf(ca, 1010);
  auto forged = *ServerContext::from_pem(pem(leaf2.get()) + pem(ca.get()), pem(leaf2.key.get()),
                                         "Secret web/forged");
  Cert leaf3 = make_leaf(ca, 1011, "");
  auto no_url = *ServerContext::from_pem(pem(leaf3.get()) + pem(ca.get()), pem(leaf3.key.get()),
                                         "Secret web/no-url");
  Cert stranger = make_ca("Stranger");
  std::atomic<int> fetches{0};
  StaplerOptions options;
  options.fetch = [&](const std::string& url, X509* cert, X509* issuer) -> Result<std::string> {
    ++fetches;
    EXPECT_EQ(url, kUrl);
    bool is_forged = X509_cmp(cert, leaf2.get()) == 0;
    return make_response(cert, issuer, is_forged ? stranger : ca);
  };
  OcspStapler stapler(options);
  stapler.update({good, forged, no_url});
  ASSERT_TRUE(eventually([&] { return good->ocsp_staple() != nullptr; }));
  EXPECT_TRUE(verify_ocsp_response(good->ocsp_staple()->der, leaf.get(), ca.get()));
  ASSERT_TRUE(eventually([&] { return stapler.counts().failures >= 1; }));
  EXPECT_EQ(forged->ocsp_staple(), nullptr);
  EXPECT_EQ(no_url->ocsp_staple(), nullptr);
  EXPECT_EQ(stapler.counts().staples, 1u);
  // Two fetches so far: the certificate without a responder was never asked about.
  EXPECT_EQ(fetches.load(), 2);
  // A rotated certificate is a new context: it gets its own fetch.
  auto rotated = *ServerContext::from_pem(pem(leaf.get()) + pem(ca.get()), pem(leaf.key.get()),
                                          "Secret web/good");
  stapler.update({rotated});
  ASSERT_TRUE(eventually([&] { return rotated->ocsp_staple() != nullptr; }));
  stapler.stop();
}

}  // namespace
}  // namespace kedge::tls
