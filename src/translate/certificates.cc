#include "translate/certificates.h"

namespace kedge::translate {

CertificateCache::Lookup CertificateCache::get(const k8s::Secret& secret) {
  const std::string id = secret.meta.namespace_ + "/" + secret.meta.name;
  auto crt = secret.data.find("tls.crt");
  auto key = secret.data.find("tls.key");
  auto ca = secret.data.find("ca.crt");
  std::string ca_pem = ca == secret.data.end() ? std::string() : ca->second;
  Entry& e = entries_[id];
  if (crt == secret.data.end() || key == secret.data.end()) {
    e.cert.clear();
    e.key.clear();
    e.error = "Secret has no tls.crt and tls.key";
    return {e.last_good, e.error};
  }
  if (e.cert != crt->second || e.key != key->second || e.ca != ca_pem ||
      (e.error.empty() && !e.last_good)) {
    e.cert = crt->second;
    e.key = key->second;
    e.ca = ca_pem;
    auto built = tls::ServerContext::from_pem(e.cert, e.key, "Secret " + id, e.ca);
    if (built) {
      e.last_good = *built;
      e.error.clear();
    } else {
      e.error = built.error().message;
    }
  }
  return {e.last_good, e.error};
}

void CertificateCache::retain(const k8s::ObjectStore& store) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto slash = it->first.find('/');
    bool exists = store.get<k8s::Secret>(it->first.substr(0, slash), it->first.substr(slash + 1));
    it = exists ? std::next(it) : entries_.erase(it);
  }
}

}  // namespace kedge::translate
