#pragma once

#include "control/published_state.h"
#include "proxy/stats.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <string>
#include <thread>

namespace kedge::admin {

struct AdminRequest {
  std::string method;
  std::string path;   // without the query
  std::string query;  // after '?', raw
  std::string accept;
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

/// Everything the admin endpoints read. Stats are gathered from the workers on demand.
struct AdminSources {
  control::StateSlot& state;
  std::function<proxy::Stats()> stats;
  std::string publish_address;  // written into Ingress status.loadBalancer.ingress
  std::string server_address;   // host:port of the admin listener, for discovery
  /// Why kedge is not ready yet beyond "nothing published" (e.g. kinds still being listed from
  /// the API server); empty when nothing else is missing. May be unset.
  std::function<std::string()> not_ready = {};
  /// More Prometheus text for /metrics (e.g. the OCSP stapler's). May be unset.
  std::function<std::string()> extra_metrics = {};
};

/// The admin HTTP server: /healthz, /readyz, /metrics, /debug/*, and the read-only
/// Kubernetes-style API. Runs its own small event loop thread, off the workers.
/// Thread: constructed, started and stopped by its owner. Owner: server::Server.
class AdminServer {
 public:
  AdminServer(const boost::asio::ip::tcp::endpoint& endpoint, AdminSources sources);
  ~AdminServer();
  uint16_t port() const { return port_; }
  void start();
  void stop();

 private:
  AdminResponse handle(const AdminRequest& request);

  boost::asio::io_context ioc_{1};
  boost::asio::ip::tcp::acceptor acceptor_;
  AdminSources sources_;
  uint16_t port_ = 0;
  std::thread thread_;
};

/// The routes, without sockets (unit-testable).
AdminResponse handle_admin(const AdminRequest& request, const AdminSources& sources);
/// Kubernetes-style discovery, list and get; nullopt when the path is not an API path.
std::optional<AdminResponse> handle_k8s_api(const AdminRequest& request,
                                            const control::PublishedState* state,
                                            const AdminSources& sources);
std::string render_metrics(const proxy::Stats& stats, const control::PublishedState* state);

}  // namespace kedge::admin
