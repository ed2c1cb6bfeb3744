#include "translate/allocator.h"

#include "k8s/manifest.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
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

/// A Service manifest. `spec` and `meta` are extra lines (two-space indented under spec: and
/// metadata:); `ports` are flow mappings, one per port.
struct Svc {
  std::string name;
  std::string type = "ClusterIP";
  std::vector<std::string> ports = {"{name: http, port: 80}"};
  std::string spec;
  std::string meta;
  std::string ns = "default";
};

std::string service(const Svc& s) {
  std::string y = "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + s.name +
                  "\n  namespace: " + s.ns + "\n" + s.meta + "spec:\n  type: " + s.type + "\n" +
                  s.spec;
  if (!s.ports.empty()) {
    y += "  ports:\n";
    for (const auto& p : s.ports) y += "  - " + p + "\n";
  }
  return y;
}

/// Creation timestamps make the order of dynamic allocation explicit.
std::string created(int minute) {
  return "  creationTimestamp: \"2024-01-01T00:" + std::string(minute < 10 ? "0" : "") +
         std::to_string(minute) + ":00Z\"\n";
}

std::string annotations(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string y = "  annotations:\n";
  for (const auto& [k, v] : kv) y += "    " + k + ": \"" + v + "\"\n";
  return y;
}

std::string address_pool(const std::string& name, const std::string& addresses,
                         bool auto_assign = true) {
  return "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: " + name +
         ", namespace: metallb-system}\nspec:\n  addresses: [" + addresses + "]\n" +
         (auto_assign ? "" : "  autoAssign: false\n");
}

class AllocatorTest : public testing::Test {
 protected:
  AllocatorTest() {
    config_.service_cidr = "10.96.0.0/24";
    config_.node_port_min = 30000;
    config_.node_port_max = 32767;
    config_.pools = {{"default", {*Ipv4Range::parse("192.168.10.0/24", true)}, true}};
  }

  void add_yaml(const std::string& yaml) { docs_ += "---\n" + yaml; }
  void add(const Svc& s) { add_yaml(service(s)); }

  AllocationResult run(const Allocations& previous = {}) {
    k8s::ManifestFile m = k8s::parse_manifest(docs_, "t.yaml");
    EXPECT_TRUE(m.issues.empty()) << dump(m.issues);
    store_ = {};
    for (auto& o : m.objects) store_.upsert(std::make_shared<const k8s::StoredObject>(o));
    AllocationResult r = allocate(store_, previous, config_);
    // Deterministic and pure: the same input gives the same output.
    AllocationResult again = allocate(store_, previous, config_);
    EXPECT_EQ(r.allocations, again.allocations);
    return r;
  }

  AllocatorConfig config_;
  std::string docs_;
  k8s::ObjectStore store_;
};

const ServiceAllocation* find(const AllocationResult& r, const std::string& id) {
  auto it = r.allocations.services.find(id);
  return it == r.allocations.services.end() ? nullptr : &it->second;
}

std::string cluster_ip(const AllocationResult& r, const std::string& id) {
  const ServiceAllocation* a = find(r, id);
  return a ? a->cluster_ip : "<refused>";
}

std::string lb_ip(const AllocationResult& r, const std::string& id) {
  const ServiceAllocation* a = find(r, id);
  return a ? a->load_balancer_ip : "<refused>";
}

int32_t node_port(const AllocationResult& r, const std::string& id,
                  const std::string& key = "http/TCP/80") {
  const ServiceAllocation* a = find(r, id);
  if (!a) return -1;
  auto it = a->node_ports.find(key);
  return it == a->node_ports.end() ? 0 : it->second;
}

const k8s::Issue* issue_for(const AllocationResult& r, const std::string& name) {
  for (const auto& i : r.issues)
    if (i.name == name) return &i;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Ranges

TEST(Ipv4RangeTest, Parse) {
  auto r = Ipv4Range::parse("10.0.0.0/24", true);
  ASSERT_TRUE(r);
  EXPECT_EQ(format_ipv4(r->first), "10.0.0.1");
  EXPECT_EQ(format_ipv4(r->last), "10.0.0.254");
  r = Ipv4Range::parse("10.0.0.77/24", false);  // host bits are masked off
  ASSERT_TRUE(r);
  EXPECT_EQ(format_ipv4(r->first), "10.0.0.0");
  EXPECT_EQ(format_ipv4(r->last), "10.0.0.255");
  r = Ipv4Range::parse("10.0.0.4/31", true);  // /31 and /32 keep both ends
  ASSERT_TRUE(r);
  EXPECT_EQ(format_ipv4(r->first), "10.0.0.4");
  EXPECT_EQ(format_ipv4(r->last), "10.0.0.5");
  r = Ipv4Range::parse("10.0.0.9/32", true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, r->last);
  r = Ipv4Range::parse("10.0.0.5-10.0.0.9", true);
  ASSERT_TRUE(r);
  EXPECT_EQ(format_ipv4(r->first), "10.0.0.5");
  EXPECT_EQ(format_ipv4(r->last), "10.0.0.9");
  EXPECT_TRUE(r->contains(*parse_ipv4("10.0.0.7")));
  EXPECT_FALSE(r->contains(*parse_ipv4("10.0.0.10")));
  r = Ipv4Range::parse("10.0.0.5", true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, r->last);
  for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/4", "10.0.0.0/x",
                          "10.0.0.9-10.0.0.5", "10.0.0.300", "fd00::/64", "10.0.0.0/024"})
    EXPECT_FALSE(Ipv4Range::parse(bad, true)) << bad;
}

// ---------------------------------------------------------------------------------------------
// ClusterIP

TEST_F(AllocatorTest, ExplicitClusterIpHonouredWhenFree) {
  add({.name = "a", .spec = "  clusterIP: 10.96.0.3\n"});
  auto r = run();
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(cluster_ip(r, "default/a"), "10.96.0.3");
}

TEST_F(AllocatorTest, ClusterIpOutsideTheCidrIsRefused) {
  add({.name = "a", .spec = "  clusterIP: 10.97.0.3\n"});
  add({.name = "b", .spec = "  clusterIP: not-an-ip\n"});
  auto r = run();
  EXPECT_EQ(find(r, "default/a"), nullptr);
  EXPECT_EQ(find(r, "default/b"), nullptr);
  const k8s::Issue* i = issue_for(r, "a");
  ASSERT_NE(i, nullptr) << dump(r.issues);
  EXPECT_EQ(i->kind, "Service");
  EXPECT_EQ(i->field, "spec.clusterIP");
  EXPECT_NE(i->message.find("not in the valid range"), std::string::npos) << i->message;
  EXPECT_NE(i->message.find("10.96.0.0/24"), std::string::npos) << i->message;
  ASSERT_NE(issue_for(r, "b"), nullptr);
  // The network and broadcast addresses are not in the range either.
  docs_.clear();
  add({.name = "net", .spec = "  clusterIP: 10.96.0.0\n"});
  add({.name = "bcast", .spec = "  clusterIP: 10.96.0.255\n"});
  r = run();
  EXPECT_EQ(find(r, "default/net"), nullptr);
  EXPECT_EQ(find(r, "default/bcast"), nullptr);
}

TEST_F(AllocatorTest, TakenClusterIpIsRefusedNamingTheHolder) {
  add({.name = "young", .spec = "  clusterIP: 10.96.0.3\n", .meta = created(2)});
  add({.name = "old", .spec = "  clusterIP: 10.96.0.3\n", .meta = created(1)});
  auto r = run();
  EXPECT_EQ(cluster_ip(r, "default/old"), "10.96.0.3");
  EXPECT_EQ(find(r, "default/young"), nullptr);  // refused: holds nothing at all
  const k8s::Issue* i = issue_for(r, "young");
  ASSERT_NE(i, nullptr) << dump(r.issues);
  EXPECT_EQ(i->field, "spec.clusterIP");
  EXPECT_NE(i->message.find("already allocated to Service default/old"), std::string::npos)
      << i->message;
  EXPECT_EQ(issue_for(r, "old"), nullptr);
}

TEST_F(AllocatorTest, HeadlessServiceHasNoAddress) {
  add({.name = "h", .spec = "  clusterIP: None\n"});
  add({.name = "d"});
  auto r = run();
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(cluster_ip(r, "default/h"), "None");
  // It takes nothing from the range: the next Service gets the first dynamic address.
  EXPECT_EQ(cluster_ip(r, "default/d"), "10.96.0.17");
}

TEST_F(AllocatorTest, ExternalNameHasNoClusterIp) {
  add_yaml(
      "apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: default}\n"
      "spec: {type: ExternalName, externalName: example.com}\n");
  auto r = run();
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  const ServiceAllocation* a = find(r, "default/ext");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->cluster_ip, "");
  EXPECT_TRUE(a->node_ports.empty());
  EXPECT_EQ(a->load_balancer_ip, "");
}

TEST_F(AllocatorTest, DynamicClusterIpsComeFromTheUpperBandFirst) {
  // /24: offset max(16, 256/16) = 16, so the upper band starts at .17 (KEP-3070).
  add({.name = "a", .meta = created(1)});
  add({.name = "b", .meta = created(2)});
  auto r = run();
  EXPECT_EQ(cluster_ip(r, "default/a"), "10.96.0.17");
  EXPECT_EQ(cluster_ip(r, "default/b"), "10.96.0.18");

  // /16: the offset is capped at 256.
  config_.service_cidr = "127.10.0.0/16";
  r = run();
  EXPECT_EQ(cluster_ip(r, "default/a"), "127.10.1.1");
  EXPECT_EQ(cluster_ip(r, "default/b"), "127.10.1.2");
}

TEST_F(AllocatorTest, DynamicFallsBackToTheLowerBandThenRunsOut) {
  config_.service_cidr = "10.96.0.0/27";  // .1-.30; upper band .17-.30 (14 addresses)
  for (int i = 0; i < 30; ++i)
    add({.name = "s" + std::to_string(100 + i), .meta = created(i % 60)});
  add({.name = "z", .meta = created(59)});
  auto r = run();
  std::set<std::string> seen;
  for (int i = 0; i < 30; ++i) {
    std::string ip = cluster_ip(r, "default/s" + std::to_string(100 + i));
    EXPECT_TRUE(seen.insert(ip).second) << ip;
    EXPECT_EQ(ip, "10.96.0." + std::to_string(i < 14 ? 17 + i : 1 + i - 14)) << i;
  }
  EXPECT_EQ(find(r, "default/z"), nullptr);
  const k8s::Issue* i = issue_for(r, "z");
  ASSERT_NE(i, nullptr);
  EXPECT_NE(i->message.find("full"), std::string::npos) << i->message;
}

TEST_F(AllocatorTest, ExplicitRequestsGoBeforeDynamicOnes) {
  // The older Service is dynamic; the younger one asks for the first address of the upper band.
  // Explicit requests are served first, so neither is refused.
  add({.name = "dyn", .meta = created(1)});
  add({.name = "fixed", .spec = "  clusterIP: 10.96.0.17\n", .meta = created(2)});
  auto r = run();
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(cluster_ip(r, "default/fixed"), "10.96.0.17");
  EXPECT_EQ(cluster_ip(r, "default/dyn"), "10.96.0.18");
}

TEST_F(AllocatorTest, PreviousAllocationsAreKeptAndReleasedWhenTheServiceIsGone) {
  add({.name = "a", .meta = created(1)});
  add({.name = "b", .meta = created(2)});
  Allocations previous;
  previous.services["default/a"].cluster_ip = "10.96.0.40";
  previous.services["default/b"].cluster_ip = "10.96.0.41";
  previous.services["default/gone"].cluster_ip = "10.96.0.17";
  auto r = run(previous);
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(cluster_ip(r, "default/a"), "10.96.0.40");
  EXPECT_EQ(cluster_ip(r, "default/b"), "10.96.0.41");
  EXPECT_EQ(find(r, "default/gone"), nullptr);  // released

  // A new Service may take what the gone one held.
  add({.name = "c", .meta = created(3)});
  r = run(previous);
  EXPECT_EQ(cluster_ip(r, "default/c"), "10.96.0.17");
  EXPECT_EQ(cluster_ip(r, "default/a"), "10.96.0.40");

  // Feeding the result back in changes nothing (a restart with the saved state).
  auto again = run(r.allocations);
  EXPECT_EQ(again.allocations, r.allocations);
}

TEST_F(AllocatorTest, PreviousAllocationOutsideTheCidrIsReplaced) {
  add({.name = "a"});
  Allocations previous;
  previous.services["default/a"].cluster_ip = "10.50.0.40";  // --service-cidr changed
  auto r = run(previous);
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(cluster_ip(r, "default/a"), "10.96.0.17");
}

TEST_F(AllocatorTest, HolderKeepsItsAddressAgainstAnExplicitRequest) {
  // "aa" held .50 and now asks for .60, which "zz" held before: the address stays zz's and aa's
  // request is refused, whatever order the two are looked at in.
  add({.name = "aa", .spec = "  clusterIP: 10.96.0.60\n"});
  add({.name = "zz"});
  Allocations previous;
  previous.services["default/aa"].cluster_ip = "10.96.0.50";
  previous.services["default/zz"].cluster_ip = "10.96.0.60";
  auto r = run(previous);
  EXPECT_EQ(cluster_ip(r, "default/zz"), "10.96.0.60");
  EXPECT_EQ(find(r, "default/aa"), nullptr);
  const k8s::Issue* i = issue_for(r, "aa");
  ASSERT_NE(i, nullptr) << dump(r.issues);
  EXPECT_NE(i->message.find("already allocated to Service default/zz"), std::string::npos)
      << i->message;
}

TEST_F(AllocatorTest, HolderKeepsItsNodePortAndLoadBalancerIpAgainstAnEdit) {
  // Every reload passes the current allocations as `previous`: an edited Service asking for what
  // another one holds must not take it away, whatever their names.
  add({.name = "aa",
       .type = "LoadBalancer",
       .ports = {"{name: http, port: 80, nodePort: 30200}"},
       .spec = "  loadBalancerIP: 192.168.10.20\n"});
  add({.name = "zz", .type = "LoadBalancer"});
  Allocations previous;
  previous.services["default/aa"] = {
      "10.96.0.30", {{"http/TCP/80", 30100}}, 0, "192.168.10.10", "default"};
  previous.services["default/zz"] = {
      "10.96.0.31", {{"http/TCP/80", 30200}}, 0, "192.168.10.20", "default"};
  auto r = run(previous);
  EXPECT_EQ(node_port(r, "default/zz"), 30200);
  EXPECT_EQ(lb_ip(r, "default/zz"), "192.168.10.20");
  EXPECT_EQ(cluster_ip(r, "default/zz"), "10.96.0.31");
  EXPECT_EQ(find(r, "default/aa"), nullptr);
  const k8s::Issue* i = issue_for(r, "aa");
  ASSERT_NE(i, nullptr) << dump(r.issues);
  EXPECT_NE(i->message.find("default/zz"), std::string::npos) << i->message;

  // An edit asking for something free is fine, and keeps the rest of what it held.
  docs_.clear();
  add({.name = "aa",
       .type = "LoadBalancer",
       .ports = {"{name: http, port: 80, nodePort: 30300}"},
       .spec = "  loadBalancerIP: 192.168.10.21\n"});
  add({.name = "zz", .type = "LoadBalancer"});
  r = run(previous);
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(cluster_ip(r, "default/aa"), "10.96.0.30");
  EXPECT_EQ(node_port(r, "default/aa"), 30300);
  EXPECT_EQ(lb_ip(r, "default/aa"), "192.168.10.21");
  EXPECT_EQ(r.allocations.services.at("default/zz"), previous.services.at("default/zz"));
}

// ---------------------------------------------------------------------------------------------
// NodePort

TEST_F(AllocatorTest, ExplicitNodePortHonouredWhenFree) {
  add({.name = "a", .type = "NodePort", .ports = {"{name: http, port: 80, nodePort: 30007}"}});
  auto r = run();
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(node_port(r, "default/a"), 30007);
  EXPECT_EQ(cluster_ip(r, "default/a"), "10.96.0.17");
}

TEST_F(AllocatorTest, NodePortOutOfRangeIsRefused) {
  add({.name = "a", .type = "NodePort", .ports = {"{name: http, port: 80, nodePort: 8080}"}});
  auto r = run();
  EXPECT_EQ(find(r, "default/a"), nullptr);
  const k8s::Issue* i = issue_for(r, "a");
  ASSERT_NE(i, nullptr) << dump(r.issues);
  EXPECT_EQ(i->field, "spec.ports[0].nodePort");
  EXPECT_NE(i->message.find("30000-32767"), std::string::npos) << i->message;
}

TEST_F(AllocatorTest, TakenNodePortIsRefusedNamingTheHolder) {
  add({.name = "old",
       .type = "NodePort",
       .ports = {"{name: http, port: 80, nodePort: 30007}"},
       .meta = created(1)});
  add({.name = "young",
       .type = "NodePort",
       .ports = {"{name: web, port: 8080, nodePort: 30007}"},
       .spec = "  clusterIP: 10.96.0.5\n",
       .meta = created(2)});
  add({.name = "later", .spec = "  clusterIP: 10.96.0.5\n", .meta = created(3)});
  auto r = run();
  EXPECT_EQ(node_port(r, "default/old"), 30007);
  EXPECT_EQ(find(r, "default/young"), nullptr);
  const k8s::Issue* i = issue_for(r, "young");
  ASSERT_NE(i, nullptr) << dump(r.issues);
  EXPECT_EQ(i->field, "spec.ports[0].nodePort");
  EXPECT_NE(i->message.find("already allocated to Service default/old"), std::string::npos)
      << i->message;
  // The refused Service holds nothing: its ClusterIP went to the next Service asking for it.
  EXPECT_EQ(cluster_ip(r, "default/later"), "10.96.0.5");
  EXPECT_EQ(issue_for(r, "later"), nullptr) << dump(r.issues);
}

TEST_F(AllocatorTest, NodePortOnClusterIpServiceIsForbidden) {
  add({.name = "a", .ports = {"{name: http, port: 80, nodePort: 30007}"}});
  auto r = run();
  EXPECT_EQ(find(r, "default/a"), nullptr);
  const k8s::Issue* i = issue_for(r, "a");
  ASSERT_NE(i, nullptr);
  EXPECT_NE(i->message.find("Forbidden"), std::string::npos) << i->message;
}

TEST_F(AllocatorTest, DynamicNodePortsComeFromTheUpperBandFirst) {
  // 2768 ports: offset min(max(16, 2768/32), 128) = 86 (KEP-3668).
  add({.name = "a",
       .type = "NodePort",
       .ports = {"{name: http, port: 80}", "{name: dns, port: 53, protocol: UDP}"},
       .meta = created(1)});
  add({.name = "b", .type = "NodePort", .meta = created(2)});
  auto r = run();
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(node_port(r, "default/a"), 30086);
  EXPECT_EQ(node_port(r, "default/a", "dns/UDP/53"), 30087);
  EXPECT_EQ(node_port(r, "default/b"), 30088);

  // A small range: offset 16; when the upper band is full the lower band is used.
  config_.node_port_min = 31000;
  config_.node_port_max = 31019;  // upper band 31016-31019
  docs_.clear();
  for (int i = 0; i < 20; ++i)
    add({.name = "s" + std::to_string(10 + i), .type = "NodePort", .meta = created(i)});
  add({.name = "z", .type = "NodePort", .meta = created(30)});
  r = run();
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(node_port(r, "default/s" + std::to_string(10 + i)), i < 4 ? 31016 + i : 31000 + i - 4)
        << i;
  EXPECT_EQ(find(r, "default/z"), nullptr);
  ASSERT_NE(issue_for(r, "z"), nullptr);
  EXPECT_NE(issue_for(r, "z")->message.find("full"), std::string::npos);
}

TEST_F(AllocatorTest, NodePortsKeptAcrossRestarts) {
  add({.name = "a", .type = "NodePort", .meta = created(2)});
  add({.name = "b", .type = "NodePort", .meta = created(1)});
  Allocations previous;
  previous.services["default/a"].node_ports["http/TCP/80"] = 30500;
  auto r = run(previous);
  EXPECT_EQ(node_port(r, "default/a"), 30500);
  EXPECT_EQ(node_port(r, "default/b"), 30086);
  // A port whose number or protocol changed keeps its NodePort by name, as the API server
  // patches it in; a new name gets a new one.
  docs_.clear();
  add({.name = "a",
       .type = "NodePort",
       .ports = {"{name: http, port: 81, protocol: UDP}", "{name: extra, port: 82}"}});
  r = run(previous);
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(node_port(r, "default/a", "http/UDP/81"), 30500);
  EXPECT_EQ(node_port(r, "default/a", "extra/TCP/82"), 30086);
  EXPECT_EQ(find(r, "default/a")->node_ports.size(), 2u);
  // Unless another port of the Service now asks for it.
  docs_.clear();
  add({.name = "a",
       .type = "NodePort",
       .ports = {"{name: http, port: 81}", "{name: extra, port: 82, nodePort: 30500}"}});
  r = run(previous);
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(node_port(r, "default/a", "extra/TCP/82"), 30500);
  EXPECT_EQ(node_port(r, "default/a", "http/TCP/81"), 30086);
}

TEST_F(AllocatorTest, TypeChangeReleasesWhatIsNoLongerNeeded) {
  add({.name = "a", .type = "ClusterIP"});
  add({.name = "b", .type = "LoadBalancer", .meta = created(5)});
  Allocations previous;
  previous.services["default/a"] = {
      "10.96.0.30", {{"http/TCP/80", 30086}}, 0, "192.168.10.1", "default"};
  auto r = run(previous);
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  const ServiceAllocation* a = find(r, "default/a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->cluster_ip, "10.96.0.30");
  EXPECT_TRUE(a->node_ports.empty());
  EXPECT_EQ(a->load_balancer_ip, "");
  // What "a" gave up is free for the next one.
  EXPECT_EQ(node_port(r, "default/b"), 30086);
  EXPECT_EQ(lb_ip(r, "default/b"), "192.168.10.1");
}

TEST_F(AllocatorTest, AllocateLoadBalancerNodePortsFalse) {
  add({.name = "lb",
       .type = "LoadBalancer",
       .ports = {"{name: http, port: 80}", "{name: x, port: 81, nodePort: 30100}"},
       .spec = "  allocateLoadBalancerNodePorts: false\n"});
  add({.name = "lb2", .type = "LoadBalancer"});
  auto r = run();
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(node_port(r, "default/lb"), 0);                  // none allocated
  EXPECT_EQ(node_port(r, "default/lb", "x/TCP/81"), 30100);  // an explicit one is honoured
  EXPECT_EQ(lb_ip(r, "default/lb"), "192.168.10.1");
  EXPECT_EQ(node_port(r, "default/lb2"), 30086);  // the default is true
}

TEST_F(AllocatorTest, HealthCheckNodePortForExternalTrafficPolicyLocal) {
  add({.name = "local",
       .type = "LoadBalancer",
       .spec = "  externalTrafficPolicy: Local\n",
       .meta = created(1)});
  add({.name = "cluster", .type = "LoadBalancer", .meta = created(2)});
  add({.name = "np",
       .type = "NodePort",
       .spec = "  externalTrafficPolicy: Local\n",
       .meta = created(3)});
  auto r = run();
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  const ServiceAllocation* local = find(r, "default/local");
  ASSERT_NE(local, nullptr);
  EXPECT_EQ(local->node_ports.at("http/TCP/80"), 30086);
  EXPECT_EQ(local->health_check_node_port, 30087);
  EXPECT_EQ(find(r, "default/cluster")->health_check_node_port, 0);
  EXPECT_EQ(find(r, "default/np")->health_check_node_port, 0);  // only for LoadBalancer

  // An explicit healthCheckNodePort is honoured; a taken one is refused like any NodePort.
  add({.name = "fixed",
       .type = "LoadBalancer",
       .spec = "  externalTrafficPolicy: Local\n  healthCheckNodePort: 32000\n",
       .meta = created(4)});
  add({.name = "clash",
       .type = "LoadBalancer",
       .spec = "  externalTrafficPolicy: Local\n  healthCheckNodePort: 32000\n",
       .meta = created(5)});
  r = run();
  EXPECT_EQ(find(r, "default/fixed")->health_check_node_port, 32000);
  EXPECT_EQ(find(r, "default/clash"), nullptr);
  ASSERT_NE(issue_for(r, "clash"), nullptr);
  EXPECT_EQ(issue_for(r, "clash")->field, "spec.healthCheckNodePort");
  EXPECT_NE(issue_for(r, "clash")->message.find("already allocated to Service default/fixed"),
            std::string::npos);

  // Kept across restarts.
  Allocations previous;
  previous.services["default/local"].health_check_node_port = 31500;
  previous.services["default/local"].node_ports["http/TCP/80"] = 31501;
  r = run(previous);
  EXPECT_EQ(find(r, "default/local")->health_check_node_port, 31500);
  EXPECT_EQ(node_port(r, "default/local"), 31501);
}

// ---------------------------------------------------------------------------------------------
// LoadBalancer IPs

TEST_F(AllocatorTest, LoadBalancerIpsFromTheFlagPool) {
  add({.name = "a", .type = "LoadBalancer", .meta = created(1)});
  add({.name = "b", .type = "LoadBalancer", .meta = created(2)});
  add({.name = "c", .type = "NodePort", .meta = created(3)});
  auto r = run();
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(lb_ip(r, "default/a"), "192.168.10.1");
  EXPECT_EQ(find(r, "default/a")->pool, "default");
  EXPECT_EQ(lb_ip(r, "default/b"), "192.168.10.2");
  EXPECT_EQ(lb_ip(r, "default/c"), "");
}

TEST_F(AllocatorTest, LoadBalancerPoolRunsOut) {
  config_.pools = {{"tiny", {*Ipv4Range::parse("192.168.10.5-192.168.10.5", true)}, true}};
  add({.name = "a", .type = "LoadBalancer", .meta = created(1)});
  add({.name = "b", .type = "LoadBalancer", .meta = created(2)});
  auto r = run();
  EXPECT_EQ(lb_ip(r, "default/a"), "192.168.10.5");
  // No free address is not a conflict: the Service waits for one (reported), reachable on its
  // ClusterIP and NodePorts meanwhile.
  const ServiceAllocation* b = find(r, "default/b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->load_balancer_ip, "");
  EXPECT_EQ(b->pool, "");
  EXPECT_EQ(b->cluster_ip, "10.96.0.18");
  EXPECT_EQ(node_port(r, "default/b"), 30087);
  const k8s::Issue* i = issue_for(r, "b");
  ASSERT_NE(i, nullptr);
  EXPECT_EQ(i->field, "status.loadBalancer");
  EXPECT_NE(i->message.find("no address pool has a free address"), std::string::npos);

  // Once an address is free, the waiting Service gets it; the rest of what it holds stays.
  docs_.clear();
  add({.name = "b", .type = "LoadBalancer", .meta = created(2)});
  auto again = run(r.allocations);
  EXPECT_EQ(lb_ip(again, "default/b"), "192.168.10.5");
  EXPECT_EQ(cluster_ip(again, "default/b"), "10.96.0.18");
  EXPECT_EQ(node_port(again, "default/b"), 30087);
}

TEST_F(AllocatorTest, LoadBalancerWithoutAnyPool) {
  config_.pools.clear();
  add({.name = "a", .type = "LoadBalancer"});
  auto r = run();
  const ServiceAllocation* a = find(r, "default/a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->cluster_ip, "10.96.0.17");
  EXPECT_EQ(node_port(r, "default/a"), 30086);
  EXPECT_EQ(a->load_balancer_ip, "");
  ASSERT_NE(issue_for(r, "a"), nullptr);
}

TEST_F(AllocatorTest, IpAddressPoolObjects) {
  config_.pools.clear();
  add_yaml(address_pool("manual", "10.1.0.0/30", false));  // .1-.2 usable
  add_yaml(address_pool("auto", "10.2.0.10-10.2.0.11"));
  add({.name = "a", .type = "LoadBalancer", .meta = created(1)});
  add({.name = "b",
       .type = "LoadBalancer",
       .meta = created(2) + annotations({{"metallb.universe.tf/address-pool", "manual"}})});
  add({.name = "c", .type = "LoadBalancer", .meta = created(3)});
  add({.name = "d", .type = "LoadBalancer", .meta = created(4)});
  add({.name = "e",
       .type = "LoadBalancer",
       .meta = created(5) + annotations({{"metallb.universe.tf/address-pool", "nope"}})});
  auto r = run();
  // autoAssign: false is skipped unless named.
  EXPECT_EQ(lb_ip(r, "default/a"), "10.2.0.10");
  EXPECT_EQ(find(r, "default/a")->pool, "auto");
  EXPECT_EQ(lb_ip(r, "default/b"), "10.1.0.1");
  EXPECT_EQ(find(r, "default/b")->pool, "manual");
  EXPECT_EQ(lb_ip(r, "default/c"), "10.2.0.11");
  EXPECT_EQ(lb_ip(r, "default/d"), "");  // auto is full; manual is not for it
  EXPECT_EQ(lb_ip(r, "default/e"), "");
  ASSERT_NE(issue_for(r, "d"), nullptr);
  ASSERT_NE(issue_for(r, "e"), nullptr);
  EXPECT_NE(issue_for(r, "e")->message.find("\"nope\""), std::string::npos);
}

TEST_F(AllocatorTest, InvalidIpAddressPoolAddressIsReported) {
  add_yaml(address_pool("p", "\"10.3.0.0/30\", \"bogus\""));
  add({.name = "a", .type = "LoadBalancer"});
  auto r = run();
  EXPECT_EQ(lb_ip(r, "default/a"), "192.168.10.1");  // the flag pool comes first
  bool reported = false;
  for (const auto& i : r.issues)
    if (i.kind == "IPAddressPool" && i.name == "p" && i.field == "spec.addresses[1]")
      reported = true;
  EXPECT_TRUE(reported) << dump(r.issues);
}

TEST_F(AllocatorTest, RequestedLoadBalancerIp) {
  add({.name = "spec", .type = "LoadBalancer", .spec = "  loadBalancerIP: 192.168.10.77\n"});
  add({.name = "ann",
       .type = "LoadBalancer",
       .meta = annotations({{"metallb.universe.tf/loadBalancerIPs", "192.168.10.78"}})});
  add({.name = "outside", .type = "LoadBalancer", .spec = "  loadBalancerIP: 172.16.0.1\n"});
  add({.name = "dyn", .type = "LoadBalancer"});
  auto r = run();
  EXPECT_EQ(lb_ip(r, "default/spec"), "192.168.10.77");
  EXPECT_EQ(lb_ip(r, "default/ann"), "192.168.10.78");
  EXPECT_EQ(lb_ip(r, "default/dyn"), "192.168.10.1");
  EXPECT_EQ(find(r, "default/outside"), nullptr);
  const k8s::Issue* i = issue_for(r, "outside");
  ASSERT_NE(i, nullptr) << dump(r.issues);
  EXPECT_EQ(i->field, "spec.loadBalancerIP");
  EXPECT_NE(i->message.find("not in any address pool"), std::string::npos);
}

TEST_F(AllocatorTest, RequestedIpFromAPoolThatIsNotAutoAssigned) {
  config_.pools.clear();
  add_yaml(address_pool("manual", "10.1.0.0/29", false));
  add({.name = "a", .type = "LoadBalancer", .spec = "  loadBalancerIP: 10.1.0.3\n"});
  auto r = run();
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(lb_ip(r, "default/a"), "10.1.0.3");
  EXPECT_EQ(find(r, "default/a")->pool, "manual");
}

TEST_F(AllocatorTest, TakenLoadBalancerIpIsRefused) {
  add({.name = "old",
       .type = "LoadBalancer",
       .spec = "  loadBalancerIP: 192.168.10.9\n",
       .meta = created(1)});
  add({.name = "young",
       .type = "LoadBalancer",
       .ports = {"{name: other, port: 81}"},
       .spec = "  loadBalancerIP: 192.168.10.9\n",
       .meta = created(2)});
  auto r = run();
  EXPECT_EQ(lb_ip(r, "default/old"), "192.168.10.9");
  EXPECT_EQ(find(r, "default/young"), nullptr);
  const k8s::Issue* i = issue_for(r, "young");
  ASSERT_NE(i, nullptr);
  EXPECT_NE(i->message.find("already used by Service default/old"), std::string::npos)
      << i->message;
  EXPECT_NE(i->message.find("allow-shared-ip"), std::string::npos) << i->message;
}

TEST_F(AllocatorTest, SharedIpWithTheSameKeyAndNoPortClash) {
  auto shared = [](const std::string& key) {
    return annotations({{"metallb.universe.tf/allow-shared-ip", key}});
  };
  add({.name = "dns-tcp",
       .type = "LoadBalancer",
       .ports = {"{name: dns, port: 53, protocol: TCP}"},
       .meta = created(1) + shared("k1")});
  // Same port number, other protocol: no clash. Joins the shared address dynamically.
  add({.name = "dns-udp",
       .type = "LoadBalancer",
       .ports = {"{name: dns, port: 53, protocol: UDP}"},
       .meta = created(2) + shared("k1")});
  // Same key, clashing port: not on that address (gets its own).
  add({.name = "dns-tcp2",
       .type = "LoadBalancer",
       .ports = {"{name: dns, port: 53, protocol: TCP}"},
       .meta = created(3) + shared("k1")});
  // Another key: never on that address.
  add({.name = "web",
       .type = "LoadBalancer",
       .ports = {"{name: http, port: 80}"},
       .meta = created(4) + shared("k2")});
  auto r = run();
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  EXPECT_EQ(lb_ip(r, "default/dns-tcp"), "192.168.10.1");
  EXPECT_EQ(lb_ip(r, "default/dns-udp"), "192.168.10.1");
  EXPECT_EQ(lb_ip(r, "default/dns-tcp2"), "192.168.10.2");
  EXPECT_EQ(lb_ip(r, "default/web"), "192.168.10.3");
}

TEST_F(AllocatorTest, RequestedSharedIp) {
  auto meta = [](int minute, const std::string& key) {
    return created(minute) +
           annotations({{"metallb.universe.tf/allow-shared-ip", key},
                        {"metallb.universe.tf/loadBalancerIPs", "192.168.10.50"}});
  };
  add({.name = "a",
       .type = "LoadBalancer",
       .ports = {"{name: a, port: 1000}"},
       .meta = meta(1, "k")});
  add({.name = "b",
       .type = "LoadBalancer",
       .ports = {"{name: b, port: 1001}"},
       .meta = meta(2, "k")});
  add({.name = "clash",
       .type = "LoadBalancer",
       .ports = {"{name: a, port: 1000}"},
       .meta = meta(3, "k")});
  add({.name = "otherkey",
       .type = "LoadBalancer",
       .ports = {"{name: c, port: 1002}"},
       .meta = meta(4, "k2")});
  add({.name = "nokey",
       .type = "LoadBalancer",
       .ports = {"{name: d, port: 1003}"},
       .spec = "  loadBalancerIP: 192.168.10.50\n",
       .meta = created(5)});
  auto r = run();
  EXPECT_EQ(lb_ip(r, "default/a"), "192.168.10.50");
  EXPECT_EQ(lb_ip(r, "default/b"), "192.168.10.50");
  for (const char* refused : {"clash", "otherkey", "nokey"}) {
    EXPECT_EQ(find(r, std::string("default/") + refused), nullptr) << refused;
    const k8s::Issue* i = issue_for(r, refused);
    ASSERT_NE(i, nullptr) << refused;
    EXPECT_NE(i->message.find("already used by Service default/a"), std::string::npos)
        << i->message;
  }
  EXPECT_NE(issue_for(r, "clash")->message.find("clashing port"), std::string::npos);
  EXPECT_EQ(issue_for(r, "clash")->field,
            "metadata.annotations.metallb.universe.tf/loadBalancerIPs");
  EXPECT_EQ(issue_for(r, "nokey")->field, "spec.loadBalancerIP");
}

TEST_F(AllocatorTest, LoadBalancerClassOfAnotherImplementationIsLeftAlone) {
  add({.name = "theirs", .type = "LoadBalancer", .spec = "  loadBalancerClass: example.com/lb\n"});
  add({.name = "ours", .type = "LoadBalancer", .spec = "  loadBalancerClass: kedge.dev/lb\n"});
  auto r = run();
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  const ServiceAllocation* theirs = find(r, "default/theirs");
  ASSERT_NE(theirs, nullptr);
  EXPECT_EQ(theirs->load_balancer_ip, "");
  EXPECT_NE(theirs->cluster_ip, "");  // the API server's parts still apply
  EXPECT_NE(theirs->node_ports.at("http/TCP/80"), 0);
  EXPECT_EQ(lb_ip(r, "default/ours"), "192.168.10.1");
}

TEST_F(AllocatorTest, LoadBalancerIpKeptAcrossRestarts) {
  add({.name = "a", .type = "LoadBalancer", .meta = created(1)});
  add({.name = "b", .type = "LoadBalancer", .meta = created(2)});
  Allocations previous;
  previous.services["default/b"].load_balancer_ip = "192.168.10.1";
  previous.services["default/b"].pool = "default";
  auto r = run(previous);
  EXPECT_EQ(lb_ip(r, "default/b"), "192.168.10.1");
  EXPECT_EQ(lb_ip(r, "default/a"), "192.168.10.2");
  // A previous address from a pool the Service no longer names is given up.
  docs_.clear();
  config_.pools.push_back({"other", {*Ipv4Range::parse("192.168.20.0/24", true)}, true});
  add({.name = "b",
       .type = "LoadBalancer",
       .meta = annotations({{"metallb.universe.tf/address-pool", "other"}})});
  r = run(previous);
  EXPECT_EQ(lb_ip(r, "default/b"), "192.168.20.1");
  EXPECT_EQ(find(r, "default/b")->pool, "other");
}

TEST_F(AllocatorTest, RefusedServiceHoldsNothing) {
  // "bad" asks for a free ClusterIP, gets NodePorts, and then fails on its LoadBalancer IP.
  add({.name = "holder",
       .type = "LoadBalancer",
       .spec = "  loadBalancerIP: 192.168.10.9\n",
       .meta = created(1)});
  add({.name = "bad",
       .type = "LoadBalancer",
       .ports = {"{name: x, port: 81, nodePort: 30333}"},
       .spec = "  clusterIP: 10.96.0.9\n  loadBalancerIP: 192.168.10.9\n",
       .meta = created(2)});
  add({.name = "next",
       .type = "NodePort",
       .ports = {"{name: why, port: 82, nodePort: 30333}"},
       .spec = "  clusterIP: 10.96.0.9\n",
       .meta = created(3)});
  auto r = run();
  EXPECT_EQ(find(r, "default/bad"), nullptr);
  EXPECT_EQ(cluster_ip(r, "default/next"), "10.96.0.9");
  EXPECT_EQ(node_port(r, "default/next", "why/TCP/82"), 30333);
  EXPECT_EQ(issue_for(r, "next"), nullptr) << dump(r.issues);
  ASSERT_NE(issue_for(r, "bad"), nullptr);
}

TEST_F(AllocatorTest, RefusedServiceGivesBackItsPlaceOnASharedAddress) {
  // "bad" joins the shared address with port 81, then is refused for its ClusterIP: port 81 on
  // that address is free again for "next".
  auto shared = annotations({{"metallb.universe.tf/allow-shared-ip", "k"}});
  add({.name = "holder",
       .type = "LoadBalancer",
       .ports = {"{name: a, port: 80}"},
       .spec = "  clusterIP: 10.96.0.9\n",
       .meta = created(1) + shared});
  add({.name = "bad",
       .type = "LoadBalancer",
       .ports = {"{name: b, port: 81}"},
       .spec = "  clusterIP: 10.96.0.9\n",
       .meta = created(2) + shared});
  add({.name = "next",
       .type = "LoadBalancer",
       .ports = {"{name: c, port: 81}"},
       .meta = created(3) + shared});
  auto r = run();
  EXPECT_EQ(find(r, "default/bad"), nullptr);
  ASSERT_NE(issue_for(r, "bad"), nullptr);
  EXPECT_EQ(lb_ip(r, "default/holder"), "192.168.10.1");
  EXPECT_EQ(lb_ip(r, "default/next"), "192.168.10.1") << dump(r.issues);
}

TEST_F(AllocatorTest, ManyServicesEachGetTheirOwnAddressAndPorts) {
  // Enough Services that copying the tables for each one (as an earlier allocator did) would
  // show; every address and port is distinct.
  config_.service_cidr = "10.96.0.0/16";
  for (int i = 0; i < 2000; ++i)
    add({.name = "s" + std::to_string(i), .type = "NodePort", .meta = created(i % 50)});
  auto r = run();
  EXPECT_TRUE(r.issues.empty()) << dump(r.issues);
  std::set<std::string> ips;
  std::set<int32_t> ports;
  for (const auto& [id, a] : r.allocations.services) {
    ips.insert(a.cluster_ip);
    for (const auto& [key, port] : a.node_ports) ports.insert(port);
  }
  EXPECT_EQ(r.allocations.services.size(), 2000u);
  EXPECT_EQ(ips.size(), 2000u);
  EXPECT_EQ(ports.size(), 2000u);
}

// ---------------------------------------------------------------------------------------------
// Persistence

TEST(AllocationsJsonTest, RoundTrip) {
  Allocations a;
  ServiceAllocation& s = a.services["default/web"];
  s.cluster_ip = "127.10.1.1";
  s.node_ports = {{"http/TCP/80", 30086}, {"dns/UDP/53", 30087}};
  s.health_check_node_port = 30088;
  s.load_balancer_ip = "127.20.0.1";
  s.pool = "default";
  a.services["kube-system/headless"].cluster_ip = "None";
  a.services["x/ext"] = {};
  nlohmann::json j = a.to_json();
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["services"]["default/web"]["nodePorts"]["dns/UDP/53"], 30087);
  EXPECT_EQ(Allocations::from_json(j), a);
  EXPECT_EQ(Allocations::from_json(nlohmann::json::parse(j.dump())), a);
}

TEST(AllocationsJsonTest, DamagedInputIsReadAsFarAsItGoes) {
  EXPECT_TRUE(Allocations::from_json(nlohmann::json::array()).services.empty());
  EXPECT_TRUE(Allocations::from_json(nlohmann::json{{"services", 3}}).services.empty());
  auto j = nlohmann::json::parse(R"({"services": {
      "a/b": {"clusterIP": "10.0.0.1", "nodePorts": {"x/TCP/1": "nope", "y/TCP/2": 30001}},
      "c/d": 7}})");
  Allocations a = Allocations::from_json(j);
  ASSERT_EQ(a.services.size(), 1u);
  const ServiceAllocation& s = a.services.at("a/b");
  EXPECT_EQ(s.cluster_ip, "10.0.0.1");
  EXPECT_EQ(s.node_ports, (std::map<std::string, int32_t>{{"y/TCP/2", 30001}}));
  EXPECT_EQ(s.load_balancer_ip, "");
  EXPECT_EQ(s.health_check_node_port, 0);
}

TEST(AllocationsJsonTest, WrongTypesDoNotThrow) {
  // A hand-edited or damaged allocations.json must not stop kedge from starting.
  auto j = nlohmann::json::parse(R"({"version": 1, "services": {
      "a/b": {"clusterIP": 5, "nodePorts": [], "healthCheckNodePort": "x",
              "loadBalancerIP": null, "pool": {}},
      "c/d": {"clusterIP": "10.0.0.2", "healthCheckNodePort": 30001}}})");
  Allocations a;
  EXPECT_NO_THROW(a = Allocations::from_json(j));
  EXPECT_EQ(a.services.at("c/d").cluster_ip, "10.0.0.2");
  EXPECT_EQ(a.services.at("c/d").health_check_node_port, 30001);
  if (a.services.contains("a/b")) {
    EXPECT_EQ(a.services.at("a/b").cluster_ip, "");
    EXPECT_EQ(a.services.at("a/b").health_check_node_port, 0);
  }
}

// allocate_after() gives what allocate() gives, on random stores that grow by a few Services at a
// time: of every type, with explicit requests, shared LoadBalancer IPs and small ranges (so that
// some steps have refusals, where it must fall back to allocate()).
TEST(AllocateAfter, SameAsAllocateWhileServicesAreAdded) {
  std::mt19937 rng(5);
  AllocatorConfig config;
  config.service_cidr = "10.96.0.0/26";
  config.node_port_min = 30000;
  config.node_port_max = 30100;
  config.pools = {{"default", {*Ipv4Range::parse("192.168.10.0/29", true)}, true}};
  int clean_steps = 0, added_total = 0;
  for (int run = 0; run < 6; ++run) {
    k8s::ObjectStore store;
    Allocations previous;
    k8s::Issues issues;
    int next = 0;
    for (int step = 0; step < 12; ++step) {
      k8s::ObjectStore before = store;
      const bool clean = issues.empty();
      std::string docs;
      for (int k = 0, n = 1 + static_cast<int>(rng() % 4); k < n; ++k, ++next) {
        Svc svc{"s" + std::to_string(next)};
        svc.meta = created(static_cast<int>(rng() % 60));
        switch (rng() % 6) {
          case 0:
            svc.spec = "  clusterIP: None\n";
            break;
          case 1:
            svc.type = "NodePort";
            break;
          case 2:
            svc.type = "NodePort";
            svc.ports = {"{name: http, port: 80, nodePort: " + std::to_string(30000 + rng() % 100) +
                         "}"};
            break;
          case 3:
            svc.type = "LoadBalancer";
            svc.ports = {"{name: p, port: " + std::to_string(80 + rng() % 3) + "}"};
            if (rng() % 2) svc.meta += annotations({{std::string(kAnnotationSharing), "web"}});
            break;
          case 4:
            svc.spec = "  clusterIP: 10.96.0." + std::to_string(rng() % 64) + "\n";
            break;
          default:
            break;
        }
        docs += "---\n" + service(svc);
      }
      k8s::ManifestFile m = k8s::parse_manifest(docs, "t.yaml");
      ASSERT_TRUE(m.issues.empty()) << dump(m.issues);
      for (auto& o : m.objects) store.upsert(std::make_shared<const k8s::StoredObject>(o));
      added_total += static_cast<int>(m.objects.size());
      AllocationResult full = allocate(store, previous, config);
      if (clean) {
        ++clean_steps;
        AllocationResult incremental = allocate_after(store, before, previous, config);
        ASSERT_EQ(incremental.allocations, full.allocations) << "run " << run << " step " << step;
        ASSERT_EQ(dump(incremental.issues), dump(full.issues)) << "run " << run << " step " << step;
      }
      previous = full.allocations;
      issues = full.issues;
    }
  }
  EXPECT_GT(clean_steps, 12);  // the incremental path was taken often
  EXPECT_GT(added_total, 100);
}

// No Service added or changed: nothing to allocate, and the caller is told so.
TEST(AllocateAfter, NoServiceChangedIsUnchanged) {
  AllocatorConfig config;
  config.service_cidr = "10.96.0.0/24";
  k8s::ObjectStore before;
  for (auto& o : k8s::parse_manifest(service({"a"}), "t.yaml").objects)
    before.upsert(std::make_shared<const k8s::StoredObject>(o));
  AllocationResult first = allocate(before, {}, config);
  k8s::ObjectStore after = before;
  for (auto& o : k8s::parse_manifest("apiVersion: v1\nkind: Secret\nmetadata: {name: s, "
                                     "namespace: default}\ntype: Opaque\n",
                                     "s.yaml")
                     .objects)
    after.upsert(std::make_shared<const k8s::StoredObject>(o));
  AllocationResult r = allocate_after(after, before, first.allocations, config);
  EXPECT_TRUE(r.unchanged);
  EXPECT_TRUE(r.issues.empty());
  EXPECT_EQ(allocate(after, first.allocations, config).allocations, first.allocations);
}

// Anything but an addition of Services falls back to a whole allocation.
TEST(AllocateAfter, ChangedOrRemovedServicesAllocateEverything) {
  AllocatorConfig config;
  config.service_cidr = "10.96.0.0/24";
  auto parse = [](const std::string& docs) {
    k8s::ObjectStore store;
    for (auto& o : k8s::parse_manifest(docs, "t.yaml").objects)
      store.upsert(std::make_shared<const k8s::StoredObject>(o));
    return store;
  };
  k8s::ObjectStore before = parse(service({"a"}) + "---\n" + service({"b"}));
  AllocationResult first = allocate(before, {}, config);
  ASSERT_TRUE(first.issues.empty());
  // b now asks for a's address: allocate() refuses it; so must allocate_after().
  Svc b{"b"};
  b.spec = "  clusterIP: " + first.allocations.services.at("default/a").cluster_ip + "\n";
  k8s::ObjectStore after = parse(service({"a"}) + "---\n" + service(b));
  AllocationResult full = allocate(after, first.allocations, config);
  AllocationResult incremental = allocate_after(after, before, first.allocations, config);
  EXPECT_EQ(incremental.allocations, full.allocations);
  EXPECT_EQ(dump(incremental.issues), dump(full.issues));
  EXPECT_FALSE(full.issues.empty());
}

}  // namespace
}  // namespace kedge::translate
