#include "membership/lease_membership.h"

#include <gtest/gtest.h>

namespace kedge::membership {
namespace {

using Clock = LeaseMembership::Clock;
using nlohmann::json;

json lease(const std::string& node, const std::string& renew, int duration = 2) {
  return {{"metadata", {{"name", "kedge-" + node}}},
          {"spec",
           {{"holderIdentity", node}, {"renewTime", renew}, {"leaseDurationSeconds", duration}}}};
}

TEST(LeaseMembership, ANodeIsAliveWhileItsLeaseChangesWithinItsDuration) {
  std::map<std::string, LeaseMembership::Seen> seen;
  auto t0 = Clock::now();
  json leases = {{"items", {lease("node1", "a"), lease("node2", "a")}}};
  EXPECT_EQ(LeaseMembership::evaluate(leases, nullptr, "kedge-", seen, t0),
            (std::set<std::string>{"node1", "node2"}));
  // node1 renews, node2 does not: 2 s later node2 is gone.
  leases = {{"items", {lease("node1", "b"), lease("node2", "a")}}};
  EXPECT_EQ(LeaseMembership::evaluate(leases, nullptr, "kedge-", seen,
                                      t0 + std::chrono::milliseconds(1500)),
            (std::set<std::string>{"node1", "node2"}));
  EXPECT_EQ(LeaseMembership::evaluate(leases, nullptr, "kedge-", seen,
                                      t0 + std::chrono::milliseconds(2100)),
            (std::set<std::string>{"node1"}));
  // It comes back with its next renewal.
  leases = {{"items", {lease("node1", "b"), lease("node2", "c")}}};
  EXPECT_EQ(LeaseMembership::evaluate(leases, nullptr, "kedge-", seen,
                                      t0 + std::chrono::milliseconds(2200)),
            (std::set<std::string>{"node1", "node2"}));
}

TEST(LeaseMembership, OtherLeasesAndNotReadyNodesDoNotCount) {
  std::map<std::string, LeaseMembership::Seen> seen;
  json other = {
      {"metadata", {{"name", "kube-scheduler"}}},
      {"spec", {{"holderIdentity", "x"}, {"renewTime", "a"}, {"leaseDurationSeconds", 15}}}};
  json leases = {{"items", {lease("node1", "a"), lease("node3", "a"), other}}};
  json nodes = {{"items",
                 {{{"metadata", {{"name", "node3"}}},
                   {"status", {{"conditions", {{{"type", "Ready"}, {"status", "False"}}}}}}},
                  {{"metadata", {{"name", "node1"}}},
                   {"status", {{"conditions", {{{"type", "Ready"}, {"status", "True"}}}}}}}}}};
  EXPECT_EQ(LeaseMembership::evaluate(leases, &nodes, "kedge-", seen, Clock::now()),
            (std::set<std::string>{"node1"}));
}

TEST(LeaseMembership, MicroTimeHasSixFractionalDigits) {
  auto t = std::chrono::system_clock::time_point(std::chrono::microseconds(1767225600000042));
  EXPECT_EQ(micro_time(t), "2026-01-01T00:00:00.000042Z");
}

TEST(LeaseMembership, OnlyPlainHttpUrls) {
  auto ok = parse_http_url("http://10.0.0.2:6443/");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->first, "10.0.0.2");
  EXPECT_EQ(ok->second, 6443);
  EXPECT_FALSE(parse_http_url("https://10.0.0.2:6443"));
  EXPECT_FALSE(parse_http_url("http://api.example:80"));
}

}  // namespace
}  // namespace kedge::membership
