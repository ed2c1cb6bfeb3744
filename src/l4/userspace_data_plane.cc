// The userspace L4 data plane: one event loop that owns every Service listener. TCP is spliced
// through a pipe (zero copy: bytes never enter userspace); UDP keeps a flow table with idle
// timeouts. Runs on its own thread so Service traffic never shares a loop with HTTP routing.
#include "l4/data_plane.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

#include <list>
#include <map>
#include <thread>

namespace kedge::l4 {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

asio::ip::address to_address(const model::SocketAddress& a) {
  if (a.v6) {
    asio::ip::address_v6::bytes_type b;
    std::copy(a.ip.begin(), a.ip.end(), b.begin());
    return asio::ip::address_v6(b);
  }
  asio::ip::address_v4::bytes_type b;
  std::copy(a.ip.begin(), a.ip.begin() + 4, b.begin());
  return asio::ip::address_v4(b);
}

struct Key {
  model::SocketAddress address;
  model::L4Protocol protocol;
  auto operator<=>(const Key&) const = default;
};

/// A pipe pair for splice(); closed on destruction.
struct Pipe {
  int fds[2] = {-1, -1};
  Pipe() {
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) fds[0] = fds[1] = -1;
  }
  ~Pipe() {
    if (fds[0] >= 0) close(fds[0]);
    if (fds[1] >= 0) close(fds[1]);
  }
  bool ok() const { return fds[0] >= 0; }
};

struct TcpFlow {
  explicit TcpFlow(asio::any_io_executor ex) : down(ex), up(ex) {}
  tcp::socket down, up;
  Key listener;
  model::SocketAddress endpoint;
  void close() {
    boost::system::error_code ignored;
    down.close(ignored);
    up.close(ignored);
  }
};

struct UdpFlow {
  explicit UdpFlow(asio::any_io_executor ex) : up(ex) {}
  udp::socket up;
  udp::endpoint client;
  model::SocketAddress endpoint;
  Clock::time_point last_active;
};

struct ListenerState {
  explicit ListenerState(asio::any_io_executor ex) : acceptor(ex), udp_socket(ex) {}
  model::L4Listener config;
  tcp::acceptor acceptor;
  udp::socket udp_socket;
  bool closed = false;
  std::map<udp::endpoint, std::shared_ptr<UdpFlow>> udp_flows;
};

struct HealthState {
  explicit HealthState(asio::any_io_executor ex) : acceptor(ex) {}
  model::HealthCheckListener config;
  tcp::acceptor acceptor;
  bool closed = false;
};

class UserspaceDataPlane final : public DataPlane {
 public:
  explicit UserspaceDataPlane(const UserspaceOptions& options) : options_(options) {
    asio::co_spawn(ioc_, sweep_udp(), asio::detached);
    thread_ = std::thread([this] {
      auto guard = asio::make_work_guard(ioc_);
      ioc_.run();
    });
  }
  ~UserspaceDataPlane() override { stop(); }

  void apply(model::SnapshotConstPtr snapshot) override {
    asio::post(ioc_, [this, snapshot = std::move(snapshot)] { reconcile(snapshot); });
  }

  void stop() override {
    if (!thread_.joinable()) return;
    asio::post(ioc_, [this] {
      for (auto& [k, l] : listeners_) close_listener(*l);
      for (auto& [k, h] : health_) close_health(*h);
      for (auto& f : tcp_flows_) f->close();
      ioc_.stop();
    });
    thread_.join();
  }

 private:
  void reconcile(const model::SnapshotConstPtr& snapshot) {
    snapshot_ = snapshot;
    std::map<Key, const model::L4Listener*> wanted;
    for (const auto& l : snapshot->l4_listeners) wanted.emplace(Key{l.address, l.protocol}, &l);
    // Close listeners that are gone; update the rest in place.
    for (auto it = listeners_.begin(); it != listeners_.end();) {
      auto w = wanted.find(it->first);
      if (w == wanted.end()) {
        close_listener(*it->second);
        it = listeners_.erase(it);
        continue;
      }
      it->second->config = *w->second;
      ++it;
    }
    for (auto& [key, config] : wanted) {
      if (listeners_.contains(key)) continue;
      auto state = std::make_shared<ListenerState>(ioc_.get_executor());
      state->config = *config;
      if (!open_listener(*state)) continue;
      listeners_.emplace(key, state);
      if (key.protocol == model::L4Protocol::Tcp)
        asio::co_spawn(ioc_, accept_loop(state), asio::detached);
      else
        asio::co_spawn(ioc_, udp_loop(state), asio::detached);
    }
    // Flows to endpoints that left their Service end now; the others are untouched.
    for (auto it = tcp_flows_.begin(); it != tcp_flows_.end();) {
      auto l = listeners_.find((*it)->listener);
      if (l == listeners_.end() || !has_endpoint(l->second->config, (*it)->endpoint)) {
        (*it)->close();
        it = tcp_flows_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [key, l] : listeners_) {
      for (auto it = l->udp_flows.begin(); it != l->udp_flows.end();) {
        if (!has_endpoint(l->config, it->second->endpoint)) {
          boost::system::error_code ignored;
          it->second->up.close(ignored);
          it = l->udp_flows.erase(it);
        } else {
          ++it;
        }
      }
    }
    reconcile_health(*snapshot);
    for (auto it = affinity_.begin(); it != affinity_.end();)
      it = it->second.second < Clock::now() ? affinity_.erase(it) : std::next(it);
  }

  void reconcile_health(const model::Snapshot& snapshot) {
    std::map<model::SocketAddress, const model::HealthCheckListener*> wanted;
    for (const auto& h : snapshot.health_checks) wanted.emplace(h.address, &h);
    for (auto it = health_.begin(); it != health_.end();) {
      auto w = wanted.find(it->first);
      if (w == wanted.end()) {
        close_health(*it->second);
        it = health_.erase(it);
      } else {
        it->second->config = *w->second;
        ++it;
      }
    }
    for (auto& [addr, config] : wanted) {
      if (health_.contains(addr)) continue;
      auto state = std::make_shared<HealthState>(ioc_.get_executor());
      state->config = *config;
      boost::system::error_code ec;
      tcp::endpoint ep(to_address(addr), addr.port);
      state->acceptor.open(ep.protocol(), ec);
      if (!ec) state->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) state->acceptor.bind(ep, ec);
      if (!ec) state->acceptor.listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        spdlog::warn("health check {} for {}/{}: cannot listen: {}", addr.to_string(),
                     config->namespace_, config->name, ec.message());
        continue;
      }
      health_.emplace(addr, state);
      asio::co_spawn(ioc_, health_loop(state), asio::detached);
    }
  }

  static bool has_endpoint(const model::L4Listener& l, const model::SocketAddress& a) {
    for (const auto& e : l.cluster->endpoints)
      if (e.address == a) return true;
    return false;
  }

  bool open_listener(ListenerState& s) {
    boost::system::error_code ec;
    const auto& a = s.config.address;
    if (s.config.protocol == model::L4Protocol::Tcp) {
      tcp::endpoint ep(to_address(a), a.port);
      s.acceptor.open(ep.protocol(), ec);
      if (!ec) s.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) s.acceptor.bind(ep, ec);
      if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    } else {
      udp::endpoint ep(to_address(a), a.port);
      s.udp_socket.open(ep.protocol(), ec);
      if (!ec) s.udp_socket.set_option(udp::socket::reuse_address(true), ec);
      if (!ec) s.udp_socket.bind(ep, ec);
    }
    if (ec) {
      spdlog::warn("service {}: cannot listen on {}/{}: {}", s.config.service, a.to_string(),
                   s.config.protocol == model::L4Protocol::Tcp ? "tcp" : "udp", ec.message());
      return false;
    }
    spdlog::info("service {}: listening on {}/{}", s.config.service, a.to_string(),
                 s.config.protocol == model::L4Protocol::Tcp ? "tcp" : "udp");
    return true;
  }

  static void close_listener(ListenerState& s) {
    s.closed = true;
    boost::system::error_code ignored;
    s.acceptor.close(ignored);
    s.udp_socket.close(ignored);
    for (auto& [c, f] : s.udp_flows) f->up.close(ignored);
    s.udp_flows.clear();
  }

  static void close_health(HealthState& s) {
    s.closed = true;
    boost::system::error_code ignored;
    s.acceptor.close(ignored);
  }

  /// Picks an endpoint: the client's previous one while its affinity lasts, else round robin.
  const model::Endpoint* pick(ListenerState& s, const asio::ip::address& client,
                              std::vector<const model::Endpoint*>& tried) {
    const auto& eps = s.config.cluster->endpoints;
    if (eps.empty()) return nullptr;
    std::string akey;
    if (s.config.affinity_timeout_s > 0) {
      akey = s.config.service + "|" + client.to_string();
      auto it = affinity_.find(akey);
      if (it != affinity_.end() && it->second.second > Clock::now()) {
        for (const auto& e : eps)
          if (e.address == it->second.first &&
              std::find(tried.begin(), tried.end(), &e) == tried.end()) {
            it->second.second = Clock::now() + std::chrono::seconds(s.config.affinity_timeout_s);
            return &e;
          }
      }
    }
    uint32_t& next = round_robin_[s.config.service];  // shared by the Service's listeners
    for (size_t i = 0; i < eps.size(); ++i) {
      const model::Endpoint& e = eps[(next + i) % eps.size()];
      if (std::find(tried.begin(), tried.end(), &e) != tried.end()) continue;
      next = static_cast<uint32_t>((next + i + 1) % eps.size());
      if (!akey.empty())
        affinity_[akey] = {e.address,
                           Clock::now() + std::chrono::seconds(s.config.affinity_timeout_s)};
      return &e;
    }
    return nullptr;
  }

  asio::awaitable<void> accept_loop(std::shared_ptr<ListenerState> s) {
    while (!s->closed) {
      auto [ec, socket] = co_await s->acceptor.async_accept(kUseTuple);
      if (s->closed) co_return;
      if (ec) {  // out of descriptors or similar: back off instead of spinning
        asio::steady_timer pause(ioc_, std::chrono::milliseconds(50));
        co_await pause.async_wait(kUseTuple);
        continue;
      }
      asio::co_spawn(ioc_, tcp_flow(s, std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> tcp_flow(std::shared_ptr<ListenerState> s, tcp::socket client) {
    auto flow = std::make_shared<TcpFlow>(ioc_.get_executor());
    flow->down = std::move(client);
    flow->listener = Key{s->config.address, s->config.protocol};
    boost::system::error_code ec;
    auto peer = flow->down.remote_endpoint(ec);
    std::vector<const model::Endpoint*> tried;
    auto snapshot = snapshot_;  // keeps the endpoints alive while connecting
    bool connected = false;
    for (int attempt = 0; attempt < 3 && !connected; ++attempt) {
      const model::Endpoint* ep = pick(*s, peer.address(), tried);
      if (!ep) break;
      tried.push_back(ep);
      flow->up = tcp::socket(ioc_);
      asio::steady_timer timer(ioc_, options_.connect_timeout);
      timer.async_wait([flow](boost::system::error_code e) {
        if (!e) {
          boost::system::error_code ignored;
          flow->up.cancel(ignored);
        }
      });
      auto [cec] =
          co_await flow->up.async_connect({to_address(ep->address), ep->address.port}, kUseTuple);
      timer.cancel();
      if (!cec) {
        flow->endpoint = ep->address;
        connected = true;
      }
    }
    // The endpoint may have left its Service while the connect was in flight.
    if (connected && (s->closed || !has_endpoint(s->config, flow->endpoint))) connected = false;
    if (!connected) {
      // No endpoint: refuse with a reset, as a Service without endpoints does.
      flow->down.set_option(asio::socket_base::linger(true, 0), ec);
      flow->down.close(ec);
      co_return;
    }
    flow->down.set_option(tcp::no_delay(true), ec);
    flow->up.set_option(tcp::no_delay(true), ec);
    tcp_flows_.push_back(flow);
    co_await (pump(flow->down, flow->up) && pump(flow->up, flow->down));
    flow->close();
    tcp_flows_.remove(flow);
  }

  /// Moves bytes from `from` to `to` through a pipe with splice(2); half-closes at EOF.
  static asio::awaitable<void> pump(tcp::socket& from, tcp::socket& to) {
    Pipe pipe;
    if (!pipe.ok()) co_return;
    boost::system::error_code ec;
    from.non_blocking(true, ec);
    to.non_blocking(true, ec);
    constexpr size_t kChunk = 64 * 1024;
    while (from.is_open() && to.is_open()) {
      ssize_t n = splice(from.native_handle(), nullptr, pipe.fds[1], nullptr, kChunk,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n == 0) break;  // EOF
      if (n < 0) {
        if (errno == EAGAIN) {
          auto [wec] = co_await from.async_wait(tcp::socket::wait_read, kUseTuple);
          if (wec) break;
          continue;
        }
        break;
      }
      size_t pending = static_cast<size_t>(n);
      while (pending > 0) {
        ssize_t m = splice(pipe.fds[0], nullptr, to.native_handle(), nullptr, pending,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (m > 0) {
          pending -= static_cast<size_t>(m);
          continue;
        }
        if (m < 0 && errno == EAGAIN) {
          auto [wec] = co_await to.async_wait(tcp::socket::wait_write, kUseTuple);
          if (!wec) continue;
        }
        co_return;
      }
    }
    if (to.is_open()) to.shutdown(tcp::socket::shutdown_send, ec);
  }

  asio::awaitable<void> udp_loop(std::shared_ptr<ListenerState> s) {
    std::array<char, 65536> buf;
    while (!s->closed) {
      udp::endpoint client;
      auto [ec, n] =
          co_await s->udp_socket.async_receive_from(asio::buffer(buf), client, kUseTuple);
      if (s->closed) co_return;
      if (ec) continue;
      std::shared_ptr<UdpFlow> flow;
      if (auto it = s->udp_flows.find(client); it != s->udp_flows.end()) {
        flow = it->second;
      } else {
        std::vector<const model::Endpoint*> tried;
        const model::Endpoint* ep = pick(*s, client.address(), tried);
        if (!ep) continue;  // no endpoint: dropped
        flow = std::make_shared<UdpFlow>(ioc_.get_executor());
        flow->client = client;
        flow->endpoint = ep->address;
        udp::endpoint target(to_address(ep->address), ep->address.port);
        boost::system::error_code oec;
        flow->up.open(target.protocol(), oec);
        if (!oec) flow->up.connect(target, oec);
        if (oec) continue;
        s->udp_flows.emplace(client, flow);
        asio::co_spawn(ioc_, udp_replies(s, flow), asio::detached);
      }
      flow->last_active = Clock::now();
      co_await flow->up.async_send(asio::buffer(buf.data(), n), kUseTuple);
    }
  }

  asio::awaitable<void> udp_replies(std::shared_ptr<ListenerState> s,
                                    std::shared_ptr<UdpFlow> flow) {
    std::array<char, 65536> buf;
    while (flow->up.is_open()) {
      auto [ec, n] = co_await flow->up.async_receive(asio::buffer(buf), kUseTuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || !flow->up.is_open()) co_return;
        continue;  // e.g. ICMP port unreachable from the endpoint
      }
      flow->last_active = Clock::now();
      if (s->closed) co_return;
      co_await s->udp_socket.async_send_to(asio::buffer(buf.data(), n), flow->client, kUseTuple);
    }
  }

  asio::awaitable<void> sweep_udp() {
    asio::steady_timer t(ioc_);
    while (true) {
      t.expires_after(
          std::min<Clock::duration>(options_.udp_idle_timeout / 4, std::chrono::seconds(5)));
      auto [ec] = co_await t.async_wait(kUseTuple);
      if (ec) co_return;
      auto now = Clock::now();
      for (auto& [key, l] : listeners_)
        for (auto it = l->udp_flows.begin(); it != l->udp_flows.end();) {
          if (now - it->second->last_active > options_.udp_idle_timeout) {
            boost::system::error_code ignored;
            it->second->up.close(ignored);
            it = l->udp_flows.erase(it);
          } else {
            ++it;
          }
        }
    }
  }

  /// Answers as kube-proxy's health check server does: 200 with local endpoints, else 503.
  asio::awaitable<void> health_loop(std::shared_ptr<HealthState> s) {
    while (!s->closed) {
      auto [ec, socket] = co_await s->acceptor.async_accept(kUseTuple);
      if (s->closed) co_return;
      if (ec) continue;
      // Each client on its own, so one that sends nothing does not hold up the others.
      asio::co_spawn(ioc_, health_answer(s, std::make_shared<tcp::socket>(std::move(socket))),
                     asio::detached);
    }
  }

  asio::awaitable<void> health_answer(std::shared_ptr<HealthState> s,
                                      std::shared_ptr<tcp::socket> socket) {
    asio::steady_timer deadline(ioc_, std::chrono::seconds(10));  // to send the request
    deadline.async_wait([socket](boost::system::error_code e) {
      boost::system::error_code ignored;
      if (!e) socket->close(ignored);
    });
    std::string request;
    std::array<char, 1024> buf;
    while (request.find("\r\n\r\n") == std::string::npos && request.size() < 8192) {
      auto [rec, n] = co_await socket->async_read_some(asio::buffer(buf), kUseTuple);
      if (rec) break;
      request.append(buf.data(), n);
    }
    if (!socket->is_open() || s->closed) co_return;
    const auto& c = s->config;
    std::string body = fmt::format(
        "{{\"service\":{{\"namespace\":\"{}\",\"name\":\"{}\"}},\"localEndpoints\":{},"
        "\"serviceProxyHealthy\":true}}\n",
        c.namespace_, c.name, c.local_endpoints);
    bool ok = c.local_endpoints > 0;
    std::string resp = fmt::format(
        "HTTP/1.1 {}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        ok ? "200 OK" : "503 Service Unavailable", body.size(), body);
    co_await asio::async_write(*socket, asio::buffer(resp), kUseTuple);
    boost::system::error_code ignored;
    socket->shutdown(tcp::socket::shutdown_send, ignored);
  }

  UserspaceOptions options_;
  asio::io_context ioc_{1};
  std::thread thread_;
  model::SnapshotConstPtr snapshot_;
  std::map<Key, std::shared_ptr<ListenerState>> listeners_;
  std::map<model::SocketAddress, std::shared_ptr<HealthState>> health_;
  std::list<std::shared_ptr<TcpFlow>> tcp_flows_;
  std::map<std::string, std::pair<model::SocketAddress, Clock::time_point>> affinity_;
  std::map<std::string, uint32_t> round_robin_;
};

}  // namespace

std::unique_ptr<DataPlane> make_userspace_data_plane(const UserspaceOptions& options) {
  return std::make_unique<UserspaceDataPlane>(options);
}

}  // namespace kedge::l4
