#pragma once

#include "control/published_state.h"
#include "k8s/api_client.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kedge::control {

struct StatusWriterOptions {
  std::string publish_service;                 // --publish-service NS/NAME
  std::vector<std::string> publish_addresses;  // --publish-status-address (IPs or host names)
  bool default_lb_class = true;                // LoadBalancer Services without a class are ours
  bool service_status = true;  // write Services' status.loadBalancer (kedge has LB pools)
  std::string identity;        // reportingInstance of Events
};

/// The addresses kedge's Ingresses are reachable at, as status.loadBalancer.ingress entries:
/// --publish-service's status.loadBalancer.ingress (or its LoadBalancer allocation, external
/// IPs, ClusterIP), else --publish-status-address. Empty when neither gives any.
nlohmann::json publish_entries(const StatusWriterOptions& options, const PublishedState& state);

/// The status.loadBalancer.ingress an Ingress should have, given the one it has (`current`,
/// null when none): `entries` when kedge serves it; empty when it does not but carries exactly
/// kedge's entries (kedge served it before); nullopt when nothing is to be written.
std::optional<nlohmann::json> desired_ingress_status(const nlohmann::json& current, bool served,
                                                     const nlohmann::json& entries);

/// The leader's writer: Ingress and Service status.loadBalancer through the /status subresource
/// (PUT with the object's resourceVersion, read again and retried on 409 Conflict), and Warning
/// Events for objects kedge refuses. Runs after each publication and when leadership is gained.
/// Thread: the io_context given to start(); poke() and set_leading() from any thread.
class StatusWriter {
 public:
  StatusWriter(std::shared_ptr<k8s::ApiClient> client, StateSlot& slot,
               StatusWriterOptions options);
  void start(boost::asio::io_context& ioc);
  /// The published state changed: write what is due (when leading).
  void poke();
  void set_leading(bool leading);

 private:
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<bool> reconcile();
  /// PUT .../status of one object with status.loadBalancer.ingress = entries, retrying on 409
  /// with a fresh read while the write is still needed. True when done (or no longer needed).
  boost::asio::awaitable<bool> write_status(k8s::Kind kind, nlohmann::json object,
                                            const nlohmann::json& entries);
  boost::asio::awaitable<bool> emit_events(const PublishedState& state);

  std::shared_ptr<k8s::ApiClient> client_;
  StateSlot& slot_;
  StatusWriterOptions options_;
  boost::asio::io_context* ioc_ = nullptr;
  std::unique_ptr<boost::asio::steady_timer> wake_;
  bool dirty_ = true;
  bool leading_ = false;
  std::set<std::string> reported_;  // events already sent for problems still present
};

}  // namespace kedge::control
