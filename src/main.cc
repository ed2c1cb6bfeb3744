#include "common/log.h"
#include "echo/echo_server.h"
#include "server/options.h"

#include <CLI/CLI.hpp>

namespace {

void add_limit_flags(CLI::App& cmd, kedge::proxy::Limits& l) {
  auto ms = [&](const char* name, kedge::proxy::Millis& into, const char* help) {
    cmd.add_option_function<int64_t>(
           name, [&into](int64_t v) { into = kedge::proxy::Millis(v); }, help)
        ->default_str(std::to_string(into.count()))
        ->check(CLI::NonNegativeNumber);
  };
  cmd.add_option("--max-header-bytes", l.max_head_bytes,
                 "Largest request head (start line and fields); larger gets 431")
      ->capture_default_str();
  cmd.add_option("--max-body-bytes", l.max_body_bytes,
                 "Largest request body; larger gets 413. 0: no limit. Per Ingress: "
                 "nginx.ingress.kubernetes.io/proxy-body-size")
      ->capture_default_str();
  ms("--client-header-timeout", l.client_header_timeout,
     "ms to receive a whole request head once it started (408 after)");
  ms("--client-body-timeout", l.client_body_timeout,
     "ms between two reads of a request body, or two writes to the client");
  ms("--keepalive-timeout", l.keepalive_timeout, "ms an idle client connection is kept open");
  ms("--upstream-connect-timeout", l.upstream_connect_timeout,
     "ms to connect to an endpoint (504 after)");
  ms("--upstream-read-timeout", l.upstream_read_timeout,
     "ms between two reads from an endpoint; also the idle limit of WebSocket tunnels (504)");
  ms("--upstream-send-timeout", l.upstream_send_timeout, "ms between two writes to an endpoint");
  ms("--upstream-keepalive-timeout", l.upstream_idle_timeout,
     "ms an idle upstream connection is kept for reuse");
  cmd.add_option("--upstream-keepalive-connections", l.upstream_idle_per_endpoint,
                 "Idle upstream connections kept per endpoint and worker; below the requests "
                 "a worker has in flight to one endpoint, connections are closed and reopened")
      ->capture_default_str();
  cmd.add_option("--io-uring", l.io_uring,
                 "Batch each round's sends and receives into one system call with io_uring "
                 "(where the kernel allows it; else one system call each)")
      ->capture_default_str();
  cmd.add_option("--max-connections", l.max_connections,
                 "Open client connections per worker; more are closed at accept")
      ->capture_default_str();
  cmd.add_option("--http2-max-concurrent-streams", l.http2_max_concurrent_streams,
                 "HTTP/2 streams a client may open at once (SETTINGS_MAX_CONCURRENT_STREAMS)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 20));
  cmd.add_option("--http2-max-header-list-size", l.http2_max_header_list_size,
                 "Largest HTTP/2 header block, decoded (SETTINGS_MAX_HEADER_LIST_SIZE); larger "
                 "resets the stream")
      ->capture_default_str()
      ->check(CLI::Range(1024u, 16u << 20));
  cmd.add_option("--http2-max-frame-size", l.http2_max_frame_size,
                 "Largest HTTP/2 frame payload kedge accepts (SETTINGS_MAX_FRAME_SIZE)")
      ->capture_default_str()
      ->check(CLI::Range(16384u, 16777215u));
  cmd.add_option("--http2-max-resets", l.http2_max_resets,
                 "Streams an HTTP/2 client may cancel (RST_STREAM) within 10 s; more end the "
                 "connection with GOAWAY ENHANCE_YOUR_CALM (rapid reset)")
      ->capture_default_str();
  cmd.add_option("--limit-req-status-code", l.limit_req_status,
                 "Status for a request over an Ingress's limit-rps or limit-rpm")
      ->capture_default_str()
      ->check(CLI::Range(400, 599));
  cmd.add_option("--limit-conn-status-code", l.limit_conn_status,
                 "Status for a request over an Ingress's limit-connections")
      ->capture_default_str()
      ->check(CLI::Range(400, 599));
  cmd.add_option("--limit-table-slots", l.limit_table_slots,
                 "Client addresses (per Ingress) the limit-* annotations track at once, 24 bytes "
                 "each; beyond them, requests are let through and counted")
      ->capture_default_str()
      ->check(CLI::Range(size_t{64}, size_t{1} << 26));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "kedge: Kubernetes Ingress, Services, NodePorts and LoadBalancers in one binary.\n"
      "Reads Service, EndpointSlice, Endpoints, Ingress, IngressClass and Secret objects\n"
      "from manifest files or the Kubernetes API and serves them."};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error")
      ->capture_default_str();

  kedge::server::ServeOptions serve;
  auto* serve_cmd = app.add_subcommand(
      "serve", "Serve Ingress routes from Kubernetes manifests or the Kubernetes API");
  serve_cmd
      ->add_option("--manifests", serve.manifests,
                   "Folder (or file) of .yaml/.yml/.json manifests, watched for changes; "
                   "repeatable. Without it kedge reads the API server: --kubeconfig, else the "
                   "in-cluster service account when KUBERNETES_SERVICE_HOST is set")
      ->check(CLI::ExistingPath);
  serve_cmd
      ->add_option("--kubeconfig", serve.kubeconfig,
                   "kubeconfig file of the API server to list and watch objects from")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--kube-context", serve.kube_context,
                        "kubeconfig context (default: its current-context)");
  serve_cmd->add_option("--namespace", serve.namespace_,
                        "Watch this namespace only (default: all; IngressClasses are "
                        "cluster-wide)");
  serve_cmd
      ->add_option("--api-retry-max", serve.api_retry_max_s,
                   "Longest pause, seconds, between attempts to reach the API server (back-off "
                   "doubles from 0.25 s, jittered)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  serve_cmd
      ->add_option("--api-list-limit", serve.api_list_limit,
                   "Objects per page when listing from the API server (limit/continue)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  serve_cmd
      ->add_option("--leader-elect", serve.leader_elect,
                   "Elect one replica through a coordination.k8s.io/v1 Lease to write status "
                   "and Events")
      ->capture_default_str();
  serve_cmd->add_option("--leader-election-namespace", serve.election_namespace,
                        "Namespace of the Lease (default: the service account's namespace, or "
                        "the kubeconfig context's, or default)");
  serve_cmd->add_option("--leader-election-id", serve.election_id, "Name of the Lease")
      ->capture_default_str();
  serve_cmd->add_option("--leader-election-identity", serve.election_identity,
                        "This replica's holderIdentity (default: $POD_NAME or the host name, "
                        "with a random suffix)");
  serve_cmd
      ->add_option("--leader-election-lease-duration", serve.lease_duration_s,
                   "Seconds a leader's Lease lasts without renewal before others take it")
      ->capture_default_str();
  serve_cmd
      ->add_option("--leader-election-renew-deadline", serve.renew_deadline_s,
                   "Seconds the leader keeps trying to renew before it steps down")
      ->capture_default_str();
  serve_cmd
      ->add_option("--leader-election-retry-period", serve.retry_period_s,
                   "Seconds between attempts to acquire or renew the Lease")
      ->capture_default_str();
  serve_cmd->add_option("--publish-service", serve.publish_service,
                        "NS/NAME of kedge's own Service, whose address is written to the status "
                        "of the Ingresses kedge serves (API source)");
  serve_cmd
      ->add_option("--lb-default-class", serve.allocator.default_lb_class,
                   "LoadBalancer Services without spec.loadBalancerClass get addresses from "
                   "kedge's pools (class kedge.dev/lb always does)")
      ->capture_default_str();
  serve_cmd->add_option("--http-listen", serve.http_listen, "HTTP listener, ADDR:PORT")
      ->capture_default_str();
  serve_cmd->add_option("--https-listen", serve.https_listen,
                        "HTTPS listener, ADDR:PORT: TLS with certificates from the Secrets in "
                        "Ingress spec.tls, chosen by SNI (default: off)");
  serve_cmd->add_option("--default-ssl-certificate", serve.translate.default_ssl_certificate,
                        "NS/NAME of a kubernetes.io/tls Secret for names no Ingress covers "
                        "(default: a self-signed certificate made at start-up)");
  serve_cmd
      ->add_option("--hsts-max-age", serve.hsts_max_age,
                   "Strict-Transport-Security max-age on HTTPS answers, seconds; 0: no header")
      ->capture_default_str();
  serve_cmd
      ->add_option("--hsts-include-subdomains", serve.hsts_include_subdomains,
                   "Add includeSubDomains to Strict-Transport-Security")
      ->capture_default_str();
  serve_cmd
      ->add_option("--ocsp-stapling", serve.ocsp_stapling,
                   "Staple OCSP responses to TLS handshakes that ask for them, for certificates "
                   "whose leaf names an OCSP responder (Authority Information Access) and whose "
                   "issuer is in tls.crt or ca.crt; fetched over HTTP by kedge, verified, "
                   "refreshed before nextUpdate")
      ->capture_default_str();
  serve_cmd
      ->add_option("--ocsp-refresh-max", serve.ocsp_refresh_max_s,
                   "Longest time, seconds, between two OCSP fetches of a certificate (for tests)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{86400}))
      ->group("");
  serve_cmd
      ->add_option("--admin-listen", serve.admin_listen,
                   "Admin listener (health, metrics, read-only API), ADDR:PORT")
      ->capture_default_str();
  serve_cmd->add_option("--workers", serve.workers, "Worker threads; 0 = one per core")
      ->capture_default_str()
      ->check(CLI::Range(0, 256));
  serve_cmd
      ->add_option("--ingress-class", serve.translate.ingress_class,
                   "IngressClass name kedge answers to (controller kedge.dev/ingress-controller)")
      ->capture_default_str();
  serve_cmd
      ->add_option("--watch-ingress-without-class", serve.translate.watch_ingress_without_class,
                   "Serve Ingresses that name no class")
      ->capture_default_str();
  serve_cmd->add_option("--publish-status-address", serve.publish_status_address,
                        "Address(es), comma-separated, written to Ingress status.loadBalancer "
                        "(default: the HTTP listen address, 127.0.0.1 for a wildcard; with the "
                        "API source, used when --publish-service is not given)");
  serve_cmd
      ->add_option("--shutdown-grace-ms", serve.shutdown_grace_ms,
                   "On SIGTERM, how long requests in flight may finish")
      ->capture_default_str();
  add_limit_flags(*serve_cmd, serve.limits);
  serve_cmd
      ->add_option("--service-cidr", serve.allocator.service_cidr,
                   "IPv4 range for ClusterIPs; the default is on loopback, so it needs no "
                   "network set-up on one machine")
      ->capture_default_str();
  serve_cmd
      ->add_option("--service-node-port-range", serve.node_port_range, "NodePort range MIN-MAX")
      ->capture_default_str();
  serve_cmd->add_option("--lb-pool", serve.lb_pools,
                        "LoadBalancer address pool NAME=CIDR|FIRST-LAST[,...] (repeatable); "
                        "metallb.io/v1beta1 IPAddressPool objects add pools too");
  serve_cmd->add_option("--node-name", serve.translate.node_name,
                        "This node's name, for traffic policy Local (default: the host name)");
  serve_cmd->add_option("--node-address", serve.translate.node_addresses,
                        "Address where NodePorts open (repeatable; default: every local IPv4 "
                        "address)");
  serve_cmd->add_option("--state-dir", serve.state_dir,
                        "Folder that keeps Service allocations across restarts (default: none)");
  serve_cmd
      ->add_option_function<int64_t>(
          "--udp-idle-timeout",
          [&serve](int64_t v) { serve.l4.udp_idle_timeout = std::chrono::milliseconds(v); },
          "ms after which an idle UDP flow of a Service is forgotten")
      ->default_str("30000");
  serve_cmd
      ->add_option("--dataplane", serve.dataplane,
                   "Service forwarding: userspace (no privileges) or nftables (kernel DNAT in "
                   "table ip kedge; needs CAP_NET_ADMIN)")
      ->capture_default_str()
      ->check(CLI::IsMember({"userspace", "nftables"}));
  serve_cmd
      ->add_option_function<std::string>(
          "--nft-runner",
          [&serve](const std::string& v) {
            serve.nftables.runner = v == "command" ? kedge::l4::NftRunnerKind::Command
                                                   : kedge::l4::NftRunnerKind::Library;
          },
          "How nftables changes are applied: library (libnftables in-process) or command "
          "(nft -f -)")
      ->default_str("library")
      ->check(CLI::IsMember({"library", "command"}));
  serve_cmd->add_option("--l2-interface", serve.l2_interface,
                        "Announce the LoadBalancer IPs this node owns on this interface: the "
                        "address is added to it and announced by gratuitous ARP (MetalLB's L2 "
                        "mode; needs CAP_NET_ADMIN and CAP_NET_RAW). Default: off");
  serve_cmd->add_option("--membership-api", serve.membership_api,
                        "With --l2-interface: live nodes from the Kubernetes API at this "
                        "http://IP:PORT (a Lease per kedge instance in kube-node-lease, Node "
                        "readiness). Default: this node alone owns every address");
  serve_cmd
      ->add_option("--member-lease-duration", serve.member_lease_duration_s,
                   "Seconds after its last renewal that a node counts as gone (renewed every "
                   "quarter of it)")
      ->capture_default_str()
      ->check(CLI::Range(1, 300));
  serve_cmd->add_option("--api-proxy-listen", serve.api_proxy_listen,
                        "Serve the Kubernetes API server's service proxy paths here, ADDR:PORT "
                        "(off by default; for debugging)");
  serve_cmd
      ->add_option("--api-proxy-token-file", serve.api_proxy_token_file,
                   "Bearer token that API proxy requests must carry")
      ->check(CLI::ExistingFile);

  std::vector<std::string> check_manifests;
  kedge::translate::Options check_options;
  auto* check_cmd = app.add_subcommand(
      "check", "Validate manifests as kedge serve would, print every problem, exit 1 if any");
  check_cmd->add_option("--manifests", check_manifests, "Folder or file; repeatable")
      ->required()
      ->check(CLI::ExistingPath);
  check_cmd->add_option("--ingress-class", check_options.ingress_class, "IngressClass name")
      ->capture_default_str();

  kedge::echo::EchoOptions echo;
  auto* echo_cmd = app.add_subcommand("echo", "Run a small HTTP/WebSocket echo backend");
  echo_cmd->add_option("--listen", echo.listen, "ADDR:PORT")->capture_default_str();
  echo_cmd->add_option("--name", echo.name, "Service name to report")->capture_default_str();
  echo_cmd->add_option("--pod", echo.pod, "Pod name to report");
  echo_cmd->add_option("--namespace", echo.namespace_, "Namespace to report")
      ->capture_default_str();
  echo_cmd->add_flag("--udp", echo.udp, "Also echo UDP datagrams on the same address and port");

  CLI11_PARSE(app, argc, argv);
  kedge::init_logging(log_level);
  if (*serve_cmd) return kedge::server::run_serve(serve);
  if (*check_cmd) return kedge::server::run_check(check_manifests, check_options);
  if (*echo_cmd) return kedge::echo::run_echo(echo);
  return 2;
}
