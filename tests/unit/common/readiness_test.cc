#include "common/readiness.h"

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>

namespace kedge {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

/// A connected pair over loopback: `socket_` is the watched side, `peer_` the other. Each test
/// runs with the set's reads and sends batched through io_uring (true) and one by one (false).
class ReadinessTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam() && !readiness_.batching()) GTEST_SKIP() << "the kernel refuses io_uring here";
    tcp::acceptor acceptor(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    socket_.connect(acceptor.local_endpoint());
    peer_ = acceptor.accept();
    ASSERT_TRUE(readiness_.watch(socket_.native_handle(), input_));
  }

  /// Reads once through read_watched(), running the loop for at most `limit`.
  /// nullopt: the read had not completed by then.
  std::optional<std::pair<boost::system::error_code, std::string>> read(
      size_t size, std::chrono::milliseconds limit = 2000ms) {
    std::optional<std::pair<boost::system::error_code, std::string>> out;
    std::string buf(size, '\0');
    asio::co_spawn(
        ioc_,
        [&]() -> asio::awaitable<void> {
          auto [ec, n] = co_await read_watched(socket_, input_, asio::buffer(buf));
          out.emplace(ec, buf.substr(0, n));
        },
        asio::detached);
    ioc_.restart();
    ioc_.run_for(limit);
    if (out) return out;
    // Timed out: end the read before `buf` and `out` go away, and report that it had not ended.
    cancel_read(socket_, input_);
    ioc_.restart();
    ioc_.run_for(1000ms);
    return std::nullopt;
  }

  /// Sends once through send_watched(), running the loop for at most 2 s.
  std::optional<std::pair<boost::system::error_code, size_t>> send(const std::string& bytes) {
    std::optional<std::pair<boost::system::error_code, size_t>> out;
    asio::co_spawn(
        ioc_,
        [&]() -> asio::awaitable<void> {
          auto [ec, n] = co_await send_watched(socket_, input_, asio::buffer(bytes));
          out.emplace(ec, n);
        },
        asio::detached);
    ioc_.restart();
    ioc_.run_for(2000ms);
    return out;
  }

  /// What the peer has received so far.
  std::string received() {
    std::this_thread::sleep_for(20ms);
    std::string out(peer_.available(), '\0');
    if (!out.empty()) asio::read(peer_, asio::buffer(out));
    return out;
  }

  asio::io_context ioc_;
  Readiness readiness_{ioc_.get_executor(), GetParam()};
  tcp::socket socket_{ioc_};
  WatchedInput input_{ioc_.get_executor()};
  tcp::socket peer_{ioc_};
};

TEST_P(ReadinessTest, DataAndCloseTogetherEndTheStreamWithoutAnotherReport) {
  // The data and the FIN arrive while the socket is drained: one report announces both, so
  // after the data a read must find the end rather than wait for a report that never comes.
  asio::write(peer_, asio::buffer(std::string("a")));
  ASSERT_TRUE(read(4096));
  EXPECT_FALSE(input_.has_input);
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

TEST_P(ReadinessTest, DrainedSocketWaitsForInputThenReadsIt) {
  asio::write(peer_, asio::buffer(std::string("first")));
  auto first = read(4096);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->second, "first");
  EXPECT_FALSE(input_.has_input);  // a short read drained it

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
        auto [ec, n] = co_await read_watched(socket_, input_, asio::buffer(buf));
        EXPECT_FALSE(ec);
        got = buf.substr(0, n);
      },
      asio::detached);
  ioc_.restart();
  ioc_.run_for(2000ms);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, "second");
}

TEST_P(ReadinessTest, FullBufferReadsOnWithoutWaiting) {
  asio::write(peer_, asio::buffer(std::string(10, 'x')));
  std::this_thread::sleep_for(20ms);
  auto first = read(4);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->second, "xxxx");
  EXPECT_TRUE(input_.has_input);  // the buffer filled up: more may be there
  auto second = read(4, 200ms);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->second, "xxxx");
  auto third = read(4, 200ms);
  ASSERT_TRUE(third);
  EXPECT_EQ(third->second, "xx");
}

TEST_P(ReadinessTest, CancelEndsAWaitingRead) {
  asio::write(peer_, asio::buffer(std::string("a")));
  ASSERT_TRUE(read(4096));  // drained now
  asio::steady_timer later(ioc_);
  later.expires_after(30ms);
  later.async_wait([&](boost::system::error_code) { cancel_read(socket_, input_); });
  auto r = read(4096);
  ASSERT_TRUE(r) << "cancel() did not end the wait";
  EXPECT_EQ(r->first, asio::error::operation_aborted);
  // The connection still works after a cancelled wait.
  asio::write(peer_, asio::buffer(std::string("b")));
  auto after = read(4096);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->second, "b");
}

TEST_P(ReadinessTest, ResetWakesAWaitingRead) {
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

TEST_P(ReadinessTest, PeerEndWhileNoReadWaitsIsReportedOnce) {
  int ended = 0;
  readiness_.report_end(
      input_, [](void* arg) { ++*static_cast<int*>(arg); }, &ended);
  asio::write(peer_, asio::buffer(std::string("a")));  // input, no end: no report
  ioc_.run_for(50ms);
  EXPECT_EQ(ended, 0);
  peer_.shutdown(tcp::socket::shutdown_send);  // a client that leaves half-closes first
  ioc_.restart();
  ioc_.run_for(100ms);
  EXPECT_EQ(ended, 1) << "the peer's end went unreported";
  EXPECT_TRUE(input_.ended);
  peer_.close();
  ioc_.restart();
  ioc_.run_for(50ms);
  EXPECT_EQ(ended, 1) << "reported twice";
  // The input is still there to read, then the end.
  auto first = read(4096);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->second, "a");
  auto second = read(4096);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->first, asio::error::eof);
}

TEST_P(ReadinessTest, StoppedReportsCallNothing) {
  // A second watched socket whose end is reported keeps the set armed.
  tcp::acceptor acceptor(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket other(ioc_);
  other.connect(acceptor.local_endpoint());
  tcp::socket other_peer = acceptor.accept();
  WatchedInput other_input(ioc_.get_executor());
  ASSERT_TRUE(readiness_.watch(other.native_handle(), other_input));
  auto count = [](void* arg) { ++*static_cast<int*>(arg); };
  int ended = 0, other_ended = 0;
  readiness_.report_end(input_, count, &ended);
  readiness_.report_end(other_input, count, &other_ended);
  readiness_.stop_end_report(input_);
  peer_.close();
  ioc_.run_for(100ms);
  EXPECT_EQ(ended, 0);
  EXPECT_TRUE(input_.ended);  // the set did see it
  other_peer.close();
  ioc_.restart();
  ioc_.run_for(100ms);
  EXPECT_EQ(other_ended, 1);
}

TEST_P(ReadinessTest, SendsGoOutWholeAndInOrder) {
  EXPECT_EQ(readiness_.batching(), GetParam());
  auto first = send("GET / HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(first) << "the send never completed";
  EXPECT_FALSE(first->first);
  EXPECT_EQ(first->second, 18u);
  auto second = send(std::string(100'000, 'b'));  // more than one batch of the socket may take
  ASSERT_TRUE(second);
  EXPECT_FALSE(second->first);
  EXPECT_EQ(second->second, 100'000u);
  std::string got;
  while (got.size() < 18 + 100'000) {
    std::string more(65536, '\0');
    more.resize(peer_.read_some(asio::buffer(more)));
    got += more;
  }
  EXPECT_EQ(got, "GET / HTTP/1.1\r\n\r\n" + std::string(100'000, 'b'));
}

/// A second watched pair beside the fixture's, and a round of the set that wakes a read on
/// each: what a busy worker's round looks like. `after_first` runs in the first read's
/// coroutine once it has read, then `after_second` in the second's.
class ReadinessRoundTest : public ReadinessTest {
 protected:
  void SetUp() override {
    ReadinessTest::SetUp();
    if (IsSkipped()) return;
    tcp::acceptor acceptor(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    socket2_.connect(acceptor.local_endpoint());
    peer2_ = acceptor.accept();
    ASSERT_TRUE(readiness_.watch(socket2_.native_handle(), input2_));
    // Drain both, so that the next reads park in the set.
    asio::write(peer_, asio::buffer(std::string("a")));
    asio::write(peer2_, asio::buffer(std::string("a")));
    ASSERT_TRUE(read(16));
    char b[16];
    EXPECT_EQ(socket2_.read_some(asio::buffer(b)), 1u);
    input2_.has_input = false;
  }

  void round(std::function<asio::awaitable<void>()> after_first,
             std::function<asio::awaitable<void>()> after_second) {
    std::string buf1(64, '\0'), buf2(64, '\0');
    int reads = 0;
    auto read_then = [&](tcp::socket& socket, WatchedInput& input, std::string& buf,
                         std::function<asio::awaitable<void>()>& after) {
      asio::co_spawn(
          ioc_,
          [&]() -> asio::awaitable<void> {
            auto [ec, n] = co_await read_watched(socket, input, asio::buffer(buf));
            EXPECT_FALSE(ec);
            ++reads;
            co_await after();
          },
          asio::detached);
    };
    read_then(socket_, input_, buf1, after_first);
    read_then(socket2_, input2_, buf2, after_second);
    ioc_.restart();
    ioc_.run_for(100ms);  // both reads park
    asio::write(peer_, asio::buffer(std::string("request 1")));
    asio::write(peer2_, asio::buffer(std::string("request 2")));
    std::this_thread::sleep_for(20ms);  // both arrive before the set looks
    ioc_.restart();
    ioc_.run_for(500ms);
    EXPECT_EQ(reads, 2);
  }

  tcp::socket socket2_{ioc_};
  WatchedInput input2_{ioc_.get_executor()};
  tcp::socket peer2_{ioc_};
};

TEST_P(ReadinessRoundTest, SendsOfARoundThatWokeSeveralReadsGoOutTogether) {
  std::optional<boost::system::error_code> sent1, sent2;
  bool queued_together = false;
  const std::string reply1 = "reply 1", reply2 = "reply 2";
  round(
      [&]() -> asio::awaitable<void> {
        auto [ec, n] = co_await send_watched(socket_, input_, asio::buffer(reply1));
        sent1 = ec;
      },
      [&]() -> asio::awaitable<void> {
        queued_together = input_.sending;  // the first reply waits for the round's end
        auto [ec, n] = co_await send_watched(socket2_, input2_, asio::buffer(reply2));
        sent2 = ec;
      });
  ASSERT_TRUE(sent1 && sent2);
  EXPECT_FALSE(*sent1);
  EXPECT_FALSE(*sent2);
  EXPECT_EQ(queued_together, GetParam()) << "batched sends went one by one, or the reverse";
  EXPECT_EQ(received(), reply1);
  std::this_thread::sleep_for(20ms);
  std::string got2(peer2_.available(), '\0');
  asio::read(peer2_, asio::buffer(got2));
  EXPECT_EQ(got2, reply2);
  // Outside such a round a send goes at once, as it does one by one.
  auto alone = send("alone");
  ASSERT_TRUE(alone);
  EXPECT_FALSE(alone->first);
  EXPECT_EQ(received(), "alone");
}

TEST_P(ReadinessRoundTest, SendCancelledBeforeTheRoundEndsSendsNothingAndSaysSo) {
  // A first send completes, so a stale result is there to be mistaken for the next one's.
  ASSERT_TRUE(send("one"));
  ASSERT_EQ(received(), "one");
  std::optional<boost::system::error_code> result;
  bool was_queued = false;
  const std::string two = "two";
  // The first coroutine's send is queued, then the second cancels it before the round ends,
  // as a deadline or a client that leaves does.
  round(
      [&]() -> asio::awaitable<void> {
        auto [ec, n] = co_await send_watched(socket_, input_, asio::buffer(two));
        result = ec;
      },
      [&]() -> asio::awaitable<void> {
        was_queued = input_.sending;
        cancel_watched(input_);
        co_return;
      });
  ASSERT_TRUE(result) << "the cancelled send never completed";
  if (GetParam()) {
    ASSERT_TRUE(was_queued) << "the cancel came after the round's end: nothing was tested";
    EXPECT_EQ(*result, asio::error::operation_aborted);
    EXPECT_EQ(received(), "");
  } else {  // sent at once, before the cancel
    EXPECT_FALSE(*result);
    EXPECT_EQ(received(), "two");
  }
  // The socket still sends afterwards.
  auto after = send("three");
  ASSERT_TRUE(after);
  EXPECT_FALSE(after->first);
  EXPECT_EQ(received(), "three");
}

TEST_P(ReadinessTest, SendToAPeerThatResetReportsTheError) {
  peer_.set_option(asio::socket_base::linger(true, 0));
  peer_.close();
  std::this_thread::sleep_for(20ms);
  auto r = send("late");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->first) << "a send to a reset connection reported success";
}

INSTANTIATE_TEST_SUITE_P(Batched, ReadinessTest, ::testing::Bool(),
                         [](const auto& p) { return p.param ? "IoUring" : "OneByOne"; });
INSTANTIATE_TEST_SUITE_P(Batched, ReadinessRoundTest, ::testing::Bool(),
                         [](const auto& p) { return p.param ? "IoUring" : "OneByOne"; });

TEST(ReadinessWait, FreshSocketReportsInputAlreadyThereAndTimesOutWithoutIt) {
  asio::io_context ioc;
  Readiness readiness(ioc.get_executor());
  tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket quiet(ioc), quiet_peer(ioc), busy(ioc), busy_peer(ioc);
  quiet_peer.connect(acceptor.local_endpoint());
  quiet = acceptor.accept();
  busy_peer.connect(acceptor.local_endpoint());
  busy = acceptor.accept();
  asio::write(busy_peer, asio::buffer(std::string("GET /")));  // before the watch begins
  std::this_thread::sleep_for(20ms);
  WatchedInput quiet_input(ioc.get_executor()), busy_input(ioc.get_executor());
  quiet_input.has_input = busy_input.has_input = false;  // fresh: known only from reports
  ASSERT_TRUE(readiness.watch(quiet.native_handle(), quiet_input));
  ASSERT_TRUE(readiness.watch(busy.native_handle(), busy_input));
  std::optional<bool> quiet_got, busy_got;
  auto t0 = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration quiet_took{};
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        quiet_got = co_await wait_watched(quiet_input, 100ms);
        quiet_took = std::chrono::steady_clock::now() - t0;
      },
      asio::detached);
  asio::co_spawn(
      ioc, [&]() -> asio::awaitable<void> { busy_got = co_await wait_watched(busy_input, 5000ms); },
      asio::detached);
  ioc.run_for(1000ms);
  ASSERT_TRUE(busy_got) << "input already there was not reported";
  EXPECT_TRUE(*busy_got);
  ASSERT_TRUE(quiet_got);
  EXPECT_FALSE(*quiet_got);
  EXPECT_GE(quiet_took, 90ms);
  // Nothing was read: the bytes are still there.
  char b[16];
  EXPECT_EQ(busy.read_some(asio::buffer(b)), 5u);
}

}  // namespace
}  // namespace kedge
