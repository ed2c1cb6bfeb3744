#pragma once

#include "model/snapshot.h"
#include "tls/stream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <memory>
#include <string>
#include <tuple>

namespace kedge::proxy {

/// The client side of a connection: a plain TCP socket, or TLS over one. Keeps what the TLS
/// handshake decided (SNI name, certificate) and the snapshot that decided it.
/// Thread: owning worker only. Owner: the HttpSession.
class DownstreamStream {
 public:
  using Tls = tls::Stream;
  using IoResult = std::tuple<boost::system::error_code, size_t>;

  explicit DownstreamStream(boost::asio::ip::tcp::socket socket) : plain_(std::move(socket)) {}
  DownstreamStream(std::unique_ptr<Tls> tls, std::string server_name,
                   model::SnapshotConstPtr handshake_snapshot)
      : plain_(tls->socket().get_executor()),
        tls_(std::move(tls)),
        server_name_(std::move(server_name)),
        handshake_snapshot_(std::move(handshake_snapshot)) {}

  boost::asio::ip::tcp::socket& socket() { return tls_ ? tls_->socket() : plain_; }
  bool is_tls() const { return tls_ != nullptr; }
  /// The SNI name the client sent ("" without SNI or without TLS).
  const std::string& server_name() const { return server_name_; }
  const model::Snapshot* handshake_snapshot() const { return handshake_snapshot_.get(); }

  boost::asio::awaitable<IoResult> read_some(boost::asio::mutable_buffer buffer) {
    constexpr auto t = boost::asio::as_tuple(boost::asio::use_awaitable);
    if (tls_) co_return co_await tls_->read_some(buffer);
    co_return co_await plain_.async_read_some(buffer, t);
  }
  boost::asio::awaitable<IoResult> write(boost::asio::const_buffer buffer) {
    constexpr auto t = boost::asio::as_tuple(boost::asio::use_awaitable);
    if (tls_) co_return co_await tls_->write(buffer);
    co_return co_await boost::asio::async_write(plain_, buffer, t);
  }

 private:
  boost::asio::ip::tcp::socket plain_;
  std::unique_ptr<Tls> tls_;
  std::string server_name_;
  model::SnapshotConstPtr handshake_snapshot_;
};

}  // namespace kedge::proxy
