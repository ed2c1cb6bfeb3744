#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/system/error_code.hpp>

namespace kedge::upstream {

struct Connection;

/// Knows which plain upstream sockets have unread input, the way nginx does: a socket is drained
/// after a read that came back short or would block, and has input again when an edge-triggered
/// epoll set of its own reports an arrival. A read on a drained socket waits for that report.
///
/// Asio's reactor cannot do this: it tries every read at once (on a socket whose answer has not
/// come yet, a recv that fails), or re-arms the descriptor with epoll_ctl to wait. Either costs a
/// system call for nearly every response. This set costs one epoll_ctl and one epoll_wait per
/// round of the worker's event loop, however many sockets it reports.
/// Thread: owning worker only. Owner: Upstreams.
class Readiness {
 public:
  explicit Readiness(boost::asio::any_io_executor executor);
  Readiness(const Readiness&) = delete;
  Readiness& operator=(const Readiness&) = delete;

  /// Watches `c`'s socket until it is closed. False if the kernel refused: `c` then reads
  /// through asio alone.
  bool watch(Connection& c);
  /// A read on `c`'s drained socket is about to wait on `c.input_wait` until the socket has
  /// input or an error. The read waits itself (no coroutine of the set's own per wait), and the
  /// wait ends early when cancelled (Connection::cancel(), or the awaiting operation's
  /// cancellation slot).
  void park(Connection& c);
  /// After that wait: success if the socket has input, operation_aborted if cancelled.
  boost::system::error_code unpark(Connection& c);

 private:
  void arm();
  void collect();

  boost::asio::posix::stream_descriptor set_;  // the epoll set, watched by the worker's reactor
  bool armed_ = false;
  size_t waiting_ = 0;
};

}  // namespace kedge::upstream
