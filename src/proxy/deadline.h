#pragma once

#include "proxy/limits.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>

namespace kedge::upstream {
struct Connection;
}

namespace kedge::proxy {

/// What a connection or stream waits for; each wait has its own timeout.
enum class Phase : uint8_t {
  Idle,
  ClientHeader,
  ClientBody,
  ClientSend,
  Connect,
  UpstreamSend,
  UpstreamRead,
  Linger
};

/// The one timer of an HTTP/1.1 connection or an HTTP/2 stream. arm() sets the deadline of the
/// phase that begins; when it passes, run() cancels the sockets being waited on, so the pending
/// operation ends with an error that expired() explains. Arming costs no system call unless it
/// moves the deadline earlier, so the request path re-arms freely.
/// Thread: owning worker only. Owner: the session (or stream) whose waits it bounds.
class Deadline {
 public:
  /// `downstream`: the client socket to cancel too (nullptr for an HTTP/2 stream).
  Deadline(const boost::asio::any_io_executor& executor, boost::asio::ip::tcp::socket* downstream);
  void arm(Phase phase, Millis timeout);
  Phase phase() const { return phase_; }
  bool expired(Phase phase) const { return fired_ && fired_phase_ == phase; }
  /// The upstream connection whose operations the deadline also cuts (nullptr: none).
  void watch(upstream::Connection* upstream) { upstream_ = upstream; }
  upstream::Connection* watched() const { return upstream_; }
  /// Runs until stop(); meant to be awaited alongside the work it bounds.
  boost::asio::awaitable<void> run();
  void stop();

 private:
  using Clock = std::chrono::steady_clock;
  boost::asio::steady_timer timer_;
  boost::asio::ip::tcp::socket* downstream_;
  upstream::Connection* upstream_ = nullptr;
  Clock::time_point deadline_ = Clock::time_point::max();
  Clock::time_point armed_ = Clock::time_point::max();
  Phase phase_ = Phase::Idle;
  Phase fired_phase_ = Phase::Idle;
  bool fired_ = false;
  bool stopped_ = false;
};

}  // namespace kedge::proxy
