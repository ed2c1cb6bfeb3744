#pragma once

#include "model/snapshot.h"

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace kedge::l4 {

/// The nftables table kedge owns (family ip): nothing outside it is ever touched.
inline constexpr const char* kNftFamily = "ip";
inline constexpr const char* kNftTable = "kedge";

/// A UDP flow target whose conntrack entries must go when an endpoint leaves it: the Service
/// address (empty for a NodePort, which is on every local address), its port, and the endpoint.
struct UdpTarget {
  std::string address;
  uint16_t port = 0;
  std::string endpoint;  // endpoint IPv4 address
  auto operator<=>(const UdpTarget&) const = default;
};

/// The contents of kedge's table as one snapshot wants it, element by element, written as nft
/// element text ("10.96.0.1 . tcp . 80" → "0x00000001"), so two states diff by string.
struct NftState {
  std::map<std::string, std::string> service_ips;        // addr . proto . port → backend id
  std::map<std::string, std::string> service_nodeports;  // proto . port → backend id
  std::set<std::string> masq_ips;                        // addr . proto . port: SNAT (Cluster)
  std::set<std::string> masq_nodeports;                  // proto . port: SNAT (Cluster)
  std::map<std::string, std::string> backends;           // backend id → verdict
  std::map<std::string, std::string> endpoints;          // id . index → addr . port
  std::map<std::string, std::string> affinity_timeouts;  // backend id → jump record-T
  std::set<std::string> hairpin;                         // ep . ep: masquerade a pod to itself
  std::set<uint32_t> pick_sizes;                         // chains pick-N needed
  std::set<uint32_t> affinity_sizes;                     // chains aff-N needed
  std::set<uint32_t> timeouts;                           // chains record-T needed
  std::set<UdpTarget> udp_targets;
  size_t skipped_ipv6 = 0;  // IPv6 listeners left out (the table is IPv4)
  bool operator==(const NftState&) const = default;
};

/// What change() did: the transaction, and the UDP conntrack entries it makes stale.
struct NftChange {
  std::string script;               // empty: nothing changed
  std::vector<UdpTarget> udp_gone;  // endpoints no longer behind a UDP Service address
  std::vector<std::pair<std::string, uint16_t>> udp_new;  // UDP Service addresses now served
  size_t skipped_ipv6 = 0;
  size_t service_ips = 0, service_nodeports = 0, endpoints = 0;  // elements after the change
};

/// Turns snapshots into nftables transactions for kedge's table, with kube-proxy's semantics but
/// a layout whose size never depends on the number of Services in rules or chains: every
/// Service lives in a few shared maps, so a change is a handful of element updates.
///
/// Packet path (nat hooks prerouting and output, then postrouting):
///   services:  addr . proto . port in @service-ips, or (fib daddr type local) proto . port in
///              @service-nodeports, gives the backend id, kept in the connection's ct mark;
///              @masq-ips / @masq-nodeports set mark 0x4000 (externalTrafficPolicy Cluster);
///   dispatch:  ct mark vmap @backends → goto pick-N (N endpoints), aff-N (sessionAffinity) or
///              no-endpoints (reject: TCP reset, ICMP port unreachable for UDP);
///   pick-N:    dnat to ct mark . numgen random mod N map @endpoints (even spread);
///   aff-N:     dnat to ct mark . ip saddr map @affinity (the client's endpoint while its entry
///              lives), else pick-N; postrouting records the choice with the Service's timeout;
///   postrouting: masquerade mark 0x4000, and hairpin (ip saddr . ip daddr in @hairpin).
/// Backend ids are stable across snapshots (keyed by the endpoint set's name), so unchanged
/// Services produce no element change. An affinity backend that loses an endpoint gets a new id,
/// which retires every affinity entry of the old one at once.
/// Thread: one caller at a time. Owner: the nftables data plane.
class NftRuleset {
 public:
  /// Moves the ruleset's own state to what `snapshot` wants and returns the transaction that
  /// does the same to the kernel's table (as update() would from state() before to after). Only
  /// listeners whose endpoints, backend or policy changed are looked at again, so one endpoint
  /// change costs the same at 10 Services as at 10,000.
  NftChange change(const model::Snapshot& snapshot);
  /// The state change() has brought the table to, element by element.
  NftState state() const;
  /// The whole table for state() (a reload); change() goes on from it.
  std::string full();

  /// What `snapshot` wants, computed from scratch (the reference for change()); backend ids are
  /// shared with change().
  NftState build(const model::Snapshot& snapshot);

  /// The whole table in one transaction: creates it if missing, deletes it, and creates it again
  /// with every element of `state` (atomic: no packet sees a half-made table).
  static std::string full(const NftState& state);

  /// The element changes that turn `from` into `to`, as one transaction (deletes, then adds;
  /// chains that `to` needs first). Empty when nothing changed.
  static std::string update(const NftState& from, const NftState& to);

  static std::string teardown();

 private:
  struct Backend {
    uint32_t id = 0;
    std::vector<model::SocketAddress> endpoints;  // the index order in @endpoints
    bool used = false;
  };
  Backend& backend_for(const std::string& key, const model::Cluster& cluster, bool affinity);
  std::map<std::string, Backend> backends_;
  uint32_t next_id_ = 1;

  // change()'s state: every element with the number of listeners that want it, and what each
  // listener added, with the inputs it was made from.
  enum Set : uint8_t {
    kServiceIps,
    kServiceNodeports,
    kMasqIps,
    kMasqNodeports,
    kAffinityTimeouts,
    kBackends,
    kEndpoints,
    kHairpin,
    kSets
  };
  struct Element {
    std::string value;  // "" for set elements
    uint32_t refs = 0;
  };
  struct Item {
    Set set;
    std::string key, value;
  };
  struct Part {
    uint32_t backend_id = 0;
    std::vector<model::SocketAddress> endpoints;
    bool masquerade = false;
    uint32_t affinity_s = 0;
    std::vector<Item> items;
    std::vector<UdpTarget> udp;
    uint32_t pick = 0, affinity = 0;  // chain sizes used; 0: none
    uint64_t seen = 0;                // generation of the last change() that had it
  };
  using ListenerKey = std::tuple<model::SocketAddress, model::L4Protocol, model::L4Role>;
  static Part make_part(const model::L4Listener& l, const Backend& b);
  static std::string table_head(const std::set<uint32_t>& pick_sizes,
                                const std::set<uint32_t>& affinity_sizes,
                                const std::set<uint32_t>& timeouts);
  /// "add element" commands for every element of `set`, in key order (as elements() writes them).
  void add_all(std::string& out, int set) const;
  const Backend* backend_of(const model::L4Listener& l);
  std::array<std::map<std::string, Element>, kSets> elements_;
  std::map<uint32_t, uint32_t> pick_refs_, affinity_refs_, timeout_refs_;
  std::set<uint32_t> pick_made_, affinity_made_, timeouts_made_;  // chains in the kernel's table
  std::map<UdpTarget, uint32_t> udp_refs_;
  std::map<std::pair<std::string, uint16_t>, uint32_t> udp_port_refs_;
  std::map<ListenerKey, Part> parts_;
  uint64_t generation_ = 0;
  size_t skipped_ipv6_ = 0;
};

}  // namespace kedge::l4
