#pragma once

#include "common/result.h"

#include <filesystem>
#include <string>

namespace kedge::k8s {

/// How to reach and authenticate to an API server, as client-go's rest.Config would hold it.
struct ClusterConfig {
  std::string host;  // name or IP literal (no brackets)
  std::string port = "443";
  std::string ca_pem;           // trusted CAs; empty: the system's default trust store
  bool insecure = false;        // insecure-skip-tls-verify
  std::string tls_server_name;  // overrides the name checked in the server certificate
  std::string token;            // static bearer token
  std::string token_file;       // re-read on every request (rotated service-account tokens)
  std::string client_cert_pem, client_key_pem;
  std::string namespace_;  // the context's (or the pod's) namespace; "" when none
  std::string source;      // where this came from, for messages
};

/// Reads a kubeconfig file like client-go: the current context (or `context` when not empty),
/// its cluster (server, certificate-authority[-data], insecure-skip-tls-verify, tls-server-name)
/// and user (token, tokenFile, client-certificate[-data], client-key[-data]). Relative file paths
/// are relative to the kubeconfig's folder. Only https:// servers are accepted.
Result<ClusterConfig> load_kubeconfig(const std::filesystem::path& path,
                                      const std::string& context = "");

/// In-cluster configuration like client-go's rest.InClusterConfig: the server from
/// KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT, the service account's token (as a file,
/// re-read when it rotates), ca.crt and namespace from `account_dir`.
Result<ClusterConfig> in_cluster_config(
    const std::filesystem::path& account_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

/// Splits "https://host:port/" into host and port. Fails on anything but https.
Result<void> parse_server_url(const std::string& url, ClusterConfig& into);

/// Reads a whole file; fails with a message naming it.
Result<std::string> read_file(const std::filesystem::path& path);

}  // namespace kedge::k8s
