// tls::Stream, the server side of TLS that kedge's listeners use, against asio's client.
#include "tls/stream.h"
#include "tls/server_context.h"

#include <gtest/gtest.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <string>

namespace kedge::tls {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

std::string pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7 % 251);
  return s;
}

/// A connected pair: kedge's server stream and an asio TLS client.
struct Pair {
  asio::io_context io;
  ServerContextConstPtr cert;
  asio::ssl::context client_ctx{asio::ssl::context::tls_client};
  std::unique_ptr<Stream> server;
  std::unique_ptr<asio::ssl::stream<tcp::socket>> client;

  Pair() {
    auto pem = make_self_signed({"stream.test"});
    auto made = ServerContext::from_pem(pem.cert, pem.key, "test");
    EXPECT_TRUE(made.has_value());
    cert = *made;
    tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    tcp::socket c(io);
    c.connect(acceptor.local_endpoint());
    server = std::make_unique<Stream>(acceptor.accept(), cert->native());
    client_ctx.set_verify_mode(asio::ssl::verify_none);
    client = std::make_unique<asio::ssl::stream<tcp::socket>>(std::move(c), client_ctx);
  }

  /// Runs both sides to completion (bounded: a hang fails the test instead of the run).
  void run(asio::awaitable<void> server_side, asio::awaitable<void> client_side) {
    asio::co_spawn(io, std::move(server_side), asio::detached);
    asio::co_spawn(io, std::move(client_side), asio::detached);
    io.run_for(std::chrono::seconds(20));
    EXPECT_TRUE(io.stopped()) << "did not finish";
  }
};

TEST(TlsStream, HandshakeThenBytesBothWaysIntact) {
  Pair p;
  const std::string request = pattern(100'000, 'a');
  std::string received, echoed;
  p.run(
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.server->handshake());
        char buf[4096];
        while (received.size() < request.size()) {
          auto [ec, n] = co_await p.server->read_some(asio::buffer(buf));
          if (ec) break;
          received.append(buf, n);
        }
        auto [ec, n] = co_await p.server->write(asio::buffer(received));
        EXPECT_FALSE(ec);
        EXPECT_EQ(n, received.size());
      }(),
      [&]() -> asio::awaitable<void> {
        auto [hec] = co_await p.client->async_handshake(asio::ssl::stream_base::client, kUseTuple);
        EXPECT_FALSE(hec) << hec.message();
        co_await asio::async_write(*p.client, asio::buffer(request), kUseTuple);
        echoed.resize(request.size());
        auto [ec, n] = co_await asio::async_read(*p.client, asio::buffer(echoed), kUseTuple);
        EXPECT_FALSE(ec) << ec.message();
      }());
  EXPECT_EQ(received, request);
  EXPECT_EQ(echoed, request);
}

TEST(TlsStream, ConcurrentReadAndWriteKeepBothStreamsWhole) {
  // HTTP/2 reads and writes one stream at once: the writes must not interleave or get lost.
  Pair p;
  const std::string up = pattern(2'000'000, 'u'), down = pattern(2'000'000, 'd');
  std::string server_got, client_got;
  int done = 0;
  auto server_reader = [&]() -> asio::awaitable<void> {
    char buf[16384];
    while (server_got.size() < up.size()) {
      auto [ec, n] = co_await p.server->read_some(asio::buffer(buf));
      if (ec) break;
      server_got.append(buf, n);
    }
    ++done;
  };
  auto server_writer = [&]() -> asio::awaitable<void> {
    for (size_t at = 0; at < down.size(); at += 10'000) {  // many small writes
      auto [ec, n] = co_await p.server->write(asio::buffer(down.data() + at, 10'000));
      if (ec) break;
    }
    ++done;
  };
  p.run(
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.server->handshake());
        auto ex = co_await asio::this_coro::executor;
        asio::co_spawn(ex, server_reader(), asio::detached);
        asio::co_spawn(ex, server_writer(), asio::detached);
      }(),
      [&]() -> asio::awaitable<void> {
        co_await p.client->async_handshake(asio::ssl::stream_base::client, kUseTuple);
        auto ex = co_await asio::this_coro::executor;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
              co_await asio::async_write(*p.client, asio::buffer(up), kUseTuple);
            },
            asio::detached);
        client_got.resize(down.size());
        co_await asio::async_read(*p.client, asio::buffer(client_got), kUseTuple);
      }());
  EXPECT_EQ(done, 2);
  EXPECT_TRUE(server_got == up) << server_got.size();
  EXPECT_TRUE(client_got == down);
}

/// Writes `down` in writes of `chunk` bytes to a client that waits before it reads, over small
/// socket buffers: the socket takes part of what is sent or none of it, and the rest must be
/// queued and sent, in order, once the client reads.
void slow_reader_gets_it_whole_and_in_order(const std::string& down, size_t chunk) {
  Pair p;
  std::string client_got;
  size_t written_before_reading = 0, written = 0;
  p.server->socket().set_option(asio::socket_base::send_buffer_size(8192));
  p.client->next_layer().set_option(asio::socket_base::receive_buffer_size(8192));
  p.run(
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.server->handshake());
        for (size_t at = 0; at < down.size(); at += chunk) {
          size_t len = std::min<size_t>(chunk, down.size() - at);
          auto [ec, n] = co_await p.server->write(asio::buffer(down.data() + at, len));
          EXPECT_FALSE(ec) << ec.message();
          if (ec) break;
          written += n;
        }
      }(),
      [&]() -> asio::awaitable<void> {
        co_await p.client->async_handshake(asio::ssl::stream_base::client, kUseTuple);
        asio::steady_timer pause(co_await asio::this_coro::executor,
                                 std::chrono::milliseconds(200));
        co_await pause.async_wait(kUseTuple);
        written_before_reading = written;
        client_got.resize(down.size());
        auto [ec, n] = co_await asio::async_read(*p.client, asio::buffer(client_got), kUseTuple);
        EXPECT_FALSE(ec) << ec.message();
      }());
  EXPECT_LT(written_before_reading, down.size() / 4) << "the socket never filled";
  EXPECT_EQ(written, down.size());
  EXPECT_TRUE(client_got == down);
}

TEST(TlsStream, RecordsTheSocketCannotTakeYetStayWholeAndInOrder) {
  // Writes of one record each: the BIO sends each record from OpenSSL's buffer.
  slow_reader_gets_it_whole_and_in_order(pattern(1'000'000, 'w'), 7'000);
}

TEST(TlsStream, LongWritesTheSocketCannotTakeYetStayWholeAndInOrder) {
  // Writes of several records each: they are collected, sent as far as the socket takes them,
  // and the rest through asio.
  slow_reader_gets_it_whole_and_in_order(pattern(1'000'000, 'l'), 40'000);
}

TEST(TlsStream, WritesAfterThePeerResetFail) {
  Pair p;
  const std::string chunk = pattern(10'000, 'r');
  boost::system::error_code write_ec;
  int writes = 0;
  p.run(
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.server->handshake());
        char buf[1];
        co_await p.server->read_some(asio::buffer(buf));  // the client's one byte: it resets next
        asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
        co_await pause.async_wait(kUseTuple);
        while (writes < 1000 && !write_ec) {
          auto [ec, n] = co_await p.server->write(asio::buffer(chunk));
          write_ec = ec;
          ++writes;
        }
      }(),
      [&]() -> asio::awaitable<void> {
        co_await p.client->async_handshake(asio::ssl::stream_base::client, kUseTuple);
        co_await asio::async_write(*p.client, asio::buffer("x", 1), kUseTuple);
        tcp::socket& raw = p.client->next_layer();
        raw.set_option(asio::socket_base::linger(true, 0));  // close with a reset
        raw.close();
      }());
  EXPECT_TRUE(write_ec) << "1000 writes to a reset connection succeeded";
  EXPECT_LE(writes, 3) << "the reset is seen by the first write after it, or the next";
}

/// The server's first read after the handshake, while the client, once its own handshake is
/// done, does `then` to the connection.
template <class Then>
boost::system::error_code first_read_while(Then then) {
  Pair p;
  boost::system::error_code read_ec;
  p.run(
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.server->handshake());
        char buf[64];
        auto [ec, n] = co_await p.server->read_some(asio::buffer(buf));
        read_ec = ec;
        p.server->socket().close();  // a client shutdown waits for the peer to go
      }(),
      [&]() -> asio::awaitable<void> {
        co_await p.client->async_handshake(asio::ssl::stream_base::client, kUseTuple);
        co_await then(*p.client);
      }());
  return read_ec;
}

TEST(TlsStream, CloseNotifyIsEndOfStream) {
  auto ec = first_read_while([](asio::ssl::stream<tcp::socket>& c) -> asio::awaitable<void> {
    co_await c.async_shutdown(kUseTuple);
  });
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
}

TEST(TlsStream, PeerGoneMidStreamIsAnError) {
  auto ec = first_read_while([](asio::ssl::stream<tcp::socket>& c) -> asio::awaitable<void> {
    c.next_layer().close();  // no close_notify
    co_return;
  });
  EXPECT_TRUE(ec);
}

/// Sends `bytes` where a ClientHello should be; the server's handshake result and all it sent
/// back before closing.
std::pair<boost::system::error_code, std::string> handshake_against(std::string_view bytes) {
  Pair p;
  boost::system::error_code handshake_ec;
  std::string answer;
  p.run(
      [&]() -> asio::awaitable<void> {
        handshake_ec = co_await p.server->handshake();
        p.server->socket().close();
      }(),
      [&]() -> asio::awaitable<void> {
        tcp::socket& raw = p.client->next_layer();
        co_await asio::async_write(raw, asio::buffer(bytes), kUseTuple);
        char buf[256];
        while (true) {
          auto [ec, n] = co_await raw.async_read_some(asio::buffer(buf), kUseTuple);
          if (ec) break;
          answer.append(buf, n);
        }
      }());
  return {handshake_ec, answer};
}

TEST(TlsStream, AMalformedHelloFailsTheHandshakeWithAnAlert) {
  // A handshake record holding a ClientHello too short to be one.
  const char hello[] = {0x16, 0x03, 0x01,   0x00,   0x08,   0x01,  0x00,
                        0x00, 0x04, '\xff', '\xff', '\xff', '\xff'};
  auto [ec, answer] = handshake_against(std::string_view(hello, sizeof hello));
  EXPECT_TRUE(ec);
  ASSERT_FALSE(answer.empty());
  EXPECT_EQ(static_cast<unsigned char>(answer[0]), 21) << "a TLS alert record";
}

TEST(TlsStream, NotTlsFailsTheHandshake) {
  auto [ec, answer] = handshake_against("GET / HTTP/1.1\r\nHost: stream.test\r\n\r\n");
  EXPECT_TRUE(ec);
  EXPECT_EQ(answer.find("HTTP"), std::string::npos) << "nothing but TLS goes back";
}

}  // namespace
}  // namespace kedge::tls
