#pragma once

#include "common/chunked_map.h"
#include "k8s/issue.h"
#include "k8s/object_store.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kedge::translate {

inline constexpr std::string_view kLoadBalancerClass = "kedge.dev/lb";
inline constexpr std::string_view kAnnotationPool = "metallb.universe.tf/address-pool";
inline constexpr std::string_view kAnnotationIps = "metallb.universe.tf/loadBalancerIPs";
inline constexpr std::string_view kAnnotationSharing = "metallb.universe.tf/allow-shared-ip";

/// An inclusive IPv4 range, host byte order.
struct Ipv4Range {
  uint32_t first = 0;
  uint32_t last = 0;
  /// "10.0.0.0/24" (network and broadcast excluded for prefixes shorter than /31) or
  /// "10.0.0.5-10.0.0.9".
  static std::optional<Ipv4Range> parse(const std::string& text, bool exclude_edges);
  bool contains(uint32_t ip) const { return ip >= first && ip <= last; }
};

std::optional<uint32_t> parse_ipv4(const std::string& text);
std::string format_ipv4(uint32_t ip);

struct AddressPool {
  std::string name;
  std::vector<Ipv4Range> ranges;
  bool auto_assign = true;
};

/// Ranges the allocator hands out from (flags of `kedge serve`).
struct AllocatorConfig {
  std::string service_cidr = "127.10.0.0/16";  // --service-cidr
  int node_port_min = 30000;                   // --service-node-port-range
  int node_port_max = 32767;
  std::vector<AddressPool> pools;  // --lb-pool NAME=RANGE; IPAddressPool objects add to it
  /// In a cluster the API server has already given ClusterIPs and NodePorts: they are taken
  /// from each Service as they are and only LoadBalancer IPs are allocated (a Service's
  /// status.loadBalancer.ingress IP counts as what it held before).
  bool cluster_assigned = false;
  /// Whether LoadBalancer Services without spec.loadBalancerClass are kedge's
  /// (--lb-default-class); those of class kedge.dev/lb always are.
  bool default_lb_class = true;
};

/// What one Service holds. Ports are keyed "name/protocol/port".
struct ServiceAllocation {
  std::string cluster_ip;  // empty: none; "None": headless
  std::map<std::string, int32_t> node_ports;
  int32_t health_check_node_port = 0;
  std::string load_balancer_ip;
  std::string pool;
  bool operator==(const ServiceAllocation&) const = default;
};

/// Every Service's allocation, keyed "namespace/name". Persisted as JSON in --state-dir.
/// Copies share all but what changed (ChunkedMap), so a change that adds one Service to 10,000
/// copies a chunk, not the table.
struct Allocations {
  ChunkedMap<std::string, ServiceAllocation> services;
  bool operator==(const Allocations&) const = default;
  nlohmann::json to_json() const;
  static Allocations from_json(const nlohmann::json& j);
};

std::string port_key(const k8s::ServicePort& port);

struct AllocationResult {
  Allocations allocations;
  k8s::Issues issues;
  bool unchanged = false;  // allocate_after(): the same as `previous` (`allocations` left empty)
};

/// Allocates ClusterIPs, NodePorts, health-check NodePorts and LoadBalancer IPs with the API
/// server's rules: what a Service held before stays its own; explicit requests are honoured when
/// free and refused (naming the holder) when not; the rest is allocated from the upper band of
/// each range first (KEP-3070, KEP-3668). A refused Service gets no allocation at all; a
/// LoadBalancer Service for which no pool has a free address keeps the rest (reported, pending).
/// Deterministic and pure. Thread: any.
AllocationResult allocate(const k8s::ObjectStore& store, const Allocations& previous,
                          const AllocatorConfig& config);

/// allocate() when `previous` is what it gave for `before` with no issue (nothing refused or
/// pending): if the store differs from `before` only by Services added (and by kinds other than
/// Service and IPAddressPool), only those are allocated, against the tables `previous` fills;
/// the result is the same as allocate()'s. Otherwise it is allocate().
AllocationResult allocate_after(const k8s::ObjectStore& store, const k8s::ObjectStore& before,
                                const Allocations& previous, const AllocatorConfig& config);

}  // namespace kedge::translate
