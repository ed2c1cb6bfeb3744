#include "admin/admin_server.h"
#include "control/controller.h"
#include "k8s/dir_watcher.h"
#include "k8s/manifest_source.h"
#include "l4/l2_announcer.h"
#include "membership/lease_membership.h"
#include "server/kube_runtime.h"
#include "server/options.h"
#include "server/worker.h"
#include "tls/ocsp.h"
#include "tls/server_context.h"

#include <ifaddrs.h>
#include <netdb.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <csignal>
#include <cstring>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <unordered_set>

namespace kedge::server {

namespace asio = boost::asio;

bool split_host_port(const std::string& text, std::string& host, uint16_t& port) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  std::string p = text.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
    return false;
  int value = std::stoi(p);
  if (value > 65535) return false;
  port = static_cast<uint16_t>(value);
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

namespace {

/// How much nicer the control thread is than the workers: 5 steps, so that they outweigh it
/// 3:1 on a shared core.
constexpr int kControlNice = 5;

/// Every IPv4 address of this machine's interfaces (where NodePorts open by default).
std::vector<std::string> local_addresses() {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return {"127.0.0.1"};
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    char buf[NI_MAXHOST];
    if (getnameinfo(i->ifa_addr, sizeof(sockaddr_in), buf, sizeof buf, nullptr, 0,
                    NI_NUMERICHOST) == 0)
      out.push_back(buf);
  }
  freeifaddrs(list);
  return out;
}

/// Fills the allocator's ranges from the flags; false (with a message) on a bad value.
bool service_config(ServeOptions& o) {
  auto dash = o.node_port_range.find('-');
  try {
    o.allocator.node_port_min = std::stoi(o.node_port_range.substr(0, dash));
    o.allocator.node_port_max = std::stoi(o.node_port_range.substr(dash + 1));
  } catch (...) {
    dash = std::string::npos;
  }
  if (dash == std::string::npos || o.allocator.node_port_min < 1 ||
      o.allocator.node_port_max > 65535 || o.allocator.node_port_min > o.allocator.node_port_max) {
    spdlog::error("--service-node-port-range: expected MIN-MAX, got \"{}\"", o.node_port_range);
    return false;
  }
  if (!translate::Ipv4Range::parse(o.allocator.service_cidr, true)) {
    spdlog::error("--service-cidr: expected an IPv4 CIDR, got \"{}\"", o.allocator.service_cidr);
    return false;
  }
  for (const auto& text : o.lb_pools) {
    auto eq = text.find('=');
    std::string name = eq == std::string::npos ? "default" : text.substr(0, eq);
    std::string ranges = eq == std::string::npos ? text : text.substr(eq + 1);
    translate::AddressPool pool{name, {}, true};
    size_t start = 0;
    while (start <= ranges.size()) {
      size_t comma = ranges.find(',', start);
      std::string one = ranges.substr(start, comma == std::string::npos ? comma : comma - start);
      auto r = translate::Ipv4Range::parse(one, true);
      if (!r) {
        spdlog::error("--lb-pool: \"{}\" is not an IPv4 CIDR or FIRST-LAST range", one);
        return false;
      }
      pool.ranges.push_back(*r);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    o.allocator.pools.push_back(std::move(pool));
  }
  if (o.translate.node_name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    o.translate.node_name = host;
  }
  if (o.translate.node_addresses.empty()) o.translate.node_addresses = local_addresses();
  return true;
}

/// Every certificate a snapshot may serve, for the OCSP stapler.
std::vector<tls::ServerContextConstPtr> certificates_of(const model::Snapshot& snapshot) {
  std::vector<tls::ServerContextConstPtr> out;
  std::unordered_set<const tls::ServerContext*> seen;  // one certificate often serves many hosts
  snapshot.certificates.for_each([&](const std::string&, const tls::ServerContextConstPtr& c) {
    if (seen.insert(c.get()).second) out.push_back(c);
  });
  if (snapshot.default_certificate) out.push_back(snapshot.default_certificate);
  return out;
}

}  // namespace

int run_check(const std::vector<std::string>& manifests, const translate::Options& options) {
  std::vector<std::filesystem::path> roots(manifests.begin(), manifests.end());
  k8s::ManifestSource source(roots);
  auto load = source.reload();
  auto t = translate::translate(load.store, options, 1);
  size_t n = 0;
  for (const auto* list : {&load.issues, &t.issues})
    for (const auto& issue : *list) {
      std::cout << issue.to_string() << "\n";
      ++n;
    }
  std::cout << load.files << " files, " << load.store.size() << " objects, "
            << t.snapshot->served_ingresses.size() << " Ingresses served, " << n << " problems\n";
  return n == 0 ? 0 : 1;
}

int run_serve(const ServeOptions& flags) {
  ServeOptions options = flags;
  if (!service_config(options)) return 2;
  std::string http_host, admin_host;
  uint16_t http_port = 0, admin_port = 0;
  if (!split_host_port(options.http_listen, http_host, http_port)) {
    spdlog::error("--http-listen: expected ADDR:PORT, got \"{}\"", options.http_listen);
    return 2;
  }
  if (!split_host_port(options.admin_listen, admin_host, admin_port)) {
    spdlog::error("--admin-listen: expected ADDR:PORT, got \"{}\"", options.admin_listen);
    return 2;
  }
  SourceMode mode = source_mode(options);
  if (mode == SourceMode::None) {
    spdlog::error(
        "no configuration source: pass --manifests DIR or --kubeconfig FILE, or run in a "
        "cluster (KUBERNETES_SERVICE_HOST)");
    return 2;
  }
  if (mode == SourceMode::Manifests && !options.kubeconfig.empty()) {
    spdlog::error("--manifests and --kubeconfig exclude each other");
    return 2;
  }
  std::unique_ptr<KubeRuntime> kube;
  if (mode != SourceMode::Manifests) {
    auto created = KubeRuntime::create(options, mode);
    if (!created) {
      spdlog::error("kubernetes API: {}", created.error().message);
      return 2;
    }
    kube = std::move(*created);
    options.allocator.cluster_assigned = true;  // ClusterIPs and NodePorts are the API server's
  }

  // Block the stop signals in every thread; the main thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigset_t blocked = signals;  // and SIGHUP, which asks for a reload (below)
  sigaddset(&blocked, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &blocked, nullptr);

  int n_workers = options.workers > 0
                      ? options.workers
                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string https_host;
  uint16_t https_port = 0;
  const bool https = !options.https_listen.empty();
  if (https && !split_host_port(options.https_listen, https_host, https_port)) {
    spdlog::error("--https-listen: expected ADDR:PORT, got \"{}\"", options.https_listen);
    return 2;
  }
  if (https) {
    // The certificate for names no Ingress covers, as ingress-nginx makes one.
    tls::PemPair pem = tls::make_self_signed({});
    auto fallback = tls::ServerContext::from_pem(pem.cert, pem.key, "self-signed default");
    if (!fallback) {
      spdlog::error("cannot make the default certificate: {}", fallback.error().message);
      return 1;
    }
    options.translate.fallback_certificate = *fallback;
    tls::set_http2_enabled(true);  // ALPN offers h2, then http/1.1
  }
  std::string hsts;
  if (options.hsts_max_age > 0)
    hsts = fmt::format("max-age={}{}", options.hsts_max_age,
                       options.hsts_include_subdomains ? "; includeSubDomains" : "");

  // Before the workers: they refer to it.
  proxy::ClientLimiter client_limiter(options.limits.limit_table_slots);
  std::vector<std::unique_ptr<Worker>> workers;
  auto http_endpoint = asio::ip::tcp::endpoint(asio::ip::make_address(http_host), http_port);
  auto https_endpoint = asio::ip::tcp::endpoint(
      https ? asio::ip::make_address(https_host) : asio::ip::address(), https_port);
  try {
    for (int i = 0; i < n_workers; ++i) {
      auto w = std::make_unique<Worker>(i, options.limits, client_limiter);
      // With port 0, every worker shares the port the first one was given.
      if (https)
        https_endpoint.port(
            w->listen(https_endpoint, proxy::ListenerInfo{"https", https_port, "", 0, hsts}));
      http_endpoint.port(w->listen(
          http_endpoint, proxy::ListenerInfo{"http", http_port, "",
                                             https ? https_endpoint.port() : uint16_t{0}, ""}));
      workers.push_back(std::move(w));
    }
  } catch (const boost::system::system_error& e) {
    spdlog::error("cannot listen on {} {}: {}", options.http_listen, options.https_listen,
                  e.code().message());
    return 1;
  }

  if (!options.api_proxy_listen.empty()) {
    std::string host, token;
    uint16_t port = 0;
    if (options.api_proxy_token_file.empty() ||
        !split_host_port(options.api_proxy_listen, host, port)) {
      spdlog::error("--api-proxy-listen needs ADDR:PORT and --api-proxy-token-file");
      return 2;
    }
    std::ifstream in(options.api_proxy_token_file);
    std::getline(in, token);
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())))
      token.pop_back();
    if (token.empty()) {
      spdlog::error("--api-proxy-token-file {} holds no token", options.api_proxy_token_file);
      return 2;
    }
    auto ep = asio::ip::tcp::endpoint(asio::ip::make_address(host), port);
    try {
      for (auto& w : workers) ep.port(w->listen(ep, proxy::ListenerInfo{"http", port, token}));
    } catch (const boost::system::system_error& e) {
      spdlog::error("cannot listen on {}: {}", options.api_proxy_listen, e.code().message());
      return 1;
    }
    spdlog::info("API proxy on {}:{} (bearer token required)", host, ep.port());
  }

  // Fetches on a thread of its own: a slow responder delays no translation and no request.
  std::unique_ptr<tls::OcspStapler> stapler;
  if (https && options.ocsp_stapling)
    stapler = std::make_unique<tls::OcspStapler>(
        tls::StaplerOptions{.max_refresh = std::chrono::seconds(options.ocsp_refresh_max_s)});

  control::StateSlot slot;
  std::string publish = options.publish_status_address;
  if (publish.empty()) publish = http_endpoint.address().is_unspecified() ? "127.0.0.1" : http_host;
  admin::AdminSources sources{slot,
                              [&workers] {
                                proxy::Stats total;
                                for (auto& w : workers) total.merge(w->stats().get());
                                return total;
                              },
                              publish, ""};
  if (kube) sources.not_ready = kube->readiness();
  if (stapler)
    sources.extra_metrics = [&stapler] {
      auto counts = stapler->counts();
      return fmt::format(
          "# HELP kedge_ocsp_staples Certificates with a valid OCSP response to staple.\n"
          "# TYPE kedge_ocsp_staples gauge\nkedge_ocsp_staples {}\n"
          "# HELP kedge_ocsp_failures_total OCSP fetches that failed or whose response was "
          "refused.\n"
          "# TYPE kedge_ocsp_failures_total counter\nkedge_ocsp_failures_total {}\n",
          counts.staples, counts.failures);
    };
  std::unique_ptr<admin::AdminServer> admin;
  try {
    auto ep = asio::ip::tcp::endpoint(asio::ip::make_address(admin_host), admin_port);
    sources.server_address = options.admin_listen;
    admin = std::make_unique<admin::AdminServer>(ep, sources);
  } catch (const boost::system::system_error& e) {
    spdlog::error("cannot listen on {}: {}", options.admin_listen, e.code().message());
    return 1;
  }

  std::vector<std::filesystem::path> roots(options.manifests.begin(), options.manifests.end());
  std::unique_ptr<k8s::ManifestSource> manifests;
  if (!kube) manifests = std::make_unique<k8s::ManifestSource>(roots);
  k8s::Source& source = kube ? kube->source() : *manifests;
  std::unique_ptr<l4::DataPlane> data_plane;
  if (options.dataplane == "nftables") {
    options.nftables.userspace = options.l4;
    auto plane = l4::make_nftables_data_plane(options.nftables);
    if (!plane) {
      spdlog::error("--dataplane nftables: {}", plane.error().message);
      return 1;
    }
    data_plane = std::move(*plane);
  } else {
    data_plane = l4::make_userspace_data_plane(options.l4);
  }
  std::shared_ptr<membership::LeaseMembership> leases;
  std::unique_ptr<l4::L2Announcer> announcer;
  if (!options.l2_interface.empty()) {
    std::shared_ptr<l4::Membership> members;
    if (!options.membership_api.empty()) {
      auto made = membership::make_lease_membership(
          options.membership_api, "", options.translate.node_name, options.member_lease_duration_s);
      if (!made) {
        spdlog::error("--membership-api: {}", made.error().message);
        return 2;
      }
      leases = *made;
      members = leases;
    } else {
      members = l4::make_static_membership(options.translate.node_name);
    }
    announcer = std::make_unique<l4::L2Announcer>(
        l4::L2Options{.node_name = options.translate.node_name, .interface = options.l2_interface},
        members);
  }
  control::Controller controller(
      source, options.translate, options.allocator, options.state_dir, slot,
      [&, stapled = std::optional<model::Snapshot>()](model::SnapshotConstPtr snapshot) mutable {
        for (auto& w : workers) w->publish(snapshot);
        // The stapler hears of the certificates when they change (at 10,000 hosts, walking them
        // costs more than the rest of a publication).
        if (stapler && !(stapled && stapled->certificates.shares_with(snapshot->certificates) &&
                         stapled->default_certificate == snapshot->default_certificate)) {
          stapler->update([snapshot] { return certificates_of(*snapshot); });
          stapled.emplace();
          stapled->certificates = snapshot->certificates;
          stapled->default_certificate = snapshot->default_certificate;
        }
        data_plane->apply(snapshot);
        if (announcer) announcer->apply(snapshot);
      });
  // Watch before the first load, so that no change made once /readyz answers can be missed.
  std::unique_ptr<k8s::DirWatcher> watcher;
  if (!kube)
    watcher = std::make_unique<k8s::DirWatcher>(roots, [&controller] { controller.notify(); });
  int sig = 0;
  if (kube) {
    // Nothing is served before every kind has been listed once; /readyz says what is missing.
    kube->start(controller, slot);
    admin->start();
    sig = kube->wait_synced(signals);
  }
  if (sig == 0) {
    controller.load_now();
    for (auto& w : workers) w->start();
    if (!kube) admin->start();
    spdlog::info("kedge serving http on {}:{}{} with {} workers; admin on {}:{}", http_host,
                 http_endpoint.port(),
                 https ? fmt::format(", https on {}:{}", https_host, https_endpoint.port()) : "",
                 n_workers, admin_host, admin->port());
    if (workers.front()->batching())
      spdlog::info("socket calls: each round of a worker's loop batched through io_uring");
    else if (int refused = workers.front()->batching_refused())
      spdlog::warn("socket calls: the kernel refused io_uring ({}); one system call each",
                   std::strerror(refused));
  }

  std::thread control_thread([&controller] {
    ::pthread_setname_np(::pthread_self(), "kedge-control");
    // Changes are read and translated at a lower priority than the workers serve: on a busy
    // core a change then waits for them, instead of them waiting for a change (its helper
    // threads inherit this).
    const auto tid = static_cast<id_t>(::gettid());
    errno = 0;
    const int nice = ::getpriority(PRIO_PROCESS, tid);  // -1 is a valid value: errno tells
    if (errno != 0 || ::setpriority(PRIO_PROCESS, tid, std::min(nice + kControlNice, 19)) != 0)
      spdlog::warn("cannot lower the control thread's priority: {}", std::strerror(errno));
    controller.run();
  });

  while (sig == 0 || sig == SIGHUP) {
    if (sig == SIGHUP) {  // re-read the manifests; no connection is touched
      spdlog::info("SIGHUP: reloading");
      controller.notify();
    }
    sigwait(&blocked, &sig);
  }
  spdlog::info("signal {}: draining (grace {} ms)", sig, options.shutdown_grace_ms);
  if (kube) kube->shutdown();  // hand the lease over before draining
  controller.stop();
  control_thread.join();
  for (auto& w : workers) w->drain(std::chrono::milliseconds(options.shutdown_grace_ms));
  for (auto& w : workers) w->join();
  if (stapler) stapler->stop();
  if (announcer) announcer->stop();
  if (leases) leases->stop();
  data_plane->stop();
  admin->stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace kedge::server
