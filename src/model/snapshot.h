#pragma once

#include "common/chunked_map.h"

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kedge::tls {
class ServerContext;
}

namespace kedge::model {

/// An IPv4 or IPv6 address and port, already parsed, so workers never parse text.
struct SocketAddress {
  bool v6 = false;
  std::array<uint8_t, 16> ip{};
  uint16_t port = 0;
  static std::optional<SocketAddress> parse(std::string_view ip, uint16_t port);
  std::string to_string() const;  // "10.0.0.1:80" or "[::1]:80"
  auto operator<=>(const SocketAddress&) const = default;
};

struct Endpoint {
  SocketAddress address;
  std::string pod;
  std::string node;
};

enum class LbPolicy { RoundRobin, LeastRequest };

/// A set of interchangeable endpoints: one Service port as seen from an Ingress backend.
struct Cluster {
  std::string name;  // "namespace/service:port"
  std::vector<Endpoint> endpoints;
  LbPolicy lb = LbPolicy::RoundRobin;
  std::string node;     // not empty: this node's endpoints only (traffic policy Local)
  std::string problem;  // why it has no endpoints, when it has none (for the 503 detail)
};
using ClusterConstPtr = std::shared_ptr<const Cluster>;

enum class MatchType { Exact, Prefix };

/// How kedge speaks to a route's endpoints (ingress-nginx's backend-protocol annotation).
enum class UpstreamProtocol : uint8_t {
  Http,   // HTTP/1.1 over TCP
  Https,  // HTTP/1.1 over TLS
  Grpc,   // HTTP/2 over TCP (prior knowledge)
  Grpcs,  // HTTP/2 over TLS (ALPN h2)
};
inline bool is_tls(UpstreamProtocol p) {
  return p == UpstreamProtocol::Https || p == UpstreamProtocol::Grpcs;
}
inline bool is_http2(UpstreamProtocol p) {
  return p == UpstreamProtocol::Grpc || p == UpstreamProtocol::Grpcs;
}

/// An address prefix ("10.0.0.0/8", "2001:db8::/32"; a bare address is a full-length prefix).
struct Cidr {
  bool v6 = false;
  std::array<uint8_t, 16> ip{};  // IPv4 in the first 4 bytes, as SocketAddress
  uint8_t prefix = 0;
  static std::optional<Cidr> parse(std::string_view text);
  bool contains(bool address_v6, const std::array<uint8_t, 16>& address) const;
};

/// Per-client-address limits of an Ingress (ingress-nginx's `limit-rps`, `limit-rpm`,
/// `limit-burst-multiplier`, `limit-connections` and `limit-whitelist` annotations).
struct ClientLimits {
  struct Rate {
    double per_second = 0;
    uint32_t burst = 0;  // requests answered at once above the rate (nginx's burst, nodelay)
  };
  std::vector<Rate> rates;   // each must hold
  int32_t connections = 0;   // requests in flight at once; 0 = no limit
  uint64_t scope = 0;        // the Ingress (hash of namespace/name): limits are per Ingress
  std::vector<Cidr> exempt;  // client ranges no limit applies to
};

/// Per-route overrides from Ingress annotations; negative means "use the global flag".
struct RouteOptions {
  UpstreamProtocol protocol = UpstreamProtocol::Http;
  int64_t max_body_bytes = -1;
  int64_t connect_timeout_ms = -1;
  int64_t read_timeout_ms = -1;
  int64_t send_timeout_ms = -1;
  std::shared_ptr<const ClientLimits> client_limits;  // null: none
};

struct Route {
  MatchType match = MatchType::Prefix;
  std::string path;  // normalised: Prefix paths carry no trailing slash (except "/")
  ClusterConstPtr cluster;
  std::string ingress;    // "namespace/name" of the Ingress the route came from
  std::string stats_key;  // metric labels, precomputed
  RouteOptions options;
  bool ssl_redirect = false;  // plain HTTP gets 308 to https (host in spec.tls)

  bool matches(std::string_view request_path) const;
};

/// All routes of one host (or of all hosts without a rule), longest path first.
struct VirtualHost {
  std::string name;  // "example.com", "*.example.com" or "" (any host)
  std::vector<Route> routes;
  const Route* match(std::string_view path) const;
};

enum class L4Protocol : uint8_t { Tcp, Udp };
enum class L4Role : uint8_t { ClusterIP, NodePort, LoadBalancer };

/// One address:port:protocol on which a Service port is reached, and where it leads.
struct L4Listener {
  SocketAddress address;
  L4Protocol protocol = L4Protocol::Tcp;
  L4Role role = L4Role::ClusterIP;
  std::string service;              // "namespace/name:port"
  ClusterConstPtr cluster;          // the endpoints this traffic may use (traffic policy applied)
  uint32_t affinity_timeout_s = 0;  // sessionAffinity ClientIP; 0 = none
};

/// The health check NodePort of an `externalTrafficPolicy: Local` Service (kube-proxy's).
struct HealthCheckListener {
  SocketAddress address;
  std::string namespace_;
  std::string name;
  size_t local_endpoints = 0;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
/// A string-keyed map that consecutive snapshots share: entries live in fixed shards, each an
/// immutable hash map held by shared_ptr. A copy shares every shard; writing to a copy first
/// copies the one shard written to. So a change of a few entries in a map of 10,000 copies a few
/// hundred entries, not the map. Lookups cost one hash more than a plain unordered_map.
/// Thread: a map being written has one owner; shards shared with published snapshots are never
/// written (they are copied first).
template <class V>
class SharedMap {
 public:
  using Shard = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;
  static constexpr size_t kShards = 64;

  const V* find(std::string_view key) const {
    const auto& shard = shards_[shard_of(key)];
    if (!shard) return nullptr;
    auto it = shard->find(key);
    return it == shard->end() ? nullptr : &it->second;
  }
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  const V& at(std::string_view key) const {
    if (const V* v = find(key)) return *v;
    throw std::out_of_range(std::string(key));
  }
  size_t size() const {
    size_t n = 0;
    for (const auto& shard : shards_) n += shard ? shard->size() : 0;
    return n;
  }
  bool empty() const { return size() == 0; }
  /// Whether both hold the very same shards (then they hold the same entries).
  bool shares_with(const SharedMap& other) const { return shards_ == other.shards_; }
  /// fn(const std::string& key, const V& value) for every entry, in no particular order.
  template <class Fn>
  void for_each(Fn&& fn) const {
    for (const auto& shard : shards_)
      if (shard)
        for (const auto& [k, v] : *shard) fn(k, v);
  }
  /// The entry for `key`, made if missing, in a shard this map alone holds.
  V& operator[](std::string_view key) {
    Shard& shard = writable(key);
    auto it = shard.find(key);
    if (it == shard.end()) it = shard.emplace(std::string(key), V{}).first;
    return it->second;
  }
  void erase(std::string_view key) {
    if (!contains(key)) return;
    Shard& shard = writable(key);
    shard.erase(shard.find(key));
  }

 private:
  static size_t shard_of(std::string_view key) {
    // The high bits: the shard's own hash table uses the low ones.
    return (StringHash{}(key) >> 32) % kShards;
  }
  Shard& writable(std::string_view key) {
    auto& shard = shards_[shard_of(key)];
    if (!shard)
      shard = std::make_shared<Shard>();
    else if (shard.use_count() > 1)  // shared with another snapshot: copy it first
      shard = std::make_shared<Shard>(*shard);
    return *shard;
  }
  std::array<std::shared_ptr<Shard>, kShards> shards_;
};
using HostMap = SharedMap<VirtualHost>;

/// Everything the data plane needs to route, immutable once published. Workers hold a
/// shared_ptr to the current one; a request keeps the snapshot it started with.
/// Thread: any (read-only). Owner: shared by the control thread and every worker.
struct Snapshot {
  uint64_t generation = 0;
  HostMap exact_hosts;     // lower-case host → vhost
  HostMap wildcard_hosts;  // ".example.com" (the suffix after '*') → vhost
  VirtualHost any_host;    // rules without a host
  std::optional<Route> default_backend;
  /// "namespace/name" of every Ingress served (the values are unused; copies share the chunks
  /// nothing changed in).
  ChunkedMap<std::string, bool> served_ingresses;
  /// TLS certificates by SNI name: "host" or "*.suffix" (from Ingress spec.tls).
  SharedMap<std::shared_ptr<const tls::ServerContext>> certificates;
  std::shared_ptr<const tls::ServerContext> default_certificate;
  /// Exact name, then a wildcard for one more label, then the default certificate.
  const tls::ServerContext* certificate_for(std::string_view server_name) const;
  std::vector<L4Listener> l4_listeners;
  std::vector<HealthCheckListener> health_checks;
  /// Every TCP Service port by "namespace/name:port" and "namespace/name:portname", for the
  /// API proxy.
  SharedMap<ClusterConstPtr> service_ports;

  /// Every cluster a route leads to, once each, by name.
  std::vector<ClusterConstPtr> clusters() const;

  /// Picks the virtual host for a Host header value (any case, port allowed): exact name first,
  /// then a wildcard covering exactly one more label, then the rules without a host.
  const VirtualHost* find_host(std::string_view host) const;

  /// The route for a request, or the default backend, or nullptr (404).
  /// `path` is the normalised request path without the query.
  const Route* route(std::string_view host, std::string_view path) const;
};
using SnapshotConstPtr = std::shared_ptr<const Snapshot>;

/// Lower-cases a Host header value and strips its port; writes into `out` (at most 255 bytes).
/// Returns false for a host that cannot be valid.
bool normalize_host(std::string_view host, std::string& out);

/// The request path as routing sees it: query removed, %XX of unreserved characters decoded,
/// repeated slashes merged and dot segments removed (as nginx does before matching locations).
/// Returns false when the path is not an absolute path.
bool normalize_path(std::string_view target, std::string& out);

}  // namespace kedge::model
