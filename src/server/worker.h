#pragma once

#include "model/snapshot.h"
#include "proxy/limits.h"
#include "proxy/stats.h"
#include "proxy/worker_context.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <deque>
#include <future>
#include <memory>
#include <thread>
#include <unordered_set>

namespace kedge::server {

/// One event loop on its own thread with its own listening sockets (SO_REUSEPORT), upstream
/// pools and counters: workers share nothing but the immutable snapshot.
/// Thread: public methods may be called from any thread (they post to the loop).
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
  /// Stops accepting and lets requests in flight finish; the loop ends after `grace`.
  void drain(std::chrono::milliseconds grace);
  void join();

 private:
  struct Listener {
    Listener(boost::asio::io_context& ioc) : acceptor(ioc) {}
    boost::asio::ip::tcp::acceptor acceptor;
    proxy::ListenerInfo info;
  };

  int index_;
  /// An io_context whose pending handlers can be destroyed before its owner's other members:
  /// a session's coroutine frame still refers to ctx_ when it is destroyed.
  struct IoContext : boost::asio::io_context {
    using boost::asio::io_context::io_context;
    void destroy_handlers() { shutdown(); }
  };

  std::unordered_set<proxy::HttpSession*> sessions_;      // before ioc_: outlives its handlers
  IoContext ioc_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};  // only this thread touches its sockets
  proxy::WorkerContext ctx_;
  std::deque<Listener> listeners_;
  std::thread thread_;
};

}  // namespace kedge::server
