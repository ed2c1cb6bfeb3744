#pragma once

#include "proxy/limits.h"

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace kedge::upstream {
struct Connection;
}

namespace kedge::proxy {

class DownstreamStream;

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

class Deadline;

/// The one timer of a worker, behind the deadlines of all its connections and streams: it is
/// set for the earliest of them. A deadline moved later costs nothing; one moved earlier than
/// that resets the timer. When the timer fires, every deadline that passed fires, and the
/// timer is set for the earliest of the rest. So a request adds no timer operation, no
/// allocation and no system call, however many phases it arms.
/// Thread: owning worker only; its io_context must not run handlers once the queue is gone.
/// Owner: WorkerContext.
class DeadlineQueue {
 public:
  explicit DeadlineQueue(const boost::asio::any_io_executor& executor) : timer_(executor) {}
  ~DeadlineQueue();  // deadlines still started stop
  DeadlineQueue(const DeadlineQueue&) = delete;
  DeadlineQueue& operator=(const DeadlineQueue&) = delete;
  size_t started() const { return started_; }

 private:
  friend class Deadline;
  using Clock = std::chrono::steady_clock;
  void add(Deadline& d);
  void remove(Deadline& d);
  /// The timer fires by `t`.
  void wake_by(Clock::time_point t) {
    if (t < wake_) reset(t);
  }
  void reset(Clock::time_point t);
  void expire();

  boost::asio::steady_timer timer_;
  Clock::time_point wake_ = Clock::time_point::max();  // when the timer fires (max: idle)
  Deadline* head_ = nullptr;                           // the started deadlines
  size_t started_ = 0;
};

/// The deadline of an HTTP/1.1 connection or an HTTP/2 stream. arm() sets the deadline of the
/// phase that begins; once started, when it passes, the sockets being waited on are cancelled,
/// so the pending operation ends with an error that expired() explains.
/// Thread: owning worker only. Owner: the session (or stream) whose waits it bounds.
class Deadline {
 public:
  /// `downstream`: the client connection to cancel too (nullptr for an HTTP/2 stream).
  Deadline(DeadlineQueue& queue, DownstreamStream* downstream)
      : queue_(&queue), downstream_(downstream) {}
  ~Deadline() { stop(); }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  void arm(Phase phase, Millis timeout) {
    phase_ = phase;
    fired_ = false;
    at_ = Clock::now() + timeout;
    if (started_) queue_->wake_by(at_);
  }
  Phase phase() const { return phase_; }
  bool expired(Phase phase) const { return fired_ && fired_phase_ == phase; }
  /// The upstream connection whose operations the deadline also cuts (nullptr: none).
  void watch(upstream::Connection* upstream) { upstream_ = upstream; }
  upstream::Connection* watched() const { return upstream_; }
  /// The owner gives up on the exchange (its client left): the watched upstream's operations
  /// end, and no attempt follows. What they end with says nothing of the endpoint.
  void abandon();
  bool abandoned() const { return abandoned_; }
  /// Enforces the deadline from now until stop() (or destruction).
  void start();
  void stop();

 private:
  friend class DeadlineQueue;
  using Clock = std::chrono::steady_clock;
  void fire(Clock::time_point now);

  DeadlineQueue* queue_;
  DownstreamStream* downstream_;
  upstream::Connection* upstream_ = nullptr;
  Clock::time_point at_ = Clock::time_point::max();
  Phase phase_ = Phase::Idle;
  Phase fired_phase_ = Phase::Idle;
  bool fired_ = false;
  bool started_ = false;
  bool abandoned_ = false;
  Deadline* prev_ = nullptr;  // in the queue, while started
  Deadline* next_ = nullptr;
};

}  // namespace kedge::proxy
