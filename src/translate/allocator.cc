#include "translate/allocator.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace kedge::translate {

std::optional<uint32_t> parse_ipv4(const std::string& text) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) return std::nullopt;
  return ntohl(a.s_addr);
}

std::string format_ipv4(uint32_t ip) {
  return fmt::format("{}.{}.{}.{}", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

std::optional<Ipv4Range> Ipv4Range::parse(const std::string& text, bool exclude_edges) {
  if (auto dash = text.find('-'); dash != std::string::npos) {
    auto a = parse_ipv4(text.substr(0, dash)), b = parse_ipv4(text.substr(dash + 1));
    if (!a || !b || *a > *b) return std::nullopt;
    return Ipv4Range{*a, *b};
  }
  auto slash = text.find('/');
  if (slash == std::string::npos) {
    auto a = parse_ipv4(text);
    if (!a) return std::nullopt;
    return Ipv4Range{*a, *a};
  }
  auto base = parse_ipv4(text.substr(0, slash));
  std::string bits_text = text.substr(slash + 1);
  if (!base || bits_text.empty() || bits_text.size() > 2 ||
      bits_text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  int bits = std::stoi(bits_text);
  if (bits < 8 || bits > 32) return std::nullopt;
  uint32_t mask = bits == 32 ? 0xffffffffu : ~((1u << (32 - bits)) - 1);
  Ipv4Range r{*base & mask, (*base & mask) | ~mask};
  if (exclude_edges && bits < 31) {
    ++r.first;
    --r.last;
  }
  return r;
}

std::string port_key(const k8s::ServicePort& port) {
  return fmt::format("{}/{}/{}", port.name, port.protocol, port.port);
}

nlohmann::json Allocations::to_json() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, a] : services) {
    nlohmann::json j = {{"clusterIP", a.cluster_ip},
                        {"nodePorts", a.node_ports},
                        {"healthCheckNodePort", a.health_check_node_port},
                        {"loadBalancerIP", a.load_balancer_ip},
                        {"pool", a.pool}};
    out[key] = j;
  }
  return {{"version", 1}, {"services", out}};
}

Allocations Allocations::from_json(const nlohmann::json& j) {
  Allocations out;
  if (!j.is_object() || !j.contains("services") || !j["services"].is_object()) return out;
  // A damaged file is read as far as it goes: a member of the wrong type counts as absent.
  auto text = [](const nlohmann::json& v, const char* key) {
    auto it = v.find(key);
    return it != v.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  for (const auto& [key, v] : j["services"].items()) {
    if (!v.is_object()) continue;
    ServiceAllocation a;
    a.cluster_ip = text(v, "clusterIP");
    if (v.contains("nodePorts") && v["nodePorts"].is_object())
      for (const auto& [pk, pv] : v["nodePorts"].items())
        if (pv.is_number_integer()) a.node_ports[pk] = pv.get<int32_t>();
    if (auto it = v.find("healthCheckNodePort"); it != v.end() && it->is_number_integer())
      a.health_check_node_port = it->get<int32_t>();
    a.load_balancer_ip = text(v, "loadBalancerIP");
    a.pool = text(v, "pool");
    out.services[key] = std::move(a);
  }
  return out;
}

namespace {

/// Where the search for a free value starts in each band: nothing below is free. Values are
/// only taken during a pass (a refusal gives some back and resets the hints), so the hints only
/// grow, and a pass that allocates n values scans each band once instead of n times.
struct BandHints {
  uint64_t upper = 0, lower = 0;
};

/// Lowest free value of [lo, hi], trying the upper band [lo + offset, hi] first.
template <class Free>
std::optional<uint32_t> pick_dynamic(uint32_t lo, uint32_t hi, uint32_t offset, BandHints& hints,
                                     Free&& free) {
  uint64_t split = hi - lo + 1 > offset ? uint64_t{lo} + offset : lo;
  for (uint64_t v = std::max(split, hints.upper); v <= hi; ++v)
    if (free(static_cast<uint32_t>(v))) {
      hints.upper = v;
      return static_cast<uint32_t>(v);
    }
  hints.upper = uint64_t{hi} + 1;
  for (uint64_t v = std::max<uint64_t>(lo, hints.lower); v < split; ++v)
    if (free(static_cast<uint32_t>(v))) {
      hints.lower = v;
      return static_cast<uint32_t>(v);
    }
  hints.lower = split;
  return std::nullopt;
}

struct LbPort {
  std::string protocol;
  int32_t port;
  auto operator<=>(const LbPort&) const = default;
};

/// One LoadBalancer IP and who shares it.
struct LbHolder {
  std::string sharing_key;  // empty: exclusive
  std::set<LbPort> ports;
  std::vector<std::string> services;
};

/// The LoadBalancer IP a Service asks for: the annotation's first address, else
/// spec.loadBalancerIP; empty when it asks for none.
std::string requested_lb_ip(const k8s::Service& svc) {
  if (auto ann = svc.meta.annotation(std::string(kAnnotationIps)); !ann.empty())
    return ann.substr(0, ann.find(','));
  return svc.load_balancer_ip;
}

/// Whether a Service that holds an allocation now explicitly asks for something it does not
/// hold (an edit of its manifest).
bool asks_for_more(const k8s::Service& svc, const ServiceAllocation& held) {
  if (!svc.cluster_ip.empty() && svc.cluster_ip != held.cluster_ip) return true;
  if (svc.health_check_node_port != 0 && svc.health_check_node_port != held.health_check_node_port)
    return true;
  for (const auto& p : svc.ports) {
    if (p.node_port == 0) continue;
    auto it = held.node_ports.find(port_key(p));
    if (it == held.node_ports.end() || it->second != p.node_port) return true;
  }
  std::string lb = requested_lb_ip(svc);
  return !lb.empty() && lb != held.load_balancer_ip;
}

/// The NodePort a port held before. Like the API server, a port whose number or protocol changed
/// keeps its NodePort by name, unless another port of the Service now asks for it.
int32_t previous_node_port(const k8s::Service& svc, const k8s::ServicePort& sp,
                           const ServiceAllocation& held) {
  if (auto it = held.node_ports.find(port_key(sp)); it != held.node_ports.end()) return it->second;
  for (const auto& [key, value] : held.node_ports)
    if (key.substr(0, key.find('/')) == sp.name &&
        std::none_of(svc.ports.begin(), svc.ports.end(),
                     [&](const k8s::ServicePort& p) { return p.node_port == value; }))
      return value;
  return 0;
}

/// The first IP of status.loadBalancer.ingress, as kedge wrote it in a cluster.
std::string status_ip(const nlohmann::json& lb_status) {
  const nlohmann::json* p = &lb_status;
  if (!p->is_array() || p->empty() || !(*p)[0].is_object()) return "";
  auto ip = (*p)[0].find("ip");
  return ip != (*p)[0].end() && ip->is_string() ? ip->get<std::string>() : "";
}

/// Whether a Service names an address or port itself (allocated before those that do not).
bool explicit_request(const k8s::Service& svc) {
  return !svc.cluster_ip.empty() || !svc.load_balancer_ip.empty() ||
         svc.health_check_node_port != 0 ||
         !svc.meta.annotation(std::string(kAnnotationIps)).empty() ||
         std::any_of(svc.ports.begin(), svc.ports.end(),
                     [](const auto& p) { return p.node_port != 0; });
}

/// A Service to allocate for, with what it held before (if anything).
struct Candidate {
  const k8s::Service* svc;
  const k8s::StoredObject* so;
  const ServiceAllocation* prev;
};

/// Oldest first, as the API server allocates (ties keep the store's order).
void sort_by_age(std::vector<Candidate>& candidates) {
  std::stable_sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
    return a.svc->meta.creation_timestamp < b.svc->meta.creation_timestamp;
  });
}

class Allocator {
 public:
  Allocator(const k8s::ObjectStore& store, const AllocatorConfig& config, AllocationResult& out)
      : store_(store), config_(config), out_(out) {
    cidr_ = Ipv4Range::parse(config.service_cidr, true);
    pools_ = config.pools;
    store.for_each<k8s::IPAddressPool>([&](const k8s::IPAddressPool& p,
                                           const k8s::StoredObject& so) {
      AddressPool pool{p.meta.name, {}, p.auto_assign};
      for (size_t i = 0; i < p.addresses.size(); ++i) {
        auto r = Ipv4Range::parse(p.addresses[i], true);
        if (!r) {
          issue(so, fmt::format("spec.addresses[{}]", i),
                fmt::format("Invalid value: \"{}\": not an IPv4 CIDR or range", p.addresses[i]));
          continue;
        }
        pool.ranges.push_back(*r);
      }
      pools_.push_back(std::move(pool));
    });
  }

  void issue(const k8s::StoredObject& so, std::string field, std::string message) {
    const auto& m = k8s::meta_of(so.object);
    out_.issues.push_back({so.origin.file, so.origin.line,
                           std::string(k8s::kind_name(k8s::kind_of(so.object))), m.namespace_,
                           m.name, std::move(field), std::move(message)});
  }

  /// Takes what `previous` (an allocation without issues) holds into the tables, as assign()
  /// would for each of its Services as a holder, and copies it into the result.
  void hold(const Allocations& previous) {
    for (const auto& [id, a] : previous.services) {
      if (auto ip = parse_ipv4(a.cluster_ip))
        cluster_ips_.emplace_hint(cluster_ips_.end(), *ip, id);
      for (const auto& [key, port] : a.node_ports) node_ports_.emplace(port, id);
      if (a.health_check_node_port) node_ports_.emplace(a.health_check_node_port, id);
      auto lb = parse_ipv4(a.load_balancer_ip);
      if (!lb) continue;
      auto slash = id.find('/');
      const k8s::Service* svc = store_.get<k8s::Service>(id.substr(0, slash), id.substr(slash + 1));
      if (!svc) continue;
      LbHolder& h = lb_ips_[*lb];
      h.sharing_key = svc->meta.annotation(std::string(kAnnotationSharing));
      for (const auto& p : svc->ports) h.ports.insert({p.protocol, p.port});
      h.services.push_back(id);
    }
    out_.allocations = previous;
  }

  /// Tries to give `svc` everything it needs; on any refusal it holds nothing.
  bool assign(const k8s::Service& svc, const k8s::StoredObject& so,
              const ServiceAllocation* previous) {
    std::string id = svc.meta.namespace_ + "/" + svc.meta.name;
    ServiceAllocation a;
    std::vector<std::pair<std::string, std::string>> problems;  // field, message
    // A refusal must leave no trace: what this Service takes is journaled and given back then
    // (copying the tables for every Service made a pass quadratic in the number of Services).
    auto& ips = cluster_ips_;
    auto& ports = node_ports_;
    auto& lbs = lb_ips_;
    Journal journal;

    if (config_.cluster_assigned) {
      a.cluster_ip = svc.cluster_ip;
      for (const auto& p : svc.ports)
        if (p.node_port != 0) a.node_ports[port_key(p)] = p.node_port;
      a.health_check_node_port = svc.health_check_node_port;
    } else if (svc.type != "ExternalName") {
      if (svc.cluster_ip == "None") {
        a.cluster_ip = "None";
      } else if (!cidr_) {
        problems.push_back({"spec.clusterIP", "no valid --service-cidr to allocate from"});
      } else {
        std::optional<uint32_t> want;
        if (!svc.cluster_ip.empty()) {
          want = parse_ipv4(svc.cluster_ip);
          if (!want || !cidr_->contains(*want)) {
            problems.push_back(
                {"spec.clusterIP",
                 fmt::format("Invalid value: \"{}\": provided IP is not in the valid range. The "
                             "range of valid IPs is {}",
                             svc.cluster_ip, config_.service_cidr)});
            want.reset();
          } else if (auto it = ips.find(*want); it != ips.end() && it->second != id) {
            problems.push_back(
                {"spec.clusterIP", fmt::format("Invalid value: \"{}\": provided IP is already "
                                               "allocated to Service {}",
                                               svc.cluster_ip, it->second)});
            want.reset();
          }
        } else if (previous && !previous->cluster_ip.empty() && previous->cluster_ip != "None") {
          auto p = parse_ipv4(previous->cluster_ip);
          if (p && cidr_->contains(*p) && !ips.contains(*p)) want = p;
        }
        if (!want && svc.cluster_ip.empty()) {
          uint32_t size = cidr_->last - cidr_->first + 1;
          uint32_t offset = std::min<uint32_t>(std::max<uint32_t>(16, size / 16), 256);
          want = pick_dynamic(cidr_->first, cidr_->last, offset, ip_hints_,
                              [&](uint32_t v) { return !ips.contains(v); });
          if (!want) problems.push_back({"spec.clusterIP", "the service CIDR is full"});
        }
        if (want) {
          if (ips.try_emplace(*want, id).second) journal.ips.push_back(*want);
          a.cluster_ip = format_ipv4(*want);
        }
      }
    }

    bool wants_node_ports = svc.type == "NodePort" ||
                            (svc.type == "LoadBalancer" && svc.allocate_load_balancer_node_ports);
    auto take_port = [&](int32_t requested, int32_t prev, const std::string& field) -> int32_t {
      auto lo = static_cast<uint32_t>(config_.node_port_min);
      auto hi = static_cast<uint32_t>(config_.node_port_max);
      if (requested != 0) {
        if (requested < config_.node_port_min || requested > config_.node_port_max) {
          problems.push_back({field, fmt::format("Invalid value: {}: provided port is not in the "
                                                 "valid range. The range of valid ports is {}-{}",
                                                 requested, lo, hi)});
          return 0;
        }
        auto it = ports.find(requested);
        if (it != ports.end() && it->second != id) {
          problems.push_back({field, fmt::format("Invalid value: {}: provided port is already "
                                                 "allocated to Service {}",
                                                 requested, it->second)});
          return 0;
        }
        take_node_port(requested, id, journal);
        return requested;
      }
      if (prev >= config_.node_port_min && prev <= config_.node_port_max &&
          (!ports.contains(prev) || ports[prev] == id)) {
        take_node_port(prev, id, journal);
        return prev;
      }
      uint32_t size = hi - lo + 1;
      uint32_t offset = std::min<uint32_t>(std::max<uint32_t>(16, size / 32), 128);
      auto v = pick_dynamic(lo, hi, offset, port_hints_,
                            [&](uint32_t p) { return !ports.contains(static_cast<int32_t>(p)); });
      if (!v) {
        problems.push_back({field, "the NodePort range is full"});
        return 0;
      }
      take_node_port(static_cast<int32_t>(*v), id, journal);
      return static_cast<int32_t>(*v);
    };
    for (size_t i = 0; i < svc.ports.size() && !config_.cluster_assigned; ++i) {
      const auto& sp = svc.ports[i];
      std::string field = fmt::format("spec.ports[{}].nodePort", i);
      int32_t prev = previous ? previous_node_port(svc, sp, *previous) : 0;
      if (wants_node_ports || sp.node_port != 0) {
        if (svc.type == "ClusterIP" || svc.type == "ExternalName") {
          if (sp.node_port != 0)
            problems.push_back(
                {field, "Forbidden: may not be used when `type` is '" + svc.type + "'"});
          continue;
        }
        int32_t port = take_port(sp.node_port, prev, field);
        if (port) a.node_ports[port_key(sp)] = port;
      }
    }
    if (svc.type == "LoadBalancer" && svc.external_traffic_policy == "Local" &&
        !config_.cluster_assigned) {
      a.health_check_node_port =
          take_port(svc.health_check_node_port, previous ? previous->health_check_node_port : 0,
                    "spec.healthCheckNodePort");
    }

    bool our_lb = svc.type == "LoadBalancer" &&
                  (svc.load_balancer_class.empty() ? config_.default_lb_class
                                                   : svc.load_balancer_class == kLoadBalancerClass);
    ServiceAllocation from_status;
    if (our_lb && config_.cluster_assigned && !previous) {
      from_status.load_balancer_ip = status_ip(so.lb_status);
      if (!from_status.load_balancer_ip.empty()) previous = &from_status;
    }
    // No free address is not a conflict: like a LoadBalancer Service that MetalLB cannot serve,
    // it keeps its ClusterIP and NodePorts and waits for an address.
    std::vector<std::pair<std::string, std::string>> pending;
    if (our_lb) assign_lb(svc, id, previous, a, lbs, problems, pending, journal);

    if (!problems.empty()) {
      for (auto& [field, message] : problems) issue(so, field, message);
      undo(journal);
      return false;
    }
    for (auto& [field, message] : pending) issue(so, field, message);
    out_.allocations.services.insert_or_assign(id, std::move(a));
    return true;
  }

 private:
  /// What one assign() added to the tables, to give back if the Service is refused.
  struct Journal {
    std::vector<uint32_t> ips;
    std::vector<int32_t> ports;
    std::vector<std::pair<uint32_t, std::optional<LbHolder>>> lbs;  // holder before, if any
  };

  void take_node_port(int32_t port, const std::string& id, Journal& journal) {
    if (node_ports_.try_emplace(port, id).second) journal.ports.push_back(port);
  }

  void undo(Journal& journal) {
    ip_hints_ = port_hints_ = {};  // what is given back may lie below them
    for (uint32_t ip : journal.ips) cluster_ips_.erase(ip);
    for (int32_t port : journal.ports) node_ports_.erase(port);
    for (auto it = journal.lbs.rbegin(); it != journal.lbs.rend(); ++it) {
      if (it->second)
        lb_ips_[it->first] = std::move(*it->second);
      else
        lb_ips_.erase(it->first);
    }
  }

  void assign_lb(const k8s::Service& svc, const std::string& id, const ServiceAllocation* previous,
                 ServiceAllocation& a, std::map<uint32_t, LbHolder>& lbs,
                 std::vector<std::pair<std::string, std::string>>& problems,
                 std::vector<std::pair<std::string, std::string>>& pending, Journal& journal) {
    std::string sharing = svc.meta.annotation(std::string(kAnnotationSharing));
    std::string pool_name = svc.meta.annotation(std::string(kAnnotationPool));
    std::string requested = requested_lb_ip(svc);
    std::string field = svc.meta.annotation(std::string(kAnnotationIps)).empty()
                            ? "spec.loadBalancerIP"
                            : "metadata.annotations." + std::string(kAnnotationIps);
    std::set<LbPort> mine;
    for (const auto& p : svc.ports) mine.insert({p.protocol, p.port});
    auto pool_of = [&](uint32_t ip) -> const AddressPool* {
      for (const auto& p : pools_)
        for (const auto& r : p.ranges)
          if (r.contains(ip)) return &p;
      return nullptr;
    };
    auto can_take = [&](uint32_t ip) {
      auto it = lbs.find(ip);
      if (it == lbs.end()) return true;
      const LbHolder& h = it->second;
      if (sharing.empty() || h.sharing_key != sharing) return false;
      for (const auto& p : mine)
        if (h.ports.contains(p)) return false;
      return true;
    };
    auto take = [&](uint32_t ip, const AddressPool& pool) {
      auto held = lbs.find(ip);
      journal.lbs.emplace_back(
          ip, held == lbs.end() ? std::nullopt : std::optional<LbHolder>(held->second));
      LbHolder& h = lbs[ip];
      h.sharing_key = sharing;
      h.ports.insert(mine.begin(), mine.end());
      h.services.push_back(id);
      a.load_balancer_ip = format_ipv4(ip);
      a.pool = pool.name;
    };
    if (!requested.empty()) {
      auto ip = parse_ipv4(requested);
      const AddressPool* pool = ip ? pool_of(*ip) : nullptr;
      if (!ip || !pool) {
        problems.push_back(
            {field, fmt::format("Invalid value: \"{}\": not in any address pool", requested)});
        return;
      }
      if (!can_take(*ip)) {
        const LbHolder& h = lbs[*ip];
        problems.push_back(
            {field, fmt::format("Invalid value: \"{}\": already used by Service {}{}", requested,
                                h.services.front(),
                                sharing.empty() || h.sharing_key != sharing
                                    ? " (sharing needs the same " +
                                          std::string(kAnnotationSharing) + " key on both)"
                                    : " with a clashing port")});
        return;
      }
      take(*ip, *pool);
      return;
    }
    if (previous && !previous->load_balancer_ip.empty()) {
      auto ip = parse_ipv4(previous->load_balancer_ip);
      const AddressPool* pool = ip ? pool_of(*ip) : nullptr;
      if (ip && pool && (pool_name.empty() || pool->name == pool_name) && can_take(*ip)) {
        take(*ip, *pool);
        return;
      }
    }
    // Join an address already shared under the same key, then the lowest free one.
    for (const auto& pool : pools_) {
      if (!pool_name.empty() ? pool.name != pool_name : !pool.auto_assign) continue;
      if (!sharing.empty()) {
        for (auto& [ip, h] : lbs)
          if (pool_of(ip) == &pool && h.sharing_key == sharing && can_take(ip)) {
            take(ip, pool);
            return;
          }
      }
      for (const auto& r : pool.ranges)
        for (uint32_t ip = r.first; ip <= r.last && ip >= r.first; ++ip)
          if (!lbs.contains(ip)) {
            take(ip, pool);
            return;
          }
    }
    pending.push_back({"status.loadBalancer",
                       pool_name.empty()
                           ? "no address pool has a free address"
                           : fmt::format("address pool \"{}\" has no free address", pool_name)});
  }

  const k8s::ObjectStore& store_;
  const AllocatorConfig& config_;
  AllocationResult& out_;
  std::optional<Ipv4Range> cidr_;
  std::vector<AddressPool> pools_;
  std::map<uint32_t, std::string> cluster_ips_;
  std::map<int32_t, std::string> node_ports_;
  std::map<uint32_t, LbHolder> lb_ips_;
  BandHints ip_hints_, port_hints_;
};

}  // namespace

AllocationResult allocate(const k8s::ObjectStore& store, const Allocations& previous,
                          const AllocatorConfig& config) {
  AllocationResult out;
  Allocator allocator(store, config, out);
  std::vector<Candidate> holders, edited, requesters, others;
  holders.reserve(previous.services.size());
  // The store and `previous` are both sorted, nearly alike ("ns/name" against (ns, name)): look
  // next to the last one found before searching.
  auto next = previous.services.begin();
  std::string id;
  store.for_each<k8s::Service>([&](const k8s::Service& svc, const k8s::StoredObject& so) {
    id.assign(svc.meta.namespace_).append("/").append(svc.meta.name);
    auto it =
        next != previous.services.end() && next->first == id ? next : previous.services.find(id);
    if (it != previous.services.end()) next = std::next(it);
    const ServiceAllocation* prev = it == previous.services.end() ? nullptr : &it->second;
    auto& group = prev ? (asks_for_more(svc, *prev) ? edited : holders)
                       : (explicit_request(svc) ? requesters : others);
    group.push_back({&svc, &so, prev});
  });
  // Whoever held an address first keeps it (Services asking for something new after those that
  // do not, so an edit never takes what another Service holds); then explicit requests; then the
  // rest, oldest first.
  sort_by_age(requesters);
  sort_by_age(others);
  for (auto* group : {&holders, &edited, &requesters, &others})
    for (const Candidate& c : *group) allocator.assign(*c.svc, *c.so, c.prev);
  return out;
}

AllocationResult allocate_after(const k8s::ObjectStore& store, const k8s::ObjectStore& before,
                                const Allocations& previous, const AllocatorConfig& config) {
  // With nothing refused or pending before, allocate() makes every Service of `before` a holder
  // that takes exactly what it held (no conflict among them, no dynamic pick): the tables after
  // the holders are `previous`, and only the added Services are left, as requesters or others.
  bool only_added = true;
  std::vector<const k8s::StoredObject*> added;
  k8s::ObjectStore::diff(
      before, store, [&](const k8s::StoredObject* a, const k8s::StoredObject* b) {
        k8s::Kind kind = k8s::kind_of((a ? a : b)->object);
        if (kind == k8s::Kind::IPAddressPool || (kind == k8s::Kind::Service && a))
          only_added = false;
        else if (kind == k8s::Kind::Service)
          added.push_back(b);
      });
  if (!only_added) return allocate(store, previous, config);
  AllocationResult out;
  if (added.empty()) {  // endpoints, Ingresses, Secrets: the most frequent changes
    out.unchanged = true;
    return out;
  }
  Allocator allocator(store, config, out);
  allocator.hold(previous);
  std::vector<Candidate> requesters, others;
  for (const k8s::StoredObject* so : added) {
    const auto& svc = std::get<k8s::Service>(so->object);
    (explicit_request(svc) ? requesters : others).push_back({&svc, so, nullptr});
  }
  sort_by_age(requesters);
  sort_by_age(others);
  for (auto* group : {&requesters, &others})
    for (const Candidate& c : *group) allocator.assign(*c.svc, *c.so, nullptr);
  return out;
}

}  // namespace kedge::translate
