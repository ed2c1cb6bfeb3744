#include "translate/translator.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <functional>
#include <map>
#include <set>

namespace kedge::translate {
namespace {

using k8s::Issue;
using k8s::StoredObject;

/// Translation state for one run: indexes over the store and the clusters built so far.
class Builder {
 public:
  Builder(const k8s::ObjectStore& store, const Options& options, k8s::Issues& issues)
      : store_(store), options_(options), issues_(issues) {
    store.for_each<k8s::EndpointSlice>([&](const k8s::EndpointSlice& s, const StoredObject&) {
      slices_[{s.meta.namespace_, s.service_name()}].push_back(&s);
    });
  }

  void report(const StoredObject& so, std::string field, std::string message) {
    const k8s::ObjectMeta& m = k8s::meta_of(so.object);
    issues_.push_back(Issue{so.origin.file, so.origin.line,
                            std::string(k8s::kind_name(k8s::kind_of(so.object))), m.namespace_,
                            m.name, std::move(field), std::move(message)});
  }

  /// The cluster behind an Ingress service backend; one per (service, port, policy).
  model::ClusterConstPtr cluster(const StoredObject& ing_so, const std::string& ns,
                                 const k8s::IngressServiceBackend& backend, model::LbPolicy policy,
                                 const std::string& field) {
    std::string port_text =
        backend.port.number ? std::to_string(*backend.port.number) : backend.port.name;
    std::string name = fmt::format("{}/{}:{}", ns, backend.name, port_text);
    std::string key = name + (policy == model::LbPolicy::LeastRequest ? "#lr" : "");
    if (auto it = clusters_.find(key); it != clusters_.end()) {
      // Every backend that uses a broken Service is reported, not only the first one.
      if (!it->second->problem.empty()) report(ing_so, field, it->second->problem);
      return it->second;
    }
    auto c = std::make_shared<model::Cluster>();
    c->name = name;
    c->lb = policy;
    fill_endpoints(*c, ns, backend);
    if (!c->problem.empty()) report(ing_so, field, c->problem);
    clusters_.emplace(key, c);
    return c;
  }

  std::vector<model::ClusterConstPtr> clusters() const {
    std::vector<model::ClusterConstPtr> out;
    for (auto& [k, c] : clusters_) out.push_back(c);
    return out;
  }

 private:
  void fill_endpoints(model::Cluster& c, const std::string& ns,
                      const k8s::IngressServiceBackend& backend) {
    const k8s::Service* svc = store_.get<k8s::Service>(ns, backend.name);
    if (!svc) {
      c.problem = fmt::format("service \"{}/{}\" not found", ns, backend.name);
      return;
    }
    const k8s::ServicePort* sp = nullptr;
    for (const auto& p : svc->ports) {
      if (backend.port.number ? p.port == *backend.port.number : p.name == backend.port.name) {
        sp = &p;
        break;
      }
    }
    if (svc->type == "ExternalName") {
      fill_external_name(c, *svc, backend, sp);
      return;
    }
    if (!sp) {
      c.problem = fmt::format("service \"{}/{}\" has no port {}", ns, backend.name,
                              backend.port.number ? std::to_string(*backend.port.number)
                                                  : "named \"" + backend.port.name + "\"");
      return;
    }
    if (sp->protocol != "TCP") {
      c.problem = fmt::format("service port {} is {}, not TCP", sp->port, sp->protocol);
      return;
    }
    c.endpoints = endpoints_for(*svc, *sp, "");
    if (c.endpoints.empty())
      c.problem = fmt::format("service \"{}/{}\" port {} has no ready endpoints", ns, backend.name,
                              sp->port);
  }

  /// ExternalName: the control thread resolved the name by DNS before translating.
  void fill_external_name(model::Cluster& c, const k8s::Service& svc,
                          const k8s::IngressServiceBackend& backend, const k8s::ServicePort* sp) {
    int32_t port = sp ? (sp->target_port.number ? *sp->target_port.number : sp->port)
                      : backend.port.number.value_or(0);
    if (port <= 0) {
      c.problem = fmt::format("ExternalName service \"{}/{}\" has no port {}", svc.meta.namespace_,
                              svc.meta.name, backend.port.name);
      return;
    }
    auto it = options_.external_names.find(svc.external_name);
    if (it == options_.external_names.end() || it->second.empty()) {
      c.problem = fmt::format("ExternalName \"{}\" of service \"{}/{}\" did not resolve",
                              svc.external_name, svc.meta.namespace_, svc.meta.name);
      return;
    }
    for (const auto& ip : it->second)
      if (auto addr = model::SocketAddress::parse(ip, static_cast<uint16_t>(port)))
        c.endpoints.push_back({*addr, svc.external_name, ""});
  }

 public:
  /// The endpoints of one Service port that may take traffic, as kube-proxy chooses them: ready
  /// ones; when none is ready, serving-and-terminating ones (so a rolling update never drops to
  /// zero). With `node` set, only endpoints on that node (traffic policy Local).
  /// `all_ready` (optional) says whether the result holds ready endpoints only.
  std::vector<model::Endpoint> endpoints_for(const k8s::Service& svc, const k8s::ServicePort& sp,
                                             const std::string& node, bool* all_ready = nullptr) {
    const std::string& ns = svc.meta.namespace_;
    std::vector<model::Endpoint> ready, terminating;
    std::set<model::SocketAddress> seen;
    auto add = [&](const k8s::Endpoint& ep, int32_t port) {
      if (port <= 0) return;
      if (!node.empty() && ep.node_name != node) return;
      bool use_ready = ep.conditions.ready;
      bool use_fallback =
          !ep.conditions.ready && ep.conditions.serving && ep.conditions.terminating;
      if (!use_ready && !use_fallback) return;
      for (const auto& ip : ep.addresses) {
        auto addr = model::SocketAddress::parse(ip, static_cast<uint16_t>(port));
        if (!addr || !seen.insert(*addr).second) continue;
        (use_ready ? ready : terminating).push_back({*addr, ep.target_pod, ep.node_name});
      }
    };
    auto slices = slices_.find({ns, svc.meta.name});
    if (slices != slices_.end()) {
      for (const k8s::EndpointSlice* s : slices->second) {
        if (s->address_type == "FQDN") continue;
        // EndpointSlice ports carry the Service port's name, and the target port as number.
        int32_t port = 0;
        for (const auto& p : s->ports)
          if (p.name == sp.name && p.protocol == sp.protocol) port = p.port;
        for (const auto& ep : s->endpoints) add(ep, port);
      }
    } else if (const k8s::Endpoints* eps = store_.get<k8s::Endpoints>(ns, svc.meta.name)) {
      for (const auto& subset : eps->subsets) {
        int32_t port = 0;
        for (const auto& p : subset.ports)
          if (p.name == sp.name && p.protocol == sp.protocol) port = p.port;
        for (const auto& ep : subset.addresses) add(ep, port);
      }
    }
    if (all_ready) *all_ready = !ready.empty();
    return !ready.empty() ? std::move(ready) : std::move(terminating);
  }

 private:
  const k8s::ObjectStore& store_;
  const Options& options_;
  k8s::Issues& issues_;
  std::map<std::pair<std::string, std::string>, std::vector<const k8s::EndpointSlice*>> slices_;
  std::map<std::string, model::ClusterConstPtr> clusters_;
};

int64_t parse_size(const std::string& v) {
  // nginx size syntax: 1m, 512k, 0 (unlimited), or plain bytes.
  if (v.empty()) return -1;
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (end == v.c_str() || n < 0) return -1;
  std::string unit(end);
  int64_t scale = 0;
  if (unit.empty()) scale = 1;
  if (unit == "k" || unit == "K") scale = int64_t{1} << 10;
  if (unit == "m" || unit == "M") scale = int64_t{1} << 20;
  if (unit == "g" || unit == "G") scale = int64_t{1} << 30;
  if (scale == 0 || n > INT64_MAX / scale) return -1;  // unknown unit, or too large to hold
  return n * scale;
}

int64_t parse_seconds(const std::string& v) {
  if (v.empty()) return -1;
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (end == v.c_str() || n < 0 || (*end && std::string(end) != "s")) return -1;
  return n * 1000;
}

/// ingress-nginx's per-client limit annotations; null when the Ingress sets none.
std::shared_ptr<const model::ClientLimits> client_limits(Builder& b, const StoredObject& so,
                                                         const k8s::Ingress& ing) {
  auto annotation = [&](const char* suffix) {
    std::string key = std::string("nginx.ingress.kubernetes.io/") + suffix;
    return std::pair{key, ing.meta.annotation(key)};
  };
  // A positive whole number, or 0 (with a report) when the value is not one.
  auto count = [&](const char* suffix) -> int64_t {
    auto [key, v] = annotation(suffix);
    if (v.empty()) return 0;
    char* end = nullptr;
    errno = 0;
    long long n = std::strtoll(v.c_str(), &end, 10);
    if (errno != 0 || end == v.c_str() || *end != '\0' || n <= 0 || n > 1'000'000'000) {
      b.report(so, "metadata.annotations." + key,
               fmt::format("invalid value \"{}\" (a positive whole number)", v));
      return 0;
    }
    return n;
  };
  model::ClientLimits limits;
  int64_t rps = count("limit-rps");
  int64_t rpm = count("limit-rpm");
  limits.connections =
      static_cast<int32_t>(std::min<int64_t>(count("limit-connections"), INT32_MAX));
  if (rps == 0 && rpm == 0 && limits.connections == 0) return nullptr;
  int64_t multiplier = count("limit-burst-multiplier");
  if (multiplier == 0) multiplier = 5;  // ingress-nginx's default
  auto burst = [&](int64_t n) {
    return static_cast<uint32_t>(std::min<int64_t>(n * multiplier, UINT32_MAX));
  };
  if (rps > 0) limits.rates.push_back({static_cast<double>(rps), burst(rps)});
  if (rpm > 0) limits.rates.push_back({static_cast<double>(rpm) / 60.0, burst(rpm)});
  auto [key, exempt] = annotation("limit-whitelist");
  for (size_t at = 0; at < exempt.size();) {
    size_t comma = std::min(exempt.find(',', at), exempt.size());
    std::string_view item = std::string_view(exempt).substr(at, comma - at);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) {
      if (auto cidr = model::Cidr::parse(item))
        limits.exempt.push_back(*cidr);
      else
        b.report(so, "metadata.annotations." + key,
                 fmt::format("invalid address range \"{}\"; ignored", item));
    }
    at = comma + 1;
  }
  limits.scope = std::hash<std::string>{}(ing.meta.namespace_ + "/" + ing.meta.name) | 1;
  return std::make_shared<const model::ClientLimits>(std::move(limits));
}

model::RouteOptions route_options(Builder& b, const StoredObject& so, const k8s::Ingress& ing) {
  model::RouteOptions o;
  o.client_limits = client_limits(b, so, ing);
  auto read = [&](const char* suffix, auto parse, int64_t& into) {
    std::string key = std::string("nginx.ingress.kubernetes.io/") + suffix;
    std::string v = ing.meta.annotation(key);
    if (v.empty()) return;
    into = parse(v);
    if (into < 0)
      b.report(so, "metadata.annotations." + key, fmt::format("invalid value \"{}\"", v));
  };
  read("proxy-body-size", parse_size, o.max_body_bytes);
  read("proxy-connect-timeout", parse_seconds, o.connect_timeout_ms);
  read("proxy-read-timeout", parse_seconds, o.read_timeout_ms);
  read("proxy-send-timeout", parse_seconds, o.send_timeout_ms);
  const std::string key = "nginx.ingress.kubernetes.io/backend-protocol";
  std::string protocol = ing.meta.annotation(key);
  for (char& c : protocol) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (protocol == "HTTPS") {
    o.protocol = model::UpstreamProtocol::Https;
  } else if (protocol == "GRPC") {
    o.protocol = model::UpstreamProtocol::Grpc;
  } else if (protocol == "GRPCS") {
    o.protocol = model::UpstreamProtocol::Grpcs;
  } else if (!protocol.empty() && protocol != "HTTP") {
    b.report(so, "metadata.annotations." + key,
             fmt::format("unsupported value \"{}\" (HTTP, HTTPS, GRPC or GRPCS); HTTP is used",
                         ing.meta.annotation(key)));
  }
  return o;
}

model::LbPolicy lb_policy(const k8s::Ingress& ing) {
  std::string v = ing.meta.annotation("kedge.dev/load-balance");
  if (v.empty()) v = ing.meta.annotation("nginx.ingress.kubernetes.io/load-balance");
  return v == "least_request" || v == "ewma" ? model::LbPolicy::LeastRequest
                                             : model::LbPolicy::RoundRobin;
}

}  // namespace

bool serves_ingress(const k8s::ObjectStore& store, const Options& options,
                    const k8s::Ingress& ingress) {
  auto ours = [&](const std::string& class_name) {
    if (class_name == options.ingress_class) return true;
    const auto* ic = store.get<k8s::IngressClass>("", class_name);
    return ic && ic->controller == kControllerName;
  };
  if (ingress.ingress_class_name) return ours(*ingress.ingress_class_name);
  std::string legacy = ingress.meta.annotation("kubernetes.io/ingress.class");
  if (!legacy.empty()) return ours(legacy);
  if (options.watch_ingress_without_class) return true;
  bool default_ours = false;
  store.for_each<k8s::IngressClass>([&](const k8s::IngressClass& ic, const StoredObject&) {
    if (ic.controller == kControllerName && ic.is_default()) default_ours = true;
  });
  return default_ours;
}

namespace {

/// Service ports as the L4 data plane and the API proxy see them.
void build_services(Builder& b, const k8s::ObjectStore& store, const Options& options,
                    const Allocations* allocations, model::Snapshot& snap) {
  store.for_each<k8s::Service>([&](const k8s::Service& svc, const StoredObject& so) {
    if (svc.type == "ExternalName") return;
    const std::string id = svc.meta.namespace_ + "/" + svc.meta.name;
    const ServiceAllocation* alloc = nullptr;
    if (allocations) {
      auto it = allocations->services.find(id);
      if (it != allocations->services.end()) alloc = &it->second;
    }
    // Like kube-proxy, the health check counts this node's ready endpoints by address: a pod
    // serving several ports is one endpoint, and terminating ones do not count.
    std::set<std::array<uint8_t, 16>> local_ready;
    for (size_t i = 0; i < svc.ports.size(); ++i) {
      const k8s::ServicePort& sp = svc.ports[i];
      if (sp.protocol == "SCTP") {
        b.report(so, fmt::format("spec.ports[{}].protocol", i), "SCTP is not forwarded by kedge");
        continue;
      }
      auto make = [&](const std::string& node) {
        auto c = std::make_shared<model::Cluster>();
        c->name =
            fmt::format("{}:{}/{}{}", id, sp.port, sp.protocol, node.empty() ? "" : "@" + node);
        c->node = node;
        bool ready = false;
        c->endpoints = b.endpoints_for(svc, sp, node, &ready);
        if (!node.empty() && ready)
          for (const auto& e : c->endpoints) local_ready.insert(e.address.ip);
        return c;
      };
      model::ClusterConstPtr all = make("");
      if (sp.protocol == "TCP") {
        snap.service_ports[fmt::format("{}:{}", id, sp.port)] = all;
        if (!sp.name.empty()) snap.service_ports[fmt::format("{}:{}", id, sp.name)] = all;
        snap.service_ports.try_emplace(id + ":", all);  // no port named: the first one
      }
      if (!alloc) continue;
      model::ClusterConstPtr local;
      auto local_cluster = [&] {
        if (!local) local = make(options.node_name);
        return local;
      };
      auto proto = sp.protocol == "UDP" ? model::L4Protocol::Udp : model::L4Protocol::Tcp;
      uint32_t affinity = svc.session_affinity == "ClientIP"
                              ? static_cast<uint32_t>(svc.session_affinity_timeout_seconds)
                              : 0;
      std::string name =
          fmt::format("{}:{}", id, sp.name.empty() ? std::to_string(sp.port) : sp.name);
      auto add = [&](const std::string& ip, int32_t port, model::L4Role role,
                     model::ClusterConstPtr cluster) {
        auto addr = model::SocketAddress::parse(ip, static_cast<uint16_t>(port));
        if (!addr) return;
        snap.l4_listeners.push_back({*addr, proto, role, name, std::move(cluster), affinity});
      };
      if (!alloc->cluster_ip.empty() && alloc->cluster_ip != "None")
        add(alloc->cluster_ip, sp.port, model::L4Role::ClusterIP,
            svc.internal_traffic_policy == "Local" ? local_cluster() : all);
      bool external_local = svc.external_traffic_policy == "Local";
      if (auto np = alloc->node_ports.find(port_key(sp)); np != alloc->node_ports.end())
        for (const auto& node_ip : options.node_addresses)
          add(node_ip, np->second, model::L4Role::NodePort, external_local ? local_cluster() : all);
      if (!alloc->load_balancer_ip.empty())
        add(alloc->load_balancer_ip, sp.port, model::L4Role::LoadBalancer,
            external_local ? local_cluster() : all);
      if (external_local) local_cluster();
    }
    if (alloc && alloc->health_check_node_port)
      for (const auto& node_ip : options.node_addresses)
        if (auto addr = model::SocketAddress::parse(
                node_ip, static_cast<uint16_t>(alloc->health_check_node_port)))
          snap.health_checks.push_back(
              {*addr, svc.meta.namespace_, svc.meta.name, local_ready.size()});
  });
}

using ServedIngresses = std::vector<std::pair<const k8s::Ingress*, const StoredObject*>>;

/// Certificates from the Secrets named in spec.tls of served Ingresses, by host; the oldest
/// Ingress wins a host named twice.
void build_certificates(Builder& b, const k8s::ObjectStore& store, const Options& options,
                        const ServedIngresses& served, model::Snapshot& snap) {
  snap.default_certificate = options.fallback_certificate;
  if (!options.certificates) return;
  CertificateCache& cache = *options.certificates;
  cache.retain(store);
  if (!options.default_ssl_certificate.empty()) {
    auto slash = options.default_ssl_certificate.find('/');
    const k8s::Secret* secret =
        slash == std::string::npos
            ? nullptr
            : store.get<k8s::Secret>(options.default_ssl_certificate.substr(0, slash),
                                     options.default_ssl_certificate.substr(slash + 1));
    if (secret) {
      auto found = cache.get(*secret);
      if (found.context) snap.default_certificate = found.context;
      if (!found.error.empty())
        spdlog::warn("--default-ssl-certificate {}: {}", options.default_ssl_certificate,
                     found.error);
    } else {
      spdlog::warn("--default-ssl-certificate {}: Secret not found; using the self-signed one",
                   options.default_ssl_certificate);
    }
  }
  for (auto [ing, so] : served) {
    for (size_t i = 0; i < ing->tls.size(); ++i) {
      const k8s::IngressTls& t = ing->tls[i];
      std::string field = fmt::format("spec.tls[{}].secretName", i);
      if (t.secret_name.empty()) continue;  // ingress-nginx: the default certificate
      const std::string sid = ing->meta.namespace_ + "/" + t.secret_name;
      const k8s::Secret* secret = store.get<k8s::Secret>(ing->meta.namespace_, t.secret_name);
      if (!secret) {
        b.report(*so, field, fmt::format("Secret {} not found", sid));
        continue;
      }
      auto found = cache.get(*secret);
      if (!found.error.empty()) {
        const k8s::StoredObject* secret_so =
            store.find(k8s::ObjectKey{k8s::Kind::Secret, ing->meta.namespace_, t.secret_name});
        std::string msg = fmt::format(
            "used by Ingress {}/{}: {}{}", ing->meta.namespace_, ing->meta.name, found.error,
            found.context ? "; the previous certificate keeps serving" : "; not used");
        if (secret_so) b.report(*secret_so, "data", msg);
      }
      if (!found.context) continue;
      std::vector<std::string> hosts = t.hosts;
      if (hosts.empty())  // no hosts: every rule host of this Ingress the certificate covers
        for (const auto& rule : ing->rules)
          if (!rule.host.empty() && found.context->covers(rule.host)) hosts.push_back(rule.host);
      for (std::string h : hosts) {
        for (auto& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        snap.certificates.try_emplace(h, found.context);
      }
    }
  }
}

}  // namespace

Translation translate(const k8s::ObjectStore& store, const Options& options, uint64_t generation,
                      const Allocations* allocations) {
  Translation out;
  auto snap = std::make_shared<model::Snapshot>();
  snap->generation = generation;
  Builder b(store, options, out.issues);

  // Oldest first, then namespace/name: the order that settles conflicts.
  std::vector<std::pair<const k8s::Ingress*, const StoredObject*>> served;
  store.for_each<k8s::Ingress>([&](const k8s::Ingress& ing, const StoredObject& so) {
    if (serves_ingress(store, options, ing)) served.emplace_back(&ing, &so);
  });
  std::stable_sort(served.begin(), served.end(), [](const auto& a, const auto& c) {
    return a.first->meta.creation_timestamp < c.first->meta.creation_timestamp;
  });

  build_certificates(b, store, options, served, *snap);
  std::map<std::tuple<std::string, int, std::string>, std::string> owners;  // host,type,path
  std::string default_owner;

  for (auto [ing, so] : served) {
    const std::string ns = ing->meta.namespace_;
    const std::string id = ns + "/" + ing->meta.name;
    snap->served_ingresses.push_back(id);
    model::RouteOptions opts = route_options(b, *so, *ing);
    model::LbPolicy policy = lb_policy(*ing);
    auto make_route = [&](const k8s::IngressBackend& backend, const std::string& field,
                          model::Route& route) {
      route.ingress = id;
      route.options = opts;
      if (backend.resource) {
        b.report(*so, field + ".resource", "resource backends are not supported by kedge");
        auto c = std::make_shared<model::Cluster>();
        c->name = id + ":resource";
        c->problem = "resource backends are not supported";
        route.cluster = c;
      } else {
        route.cluster = b.cluster(*so, ns, *backend.service, policy, field + ".service");
      }
      route.stats_key = fmt::format("ingress=\"{}\",service=\"{}\"", id,
                                    route.cluster ? route.cluster->name : "");
    };

    if (ing->default_backend) {
      if (default_owner.empty()) {
        default_owner = id;
        model::Route r;
        r.path = "/";
        make_route(*ing->default_backend, "spec.defaultBackend", r);
        snap->default_backend = std::move(r);
      } else {
        b.report(*so, "spec.defaultBackend",
                 fmt::format("conflicts with the default backend of Ingress {} (older); ignored",
                             default_owner));
      }
    }

    for (size_t ri = 0; ri < ing->rules.size(); ++ri) {
      const k8s::IngressRule& rule = ing->rules[ri];
      std::string host;
      for (char c : rule.host)
        host += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      model::VirtualHost* vh;
      if (host.empty()) {
        vh = &snap->any_host;
      } else if (host.starts_with("*.")) {
        vh = &snap->wildcard_hosts[host.substr(1)];
      } else {
        vh = &snap->exact_hosts[host];
      }
      vh->name = host;
      for (size_t pi = 0; pi < rule.paths.size(); ++pi) {
        const k8s::HttpIngressPath& p = rule.paths[pi];
        std::string field = fmt::format("spec.rules[{}].http.paths[{}]", ri, pi);
        model::Route r;
        // ImplementationSpecific is matched as Prefix (documented in docs/ingress.md).
        r.match = p.path_type == k8s::PathType::Exact ? model::MatchType::Exact
                                                      : model::MatchType::Prefix;
        r.path = p.path.empty() ? "/" : p.path;
        if (r.match == model::MatchType::Prefix)
          while (r.path.size() > 1 && r.path.back() == '/') r.path.pop_back();
        auto [it, fresh] =
            owners.emplace(std::make_tuple(host, static_cast<int>(r.match), r.path), id);
        if (!fresh) {
          b.report(
              *so, field,
              fmt::format("host \"{}\" path \"{}\" ({}) is already defined by Ingress {} "
                          "(older, or first by namespace/name); ignored",
                          host, r.path, r.match == model::MatchType::Exact ? "Exact" : "Prefix",
                          it->second));
          continue;
        }
        make_route(p.backend, field + ".backend", r);
        r.ssl_redirect =
            !host.empty() && snap->certificates.contains(host) &&
            ing->meta.annotation("nginx.ingress.kubernetes.io/ssl-redirect") != "false";
        vh->routes.push_back(std::move(r));
      }
    }
  }

  auto order = [](const model::Route& a, const model::Route& c) {
    if (a.path.size() != c.path.size()) return a.path.size() > c.path.size();
    return a.match == model::MatchType::Exact && c.match != model::MatchType::Exact;
  };
  for (auto* map : {&snap->exact_hosts, &snap->wildcard_hosts})
    for (auto& [name, vh] : *map) std::stable_sort(vh.routes.begin(), vh.routes.end(), order);
  std::stable_sort(snap->any_host.routes.begin(), snap->any_host.routes.end(), order);
  std::sort(snap->served_ingresses.begin(), snap->served_ingresses.end());
  snap->clusters = b.clusters();
  build_services(b, store, options, allocations, *snap);
  out.snapshot = std::move(snap);
  return out;
}

}  // namespace kedge::translate
