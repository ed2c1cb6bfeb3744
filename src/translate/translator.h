#pragma once

#include "k8s/issue.h"
#include "k8s/object_store.h"
#include "model/snapshot.h"
#include "translate/allocator.h"
#include "translate/certificates.h"

#include <map>
#include <memory>
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

/// Turns objects into routing snapshots, one after another, translating again only what changed
/// since the previous call: the parts of Ingresses and Services whose objects, or the objects
/// they read (Services, EndpointSlices, Endpoints, Secrets, allocations), differ by identity in
/// the store; then only the hosts those parts name are assembled again, into maps shared with
/// the previous snapshot (model::SharedMap). A changed IngressClass or changed options translate
/// everything. The result is the one a fresh Translator gives for the same input.
/// Thread: one caller at a time (the control thread).
class Translator {
 public:
  Translator();
  ~Translator();
  Translator(Translator&&) noexcept;
  Translator& operator=(Translator&&) noexcept;

  /// `allocations` must not change once passed: a new allocation is a new object.
  Translation translate(const k8s::ObjectStore& store, const Options& options, uint64_t generation,
                        std::shared_ptr<const Allocations> allocations = nullptr);

  /// What the last translate() built anew (the rest was reused).
  struct Work {
    size_t ingresses = 0;
    size_t services = 0;
    size_t hosts = 0;
  };
  Work last_work() const { return last_; }

 public:  // the parts' types, for the translator's helpers
  struct IngressPart;
  struct ServicePart;

 private:
  struct State;
  void invalidate(const k8s::ObjectStore& store, const Options& options,
                  const std::shared_ptr<const Allocations>& allocations);
  void add_ingress(const k8s::ObjectKey& key, IngressPart part);
  void drop_ingress(const k8s::ObjectKey& key);
  void drop_service(const k8s::ObjectKey& key);
  model::ClusterConstPtr cluster(const std::string& ns, const k8s::IngressServiceBackend& backend,
                                 model::LbPolicy policy);
  IngressPart ingress_part(const k8s::StoredObjectConstPtr& so);
  ServicePart service_part(const k8s::Service& svc, const k8s::StoredObject& so);
  void assemble_host(const std::string& host, model::Snapshot& snap);

  std::unique_ptr<State> state_;
  Work last_;
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
