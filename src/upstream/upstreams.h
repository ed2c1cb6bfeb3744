#pragma once

#include "common/byte_buffer.h"
#include "model/snapshot.h"
#include "proxy/limits.h"

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>
#include <random>
#include <unordered_map>
#include <vector>

namespace kedge::upstream {

using Clock = std::chrono::steady_clock;

/// A connection to one endpoint, lent to one request at a time.
struct Connection {
  explicit Connection(boost::asio::any_io_executor ex) : socket(std::move(ex)), in(16 * 1024) {}
  boost::asio::ip::tcp::socket socket;
  ByteBuffer in;  // response bytes read but not yet forwarded
  model::SocketAddress endpoint;
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
                              const std::vector<const model::Endpoint*>& tried);

  void on_request_start(const model::SocketAddress& a) { ++state(a).active; }
  void on_request_end(const model::SocketAddress& a) {
    auto& s = state(a);
    if (s.active > 0) --s.active;
  }
  void on_connect_failure(const model::SocketAddress& a);
  void on_connect_success(const model::SocketAddress& a);

  /// An idle connection to `a` that still looks usable, or nullptr.
  ConnectionPtr take_idle(const model::SocketAddress& a);
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
