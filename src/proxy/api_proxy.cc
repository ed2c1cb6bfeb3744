#include "proxy/api_proxy.h"

#include <openssl/crypto.h>

#include <cctype>
#include <vector>

namespace kedge::proxy {

ApiProxyTarget resolve_api_proxy(const model::Snapshot& snapshot, std::string_view target) {
  ApiProxyTarget out;
  std::string_view query;
  if (auto q = target.find('?'); q != std::string_view::npos) {
    query = target.substr(q);
    target = target.substr(0, q);
  }
  constexpr std::string_view kPrefix = "/api/v1/namespaces/";
  if (!target.starts_with(kPrefix)) {
    out.status = 404;
    return out;
  }
  std::string_view rest = target.substr(kPrefix.size());
  std::vector<std::string_view> parts;  // NS, "services", NAME, "proxy", then the path
  for (int i = 0; i < 4; ++i) {
    auto slash = rest.find('/');
    parts.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) {
      rest = {};
      break;
    }
    rest = rest.substr(slash);
    if (i < 3) rest.remove_prefix(1);
  }
  if (parts.size() != 4 || parts[1] != "services" || parts[3] != "proxy" || parts[0].empty()) {
    out.status = 404;
    return out;
  }
  if (rest.empty()) {  // ".../proxy" → ".../proxy/", as the API server redirects
    out.status = 301;
    out.location = std::string(target) + "/" + std::string(query);
    return out;
  }
  // NAME may be "scheme:name:port"; kedge speaks plain HTTP to endpoints here.
  std::string_view name = parts[2];
  std::string_view port;
  if (name.starts_with("http:")) name.remove_prefix(5);
  if (name.starts_with("https:")) {
    out.status = 400;
    return out;
  }
  if (auto colon = name.find(':'); colon != std::string_view::npos) {
    port = name.substr(colon + 1);
    name = name.substr(0, colon);
  }
  std::string key = std::string(parts[0]) + "/" + std::string(name) + ":" + std::string(port);
  const model::ClusterConstPtr* found = snapshot.service_ports.find(key);
  if (!found) {
    out.status = 404;
    return out;
  }
  out.cluster = *found;
  out.upstream_target = std::string(rest) + std::string(query);
  return out;
}

bool api_proxy_authorized(std::string_view authorization, std::string_view token) {
  // The scheme is case-insensitive (RFC 9110 §11.1), as the API server reads it.
  constexpr std::string_view kBearer = "bearer ";
  if (token.empty() || authorization.size() < kBearer.size()) return false;
  for (size_t i = 0; i < kBearer.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kBearer[i]) return false;
  std::string_view given = authorization.substr(kBearer.size());
  // Length is not secret; the bytes are compared without an early exit.
  return given.size() == token.size() &&
         CRYPTO_memcmp(given.data(), token.data(), token.size()) == 0;
}

}  // namespace kedge::proxy
