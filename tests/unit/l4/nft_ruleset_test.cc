#include "l4/nft_ruleset.h"
#include "l4/command.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <random>

namespace kedge::l4 {
namespace {

model::SocketAddress addr(const std::string& ip, uint16_t port) {
  return *model::SocketAddress::parse(ip, port);
}

model::ClusterConstPtr cluster(const std::string& name, std::vector<std::string> ips,
                               uint16_t port = 8080) {
  auto c = std::make_shared<model::Cluster>();
  c->name = name;
  if (auto at = name.find('@'); at != std::string::npos) c->node = name.substr(at + 1);
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

// change() keeps its own state up to date element by element; whatever the sequence of
// snapshots, its state must be what build() computes from scratch, and its script the diff that
// update() makes between the states before and after.
TEST(NftRuleset, IncrementalChangeMatchesAFullRebuild) {
  std::mt19937 rng(7);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  NftRuleset r;
  NftState before;
  for (int round = 0; round < 300; ++round) {
    model::Snapshot snap;
    int services = pick(13);  // sometimes none: the next change starts from an empty table
    for (int i = 0; i < services; ++i) {
      std::vector<std::string> ips;
      int n = pick(5);
      for (int j = 0; j < n; ++j) ips.push_back(fmt::format("10.1.{}.{}", pick(3), 1 + pick(6)));
      std::sort(ips.begin(), ips.end());
      ips.erase(std::unique(ips.begin(), ips.end()), ips.end());
      const bool udp = i % 4 == 3;
      auto c = cluster(
          fmt::format("ns/svc{}:80/{}{}", i, udp ? "UDP" : "TCP", pick(4) == 0 ? "@node1" : ""),
          ips);
      auto proto = udp ? model::L4Protocol::Udp : model::L4Protocol::Tcp;
      uint32_t affinity = pick(5) == 0 ? 10800u * static_cast<uint32_t>(1 + pick(2)) : 0u;
      snap.l4_listeners.push_back(
          listener(fmt::format("10.96.0.{}", i), 80, model::L4Role::ClusterIP, c, affinity, proto));
      if (pick(2))
        snap.l4_listeners.push_back(listener("192.168.0.1", static_cast<uint16_t>(30000 + i),
                                             model::L4Role::NodePort, c, affinity, proto));
      if (pick(3) == 0)
        snap.l4_listeners.push_back(listener(fmt::format("10.77.0.{}", i), 80,
                                             model::L4Role::LoadBalancer, c, affinity, proto));
    }
    NftChange change = r.change(snap);
    NftState after = r.state();
    ASSERT_EQ(after, r.build(snap)) << "round " << round;
    // Chains are never removed while serving, so change() adds only those it has not made yet
    // where update() adds those `before` lacks: compare the element commands.
    auto elements_only = [](const std::string& script) {
      std::string out;
      for (size_t at = 0; at < script.size();) {
        size_t end = script.find('\n', at);
        std::string line = script.substr(at, end - at + 1);
        if (line.find(" element ") != std::string::npos) out += line;
        at = end + 1;
      }
      return out;
    };
    ASSERT_EQ(elements_only(change.script), elements_only(NftRuleset::update(before, after)))
        << "round " << round;
    std::vector<UdpTarget> gone;
    std::set_difference(before.udp_targets.begin(), before.udp_targets.end(),
                        after.udp_targets.begin(), after.udp_targets.end(),
                        std::back_inserter(gone));
    ASSERT_EQ(change.udp_gone, gone) << "round " << round;
    before = std::move(after);
  }
}

TEST(NftRuleset, UnchangedSnapshotChangesNothing) {
  model::Snapshot snap;
  auto web = cluster("default/web:80/TCP", {"10.1.0.1", "10.1.0.2"});
  snap.l4_listeners.push_back(listener("10.96.0.10", 80, model::L4Role::ClusterIP, web));
  snap.l4_listeners.push_back(listener("192.168.0.1", 30080, model::L4Role::NodePort, web));
  NftRuleset r;
  EXPECT_NE(r.change(snap).script, "");
  EXPECT_EQ(r.change(snap).script, "");
  // A new snapshot with equal content (new Cluster objects) changes nothing either.
  model::Snapshot copy;
  auto again = cluster("default/web:80/TCP", {"10.1.0.2", "10.1.0.1"});  // another order
  copy.l4_listeners.push_back(listener("10.96.0.10", 80, model::L4Role::ClusterIP, again));
  copy.l4_listeners.push_back(listener("192.168.0.1", 30080, model::L4Role::NodePort, again));
  EXPECT_EQ(r.change(copy).script, "");
  // Dropping the NodePort deletes its element only; the shared endpoints stay.
  copy.l4_listeners.pop_back();
  EXPECT_EQ(r.change(copy).script,
            "delete element ip kedge service-nodeports { tcp . 30080 }\n"
            "delete element ip kedge masq-nodeports { tcp . 30080 }\n");
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
