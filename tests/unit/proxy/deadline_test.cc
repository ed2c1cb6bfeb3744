// Deadline: the one timer of a connection or stream, cancelling the waits it bounds.
#include "proxy/deadline.h"

#include <gtest/gtest.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <optional>

namespace kedge::proxy {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

/// A socket whose peer never sends: a read on it waits until cancelled.
struct Quiet {
  asio::io_context io;
  tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
  tcp::socket peer{io}, socket{io};
  Quiet() {
    peer.connect(acceptor.local_endpoint());
    socket = acceptor.accept();
  }
  /// Reads once; how long it took and how it ended.
  asio::awaitable<void> read(std::optional<boost::system::error_code>& ec,
                             std::chrono::steady_clock::duration& took) {
    auto t0 = std::chrono::steady_clock::now();
    char b[16];
    auto [e, n] = co_await socket.async_read_some(asio::buffer(b), kUseTuple);
    ec = e;
    took = std::chrono::steady_clock::now() - t0;
  }
};

TEST(Deadline, PassingCancelsTheWaitAndSaysWhichPhase) {
  Quiet q;
  Deadline deadline(q.io.get_executor(), &q.socket);
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

TEST(Deadline, ArmingEarlierWakesTheTimerAndLaterPostpones) {
  Quiet q;
  Deadline deadline(q.io.get_executor(), &q.socket);
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
    auto deadline = std::make_unique<Deadline>(q.io.get_executor(), &q.socket);
    deadline->arm(Phase::ClientHeader, Millis(20));
    deadline->start();
    deadline->stop();
    auto other = std::make_unique<Deadline>(q.io.get_executor(), &q.socket);
    other->arm(Phase::ClientHeader, Millis(20));
    other->start();
    other.reset();  // destroyed with its timer pending: the handler must touch nothing
  }
  asio::co_spawn(q.io, q.read(ec, took), asio::detached);
  q.io.run_for(200ms);
  EXPECT_FALSE(ec) << "a stopped deadline cancelled the read";
  q.peer.close();
  q.io.run_for(1s);
  ASSERT_TRUE(ec);
  EXPECT_EQ(*ec, asio::error::eof);
}

}  // namespace
}  // namespace kedge::proxy
