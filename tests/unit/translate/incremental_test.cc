// A Translator that keeps its parts between calls must give, after any sequence of changes, the
// snapshot and issues a fresh one gives for the same objects. Random changes to a small world of
// Ingresses, Services, EndpointSlices, Secrets and an IngressClass, checked after every step.
#include "base64.h"
#include "k8s/manifest.h"
#include "tls/server_context.h"
#include "translate/translator.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <sstream>

namespace kedge::translate {
namespace {

std::string b64(const std::string& s) { return testing_support::base64(s); }

std::string cluster_text(const model::ClusterConstPtr& c) {
  if (!c) return "-";
  std::string out =
      fmt::format("{}|{}|{}|{}[", c->name, static_cast<int>(c->lb), c->node, c->problem);
  for (const auto& e : c->endpoints)
    out += fmt::format("{} {} {};", e.address.to_string(), e.pod, e.node);
  return out + "]";
}

std::string route_text(const model::Route& r) {
  const model::RouteOptions& o = r.options;
  std::string limits = "-";
  if (o.client_limits) {
    limits = fmt::format("{} {} {}", o.client_limits->connections, o.client_limits->scope,
                         o.client_limits->exempt.size());
    for (const auto& rate : o.client_limits->rates)
      limits += fmt::format(" {}/{}", rate.per_second, rate.burst);
  }
  return fmt::format("{} {} {} {} {} redirect={} opts={} {} {} {} {} limits={}\n",
                     static_cast<int>(r.match), r.path, cluster_text(r.cluster), r.ingress,
                     r.stats_key, r.ssl_redirect, static_cast<int>(o.protocol), o.max_body_bytes,
                     o.connect_timeout_ms, o.read_timeout_ms, o.send_timeout_ms, limits);
}

template <class V, class Fn>
std::string sorted_text(const model::SharedMap<V>& map, Fn text) {
  std::vector<std::string> lines;
  map.for_each([&](const std::string& k, const V& v) { lines.push_back(k + " => " + text(v)); });
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

/// Everything a snapshot holds, as text, except its generation.
std::string describe(const model::Snapshot& s) {
  auto vhost = [](const model::VirtualHost& vh) {
    std::string out = "vh " + vh.name + "\n";
    for (const auto& r : vh.routes) out += "  " + route_text(r);
    return out;
  };
  auto pointer = [](const auto& p) { return fmt::format("{}", static_cast<const void*>(p.get())); };
  std::string out = "exact:\n" + sorted_text(s.exact_hosts, vhost);
  out += "wildcard:\n" + sorted_text(s.wildcard_hosts, vhost);
  out += "any:\n" + vhost(s.any_host);
  out += "default: " + (s.default_backend ? route_text(*s.default_backend) : "none\n");
  for (const auto& [id, served] : s.served_ingresses) out += "served " + id + "\n";
  out += "certificates:\n" + sorted_text(s.certificates, pointer);
  out += "default certificate " + pointer(s.default_certificate) + "\n";
  for (const auto& l : s.l4_listeners)
    out += fmt::format("l4 {} {} {} {} {} {}\n", l.address.to_string(),
                       static_cast<int>(l.protocol), static_cast<int>(l.role), l.service,
                       cluster_text(l.cluster), l.affinity_timeout_s);
  for (const auto& h : s.health_checks)
    out += fmt::format("health {} {}/{} {}\n", h.address.to_string(), h.namespace_, h.name,
                       h.local_endpoints);
  out += "service ports:\n" + sorted_text(s.service_ports, cluster_text);
  for (const auto& c : s.clusters()) out += "cluster " + cluster_text(c) + "\n";
  return out;
}

std::vector<std::string> issue_lines(const k8s::Issues& issues) {
  std::vector<std::string> out;
  for (const auto& i : issues) out.push_back(i.to_string());
  std::sort(out.begin(), out.end());
  return out;
}

/// Random versions of a fixed set of objects.
class World {
 public:
  explicit World(uint32_t seed) : rng_(seed) {
    pems_ = {tls::make_self_signed({"x.test", "y.test"}), tls::make_self_signed({"*.w.test"})};
  }

  /// A new random version of one of the objects, or its removal (nullopt).
  std::pair<k8s::ObjectKey, std::optional<std::string>> change() {
    std::string ns = pick({"a", "b"});
    switch (below(12)) {
      case 0:
      case 1:
      case 2:
      case 3:
        return versioned(k8s::Kind::Ingress, ns, fmt::format("i{}", below(6)),
                         [&](auto& n) { return ingress(ns, n); });
      case 4:
      case 5:
        return versioned(k8s::Kind::Service, ns, fmt::format("s{}", below(4)),
                         [&](auto& n) { return service(ns, n); });
      case 6:
      case 7:
      case 8:
        return versioned(k8s::Kind::EndpointSlice, ns, fmt::format("e{}", below(6)),
                         [&](auto& n) { return slice(ns, n); });
      case 9:
      case 10:
        return versioned(k8s::Kind::Secret, ns, fmt::format("t{}", below(2)),
                         [&](auto& n) { return secret(ns, n); });
      default:
        return versioned(k8s::Kind::IngressClass, "", "kedge-default",
                         [&](auto&) { return ingress_class(); });
    }
  }

 private:
  size_t below(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  bool chance(int percent) { return below(100) < static_cast<size_t>(percent); }
  std::string pick(std::initializer_list<const char*> options) {
    return *(options.begin() + below(options.size()));
  }

  template <class Make>
  std::pair<k8s::ObjectKey, std::optional<std::string>> versioned(k8s::Kind kind,
                                                                  const std::string& ns,
                                                                  const std::string& name,
                                                                  Make make) {
    k8s::ObjectKey key{kind, ns, name};
    if (chance(15)) return {key, std::nullopt};
    return {key, make(name)};
  }

  std::string backend() {
    if (chance(5)) return "resource: {apiGroup: k8s.example.com, kind: Bucket, name: b}";
    std::string port = chance(30) ? "name: http" : fmt::format("number: {}", pick({"80", "81"}));
    return fmt::format("service: {{name: s{}, port: {{{}}}}}", below(5), port);
  }

  std::string ingress(const std::string& ns, const std::string& name) {
    std::string meta =
        fmt::format("  creationTimestamp: \"2026-01-0{}T00:00:00Z\"\n", below(3) + 1);
    std::string annotations;
    if (chance(20)) annotations += "nginx.ingress.kubernetes.io/ssl-redirect: \"false\", ";
    if (chance(15)) annotations += "nginx.ingress.kubernetes.io/load-balance: ewma, ";
    if (chance(10))
      annotations += "nginx.ingress.kubernetes.io/limit-rps: \"" + pick({"5", "x"}) + "\", ";
    if (chance(10)) annotations += "nginx.ingress.kubernetes.io/proxy-body-size: 1m, ";
    if (!annotations.empty()) meta += "  annotations: {" + annotations + "}\n";
    std::string spec;
    if (chance(30))
      spec += "  ingressClassName: " + pick({"kedge", "other", "kedge-default"}) + "\n";
    if (chance(20)) spec += "  defaultBackend: {" + backend() + "}\n";
    if (chance(40)) {
      spec += "  tls:\n";
      for (size_t i = 0, n = below(2) + 1; i < n; ++i) {
        spec += "  - secretName: " + pick({"t0", "t1", "missing"}) + "\n";
        if (chance(70)) spec += "    hosts: [" + pick({"x.test", "y.test", "\"*.w.test\""}) + "]\n";
      }
    }
    size_t rules = below(3) + (spec.find("defaultBackend") == std::string::npos ? 1 : 0);
    if (rules) spec += "  rules:\n";
    for (size_t r = 0; r < rules; ++r) {
      std::string host = pick({"x.test", "y.test", "\"*.w.test\"", "", "z.test"});
      if (chance(10)) {  // a rule that names only its host
        spec += "  - host: " + (host.empty() ? std::string("only.test") : host) + "\n";
        continue;
      }
      spec += host.empty() ? "  - http:\n" : "  - host: " + host + "\n    http:\n";
      spec += "      paths:\n";
      for (size_t p = 0, n = below(3) + 1; p < n; ++p)
        spec += fmt::format("      - {{path: {}, pathType: {}, backend: {{{}}}}}\n",
                            pick({"/", "/a", "/a/", "/b"}),
                            pick({"Prefix", "Exact", "ImplementationSpecific"}), backend());
    }
    return fmt::format(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {}\n  namespace: "
        "{}\n{}spec:\n{}",
        name, ns, meta, spec);
  }

  std::string service(const std::string& ns, const std::string& name) {
    std::string type = pick({"ClusterIP", "ClusterIP", "NodePort", "LoadBalancer"});
    std::string ports = "  - {name: http, port: 80, targetPort: 8080}\n";
    if (chance(50)) ports += "  - {name: grpc, port: 81, targetPort: 9090}\n";
    if (chance(10)) ports += "  - {name: dns, port: 53, protocol: UDP}\n";
    std::string extra;
    if (type != "ClusterIP" && chance(30)) extra += "  externalTrafficPolicy: Local\n";
    return fmt::format(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {}, namespace: {}}}\nspec:\n  type: "
        "{}\n{}  ports:\n{}",
        name, ns, type, extra, ports);
  }

  std::string slice(const std::string& ns, const std::string& name) {
    std::string endpoints;
    for (size_t i = 0, n = below(3); i < n; ++i)
      endpoints += fmt::format(
          "- addresses: [10.0.{}.{}]\n  conditions: {{ready: {}, serving: true, terminating: "
          "{}}}\n  nodeName: {}\n",
          below(2), below(4) + 1, chance(70), chance(30), pick({"node-1", "node-2"}));
    return fmt::format(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {}\n  "
        "namespace: {}\n  labels: {{kubernetes.io/service-name: s{}}}\naddressType: IPv4\n"
        "ports:\n- {{name: http, port: 8080}}\n- {{name: grpc, port: 9090}}\nendpoints:{}",
        name, ns, below(4), endpoints.empty() ? " []\n" : "\n" + endpoints);
  }

  std::string secret(const std::string& ns, const std::string& name) {
    const tls::PemPair& pem = pems_[below(pems_.size())];
    std::string key = chance(15) ? b64("not a key") : b64(pem.key);
    return fmt::format(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {}, namespace: {}}}\ntype: "
        "kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        name, ns, b64(pem.cert), key);
  }

  std::string ingress_class() {
    return fmt::format(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: kedge-default\n"
        "  annotations: {{ingressclass.kubernetes.io/is-default-class: \"{}\"}}\nspec: "
        "{{controller: {}}}\n",
        chance(50), pick({"kedge.dev/ingress-controller", "example.com/other"}));
  }

  std::mt19937 rng_;
  std::vector<tls::PemPair> pems_;
};

class IncrementalTranslation : public testing::TestWithParam<uint32_t> {};

TEST_P(IncrementalTranslation, MatchesAFreshTranslationAfterEveryChange) {
  World world(GetParam());
  CertificateCache cache;
  Options options;
  options.certificates = &cache;
  tls::PemPair fallback = tls::make_self_signed({"fallback"});
  options.fallback_certificate = *tls::ServerContext::from_pem(fallback.cert, fallback.key, "f");
  options.watch_ingress_without_class = GetParam() % 2 == 0;
  options.node_name = "node-1";
  options.node_addresses = {"192.0.2.1"};
  AllocatorConfig allocator;
  allocator.pools = {{"pool", {*Ipv4Range::parse("198.51.100.0/30", true)}, true}};

  Translator incremental;
  k8s::ObjectStore store;
  auto allocations = std::make_shared<const Allocations>();
  size_t built = 0, built_fresh = 0;
  for (int step = 0; step < 400; ++step) {
    auto [key, yaml] = world.change();
    if (!yaml) {
      store.erase(key);
    } else {
      k8s::ManifestFile m = k8s::parse_manifest(*yaml, "world.yaml");
      ASSERT_TRUE(m.issues.empty()) << *yaml << m.issues.front().to_string();
      ASSERT_EQ(m.objects.size(), 1u) << *yaml;
      store.upsert(std::make_shared<const k8s::StoredObject>(std::move(m.objects[0])));
    }
    AllocationResult allocated = allocate(store, *allocations, allocator);
    if (allocated.allocations != *allocations)
      allocations = std::make_shared<const Allocations>(std::move(allocated.allocations));

    Translation got = incremental.translate(store, options, step, allocations);
    built += incremental.last_work().ingresses;
    Translator fresh;
    Translation want = fresh.translate(store, options, step, allocations);
    built_fresh += fresh.last_work().ingresses;
    ASSERT_EQ(describe(*got.snapshot), describe(*want.snapshot))
        << "step " << step << " changed " << key.to_string() << "\n"
        << yaml.value_or("(deleted)");
    ASSERT_EQ(issue_lines(got.issues), issue_lines(want.issues)) << "step " << step;
  }
  // The parts were kept: far fewer Ingresses translated than translating everything each time.
  EXPECT_LT(built * 3, built_fresh);
}

INSTANTIATE_TEST_SUITE_P(Seeds, IncrementalTranslation, testing::Values(1u, 2u, 3u, 4u));

}  // namespace
}  // namespace kedge::translate
