// Deadline: the deadline of a connection or stream, cancelling the waits it bounds; and
// DeadlineQueue, the one timer behind a worker's deadlines.
#include "proxy/deadline.h"

#include "proxy/downstream_stream.h"
#include "upstream/upstreams.h"

#include <gtest/gtest.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <deque>
#include <memory>
#include <optional>
#include <vector>

namespace kedge::proxy {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

/// A client connection whose peer never sends: a read on it waits until cancelled.
struct Quiet {
  asio::io_context io;
  DeadlineQueue queue{io.get_executor()};
  tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
  tcp::socket peer{io};
  std::optional<DownstreamStream> down;
  Quiet() {
    peer.connect(acceptor.local_endpoint());
    down.emplace(acceptor.accept(), peer.local_endpoint());
  }
  /// Reads once; how long it took and how it ended.
  asio::awaitable<void> read(std::optional<boost::system::error_code>& ec,
                             std::chrono::steady_clock::duration& took) {
    auto t0 = std::chrono::steady_clock::now();
    char b[16];
    auto [e, n] = co_await down->read_some(asio::buffer(b));
    ec = e;
    took = std::chrono::steady_clock::now() - t0;
  }
};

TEST(Deadline, PassingCancelsTheWaitAndSaysWhichPhase) {
  Quiet q;
  Deadline deadline(q.queue, &*q.down);
  deadline.arm(Phase::ClientHeader, Millis(50));
  deadline.start();
  std::optional<boost::system::error_code> ec;
  std::chrono::steady_clock::duration took{};
  asio::co_spawn(q.io, q.read(ec, took), asio::detached);
  q.io.run_for(500ms);  // the timer fires and cancels the read
  ASSERT_TRUE(ec);
  EXPECT_EQ(*ec, asio::error::operation_aborted);
  EXPECT_TRUE(deadline.expired(Phase::ClientHeader));
  EXPECT_FALSE(deadline.expired(Phase::Idle));
  EXPECT_GE(took, 45ms);
  deadline.stop();
}

TEST(Deadline, PassingCancelsAReadWaitingForTheReadinessSetToo) {
  Quiet q;
  Readiness readiness(q.io.get_executor());
  q.down->watch(readiness);  // the read finds no input and waits for the set's report
  Deadline deadline(q.queue, &*q.down);
  deadline.arm(Phase::Idle, Millis(50));
  deadline.start();
  std::optional<boost::system::error_code> ec;
  std::chrono::steady_clock::duration took{};
  asio::co_spawn(q.io, q.read(ec, took), asio::detached);
  q.io.run_for(500ms);
  ASSERT_TRUE(ec) << "the waiting read was not cancelled";
  EXPECT_EQ(*ec, asio::error::operation_aborted);
  EXPECT_TRUE(deadline.expired(Phase::Idle));
  deadline.stop();
}

TEST(Deadline, ArmingEarlierWakesTheTimerAndLaterPostpones) {
  Quiet q;
  Deadline deadline(q.queue, &*q.down);
  deadline.arm(Phase::Idle, Millis(60'000));
  deadline.start();
  std::optional<boost::system::error_code> ec;
  std::chrono::steady_clock::duration took{};
  asio::co_spawn(q.io, q.read(ec, took), asio::detached);
  q.io.run_for(20ms);
  deadline.arm(Phase::UpstreamRead, Millis(30));  // earlier than the pending wait
  q.io.run_for(1s);
  ASSERT_TRUE(ec);
  EXPECT_TRUE(deadline.expired(Phase::UpstreamRead));
  EXPECT_LT(took, 900ms);

  // Re-arming resets the verdict, and a later deadline does not fire early.
  ec.reset();
  deadline.arm(Phase::ClientBody, Millis(300));
  EXPECT_FALSE(deadline.expired(Phase::UpstreamRead));
  asio::co_spawn(q.io, q.read(ec, took), asio::detached);
  q.io.run_for(100ms);
  EXPECT_FALSE(ec) << "fired before its time";
  q.io.run_for(1s);
  ASSERT_TRUE(ec);
  EXPECT_TRUE(deadline.expired(Phase::ClientBody));
  deadline.stop();
}

TEST(Deadline, StoppedOrDestroyedItCancelsNothing) {
  Quiet q;
  std::optional<boost::system::error_code> ec;
  std::chrono::steady_clock::duration took{};
  {
    auto deadline = std::make_unique<Deadline>(q.queue, &*q.down);
    deadline->arm(Phase::ClientHeader, Millis(20));
    deadline->start();
    deadline->stop();
    auto other = std::make_unique<Deadline>(q.queue, &*q.down);
    other->arm(Phase::ClientHeader, Millis(20));
    other->start();
    other.reset();  // destroyed with its timer pending: the handler must touch nothing
  }
  asio::co_spawn(q.io, q.read(ec, took), asio::detached);
  q.io.run_for(200ms);
  EXPECT_FALSE(ec) << "a stopped deadline cancelled the read";
  EXPECT_EQ(q.queue.started(), 0u);
  q.peer.close();
  q.io.run_for(1s);
  ASSERT_TRUE(ec);
  EXPECT_EQ(*ec, asio::error::eof);
}

TEST(Deadline, AbandonedItEndsTheUpstreamWaitAndNoPhaseExpires) {
  Quiet q;
  upstream::Connection conn(q.io.get_executor(), model::UpstreamProtocol::Http);
  conn.socket.connect(q.acceptor.local_endpoint());
  tcp::socket quiet_peer = q.acceptor.accept();
  Deadline deadline(q.queue, nullptr);
  deadline.arm(Phase::UpstreamRead, Millis(60'000));
  deadline.start();
  deadline.watch(&conn);
  std::optional<boost::system::error_code> ec;
  auto read = [&]() -> asio::awaitable<void> {
    char b[16];
    auto [e, n] = co_await conn.read_some(asio::buffer(b));
    ec = e;
  };
  asio::co_spawn(q.io, read(), asio::detached);
  q.io.run_for(20ms);
  EXPECT_FALSE(ec);
  EXPECT_FALSE(deadline.abandoned());
  deadline.abandon();
  q.io.run_for(200ms);
  ASSERT_TRUE(ec) << "the read still waits";
  EXPECT_EQ(*ec, asio::error::operation_aborted);
  EXPECT_TRUE(deadline.abandoned());
  EXPECT_FALSE(deadline.expired(Phase::UpstreamRead));  // not a timeout
  deadline.stop();
}

TEST(Deadline, ManyShareOneTimerAndOnlyThosePassedFire) {
  asio::io_context io;
  DeadlineQueue queue(io.get_executor());
  tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
  constexpr size_t kCount = 6;
  std::vector<tcp::socket> peers;
  std::deque<DownstreamStream> downs;
  std::vector<std::unique_ptr<Deadline>> deadlines;
  std::vector<std::optional<boost::system::error_code>> ecs(kCount);
  auto read = [&](size_t i) -> asio::awaitable<void> {
    char b[16];
    auto [e, n] = co_await downs[i].read_some(asio::buffer(b));
    ecs[i] = e;
  };
  for (size_t i = 0; i < kCount; ++i) {
    peers.emplace_back(io).connect(acceptor.local_endpoint());
    downs.emplace_back(acceptor.accept(), peers.back().local_endpoint());
  }
  for (size_t i = 0; i < kCount; ++i) {
    deadlines.push_back(std::make_unique<Deadline>(queue, &downs[i]));
    asio::co_spawn(io, read(i), asio::detached);
  }
  // Odd ones late, even ones soon; of these, one stops and one is re-armed later.
  for (size_t i = 0; i < kCount; ++i) {
    deadlines[i]->arm(Phase::UpstreamRead, i % 2 ? Millis(60'000) : Millis(40 + 20 * i));
    deadlines[i]->start();
  }
  EXPECT_EQ(queue.started(), kCount);
  deadlines[2]->stop();
  deadlines[4]->arm(Phase::ClientSend, Millis(60'000));
  auto t0 = std::chrono::steady_clock::now();
  io.run_for(300ms);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 40ms);
  EXPECT_TRUE(deadlines[0]->expired(Phase::UpstreamRead));
  ASSERT_TRUE(ecs[0]);
  EXPECT_EQ(*ecs[0], asio::error::operation_aborted);
  for (size_t i = 1; i < kCount; ++i) {
    EXPECT_FALSE(deadlines[i]->expired(Phase::UpstreamRead)) << i;
    EXPECT_FALSE(deadlines[i]->expired(Phase::ClientSend)) << i;
    EXPECT_FALSE(ecs[i]) << i;
  }
  EXPECT_EQ(queue.started(), kCount - 1);

  // Moved earlier than the timer's time, a deadline wakes it; the others still wait.
  deadlines[5]->arm(Phase::ClientBody, Millis(30));
  io.run_for(300ms);
  EXPECT_TRUE(deadlines[5]->expired(Phase::ClientBody));
  ASSERT_TRUE(ecs[5]);
  EXPECT_EQ(*ecs[5], asio::error::operation_aborted);
  for (size_t i : {1, 2, 3, 4}) EXPECT_FALSE(ecs[i]) << i;
  deadlines.clear();
  EXPECT_EQ(queue.started(), 0u);
}

TEST(Deadline, OutlivingItsQueueItIsStopped) {
  asio::io_context io;
  auto queue = std::make_unique<DeadlineQueue>(io.get_executor());
  Deadline deadline(*queue, nullptr);
  deadline.arm(Phase::Idle, Millis(10));
  deadline.start();
  EXPECT_EQ(queue->started(), 1u);
  queue.reset();
  deadline.start();  // no queue to join: stays stopped
  deadline.arm(Phase::ClientHeader, Millis(10));
  deadline.stop();
  EXPECT_FALSE(deadline.expired(Phase::ClientHeader));
}

}  // namespace
}  // namespace kedge::proxy
