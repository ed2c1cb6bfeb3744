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
#include <unordered_map>

namespace kedge::translate {
namespace {

using k8s::Issue;
using k8s::ObjectKey;
using k8s::StoredObject;

/// Collects what is left out, naming the object and field.
struct Reporter {
  k8s::Issues& issues;
  void report(const StoredObject& so, std::string field, std::string message) {
    const k8s::ObjectMeta& m = k8s::meta_of(so.object);
    issues.push_back(Issue{so.origin.file, so.origin.line,
                           std::string(k8s::kind_name(k8s::kind_of(so.object))), m.namespace_,
                           m.name, std::move(field), std::move(message)});
  }
};

ObjectKey service_key(const std::string& ns, const std::string& name) {
  return ObjectKey{k8s::Kind::Service, ns, name};
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

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
std::shared_ptr<const model::ClientLimits> client_limits(Reporter& b, const StoredObject& so,
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

model::RouteOptions route_options(Reporter& b, const StoredObject& so, const k8s::Ingress& ing) {
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

using SliceIndex =
    std::map<std::pair<std::string, std::string>, std::vector<const k8s::EndpointSlice*>>;

void index_slice(SliceIndex& index, const k8s::EndpointSlice* slice, bool add) {
  auto& list = index[{slice->meta.namespace_, slice->service_name()}];
  // Name order, as the store holds them, so endpoint order does not depend on history.
  auto at = std::lower_bound(list.begin(), list.end(), slice,
                             [](auto* a, auto* b) { return a->meta.name < b->meta.name; });
  if (add) {
    list.insert(at, slice);
  } else if (at != list.end() && *at == slice) {
    list.erase(at);
    if (list.empty()) index.erase({slice->meta.namespace_, slice->service_name()});
  }
}

/// The endpoints of one Service port that may take traffic, as kube-proxy chooses them: ready
/// ones; when none is ready, serving-and-terminating ones (so a rolling update never drops to
/// zero). With `node` set, only endpoints on that node (traffic policy Local).
/// `all_ready` (optional) says whether the result holds ready endpoints only.
std::vector<model::Endpoint> endpoints_for(const k8s::ObjectStore& store, const SliceIndex& slices,
                                           const k8s::Service& svc, const k8s::ServicePort& sp,
                                           const std::string& node, bool* all_ready = nullptr) {
  const std::string& ns = svc.meta.namespace_;
  std::vector<model::Endpoint> ready, terminating;
  // An address listed twice is used once: a scan while there are few, a set past that.
  std::set<model::SocketAddress> seen;
  auto is_new = [&](const model::SocketAddress& addr) {
    constexpr size_t kScan = 32;
    if (ready.size() + terminating.size() < kScan) {
      for (const auto* v : {&ready, &terminating})
        for (const auto& e : *v)
          if (e.address == addr) return false;
      return true;
    }
    if (seen.empty())
      for (const auto* v : {&ready, &terminating})
        for (const auto& e : *v) seen.insert(e.address);
    return seen.insert(addr).second;
  };
  auto add = [&](const k8s::Endpoint& ep, int32_t port) {
    if (port <= 0) return;
    if (!node.empty() && ep.node_name != node) return;
    bool use_ready = ep.conditions.ready;
    bool use_fallback = !ep.conditions.ready && ep.conditions.serving && ep.conditions.terminating;
    if (!use_ready && !use_fallback) return;
    for (const auto& ip : ep.addresses) {
      auto addr = model::SocketAddress::parse(ip, static_cast<uint16_t>(port));
      if (!addr || !is_new(*addr)) continue;
      (use_ready ? ready : terminating).push_back({*addr, ep.target_pod, ep.node_name});
    }
  };
  auto found = slices.find({ns, svc.meta.name});
  if (found != slices.end()) {
    for (const k8s::EndpointSlice* s : found->second) {
      if (s->address_type == "FQDN") continue;
      // EndpointSlice ports carry the Service port's name, and the target port as number.
      int32_t port = 0;
      for (const auto& p : s->ports)
        if (p.name == sp.name && p.protocol == sp.protocol) port = p.port;
      for (const auto& ep : s->endpoints) add(ep, port);
    }
  } else if (const k8s::Endpoints* eps = store.get<k8s::Endpoints>(ns, svc.meta.name)) {
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

// ------------------------------------------------------------------------------------------------
// What each object contributes, kept between translations. An Ingress's part depends on the
// Ingress, the Services its backends name (with their EndpointSlices or Endpoints) and the
// Secrets its spec.tls names; a Service's part on the Service, its endpoints and its allocation.
// Everything that settles one object against another (conflicting paths, the default backend,
// which certificate a host gets, HTTPS redirects) is decided when the parts are assembled, so a
// part never goes stale because of another object.

/// One path of an Ingress (or its default backend) as a route, before conflicts are settled.
struct PathRoute {
  std::string host;  // lower case; "" for rules without a host
  model::Route route;
  int rule = -1;  // spec.rules[rule].http.paths[path]; -1: spec.defaultBackend
  int path = 0;
  bool resource = false;  // a resource backend (not supported)
  /// Where this path or its backend is reported.
  std::string field(bool backend) const {
    std::string f = rule < 0 ? std::string("spec.defaultBackend")
                             : fmt::format("spec.rules[{}].http.paths[{}]", rule, path);
    if (backend)
      f += rule < 0 ? (resource ? ".resource" : ".service")
                    : (resource ? ".backend.resource" : ".backend.service");
    return f;
  }
  /// Why this backend cannot take traffic, if it cannot; reported when the route is used.
  std::string_view problem() const {
    if (resource) return "resource backends are not supported by kedge";
    return route.cluster->problem;
  }
};

struct Translator::IngressPart {
  k8s::StoredObjectConstPtr so;    // the version translated
  const ObjectKey* key = nullptr;  // its key in State::ingresses
  bool served = false;
  std::string id;                       // "namespace/name"
  std::vector<ObjectKey> deps;          // Services and Secrets read
  std::vector<std::string> rule_hosts;  // lower case, once each ("" for rules without a host)
  std::vector<std::string> hosts;       // rule hosts and certificate hosts
  k8s::Issues issues;                   // annotations and certificates
  std::vector<std::pair<std::string, tls::ServerContextConstPtr>> certificates;  // lower-case host
  bool redirect_allowed = true;  // not nginx.ingress.kubernetes.io/ssl-redirect: "false"
  using PathRoute = translate::PathRoute;
  std::optional<PathRoute> default_backend;
  std::vector<PathRoute> routes;  // rule and path order
};

namespace {

/// Oldest first, then by namespace/name: the order that settles conflicts.
bool older(const Translator::IngressPart* a, const Translator::IngressPart* b) {
  const auto& ta = std::get<k8s::Ingress>(a->so->object).meta.creation_timestamp;
  const auto& tb = std::get<k8s::Ingress>(b->so->object).meta.creation_timestamp;
  return ta != tb ? ta < tb : *a->key < *b->key;
}

}  // namespace

struct Translator::ServicePart {
  std::vector<std::pair<std::string, model::ClusterConstPtr>> ports;  // service_ports entries
  std::vector<model::L4Listener> l4;
  std::vector<model::HealthCheckListener> health;
  k8s::Issues issues;
};

struct Translator::State {
  bool primed = false;
  k8s::ObjectStore store;  // what the parts were built from
  Options options;
  std::shared_ptr<const Allocations> allocations;
  SliceIndex slices;
  std::map<ObjectKey, std::map<std::string, model::ClusterConstPtr>> clusters;  // by Service
  std::map<ObjectKey, IngressPart> ingresses;
  std::map<ObjectKey, ServicePart> services;
  // The parts a snapshot gathers from (served Ingresses with issues; Services with issues, L4
  // listeners or health checks), so that a snapshot does not walk all of them.
  std::set<ObjectKey> ingresses_with_issues, services_to_gather;
  std::map<ObjectKey, std::set<ObjectKey>> dependents;  // Service or Secret → Ingresses
  // Assembly: what each host is built from, and what must be built again.
  std::unordered_map<std::string, std::vector<const IngressPart*>> hosts;
  std::set<std::string> dirty_hosts;
  std::map<std::string, k8s::Issues> host_issues;  // conflicts and backend problems, by host
  std::set<const IngressPart*, bool (*)(const IngressPart*, const IngressPart*)> defaults{older};
  ChunkedMap<std::string, bool> served;
  std::vector<std::string> stale_ports;  // service_ports keys of Service parts dropped
  // Ingress and Service keys whose parts were dropped (or whose objects came or went) since the
  // last translation: only these can lack a part, unless walk_all.
  std::set<ObjectKey> rebuild;
  bool walk_all = true;
  model::SnapshotConstPtr previous;  // the next snapshot starts from its shared maps
};

Translator::Translator() : state_(std::make_unique<State>()) {}
Translator::~Translator() = default;
Translator::Translator(Translator&&) noexcept = default;
Translator& Translator::operator=(Translator&&) noexcept = default;

namespace {

bool same_options(const Options& a, const Options& b) {
  return a.ingress_class == b.ingress_class &&
         a.watch_ingress_without_class == b.watch_ingress_without_class &&
         a.node_name == b.node_name && a.node_addresses == b.node_addresses &&
         a.external_names == b.external_names && a.certificates == b.certificates &&
         a.fallback_certificate == b.fallback_certificate &&
         a.default_ssl_certificate == b.default_ssl_certificate;
}

}  // namespace

void Translator::add_ingress(const ObjectKey& key, IngressPart part) {
  State& s = *state_;
  auto at = s.ingresses.insert_or_assign(key, std::move(part)).first;
  IngressPart& p = at->second;
  p.key = &at->first;
  for (const ObjectKey& dep : p.deps) s.dependents[dep].insert(key);
  if (p.served && !p.issues.empty())
    s.ingresses_with_issues.insert(key);
  else
    s.ingresses_with_issues.erase(key);
  if (!p.served) return;
  for (const std::string& host : p.hosts) {
    s.hosts[host].push_back(&p);
    s.dirty_hosts.insert(host);
  }
  if (p.default_backend) s.defaults.insert(&p);
  s.served[p.id] = true;
}

void Translator::drop_ingress(const ObjectKey& key) {
  State& s = *state_;
  s.rebuild.insert(key);
  s.ingresses_with_issues.erase(key);
  auto it = s.ingresses.find(key);
  if (it == s.ingresses.end()) return;
  const IngressPart& p = it->second;
  if (p.served) {
    for (const std::string& host : p.hosts) {
      auto& parts = s.hosts[host];
      std::erase(parts, &p);
      if (parts.empty()) s.hosts.erase(host);
      s.dirty_hosts.insert(host);
    }
    s.defaults.erase(&p);
    s.served.erase(p.id);
  }
  s.ingresses.erase(it);
}

void Translator::drop_service(const ObjectKey& key) {
  State& s = *state_;
  s.rebuild.insert(key);
  s.services_to_gather.erase(key);
  auto it = s.services.find(key);
  if (it == s.services.end()) return;
  for (auto& [name, c] : it->second.ports) s.stale_ports.push_back(name);
  s.services.erase(it);
}

/// Brings the caches up to `store`: drops every part the differences touch.
void Translator::invalidate(const k8s::ObjectStore& store, const Options& options,
                            const std::shared_ptr<const Allocations>& allocations) {
  State& s = *state_;
  std::set<ObjectKey> dirty;  // Ingress, Service and Secret keys whose parts must be rebuilt
  bool everything = !s.primed || !same_options(s.options, options);
  auto touch = [&](const StoredObject* o) {
    if (!o) return;
    ObjectKey key = k8s::key_of(*o);
    switch (key.kind) {
      case k8s::Kind::EndpointSlice: {
        const auto& slice = std::get<k8s::EndpointSlice>(o->object);
        dirty.insert(service_key(slice.meta.namespace_, slice.service_name()));
        break;
      }
      case k8s::Kind::Endpoints:
        dirty.insert(service_key(key.namespace_, key.name));
        break;
      case k8s::Kind::IngressClass:
        everything = true;  // which Ingresses are served
        break;
      default:
        dirty.insert(std::move(key));
    }
  };
  if (!everything) {
    auto slice = [](const StoredObject& o) { return &std::get<k8s::EndpointSlice>(o.object); };
    k8s::ObjectStore::diff(s.store, store, [&](const StoredObject* a, const StoredObject* b) {
      for (auto [o, added] : {std::pair{a, false}, std::pair{b, true}}) {
        if (!o) continue;
        touch(o);
        if (k8s::kind_of(o->object) == k8s::Kind::EndpointSlice)
          index_slice(s.slices, slice(*o), added);
      }
    });
  }
  if (!everything && allocations != s.allocations) {
    // Services whose allocation changed (the maps share the chunks nothing changed in).
    static const Allocations none;
    const auto& before = (s.allocations ? *s.allocations : none).services;
    const auto& after = (allocations ? *allocations : none).services;
    using Services = decltype(Allocations::services);
    Services::diff(before, after,
                   [&](const Services::value_type* a, const Services::value_type* b) {
                     const std::string& id = (a ? a : b)->first;
                     auto slash = id.find('/');
                     dirty.insert(service_key(id.substr(0, slash), id.substr(slash + 1)));
                   });
  }
  if (everything) {  // start again from nothing
    s = State{};
    s.options = options;
    s.primed = true;
  }
  s.walk_all = everything;
  s.rebuild.clear();
  s.store = store;  // the slice index points into it
  s.allocations = allocations;
  if (everything) {
    s.store.for_each<k8s::EndpointSlice>(
        [&](const k8s::EndpointSlice& e, const StoredObject&) { index_slice(s.slices, &e, true); });
    return;
  }
  for (const ObjectKey& key : dirty) {
    switch (key.kind) {
      case k8s::Kind::Ingress:
        drop_ingress(key);
        break;
      case k8s::Kind::Service:
        s.clusters.erase(key);
        drop_service(key);
        [[fallthrough]];
      case k8s::Kind::Secret:
        if (auto it = s.dependents.find(key); it != s.dependents.end()) {
          for (const ObjectKey& ing : it->second) drop_ingress(ing);
          s.dependents.erase(it);
        }
        break;
      default:
        break;
    }
  }
}

model::ClusterConstPtr Translator::cluster(const std::string& ns,
                                           const k8s::IngressServiceBackend& backend,
                                           model::LbPolicy policy) {
  State& s = *state_;
  std::string port_text =
      backend.port.number ? std::to_string(*backend.port.number) : backend.port.name;
  std::string name = fmt::format("{}/{}:{}", ns, backend.name, port_text);
  std::string key = name + (policy == model::LbPolicy::LeastRequest ? "#lr" : "");
  auto& of_service = s.clusters[service_key(ns, backend.name)];
  if (auto it = of_service.find(key); it != of_service.end()) return it->second;
  auto c = std::make_shared<model::Cluster>();
  c->name = name;
  c->lb = policy;
  const k8s::Service* svc = s.store.get<k8s::Service>(ns, backend.name);
  const k8s::ServicePort* sp = nullptr;
  if (svc)
    for (const auto& p : svc->ports)
      if (backend.port.number ? p.port == *backend.port.number : p.name == backend.port.name) {
        sp = &p;
        break;
      }
  if (!svc) {
    c->problem = fmt::format("service \"{}/{}\" not found", ns, backend.name);
  } else if (svc->type == "ExternalName") {
    // The control thread resolved the name by DNS before translating.
    int32_t port = sp ? (sp->target_port.number ? *sp->target_port.number : sp->port)
                      : backend.port.number.value_or(0);
    auto it = s.options.external_names.find(svc->external_name);
    if (port <= 0) {
      c->problem = fmt::format("ExternalName service \"{}/{}\" has no port {}", ns, backend.name,
                               backend.port.name);
    } else if (it == s.options.external_names.end() || it->second.empty()) {
      c->problem = fmt::format("ExternalName \"{}\" of service \"{}/{}\" did not resolve",
                               svc->external_name, ns, backend.name);
    } else {
      for (const auto& ip : it->second)
        if (auto addr = model::SocketAddress::parse(ip, static_cast<uint16_t>(port)))
          c->endpoints.push_back({*addr, svc->external_name, ""});
    }
  } else if (!sp) {
    c->problem = fmt::format("service \"{}/{}\" has no port {}", ns, backend.name,
                             backend.port.number ? std::to_string(*backend.port.number)
                                                 : "named \"" + backend.port.name + "\"");
  } else if (sp->protocol != "TCP") {
    c->problem = fmt::format("service port {} is {}, not TCP", sp->port, sp->protocol);
  } else {
    c->endpoints = endpoints_for(s.store, s.slices, *svc, *sp, "");
    if (c->endpoints.empty())
      c->problem = fmt::format("service \"{}/{}\" port {} has no ready endpoints", ns, backend.name,
                               sp->port);
  }
  return of_service.emplace(key, std::move(c)).first->second;
}

Translator::IngressPart Translator::ingress_part(const k8s::StoredObjectConstPtr& so) {
  State& s = *state_;
  const auto& ing = std::get<k8s::Ingress>(so->object);
  IngressPart part;
  part.so = so;
  part.served = serves_ingress(s.store, s.options, ing);
  if (!part.served) return part;
  const std::string& ns = ing.meta.namespace_;
  part.id = ns + "/" + ing.meta.name;
  Reporter b{part.issues};

  // Certificates from the Secrets named in spec.tls.
  if (s.options.certificates) {
    CertificateCache& cache = *s.options.certificates;
    for (size_t i = 0; i < ing.tls.size(); ++i) {
      const k8s::IngressTls& t = ing.tls[i];
      if (t.secret_name.empty()) continue;  // ingress-nginx: the default certificate
      part.deps.push_back(ObjectKey{k8s::Kind::Secret, ns, t.secret_name});
      const StoredObject* secret_so = s.store.find(part.deps.back());
      if (!secret_so) {
        b.report(*so, fmt::format("spec.tls[{}].secretName", i),
                 fmt::format("Secret {}/{} not found", ns, t.secret_name));
        continue;
      }
      auto found = cache.get(std::get<k8s::Secret>(secret_so->object));
      if (!found.error.empty())
        b.report(
            *secret_so, "data",
            fmt::format("used by Ingress {}: {}{}", part.id, found.error,
                        found.context ? "; the previous certificate keeps serving" : "; not used"));
      if (!found.context) continue;
      std::vector<std::string> hosts = t.hosts;
      if (hosts.empty())  // no hosts: every rule host of this Ingress the certificate covers
        for (const auto& rule : ing.rules)
          if (!rule.host.empty() && found.context->covers(rule.host)) hosts.push_back(rule.host);
      for (const std::string& h : hosts) part.certificates.emplace_back(lower(h), found.context);
    }
  }

  model::RouteOptions opts = route_options(b, *so, ing);
  model::LbPolicy policy = lb_policy(ing);
  part.redirect_allowed =
      ing.meta.annotation("nginx.ingress.kubernetes.io/ssl-redirect") != "false";
  auto make = [&](const k8s::IngressBackend& backend, IngressPart::PathRoute& pr) {
    model::Route& route = pr.route;
    route.ingress = part.id;
    route.options = opts;
    if (backend.resource) {
      pr.resource = true;
      auto c = std::make_shared<model::Cluster>();
      c->name = part.id + ":resource";
      c->problem = "resource backends are not supported";
      route.cluster = std::move(c);
    } else {
      part.deps.push_back(service_key(ns, backend.service->name));
      route.cluster = cluster(ns, *backend.service, policy);
    }
    route.stats_key = fmt::format("ingress=\"{}\",service=\"{}\"", part.id, route.cluster->name);
  };
  if (ing.default_backend) {
    part.default_backend.emplace();
    part.default_backend->route.path = "/";
    make(*ing.default_backend, *part.default_backend);
  }
  for (size_t ri = 0; ri < ing.rules.size(); ++ri) {
    const k8s::IngressRule& rule = ing.rules[ri];
    std::string host = lower(rule.host);
    for (size_t pi = 0; pi < rule.paths.size(); ++pi) {
      const k8s::HttpIngressPath& p = rule.paths[pi];
      IngressPart::PathRoute& pr = part.routes.emplace_back();
      pr.host = host;
      pr.rule = static_cast<int>(ri);
      pr.path = static_cast<int>(pi);
      model::Route& r = pr.route;
      // ImplementationSpecific is matched as Prefix (documented in docs/ingress.md).
      r.match =
          p.path_type == k8s::PathType::Exact ? model::MatchType::Exact : model::MatchType::Prefix;
      r.path = p.path.empty() ? "/" : p.path;
      if (r.match == model::MatchType::Prefix)
        while (r.path.size() > 1 && r.path.back() == '/') r.path.pop_back();
      make(p.backend, pr);
    }
  }
  std::sort(part.deps.begin(), part.deps.end());
  part.deps.erase(std::unique(part.deps.begin(), part.deps.end()), part.deps.end());
  for (const auto& rule : ing.rules) part.rule_hosts.push_back(lower(rule.host));
  std::sort(part.rule_hosts.begin(), part.rule_hosts.end());
  part.rule_hosts.erase(std::unique(part.rule_hosts.begin(), part.rule_hosts.end()),
                        part.rule_hosts.end());
  part.hosts = part.rule_hosts;
  for (const auto& [host, context] : part.certificates) part.hosts.push_back(host);
  std::sort(part.hosts.begin(), part.hosts.end());
  part.hosts.erase(std::unique(part.hosts.begin(), part.hosts.end()), part.hosts.end());
  return part;
}

/// Service ports as the L4 data plane and the API proxy see them.
Translator::ServicePart Translator::service_part(const k8s::Service& svc, const StoredObject& so) {
  State& s = *state_;
  const Options& options = s.options;
  ServicePart part;
  const ServiceAllocation* alloc = nullptr;
  if (s.allocations) {
    auto it = s.allocations->services.find(svc.meta.namespace_ + "/" + svc.meta.name);
    if (it != s.allocations->services.end()) alloc = &it->second;
  }
  Reporter b{part.issues};
  const std::string id = svc.meta.namespace_ + "/" + svc.meta.name;
  auto set_port = [&](std::string key, const model::ClusterConstPtr& c, bool replace) {
    for (auto& [k, v] : part.ports)
      if (k == key) {
        if (replace) v = c;
        return;
      }
    part.ports.emplace_back(std::move(key), c);
  };
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
      c->name = fmt::format("{}:{}/{}{}", id, sp.port, sp.protocol, node.empty() ? "" : "@" + node);
      c->node = node;
      bool ready = false;
      c->endpoints = endpoints_for(s.store, s.slices, svc, sp, node, &ready);
      if (!node.empty() && ready)
        for (const auto& e : c->endpoints) local_ready.insert(e.address.ip);
      return c;
    };
    model::ClusterConstPtr all = make("");
    if (sp.protocol == "TCP") {
      set_port(fmt::format("{}:{}", id, sp.port), all, true);
      if (!sp.name.empty()) set_port(fmt::format("{}:{}", id, sp.name), all, true);
      set_port(id + ":", all, false);  // no port named: the first one
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
      part.l4.push_back({*addr, proto, role, name, std::move(cluster), affinity});
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
        part.health.push_back({*addr, svc.meta.namespace_, svc.meta.name, local_ready.size()});
  return part;
}

/// Builds host `host` again from the Ingresses that name it, oldest first: its certificate, its
/// routes (a path an older Ingress defined is refused) and their HTTPS redirects.
void Translator::assemble_host(const std::string& host, model::Snapshot& snap) {
  State& s = *state_;
  std::vector<const IngressPart*> parts;
  if (auto it = s.hosts.find(host); it != s.hosts.end()) parts = it->second;
  std::sort(parts.begin(), parts.end(), older);
  const tls::ServerContextConstPtr* certificate = nullptr;
  for (const IngressPart* p : parts) {
    for (const auto& [h, context] : p->certificates)
      if (h == host) {
        certificate = &context;
        break;
      }
    if (certificate) break;
  }
  if (certificate)
    snap.certificates[host] = *certificate;
  else
    snap.certificates.erase(host);

  k8s::Issues issues;
  Reporter b{issues};
  model::VirtualHost vh;
  vh.name = host;
  bool named = false;
  for (const IngressPart* p : parts) {
    if (!std::binary_search(p->rule_hosts.begin(), p->rule_hosts.end(), host)) continue;
    named = true;
    for (const IngressPart::PathRoute& pr : p->routes) {
      if (pr.host != host) continue;
      const model::Route& r = pr.route;
      auto owner = std::find_if(vh.routes.begin(), vh.routes.end(), [&](const model::Route& o) {
        return o.match == r.match && o.path == r.path;
      });
      if (owner != vh.routes.end()) {
        b.report(*p->so, pr.field(false),
                 fmt::format("host \"{}\" path \"{}\" ({}) is already defined by Ingress {} "
                             "(older, or first by namespace/name); ignored",
                             host, r.path, r.match == model::MatchType::Exact ? "Exact" : "Prefix",
                             owner->ingress));
        continue;
      }
      if (!pr.problem().empty()) b.report(*p->so, pr.field(true), std::string(pr.problem()));
      model::Route& added = vh.routes.emplace_back(r);
      added.ssl_redirect = !host.empty() && p->redirect_allowed && certificate;
    }
  }
  std::stable_sort(
      vh.routes.begin(), vh.routes.end(), [](const model::Route& a, const model::Route& c) {
        if (a.path.size() != c.path.size()) return a.path.size() > c.path.size();
        return a.match == model::MatchType::Exact && c.match != model::MatchType::Exact;
      });
  if (issues.empty())
    s.host_issues.erase(host);
  else
    s.host_issues[host] = std::move(issues);
  if (host.empty()) {
    snap.any_host = named ? std::move(vh) : model::VirtualHost{};
    return;
  }
  bool wildcard = host.starts_with("*.");
  model::HostMap& map = wildcard ? snap.wildcard_hosts : snap.exact_hosts;
  std::string_view key = wildcard ? std::string_view(host).substr(1) : std::string_view(host);
  if (named)
    map[key] = std::move(vh);
  else
    map.erase(key);
}

Translation Translator::translate(const k8s::ObjectStore& store, const Options& options,
                                  uint64_t generation,
                                  std::shared_ptr<const Allocations> allocations) {
  invalidate(store, options, allocations);
  State& s = *state_;
  last_ = {};
  Translation out;
  Reporter b{out.issues};

  // Parts for the Ingresses and Services that have none (new, changed, or touched by a change).
  // The store and the parts are both in key order: walk them together.
  auto walk = [&](k8s::Kind kind, auto& parts, auto build, auto drop) {
    if (!s.walk_all) {
      // Every other object has its part, and these parts are gone already (the keys come from
      // drops): build those whose objects are still there.
      for (auto k = s.rebuild.lower_bound(ObjectKey{kind, "", ""});
           k != s.rebuild.end() && k->kind == kind; ++k) {
        auto o = s.store.lower_bound(*k);
        if (o != s.store.end() && o->first == *k && !parts.contains(*k)) build(*k, o->second);
      }
      return;
    }
    const auto& all = s.store;
    auto o = all.lower_bound(ObjectKey{kind, "", ""});
    auto p = parts.begin();
    std::vector<ObjectKey> gone;
    while (true) {
      bool more_objects = o != all.end() && o->first.kind == kind;
      if (!more_objects && p == parts.end()) break;
      if (!more_objects || (p != parts.end() && p->first < o->first)) {
        gone.push_back((p++)->first);
      } else if (p == parts.end() || o->first < p->first) {
        build(o->first, o->second);
        ++o;
      } else {
        ++o;
        ++p;
      }
    }
    for (const ObjectKey& key : gone) drop(key);
  };
  std::vector<const ServicePart*> fresh;  // Service parts built this time
  walk(
      k8s::Kind::Ingress, s.ingresses,
      [&](const ObjectKey& key, const k8s::StoredObjectConstPtr& so) {
        add_ingress(key, ingress_part(so));
        ++last_.ingresses;
      },
      [&](const ObjectKey& key) { drop_ingress(key); });
  walk(
      k8s::Kind::Service, s.services,
      [&](const ObjectKey& key, const k8s::StoredObjectConstPtr& so) {
        const auto& svc = std::get<k8s::Service>(so->object);
        if (svc.type == "ExternalName") return;
        const ServicePart& part = s.services.emplace(key, service_part(svc, *so)).first->second;
        if (!part.issues.empty() || !part.l4.empty() || !part.health.empty())
          s.services_to_gather.insert(key);
        fresh.push_back(&part);
      },
      [&](const ObjectKey& key) { drop_service(key); });

  // The snapshot starts from the previous one's maps; what changed is built again.
  auto snap = std::make_shared<model::Snapshot>();
  snap->generation = generation;
  if (s.previous) {
    snap->exact_hosts = s.previous->exact_hosts;
    snap->wildcard_hosts = s.previous->wildcard_hosts;
    snap->any_host = s.previous->any_host;
    snap->certificates = s.previous->certificates;
    snap->service_ports = s.previous->service_ports;
  }

  // Certificates: the default one; the others are per host.
  snap->default_certificate = s.options.fallback_certificate;
  if (s.options.certificates) {
    CertificateCache& cache = *s.options.certificates;
    cache.retain(s.store);
    if (const std::string& name = s.options.default_ssl_certificate; !name.empty()) {
      auto slash = name.find('/');
      const k8s::Secret* secret =
          slash == std::string::npos
              ? nullptr
              : s.store.get<k8s::Secret>(name.substr(0, slash), name.substr(slash + 1));
      if (secret) {
        auto found = cache.get(*secret);
        if (found.context) snap->default_certificate = found.context;
        if (!found.error.empty())
          spdlog::warn("--default-ssl-certificate {}: {}", name, found.error);
      } else {
        spdlog::warn("--default-ssl-certificate {}: Secret not found; using the self-signed one",
                     name);
      }
    }
  }
  last_.hosts = s.dirty_hosts.size();
  for (const std::string& host : s.dirty_hosts) assemble_host(host, *snap);
  s.dirty_hosts.clear();

  for (const ObjectKey& key : s.ingresses_with_issues) {
    const IngressPart& part = s.ingresses.at(key);
    out.issues.insert(out.issues.end(), part.issues.begin(), part.issues.end());
  }
  // The default backend: the oldest Ingress's.
  for (const IngressPart* part : s.defaults) {
    const IngressPart::PathRoute& pr = *part->default_backend;
    if (!snap->default_backend) {
      snap->default_backend = pr.route;
      if (!pr.problem().empty()) b.report(*part->so, pr.field(true), std::string(pr.problem()));
    } else {
      b.report(*part->so, "spec.defaultBackend",
               fmt::format("conflicts with the default backend of Ingress {} (older); ignored",
                           snap->default_backend->ingress));
    }
  }
  for (const auto& [host, issues] : s.host_issues)
    out.issues.insert(out.issues.end(), issues.begin(), issues.end());
  snap->served_ingresses = s.served;

  // Services, in key order.
  for (const std::string& name : s.stale_ports) snap->service_ports.erase(name);
  s.stale_ports.clear();
  for (const ObjectKey& key : s.services_to_gather) {
    const ServicePart& part = s.services.at(key);
    out.issues.insert(out.issues.end(), part.issues.begin(), part.issues.end());
    snap->l4_listeners.insert(snap->l4_listeners.end(), part.l4.begin(), part.l4.end());
    snap->health_checks.insert(snap->health_checks.end(), part.health.begin(), part.health.end());
  }
  last_.services = fresh.size();
  for (const ServicePart* part : fresh)
    for (const auto& [name, c] : part->ports) snap->service_ports[name] = c;
  s.previous = snap;
  out.snapshot = std::move(snap);
  return out;
}

Translation translate(const k8s::ObjectStore& store, const Options& options, uint64_t generation,
                      const Allocations* allocations) {
  // Not owned: the Translator lives only for this call.
  std::shared_ptr<const Allocations> borrowed(std::shared_ptr<const Allocations>(), allocations);
  return Translator().translate(store, options, generation, borrowed);
}

}  // namespace kedge::translate
