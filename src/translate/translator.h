#pragma once

#include "k8s/issue.h"
#include "k8s/object_store.h"
#include "model/snapshot.h"
#include "translate/allocator.h"
#include "translate/certificates.h"

#include <map>
#include <string>
#include <vector>

namespace kedge::translate {

inline constexpr std::string_view kControllerName = "kedge.dev/ingress-controller";

struct Options {
  std::string ingress_class = "kedge";      // --ingress-class
  bool watch_ingress_without_class = true;  // --watch-ingress-without-class
  std::string node_name;                    // --node-name: this node, for traffic policy Local
  std::vector<std::string> node_addresses;  // --node-address: where NodePorts open
  /// ExternalName → addresses, resolved by the control thread before translating.
  std::map<std::string, std::vector<std::string>> external_names;
  /// TLS: built certificates by Secret (null: certificates are ignored), the certificate for
  /// names no Ingress covers, and --default-ssl-certificate NS/NAME which replaces it.
  CertificateCache* certificates = nullptr;
  tls::ServerContextConstPtr fallback_certificate;
  std::string default_ssl_certificate;
};

struct Translation {
  model::SnapshotConstPtr snapshot;
  k8s::Issues issues;  // objects or parts left out, with the reason
};

/// Turns the objects into a complete routing snapshot. Pure: no I/O, never fails as a whole;
/// whatever cannot be used is left out and reported.
/// Thread: any.
/// `allocations` (may be null) gives Services their ClusterIPs, NodePorts and LoadBalancer IPs;
/// each becomes an L4 listener in the snapshot.
Translation translate(const k8s::ObjectStore& store, const Options& options, uint64_t generation,
                      const Allocations* allocations = nullptr);

/// Whether kedge serves this Ingress, by spec.ingressClassName, the legacy annotation, or the
/// default-class rules.
bool serves_ingress(const k8s::ObjectStore& store, const Options& options,
                    const k8s::Ingress& ingress);

}  // namespace kedge::translate
