#pragma once

#include "common/byte_buffer.h"
#include "common/readiness.h"
#include "http1/parser.h"
#include "http2/client_codec.h"
#include "model/snapshot.h"
#include "proxy/limits.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

namespace kedge::upstream {

using Clock = std::chrono::steady_clock;

/// A connection to one endpoint (over TLS for HTTPS and GRPCS backends), lent to one request
/// at a time.
struct Connection {
  using Tls = boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>;
  using IoResult = kedge::IoResult;
  Connection(boost::asio::any_io_executor ex, model::UpstreamProtocol p)
      : socket(ex), input(ex), in(16 * 1024), protocol(p) {}
  boost::asio::awaitable<IoResult> read_some(boost::asio::mutable_buffer buffer);
  /// Writes all of `buffer`.
  boost::asio::awaitable<IoResult> write(boost::asio::const_buffer buffer);
  /// As much of `buffer` as a plain socket takes now, without waiting: a request nearly always
  /// fits, and then the caller goes on without a coroutine of its own. Nothing over TLS, or
  /// while the worker batches this round's sends (write() then joins the batch).
  IoResult send_now(boost::asio::const_buffer buffer);
  /// Ends the operations in progress (they complete with operation_aborted).
  void cancel();

  boost::asio::ip::tcp::socket socket;
  WatchedInput input;  // of a plain HTTP/1.1 connection, watched by the worker's Readiness
  std::unique_ptr<Tls> tls;
  std::unique_ptr<http2::ClientCodec> h2;  // the session of an HTTP/2 backend
  ByteBuffer in;                           // response bytes read but not yet forwarded
  std::optional<http1::Parser> response;   // of HTTP/1.1 responses, kept from one to the next
  model::SocketAddress endpoint;
  model::UpstreamProtocol protocol;
  Clock::time_point idle_since;
  uint64_t requests = 0;
};
using ConnectionPtr = std::unique_ptr<Connection>;

struct AddressHash {
  size_t operator()(const model::SocketAddress& a) const noexcept;
};

/// Per-worker upstream state: load-balancer positions, endpoint health (passive checks) and
/// idle keep-alive connections. Clusters come from the snapshot; this state survives snapshots
/// because it is keyed by cluster name and endpoint address.
/// Thread: owning worker only. Owner: server::Worker.
class Upstreams {
 public:
  explicit Upstreams(const proxy::Limits& limits);

  /// Picks an endpoint of `cluster`, skipping ejected ones (unless all are) and those in `tried`.
  /// Returns nullptr when the cluster has no endpoint left to try.
  const model::Endpoint* pick(const model::Cluster& cluster,
                              std::span<const model::Endpoint* const> tried);

  void on_request_start(const model::SocketAddress& a) { ++state(a).active; }
  void on_request_end(const model::SocketAddress& a) {
    auto& s = state(a);
    if (s.active > 0) --s.active;
  }
  /// Passive health checking: an attempt on `a` that failed (refused or timed-out connect, or a
  /// fresh connection that gave no valid response head), or that got a response head. After
  /// `eject_after_failures` failures in a row the endpoint is ejected for a while.
  void on_failure(const model::SocketAddress& a);
  void on_success(const model::SocketAddress& a);

  /// An idle connection to `a` speaking `protocol` that has not idled too long, or nullptr.
  /// With `verify`, one that the peer has not closed either (a syscall: callers that can resend
  /// on a stale connection skip it).
  ConnectionPtr take_idle(const model::SocketAddress& a, model::UpstreamProtocol protocol,
                          bool verify);
  /// After a connection pooled at `pooled_by` was found stale: closes the idle connections to
  /// `a` pooled no later than it that the peer has closed. Those pooled since are left unlooked
  /// at (a look is a system call each, and a pool may hold a thousand).
  void prune_idle(const model::SocketAddress& a, Clock::time_point pooled_by);
  /// Returns a connection for reuse; it is closed instead when the pool is full.
  void put_idle(ConnectionPtr connection);

 private:
  struct EndpointState {
    uint32_t active = 0;
    uint32_t failures = 0;
    Clock::duration backoff{};
    Clock::time_point ejected_until{};
    std::vector<ConnectionPtr> idle;
  };
  EndpointState& state(const model::SocketAddress& a) { return endpoints_[a]; }
  bool usable(const model::Endpoint& e, Clock::time_point now);

  const proxy::Limits& limits_;
  std::unordered_map<model::SocketAddress, EndpointState, AddressHash> endpoints_;
  std::unordered_map<std::string, uint32_t> round_robin_;
  std::minstd_rand rng_;
};

}  // namespace kedge::upstream
