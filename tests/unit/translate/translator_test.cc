#include "translate/translator.h"

#include "k8s/manifest.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace kedge::translate {
namespace {

std::vector<std::string> served(const model::Snapshot& s) {
  std::vector<std::string> out;
  for (const auto& [id, yes] : s.served_ingresses) out.push_back(id);
  return out;
}

using k8s::Issues;

std::string dump(const Issues& issues) {
  std::string out;
  for (const auto& i : issues) out += i.to_string() + "\n";
  return out;
}

// ---------------------------------------------------------------------------------------------
// YAML builders

struct P {
  std::string path;
  std::string type = "Prefix";
  std::string service = "web";
  std::string port = "80";  // a number, or a port name
};

std::string backend(const std::string& service, const std::string& port) {
  bool number = !port.empty() && std::all_of(port.begin(), port.end(), ::isdigit);
  return "{service: {name: " + service + ", port: {" + (number ? "number: " : "name: ") + port +
         "}}}";
}

/// One rule; an empty host is a rule without host.
std::string rule(const std::string& host, const std::vector<P>& paths) {
  std::string s = host.empty() ? "  - http:\n" : "  - host: \"" + host + "\"\n    http:\n";
  s += host.empty() ? "      paths:\n" : "      paths:\n";
  for (const auto& p : paths) {
    s += "      - {";
    if (!p.path.empty()) s += "path: \"" + p.path + "\", ";
    s += "pathType: " + p.type + ", backend: " + backend(p.service, p.port) + "}\n";
  }
  return s;
}

struct Ing {
  std::string name;
  std::string ns = "default";
  std::vector<std::string> rules;
  std::string meta;  // extra metadata lines, e.g. "  creationTimestamp: ...\n"
  std::string spec;  // extra spec lines, e.g. "  ingressClassName: kedge\n"
};

std::string ingress(const Ing& i) {
  std::string s = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: " + i.name +
                  "\n  namespace: " + i.ns + "\n" + i.meta + "spec:\n" + i.spec;
  if (!i.rules.empty()) {
    s += "  rules:\n";
    for (const auto& r : i.rules) s += r;
  }
  return s;
}

constexpr const char* kWebService = R"(apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: admin, port: 81, targetPort: admin-port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
- {name: http, port: 8080}
- {name: admin, port: 9090}
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: web-a}
  nodeName: node-1
- addresses: [10.0.0.2]
  conditions: {ready: false}
- addresses: [10.0.0.3]
  conditions: {ready: false, serving: true, terminating: true}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-2
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
- {name: http, port: 8080}
- {name: admin, port: 9090}
endpoints:
- addresses: [10.0.1.1]
)";

/// Services that differ only by name, one ready endpoint each, to tell routes apart.
std::string simple_service(const std::string& name, const std::string& ip,
                           const std::string& ns = "default") {
  return "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + ", namespace: " + ns +
         "}\nspec:\n  ports:\n  - {port: 80, targetPort: 8080}\n---\n"
         "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: " +
         name + "-x\n  namespace: " + ns + "\n  labels: {kubernetes.io/service-name: " + name +
         "}\naddressType: IPv4\nports:\n- {port: 8080}\nendpoints:\n- addresses: [" + ip + "]\n";
}

class TranslateTest : public testing::Test {
 protected:
  void add(const std::string& yaml) { docs_ += "---\n" + yaml; }

  Translation run(const Options& options = {}) {
    k8s::ManifestFile m = k8s::parse_manifest(docs_, "t.yaml");
    EXPECT_TRUE(m.issues.empty()) << dump(m.issues);
    store_ = {};
    for (auto& o : m.objects) store_.upsert(std::make_shared<const k8s::StoredObject>(o));
    Translation t = translate(store_, options, 7);
    EXPECT_NE(t.snapshot, nullptr);
    EXPECT_EQ(t.snapshot->generation, 7u);
    return t;
  }

  std::string docs_;
  k8s::ObjectStore store_;
};

/// "ns/ingress path(E|P) -> cluster", or "404".
std::string where(const model::Snapshot& s, std::string_view host, std::string_view path) {
  const model::Route* r = s.route(host, path);
  if (!r) return "404";
  return r->ingress + " " + r->path + (r->match == model::MatchType::Exact ? "(E)" : "(P)") +
         " -> " + (r->cluster ? r->cluster->name : "none");
}

std::vector<std::string> addresses(const model::ClusterConstPtr& c) {
  std::vector<std::string> out;
  if (!c) return out;
  for (const auto& e : c->endpoints) out.push_back(e.address.to_string());
  std::sort(out.begin(), out.end());
  return out;
}

const k8s::Issue* issue_for(const Issues& issues, const std::string& name,
                            const std::string& field_prefix = "") {
  for (const auto& i : issues)
    if (i.name == name && i.field.starts_with(field_prefix)) return &i;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Hosts

TEST_F(TranslateTest, HostMatching) {
  add(kWebService);
  add(ingress({.name = "exact", .rules = {rule("foo.example.com", {{.path = "/"}})}}));
  add(ingress({.name = "wild", .rules = {rule("*.example.com", {{.path = "/"}})}}));
  add(ingress({.name = "any", .rules = {rule("", {{.path = "/"}})}}));
  add(ingress({.name = "app", .rules = {rule("app.example.org", {{.path = "/app"}})}}));
  Translation t = run();
  EXPECT_TRUE(t.issues.empty()) << dump(t.issues);
  struct Case {
    const char* host;
    const char* path;
    const char* want;
  } cases[] = {
      {"foo.example.com", "/", "default/exact /(P) -> default/web:80"},
      {"bar.example.com", "/x", "default/wild /(P) -> default/web:80"},
      {"x.bar.example.com", "/", "default/any /(P) -> default/web:80"},  // one label only
      {"example.com", "/", "default/any /(P) -> default/web:80"},
      {"other.org", "/", "default/any /(P) -> default/web:80"},
      {"", "/", "default/any /(P) -> default/web:80"},
      // Case and port of the Host header do not matter.
      {"FOO.Example.COM", "/", "default/exact /(P) -> default/web:80"},
      {"foo.example.com:8443", "/", "default/exact /(P) -> default/web:80"},
      {"Bar.Example.com:80", "/", "default/wild /(P) -> default/web:80"},
      // Once a host's rules are chosen, an unmatched path does not fall back to other hosts.
      {"app.example.org", "/app/1", "default/app /app(P) -> default/web:80"},
      {"app.example.org", "/", "404"},
  };
  for (const auto& c : cases)
    EXPECT_EQ(where(*t.snapshot, c.host, c.path), c.want) << c.host << c.path;
}

TEST_F(TranslateTest, RuleHostsAreCaseInsensitive) {
  // Validation keeps upper case out of manifests; an Ingress put in the store some other way
  // is still keyed in lower case.
  add(kWebService);
  run();  // fills store_
  k8s::Ingress ing;
  ing.meta.name = "upper";
  ing.meta.namespace_ = "default";
  k8s::HttpIngressPath path;
  path.path = "/";
  path.backend.service = k8s::IngressServiceBackend{"web", {80, ""}};
  ing.rules.push_back({"Shop.Example.COM", {path}});
  ing.rules.push_back({"*.Wild.Example.COM", {path}});
  store_.upsert(std::make_shared<const k8s::StoredObject>(
      k8s::StoredObject{ing, k8s::RawJson(nlohmann::json::object()), {}, {"api", 0}}));
  Translation t = translate(store_, {}, 8);
  EXPECT_TRUE(t.snapshot->exact_hosts.contains("shop.example.com"));
  EXPECT_TRUE(t.snapshot->wildcard_hosts.contains(".wild.example.com"));
  EXPECT_EQ(where(*t.snapshot, "shop.example.com", "/"), "default/upper /(P) -> default/web:80");
  EXPECT_EQ(where(*t.snapshot, "SHOP.example.com", "/"), "default/upper /(P) -> default/web:80");
  EXPECT_EQ(where(*t.snapshot, "a.wild.example.com", "/"), "default/upper /(P) -> default/web:80");
}

// ---------------------------------------------------------------------------------------------
// Paths

TEST_F(TranslateTest, PathMatching) {
  add(kWebService);
  add(ingress({.name = "paths",
               .rules = {rule("h", {{.path = "/foo"},
                                    {.path = "/bar/"},
                                    {.path = "/exact", .type = "Exact"},
                                    {.path = "/impl", .type = "ImplementationSpecific"},
                                    {.path = "/a"},
                                    {.path = "/a/b"},
                                    {.path = "/same", .type = "Exact", .port = "81"},
                                    {.path = "/same"}})}}));
  Translation t = run();
  EXPECT_TRUE(t.issues.empty()) << dump(t.issues);
  struct Case {
    const char* path;
    const char* want;
  } cases[] = {
      {"/foo", "default/paths /foo(P) -> default/web:80"},
      {"/foo/", "default/paths /foo(P) -> default/web:80"},
      {"/foo/bar", "default/paths /foo(P) -> default/web:80"},
      {"/foobar", "404"},
      {"/bar", "default/paths /bar(P) -> default/web:80"},  // trailing slash of the rule ignored
      {"/bar/x", "default/paths /bar(P) -> default/web:80"},
      {"/barx", "404"},
      {"/exact", "default/paths /exact(E) -> default/web:80"},
      {"/exact/", "404"},
      {"/exact/x", "404"},
      {"/Exact", "404"},
      {"/impl", "default/paths /impl(P) -> default/web:80"},  // ImplementationSpecific = Prefix
      {"/impl/x", "default/paths /impl(P) -> default/web:80"},
      {"/implx", "404"},
      {"/a/b/c", "default/paths /a/b(P) -> default/web:80"},  // longest match wins
      {"/a/b", "default/paths /a/b(P) -> default/web:80"},
      {"/a/bc", "default/paths /a(P) -> default/web:80"},
      {"/a", "default/paths /a(P) -> default/web:80"},
      {"/same", "default/paths /same(E) -> default/web:81"},  // Exact beats Prefix
      {"/same/x", "default/paths /same(P) -> default/web:80"},
      {"/", "404"},
  };
  for (const auto& c : cases) EXPECT_EQ(where(*t.snapshot, "h", c.path), c.want) << c.path;
}

TEST_F(TranslateTest, ImplementationSpecificWithoutPathMatchesEverything) {
  add(kWebService);
  add(ingress(
      {.name = "i", .rules = {rule("h", {{.path = "", .type = "ImplementationSpecific"}})}}));
  Translation t = run();
  EXPECT_EQ(where(*t.snapshot, "h", "/"), "default/i /(P) -> default/web:80");
  EXPECT_EQ(where(*t.snapshot, "h", "/x/y"), "default/i /(P) -> default/web:80");
}

TEST_F(TranslateTest, RulesOfSeveralIngressesMerge) {
  add(simple_service("one", "10.1.0.1"));
  add(simple_service("two", "10.2.0.1"));
  add(ingress({.name = "a", .rules = {rule("h", {{.path = "/a", .service = "one"}})}}));
  add(ingress({.name = "b",
               .ns = "default",
               .rules = {rule("h", {{.path = "/b", .service = "two"}}),
                         rule("h", {{.path = "/c", .type = "Exact", .service = "two"}})}}));
  Translation t = run();
  EXPECT_TRUE(t.issues.empty()) << dump(t.issues);
  EXPECT_EQ(where(*t.snapshot, "h", "/a/x"), "default/a /a(P) -> default/one:80");
  EXPECT_EQ(where(*t.snapshot, "h", "/b"), "default/b /b(P) -> default/two:80");
  EXPECT_EQ(where(*t.snapshot, "h", "/c"), "default/b /c(E) -> default/two:80");
  EXPECT_EQ(t.snapshot->exact_hosts.size(), 1u);
  EXPECT_EQ(t.snapshot->exact_hosts.at("h").routes.size(), 3u);
  EXPECT_EQ(served(*t.snapshot), (std::vector<std::string>{"default/a", "default/b"}));
}

// ---------------------------------------------------------------------------------------------
// Conflicts

TEST_F(TranslateTest, ConflictOldestWins) {
  add(simple_service("one", "10.1.0.1"));
  add(simple_service("two", "10.2.0.1"));
  add(ingress({.name = "a-new",
               .rules = {rule("h", {{.path = "/x", .service = "one"}})},
               .meta = "  creationTimestamp: \"2024-02-01T00:00:00Z\"\n"}));
  add(ingress({.name = "z-old",
               .rules = {rule("h", {{.path = "/x/", .service = "two"},
                                    {.path = "/x", .type = "Exact", .service = "two"}})},
               .meta = "  creationTimestamp: \"2024-01-01T00:00:00Z\"\n"}));
  Translation t = run();
  // Same host, path ("/x/" is "/x") and type: the older Ingress keeps it.
  EXPECT_EQ(where(*t.snapshot, "h", "/x/1"), "default/z-old /x(P) -> default/two:80");
  // Another type on the same path is no conflict.
  EXPECT_EQ(where(*t.snapshot, "h", "/x"), "default/z-old /x(E) -> default/two:80");
  ASSERT_EQ(t.issues.size(), 1u) << dump(t.issues);
  const k8s::Issue& i = t.issues[0];
  EXPECT_EQ(i.kind, "Ingress");
  EXPECT_EQ(i.namespace_, "default");
  EXPECT_EQ(i.name, "a-new");
  EXPECT_EQ(i.field, "spec.rules[0].http.paths[0]");
  EXPECT_EQ(i.file, "t.yaml");
  EXPECT_GT(i.line, 0);
  EXPECT_NE(i.message.find("default/z-old"), std::string::npos) << i.message;
  // Both are served: the loser keeps its other routes and gets status.
  EXPECT_EQ(t.snapshot->served_ingresses.size(), 2u);
}

TEST_F(TranslateTest, ConflictAtEqualAgeGoesByNamespaceAndName) {
  add(simple_service("one", "10.1.0.1", "b-ns"));
  add(simple_service("two", "10.2.0.1", "a-ns"));
  add(simple_service("three", "10.3.0.1", "a-ns"));
  const char* ts = "  creationTimestamp: \"2024-01-01T00:00:00Z\"\n";
  add(ingress({.name = "x",
               .ns = "b-ns",
               .rules = {rule("h", {{.path = "/", .service = "one"}})},
               .meta = ts}));
  add(ingress({.name = "y",
               .ns = "a-ns",
               .rules = {rule("h", {{.path = "/", .service = "two"}})},
               .meta = ts}));
  add(ingress({.name = "x",
               .ns = "a-ns",
               .rules = {rule("h", {{.path = "/", .service = "three"}})},
               .meta = ts}));
  Translation t = run();
  EXPECT_EQ(where(*t.snapshot, "h", "/"), "a-ns/x /(P) -> a-ns/three:80");
  ASSERT_EQ(t.issues.size(), 2u) << dump(t.issues);
  EXPECT_NE(issue_for(t.issues, "y"), nullptr);
  EXPECT_EQ(issue_for(t.issues, "x")->namespace_, "b-ns");
}

TEST_F(TranslateTest, DefaultBackend) {
  add(simple_service("one", "10.1.0.1"));
  add(simple_service("two", "10.2.0.1"));
  add(ingress({.name = "second",
               .meta = "  creationTimestamp: \"2024-02-01T00:00:00Z\"\n",
               .spec = "  defaultBackend: " + backend("two", "80") + "\n"}));
  add(ingress({.name = "first",
               .rules = {rule("h", {{.path = "/app", .service = "one"}})},
               .meta = "  creationTimestamp: \"2024-01-01T00:00:00Z\"\n",
               .spec = "  defaultBackend: " + backend("one", "80") + "\n"}));
  Translation t = run();
  ASSERT_TRUE(t.snapshot->default_backend);
  EXPECT_EQ(where(*t.snapshot, "nothing", "/"), "default/first /(P) -> default/one:80");
  EXPECT_EQ(where(*t.snapshot, "h", "/other"), "default/first /(P) -> default/one:80");
  EXPECT_EQ(where(*t.snapshot, "h", "/app"), "default/first /app(P) -> default/one:80");
  ASSERT_EQ(t.issues.size(), 1u) << dump(t.issues);
  EXPECT_EQ(t.issues[0].name, "second");
  EXPECT_EQ(t.issues[0].field, "spec.defaultBackend");
  EXPECT_NE(t.issues[0].message.find("default/first"), std::string::npos);
}

TEST_F(TranslateTest, NoRouteNoDefaultBackendIs404) {
  add(kWebService);
  add(ingress({.name = "a", .rules = {rule("h", {{.path = "/app"}})}}));
  Translation t = run();
  EXPECT_EQ(t.snapshot->route("h", "/"), nullptr);
  EXPECT_EQ(t.snapshot->route("other", "/app"), nullptr);
  EXPECT_FALSE(t.snapshot->default_backend);
}

// ---------------------------------------------------------------------------------------------
// Backends and endpoints

TEST_F(TranslateTest, PortsAndEndpoints) {
  add(kWebService);
  add(ingress({.name = "a",
               .rules = {rule("h", {{.path = "/num", .port = "80"},
                                    {.path = "/name", .port = "http"},
                                    {.path = "/admin", .port = "admin"},
                                    {.path = "/admin-num", .port = "81"}})}}));
  Translation t = run();
  EXPECT_TRUE(t.issues.empty()) << dump(t.issues);
  auto cluster = [&](const char* path) { return t.snapshot->route("h", path)->cluster; };
  // Ready endpoints only (10.0.0.2 is not ready; 10.0.0.3 terminating is only a fallback),
  // from every slice of the Service, at the target port the slice names.
  std::vector<std::string> http = {"10.0.0.1:8080", "10.0.1.1:8080"};
  std::vector<std::string> admin = {"10.0.0.1:9090", "10.0.1.1:9090"};
  EXPECT_EQ(addresses(cluster("/num")), http);
  EXPECT_EQ(addresses(cluster("/name")), http);  // port by name
  EXPECT_EQ(cluster("/name")->name, "default/web:http");
  EXPECT_EQ(addresses(cluster("/admin")), admin);  // targetPort by name, through the slice
  EXPECT_EQ(addresses(cluster("/admin-num")), admin);
  EXPECT_TRUE(cluster("/num")->problem.empty());
  // The same backend is one cluster.
  EXPECT_EQ(cluster("/num").get(), t.snapshot->route("h", "/num/x")->cluster.get());
  const auto& eps = cluster("/num")->endpoints;
  auto it = std::find_if(eps.begin(), eps.end(),
                         [](const auto& e) { return e.address.to_string() == "10.0.0.1:8080"; });
  ASSERT_NE(it, eps.end());
  EXPECT_EQ(it->pod, "web-a");
  EXPECT_EQ(it->node, "node-1");
}

TEST_F(TranslateTest, TerminatingServingEndpointsWhenNoneIsReady) {
  add(R"(apiVersion: v1
kind: Service
metadata: {name: drain}
spec:
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: drain-1
  labels: {kubernetes.io/service-name: drain}
addressType: IPv4
ports: [{port: 8080}]
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: false, serving: true, terminating: true}
- addresses: [10.0.0.2]
  conditions: {ready: false, serving: false, terminating: true}
- addresses: [10.0.0.3]
  conditions: {ready: false, serving: true, terminating: false}
- addresses: [10.0.0.4]
  conditions: {ready: false}
)");
  add(ingress({.name = "a", .rules = {rule("h", {{.path = "/", .service = "drain"}})}}));
  Translation t = run();
  EXPECT_TRUE(t.issues.empty()) << dump(t.issues);
  EXPECT_EQ(addresses(t.snapshot->route("h", "/")->cluster),
            (std::vector<std::string>{"10.0.0.1:8080"}));
}

TEST_F(TranslateTest, LegacyEndpointsOnlyWithoutSlices) {
  add(R"(apiVersion: v1
kind: Service
metadata: {name: old}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: old}
subsets:
- addresses: [{ip: 10.9.0.1}]
  notReadyAddresses: [{ip: 10.9.0.2}]
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: both}
spec:
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: both}
subsets:
- addresses: [{ip: 10.8.0.1}]
  ports: [{port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: both-1
  labels: {kubernetes.io/service-name: both}
addressType: IPv4
ports: [{port: 8080}]
endpoints:
- addresses: [10.7.0.1]
)");
  add(ingress({.name = "a",
               .rules = {rule("h", {{.path = "/old", .service = "old"},
                                    {.path = "/both", .service = "both"}})}}));
  Translation t = run();
  EXPECT_TRUE(t.issues.empty()) << dump(t.issues);
  EXPECT_EQ(addresses(t.snapshot->route("h", "/old")->cluster),
            (std::vector<std::string>{"10.9.0.1:8080"}));
  EXPECT_EQ(addresses(t.snapshot->route("h", "/both")->cluster),
            (std::vector<std::string>{"10.7.0.1:8080"}));
}

TEST_F(TranslateTest, UnusableBackendsAreReportedAndRoutedToAnEmptyCluster) {
  add(kWebService);
  add(R"(apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: backend.example.net
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  ports: [{port: 80}]
)");
  add(ingress({.name = "bad",
               .rules = {rule("h", {{.path = "/ghost", .service = "ghost"},
                                    {.path = "/noport", .port = "99"},
                                    {.path = "/noname", .port = "grpc"},
                                    {.path = "/ext", .service = "ext"},
                                    {.path = "/empty", .service = "empty"}})}}));
  add(R"(apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: res}
spec:
  rules:
  - host: h
    http:
      paths:
      - path: /res
        pathType: Prefix
        backend:
          resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: b}
)");
  Translation t = run();
  struct Case {
    const char* path;
    const char* ingress;
    const char* field;
    const char* message;
  } cases[] = {
      {"/ghost", "bad", "spec.rules[0].http.paths[0].backend.service",
       "service \"default/ghost\" not found"},
      {"/noport", "bad", "spec.rules[0].http.paths[1].backend.service",
       "service \"default/web\" has no port 99"},
      {"/noname", "bad", "spec.rules[0].http.paths[2].backend.service",
       "has no port named \"grpc\""},
      {"/ext", "bad", "spec.rules[0].http.paths[3].backend.service", "did not resolve"},
      {"/empty", "bad", "spec.rules[0].http.paths[4].backend.service", "no ready endpoints"},
      {"/res", "res", "spec.rules[0].http.paths[0].backend.resource", "not supported"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    const model::Route* r = t.snapshot->route("h", c.path);
    ASSERT_NE(r, nullptr);  // routed (to a 503), not a 404
    ASSERT_NE(r->cluster, nullptr);
    EXPECT_TRUE(r->cluster->endpoints.empty());
    EXPECT_FALSE(r->cluster->problem.empty());
    const k8s::Issue* i = nullptr;
    for (const auto& candidate : t.issues)
      if (candidate.name == c.ingress && candidate.field == c.field) i = &candidate;
    ASSERT_NE(i, nullptr) << dump(t.issues);
    EXPECT_EQ(i->kind, "Ingress");
    EXPECT_EQ(i->namespace_, "default");
    EXPECT_NE(i->message.find(c.message), std::string::npos) << i->message;
  }
  EXPECT_EQ(t.issues.size(), 6u) << dump(t.issues);
}

TEST_F(TranslateTest, ExternalNameUsesResolvedAddresses) {
  add(R"(apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: backend.example.net
)");
  add(ingress(
      {.name = "a", .rules = {rule("h", {{.path = "/", .service = "ext", .port = "443"}})}}));
  Options o;
  o.external_names["backend.example.net"] = {"192.0.2.10", "192.0.2.11"};
  Translation t = run(o);
  EXPECT_TRUE(t.issues.empty()) << dump(t.issues);
  EXPECT_EQ(addresses(t.snapshot->route("h", "/")->cluster),
            (std::vector<std::string>{"192.0.2.10:443", "192.0.2.11:443"}));
}

TEST_F(TranslateTest, EveryIngressUsingABrokenBackendIsReported) {
  add(ingress({.name = "a", .rules = {rule("a", {{.path = "/", .service = "ghost"}})}}));
  add(ingress({.name = "b", .rules = {rule("b", {{.path = "/", .service = "ghost"}})}}));
  Translation t = run();
  ASSERT_EQ(t.issues.size(), 2u) << dump(t.issues);
  EXPECT_NE(issue_for(t.issues, "a"), nullptr);
  EXPECT_NE(issue_for(t.issues, "b"), nullptr);
  EXPECT_EQ(t.snapshot->route("b", "/")->cluster->problem, "service \"default/ghost\" not found");
}

// ---------------------------------------------------------------------------------------------
// IngressClass

TEST_F(TranslateTest, IngressClassSelection) {
  add(R"(apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: kedge-class}
spec: {controller: kedge.dev/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
)");
  add(kWebService);
  auto with = [](const char* name, std::string spec, std::string meta = "") {
    return ingress(
        {.name = name, .rules = {rule(name, {{.path = "/"}})}, .meta = meta, .spec = spec});
  };
  add(with("by-flag", "  ingressClassName: kedge\n"));
  add(with("by-controller", "  ingressClassName: kedge-class\n"));
  add(with("other-controller", "  ingressClassName: nginx\n"));
  add(with("unknown-class", "  ingressClassName: missing\n"));
  add(with("legacy-ours", "", "  annotations: {kubernetes.io/ingress.class: kedge}\n"));
  add(with("legacy-theirs", "", "  annotations: {kubernetes.io/ingress.class: nginx}\n"));
  add(with("field-wins", "  ingressClassName: nginx\n",
           "  annotations: {kubernetes.io/ingress.class: kedge}\n"));
  add(with("no-class", ""));
  Translation t = run();
  EXPECT_TRUE(t.issues.empty()) << dump(t.issues);
  EXPECT_EQ(served(*t.snapshot),
            (std::vector<std::string>{"default/by-controller", "default/by-flag",
                                      "default/legacy-ours", "default/no-class"}));
  EXPECT_NE(t.snapshot->route("by-flag", "/"), nullptr);
  EXPECT_EQ(t.snapshot->route("other-controller", "/"), nullptr);

  // Without --watch-ingress-without-class, a classless Ingress is served only when kedge has the
  // default IngressClass.
  Options strict;
  strict.watch_ingress_without_class = false;
  EXPECT_EQ(run(strict).snapshot->served_ingresses.size(), 3u);
}

TEST(ServesIngress, DefaultClassRules) {
  auto store_with = [](const std::string& yaml) {
    k8s::ObjectStore store;
    for (auto& o : k8s::parse_manifest(yaml, "c.yaml").objects)
      store.upsert(std::make_shared<const k8s::StoredObject>(o));
    return store;
  };
  const std::string kDefaultOurs =
      "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: k\n  "
      "annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}\nspec: {controller: "
      "kedge.dev/ingress-controller}\n";
  const std::string kOursNotDefault =
      "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: k\nspec: "
      "{controller: kedge.dev/ingress-controller}\n";
  const std::string kDefaultTheirs =
      "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: n\n  "
      "annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}\nspec: {controller: "
      "k8s.io/ingress-nginx}\n";
  k8s::Ingress classless;
  struct Case {
    const char* name;
    std::string store;
    bool watch_without_class;
    bool served;
  } cases[] = {
      {"watch on, no classes", "", true, true},
      {"watch off, no classes", "", false, false},
      {"watch off, kedge default", kDefaultOurs, false, true},
      {"watch off, kedge not default", kOursNotDefault, false, false},
      {"watch off, other default", kDefaultTheirs, false, false},
      {"watch on, other default", kDefaultTheirs, true, true},
  };
  for (const auto& c : cases) {
    Options o;
    o.watch_ingress_without_class = c.watch_without_class;
    EXPECT_EQ(serves_ingress(store_with(c.store), o, classless), c.served) << c.name;
  }
  // --ingress-class names the class kedge answers to.
  k8s::Ingress named;
  named.ingress_class_name = "internal";
  Options o;
  EXPECT_FALSE(serves_ingress({}, o, named));
  o.ingress_class = "internal";
  EXPECT_TRUE(serves_ingress({}, o, named));
}

// ---------------------------------------------------------------------------------------------
// Annotations

TEST_F(TranslateTest, RouteOptionAnnotations) {
  add(kWebService);
  struct Case {
    const char* name;
    const char* annotations;
    int64_t body, read, connect, send;
    std::vector<std::string> bad;  // annotations reported
  } cases[] = {
      {"none", "", -1, -1, -1, -1, {}},
      {"mega", "nginx.ingress.kubernetes.io/proxy-body-size: 8m", 8 << 20, -1, -1, -1, {}},
      {"kilo", "nginx.ingress.kubernetes.io/proxy-body-size: 512k", 512 << 10, -1, -1, -1, {}},
      {"giga", "nginx.ingress.kubernetes.io/proxy-body-size: 1G", int64_t{1} << 30, -1, -1, -1, {}},
      {"bytes", "nginx.ingress.kubernetes.io/proxy-body-size: \"100\"", 100, -1, -1, -1, {}},
      {"unlimited", "nginx.ingress.kubernetes.io/proxy-body-size: \"0\"", 0, -1, -1, -1, {}},
      {"bad-size",
       "nginx.ingress.kubernetes.io/proxy-body-size: 8mb",
       -1,
       -1,
       -1,
       -1,
       {"proxy-body-size"}},
      {"huge-size",
       "nginx.ingress.kubernetes.io/proxy-body-size: 99999999999g",
       -1,
       -1,
       -1,
       -1,
       {"proxy-body-size"}},
      {"negative-size",
       "nginx.ingress.kubernetes.io/proxy-body-size: \"-1\"",
       -1,
       -1,
       -1,
       -1,
       {"proxy-body-size"}},
      {"timeouts",
       "nginx.ingress.kubernetes.io/proxy-read-timeout: \"30\", "
       "nginx.ingress.kubernetes.io/proxy-connect-timeout: 5s, "
       "nginx.ingress.kubernetes.io/proxy-send-timeout: \"120\"",
       -1,
       30000,
       5000,
       120000,
       {}},
      {"bad-timeout",
       "nginx.ingress.kubernetes.io/proxy-read-timeout: soon",
       -1,
       -1,
       -1,
       -1,
       {"proxy-read-timeout"}},
      {"bad-unit",
       "nginx.ingress.kubernetes.io/proxy-read-timeout: 5m",
       -1,
       -1,
       -1,
       -1,
       {"proxy-read-timeout"}},
  };
  for (const auto& c : cases) {
    add(ingress({.name = c.name,
                 .rules = {rule(c.name, {{.path = "/"}})},
                 .meta = std::string("  annotations: {") + c.annotations + "}\n"}));
  }
  Translation t = run();
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const model::Route* r = t.snapshot->route(c.name, "/");
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->options.max_body_bytes, c.body);
    EXPECT_EQ(r->options.read_timeout_ms, c.read);
    EXPECT_EQ(r->options.connect_timeout_ms, c.connect);
    EXPECT_EQ(r->options.send_timeout_ms, c.send);
    std::vector<std::string> reported;
    for (const auto& i : t.issues)
      if (i.name == c.name) reported.push_back(i.field);
    std::vector<std::string> want;
    for (const auto& b : c.bad)
      want.push_back("metadata.annotations.nginx.ingress.kubernetes.io/" + b);
    EXPECT_EQ(reported, want);
  }
}

TEST_F(TranslateTest, ClientLimitAnnotations) {
  add(kWebService);
  const std::string p = "nginx.ingress.kubernetes.io/";
  auto with = [&](const char* name, const std::string& annotations) {
    add(ingress({.name = name,
                 .rules = {rule(name, {{.path = "/"}})},
                 .meta = "  annotations: {" + annotations + "}\n"}));
  };
  with("none", "");
  with("rps", p + "limit-rps: \"10\"");
  with("rpm-burst", p + "limit-rpm: \"120\", " + p + "limit-burst-multiplier: \"2\"");
  with("conn", p + "limit-connections: \"3\", " + p +
                   "limit-whitelist: \"10.0.0.0/8, 2001:db8::/32,bogus, 192.168.1.7\"");
  with("bad", p + "limit-rps: \"ten\", " + p + "limit-connections: \"-2\"");
  Translation t = run();
  auto limits = [&](const char* host) {
    const model::Route* r = t.snapshot->route(host, "/");
    EXPECT_NE(r, nullptr) << host;
    return r ? r->options.client_limits : nullptr;
  };
  EXPECT_EQ(limits("none"), nullptr);
  EXPECT_EQ(limits("bad"), nullptr);  // nothing valid: no limit at all

  auto rps = limits("rps");
  ASSERT_NE(rps, nullptr);
  ASSERT_EQ(rps->rates.size(), 1u);
  EXPECT_EQ(rps->rates[0].per_second, 10.0);
  EXPECT_EQ(rps->rates[0].burst, 50u);  // ingress-nginx's default multiplier, 5
  EXPECT_EQ(rps->connections, 0);

  auto rpm = limits("rpm-burst");
  ASSERT_NE(rpm, nullptr);
  ASSERT_EQ(rpm->rates.size(), 1u);
  EXPECT_DOUBLE_EQ(rpm->rates[0].per_second, 2.0);
  EXPECT_EQ(rpm->rates[0].burst, 240u);
  EXPECT_NE(rpm->scope, rps->scope);  // each Ingress keeps its own budgets

  auto conn = limits("conn");
  ASSERT_NE(conn, nullptr);
  EXPECT_TRUE(conn->rates.empty());
  EXPECT_EQ(conn->connections, 3);
  ASSERT_EQ(conn->exempt.size(), 3u);
  EXPECT_EQ(conn->exempt[2].prefix, 32);

  std::vector<std::string> reported;
  for (const auto& i : t.issues)
    if (i.name == "conn" || i.name == "bad") reported.push_back(i.name + " " + i.field);
  std::sort(reported.begin(), reported.end());
  EXPECT_EQ(reported, (std::vector<std::string>{
                          "bad metadata.annotations.nginx.ingress.kubernetes.io/limit-connections",
                          "bad metadata.annotations.nginx.ingress.kubernetes.io/limit-rps",
                          "conn metadata.annotations.nginx.ingress.kubernetes.io/limit-whitelist",
                      }));
}

TEST_F(TranslateTest, LoadBalanceAnnotation) {
  add(kWebService);
  struct Case {
    const char* name;
    const char* annotations;
    model::LbPolicy want;
  } cases[] = {
      {"default", "", model::LbPolicy::RoundRobin},
      {"rr", "kedge.dev/load-balance: round_robin", model::LbPolicy::RoundRobin},
      {"lr", "kedge.dev/load-balance: least_request", model::LbPolicy::LeastRequest},
      {"ewma", "nginx.ingress.kubernetes.io/load-balance: ewma", model::LbPolicy::LeastRequest},
      {"nginx-rr", "nginx.ingress.kubernetes.io/load-balance: round_robin",
       model::LbPolicy::RoundRobin},
      {"kedge-first",
       "kedge.dev/load-balance: round_robin, nginx.ingress.kubernetes.io/load-balance: ewma",
       model::LbPolicy::RoundRobin},
  };
  for (const auto& c : cases)
    add(ingress({.name = c.name,
                 .rules = {rule(c.name, {{.path = "/"}})},
                 .meta = std::string("  annotations: {") + c.annotations + "}\n"}));
  Translation t = run();
  for (const auto& c : cases) {
    const model::Route* r = t.snapshot->route(c.name, "/");
    ASSERT_NE(r, nullptr) << c.name;
    EXPECT_EQ(r->cluster->lb, c.want) << c.name;
    EXPECT_EQ(addresses(r->cluster).size(), 2u) << c.name;
  }
}

TEST_F(TranslateTest, StatsKeyAndClusters) {
  add(kWebService);
  add(ingress(
      {.name = "a", .rules = {rule("h", {{.path = "/"}, {.path = "/x", .port = "http"}})}}));
  Translation t = run();
  EXPECT_EQ(t.snapshot->route("h", "/")->stats_key,
            "ingress=\"default/a\",service=\"default/web:80\"");
  std::vector<std::string> names;
  for (const auto& c : t.snapshot->clusters()) names.push_back(c->name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"default/web:80", "default/web:http"}));
}

}  // namespace
}  // namespace kedge::translate
