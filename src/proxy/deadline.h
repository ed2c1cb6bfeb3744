#pragma once

#include "proxy/limits.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>

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
/// phase that begins; once started, when it passes, the sockets being waited on are cancelled, so
/// the pending operation ends with an error that expired() explains. Arming costs no system call
/// unless it moves the deadline earlier, so the request path re-arms freely. The timer's handler
/// is a plain callback, not a coroutine beside the work (an HTTP/2 stream pays for one timer, not
/// for a parallel group of two coroutines).
/// Thread: owning worker only. Owner: the session (or stream) whose waits it bounds.
class Deadline {
 public:
  /// `downstream`: the client socket to cancel too (nullptr for an HTTP/2 stream).
  Deadline(const boost::asio::any_io_executor& executor, boost::asio::ip::tcp::socket* downstream);
  ~Deadline() { stop(); }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  void arm(Phase phase, Millis timeout);
  Phase phase() const { return s_->phase; }
  bool expired(Phase phase) const { return s_->fired && s_->fired_phase == phase; }
  /// The upstream connection whose operations the deadline also cuts (nullptr: none).
  void watch(upstream::Connection* upstream) { s_->upstream = upstream; }
  upstream::Connection* watched() const { return s_->upstream; }
  /// Enforces the deadline from now until stop() (or destruction).
  void start();
  void stop();

 private:
  using Clock = std::chrono::steady_clock;
  /// Shared with the pending timer handler, which may run after the Deadline is gone.
  struct State {
    explicit State(const boost::asio::any_io_executor& executor) : timer(executor) {}
    boost::asio::steady_timer timer;
    boost::asio::ip::tcp::socket* downstream = nullptr;
    upstream::Connection* upstream = nullptr;
    Clock::time_point deadline = Clock::time_point::max();
    Clock::time_point armed = Clock::time_point::max();
    Phase phase = Phase::Idle;
    Phase fired_phase = Phase::Idle;
    bool fired = false;
    bool stopped = false;
  };
  static void wait(std::shared_ptr<State> s);
  std::shared_ptr<State> s_;
};

}  // namespace kedge::proxy
