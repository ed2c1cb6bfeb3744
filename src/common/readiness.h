#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include "common/ring.h"

#include <chrono>
#include <climits>
#include <cstddef>
#include <memory>
#include <tuple>
#include <vector>

namespace kedge {

class Readiness;

/// What a Readiness set knows of one socket's input, where a read of it waits for more, and
/// where a send waits for the round's batch.
/// Thread: owning worker only. Owner: whoever owns the socket, for as long as it is open.
struct WatchedInput {
  static constexpr int kNothing = INT_MIN;  // `got`, `sent`: no result (yet)

  explicit WatchedInput(const boost::asio::any_io_executor& executor)
      : wait(executor), send_wait(executor) {}
  WatchedInput(const WatchedInput&) = delete;
  WatchedInput& operator=(const WatchedInput&) = delete;

  Readiness* readiness = nullptr;       // nullptr: not watched, reads go through asio alone
  int fd = -1;                          // the watched socket
  bool has_input = true;                // as far as `readiness` knows (unknown counts as input)
  bool ended = false;                   // the peer closed or reset: reads go on until they say so
  bool awaiting = false;                // a read waits on `wait`
  boost::asio::steady_timer wait;       // what a read waiting for input is parked on
  boost::asio::mutable_buffer into;     // that read's buffer, which the set may fill for it
  int got = kNothing;                   // what the set read there: bytes, 0 at the end, -errno
  void (*on_end)(void* arg) = nullptr;  // see Readiness::report_end()
  void* on_end_arg = nullptr;
  bool sending = false;  // a send waits on `send_wait` for the end of the round
  boost::asio::steady_timer send_wait;
  boost::asio::const_buffer out;  // its bytes
  int sent = kNothing;            // what went: bytes, or -errno; kNothing: nothing yet
};

using IoResult = std::tuple<boost::system::error_code, size_t>;

/// One read of `socket` into `buffer`, as asio's async_read_some: through `input`'s set when
/// the socket is watched, so that a drained socket waits for a report instead of trying a recv
/// that would block. The wait ends early when cancel_read() is called (or the awaiting
/// operation's cancellation slot fires), with operation_aborted.
boost::asio::awaitable<IoResult> read_watched(boost::asio::ip::tcp::socket& socket,
                                              WatchedInput& input,
                                              boost::asio::mutable_buffer buffer);
/// Waits, reading nothing, until `input`'s (watched) socket has input or its peer's end (true),
/// or for at most `timeout` (false; also when cancelled by cancel_read()).
boost::asio::awaitable<bool> wait_watched(WatchedInput& input, std::chrono::milliseconds timeout);
/// One send of `buffer` on `socket`, as asio's async_write: with the round's other sends in one
/// system call when `input`'s set batches them, else at once; what the socket does not take
/// then goes through asio. Ends early when cancel_read() is called, with operation_aborted.
boost::asio::awaitable<IoResult> send_watched(boost::asio::ip::tcp::socket& socket,
                                              WatchedInput& input,
                                              boost::asio::const_buffer buffer);
/// Whether send_watched() on `input` would wait for the round's batch now; if not, a caller
/// may send at once with send_now() and call send_watched() only for what is left.
inline bool sends_batched(const WatchedInput& input);
/// Ends a read of `socket`, and a send, in progress in asio or parked on `input`.
void cancel_read(boost::asio::ip::tcp::socket& socket, WatchedInput& input);
/// The same for a socket whose asio operations are cancelled by its owner.
void cancel_watched(WatchedInput& input);

/// Knows which sockets have unread input, the way nginx does: a socket is drained after a read
/// that came back short or would block, and has input again when an edge-triggered epoll set of
/// its own reports an arrival. A read on a drained socket waits for that report.
///
/// Asio's reactor cannot do this: it tries every read at once (on a socket whose answer has not
/// come yet, a recv that fails), or re-arms the descriptor with epoll_ctl to wait. Either costs a
/// system call for nearly every response, and for every keep-alive request. This set costs one
/// epoll_ctl per socket, and one epoll_wait per round of the worker's event loop, however many
/// sockets it reports.
///
/// With a Ring (io_uring), the set also batches a round that wakes several reads: they get
/// their bytes from one system call for all of them, and the sends they lead to go out
/// together at the round's end, so a busy round costs a fixed handful of system calls however
/// many requests it serves. A round of one read is made one call at a time, as without.
/// Thread: owning worker only. Owner: the worker's context.
class Readiness {
 public:
  /// `batch`: use io_uring when the kernel allows it.
  explicit Readiness(boost::asio::any_io_executor executor, bool batch = true);
  ~Readiness();
  Readiness(const Readiness&) = delete;
  Readiness& operator=(const Readiness&) = delete;

  bool batching() const { return ring_.ok(); }
  /// The last round woke several reads: the sends they lead to go out together.
  bool batching_sends() const { return batch_sends_; }
  /// Why the kernel refused io_uring (an errno), 0 if it did not or it was not asked for.
  int batching_refused() const { return ring_.refused(); }

  /// Watches socket `fd` until it is closed; `input` must live as long. False if the kernel
  /// refused: the socket then reads through asio alone. Input already there is reported too.
  bool watch(int fd, WatchedInput& input);
  /// Until stop_end_report(input): when the set reports the peer's end of `input`'s stream
  /// (closed, reset, or shut down for writing) while no read of it waits, calls `fn(arg)`. For
  /// a client that leaves while its request is served. The call may destroy `input`.
  void report_end(WatchedInput& input, void (*fn)(void*), void* arg);
  void stop_end_report(WatchedInput& input);

 private:
  friend boost::asio::awaitable<IoResult> read_watched(boost::asio::ip::tcp::socket&, WatchedInput&,
                                                       boost::asio::mutable_buffer);
  friend boost::asio::awaitable<bool> wait_watched(WatchedInput&, std::chrono::milliseconds);
  friend boost::asio::awaitable<IoResult> send_watched(boost::asio::ip::tcp::socket&, WatchedInput&,
                                                       boost::asio::const_buffer);
  friend void cancel_watched(WatchedInput&);
  /// A read on `input`'s drained socket is about to wait on `input.wait` until the socket has
  /// input or an error, or until `until`. When batching, the set reads into `into` for it.
  void park(WatchedInput& input, boost::asio::steady_timer::time_point until,
            boost::asio::mutable_buffer into = {});
  /// After that wait: success if the socket has input, operation_aborted if cancelled; `got`
  /// is what the set read for it (WatchedInput::kNothing: nothing, the reader reads).
  boost::system::error_code unpark(WatchedInput& input, int& got);
  /// A send waits on `input.send_wait` until flush() at the end of the round.
  void queue_send(WatchedInput& input, boost::asio::const_buffer out);
  void unqueue_send(WatchedInput& input);
  void flush();
  void arm();
  void collect();

  boost::asio::posix::stream_descriptor set_;  // the epoll set, watched by the worker's reactor
  bool armed_ = false;
  size_t waiting_ = 0;    // parked reads
  size_t reporting_ = 0;  // inputs whose end is reported
  Ring ring_;
  bool batch_sends_ = false;  // the last round woke several reads: their sends go together
  std::vector<WatchedInput*> sending_;  // queued sends, for flush()
  std::shared_ptr<bool> alive_;         // tells a posted flush() whether the set is still there
};

inline bool sends_batched(const WatchedInput& input) {
  return input.readiness && input.readiness->batching_sends();
}

}  // namespace kedge
