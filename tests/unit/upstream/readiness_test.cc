#include "upstream/readiness.h"
#include "upstream/upstreams.h"

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <thread>

namespace kedge::upstream {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

/// A connected pair over loopback: `conn` is the watched upstream side, `peer` the backend.
class ReadinessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tcp::acceptor acceptor(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    conn_.emplace(ioc_.get_executor(), model::UpstreamProtocol::Http);
    conn_->socket.connect(acceptor.local_endpoint());
    peer_ = acceptor.accept();
    ASSERT_TRUE(readiness_.watch(*conn_));
  }

  /// Reads once through Connection::read_some, running the loop for at most `limit`.
  /// nullopt: the read had not completed by then.
  std::optional<std::pair<boost::system::error_code, std::string>> read(
      size_t size, std::chrono::milliseconds limit = 2000ms) {
    std::optional<std::pair<boost::system::error_code, std::string>> out;
    std::string buf(size, '\0');
    asio::co_spawn(
        ioc_,
        [&]() -> asio::awaitable<void> {
          auto [ec, n] = co_await conn_->read_some(asio::buffer(buf));
          out.emplace(ec, buf.substr(0, n));
        },
        asio::detached);
    ioc_.restart();
    ioc_.run_for(limit);
    if (out) return out;
    // Timed out: end the read before `buf` and `out` go away, and report that it had not ended.
    conn_->cancel();
    ioc_.restart();
    ioc_.run_for(1000ms);
    return std::nullopt;
  }

  asio::io_context ioc_;
  Readiness readiness_{ioc_.get_executor()};
  std::optional<Connection> conn_;
  tcp::socket peer_{ioc_};
};

TEST_F(ReadinessTest, DataAndCloseTogetherEndTheStreamWithoutAnotherReport) {
  // The data and the FIN arrive while the socket is drained: one report announces both, so
  // after the data a read must find the end rather than wait for a report that never comes.
  asio::write(peer_, asio::buffer(std::string("a")));
  ASSERT_TRUE(read(4096));
  EXPECT_FALSE(conn_->has_input);
  asio::write(peer_, asio::buffer(std::string("until the end")));
  peer_.close();
  std::this_thread::sleep_for(20ms);
  auto first = read(4096);
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->first);
  EXPECT_EQ(first->second, "until the end");
  auto second = read(4096);
  ASSERT_TRUE(second) << "the read waited after the end of the stream";
  EXPECT_EQ(second->first, asio::error::eof);
}

TEST_F(ReadinessTest, DrainedSocketWaitsForInputThenReadsIt) {
  asio::write(peer_, asio::buffer(std::string("first")));
  auto first = read(4096);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->second, "first");
  EXPECT_FALSE(conn_->has_input);  // a short read drained it

  // Nothing to read: the read waits (and makes no progress) until the peer writes.
  std::string buf(4096, '\0');
  std::optional<std::string> got;
  asio::steady_timer later(ioc_);
  later.expires_after(50ms);
  later.async_wait([&](boost::system::error_code) {
    EXPECT_FALSE(got) << "the read completed before there was input";
    asio::write(peer_, asio::buffer(std::string("second")));
  });
  asio::co_spawn(
      ioc_,
      [&]() -> asio::awaitable<void> {
        auto [ec, n] = co_await conn_->read_some(asio::buffer(buf));
        EXPECT_FALSE(ec);
        got = buf.substr(0, n);
      },
      asio::detached);
  ioc_.restart();
  ioc_.run_for(2000ms);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, "second");
}

TEST_F(ReadinessTest, FullBufferReadsOnWithoutWaiting) {
  asio::write(peer_, asio::buffer(std::string(10, 'x')));
  std::this_thread::sleep_for(20ms);
  auto first = read(4);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->second, "xxxx");
  EXPECT_TRUE(conn_->has_input);  // the buffer filled up: more may be there
  auto second = read(4, 200ms);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->second, "xxxx");
  auto third = read(4, 200ms);
  ASSERT_TRUE(third);
  EXPECT_EQ(third->second, "xx");
}

TEST_F(ReadinessTest, CancelEndsAWaitingRead) {
  asio::write(peer_, asio::buffer(std::string("a")));
  ASSERT_TRUE(read(4096));  // drained now
  asio::steady_timer later(ioc_);
  later.expires_after(30ms);
  later.async_wait([&](boost::system::error_code) { conn_->cancel(); });
  auto r = read(4096);
  ASSERT_TRUE(r) << "cancel() did not end the wait";
  EXPECT_EQ(r->first, asio::error::operation_aborted);
  // The connection still works after a cancelled wait.
  asio::write(peer_, asio::buffer(std::string("b")));
  auto after = read(4096);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->second, "b");
}

TEST_F(ReadinessTest, ResetWakesAWaitingRead) {
  asio::write(peer_, asio::buffer(std::string("a")));
  ASSERT_TRUE(read(4096));
  asio::steady_timer later(ioc_);
  later.expires_after(30ms);
  later.async_wait([&](boost::system::error_code) {
    peer_.set_option(asio::socket_base::linger(true, 0));  // close with a reset
    peer_.close();
  });
  auto r = read(4096);
  ASSERT_TRUE(r) << "a reset did not wake the read";
  EXPECT_TRUE(r->first);
}

}  // namespace
}  // namespace kedge::upstream
