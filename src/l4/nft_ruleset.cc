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

bool local_policy(const model::Cluster& c) { return !c.node.empty(); }

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

namespace {

constexpr const char* kSetNames[] = {
    "service-ips",       "service-nodeports", "masq-ips",  "masq-nodeports",
    "affinity-timeouts", "backends",          "endpoints", "hairpin"};
constexpr bool kIsMap[] = {true, true, false, false, true, true, true, false};

}  // namespace

NftRuleset::Part NftRuleset::make_part(const model::L4Listener& l, const Backend& b) {
  Part p;
  p.backend_id = b.id;
  p.endpoints = b.endpoints;
  p.masquerade = l.role != model::L4Role::ClusterIP && !local_policy(*l.cluster);
  p.affinity_s = l.affinity_timeout_s;
  const char* proto = l.protocol == model::L4Protocol::Udp ? "udp" : "tcp";
  const std::string id = mark(b.id);
  const auto n = static_cast<uint32_t>(b.endpoints.size());
  if (n == 0) {
    p.items.push_back({kBackends, id, "goto no-endpoints"});
  } else if (p.affinity_s > 0) {
    p.items.push_back({kBackends, id, fmt::format("goto aff-{}", n)});
    p.items.push_back({kAffinityTimeouts, id, fmt::format("jump record-{}", p.affinity_s)});
    p.pick = p.affinity = n;
  } else {
    p.items.push_back({kBackends, id, fmt::format("goto pick-{}", n)});
    p.pick = n;
  }
  for (uint32_t i = 0; i < n; ++i) {
    const std::string ep = ipv4(b.endpoints[i]);
    p.items.push_back({kEndpoints, fmt::format("{} . {}", id, i),
                       fmt::format("{} . {}", ep, b.endpoints[i].port)});
    p.items.push_back({kHairpin, ep + " . " + ep, ""});
  }
  const std::string address = ipv4(l.address);
  if (l.role == model::L4Role::NodePort) {
    std::string key = fmt::format("{} . {}", proto, l.address.port);
    if (p.masquerade) p.items.push_back({kMasqNodeports, key, ""});
    p.items.push_back({kServiceNodeports, std::move(key), id});
  } else {
    std::string key = fmt::format("{} . {} . {}", address, proto, l.address.port);
    if (p.masquerade) p.items.push_back({kMasqIps, key, ""});
    p.items.push_back({kServiceIps, std::move(key), id});
  }
  if (l.protocol == model::L4Protocol::Udp)
    for (const auto& e : b.endpoints)
      p.udp.push_back({l.role == model::L4Role::NodePort ? "" : address, l.address.port, ipv4(e)});
  return p;
}

const NftRuleset::Backend* NftRuleset::backend_of(const model::L4Listener& l) {
  const bool affinity = l.affinity_timeout_s > 0;
  return &backend_for(affinity ? l.cluster->name + "|affinity" : l.cluster->name, *l.cluster,
                      affinity);
}

NftState NftRuleset::build(const model::Snapshot& snapshot) {
  NftState s;
  for (auto& [k, b] : backends_) b.used = false;
  for (const model::L4Listener& l : snapshot.l4_listeners) {
    if (l.address.v6 || !l.cluster) {
      ++s.skipped_ipv6;
      continue;
    }
    Part p = make_part(l, *backend_of(l));
    std::map<std::string, std::string>* maps[] = {
        &s.service_ips,       &s.service_nodeports, nullptr,      nullptr,
        &s.affinity_timeouts, &s.backends,          &s.endpoints, nullptr};
    std::set<std::string>* sets[] = {nullptr, nullptr, &s.masq_ips, &s.masq_nodeports,
                                     nullptr, nullptr, nullptr,     &s.hairpin};
    for (Item& item : p.items) {
      if (kIsMap[item.set])
        (*maps[item.set])[item.key] = std::move(item.value);
      else
        sets[item.set]->insert(std::move(item.key));
    }
    if (p.pick) s.pick_sizes.insert(p.pick);
    if (p.affinity) {
      s.affinity_sizes.insert(p.affinity);
      s.timeouts.insert(p.affinity_s);
    }
    s.udp_targets.insert(p.udp.begin(), p.udp.end());
  }
  std::erase_if(backends_, [](const auto& kv) { return !kv.second.used; });
  return s;
}

NftChange NftRuleset::change(const model::Snapshot& snapshot) {
  NftChange out;
  ++generation_;
  // From an empty table every element is new: no need to remember what each one was before.
  const bool from_empty = parts_.empty();
  // The value each touched element had before this change (nullopt: absent), by set.
  std::array<std::map<std::string, std::optional<std::string>>, kSets> touched;
  std::map<UdpTarget, bool> udp_touched;  // had it before
  std::map<std::pair<std::string, uint16_t>, bool> ports_touched;
  std::string chains;

  auto touch = [&](const Item& item) -> Element& {
    auto& elements = elements_[item.set];
    if (from_empty) return elements[item.key];
    auto it = elements.find(item.key);
    touched[item.set].try_emplace(item.key, it == elements.end()
                                                ? std::nullopt
                                                : std::optional<std::string>(it->second.value));
    if (it == elements.end()) it = elements.emplace(item.key, Element{}).first;
    return it->second;
  };
  auto count_udp = [&](const UdpTarget& t, int delta) {
    auto& refs = udp_refs_[t];
    if (!from_empty) udp_touched.try_emplace(t, refs > 0);
    refs += delta;
    if (refs == 0) udp_refs_.erase(t);
    std::pair<std::string, uint16_t> port{t.address, t.port};
    auto& port_refs = udp_port_refs_[port];
    if (!from_empty) ports_touched.try_emplace(port, port_refs > 0);
    port_refs += delta;
    if (port_refs == 0) udp_port_refs_.erase(port);
  };
  auto count = [](std::map<uint32_t, uint32_t>& refs, uint32_t n, int delta) {
    if (n == 0) return;
    if ((refs[n] += delta) == 0) refs.erase(n);
  };
  auto remove = [&](const Part& p) {
    for (const Item& item : p.items) {
      Element& e = touch(item);
      if (--e.refs == 0) elements_[item.set].erase(item.key);
    }
    for (const UdpTarget& t : p.udp) count_udp(t, -1);
    count(pick_refs_, p.pick, -1);
    count(affinity_refs_, p.affinity, -1);
    count(timeout_refs_, p.affinity ? p.affinity_s : 0, -1);
  };
  auto add = [&](const Part& p) {
    for (const Item& item : p.items) {
      Element& e = touch(item);
      e.value = item.value;
      ++e.refs;
    }
    for (const UdpTarget& t : p.udp) count_udp(t, +1);
    count(pick_refs_, p.pick, +1);
    count(affinity_refs_, p.affinity, +1);
    count(timeout_refs_, p.affinity ? p.affinity_s : 0, +1);
    if (p.pick && pick_made_.insert(p.pick).second) chains += pick_chain(p.pick);
    if (p.affinity && affinity_made_.insert(p.affinity).second)
      chains += affinity_chain(p.affinity);
    if (p.affinity && timeouts_made_.insert(p.affinity_s).second)
      chains += record_chain(p.affinity_s);
  };

  for (auto& [k, b] : backends_) b.used = false;
  for (const model::L4Listener& l : snapshot.l4_listeners) {
    if (l.address.v6 || !l.cluster) {
      ++out.skipped_ipv6;
      continue;
    }
    const Backend& b = *backend_of(l);
    auto [it, fresh] = parts_.try_emplace(ListenerKey{l.address, l.protocol, l.role});
    Part& part = it->second;
    if (part.seen == generation_) continue;  // the same listener twice: it wants the same
    const bool masquerade = l.role != model::L4Role::ClusterIP && !local_policy(*l.cluster);
    if (!fresh && part.backend_id == b.id && part.endpoints == b.endpoints &&
        part.masquerade == masquerade && part.affinity_s == l.affinity_timeout_s) {
      part.seen = generation_;
      continue;
    }
    if (!fresh) remove(part);
    part = make_part(l, b);
    part.seen = generation_;
    add(part);
  }
  for (auto it = parts_.begin(); it != parts_.end();) {
    if (it->second.seen == generation_) {
      ++it;
      continue;
    }
    remove(it->second);
    it = parts_.erase(it);
  }
  std::erase_if(backends_, [](const auto& kv) { return !kv.second.used; });
  skipped_ipv6_ = out.skipped_ipv6;

  // Deletions first, then additions, set by set in update()'s order.
  std::string dels, adds;
  for (int set = 0; set < kSets && from_empty; ++set) add_all(adds, set);
  for (int set = 0; set < kSets && !from_empty; ++set) {
    std::vector<std::string> d, a;
    for (const auto& [key, before] : touched[set]) {
      auto now = elements_[set].find(key);
      std::optional<std::string> after;
      if (now != elements_[set].end()) after = now->second.value;
      if (before == after) continue;
      if (before) d.push_back(key);
      if (after) a.push_back(kIsMap[set] ? key + " : " + *after : key);
    }
    elements(dels, "delete", kSetNames[set], d);
    elements(adds, "add", kSetNames[set], a);
  }
  out.script = chains + dels + adds;
  for (const auto& [target, had] : udp_touched)
    if (had && !udp_refs_.contains(target)) out.udp_gone.push_back(target);
  for (const auto& [port, had] : ports_touched)
    if (!had && udp_port_refs_.contains(port)) out.udp_new.push_back(port);
  if (from_empty)
    for (const auto& [port, refs] : udp_port_refs_) out.udp_new.push_back(port);
  out.service_ips = elements_[kServiceIps].size();
  out.service_nodeports = elements_[kServiceNodeports].size();
  out.endpoints = elements_[kEndpoints].size();
  return out;
}

NftState NftRuleset::state() const {
  NftState s;
  std::map<std::string, std::string>* maps[] = {
      &s.service_ips,       &s.service_nodeports, nullptr,      nullptr,
      &s.affinity_timeouts, &s.backends,          &s.endpoints, nullptr};
  std::set<std::string>* sets[] = {nullptr, nullptr, &s.masq_ips, &s.masq_nodeports,
                                   nullptr, nullptr, nullptr,     &s.hairpin};
  for (int set = 0; set < kSets; ++set)
    for (const auto& [key, e] : elements_[set]) {
      if (kIsMap[set])
        maps[set]->emplace(key, e.value);
      else
        sets[set]->insert(key);
    }
  for (const auto& [n, refs] : pick_refs_) s.pick_sizes.insert(n);
  for (const auto& [n, refs] : affinity_refs_) s.affinity_sizes.insert(n);
  for (const auto& [t, refs] : timeout_refs_) s.timeouts.insert(t);
  for (const auto& [t, refs] : udp_refs_) s.udp_targets.insert(t);
  s.skipped_ipv6 = skipped_ipv6_;
  return s;
}

std::string NftRuleset::full() {
  auto sizes = [](const std::map<uint32_t, uint32_t>& refs) {
    std::set<uint32_t> out;
    for (const auto& [n, count] : refs) out.insert(n);
    return out;
  };
  pick_made_ = sizes(pick_refs_);
  affinity_made_ = sizes(affinity_refs_);
  timeouts_made_ = sizes(timeout_refs_);
  std::string out = table_head(pick_made_, affinity_made_, timeouts_made_);
  for (int set = 0; set < kSets; ++set) add_all(out, set);
  return out;
}

void NftRuleset::add_all(std::string& out, int set) const {
  constexpr size_t kChunk = 4096;  // as elements()
  size_t i = 0;
  for (const auto& [key, e] : elements_[set]) {
    if (i % kChunk == 0) {
      if (i) out += " }\n";
      out += fmt::format("add element {} {} {{ ", kTableRef, kSetNames[set]);
    } else {
      out += ", ";
    }
    out += key;
    if (kIsMap[set]) out.append(" : ").append(e.value);
    ++i;
  }
  if (i) out += " }\n";
}

std::string NftRuleset::table_head(const std::set<uint32_t>& pick_sizes,
                                   const std::set<uint32_t>& affinity_sizes,
                                   const std::set<uint32_t>& timeouts) {
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
  for (uint32_t n : pick_sizes) out += pick_chain(n);
  for (uint32_t n : affinity_sizes) out += affinity_chain(n);
  for (uint32_t t : timeouts) out += record_chain(t);
  return out;
}

std::string NftRuleset::full(const NftState& s) {
  std::string out = table_head(s.pick_sizes, s.affinity_sizes, s.timeouts);
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
