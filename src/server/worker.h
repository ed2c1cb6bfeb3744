#pragma once

#include "model/snapshot.h"
#include "proxy/limits.h"
#include "proxy/stats.h"
#include "proxy/worker_context.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

namespace kedge::server {

/// One event loop on its own thread with its own listening sockets (SO_REUSEPORT), upstream
/// pools and counters: workers share nothing but the immutable snapshot. The loop takes no lock
/// of its own: only its thread calls into its io_context, and other threads hand it work
/// through a mailbox (a queue under a mutex, and an eventfd the loop reads).
/// Thread: public methods may be called from any thread (they go through the mailbox).
/// Owner: server::Server.
class Worker {
 public:
  /// `client_limiter` is shared by every worker and outlives them.
  Worker(int index, const proxy::Limits& limits, proxy::ClientLimiter& client_limiter);
  ~Worker();

  /// Opens a listening socket on `endpoint` (before start()). Returns the bound port.
  uint16_t listen(const boost::asio::ip::tcp::endpoint& endpoint, proxy::ListenerInfo info);
  void start();
  /// Swaps in a new snapshot between requests; requests in flight keep theirs.
  void publish(model::SnapshotConstPtr snapshot);
  /// A copy of the counters, taken on the worker's thread.
  std::future<proxy::Stats> stats();
  /// See Readiness::batching() and batching_refused().
  bool batching() const { return ctx_.readiness.batching(); }
  int batching_refused() const { return ctx_.readiness.batching_refused(); }
  /// Stops accepting and lets requests in flight finish; the loop ends after `grace`.
  void drain(std::chrono::milliseconds grace);
  void join();

 private:
  struct Listener {
    Listener(boost::asio::io_context& ioc) : acceptor(ioc) {}
    boost::asio::ip::tcp::acceptor acceptor;
    proxy::ListenerInfo info;
  };

  /// Runs `task` on the loop's thread, soon. Any thread.
  void send(std::function<void()> task);
  /// On the loop: waits for the mailbox's eventfd and runs what was sent, for ever.
  boost::asio::awaitable<void> read_mail();

  int index_;
  /// An io_context whose pending handlers can be destroyed before its owner's other members:
  /// a session's coroutine frame still refers to ctx_ when it is destroyed.
  struct IoContext : boost::asio::io_context {
    using boost::asio::io_context::io_context;
    void destroy_handlers() { shutdown(); }
  };

  std::unordered_set<proxy::HttpSession*> sessions_;   // before ioc_: outlives its handlers
  IoContext ioc_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE};  // only the loop's thread calls into it
  std::mutex mail_mutex_;
  std::vector<std::function<void()>> mail_;  // under mail_mutex_
  int mail_fd_;                              // an eventfd: other threads write, the loop reads
  boost::asio::posix::stream_descriptor mail_reader_;  // owns mail_fd_
  proxy::WorkerContext ctx_;
  std::deque<Listener> listeners_;
  std::thread thread_;
};

}  // namespace kedge::server
