#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <tuple>

namespace kedge {

class Readiness;

/// What a Readiness set knows of one socket's input, and where a read of it waits for more.
/// Thread: owning worker only. Owner: whoever owns the socket, for as long as it is open.
struct WatchedInput {
  explicit WatchedInput(const boost::asio::any_io_executor& executor) : wait(executor) {}
  WatchedInput(const WatchedInput&) = delete;
  WatchedInput& operator=(const WatchedInput&) = delete;

  Readiness* readiness = nullptr;       // nullptr: not watched, reads go through asio alone
  bool has_input = true;                // as far as `readiness` knows (unknown counts as input)
  bool ended = false;                   // the peer closed or reset: reads go on until they say so
  bool awaiting = false;                // a read waits on `wait`
  boost::asio::steady_timer wait;       // what a read waiting for input is parked on
  void (*on_end)(void* arg) = nullptr;  // see Readiness::report_end()
  void* on_end_arg = nullptr;
};

using ReadResult = std::tuple<boost::system::error_code, size_t>;

/// One read of `socket` into `buffer`, as asio's async_read_some: through `input`'s set when
/// the socket is watched, so that a drained socket waits for a report instead of trying a recv
/// that would block. The wait ends early when cancel_read() is called (or the awaiting
/// operation's cancellation slot fires), with operation_aborted.
boost::asio::awaitable<ReadResult> read_watched(boost::asio::ip::tcp::socket& socket,
                                                WatchedInput& input,
                                                boost::asio::mutable_buffer buffer);
/// Waits, reading nothing, until `input`'s (watched) socket has input or its peer's end (true),
/// or for at most `timeout` (false; also when cancelled by cancel_read()).
boost::asio::awaitable<bool> wait_watched(WatchedInput& input, std::chrono::milliseconds timeout);
/// Ends a read of `socket` in progress, in asio or parked on `input`.
void cancel_read(boost::asio::ip::tcp::socket& socket, WatchedInput& input);

/// Knows which sockets have unread input, the way nginx does: a socket is drained after a read
/// that came back short or would block, and has input again when an edge-triggered epoll set of
/// its own reports an arrival. A read on a drained socket waits for that report.
///
/// Asio's reactor cannot do this: it tries every read at once (on a socket whose answer has not
/// come yet, a recv that fails), or re-arms the descriptor with epoll_ctl to wait. Either costs a
/// system call for nearly every response, and for every keep-alive request. This set costs one
/// epoll_ctl per socket, and one epoll_wait per round of the worker's event loop, however many
/// sockets it reports.
/// Thread: owning worker only. Owner: the worker's context.
class Readiness {
 public:
  explicit Readiness(boost::asio::any_io_executor executor);
  Readiness(const Readiness&) = delete;
  Readiness& operator=(const Readiness&) = delete;

  /// Watches socket `fd` until it is closed; `input` must live as long. False if the kernel
  /// refused: the socket then reads through asio alone. Input already there is reported too.
  bool watch(int fd, WatchedInput& input);
  /// Until stop_end_report(input): when the set reports the peer's end of `input`'s stream
  /// (closed, reset, or shut down for writing) while no read of it waits, calls `fn(arg)`. For
  /// a client that leaves while its request is served. The call may destroy `input`.
  void report_end(WatchedInput& input, void (*fn)(void*), void* arg);
  void stop_end_report(WatchedInput& input);

 private:
  friend boost::asio::awaitable<ReadResult> read_watched(boost::asio::ip::tcp::socket&,
                                                         WatchedInput&,
                                                         boost::asio::mutable_buffer);
  friend boost::asio::awaitable<bool> wait_watched(WatchedInput&, std::chrono::milliseconds);
  /// A read on `input`'s drained socket is about to wait on `input.wait` until the socket has
  /// input or an error, or until `until`.
  void park(WatchedInput& input, boost::asio::steady_timer::time_point until =
                                     boost::asio::steady_timer::time_point::max());
  /// After that wait: success if the socket has input, operation_aborted if cancelled.
  boost::system::error_code unpark(WatchedInput& input);
  void arm();
  void collect();

  boost::asio::posix::stream_descriptor set_;  // the epoll set, watched by the worker's reactor
  bool armed_ = false;
  size_t waiting_ = 0;    // parked reads
  size_t reporting_ = 0;  // inputs whose end is reported
};

}  // namespace kedge
