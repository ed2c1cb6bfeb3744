#pragma once

#include "common/readiness.h"
#include "common/send_now.h"
#include "model/snapshot.h"
#include "tls/stream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>

namespace kedge::proxy {

/// The client side of a connection: a plain TCP socket, or TLS over one. Keeps the client's
/// address (as accept() gave it), what the TLS handshake decided (SNI name, certificate) and the
/// snapshot that decided it.
/// Thread: owning worker only. Owner: the HttpSession.
class DownstreamStream {
 public:
  using Tls = tls::Stream;
  using IoResult = kedge::IoResult;

  DownstreamStream(boost::asio::ip::tcp::socket socket, boost::asio::ip::tcp::endpoint peer)
      : plain_(std::move(socket)), peer_(std::move(peer)) {}
  DownstreamStream(std::unique_ptr<Tls> tls, boost::asio::ip::tcp::endpoint peer,
                   std::string server_name, model::SnapshotConstPtr handshake_snapshot)
      : plain_(tls->socket().get_executor()),
        peer_(std::move(peer)),
        tls_(std::move(tls)),
        server_name_(std::move(server_name)),
        handshake_snapshot_(std::move(handshake_snapshot)) {}

  boost::asio::ip::tcp::socket& socket() { return tls_ ? tls_->socket() : plain_; }
  const boost::asio::ip::tcp::endpoint& peer() const { return peer_; }
  bool is_tls() const { return tls_ != nullptr; }
  /// The SNI name the client sent ("" without SNI or without TLS).
  const std::string& server_name() const { return server_name_; }
  const model::Snapshot* handshake_snapshot() const { return handshake_snapshot_.get(); }

  /// Bytes already read from a plain connection (by the HTTP/1.1 session that found the HTTP/2
  /// preface), handed out by the next reads before the socket's.
  void unread(std::string_view bytes) { pending_.insert(0, bytes); }

  boost::asio::awaitable<IoResult> read_some(boost::asio::mutable_buffer buffer) {
    constexpr auto t = boost::asio::as_tuple(boost::asio::use_awaitable);
    if (!pending_.empty()) {
      size_t n = std::min(buffer.size(), pending_.size());
      std::memcpy(buffer.data(), pending_.data(), n);
      pending_.erase(0, n);
      co_return IoResult{boost::system::error_code(), n};
    }
    if (tls_) co_return co_await tls_->read_some(buffer);  // its socket is watched for its end only
    if (input_) co_return co_await read_watched(plain_, *input_, buffer);
    co_return co_await plain_.async_read_some(buffer, t);
  }
  /// From now on, the worker's `readiness` set watches the connection: a plain one's reads
  /// wait for it to report input once a read drained the socket (a keep-alive client's next
  /// request costs no recv that would block), and report_end() works.
  /// `fresh`: the connection was just accepted, and has no input until the set reports some.
  void watch(Readiness& readiness, bool fresh = false) {
    if (input_) return;
    input_ = std::make_unique<WatchedInput>(plain_.get_executor());
    input_->has_input = !fresh;
    if (!readiness.watch(socket().native_handle(), *input_)) input_.reset();
  }
  /// Waits, reading nothing, until the watched client sends something or leaves (true), for at
  /// most `timeout`. An unwatched one counts as having sent something.
  boost::asio::awaitable<bool> wait_input(std::chrono::milliseconds timeout) {
    if (!input_) co_return true;
    co_return co_await wait_watched(*input_, timeout);
  }
  /// See Readiness::report_end(); nothing while the connection is not watched.
  void report_end(void (*fn)(void*), void* arg) {
    if (input_) input_->readiness->report_end(*input_, fn, arg);
  }
  void stop_end_report() {
    if (input_) input_->readiness->stop_end_report(*input_);
  }
  /// Ends the operations in progress (they complete with operation_aborted).
  void cancel() {
    boost::system::error_code ignored;
    socket().cancel(ignored);
    if (input_) cancel_watched(*input_);
  }
  boost::asio::awaitable<IoResult> write(boost::asio::const_buffer buffer) {
    constexpr auto t = boost::asio::as_tuple(boost::asio::use_awaitable);
    if (tls_) co_return co_await tls_->write(buffer);
    if (input_ && sends_batched(*input_)) co_return co_await send_watched(plain_, *input_, buffer);
    auto [ec, done] = send_now(plain_.native_handle(), buffer);
    if (ec || done == buffer.size()) co_return IoResult{ec, done};
    auto [wec, n] = co_await boost::asio::async_write(plain_, buffer + done, t);
    co_return IoResult{wec, done + n};
  }

 private:
  boost::asio::ip::tcp::socket plain_;
  boost::asio::ip::tcp::endpoint peer_;
  std::string pending_;
  std::unique_ptr<WatchedInput> input_;  // where it is stable when the stream moves
  std::unique_ptr<Tls> tls_;
  std::string server_name_;
  model::SnapshotConstPtr handshake_snapshot_;
};

}  // namespace kedge::proxy
