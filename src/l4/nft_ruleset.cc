#include "l4/nft_ruleset.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

namespace kedge::l4 {
namespace {

std::string ipv4(const model::SocketAddress& a) {
  return fmt::format("{}.{}.{}.{}", a.ip[0], a.ip[1], a.ip[2], a.ip[3]);
}

std::string mark(uint32_t id) { return fmt::format("0x{:08x}", id); }

/// The translator names the endpoint set of a traffic policy Local "...@node".
bool local_policy(const model::Cluster& c) { return c.name.find('@') != std::string::npos; }

const std::string kTableRef = fmt::format("{} {}", kNftFamily, kNftTable);

std::string pick_chain(uint32_t n) {
  return fmt::format(
      "add chain {0} pick-{1}\n"
      "add rule {0} pick-{1} meta l4proto {{ tcp, udp }} dnat ip to ct mark . numgen random mod "
      "{1} map @endpoints\n",
      kTableRef, n);
}

std::string affinity_chain(uint32_t n) {
  return fmt::format(
      "add chain {0} aff-{1}\n"
      "add rule {0} aff-{1} meta l4proto {{ tcp, udp }} dnat ip to ct mark . ip saddr map "
      "@affinity\n"
      "add rule {0} aff-{1} goto pick-{1}\n",
      kTableRef, n);
}

std::string record_chain(uint32_t seconds) {
  return fmt::format(
      "add chain {0} record-{1}\n"
      "add rule {0} record-{1} meta l4proto {{ tcp, udp }} update @affinity {{ ct mark . ip saddr "
      "timeout {1}s : ip daddr . th dport }}\n",
      kTableRef, seconds);
}

/// Writes "add element" / "delete element" commands in chunks, so that no single command line
/// grows without bound (nft parses each element list in memory).
void elements(std::string& out, const char* verb, const char* set,
              const std::vector<std::string>& items) {
  constexpr size_t kChunk = 4096;
  for (size_t i = 0; i < items.size(); i += kChunk) {
    out += fmt::format("{} element {} {} {{ ", verb, kTableRef, set);
    size_t end = std::min(items.size(), i + kChunk);
    for (size_t j = i; j < end; ++j) {
      if (j > i) out += ", ";
      out += items[j];
    }
    out += " }\n";
  }
}

std::vector<std::string> map_items(const std::map<std::string, std::string>& m) {
  std::vector<std::string> v;
  v.reserve(m.size());
  for (const auto& [k, val] : m) v.push_back(k + " : " + val);
  return v;
}

std::vector<std::string> set_items(const std::set<std::string>& s) { return {s.begin(), s.end()}; }

/// Keys of `from` that `to` lacks or maps elsewhere (to delete), and elements of `to` that
/// `from` lacks or maps elsewhere (to add).
void diff_map(const std::map<std::string, std::string>& from,
              const std::map<std::string, std::string>& to, const char* name, std::string& dels,
              std::string& adds) {
  std::vector<std::string> d, a;
  for (const auto& [k, v] : from) {
    auto it = to.find(k);
    if (it == to.end() || it->second != v) d.push_back(k);
  }
  for (const auto& [k, v] : to) {
    auto it = from.find(k);
    if (it == from.end() || it->second != v) a.push_back(k + " : " + v);
  }
  elements(dels, "delete", name, d);
  elements(adds, "add", name, a);
}

void diff_set(const std::set<std::string>& from, const std::set<std::string>& to, const char* name,
              std::string& dels, std::string& adds) {
  std::vector<std::string> d, a;
  std::set_difference(from.begin(), from.end(), to.begin(), to.end(), std::back_inserter(d));
  std::set_difference(to.begin(), to.end(), from.begin(), from.end(), std::back_inserter(a));
  elements(dels, "delete", name, d);
  elements(adds, "add", name, a);
}

}  // namespace

NftRuleset::Backend& NftRuleset::backend_for(const std::string& key, const model::Cluster& cluster,
                                             bool affinity) {
  auto [it, fresh] = backends_.try_emplace(key);
  Backend& b = it->second;
  b.used = true;
  std::vector<model::SocketAddress> wanted;
  for (const auto& e : cluster.endpoints)
    if (!e.address.v6) wanted.push_back(e.address);
  if (fresh) {
    b.id = next_id_++;
    b.endpoints = std::move(wanted);
    return b;
  }
  // Endpoints that stay keep their index; a new one takes the index of one that left, so
  // replacing an endpoint changes one element. Holes left over are filled from the end.
  std::vector<std::optional<model::SocketAddress>> slots;
  bool lost = false;
  for (const auto& e : b.endpoints) {
    bool stays = std::find(wanted.begin(), wanted.end(), e) != wanted.end();
    slots.push_back(stays ? std::optional(e) : std::nullopt);
    lost = lost || !stays;
  }
  for (const auto& e : wanted) {
    if (std::find(b.endpoints.begin(), b.endpoints.end(), e) != b.endpoints.end()) continue;
    auto hole = std::find(slots.begin(), slots.end(), std::nullopt);
    if (hole != slots.end())
      *hole = e;
    else
      slots.push_back(e);
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i]) continue;
    while (!slots.empty() && !slots.back()) slots.pop_back();
    if (i >= slots.size()) break;
    slots[i] = slots.back();
    slots.pop_back();
  }
  b.endpoints.clear();
  for (const auto& e : slots) b.endpoints.push_back(*e);
  if (affinity && lost) b.id = next_id_++;  // retires the affinity entries of the old id
  return b;
}

NftState NftRuleset::build(const model::Snapshot& snapshot) {
  NftState s;
  for (auto& [k, b] : backends_) b.used = false;
  for (const model::L4Listener& l : snapshot.l4_listeners) {
    if (l.address.v6 || !l.cluster) {
      ++s.skipped_ipv6;
      continue;
    }
    const char* proto = l.protocol == model::L4Protocol::Udp ? "udp" : "tcp";
    const bool affinity = l.affinity_timeout_s > 0;
    const Backend& b = backend_for(affinity ? l.cluster->name + "|affinity" : l.cluster->name,
                                   *l.cluster, affinity);
    const std::string id = mark(b.id);
    const auto n = static_cast<uint32_t>(b.endpoints.size());
    if (n == 0) {
      s.backends[id] = "goto no-endpoints";
    } else if (affinity) {
      s.backends[id] = fmt::format("goto aff-{}", n);
      s.affinity_sizes.insert(n);
      s.pick_sizes.insert(n);
      s.timeouts.insert(l.affinity_timeout_s);
      s.affinity_timeouts[id] = fmt::format("jump record-{}", l.affinity_timeout_s);
    } else {
      s.backends[id] = fmt::format("goto pick-{}", n);
      s.pick_sizes.insert(n);
    }
    for (uint32_t i = 0; i < n; ++i) {
      const std::string ep = ipv4(b.endpoints[i]);
      s.endpoints[fmt::format("{} . {}", id, i)] = fmt::format("{} . {}", ep, b.endpoints[i].port);
      s.hairpin.insert(ep + " . " + ep);
    }
    const bool masquerade = l.role != model::L4Role::ClusterIP && !local_policy(*l.cluster);
    const std::string address = ipv4(l.address);
    if (l.role == model::L4Role::NodePort) {
      std::string key = fmt::format("{} . {}", proto, l.address.port);
      s.service_nodeports[key] = id;
      if (masquerade) s.masq_nodeports.insert(key);
    } else {
      std::string key = fmt::format("{} . {} . {}", address, proto, l.address.port);
      s.service_ips[key] = id;
      if (masquerade) s.masq_ips.insert(key);
    }
    if (l.protocol == model::L4Protocol::Udp)
      for (const auto& e : b.endpoints)
        s.udp_targets.insert(
            {l.role == model::L4Role::NodePort ? "" : address, l.address.port, ipv4(e)});
  }
  std::erase_if(backends_, [](const auto& kv) { return !kv.second.used; });
  return s;
}

std::string NftRuleset::full(const NftState& s) {
  std::string out = fmt::format("table {0}\ndelete table {0}\n", kTableRef);
  out += fmt::format(R"(table {} {{
  map service-ips {{ type ipv4_addr . inet_proto . inet_service : mark; }}
  map service-nodeports {{ type inet_proto . inet_service : mark; }}
  set masq-ips {{ type ipv4_addr . inet_proto . inet_service; }}
  set masq-nodeports {{ type inet_proto . inet_service; }}
  map backends {{ type mark : verdict; }}
  map endpoints {{ typeof ct mark . numgen random mod 2 : ip daddr . th dport; }}
  map affinity {{ typeof ct mark . ip saddr : ip daddr . th dport; flags dynamic,timeout; timeout 3h; }}
  map affinity-timeouts {{ type mark : verdict; }}
  set hairpin {{ type ipv4_addr . ipv4_addr; }}
  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump services; }}
  chain output {{ type nat hook output priority -100; policy accept; jump services; }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ct status dnat ct mark vmap @affinity-timeouts
    meta mark & 0x4000 == 0x4000 masquerade fully-random
    ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random
  }}
  chain services {{
    ip daddr . meta l4proto . th dport @masq-ips meta mark set meta mark | 0x4000
    ct mark set ip daddr . meta l4proto . th dport map @service-ips goto dispatch
    fib daddr type local meta l4proto . th dport @masq-nodeports meta mark set meta mark | 0x4000
    fib daddr type local ct mark set meta l4proto . th dport map @service-nodeports goto dispatch
  }}
  chain dispatch {{ ct mark vmap @backends; }}
  chain no-endpoints {{ meta l4proto tcp reject with tcp reset; reject; }}
}}
)",
                     kTableRef);
  for (uint32_t n : s.pick_sizes) out += pick_chain(n);
  for (uint32_t n : s.affinity_sizes) out += affinity_chain(n);
  for (uint32_t t : s.timeouts) out += record_chain(t);
  elements(out, "add", "service-ips", map_items(s.service_ips));
  elements(out, "add", "service-nodeports", map_items(s.service_nodeports));
  elements(out, "add", "masq-ips", set_items(s.masq_ips));
  elements(out, "add", "masq-nodeports", set_items(s.masq_nodeports));
  elements(out, "add", "backends", map_items(s.backends));
  elements(out, "add", "endpoints", map_items(s.endpoints));
  elements(out, "add", "affinity-timeouts", map_items(s.affinity_timeouts));
  elements(out, "add", "hairpin", set_items(s.hairpin));
  return out;
}

std::string NftRuleset::update(const NftState& from, const NftState& to) {
  // Chains first (never removed while serving: they are few and shared), then every deletion,
  // then every addition, so a changed element is deleted and added back in the same transaction.
  std::string chains, dels, adds;
  for (uint32_t n : to.pick_sizes)
    if (!from.pick_sizes.contains(n)) chains += pick_chain(n);
  for (uint32_t n : to.affinity_sizes)
    if (!from.affinity_sizes.contains(n)) chains += affinity_chain(n);
  for (uint32_t t : to.timeouts)
    if (!from.timeouts.contains(t)) chains += record_chain(t);
  // Lookups before what they lead to: a Service removed first, its endpoints after.
  diff_map(from.service_ips, to.service_ips, "service-ips", dels, adds);
  diff_map(from.service_nodeports, to.service_nodeports, "service-nodeports", dels, adds);
  diff_set(from.masq_ips, to.masq_ips, "masq-ips", dels, adds);
  diff_set(from.masq_nodeports, to.masq_nodeports, "masq-nodeports", dels, adds);
  diff_map(from.affinity_timeouts, to.affinity_timeouts, "affinity-timeouts", dels, adds);
  diff_map(from.backends, to.backends, "backends", dels, adds);
  diff_map(from.endpoints, to.endpoints, "endpoints", dels, adds);
  diff_set(from.hairpin, to.hairpin, "hairpin", dels, adds);
  return chains + dels + adds;
}

std::string NftRuleset::teardown() {
  // Creating it first makes the delete succeed when the table is already gone.
  return fmt::format("table {0}\ndelete table {0}\n", kTableRef);
}

}  // namespace kedge::l4
