// Certificate loading and SNI selection: Secrets in, certificate per server name out.
#include "base64.h"
#include "k8s/manifest.h"
#include "k8s/object_store.h"
#include "tls/server_context.h"
#include "translate/translator.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

namespace kedge {
namespace {

std::string b64(const std::string& s) { return testing_support::base64(s); }

std::string secret_yaml(const std::string& name, const tls::PemPair& pem) {
  return "apiVersion: v1\nkind: Secret\nmetadata: {name: " + name +
         ", namespace: web}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: " + b64(pem.cert) +
         "\n  tls.key: " + b64(pem.key) + "\n---\n";
}

constexpr const char* kIngress = R"(apiVersion: v1
kind: Service
metadata: {name: s, namespace: web}
spec: {ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: site, namespace: web, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  tls:
    - hosts: [shop.example.com]
      secretName: shop
    - hosts: ["*.apps.example.com"]
      secretName: apps
  rules:
    - host: shop.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 80}}}}]}
    - host: plain.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 80}}}}]}
---
)";

struct Fixture {
  k8s::ObjectStore store;
  k8s::Issues issues;
  void load(const std::string& yaml) {
    auto file = k8s::parse_manifest(yaml, "test.yaml");
    ASSERT_TRUE(file.issues.empty()) << file.issues.front().to_string();
    for (auto& o : file.objects) store.upsert(std::make_shared<const k8s::StoredObject>(o));
  }
};

translate::Translation run(Fixture& f, translate::CertificateCache& cache,
                           tls::ServerContextConstPtr fallback) {
  translate::Options options;
  options.certificates = &cache;
  options.fallback_certificate = std::move(fallback);
  return translate::translate(f.store, options, 1);
}

TEST(ServerContext, RefusesMismatchedKeyExpiredAndGarbage) {
  auto a = tls::make_self_signed({"a.example.com"});
  auto b = tls::make_self_signed({"b.example.com"});
  EXPECT_TRUE(tls::ServerContext::from_pem(a.cert, a.key, "a"));
  auto mismatch = tls::ServerContext::from_pem(a.cert, b.key, "a");
  ASSERT_FALSE(mismatch);
  EXPECT_NE(mismatch.error().message.find("does not match"), std::string::npos);
  auto expired = tls::make_self_signed({"old.example.com"}, -1, true, -10);
  auto e = tls::ServerContext::from_pem(expired.cert, expired.key, "old");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("expired"), std::string::npos);
  EXPECT_FALSE(tls::ServerContext::from_pem("not a certificate", a.key, "x"));
  auto rsa = tls::make_self_signed({"rsa.example.com"}, 30, false);
  EXPECT_TRUE(tls::ServerContext::from_pem(rsa.cert, rsa.key, "rsa"));
}

TEST(ServerContext, CoversSanAndWildcard) {
  auto pem = tls::make_self_signed({"*.example.com", "example.com"});
  auto ctx = tls::ServerContext::from_pem(pem.cert, pem.key, "w");
  ASSERT_TRUE(ctx);
  EXPECT_TRUE((*ctx)->covers("a.example.com"));
  EXPECT_TRUE((*ctx)->covers("example.com"));
  EXPECT_FALSE((*ctx)->covers("a.b.example.com"));
  EXPECT_FALSE((*ctx)->covers("example.org"));
  EXPECT_EQ((*ctx)->dns_names().size(), 2u);
}

TEST(CertificateSelection, ExactThenWildcardThenDefault) {
  Fixture f;
  auto shop = tls::make_self_signed({"shop.example.com"});
  auto apps = tls::make_self_signed({"*.apps.example.com"});
  f.load(secret_yaml("shop", shop) + secret_yaml("apps", apps) + kIngress);
  translate::CertificateCache cache;
  auto fallback_pem = tls::make_self_signed({});
  auto fallback = *tls::ServerContext::from_pem(fallback_pem.cert, fallback_pem.key, "default");
  auto t = run(f, cache, fallback);
  for (const auto& i : t.issues) EXPECT_EQ(i.field.find("tls"), std::string::npos) << i.to_string();
  const auto& snap = *t.snapshot;
  ASSERT_NE(snap.certificate_for("shop.example.com"), nullptr);
  EXPECT_EQ(snap.certificate_for("shop.example.com")->source(), "Secret web/shop");
  EXPECT_EQ(snap.certificate_for("SHOP.example.com")->source(), "Secret web/shop");
  EXPECT_EQ(snap.certificate_for("x.apps.example.com")->source(), "Secret web/apps");
  EXPECT_EQ(snap.certificate_for("x.y.apps.example.com")->source(), "default");
  EXPECT_EQ(snap.certificate_for("")->source(), "default");  // no SNI
  EXPECT_EQ(snap.certificate_for("plain.example.com")->source(), "default");
  // Hosts in spec.tls redirect plain HTTP; others do not.
  EXPECT_TRUE(snap.route("shop.example.com", "/")->ssl_redirect);
  EXPECT_FALSE(snap.route("plain.example.com", "/")->ssl_redirect);
}

TEST(CertificateSelection, BadSecretReportedAndLastGoodKept) {
  auto good = tls::make_self_signed({"shop.example.com"});
  auto other = tls::make_self_signed({"other.example.com"});
  translate::CertificateCache cache;
  {
    Fixture f;
    f.load(secret_yaml("shop", good) + kIngress);
    auto t = run(f, cache, nullptr);
    ASSERT_NE(t.snapshot->certificate_for("shop.example.com"), nullptr);
  }
  Fixture f;
  f.load(secret_yaml("shop", {good.cert, other.key}) + kIngress);  // key no longer matches
  auto t = run(f, cache, nullptr);
  bool reported = false;
  for (const auto& i : t.issues)
    if (i.kind == "Secret" && i.name == "shop" &&
        i.message.find("does not match") != std::string::npos &&
        i.message.find("Ingress web/site") != std::string::npos)
      reported = true;
  EXPECT_TRUE(reported);
  const tls::ServerContext* kept = t.snapshot->certificate_for("shop.example.com");
  ASSERT_NE(kept, nullptr);
  EXPECT_TRUE(kept->covers("shop.example.com"));
}

TEST(CertificateSelection, MissingSecretReportedOnIngress) {
  Fixture f;
  f.load(kIngress);
  translate::CertificateCache cache;
  auto t = run(f, cache, nullptr);
  bool reported = false;
  for (const auto& i : t.issues)
    if (i.kind == "Ingress" && i.field == "spec.tls[0].secretName" &&
        i.message.find("web/shop not found") != std::string::npos)
      reported = true;
  EXPECT_TRUE(reported);
  EXPECT_EQ(t.snapshot->certificate_for("shop.example.com"), nullptr);
}

TEST(CertificateSelection, SslRedirectAnnotationTurnsItOff) {
  Fixture f;
  auto shop = tls::make_self_signed({"shop.example.com"});
  std::string ing = kIngress;
  ing.replace(ing.find("creationTimestamp"), 0,
              "annotations: {nginx.ingress.kubernetes.io/ssl-redirect: \"false\"}, ");
  f.load(secret_yaml("shop", shop) + ing);
  translate::CertificateCache cache;
  auto t = run(f, cache, nullptr);
  EXPECT_FALSE(t.snapshot->route("shop.example.com", "/")->ssl_redirect);
}

}  // namespace
}  // namespace kedge
