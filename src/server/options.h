#pragma once

#include "l4/data_plane.h"
#include "l4/nftables_data_plane.h"
#include "proxy/limits.h"
#include "translate/translator.h"

#include <string>
#include <vector>

namespace kedge::server {

/// Everything `kedge serve` is told on its command line.
struct ServeOptions {
  std::vector<std::string> manifests;
  std::string http_listen = "0.0.0.0:8080";
  std::string admin_listen = "127.0.0.1:10254";
  std::string https_listen;         // empty: no TLS listener
  int64_t hsts_max_age = 31536000;  // ingress-nginx's default; 0 turns HSTS off
  bool hsts_include_subdomains = true;
  bool ocsp_stapling = true;          // staple OCSP responses of certificates that name a responder
  int64_t ocsp_refresh_max_s = 3600;  // ask the responder at least this often (hidden flag)
  int workers = 0;                    // 0: one per core
  std::string publish_status_address;  // default: the HTTP listen address (127.0.0.1 for any)
  std::string log_level = "info";
  int64_t shutdown_grace_ms = 5000;
  translate::Options translate;
  proxy::Limits limits;
  // Services.
  translate::AllocatorConfig allocator;
  std::string node_port_range = "30000-32767";
  std::vector<std::string> lb_pools;  // NAME=CIDR|FIRST-LAST
  std::string state_dir;
  l4::UserspaceOptions l4;
  std::string dataplane = "userspace";  // --dataplane: userspace or nftables
  l4::NftablesOptions nftables;
  std::string l2_interface;         // --l2-interface: announce owned LoadBalancer IPs there (ARP)
  std::string membership_api;       // --membership-api: live nodes from node Leases there
  int member_lease_duration_s = 2;  // --member-lease-duration
  // Kubernetes API source (used when no --manifests are given).
  std::string kubeconfig;    // --kubeconfig; else in-cluster when KUBERNETES_SERVICE_HOST is set
  std::string kube_context;  // --kube-context
  std::string namespace_;    // --namespace: watch one namespace (default all)
  double api_retry_max_s = 30;
  int api_list_limit = 500;
  bool leader_elect = true;
  std::string election_namespace;  // default: the service account's (or context's) namespace
  std::string election_id = "kedge-leader";
  std::string election_identity;  // default: $POD_NAME or the host name, and a random suffix
  double lease_duration_s = 15, renew_deadline_s = 10, retry_period_s = 2;
  std::string publish_service;  // NS/NAME whose address goes into Ingress status
  // API proxy (off unless both are given).
  std::string api_proxy_listen;
  std::string api_proxy_token_file;
};

/// Parses "ADDR:PORT", "[v6]:PORT" or ":PORT". Returns false on a malformed value.
bool split_host_port(const std::string& text, std::string& host, uint16_t& port);

/// Runs `kedge serve` until SIGINT/SIGTERM; returns the exit code.
int run_serve(const ServeOptions& options);

/// Runs `kedge check`: loads and translates the manifests once, prints every issue, and
/// returns non-zero when there is any.
int run_check(const std::vector<std::string>& manifests, const translate::Options& options);

}  // namespace kedge::server
