#include "upstream/upstreams.h"

#include "common/send_now.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace kedge::upstream {

namespace asio = boost::asio;

size_t AddressHash::operator()(const model::SocketAddress& a) const noexcept {
  // Runs several times per request: two words of the address, mixed by multiplication.
  uint64_t lo, hi;
  std::memcpy(&lo, a.ip.data(), 8);
  std::memcpy(&hi, a.ip.data() + 8, 8);
  uint64_t h = (lo ^ (uint64_t{a.port} << 48) ^ a.v6) * 0x9e3779b97f4a7c15ull;
  h = (h ^ (h >> 32) ^ hi) * 0xff51afd7ed558ccdull;
  return static_cast<size_t>(h ^ (h >> 29));
}

asio::awaitable<Connection::IoResult> Connection::read_some(asio::mutable_buffer buffer) {
  if (tls) co_return co_await tls->async_read_some(buffer, asio::as_tuple(asio::use_awaitable));
  co_return co_await read_watched(socket, input, buffer);
}

void Connection::cancel() { cancel_read(socket, input); }

Connection::IoResult Connection::send_now(asio::const_buffer buffer) {
  if (tls || sends_batched(input)) return IoResult{boost::system::error_code(), 0};
  return kedge::send_now(socket.native_handle(), buffer);
}

asio::awaitable<Connection::IoResult> Connection::write(asio::const_buffer buffer) {
  if (tls) co_return co_await asio::async_write(*tls, buffer, asio::as_tuple(asio::use_awaitable));
  // Sent without a round through the reactor (asio's write would queue its completion and
  // resume from there), with the round's other sends when batched. Only what the socket does
  // not take waits.
  co_return co_await send_watched(socket, input, buffer);
}

Upstreams::Upstreams(const proxy::Limits& limits) : limits_(limits), rng_(std::random_device{}()) {}

bool Upstreams::usable(const model::Endpoint& e, Clock::time_point now) {
  auto it = endpoints_.find(e.address);
  return it == endpoints_.end() || it->second.ejected_until <= now;
}

const model::Endpoint* Upstreams::pick(const model::Cluster& cluster,
                                       std::span<const model::Endpoint* const> tried) {
  const auto& eps = cluster.endpoints;
  if (eps.empty()) return nullptr;
  auto now = Clock::now();
  auto untried = [&](const model::Endpoint& e) {
    return std::find(tried.begin(), tried.end(), &e) == tried.end();
  };
  // Healthy and untried first; if every endpoint is ejected, use them anyway ("panic mode"),
  // as one failing health signal must not turn into a full outage.
  for (int pass = 0; pass < 2; ++pass) {
    auto ok = [&](const model::Endpoint& e) { return untried(e) && (pass == 1 || usable(e, now)); };
    size_t n = eps.size();
    if (cluster.lb == model::LbPolicy::LeastRequest && n > 1) {
      // Power of two choices: two distinct random candidates, the one with fewer active
      // requests (drawing the same one twice would send load to a busy endpoint).
      const model::Endpoint* best = nullptr;
      size_t first = rng_() % n;
      size_t second = (first + 1 + rng_() % (n - 1)) % n;
      for (size_t index : {first, second}) {
        const model::Endpoint& e = eps[index];
        if (!ok(e)) continue;
        if (!best || state(e.address).active < state(best->address).active) best = &e;
      }
      if (best) return best;
    }
    uint32_t& next = round_robin_[cluster.name];
    for (size_t i = 0; i < n; ++i) {
      const model::Endpoint& e = eps[(next + i) % n];
      if (ok(e)) {
        next = static_cast<uint32_t>((next + i + 1) % n);
        return &e;
      }
    }
  }
  return nullptr;
}

void Upstreams::on_failure(const model::SocketAddress& a) {
  EndpointState& s = state(a);
  if (++s.failures < static_cast<uint32_t>(limits_.eject_after_failures)) return;
  s.backoff = s.backoff == Clock::duration{}
                  ? Clock::duration(limits_.eject_base)
                  : std::min<Clock::duration>(s.backoff * 2, limits_.eject_max);
  s.ejected_until = Clock::now() + s.backoff;
  spdlog::warn("endpoint {} ejected for {} ms after {} failures in a row", a.to_string(),
               std::chrono::duration_cast<std::chrono::milliseconds>(s.backoff).count(),
               s.failures);
}

void Upstreams::on_success(const model::SocketAddress& a) {
  EndpointState& s = state(a);
  s.failures = 0;
  s.backoff = {};
  s.ejected_until = {};
}

namespace {

// The peer closed the connection, or sent something unasked: either makes it unusable.
bool peer_closed(Connection& c) {
  char probe;
  ssize_t n = ::recv(c.socket.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
  return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

}  // namespace

ConnectionPtr Upstreams::take_idle(const model::SocketAddress& a, model::UpstreamProtocol protocol,
                                   bool verify) {
  auto it = endpoints_.find(a);
  if (it == endpoints_.end()) return nullptr;
  auto& idle = it->second.idle;
  auto now = Clock::now();
  for (size_t i = idle.size(); i-- > 0;) {
    if (idle[i]->protocol != protocol) continue;  // one endpoint may serve several protocols
    ConnectionPtr c = std::move(idle[i]);
    idle.erase(idle.begin() + static_cast<ptrdiff_t>(i));
    if (now - c->idle_since > limits_.upstream_idle_timeout) continue;
    if (!verify || !peer_closed(*c)) return c;
  }
  return nullptr;
}

void Upstreams::prune_idle(const model::SocketAddress& a, Clock::time_point pooled_by) {
  auto it = endpoints_.find(a);
  if (it == endpoints_.end()) return;
  auto& idle = it->second.idle;  // in the order they were pooled
  auto older = std::find_if(idle.begin(), idle.end(),
                            [&](const ConnectionPtr& c) { return c->idle_since > pooled_by; });
  idle.erase(std::remove_if(idle.begin(), older, [](ConnectionPtr& c) { return peer_closed(*c); }),
             older);
}

void Upstreams::put_idle(ConnectionPtr connection) {
  auto& idle = state(connection->endpoint).idle;
  if (idle.size() >= limits_.upstream_idle_per_endpoint) return;
  connection->idle_since = Clock::now();
  idle.push_back(std::move(connection));
}

}  // namespace kedge::upstream
