#include "upstream/upstreams.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>

#include <map>
#include <string>
#include <thread>
#include <vector>

namespace kedge::upstream {
namespace {

model::Cluster cluster(const std::string& name, int n,
                       model::LbPolicy lb = model::LbPolicy::RoundRobin) {
  model::Cluster c;
  c.name = name;
  c.lb = lb;
  for (int i = 0; i < n; ++i)
    c.endpoints.push_back({*model::SocketAddress::parse("10.0.0." + std::to_string(i + 1), 8080),
                           "pod-" + std::to_string(i), ""});
  return c;
}

/// Index of the picked endpoint in the cluster, or -1 for none.
int index_of(const model::Cluster& c, const model::Endpoint* e) {
  return e ? static_cast<int>(e - c.endpoints.data()) : -1;
}

using Tried = std::vector<const model::Endpoint*>;

std::vector<int> picks(Upstreams& u, const model::Cluster& c, int n,
                       const std::vector<const model::Endpoint*>& tried = {}) {
  std::vector<int> out;
  for (int i = 0; i < n; ++i) out.push_back(index_of(c, u.pick(c, tried)));
  return out;
}

class UpstreamsTest : public testing::Test {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::off); }  // no ejection warnings
  proxy::Limits limits_;  // eject after 3 connect failures, for 1 s at first
  Upstreams u_{limits_};
};

TEST_F(UpstreamsTest, RoundRobinOrder) {
  auto c = cluster("ns/web:80", 3);
  EXPECT_EQ(picks(u_, c, 7), (std::vector<int>{0, 1, 2, 0, 1, 2, 0}));
  // Positions are per cluster.
  auto other = cluster("ns/other:80", 2);
  EXPECT_EQ(picks(u_, other, 3), (std::vector<int>{0, 1, 0}));
  EXPECT_EQ(picks(u_, c, 2), (std::vector<int>{1, 2}));
}

TEST_F(UpstreamsTest, EmptyClusterAndSingleEndpoint) {
  auto empty = cluster("ns/empty:80", 0);
  EXPECT_EQ(u_.pick(empty, {}), nullptr);
  auto one = cluster("ns/one:80", 1);
  EXPECT_EQ(picks(u_, one, 3), (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(u_.pick(one, Tried{&one.endpoints[0]}), nullptr);
}

TEST_F(UpstreamsTest, TriedEndpointsAreSkipped) {
  auto c = cluster("ns/web:80", 3);
  std::vector<const model::Endpoint*> tried = {&c.endpoints[0]};
  EXPECT_EQ(picks(u_, c, 4, tried), (std::vector<int>{1, 2, 1, 2}));
  tried.push_back(&c.endpoints[2]);
  EXPECT_EQ(picks(u_, c, 2, tried), (std::vector<int>{1, 1}));
  tried.push_back(&c.endpoints[1]);
  EXPECT_EQ(u_.pick(c, tried), nullptr);  // nothing left to try
}

TEST_F(UpstreamsTest, EjectionAfterConsecutiveConnectFailures) {
  auto c = cluster("ns/web:80", 3);
  const auto& bad = c.endpoints[1].address;
  u_.on_failure(bad);
  u_.on_failure(bad);
  EXPECT_EQ(picks(u_, c, 3), (std::vector<int>{0, 1, 2}));  // two failures: still in
  u_.on_failure(bad);
  EXPECT_EQ(picks(u_, c, 4), (std::vector<int>{0, 2, 0, 2}));  // third: ejected
  u_.on_success(bad);
  auto after = picks(u_, c, 3);
  EXPECT_EQ(std::count(after.begin(), after.end(), 1), 1);  // back in the rotation
}

TEST_F(UpstreamsTest, SuccessResetsTheFailureCount) {
  auto c = cluster("ns/web:80", 2);
  const auto& a = c.endpoints[0].address;
  u_.on_failure(a);
  u_.on_failure(a);
  u_.on_success(a);
  u_.on_failure(a);
  u_.on_failure(a);
  EXPECT_EQ(picks(u_, c, 4), (std::vector<int>{0, 1, 0, 1}));  // not consecutive: not ejected
}

TEST_F(UpstreamsTest, EjectionIsPerEndpointAddressAcrossClusters) {
  auto a = cluster("ns/a:80", 2);
  auto b = cluster("ns/b:80", 2);  // the same addresses
  for (int i = 0; i < 3; ++i) u_.on_failure(a.endpoints[0].address);
  EXPECT_EQ(picks(u_, b, 3), (std::vector<int>{1, 1, 1}));
}

TEST_F(UpstreamsTest, PanicModeWhenAllAreEjected) {
  auto c = cluster("ns/web:80", 3);
  for (const auto& e : c.endpoints)
    for (int i = 0; i < 3; ++i) u_.on_failure(e.address);
  auto got = picks(u_, c, 6);
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 0, 1, 2}));  // used anyway, still in turn
  // The ejected-but-untried are tried before giving up.
  EXPECT_EQ(index_of(c, u_.pick(c, Tried{&c.endpoints[0], &c.endpoints[1]})), 2);
  EXPECT_EQ(u_.pick(c, Tried{&c.endpoints[0], &c.endpoints[1], &c.endpoints[2]}), nullptr);
}

TEST_F(UpstreamsTest, HealthyUntriedBeforeEjected) {
  auto c = cluster("ns/web:80", 3);
  for (int i = 0; i < 3; ++i) u_.on_failure(c.endpoints[0].address);
  // Endpoint 1 was tried, 0 is ejected: 2 is the one.
  EXPECT_EQ(picks(u_, c, 3, {&c.endpoints[1]}), (std::vector<int>{2, 2, 2}));
  // Only the ejected one left untried: panic mode uses it rather than failing.
  EXPECT_EQ(index_of(c, u_.pick(c, Tried{&c.endpoints[1], &c.endpoints[2]})), 0);
}

TEST_F(UpstreamsTest, ZeroEjectionTimeEndsAtOnce) {
  limits_.eject_base = proxy::Millis(0);
  auto c = cluster("ns/web:80", 2);
  for (int i = 0; i < 3; ++i) u_.on_failure(c.endpoints[0].address);
  EXPECT_EQ(picks(u_, c, 2), (std::vector<int>{0, 1}));
}

TEST_F(UpstreamsTest, LeastRequestChoosesTheLessLoaded) {
  auto c = cluster("ns/web:80", 2, model::LbPolicy::LeastRequest);
  for (int i = 0; i < 5; ++i) u_.on_request_start(c.endpoints[0].address);
  for (int i = 0; i < 200; ++i) ASSERT_EQ(index_of(c, u_.pick(c, {})), 1) << "pick " << i;
  // The load moves: endpoint 1 becomes the busier one.
  for (int i = 0; i < 5; ++i) u_.on_request_end(c.endpoints[0].address);
  for (int i = 0; i < 3; ++i) u_.on_request_start(c.endpoints[1].address);
  for (int i = 0; i < 200; ++i) ASSERT_EQ(index_of(c, u_.pick(c, {})), 0) << "pick " << i;
}

TEST_F(UpstreamsTest, LeastRequestNeverPicksTheBusiestOfThree) {
  auto c = cluster("ns/web:80", 3, model::LbPolicy::LeastRequest);
  for (int i = 0; i < 9; ++i) u_.on_request_start(c.endpoints[0].address);
  for (int i = 0; i < 4; ++i) u_.on_request_start(c.endpoints[1].address);
  std::map<int, int> count;
  for (int i = 0; i < 600; ++i) count[index_of(c, u_.pick(c, {}))]++;
  EXPECT_EQ(count[0], 0);         // it loses every comparison
  EXPECT_GT(count[2], count[1]);  // the idle one wins two pairs out of three
  EXPECT_GT(count[1], 0);
}

TEST_F(UpstreamsTest, LeastRequestRespectsTriedAndEjection) {
  auto c = cluster("ns/web:80", 2, model::LbPolicy::LeastRequest);
  for (int i = 0; i < 5; ++i) u_.on_request_start(c.endpoints[0].address);
  // The idle endpoint was tried already: the busy one is the only choice.
  for (int i = 0; i < 50; ++i) ASSERT_EQ(index_of(c, u_.pick(c, Tried{&c.endpoints[1]})), 0);
  // The idle endpoint is ejected: the busy one is used.
  for (int i = 0; i < 3; ++i) u_.on_failure(c.endpoints[1].address);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(index_of(c, u_.pick(c, {})), 0);
  EXPECT_EQ(u_.pick(c, Tried{&c.endpoints[0], &c.endpoints[1]}), nullptr);
}

TEST_F(UpstreamsTest, RequestEndNeverUnderflows) {
  auto c = cluster("ns/web:80", 2, model::LbPolicy::LeastRequest);
  u_.on_request_end(c.endpoints[0].address);  // more ends than starts
  u_.on_request_start(c.endpoints[1].address);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(index_of(c, u_.pick(c, {})), 0);
}

/// Pooled connections over loopback: `n` connected pairs, the client ends pooled.
class IdlePoolTest : public testing::Test {
 protected:
  using tcp = boost::asio::ip::tcp;
  void pool(int n) {
    tcp::acceptor acceptor(io_, {boost::asio::ip::make_address("127.0.0.1"), 0});
    address_ = *model::SocketAddress::parse("127.0.0.1", acceptor.local_endpoint().port());
    for (int i = 0; i < n; ++i) {
      auto c = std::make_unique<Connection>(io_.get_executor(), model::UpstreamProtocol::Http);
      c->socket.connect(acceptor.local_endpoint());
      c->endpoint = address_;
      sockets_.push_back(c->socket.native_handle());
      peers_.push_back(acceptor.accept());
      u_.put_idle(std::move(c));
      pooled_by_.push_back(Clock::now());  // no earlier than this one, before the next
    }
  }
  /// Which of the pooled connections `c` is (by the order they were pooled).
  int which(const ConnectionPtr& c) const {
    for (size_t i = 0; i < sockets_.size(); ++i)
      if (c && c->socket.native_handle() == sockets_[i]) return static_cast<int>(i);
    return -1;
  }
  ConnectionPtr take(bool verify) {
    return u_.take_idle(address_, model::UpstreamProtocol::Http, verify);
  }

  boost::asio::io_context io_;
  proxy::Limits limits_;
  Upstreams u_{limits_};
  model::SocketAddress address_;
  std::vector<int> sockets_;
  std::vector<tcp::socket> peers_;
  std::vector<Clock::time_point> pooled_by_;
};

TEST_F(IdlePoolTest, NewestFirstAndOnlyCheckedWhenAsked) {
  pool(3);
  peers_[2].close();  // the newest one's peer went away
  ConnectionPtr unchecked = take(false);
  EXPECT_EQ(which(unchecked), 2);  // taken without a look: the caller resends if it is stale
  u_.put_idle(std::move(unchecked));
  EXPECT_EQ(which(take(true)), 1);  // looked at: the closed one is dropped
  EXPECT_EQ(which(take(true)), 0);
  EXPECT_EQ(take(true), nullptr);
}

TEST_F(IdlePoolTest, UnaskedBytesMakeAConnectionUnusable) {
  pool(2);
  boost::asio::write(peers_[1], boost::asio::buffer("HTTP/1.1 200 OK\r\n", 17));
  EXPECT_EQ(which(take(true)), 0);
}

TEST_F(IdlePoolTest, PruneDropsOnlyClosedConnections) {
  pool(4);
  peers_[1].close();
  peers_[3].close();
  u_.prune_idle(address_, pooled_by_[3]);
  EXPECT_EQ(which(take(false)), 2);
  EXPECT_EQ(which(take(false)), 0);
  EXPECT_EQ(take(false), nullptr);
}

TEST_F(IdlePoolTest, PruneLooksOnlyAtThosePooledBeforeTheStaleOne) {
  pool(5);
  peers_[0].close();
  peers_[1].close();
  peers_[4].close();
  u_.prune_idle(address_, pooled_by_[2]);  // connection 2 was found stale
  EXPECT_EQ(which(take(false)), 4);        // pooled after it: not looked at, still pooled
  EXPECT_EQ(which(take(false)), 3);
  EXPECT_EQ(which(take(false)), 2);
  EXPECT_EQ(take(false), nullptr);  // 0 and 1, pooled before it, were closed and dropped
}

TEST_F(IdlePoolTest, IdleTimeoutAppliesWithoutTheCheck) {
  limits_.upstream_idle_timeout = std::chrono::milliseconds(0);
  pool(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(take(false), nullptr);
}

TEST(AddressHash, DistinguishesPortsAndFamilies) {
  AddressHash h;
  auto a = *model::SocketAddress::parse("10.0.0.1", 80);
  auto b = *model::SocketAddress::parse("10.0.0.1", 81);
  auto c = *model::SocketAddress::parse("10.0.0.2", 80);
  EXPECT_NE(h(a), h(b));
  EXPECT_NE(h(a), h(c));
  EXPECT_EQ(h(a), h(*model::SocketAddress::parse("10.0.0.1", 80)));
}

}  // namespace
}  // namespace kedge::upstream
