#include "proxy/client_limiter.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace kedge::proxy {
namespace {

using namespace std::chrono_literals;
using Clock = ClientLimiter::Clock;

ClientLimiter::Key key(uint8_t last, uint64_t scope = 1) {
  ClientLimiter::Key k;
  k.address[15] = last;
  k.scope = scope;
  return k;
}

TEST(ClientLimiter, RateWithBurstAsNginxNodelay) {
  ClientLimiter l(64);
  auto t = Clock::time_point() + 1h;
  // 2 rps, burst 3: 1 + 3 at once, then one every 500 ms.
  int allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += l.allow_request(key(1), 2, 3, t);
  EXPECT_EQ(allowed, 4);
  EXPECT_FALSE(l.allow_request(key(1), 2, 3, t + 400ms));
  EXPECT_TRUE(l.allow_request(key(1), 2, 3, t + 500ms));
  EXPECT_FALSE(l.allow_request(key(1), 2, 3, t + 600ms));
  // Another address, or the same address under another Ingress, has its own budget.
  EXPECT_TRUE(l.allow_request(key(2), 2, 3, t));
  EXPECT_TRUE(l.allow_request(key(1, 2), 2, 3, t));
  // After a quiet period the whole burst is back.
  allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += l.allow_request(key(1), 2, 3, t + 10s);
  EXPECT_EQ(allowed, 4);
}

TEST(ClientLimiter, InFlightHoldsAreCountedAndReleased) {
  ClientLimiter l(64);
  auto t = Clock::now();
  bool ok = false;
  auto a = l.acquire(key(1), 2, ok, t);
  EXPECT_TRUE(ok && a);
  auto b = l.acquire(key(1), 2, ok, t);
  EXPECT_TRUE(ok && b);
  auto c = l.acquire(key(1), 2, ok, t);
  EXPECT_FALSE(ok);
  EXPECT_FALSE(c);
  auto other = l.acquire(key(9), 2, ok, t);
  EXPECT_TRUE(ok);
  { auto released = std::move(a); }
  auto d = l.acquire(key(1), 2, ok, t);
  EXPECT_TRUE(ok && d);
}

TEST(ClientLimiter, FullTableLetsThroughAndCounts) {
  ClientLimiter l(4);  // one probe window: four keys at most
  auto t = Clock::time_point() + 1h;
  std::vector<ClientLimiter::Hold> holds;
  for (uint8_t i = 1; i <= 4; ++i) {
    bool ok = false;
    holds.push_back(l.acquire(key(i), 1, ok, t));
    ASSERT_TRUE(ok);
  }
  bool ok = false;
  auto extra = l.acquire(key(50), 1, ok, t);  // no slot: admitted, not tracked
  EXPECT_TRUE(ok);
  EXPECT_FALSE(extra);
  EXPECT_EQ(l.overflow(), 1u);
  holds.clear();  // idle and recovered slots are reused by new keys
  auto again = l.acquire(key(50), 1, ok, t);
  EXPECT_TRUE(ok && again);
}

TEST(ClientLimiter, ExactAcrossThreads) {
  ClientLimiter l(1024);
  auto t = Clock::time_point() + 1h;
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) allowed += l.allow_request(key(7), 10, 50, t);
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 51);  // 1 + burst, however many workers share the client
}

model::SocketAddress address(const char* ip) { return *model::SocketAddress::parse(ip, 0); }

TEST(Admit, RateThenConnectionsWithTheirStatuses) {
  ClientLimiter l(1024);
  model::ClientLimits limits;
  limits.rates.push_back({1.0, 2});  // three at once, then one a second
  limits.connections = 2;
  limits.scope = 7;
  std::vector<ClientLimiter::Hold> holds(4);
  EXPECT_EQ(admit(l, limits, address("10.1.1.1"), 429, 503, holds[0]), 0);
  EXPECT_EQ(admit(l, limits, address("10.1.1.1"), 429, 503, holds[1]), 0);
  EXPECT_EQ(admit(l, limits, address("10.1.1.1"), 429, 503, holds[2]), 503);  // two in flight
  holds[0] = ClientLimiter::Hold();                                           // one finished
  EXPECT_EQ(admit(l, limits, address("10.1.1.1"), 429, 503, holds[3]), 429);  // rate spent
  // Another address, and the same address under another Ingress, have their own budgets.
  ClientLimiter::Hold other;
  EXPECT_EQ(admit(l, limits, address("10.1.1.2"), 429, 503, other), 0);
  model::ClientLimits second = limits;
  second.scope = 8;
  ClientLimiter::Hold elsewhere;
  EXPECT_EQ(admit(l, second, address("10.1.1.1"), 429, 503, elsewhere), 0);
  // ::ffff:10.1.1.3 in IPv6 form is not the IPv4 client 10.1.1.3's key, nor any other.
  ClientLimiter::Hold v6;
  EXPECT_EQ(admit(l, limits, address("::a01:101"), 429, 503, v6), 0);
}

TEST(Admit, ExemptRangesPassUnlimited) {
  ClientLimiter l(1024);
  model::ClientLimits limits;
  limits.rates.push_back({1.0, 0});
  limits.scope = 9;
  limits.exempt = {*model::Cidr::parse("192.168.0.0/16"), *model::Cidr::parse("2001:db8::/32")};
  ClientLimiter::Hold hold;
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(admit(l, limits, address("192.168.3.4"), 429, 503, hold), 0);
    ASSERT_EQ(admit(l, limits, address("2001:db8::1"), 429, 503, hold), 0);
  }
  EXPECT_EQ(admit(l, limits, address("192.169.3.4"), 429, 503, hold), 0);
  EXPECT_EQ(admit(l, limits, address("192.169.3.4"), 429, 503, hold), 429);
}

}  // namespace
}  // namespace kedge::proxy
