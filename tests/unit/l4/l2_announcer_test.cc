#include "l4/l2_announcer.h"

#include <gtest/gtest.h>
#include <openssl/sha.h>

namespace kedge::l4 {
namespace {

TEST(L2Announcer, OwnerIsTheSmallestHashOfNodeAndIp) {
  std::set<std::string> nodes = {"node1", "node2", "node3"};
  auto hash = [](const std::string& s) {
    std::array<unsigned char, SHA256_DIGEST_LENGTH> h{};
    SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), h.data());
    return h;
  };
  for (const char* ip : {"10.0.0.1", "10.0.0.2", "192.0.2.7"}) {
    std::string best;
    for (const auto& n : nodes)
      if (best.empty() || hash(n + "#" + ip) < hash(best + "#" + ip)) best = n;
    EXPECT_EQ(choose_owner(ip, nodes), best) << ip;
    // Without the owner, the next one; the order of the others does not change.
    auto rest = nodes;
    rest.erase(best);
    std::string second = choose_owner(ip, rest);
    EXPECT_NE(second, best);
    EXPECT_TRUE(nodes.contains(second));
  }
  EXPECT_EQ(choose_owner("10.0.0.1", {}), "");
}

TEST(L2Announcer, PolicyLocalLimitsCandidatesToNodesWithEndpoints) {
  model::Snapshot snap;
  auto ep = [](const char* ip, const char* node) {
    return model::Endpoint{*model::SocketAddress::parse(ip, 8080), "pod", node};
  };
  auto all = std::make_shared<model::Cluster>();
  all->name = "default/web:80/TCP";
  all->endpoints = {ep("10.1.0.1", "node1"), ep("10.1.0.2", "node2")};
  auto local = std::make_shared<model::Cluster>();
  local->name = "default/web:80/TCP@node3";
  local->node = "node3";  // this node has none
  snap.service_ports["default/web:http"] = all;
  snap.l4_listeners.push_back({*model::SocketAddress::parse("10.9.0.1", 80), model::L4Protocol::Tcp,
                               model::L4Role::LoadBalancer, "default/web:http", local, 0});
  snap.l4_listeners.push_back({*model::SocketAddress::parse("10.9.0.2", 80), model::L4Protocol::Tcp,
                               model::L4Role::LoadBalancer, "default/other:http", all, 0});
  auto c = lb_candidates(snap);
  ASSERT_EQ(c.size(), 2u);
  ASSERT_TRUE(c["10.9.0.1"].has_value());
  EXPECT_EQ(*c["10.9.0.1"], (std::set<std::string>{"node1", "node2"}));
  EXPECT_FALSE(c["10.9.0.2"].has_value());  // policy Cluster: any live node
}

TEST(L2Announcer, StaticMembershipIsThisNodeAlone) {
  EXPECT_EQ(make_static_membership("node7")->live_nodes(), std::set<std::string>{"node7"});
}

}  // namespace
}  // namespace kedge::l4
