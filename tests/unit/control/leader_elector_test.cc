#include "control/leader_elector.h"

#include <gtest/gtest.h>

#include <regex>

using namespace kedge::control;
using nlohmann::json;
using Action = LeaseLogic::Action;
using namespace std::chrono_literals;

namespace {

LeaderElectionConfig config(const std::string& identity) {
  LeaderElectionConfig c;
  c.namespace_ = "kedge";
  c.name = "kedge-leader";
  c.identity = identity;
  return c;
}

LeaseRecord lease(const std::string& holder, const std::string& renew, int transitions = 0) {
  json j = {
      {"apiVersion", "coordination.k8s.io/v1"},
      {"kind", "Lease"},
      {"metadata", {{"name", "kedge-leader"}, {"namespace", "kedge"}, {"resourceVersion", "42"}}},
      {"spec",
       {{"holderIdentity", holder},
        {"leaseDurationSeconds", 15},
        {"acquireTime", "2026-01-01T00:00:00.000000Z"},
        {"renewTime", renew},
        {"leaseTransitions", transitions}}}};
  return LeaseRecord::from_json(j);
}

}  // namespace

TEST(MicroTime, SixFractionalDigitsInUtc) {
  auto t = std::chrono::system_clock::time_point(std::chrono::seconds(1767225600) +
                                                 std::chrono::microseconds(5));
  EXPECT_EQ(micro_time(t), "2026-01-01T00:00:00.000005Z");
  std::regex shape(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)");
  EXPECT_TRUE(std::regex_match(micro_time(std::chrono::system_clock::now()), shape));
}

TEST(LeaseLogic, CreatesAMissingLease) {
  LeaseLogic logic(config("a"));
  auto now = LeaseLogic::Clock::now();
  EXPECT_EQ(logic.observe(std::nullopt, now), Action::Create);
  json body = logic.desired(std::nullopt, Action::Create, std::chrono::system_clock::now());
  EXPECT_EQ(body["spec"]["holderIdentity"], "a");
  EXPECT_EQ(body["spec"]["leaseDurationSeconds"], 15);
  EXPECT_EQ(body["spec"]["leaseTransitions"], 0);
  EXPECT_FALSE(body["metadata"].contains("resourceVersion"));
  EXPECT_EQ(body["metadata"]["namespace"], "kedge");
}

TEST(LeaseLogic, WaitsForAnotherHoldersLeaseToExpireOnItsOwnClock) {
  LeaseLogic logic(config("b"));
  auto t0 = LeaseLogic::Clock::now();
  auto held = lease("a", "2026-01-01T00:00:01.000000Z");
  EXPECT_EQ(logic.observe(held, t0), Action::Wait);
  EXPECT_EQ(logic.observe(held, t0 + 14s), Action::Wait);
  // The holder renews: the clock starts again from this observation.
  auto renewed = lease("a", "2026-01-01T00:00:11.000000Z");
  EXPECT_EQ(logic.observe(renewed, t0 + 14s), Action::Wait);
  EXPECT_EQ(logic.observe(renewed, t0 + 28s), Action::Wait);
  EXPECT_EQ(logic.observe(renewed, t0 + 30s), Action::Acquire);
  json body = logic.desired(renewed, Action::Acquire, std::chrono::system_clock::now());
  EXPECT_EQ(body["spec"]["holderIdentity"], "b");
  EXPECT_EQ(body["spec"]["leaseTransitions"], 1);
  EXPECT_EQ(body["metadata"]["resourceVersion"], "42");  // optimistic concurrency on the PUT
  EXPECT_NE(body["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");
}

TEST(LeaseLogic, ReleasedLeaseIsTakenAtOnceAndOwnLeaseRenewed) {
  LeaseLogic logic(config("b"));
  auto now = LeaseLogic::Clock::now();
  EXPECT_EQ(logic.observe(lease("", "2026-01-01T00:00:01.000000Z", 3), now), Action::Acquire);
  auto mine = lease("b", "2026-01-01T00:00:02.000000Z", 4);
  EXPECT_EQ(logic.observe(mine, now), Action::Renew);
  json body = logic.desired(mine, Action::Renew, std::chrono::system_clock::now());
  EXPECT_EQ(body["spec"]["leaseTransitions"], 4);
  EXPECT_EQ(body["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");  // kept while leading
  EXPECT_NE(body["spec"]["renewTime"], "2026-01-01T00:00:02.000000Z");
}

TEST(LeaseLogic, ReleaseClearsTheHolder) {
  LeaseLogic logic(config("b"));
  json body = logic.released(lease("b", "2026-01-01T00:00:02.000000Z", 4),
                             std::chrono::system_clock::now());
  EXPECT_EQ(body["spec"]["holderIdentity"], "");
  EXPECT_EQ(body["spec"]["leaseDurationSeconds"], 1);
  EXPECT_EQ(body["spec"]["leaseTransitions"], 4);
  EXPECT_EQ(body["metadata"]["resourceVersion"], "42");
}

TEST(LeaseLogic, ShortDurationsRoundUpToWholeSeconds) {
  auto c = config("a");
  c.lease_duration = 1500ms;
  LeaseLogic logic(c);
  json body = logic.desired(std::nullopt, Action::Create, std::chrono::system_clock::now());
  EXPECT_EQ(body["spec"]["leaseDurationSeconds"], 2);
}
