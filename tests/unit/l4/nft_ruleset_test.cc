#include "l4/nft_ruleset.h"
#include "l4/command.h"

#include <gtest/gtest.h>
#include <unistd.h>

namespace kedge::l4 {
namespace {

model::SocketAddress addr(const std::string& ip, uint16_t port) {
  return *model::SocketAddress::parse(ip, port);
}

model::ClusterConstPtr cluster(const std::string& name, std::vector<std::string> ips,
                               uint16_t port = 8080) {
  auto c = std::make_shared<model::Cluster>();
  c->name = name;
  for (const auto& ip : ips) c->endpoints.push_back({addr(ip, port), "pod", "node"});
  return c;
}

model::L4Listener listener(const std::string& ip, uint16_t port, model::L4Role role,
                           model::ClusterConstPtr c, uint32_t affinity = 0,
                           model::L4Protocol proto = model::L4Protocol::Tcp) {
  return {addr(ip, port), proto, role, "default/web:80", std::move(c), affinity};
}

TEST(NftRuleset, ClusterIpMapsToItsEndpointsThroughOneBackend) {
  model::Snapshot snap;
  auto web = cluster("default/web:80/TCP", {"10.1.0.1", "10.1.0.2"});
  snap.l4_listeners.push_back(listener("10.96.0.10", 80, model::L4Role::ClusterIP, web));
  NftRuleset r;
  NftState s = r.build(snap);
  ASSERT_EQ(s.service_ips.size(), 1u);
  const std::string id = s.service_ips.at("10.96.0.10 . tcp . 80");
  EXPECT_EQ(s.backends.at(id), "goto pick-2");
  EXPECT_EQ(s.endpoints.at(id + " . 0"), "10.1.0.1 . 8080");
  EXPECT_EQ(s.endpoints.at(id + " . 1"), "10.1.0.2 . 8080");
  EXPECT_TRUE(s.hairpin.contains("10.1.0.1 . 10.1.0.1"));
  EXPECT_TRUE(s.masq_ips.empty());  // ClusterIP: only hairpin traffic is masqueraded
  EXPECT_EQ(s.pick_sizes, std::set<uint32_t>{2});
}

TEST(NftRuleset, NodePortsAreKeyedByPortAndMasqueradedOnlyForPolicyCluster) {
  model::Snapshot snap;
  auto all = cluster("default/web:80/TCP", {"10.1.0.1", "10.1.0.2"});
  auto local = cluster("default/web-local:80/TCP@node1", {"10.1.0.1"});
  for (const char* node_ip : {"192.168.0.1", "127.0.0.1"}) {
    snap.l4_listeners.push_back(listener(node_ip, 30080, model::L4Role::NodePort, all));
    snap.l4_listeners.push_back(listener(node_ip, 30081, model::L4Role::NodePort, local));
  }
  snap.l4_listeners.push_back(listener("10.77.100.1", 80, model::L4Role::LoadBalancer, all));
  snap.l4_listeners.push_back(listener("10.77.100.2", 80, model::L4Role::LoadBalancer, local));
  NftRuleset r;
  NftState s = r.build(snap);
  EXPECT_EQ(s.service_nodeports.size(), 2u);  // one element per port, whatever the addresses
  EXPECT_EQ(s.masq_nodeports, std::set<std::string>{"tcp . 30080"});
  EXPECT_EQ(s.masq_ips, std::set<std::string>{"10.77.100.1 . tcp . 80"});
  const std::string local_id = s.service_nodeports.at("tcp . 30081");
  EXPECT_EQ(s.backends.at(local_id), "goto pick-1");
  EXPECT_NE(local_id, s.service_nodeports.at("tcp . 30080"));
  EXPECT_EQ(s.service_ips.at("10.77.100.1 . tcp . 80"), s.service_nodeports.at("tcp . 30080"));
}

TEST(NftRuleset, NoEndpointsRejects) {
  model::Snapshot snap;
  snap.l4_listeners.push_back(
      listener("10.96.0.10", 80, model::L4Role::ClusterIP, cluster("default/empty:80/TCP", {})));
  NftRuleset r;
  NftState s = r.build(snap);
  EXPECT_EQ(s.backends.at(s.service_ips.at("10.96.0.10 . tcp . 80")), "goto no-endpoints");
  EXPECT_TRUE(s.endpoints.empty());
}

TEST(NftRuleset, OneEndpointChangeIsOneElementChange) {
  model::Snapshot a, b;
  std::vector<std::string> ips = {"10.1.0.1", "10.1.0.2", "10.1.0.3"};
  a.l4_listeners.push_back(
      listener("10.96.0.10", 80, model::L4Role::ClusterIP, cluster("default/web:80/TCP", ips)));
  a.l4_listeners.push_back(listener("10.96.0.11", 80, model::L4Role::ClusterIP,
                                    cluster("default/other:80/TCP", {"10.2.0.1"})));
  ips[1] = "10.1.0.9";
  b.l4_listeners.push_back(
      listener("10.96.0.10", 80, model::L4Role::ClusterIP, cluster("default/web:80/TCP", ips)));
  b.l4_listeners.push_back(a.l4_listeners[1]);
  NftRuleset r;
  NftState sa = r.build(a);
  NftState sb = r.build(b);
  EXPECT_EQ(sa.service_ips, sb.service_ips);  // ids are stable
  EXPECT_EQ(sa.backends, sb.backends);
  std::string script = NftRuleset::update(sa, sb);
  // The endpoint that left is replaced in place by the new one (the two others keep their
  // index); the hairpin set follows.
  const std::string id = sa.service_ips.at("10.96.0.10 . tcp . 80");
  EXPECT_NE(script.find("delete element ip kedge endpoints { " + id + " . 1 }"), std::string::npos)
      << script;
  EXPECT_NE(script.find("add element ip kedge endpoints { " + id + " . 1 : 10.1.0.9 . 8080 }"),
            std::string::npos)
      << script;
  EXPECT_EQ(script.find("10.1.0.1 . 8080"), std::string::npos) << script;
  EXPECT_EQ(script.find("10.1.0.3 . 8080"), std::string::npos) << script;
  EXPECT_EQ(script.find("service-ips"), std::string::npos) << script;
  EXPECT_NE(script.find("delete element ip kedge hairpin { 10.1.0.2 . 10.1.0.2 }"),
            std::string::npos)
      << script;
  EXPECT_EQ(NftRuleset::update(sb, sb), "");
}

TEST(NftRuleset, NewEndpointCountAddsItsChainBeforeUsingIt) {
  model::Snapshot a, b;
  a.l4_listeners.push_back(listener("10.96.0.10", 80, model::L4Role::ClusterIP,
                                    cluster("default/web:80/TCP", {"10.1.0.1"})));
  b.l4_listeners.push_back(listener("10.96.0.10", 80, model::L4Role::ClusterIP,
                                    cluster("default/web:80/TCP", {"10.1.0.1", "10.1.0.2"})));
  NftRuleset r;
  NftState sa = r.build(a);
  NftState sb = r.build(b);
  std::string script = NftRuleset::update(sa, sb);
  auto chain = script.find("add chain ip kedge pick-2");
  auto use = script.find(": goto pick-2");
  ASSERT_NE(chain, std::string::npos) << script;
  ASSERT_NE(use, std::string::npos) << script;
  EXPECT_LT(chain, use);
}

TEST(NftRuleset, AffinityKeepsItsTimeoutAndRetiresEntriesWhenAnEndpointLeaves) {
  model::Snapshot a, b;
  a.l4_listeners.push_back(listener("10.96.0.10", 80, model::L4Role::ClusterIP,
                                    cluster("default/web:80/TCP", {"10.1.0.1", "10.1.0.2"}), 600));
  b.l4_listeners.push_back(listener("10.96.0.10", 80, model::L4Role::ClusterIP,
                                    cluster("default/web:80/TCP", {"10.1.0.1"}), 600));
  NftRuleset r;
  NftState sa = r.build(a);
  const std::string id = sa.service_ips.at("10.96.0.10 . tcp . 80");
  EXPECT_EQ(sa.backends.at(id), "goto aff-2");
  EXPECT_EQ(sa.affinity_timeouts.at(id), "jump record-600");
  EXPECT_TRUE(sa.timeouts.contains(600));
  EXPECT_NE(NftRuleset::full(sa).find("timeout 600s"), std::string::npos);
  NftState sb = r.build(b);
  EXPECT_NE(sb.service_ips.at("10.96.0.10 . tcp . 80"), id);
}

TEST(NftRuleset, RemovedUdpEndpointsAreReportedForFlushing) {
  model::Snapshot a, b;
  a.l4_listeners.push_back(listener("10.96.0.53", 53, model::L4Role::ClusterIP,
                                    cluster("kube-system/dns:53/UDP", {"10.1.0.1", "10.1.0.2"}), 0,
                                    model::L4Protocol::Udp));
  a.l4_listeners.push_back(listener("192.168.0.1", 30053, model::L4Role::NodePort,
                                    a.l4_listeners[0].cluster, 0, model::L4Protocol::Udp));
  b.l4_listeners.push_back(listener("10.96.0.53", 53, model::L4Role::ClusterIP,
                                    cluster("kube-system/dns:53/UDP", {"10.1.0.1"}), 0,
                                    model::L4Protocol::Udp));
  NftRuleset r;
  NftState sa = r.build(a);
  EXPECT_EQ(sa.service_ips.count("10.96.0.53 . udp . 53"), 1u);
  EXPECT_TRUE(sa.udp_targets.contains({"10.96.0.53", 53, "10.1.0.2"}));
  EXPECT_TRUE(sa.udp_targets.contains({"", 30053, "10.1.0.1"}));
  NftState sb = r.build(b);
  EXPECT_EQ(sb.udp_targets, (std::set<UdpTarget>{{"10.96.0.53", 53, "10.1.0.1"}}));
}

TEST(NftRuleset, Ipv6IsLeftOut) {
  model::Snapshot snap;
  snap.l4_listeners.push_back(listener("fd00::10", 80, model::L4Role::ClusterIP,
                                       cluster("default/web:80/TCP", {"10.1.0.1"})));
  NftRuleset r;
  NftState s = r.build(snap);
  EXPECT_EQ(s.skipped_ipv6, 1u);
  EXPECT_TRUE(s.service_ips.empty());
}

TEST(NftRuleset, FullScriptReplacesTheTableAtomically) {
  model::Snapshot snap;
  snap.l4_listeners.push_back(listener("10.96.0.10", 80, model::L4Role::ClusterIP,
                                       cluster("default/web:80/TCP", {"10.1.0.1"})));
  NftRuleset r;
  std::string full = NftRuleset::full(r.build(snap));
  EXPECT_EQ(full.rfind("table ip kedge\ndelete table ip kedge\ntable ip kedge {", 0), 0u);
  EXPECT_NE(full.find("add element ip kedge endpoints { 0x00000001 . 0 : 10.1.0.1 . 8080 }"),
            std::string::npos)
      << full;
  EXPECT_EQ(NftRuleset::teardown(), "table ip kedge\ndelete table ip kedge\n");
}

// The generated scripts are valid for the installed nft (checked with `nft -c`, which changes
// nothing). Needs root and the nft tool.
TEST(NftRuleset, ScriptsPassNftCheck) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for nft --check";
  auto probe = run_command({"nft", "--version"});
  if (!probe || probe->exit_code != 0) GTEST_SKIP() << "nft is not installed";
  model::Snapshot snap;
  auto web = cluster("default/web:80/TCP", {"10.1.0.1", "10.1.0.2", "10.1.0.3"});
  snap.l4_listeners.push_back(listener("10.96.0.10", 80, model::L4Role::ClusterIP, web, 30));
  snap.l4_listeners.push_back(listener("10.0.0.1", 30080, model::L4Role::NodePort, web));
  snap.l4_listeners.push_back(listener("10.96.0.53", 53, model::L4Role::ClusterIP,
                                       cluster("a/dns:53/UDP", {}), 0, model::L4Protocol::Udp));
  NftRuleset r;
  NftState s = r.build(snap);
  auto check = run_command({"nft", "-c", "-f", "-"}, NftRuleset::full(s));
  ASSERT_TRUE(check);
  EXPECT_EQ(check->exit_code, 0) << check->output;
}

}  // namespace
}  // namespace kedge::l4
