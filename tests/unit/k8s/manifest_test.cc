#include "k8s/manifest.h"
#include "k8s/json_text.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace kedge::k8s {
namespace {

/// 1-based line of the first line of `text` containing `needle` (0 when absent).
int line_of(std::string_view text, std::string_view needle) {
  size_t at = text.find(needle);
  if (at == std::string_view::npos) return 0;
  return static_cast<int>(std::count(text.begin(), text.begin() + at, '\n')) + 1;
}

std::string dump(const Issues& issues) {
  std::string out;
  for (const auto& i : issues) out += i.to_string() + "\n";
  return out;
}

template <class T>
const T* find(const ManifestFile& m, std::string_view name) {
  for (const auto& o : m.objects)
    if (const T* t = std::get_if<T>(&o.object); t && t->meta.name == name) return t;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Documents, lists, formats

constexpr std::string_view kService = R"(apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
  - name: admin
    port: 81
    targetPort: admin-port
)";

TEST(Manifest, MultiDocumentYaml) {
  std::string text = std::string(kService) + R"(---
# a comment-only document and an empty one are skipped
---
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: kedge
  annotations:
    ingressclass.kubernetes.io/is-default-class: "true"
spec:
  controller: kedge.dev/ingress-controller
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
)";
  ManifestFile m = parse_manifest(text, "docs.yaml");
  EXPECT_TRUE(m.issues.empty()) << dump(m.issues);
  EXPECT_FALSE(m.unreadable);
  ASSERT_EQ(m.objects.size(), 2u);  // the Deployment is not a kind kedge handles: ignored
  const Service* svc = find<Service>(m, "web");
  ASSERT_NE(svc, nullptr);
  EXPECT_EQ(svc->meta.namespace_, "shop");
  EXPECT_EQ(svc->meta.labels.at("app"), "web");
  EXPECT_EQ(svc->type, "ClusterIP");
  ASSERT_EQ(svc->ports.size(), 2u);
  EXPECT_EQ(svc->ports[0].port, 80);
  EXPECT_EQ(svc->ports[0].protocol, "TCP");
  EXPECT_EQ(svc->ports[0].target_port.number, std::optional<int32_t>(8080));
  EXPECT_EQ(svc->ports[1].target_port.name, "admin-port");
  EXPECT_FALSE(svc->ports[1].target_port.number);
  EXPECT_EQ(m.objects[0].origin.file, "docs.yaml");
  EXPECT_EQ(m.objects[0].origin.line, 1);
  const IngressClass* ic = find<IngressClass>(m, "kedge");
  ASSERT_NE(ic, nullptr);
  EXPECT_TRUE(ic->is_default());
  EXPECT_EQ(ic->meta.namespace_, "");  // cluster-scoped
  EXPECT_EQ(m.objects[1].origin.line, line_of(text, "kind: IngressClass") - 1);
  // The raw JSON is kept for the read API.
  EXPECT_EQ(m.objects[0].raw.parse()["spec"]["ports"][0]["port"], 80);
}

TEST(Manifest, KindListIsExpanded) {
  constexpr std::string_view kList = R"(apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: one
  spec:
    ports:
    - port: 80
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: ignored
- apiVersion: v1
  kind: Service
  metadata:
    name: two
  spec:
    ports:
    - port: "80"
)";
  ManifestFile m = parse_manifest(std::string(kList), "list.yaml");
  ASSERT_EQ(m.objects.size(), 1u);
  EXPECT_EQ(std::get<Service>(m.objects[0].object).meta.name, "one");
  EXPECT_EQ(std::get<Service>(m.objects[0].object).meta.namespace_, "default");
  EXPECT_EQ(m.objects[0].origin.line, line_of(kList, "- apiVersion: v1"));
  ASSERT_EQ(m.issues.size(), 1u) << dump(m.issues);
  const Issue& i = m.issues[0];
  EXPECT_EQ(i.file, "list.yaml");
  EXPECT_EQ(i.line, line_of(kList, "port: \"80\""));  // the line inside the list
  EXPECT_EQ(i.kind, "Service");
  EXPECT_EQ(i.namespace_, "default");
  EXPECT_EQ(i.name, "two");
  EXPECT_EQ(i.field, "spec.ports[0].port");
  ASSERT_EQ(m.rejected.size(), 1u);
  EXPECT_EQ(m.rejected[0], (ObjectKey{Kind::Service, "default", "two"}));
}

// items[1] and items[10]... share a prefix: each item must get its own lines and no other's.
TEST(Manifest, ListItemsKeepTheirOwnLines) {
  std::string text = "apiVersion: v1\nkind: List\nitems:\n";
  for (int i = 0; i < 12; ++i)
    text += fmt::format(
        "- apiVersion: v1\n  kind: Service\n  metadata:\n    name: s{}\n  spec:\n"
        "    ports:\n    - port: {}\n",
        i, i == 1 || i == 11 ? "\"80\"" : "80");
  ManifestFile m = parse_manifest(text, "list.yaml");
  ASSERT_EQ(m.objects.size(), 10u);
  for (const StoredObject& o : m.objects) {
    const std::string& name = std::get<Service>(o.object).meta.name;
    EXPECT_EQ(o.origin.line, line_of(text, "name: " + name + "\n") - 3) << name;
  }
  ASSERT_EQ(m.issues.size(), 2u) << dump(m.issues);
  EXPECT_EQ(m.issues[0].name, "s1");
  EXPECT_EQ(m.issues[1].name, "s11");
  EXPECT_EQ(m.issues[0].line, line_of(text, "name: s1\n") + 3);
  EXPECT_EQ(m.issues[1].line, line_of(text, "name: s11\n") + 3);
  EXPECT_EQ(m.issues[0].field, "spec.ports[0].port");
}

TEST(Manifest, JsonFile) {
  constexpr std::string_view kJson = R"({
  "apiVersion": "v1",
  "kind": "List",
  "items": [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "x"},
     "spec": {"ports": [{"port": 80, "targetPort": "http"}]}},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
     "metadata": {"name": "a-1", "namespace": "x", "labels": {"kubernetes.io/service-name": "a"}},
     "addressType": "IPv4",
     "endpoints": [{"addresses": ["10.0.0.1"]}],
     "ports": [{"port": 8080}]},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
  ]
})";
  ManifestFile m = parse_manifest(std::string(kJson), "objects.json");
  EXPECT_TRUE(m.issues.empty()) << dump(m.issues);
  ASSERT_EQ(m.objects.size(), 2u);
  const Service* svc = find<Service>(m, "a");
  ASSERT_NE(svc, nullptr);
  EXPECT_EQ(svc->ports[0].target_port.name, "http");
  const EndpointSlice* slice = find<EndpointSlice>(m, "a-1");
  ASSERT_NE(slice, nullptr);
  EXPECT_EQ(slice->service_name(), "a");
  EXPECT_EQ(slice->ports[0].port, 8080);

  ManifestFile single = parse_manifest(
      R"({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}, "spec": {"ports": [{"port": "80"}]}})",
      "one.json");
  ASSERT_EQ(single.issues.size(), 1u);
  EXPECT_EQ(single.issues[0].file, "one.json");
  EXPECT_EQ(single.issues[0].field, "spec.ports[0].port");
  EXPECT_EQ(single.issues[0].message, "must be an integer");

  ManifestFile broken = parse_manifest("{\"apiVersion\": ", "broken.json");
  EXPECT_TRUE(broken.unreadable);
  ASSERT_EQ(broken.issues.size(), 1u);
  EXPECT_EQ(broken.issues[0].file, "broken.json");
}

TEST(Manifest, UnknownKindsAndVersionsAreIgnored) {
  constexpr std::string_view kText = R"(apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
data:
  key: value
---
apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  name: old
spec:
  backend:
    serviceName: web
---
apiVersion: example.com/v1
kind: Widget
metadata: {}
)";
  ManifestFile m = parse_manifest(std::string(kText), "other.yaml");
  EXPECT_TRUE(m.objects.empty());
  EXPECT_TRUE(m.rejected.empty());
  EXPECT_TRUE(m.issues.empty()) << dump(m.issues);
  EXPECT_FALSE(m.unreadable);
}

TEST(Manifest, QuotedAndPlainScalars) {
  constexpr std::string_view kText = R"(apiVersion: v1
kind: Service
metadata:
  name: typed
  annotations:
    plain-number: "8080"
    quoted-bool: "true"
spec:
  ports:
  - name: http
    port: 80
    targetPort: "8080"
  - name: grpc
    port: 81
    targetPort: 9090
)";
  ManifestFile m = parse_manifest(std::string(kText), "s.yaml");
  ASSERT_TRUE(m.issues.empty()) << dump(m.issues);
  const Service* svc = find<Service>(m, "typed");
  ASSERT_NE(svc, nullptr);
  // A quoted "8080" is a string: a named targetPort, as in Kubernetes.
  EXPECT_EQ(svc->ports[0].target_port.name, "8080");
  EXPECT_FALSE(svc->ports[0].target_port.number);
  EXPECT_EQ(svc->ports[1].target_port.number, std::optional<int32_t>(9090));
  EXPECT_EQ(svc->meta.annotation("quoted-bool"), "true");
  EXPECT_TRUE(m.objects[0].raw.parse()["spec"]["ports"][1]["port"].is_number_integer());
  EXPECT_TRUE(m.objects[0].raw.parse()["spec"]["ports"][0]["targetPort"].is_string());

  struct Case {
    const char* yaml;
    const char* field;
    const char* message;
  } bad[] = {
      {"apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  annotations:\n    a: true\nspec:\n"
       "  ports:\n  - port: 80\n",
       "metadata.annotations.a", "must be a string"},
      {"apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  labels:\n    version: 2\nspec:\n"
       "  ports:\n  - port: 80\n",
       "metadata.labels.version", "must be a string"},
      {"apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: '80'\n",
       "spec.ports[0].port", "must be an integer"},
      {"apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80.5\n",
       "spec.ports[0].port", "must be an integer"},
      {"apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80\n"
       "    targetPort: 1.5\n",
       "spec.ports[0].targetPort", "must be an integer or a string"},
      {"apiVersion: v1\nkind: Service\nmetadata:\n  name: 123\nspec:\n  ports:\n  - port: 80\n",
       "metadata.name", "must be a string"},
  };
  for (const auto& c : bad) {
    SCOPED_TRACE(c.yaml);
    ManifestFile b = parse_manifest(c.yaml, "b.yaml");
    EXPECT_TRUE(b.objects.empty());
    ASSERT_GE(b.issues.size(), 1u);
    EXPECT_EQ(b.issues[0].field, c.field);
    EXPECT_EQ(b.issues[0].message, c.message);
  }
}

TEST(Manifest, YamlSyntaxErrorMakesTheFileUnreadable) {
  constexpr std::string_view kText = R"(apiVersion: v1
kind: Service
metadata:
  name: fine
spec:
  ports:
  - port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: broken
  labels: {a: b
spec:
  ports:
  - port: 80
)";
  ManifestFile m = parse_manifest(std::string(kText), "bad.yaml");
  EXPECT_TRUE(m.unreadable);
  EXPECT_TRUE(m.objects.empty());  // nothing from a file that does not parse
  ASSERT_EQ(m.issues.size(), 1u);
  EXPECT_EQ(m.issues[0].file, "bad.yaml");
  EXPECT_GE(m.issues[0].line, line_of(kText, "labels: {a: b"));
  EXPECT_LE(m.issues[0].line, line_of(kText, "labels: {a: b") + 2);
  EXPECT_NE(m.issues[0].message.find("YAML syntax error"), std::string::npos);

  ManifestFile tab = parse_manifest("a: b\n\tc: d\n", "tab.yaml");
  EXPECT_TRUE(tab.unreadable);
  ASSERT_EQ(tab.issues.size(), 1u);
  EXPECT_EQ(tab.issues[0].line, 2);
}

TEST(Manifest, NonStringKindDoesNotThrow) {
  ManifestFile m;
  ASSERT_NO_THROW(m = parse_manifest("apiVersion: v1\nkind: 5\nmetadata:\n  name: x\n", "k.yaml"));
  EXPECT_TRUE(m.objects.empty());
  ASSERT_EQ(m.issues.size(), 1u) << dump(m.issues);
  EXPECT_EQ(m.issues[0].field, "kind");
  ASSERT_NO_THROW(m = parse_manifest(R"({"kind": ["List"], "items": []})", "k.json"));
  EXPECT_FALSE(m.issues.empty());
}

TEST(Manifest, NonObjectDocumentsAreReported) {
  ManifestFile m = parse_manifest("- a\n- b\n", "seq.yaml");
  EXPECT_TRUE(m.objects.empty());
  ASSERT_EQ(m.issues.size(), 1u);
  EXPECT_EQ(m.issues[0].message, "a Kubernetes object must be a map");
  ManifestFile list = parse_manifest("apiVersion: v1\nkind: List\nitems: 5\n", "l.yaml");
  ASSERT_EQ(list.issues.size(), 1u);
  EXPECT_EQ(list.issues[0].field, "items");
  ManifestFile no_kind = parse_manifest("apiVersion: v1\nmetadata:\n  name: x\n", "n.yaml");
  ASSERT_EQ(no_kind.issues.size(), 1u);
  EXPECT_EQ(no_kind.issues[0].field, "kind");
  EXPECT_EQ(no_kind.issues[0].message, "Required value");
}

// yaml-cpp 0.7's LoadAll, which kedge once used, never returned on these (it yielded the same
// empty document forever): tests/fuzz/corpus/manifest/regression-yaml-cpp-stray-comma-loop is the
// fuzzer's original. Each must be a syntax error with a line.
TEST(Manifest, StrayFlowIndicatorAtTopLevelIsASyntaxError) {
  for (const char* text : {",", "\n,", "{}\n,", "{a: b}, c", "\"a\"\n,", "[\n],",
                           "kind: Service\n---\n{\"a\": \"d\"\n },\n \"b\": 1\n"}) {
    ManifestFile m = parse_manifest(text, "stray.yaml");
    EXPECT_TRUE(m.unreadable) << text;
    EXPECT_TRUE(m.objects.empty()) << text;
    ASSERT_EQ(m.issues.size(), 1u) << text << "\n" << dump(m.issues);
    EXPECT_NE(m.issues[0].message.find("YAML syntax error"), std::string::npos) << text;
    EXPECT_GE(m.issues[0].line, 1) << text;
  }
  ManifestFile empty = parse_manifest("---\n---\n\n---\n", "empty.yaml");
  EXPECT_FALSE(empty.unreadable) << dump(empty.issues);
  EXPECT_TRUE(empty.issues.empty()) << dump(empty.issues);
}

TEST(Manifest, AnchorsAndAliasesExpand) {
  constexpr std::string_view kText = R"(apiVersion: v1
kind: Service
metadata:
  name: web
  labels: &labels
    app: web
    yes: "1"
spec:
  selector: *labels
  ports:
  - {name: http, port: 80, targetPort: 8080}
)";
  ManifestFile m = parse_manifest(std::string(kText), "alias.yaml");
  const auto* svc = find<Service>(m, "web");
  ASSERT_NE(svc, nullptr) << dump(m.issues);
  EXPECT_EQ(svc->selector.at("app"), "web");
  EXPECT_EQ(svc->selector.at("yes"), "1");  // a plain key is kept as written, not a bool
  ASSERT_EQ(svc->ports.size(), 1u);
  EXPECT_EQ(svc->ports[0].port, 80);
}

// An anchor belongs to its document: a later document cannot refer to it.
TEST(Manifest, AnAliasCannotReachIntoAnEarlierDocument) {
  ManifestFile m = parse_manifest("a: &x 1\n---\nb: *x\n", "docs.yaml");
  EXPECT_TRUE(m.unreadable);
  ASSERT_EQ(m.issues.size(), 1u) << dump(m.issues);
  EXPECT_EQ(m.issues[0].line, 3);
  EXPECT_NE(m.issues[0].message.find("unknown alias"), std::string::npos);
}

TEST(Manifest, AliasExpansionIsBounded) {
  // "Billion laughs": nine levels of ten aliases each expand to 10^9 values.
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) text += (j ? ", *a" : "*a") + std::to_string(i - 1);
    text += "]\n";
  }
  ManifestFile m = parse_manifest(text, "laughs.yaml");
  EXPECT_TRUE(m.unreadable);
  ASSERT_EQ(m.issues.size(), 1u);
  EXPECT_NE(m.issues[0].message.find("expands to more than"), std::string::npos)
      << m.issues[0].message;
}

TEST(Manifest, CollectionAsAMapKeyIsRefused) {
  ManifestFile m = parse_manifest("? [a, b]\n: c\n", "key.yaml");
  EXPECT_TRUE(m.unreadable);
  ASSERT_EQ(m.issues.size(), 1u);
  EXPECT_NE(m.issues[0].message.find("mapping key must be a string"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Validation, as the API server does it

constexpr std::string_view kIngress = R"(apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
spec:
  rules:
  - host: HOST
    http:
      paths:
      - path: PATH
        pathType: TYPE
        backend:
          BACKEND
)";

std::string ingress(std::string host = "shop.example.com", std::string path = "/",
                    std::string type = "Prefix",
                    std::string backend = "service: {name: web, port: {number: 80}}") {
  std::string s(kIngress);
  auto put = [&](std::string_view key, const std::string& value) {
    s.replace(s.find(key), key.size(), value);
  };
  put("HOST", host);
  put("PATH", path);
  put("TYPE", type);
  put("BACKEND", backend);
  return s;
}

struct Invalid {
  const char* name;
  std::string yaml;
  std::string kind, namespace_, object_name;
  std::string field;
  std::string message;  // a substring of the message
  std::string line_at;  // the reported line is the first one containing this
};

std::string erase_line(std::string s, std::string_view needle) {
  size_t at = s.find(needle);
  size_t start = s.rfind('\n', at) + 1;
  s.erase(start, s.find('\n', at) - start + 1);
  return s;
}

std::string replace_once(std::string s, std::string_view from, std::string_view to) {
  s.replace(s.find(from), from.size(), to);
  return s;
}

/// The Ingress with its path removed from the first paths entry.
std::string without_path(const std::string& type) {
  return replace_once(ingress("x.com", "/", type), "- path: /\n        pathType:", "- pathType:");
}

void PrintTo(const Invalid& c, std::ostream* os) { *os << c.name; }

class Validation : public testing::TestWithParam<Invalid> {};

TEST_P(Validation, Reported) {
  const Invalid& c = GetParam();
  ManifestFile m = parse_manifest(c.yaml, "dir/objects.yaml");
  EXPECT_FALSE(m.unreadable);
  EXPECT_TRUE(m.objects.empty()) << "an invalid object is not stored";
  ASSERT_EQ(m.issues.size(), 1u) << dump(m.issues);
  const Issue& i = m.issues[0];
  EXPECT_EQ(i.file, "dir/objects.yaml");
  EXPECT_EQ(i.line, line_of(c.yaml, c.line_at)) << i.to_string();
  EXPECT_EQ(i.kind, c.kind);
  EXPECT_EQ(i.namespace_, c.namespace_);
  EXPECT_EQ(i.name, c.object_name);
  EXPECT_EQ(i.field, c.field);
  EXPECT_NE(i.message.find(c.message), std::string::npos) << i.message;
  if (!c.object_name.empty()) {
    ASSERT_EQ(m.rejected.size(), 1u);
    EXPECT_EQ(m.rejected[0].name, c.object_name);
    EXPECT_EQ(m.rejected[0].namespace_, c.namespace_);  // the key its last good version has
  }
}

const std::string kPaths = "spec.rules[0].http.paths[0]";

INSTANTIATE_TEST_SUITE_P(
    Ingress, Validation,
    testing::Values(
        Invalid{"MissingPathType", erase_line(ingress(), "pathType"), "Ingress", "shop", "web",
                kPaths + ".pathType", "Required value", "- path: /"},
        Invalid{"UnknownPathType", ingress("a.com", "/", "Regex"), "Ingress", "shop", "web",
                kPaths + ".pathType", "Unsupported value: \"Regex\"", "pathType: Regex"},
        Invalid{"RelativeExactPath", ingress("a.com", "foo", "Exact"), "Ingress", "shop", "web",
                kPaths + ".path", "must be an absolute path", "- path: foo"},
        Invalid{"RelativePrefixPath", ingress("a.com", "foo/bar", "Prefix"), "Ingress", "shop",
                "web", kPaths + ".path", "must be an absolute path", "- path: foo/bar"},
        Invalid{"RelativeImplementationSpecificPath",
                ingress("a.com", "foo", "ImplementationSpecific"), "Ingress", "shop", "web",
                kPaths + ".path", "must be an absolute path", "- path: foo"},
        Invalid{"MissingPrefixPath", without_path("Prefix"), "Ingress", "shop", "web",
                kPaths + ".path", "Required value", "pathType: Prefix"},
        Invalid{"DoubleSlashInPath", ingress("a.com", "/a//b"), "Ingress", "shop", "web",
                kPaths + ".path", "must not contain", "- path: /a//b"},
        Invalid{"DotDotInPath", ingress("a.com", "/a/../b", "Exact"), "Ingress", "shop", "web",
                kPaths + ".path", "must not contain", "- path: /a/../b"},
        Invalid{"EncodedSlashInPath", ingress("a.com", "/a%2Fb"), "Ingress", "shop", "web",
                kPaths + ".path", "must not contain", "- path: /a%2Fb"},
        Invalid{"BackendWithNeither", ingress("a.com", "/", "Prefix", "{}"), "Ingress", "shop",
                "web", kPaths + ".backend", "one of service or resource", "backend:"},
        Invalid{"BackendWithBoth",
                ingress("a.com", "/", "Prefix",
                        "service: {name: web, port: {number: 80}}\n          resource: {kind: "
                        "StorageBucket, name: b}"),
                "Ingress", "shop", "web", kPaths + ".backend",
                "cannot set both service and resource", "backend:"},
        Invalid{"PortWithNameAndNumber",
                ingress("a.com", "/", "Prefix",
                        "service: {name: web, port: {number: 80, name: "
                        "http}}"),
                "Ingress", "shop", "web", kPaths + ".backend.service.port",
                "cannot set both port name & port number", "service: {name"},
        Invalid{"PortWithNeither",
                ingress("a.com", "/", "Prefix", "service: {name: web, port: {}}"), "Ingress",
                "shop", "web", kPaths + ".backend.service.port", "port name or number is required",
                "service: {name"},
        Invalid{"PortOutOfRange",
                ingress("a.com", "/", "Prefix", "service: {name: web, port: {number: 70000}}"),
                "Ingress", "shop", "web", kPaths + ".backend.service.port.number",
                "between 1 and 65535", "service: {name"},
        Invalid{"ServiceWithoutName",
                ingress("a.com", "/", "Prefix", "service: {port: {number: 80}}"), "Ingress", "shop",
                "web", kPaths + ".backend.service.name", "Required value", "service: {port"},
        Invalid{"UppercaseHost", ingress("Shop.Example.com"), "Ingress", "shop", "web",
                "spec.rules[0].host", "Invalid value: \"Shop.Example.com\": a lowercase RFC 1123",
                "- host:"},
        Invalid{"UnderscoreHost", ingress("shop_1.example.com"), "Ingress", "shop", "web",
                "spec.rules[0].host", "a lowercase RFC 1123 subdomain", "- host:"},
        Invalid{"IPv4Host", ingress("10.0.0.1"), "Ingress", "shop", "web", "spec.rules[0].host",
                "must be a DNS name, not an IP address", "- host:"},
        Invalid{"IPv6Host", ingress("\"::1\""), "Ingress", "shop", "web", "spec.rules[0].host",
                "must be a DNS name, not an IP address", "- host:"},
        Invalid{"DoubleWildcard", ingress("\"*.*.example.com\""), "Ingress", "shop", "web",
                "spec.rules[0].host", "wildcard", "- host:"},
        Invalid{"WildcardInside", ingress("foo.*.example.com"), "Ingress", "shop", "web",
                "spec.rules[0].host", "wildcard", "- host:"},
        Invalid{"WildcardWithoutDot", ingress("\"*example.com\""), "Ingress", "shop", "web",
                "spec.rules[0].host", "wildcard", "- host:"},
        Invalid{"BareWildcard", ingress("\"*\""), "Ingress", "shop", "web", "spec.rules[0].host",
                "wildcard", "- host:"},
        Invalid{"NoRulesNoDefault",
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: empty\nspec: "
                "{}\n",
                "Ingress", "default", "empty", "spec", "either `defaultBackend` or `rules`",
                "spec:"},
        Invalid{"DefaultBackendWithNeither",
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: d\nspec:\n  "
                "defaultBackend: {}\n",
                "Ingress", "default", "d", "spec.defaultBackend", "one of service or resource",
                "defaultBackend"},
        Invalid{"MissingName",
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  namespace: shop\n"
                "spec:\n  defaultBackend:\n    service: {name: web, port: {number: 80}}\n",
                "Ingress", "shop", "", "metadata.name", "Required value", "metadata:"},
        Invalid{"InvalidName",
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: Web_1\n"
                "spec:\n  defaultBackend:\n    service: {name: web, port: {number: 80}}\n",
                "Ingress", "default", "Web_1", "metadata.name", "DNS subdomain", "name: Web_1"},
        Invalid{"MissingMetadata",
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\n"
                "spec:\n  defaultBackend:\n    service: {name: web, port: {number: 80}}\n",
                "Ingress", "default", "", "metadata", "Required value", "apiVersion"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

INSTANTIATE_TEST_SUITE_P(
    Others, Validation,
    testing::Values(
        Invalid{"ServiceDuplicatePortNames",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: ns\nspec:\n"
                "  ports:\n  - name: http\n    port: 80\n  - port: 81\n    name: http\n",
                "Service", "ns", "s", "spec.ports[1].name", "Duplicate value: \"http\"",
                "    name: http"},
        Invalid{"ServiceUnnamedPortOfMany",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: ns\nspec:\n"
                "  ports:\n  - name: http\n    port: 80\n  - port: 81\n",
                "Service", "ns", "s", "spec.ports[1].name", "Required value", "- port: 81"},
        Invalid{"ServicePortMissing",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n"
                "  - name: http\n",
                "Service", "default", "s", "spec.ports[0].port", "Required value", "- name: http"},
        Invalid{"ServiceNoPorts",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  selector: {a: b}\n",
                "Service", "default", "s", "spec.ports", "Required value", "spec:"},
        Invalid{"ServiceBadType",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  type: Magic\n"
                "  ports:\n  - port: 80\n",
                "Service", "default", "s", "spec.type", "Unsupported value", "type: Magic"},
        Invalid{"ServiceBadProtocol",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n"
                "  - port: 80\n    protocol: HTTP\n",
                "Service", "default", "s", "spec.ports[0].protocol", "Unsupported value",
                "protocol: HTTP"},
        Invalid{"ServiceTargetPortZero",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n"
                "  - port: 80\n    targetPort: 0\n",
                "Service", "default", "s", "spec.ports[0].targetPort", "between 1 and 65535",
                "targetPort: 0"},
        Invalid{"SecretBadBase64",
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: tls\n  namespace: web\n"
                "type: kubernetes.io/tls\ndata:\n  tls.crt: bm90IGJhc2U2NA==\n  tls.key: "
                "not*base64!\n",
                "Secret", "web", "tls", "data.tls.key", "illegal base64 data", "tls.key:"},
        Invalid{"SecretBase64WrongLength",
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  k: abc\n", "Secret",
                "default", "s", "data.k", "illegal base64 data", "k: abc"},
        Invalid{"EndpointSliceWithoutAddressType",
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: e\n"
                "endpoints:\n- addresses: [10.0.0.1]\n",
                "EndpointSlice", "default", "e", "addressType", "Required value", "apiVersion"},
        Invalid{"EndpointWithoutAddresses",
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: e\n"
                "addressType: IPv4\nendpoints:\n- conditions: {ready: true}\n",
                "EndpointSlice", "default", "e", "endpoints[0].addresses", "Required value",
                "- conditions"},
        Invalid{"EndpointConditionNotBool",
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: e\n"
                "addressType: IPv4\nendpoints:\n- addresses: [10.0.0.1]\n  conditions:\n"
                "    ready: \"yes\"\n",
                "EndpointSlice", "default", "e", "endpoints[0].conditions.ready",
                "must be a boolean", "ready:"},
        Invalid{"IngressClassWithoutController",
                "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: c\n"
                "spec: {}\n",
                "IngressClass", "", "c", "spec.controller", "Required value", "spec:"},
        Invalid{"ClusterScopedIgnoresNamespace",
                "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: c\n"
                "  namespace: shop\nspec: {}\n",
                "IngressClass", "", "c", "spec.controller", "Required value", "spec:"},
        Invalid{"BadNamespace",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: My.NS\nspec:\n"
                "  ports:\n  - port: 80\n",
                "Service", "My.NS", "s", "metadata.namespace", "DNS label", "namespace: My.NS"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(Validation, ValidIngressVariants) {
  std::string variants[] = {
      ingress("shop.example.com"),
      ingress("\"*.example.com\""),
      ingress("a-b.c-d.example"),
      ingress("\"1.2.3\""),  // not an IP address, so a valid DNS name
      ingress("\"123.example\""),
      ingress("x.com", "/api/", "Prefix"),
      ingress("x.com", "/", "Exact"),
      ingress("x.com", "/a%20b/", "ImplementationSpecific"),
      ingress("x.com", "/", "Prefix", "service: {name: web, port: {name: http}}"),
      ingress("x.com", "/", "Prefix",
              "resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: b}"),
      without_path("ImplementationSpecific"),
      // A rule may name a host and nothing else.
      "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: bare}\nspec:\n"
      "  rules: [{host: bare.example.com}]\n",
  };
  for (const auto& yaml : variants) {
    SCOPED_TRACE(yaml);
    ManifestFile m = parse_manifest(yaml, "ok.yaml");
    EXPECT_TRUE(m.issues.empty()) << dump(m.issues);
    EXPECT_EQ(m.objects.size(), 1u);
  }
}

TEST(Validation, ManyProblemsAllReported) {
  std::string yaml = ingress("10.0.0.1", "rel", "Exact", "{}");
  ManifestFile m = parse_manifest(yaml, "m.yaml");
  ASSERT_EQ(m.issues.size(), 3u) << dump(m.issues);
  EXPECT_EQ(m.issues[0].field, "spec.rules[0].host");
  EXPECT_EQ(m.issues[1].field, kPaths + ".path");
  EXPECT_EQ(m.issues[2].field, kPaths + ".backend");
  EXPECT_EQ(m.issues[0].to_string(),
            "m.yaml:8: Ingress shop/web: spec.rules[0].host: Invalid value: \"10.0.0.1\": must be "
            "a DNS name, not an IP address");
}

TEST(Validation, UnnamedPortsOfAMultiPortServiceAreNotDuplicates) {
  ManifestFile m = parse_manifest(
      "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80\n"
      "  - port: 81\n",
      "s.yaml");
  ASSERT_EQ(m.issues.size(), 2u) << dump(m.issues);
  EXPECT_EQ(m.issues[0].field, "spec.ports[0].name");
  EXPECT_EQ(m.issues[1].field, "spec.ports[1].name");
  for (const auto& i : m.issues) EXPECT_NE(i.message.find("Required value"), std::string::npos);
}

TEST(Secret, DataIsDecoded) {
  ManifestFile m = parse_manifest(
      "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  a: aGVsbG8=\n  b: aGk=\n"
      "  c: \"\"\n  d: |\n    aGVs\n    bG8=\nstringData:\n  e: plain\n",
      "s.yaml");
  ASSERT_TRUE(m.issues.empty()) << dump(m.issues);
  const Secret* s = find<Secret>(m, "s");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->type, "Opaque");
  EXPECT_EQ(s->data.at("a"), "hello");
  EXPECT_EQ(s->data.at("b"), "hi");
  EXPECT_EQ(s->data.at("c"), "");
  EXPECT_EQ(s->data.at("d"), "hello");
  EXPECT_EQ(s->data.at("e"), "plain");
}

// ---------------------------------------------------------------------------------------------
// EndpointSlice conditions

TEST(EndpointSlice, ConditionDefaults) {
  constexpr std::string_view kSlice = R"(apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: 8080
endpoints:
- addresses: [10.0.0.1]
- addresses: [10.0.0.2]
  conditions: {}
- addresses: [10.0.0.3]
  conditions: {ready: false}
- addresses: [10.0.0.4]
  conditions: {ready: false, serving: true, terminating: true}
- addresses: [10.0.0.5]
  conditions: {serving: false}
- addresses: [10.0.0.6]
  nodeName: node-a
  targetRef: {kind: Pod, name: web-6}
  conditions: {ready: true, serving: true, terminating: false}
)";
  ManifestFile m = parse_manifest(std::string(kSlice), "e.yaml");
  ASSERT_TRUE(m.issues.empty()) << dump(m.issues);
  const EndpointSlice* s = find<EndpointSlice>(m, "web-abc");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->service_name(), "web");
  ASSERT_EQ(s->endpoints.size(), 6u);
  struct Want {
    bool ready, serving, terminating;
  } want[] = {
      {true, true, false},    // no conditions: ready
      {true, true, false},    // empty conditions: ready
      {false, false, false},  // serving defaults to ready
      {false, true, true},   {true, false, false}, {true, true, false},
  };
  for (size_t i = 0; i < 6; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(s->endpoints[i].conditions.ready, want[i].ready);
    EXPECT_EQ(s->endpoints[i].conditions.serving, want[i].serving);
    EXPECT_EQ(s->endpoints[i].conditions.terminating, want[i].terminating);
  }
  EXPECT_EQ(s->endpoints[5].node_name, "node-a");
  EXPECT_EQ(s->endpoints[5].target_pod, "web-6");
}

TEST(Endpoints, LegacySubsets) {
  ManifestFile m = parse_manifest(R"(apiVersion: v1
kind: Endpoints
metadata:
  name: web
subsets:
- addresses:
  - ip: 10.0.0.1
    targetRef: {name: pod-1}
  notReadyAddresses:
  - ip: 10.0.0.2
  ports:
  - name: http
    port: 8080
)",
                                  "ep.yaml");
  ASSERT_TRUE(m.issues.empty()) << dump(m.issues);
  const Endpoints* e = find<Endpoints>(m, "web");
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->subsets.size(), 1u);
  ASSERT_EQ(e->subsets[0].addresses.size(), 2u);
  EXPECT_TRUE(e->subsets[0].addresses[0].conditions.ready);
  EXPECT_EQ(e->subsets[0].addresses[0].target_pod, "pod-1");
  EXPECT_FALSE(e->subsets[0].addresses[1].conditions.ready);
  EXPECT_FALSE(e->subsets[0].addresses[1].conditions.serving);
  EXPECT_EQ(e->subsets[0].ports[0].port, 8080);
}

TEST(Issue, ToString) {
  EXPECT_EQ((Issue{"f.yaml", 3, "Ingress", "ns", "n", "spec", "bad"}).to_string(),
            "f.yaml:3: Ingress ns/n: spec: bad");
  EXPECT_EQ((Issue{"f.yaml", 0, "IngressClass", "", "c", "", "bad"}).to_string(),
            "f.yaml: IngressClass c: bad");
  EXPECT_EQ((Issue{"", 0, "", "", "", "", "just this"}).to_string(), "just this");
}

TEST(Manifest, FileOverTheSizeLimitIsRefusedUnparsed) {
  auto dir =
      std::filesystem::temp_directory_path() / ("kedge-manifest-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto path = dir / "big.yaml";
  {
    std::ofstream out(path, std::ios::binary);
    std::string line = "# " + std::string(1021, 'x') + "\n";
    for (size_t n = 0; n <= kMaxManifestBytes; n += line.size()) out << line;
  }
  ManifestFile f = load_manifest(path);
  EXPECT_TRUE(f.unreadable);
  ASSERT_EQ(f.issues.size(), 1u);
  EXPECT_NE(f.issues[0].message.find("too large"), std::string::npos);
  // At the limit exactly, the file is read and parsed (here: only a comment).
  std::filesystem::resize_file(path, kMaxManifestBytes - 1);
  {
    std::ofstream out(path, std::ios::binary | std::ios::app);
    out << "\n";
  }
  ManifestFile ok = load_manifest(path);
  EXPECT_FALSE(ok.unreadable);
  EXPECT_TRUE(ok.issues.empty());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kedge::k8s

namespace kedge::k8s {
namespace {

// The stored text is what the library's own compact dump gives, byte for byte: the fast path for
// plain strings must not change how anything is written.
TEST(RawJson, TextIsTheLibrarysCompactDump) {
  const char* texts[] = {
      R"({"b":1,"a":[true,false,null,-42,18446744073709551615,0.5,1e300,-0.0],"c":{}})",
      R"({"s":"plain","q":"say \"hi\"","bs":"a\\b","ctl":"\u0001\t\n\r\b\f","del":"\u007f"})",
      R"({"utf8":"grüße ✓ 𝄞","slash":"a/b","empty":"","arr":[[],[{}],[""]]})",
      R"([1,"two",{"three":[3]}])",
      R"("just a string")",
      R"(-9223372036854775808)",
  };
  for (const char* text : texts) {
    nlohmann::json j = nlohmann::json::parse(text);
    EXPECT_EQ(RawJson(j).text(), j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
        << text;
  }
  // Keys and values that are not valid UTF-8 are kept with replacement characters.
  nlohmann::json bad = {{"k\xff", "v\xc3"}, {"ok", "\xe2\x9c"}};
  EXPECT_EQ(RawJson(bad).text(),
            bad.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  EXPECT_EQ(RawJson(bad).text(), "{\"k\xef\xbf\xbd\":\"v\xef\xbf\xbd\",\"ok\":\"\xef\xbf\xbd\"}");
  EXPECT_EQ(RawJson(nlohmann::json()).text(), "");
}

}  // namespace
}  // namespace kedge::k8s

namespace kedge::k8s {
namespace {

// parse_json gives the tree nlohmann's parser gives, number types included, and refuses what it
// refuses.
TEST(ParseJson, SameTreeAsTheLibrarysParser) {
  const char* texts[] = {
      R"({"b":1,"a":[true,false,null,-42,0,18446744073709551615,0.5,1e300,-0.0],"c":{}})",
      R"({"s":"plain","q":"say \"hi\"","u":"\u00fc\ud834\udd1e","nested":[[[{"x":[]}]]]})",
      R"({"dup":1,"dup":"last"})",
      R"({"big":18446744073709551616})",  // beyond simdjson: handed over
      "  [1, 2]\n",
      R"("text")",
      "-9223372036854775808",
  };
  for (const char* text : texts) {
    nlohmann::json want = nlohmann::json::parse(text, nullptr, false);
    nlohmann::json got = parse_json(text);
    ASSERT_FALSE(want.is_discarded()) << text;
    EXPECT_EQ(got, want) << text;
    EXPECT_EQ(got.dump(), want.dump()) << text;
  }
  nlohmann::json numbers = parse_json(R"([5,-5,5.0])");
  EXPECT_TRUE(numbers[0].is_number_unsigned());
  EXPECT_TRUE(numbers[1].is_number_integer() && !numbers[1].is_number_unsigned());
  EXPECT_TRUE(numbers[2].is_number_float());
  EXPECT_EQ(parse_json(R"({"dup":1,"dup":"last"})")["dup"], "last");
  for (const char* bad : {"", "{", R"({"a":})", "[1,]", "{\"k\":\"\xff\"}", "1 2", "nul", "1e400"})
    EXPECT_TRUE(parse_json(bad).is_discarded()) << bad;
}

}  // namespace
}  // namespace kedge::k8s
