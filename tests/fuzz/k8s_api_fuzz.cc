// The Kubernetes-style read API: "METHOD SP TARGET" against a fixed set of objects of every kind
// it serves. Every answer must be a well-formed JSON document with a status the API uses.
#include "admin/admin_server.h"
#include "k8s/manifest.h"
#include "translate/allocator.h"
#include "translate/translator.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

constexpr const char* kObjects = R"(apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: default}
subsets: [{addresses: [{ip: 127.0.0.1}], ports: [{name: http, port: 8080}]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [127.0.0.1]}]
ports: [{name: http, port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: kedge}
spec: {controller: kedge.dev/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: default}
spec:
  ingressClassName: kedge
  rules: [{host: a.example, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]
)";

const kedge::control::PublishedState& state() {
  static const kedge::control::PublishedState* s = [] {
    auto* st = new kedge::control::PublishedState;
    auto file = kedge::k8s::parse_manifest(kObjects, "objects.yaml");
    if (file.objects.size() != 5) std::abort();
    for (auto& o : file.objects)
      st->store.upsert(std::make_shared<const kedge::k8s::StoredObject>(std::move(o)));
    kedge::translate::AllocatorConfig config;
    config.pools.push_back(
        {"pool", {*kedge::translate::Ipv4Range::parse("198.51.100.0/30", true)}});
    st->allocations = std::make_shared<const kedge::translate::Allocations>(
        kedge::translate::allocate(st->store, {}, config).allocations);
    st->snapshot = kedge::translate::translate(st->store, {}, 1, st->allocations.get()).snapshot;
    st->reloads = 1;
    return st;
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kedge::control::StateSlot slot;
  static kedge::admin::AdminSources sources{slot, [] { return kedge::proxy::Stats{}; }, "192.0.2.1",
                                            "127.0.0.1:10254"};
  std::string text(reinterpret_cast<const char*>(data), size);
  auto space = text.find(' ');
  if (space == std::string::npos) return 0;
  kedge::admin::AdminRequest req;
  req.method = text.substr(0, space);
  std::string target = text.substr(space + 1);
  auto q = target.find('?');
  req.path = target.substr(0, q);
  if (q != std::string::npos) req.query = target.substr(q + 1);
  bool no_state = !req.query.empty() && req.query[0] == '!';
  auto res = kedge::admin::handle_k8s_api(req, no_state ? nullptr : &state(), sources);
  if (!res) return 0;
  if (res->status != 200 && res->status != 404 && res->status != 405 && res->status != 503)
    std::abort();
  if (nlohmann::json::parse(res->body, nullptr, false).is_discarded()) std::abort();
  return 0;
}
