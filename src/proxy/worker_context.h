#pragma once

#include "common/buffer_pool.h"
#include "common/readiness.h"
#include "model/snapshot.h"
#include "proxy/client_limiter.h"
#include "proxy/deadline.h"
#include "proxy/limits.h"
#include "proxy/stats.h"
#include "upstream/upstreams.h"

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <random>
#include <unordered_set>

namespace kedge::proxy {

class HttpSession;

/// What every connection of one worker shares: the current snapshot, the upstream state and
/// the counters. Thread: the worker's event loop only. Owner: server::Worker.
struct WorkerContext {
  WorkerContext(const Limits& l, ClientLimiter& client_limiter,
                const boost::asio::any_io_executor& executor)
      : limits(l),
        client_limiter(client_limiter),
        deadlines(executor),
        readiness(executor, l.io_uring),
        upstreams(l),
        rng(std::random_device{}()) {}

  const Limits& limits;
  ClientLimiter& client_limiter;  // shared by every worker
  DeadlineQueue deadlines;        // behind every connection's and stream's Deadline
  Readiness readiness;  // input of plain keep-alive client and HTTP/1.1 upstream connections
  model::SnapshotConstPtr
      snapshot;                 // swapped by set_snapshot(), in a task the control thread posts
  uint64_t snapshot_epoch = 0;  // how many swaps: what a connection's memo of a route keys on
  void set_snapshot(model::SnapshotConstPtr s) {
    snapshot = std::move(s);
    ++snapshot_epoch;
  }
  upstream::Upstreams upstreams;
  Stats stats;
  /// The client TLS context for HTTPS and GRPCS upstreams, made on first use.
  boost::asio::ssl::context& upstream_tls() {
    if (!upstream_tls_) {
      upstream_tls_ =
          std::make_unique<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
      upstream_tls_->set_options(
          boost::asio::ssl::context::no_sslv2 | boost::asio::ssl::context::no_sslv3 |
          boost::asio::ssl::context::no_tlsv1 | boost::asio::ssl::context::no_tlsv1_1);
      upstream_tls_->set_verify_mode(boost::asio::ssl::verify_none);
    }
    return *upstream_tls_;
  }
  std::mt19937_64 rng;         // request ids
  BufferPool body_buffers{8};  // lent to HTTP/1.x bodies longer than a connection's buffer
  bool draining = false;
  // Open client connections, for a drain to close the idle ones. Owned by the worker and
  // outliving the io_context, whose destruction may destroy sessions after this context.
  std::unordered_set<HttpSession*>* sessions = nullptr;

 private:
  std::unique_ptr<boost::asio::ssl::context> upstream_tls_;
};

}  // namespace kedge::proxy
