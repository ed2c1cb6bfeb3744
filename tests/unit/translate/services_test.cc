// Service translation: the L4 listeners, traffic policies, health checks and API proxy ports
// that translate() derives from Services and their allocations.
#include "translate/translator.h"

#include "k8s/manifest.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace kedge::translate {
namespace {

using k8s::Issues;

std::string dump(const Issues& issues) {
  std::string out;
  for (const auto& i : issues) out += i.to_string() + "\n";
  return out;
}

/// TCP "http" 80→8080 and UDP "dns" 53→5353; endpoints on two nodes.
constexpr const char* kApp = R"(apiVersion: v1
kind: Service
metadata: {name: app, namespace: shop}
spec:
  type: LoadBalancer
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: dns, port: 53, targetPort: 5353, protocol: UDP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: app-1
  namespace: shop
  labels: {kubernetes.io/service-name: app}
addressType: IPv4
ports:
- {name: http, port: 8080, protocol: TCP}
- {name: dns, port: 5353, protocol: UDP}
endpoints:
- addresses: [10.1.0.1]
  nodeName: node-a
  targetRef: {kind: Pod, name: app-a}
- addresses: [10.1.0.2]
  nodeName: node-b
  targetRef: {kind: Pod, name: app-b}
- addresses: [10.1.0.3]
  nodeName: node-b
  targetRef: {kind: Pod, name: app-c}
- addresses: [10.1.0.4]
  nodeName: node-a
  conditions: {ready: false}
)";

class ServicesTest : public testing::Test {
 protected:
  ServicesTest() {
    options_.node_name = "node-a";
    options_.node_addresses = {"192.168.1.10", "10.0.0.10"};
    ServiceAllocation& a = allocations_.services["shop/app"];
    a.cluster_ip = "10.96.0.17";
    a.node_ports = {{"http/TCP/80", 30086}, {"dns/UDP/53", 30087}};
    a.load_balancer_ip = "192.168.10.1";
    a.pool = "default";
  }

  void add(const std::string& yaml) { docs_ += "---\n" + yaml; }

  Translation run(bool with_allocations = true) {
    k8s::ManifestFile m = k8s::parse_manifest(docs_, "t.yaml");
    EXPECT_TRUE(m.issues.empty()) << dump(m.issues);
    store_ = {};
    for (auto& o : m.objects) store_.upsert(std::make_shared<const k8s::StoredObject>(o));
    Translation t = translate(store_, options_, 3, with_allocations ? &allocations_ : nullptr);
    EXPECT_NE(t.snapshot, nullptr);
    return t;
  }

  /// The app Service with extra spec lines (indented two spaces).
  void add_app(const std::string& extra_spec = "") {
    std::string y = kApp;
    if (!extra_spec.empty()) y.replace(y.find("  type: LoadBalancer\n"), 0, extra_spec);
    add(y);
  }

  Options options_;
  Allocations allocations_;
  std::string docs_;
  k8s::ObjectStore store_;
};

const char* role_name(model::L4Role r) {
  switch (r) {
    case model::L4Role::ClusterIP:
      return "ClusterIP";
    case model::L4Role::NodePort:
      return "NodePort";
    case model::L4Role::LoadBalancer:
      return "LoadBalancer";
  }
  return "?";
}

std::vector<std::string> endpoint_list(const model::ClusterConstPtr& c) {
  std::vector<std::string> out;
  if (!c) return out;
  for (const auto& e : c->endpoints) out.push_back(e.address.to_string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

/// "ROLE ADDR/proto SERVICE -> endpoints [affinity]", sorted: the listeners at a glance.
std::vector<std::string> listeners(const model::Snapshot& s) {
  std::vector<std::string> out;
  for (const auto& l : s.l4_listeners) {
    std::string line = std::string(role_name(l.role)) + " " + l.address.to_string() +
                       (l.protocol == model::L4Protocol::Udp ? "/udp " : "/tcp ") + l.service +
                       " -> " + join(endpoint_list(l.cluster));
    if (l.affinity_timeout_s) line += " affinity=" + std::to_string(l.affinity_timeout_s);
    out.push_back(line);
  }
  std::sort(out.begin(), out.end());
  return out;
}

const model::L4Listener* listener_at(const model::Snapshot& s, const std::string& addr,
                                     model::L4Protocol proto = model::L4Protocol::Tcp) {
  for (const auto& l : s.l4_listeners)
    if (l.address.to_string() == addr && l.protocol == proto) return &l;
  return nullptr;
}

constexpr const char* kAll = "10.1.0.1:8080,10.1.0.2:8080,10.1.0.3:8080";
constexpr const char* kAllUdp = "10.1.0.1:5353,10.1.0.2:5353,10.1.0.3:5353";

TEST_F(ServicesTest, ListenersForClusterIpNodePortsAndLoadBalancer) {
  add_app();
  Translation t = run();
  EXPECT_TRUE(t.issues.empty()) << dump(t.issues);
  std::vector<std::string> want = {
      std::string("ClusterIP 10.96.0.17:53/udp shop/app:dns -> ") + kAllUdp,
      std::string("ClusterIP 10.96.0.17:80/tcp shop/app:http -> ") + kAll,
      std::string("LoadBalancer 192.168.10.1:53/udp shop/app:dns -> ") + kAllUdp,
      std::string("LoadBalancer 192.168.10.1:80/tcp shop/app:http -> ") + kAll,
      // One NodePort listener per node address.
      std::string("NodePort 10.0.0.10:30086/tcp shop/app:http -> ") + kAll,
      std::string("NodePort 10.0.0.10:30087/udp shop/app:dns -> ") + kAllUdp,
      std::string("NodePort 192.168.1.10:30086/tcp shop/app:http -> ") + kAll,
      std::string("NodePort 192.168.1.10:30087/udp shop/app:dns -> ") + kAllUdp,
  };
  EXPECT_EQ(listeners(*t.snapshot), want);
  EXPECT_TRUE(t.snapshot->health_checks.empty());
  // The three roles of a port share one endpoint set.
  auto* c = listener_at(*t.snapshot, "10.96.0.17:80");
  auto* n = listener_at(*t.snapshot, "10.0.0.10:30086");
  auto* l = listener_at(*t.snapshot, "192.168.10.1:80");
  ASSERT_TRUE(c && n && l);
  EXPECT_EQ(c->cluster, n->cluster);
  EXPECT_EQ(c->cluster, l->cluster);
  // The endpoints keep their pod and node.
  for (const auto& e : c->cluster->endpoints)
    if (e.address.to_string() == "10.1.0.1:8080") {
      EXPECT_EQ(e.pod, "app-a");
      EXPECT_EQ(e.node, "node-a");
    }
}

TEST_F(ServicesTest, NoAllocationNoListeners) {
  add_app();
  Translation t = run(false);
  EXPECT_TRUE(t.snapshot->l4_listeners.empty());
  EXPECT_TRUE(t.snapshot->health_checks.empty());
  // The API proxy still reaches the Service.
  EXPECT_TRUE(t.snapshot->service_ports.contains("shop/app:http"));

  // A Service the allocator refused has no entry in the allocations either.
  allocations_.services.clear();
  t = run();
  EXPECT_TRUE(t.snapshot->l4_listeners.empty());
}

TEST_F(ServicesTest, ClusterIpOnlyAndHeadless) {
  add(R"(apiVersion: v1
kind: Service
metadata: {name: plain, namespace: shop}
spec:
  ports:
  - {port: 9000, targetPort: 9000}
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: shop}
spec:
  clusterIP: None
  ports:
  - {port: 9001}
)");
  allocations_.services.clear();
  allocations_.services["shop/plain"].cluster_ip = "10.96.0.40";
  allocations_.services["shop/headless"].cluster_ip = "None";
  Translation t = run();
  // An unnamed port is named by its number.
  EXPECT_EQ(listeners(*t.snapshot),
            std::vector<std::string>{"ClusterIP 10.96.0.40:9000/tcp shop/plain:9000 -> "});
}

TEST_F(ServicesTest, ExternalTrafficPolicyLocalUsesOnlyThisNodesEndpoints) {
  add_app("  externalTrafficPolicy: Local\n");
  allocations_.services["shop/app"].health_check_node_port = 30088;
  Translation t = run();
  EXPECT_TRUE(t.issues.empty()) << dump(t.issues);
  // ClusterIP traffic is internal: all endpoints. NodePort and LoadBalancer: node-a's only (the
  // not-ready one on node-a is not used).
  EXPECT_EQ(join(endpoint_list(listener_at(*t.snapshot, "10.96.0.17:80")->cluster)), kAll);
  for (const char* addr : {"192.168.1.10:30086", "10.0.0.10:30086", "192.168.10.1:80"}) {
    const model::L4Listener* l = listener_at(*t.snapshot, addr);
    ASSERT_NE(l, nullptr) << addr;
    EXPECT_EQ(join(endpoint_list(l->cluster)), "10.1.0.1:8080") << addr;
    EXPECT_EQ(l->cluster->node, "node-a") << addr;  // the data planes read the policy from it
  }
  EXPECT_EQ(listener_at(*t.snapshot, "10.96.0.17:80")->cluster->node, "");
  EXPECT_EQ(join(endpoint_list(
                listener_at(*t.snapshot, "192.168.10.1:53", model::L4Protocol::Udp)->cluster)),
            "10.1.0.1:5353");

  // Another node has two local endpoints; a node without any gets none (no fallback).
  options_.node_name = "node-b";
  t = run();
  EXPECT_EQ(join(endpoint_list(listener_at(*t.snapshot, "192.168.10.1:80")->cluster)),
            "10.1.0.2:8080,10.1.0.3:8080");
  options_.node_name = "node-c";
  t = run();
  EXPECT_TRUE(listener_at(*t.snapshot, "192.168.10.1:80")->cluster->endpoints.empty());
  EXPECT_EQ(join(endpoint_list(listener_at(*t.snapshot, "10.96.0.17:80")->cluster)), kAll);
}

TEST_F(ServicesTest, InternalTrafficPolicyLocal) {
  add_app("  internalTrafficPolicy: Local\n");
  Translation t = run();
  EXPECT_EQ(join(endpoint_list(listener_at(*t.snapshot, "10.96.0.17:80")->cluster)),
            "10.1.0.1:8080");
  // External traffic keeps policy Cluster.
  EXPECT_EQ(join(endpoint_list(listener_at(*t.snapshot, "192.168.10.1:80")->cluster)), kAll);
  EXPECT_EQ(join(endpoint_list(listener_at(*t.snapshot, "10.0.0.10:30086")->cluster)), kAll);
  EXPECT_TRUE(t.snapshot->health_checks.empty());
}

TEST_F(ServicesTest, SessionAffinityTimeout) {
  add_app(
      "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n");
  Translation t = run();
  ASSERT_FALSE(t.snapshot->l4_listeners.empty());
  for (const auto& l : t.snapshot->l4_listeners) EXPECT_EQ(l.affinity_timeout_s, 60u);

  docs_.clear();
  add_app("  sessionAffinity: ClientIP\n");
  t = run();
  for (const auto& l : t.snapshot->l4_listeners) EXPECT_EQ(l.affinity_timeout_s, 10800u);

  docs_.clear();
  add_app();
  t = run();
  for (const auto& l : t.snapshot->l4_listeners) EXPECT_EQ(l.affinity_timeout_s, 0u);
}

TEST_F(ServicesTest, HealthCheckCountsLocalEndpoints) {
  add_app("  externalTrafficPolicy: Local\n");
  allocations_.services["shop/app"].health_check_node_port = 30088;
  Translation t = run();
  const auto& hc = t.snapshot->health_checks;
  ASSERT_EQ(hc.size(), 2u);  // one per node address
  std::vector<std::string> addrs;
  for (const auto& h : hc) {
    addrs.push_back(h.address.to_string());
    EXPECT_EQ(h.namespace_, "shop");
    EXPECT_EQ(h.name, "app");
    // One ready pod on node-a (serving two ports); the not-ready one does not count. kube-proxy
    // counts pods, not pod ports.
    EXPECT_EQ(h.local_endpoints, 1u);
  }
  std::sort(addrs.begin(), addrs.end());
  EXPECT_EQ(addrs, (std::vector<std::string>{"10.0.0.10:30088", "192.168.1.10:30088"}));

  options_.node_name = "node-b";
  t = run();
  ASSERT_EQ(t.snapshot->health_checks.size(), 2u);
  EXPECT_EQ(t.snapshot->health_checks[0].local_endpoints, 2u);

  options_.node_name = "node-c";
  t = run();
  ASSERT_EQ(t.snapshot->health_checks.size(), 2u);
  EXPECT_EQ(t.snapshot->health_checks[0].local_endpoints, 0u);
}

TEST_F(ServicesTest, HealthCheckDoesNotCountTerminatingEndpoints) {
  // Only terminating (still serving) endpoints on this node: traffic already there may use them,
  // but the health check says 503 so that load balancers stop sending new traffic (kube-proxy).
  add(R"(apiVersion: v1
kind: Service
metadata: {name: t, namespace: shop}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: t-1
  namespace: shop
  labels: {kubernetes.io/service-name: t}
addressType: IPv4
ports:
- {name: http, port: 8080}
endpoints:
- addresses: [10.2.0.1]
  nodeName: node-a
  conditions: {ready: false, serving: true, terminating: true}
)");
  allocations_.services.clear();
  allocations_.services["shop/t"] = {
      "10.96.0.50", {{"http/TCP/80", 30090}}, 30091, "192.168.10.5", "default"};
  Translation t = run();
  EXPECT_EQ(join(endpoint_list(listener_at(*t.snapshot, "192.168.10.5:80")->cluster)),
            "10.2.0.1:8080");
  ASSERT_EQ(t.snapshot->health_checks.size(), 2u);
  EXPECT_EQ(t.snapshot->health_checks[0].local_endpoints, 0u);
}

TEST_F(ServicesTest, ServicePortsForTheApiProxy) {
  add_app();
  add(R"(apiVersion: v1
kind: Service
metadata: {name: unnamed, namespace: shop}
spec:
  ports:
  - {port: 7000, targetPort: 7001}
---
apiVersion: v1
kind: Service
metadata: {name: udp-first, namespace: shop}
spec:
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: web, port: 8000}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec: {type: ExternalName, externalName: example.com}
)");
  Translation t = run();
  const auto& sp = t.snapshot->service_ports;
  std::vector<std::string> keys;
  sp.for_each([&](const std::string& k, const model::ClusterConstPtr&) { keys.push_back(k); });
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys,
            (std::vector<std::string>{"shop/app:", "shop/app:80", "shop/app:http",
                                      "shop/udp-first:", "shop/udp-first:8000",
                                      "shop/udp-first:web", "shop/unnamed:", "shop/unnamed:7000"}));
  EXPECT_EQ(join(endpoint_list(sp.at("shop/app:http"))), kAll);
  EXPECT_EQ(sp.at("shop/app:80"), sp.at("shop/app:http"));
  EXPECT_EQ(sp.at("shop/app:"), sp.at("shop/app:http"));
  // No port named: the first TCP one (UDP ports cannot be proxied).
  EXPECT_EQ(sp.at("shop/udp-first:"), sp.at("shop/udp-first:web"));
  EXPECT_TRUE(sp.at("shop/unnamed:")->endpoints.empty());
}

TEST_F(ServicesTest, SctpIsReportedAndSkipped) {
  add(R"(apiVersion: v1
kind: Service
metadata: {name: s, namespace: shop}
spec:
  ports:
  - {name: a, port: 9000, protocol: SCTP}
  - {name: b, port: 9001}
)");
  allocations_.services.clear();
  allocations_.services["shop/s"].cluster_ip = "10.96.0.60";
  Translation t = run();
  ASSERT_EQ(t.issues.size(), 1u) << dump(t.issues);
  EXPECT_EQ(t.issues[0].field, "spec.ports[0].protocol");
  EXPECT_EQ(listeners(*t.snapshot),
            std::vector<std::string>{"ClusterIP 10.96.0.60:9001/tcp shop/s:b -> "});
}

}  // namespace
}  // namespace kedge::translate
