#include "k8s/kubeconfig.h"

#include "k8s/manifest.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace kedge::k8s {

namespace fs = std::filesystem;

Result<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(fmt::format("cannot read {}", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<void> parse_server_url(const std::string& url, ClusterConfig& into) {
  constexpr std::string_view kScheme = "https://";
  if (!url.starts_with(kScheme))
    return fail(fmt::format("server \"{}\": only https:// API servers are supported", url));
  std::string rest = url.substr(kScheme.size());
  rest = rest.substr(0, rest.find('/'));
  if (rest.empty()) return fail(fmt::format("server \"{}\" names no host", url));
  std::string host = rest, port = "443";
  if (rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string::npos) return fail(fmt::format("server \"{}\": bad IPv6 host", url));
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':') port = rest.substr(close + 2);
  } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.find_first_not_of("0123456789") != std::string::npos)
    return fail(fmt::format("server \"{}\": expected https://HOST[:PORT]", url));
  into.host = host;
  into.port = port;
  return {};
}

namespace {

Result<std::string> base64(const std::string& text, const std::string& what) {
  std::string compact;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) compact += c;
  if (compact.size() % 4 != 0) return fail(what + " is not valid base64");
  std::string out(compact.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(compact.data()),
                          static_cast<int>(compact.size()));
  if (n < 0) return fail(what + " is not valid base64");
  size_t pad = 0;
  if (!compact.empty() && compact.back() == '=') ++pad;
  if (compact.size() > 1 && compact[compact.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

using nlohmann::json;

const json kNull;

/// The member `key` of a map, or null.
const json& at(const json& map, const char* key) {
  if (!map.is_object()) return kNull;
  auto it = map.find(key);
  return it == map.end() ? kNull : *it;
}

/// The `item` map of the entry called `name` in a kubeconfig list (clusters, users, contexts).
const json& named(const json& list, const std::string& name, const char* item) {
  if (!list.is_array()) return kNull;
  for (const json& entry : list)
    if (at(entry, "name") == name) return at(entry, item);
  return kNull;
}

/// A scalar as text (a plain `port: 443` is a number in the JSON tree).
std::string text(const json& map, const char* key) {
  const json& v = at(map, key);
  if (v.is_string()) return v.get<std::string>();
  return v.is_number() || v.is_boolean() ? v.dump() : std::string();
}

/// Inline "-data" (base64) wins over the file, as in client-go.
Result<std::string> data_or_file(const json& map, const char* data_key, const char* file_key,
                                 const fs::path& base) {
  if (auto data = text(map, data_key); !data.empty()) return base64(data, data_key);
  if (auto file = text(map, file_key); !file.empty()) {
    fs::path p(file);
    return read_file(p.is_relative() ? base / p : p);
  }
  return std::string();
}

}  // namespace

Result<ClusterConfig> load_kubeconfig(const fs::path& path, const std::string& context) {
  auto content = read_file(path);
  if (!content) return fail(content.error().message);
  json root;
  bool first = true;
  if (auto bad = read_yaml(*content, [&](const json& document, int, const LineMap&) {
        if (first) root = document;
        first = false;
      }))
    return fail(fmt::format("{}:{}: {}", path.string(), bad->line, bad->message));
  auto error = [&](const std::string& message) {
    return fail(fmt::format("kubeconfig {}: {}", path.string(), message));
  };
  if (!root.is_object()) return error("not a kubeconfig (expected a map)");
  std::string ctx_name = context.empty() ? text(root, "current-context") : context;
  if (ctx_name.empty()) return error("no current-context and no --kube-context");
  const json& ctx = named(at(root, "contexts"), ctx_name, "context");
  if (ctx.is_null()) return error(fmt::format("context \"{}\" not found", ctx_name));
  std::string cluster_name = text(ctx, "cluster"), user_name = text(ctx, "user");
  const json& cluster = named(at(root, "clusters"), cluster_name, "cluster");
  if (cluster.is_null()) return error(fmt::format("cluster \"{}\" not found", cluster_name));
  const json& user = named(at(root, "users"), user_name, "user");
  if (!user_name.empty() && user.is_null())
    return error(fmt::format("user \"{}\" not found", user_name));

  ClusterConfig c;
  c.source = fmt::format("kubeconfig {} (context {})", path.string(), ctx_name);
  c.namespace_ = text(ctx, "namespace");
  if (auto ok = parse_server_url(text(cluster, "server"), c); !ok) return error(ok.error().message);
  fs::path base = path.parent_path();
  auto ca = data_or_file(cluster, "certificate-authority-data", "certificate-authority", base);
  if (!ca) return error(ca.error().message);
  c.ca_pem = std::move(*ca);
  c.insecure = at(cluster, "insecure-skip-tls-verify") == true;
  c.tls_server_name = text(cluster, "tls-server-name");
  c.token = text(user, "token");
  if (auto file = text(user, "tokenFile"); !file.empty()) {
    fs::path p(file);
    c.token_file = (p.is_relative() ? base / p : p).string();
  }
  auto cert = data_or_file(user, "client-certificate-data", "client-certificate", base);
  if (!cert) return error(cert.error().message);
  auto key = data_or_file(user, "client-key-data", "client-key", base);
  if (!key) return error(key.error().message);
  c.client_cert_pem = std::move(*cert);
  c.client_key_pem = std::move(*key);
  if (c.client_cert_pem.empty() != c.client_key_pem.empty())
    return error("a client certificate needs its key (and the key its certificate)");
  if (!at(user, "exec").is_null() || !at(user, "auth-provider").is_null())
    if (c.token.empty() && c.token_file.empty() && c.client_cert_pem.empty())
      return error(
          "exec and auth-provider credentials are not supported; use a token or a "
          "client certificate");
  return c;
}

Result<ClusterConfig> in_cluster_config(const fs::path& account_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host || !port || !*port)
    return fail(
        "in-cluster configuration needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT");
  ClusterConfig c;
  c.source = fmt::format("in-cluster service account ({})", account_dir.string());
  c.host = host;
  c.port = port;
  c.token_file = (account_dir / "token").string();
  auto token = read_file(c.token_file);
  if (!token) return fail(token.error().message);
  auto ca = read_file(account_dir / "ca.crt");
  if (!ca) return fail(ca.error().message);
  c.ca_pem = std::move(*ca);
  if (auto ns = read_file(account_dir / "namespace"); ns) {
    c.namespace_ = *ns;
    while (!c.namespace_.empty() && std::isspace(static_cast<unsigned char>(c.namespace_.back())))
      c.namespace_.pop_back();
  }
  return c;
}

}  // namespace kedge::k8s
