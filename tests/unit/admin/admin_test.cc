#include "admin/admin_server.h"

#include "k8s/manifest.h"
#include "translate/translator.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace kedge::admin {
namespace {

using nlohmann::json;

constexpr const char* kObjects = R"(apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports: [{port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.0.0.1]
---
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: default}
subsets:
- addresses: [{ip: 10.0.0.1}]
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: kedge}
spec: {controller: kedge.dev/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ours, namespace: default}
spec:
  ingressClassName: kedge
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: theirs, namespace: shop}
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: api, port: {number: 80}}}
---
apiVersion: v1
kind: Secret
metadata: {name: hidden, namespace: default}
stringData: {password: hunter2}
)";

class AdminTest : public testing::Test {
 protected:
  AdminTest() : sources_{slot_, [this] { return stats_; }, "192.0.2.7", "127.0.0.1:10254"} {}

  /// Publishes what the controller would: the store, its translation and the issues.
  void publish() {
    k8s::ManifestFile m = k8s::parse_manifest(kObjects, "objects.yaml");
    ASSERT_TRUE(m.issues.empty());
    auto state = std::make_shared<control::PublishedState>();
    for (auto& o : m.objects) state->store.upsert(std::make_shared<const k8s::StoredObject>(o));
    translate::Translation t = translate::translate(state->store, {}, 3);
    state->snapshot = t.snapshot;
    state->issues = t.issues;
    state->issues.push_back({"objects.yaml", 9, "Service", "shop", "api", "spec", "made up"});
    state->reloads = 5;
    state->issues_total = 12;
    slot_.set(state);
  }

  AdminResponse get(const std::string& path, const std::string& method = "GET") {
    AdminRequest req;
    req.method = method;
    req.path = path;
    return handle_admin(req, sources_);
  }

  json get_json(const std::string& path, int status = 200) {
    AdminResponse r = get(path);
    EXPECT_EQ(r.status, status) << path << ": " << r.body;
    EXPECT_EQ(r.content_type, "application/json") << path;
    json j = json::parse(r.body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << path << ": " << r.body;
    return j;
  }

  control::StateSlot slot_;
  proxy::Stats stats_;
  AdminSources sources_;
};

TEST_F(AdminTest, HealthAndReadiness) {
  EXPECT_EQ(get("/healthz").status, 200);
  EXPECT_EQ(get("/healthz").body, "ok\n");
  EXPECT_EQ(get("/readyz").status, 503);  // nothing published yet
  EXPECT_EQ(get_json("/api/v1/services", 503)["reason"], "ServiceUnavailable");
  publish();
  EXPECT_EQ(get("/readyz").status, 200);
  EXPECT_EQ(get("/healthz").status, 200);
  EXPECT_EQ(get("/healthz", "HEAD").status, 200);
  EXPECT_EQ(get("/healthz", "POST").status, 405);
  EXPECT_EQ(get("/nope").status, 404);
}

TEST_F(AdminTest, ReadinessNamesWhatTheSourceStillWaitsFor) {
  std::string pending = "waiting for the first list of Secret from the API server";
  sources_.not_ready = [&pending] { return pending; };
  publish();
  auto r = get("/readyz");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "not ready: waiting for the first list of Secret from the API server\n");
  pending.clear();
  EXPECT_EQ(get("/readyz").status, 200);
}

TEST_F(AdminTest, DiscoveryDocuments) {
  publish();
  json api = get_json("/api");
  EXPECT_EQ(api["kind"], "APIVersions");
  EXPECT_EQ(api["versions"], json::array({"v1"}));
  EXPECT_EQ(api["serverAddressByClientCIDRs"][0]["serverAddress"], "127.0.0.1:10254");
  EXPECT_EQ(api["serverAddressByClientCIDRs"][0]["clientCIDR"], "0.0.0.0/0");

  json v1 = get_json("/api/v1");
  EXPECT_EQ(v1["kind"], "APIResourceList");
  EXPECT_EQ(v1["groupVersion"], "v1");
  std::map<std::string, json> core;
  for (const auto& r : v1["resources"]) core[r["name"]] = r;
  EXPECT_EQ(core.size(), 2u);
  ASSERT_TRUE(core.contains("services"));
  EXPECT_EQ(core["services"]["kind"], "Service");
  EXPECT_EQ(core["services"]["singularName"], "service");
  EXPECT_EQ(core["services"]["namespaced"], true);
  EXPECT_EQ(core["services"]["verbs"], json::array({"get", "list"}));
  EXPECT_EQ(core["services"]["shortNames"], json::array({"svc"}));
  ASSERT_TRUE(core.contains("endpoints"));
  EXPECT_FALSE(core.contains("secrets"));  // never served

  json apis = get_json("/apis");
  EXPECT_EQ(apis["kind"], "APIGroupList");
  EXPECT_EQ(apis["apiVersion"], "v1");
  std::map<std::string, json> groups;
  for (const auto& g : apis["groups"]) groups[g["name"]] = g;
  ASSERT_EQ(groups.size(), 2u);
  json want_networking = {{"groupVersion", "networking.k8s.io/v1"}, {"version", "v1"}};
  EXPECT_EQ(groups["networking.k8s.io"]["versions"], json::array({want_networking}));
  EXPECT_EQ(groups["networking.k8s.io"]["preferredVersion"], want_networking);
  EXPECT_EQ(groups["discovery.k8s.io"]["preferredVersion"]["groupVersion"], "discovery.k8s.io/v1");

  json net = get_json("/apis/networking.k8s.io/v1");
  EXPECT_EQ(net["kind"], "APIResourceList");
  EXPECT_EQ(net["groupVersion"], "networking.k8s.io/v1");
  std::map<std::string, json> nr;
  for (const auto& r : net["resources"]) nr[r["name"]] = r;
  ASSERT_EQ(nr.size(), 2u);
  EXPECT_EQ(nr["ingresses"]["namespaced"], true);
  EXPECT_EQ(nr["ingresses"]["kind"], "Ingress");
  EXPECT_EQ(nr["ingresses"]["shortNames"], json::array({"ing"}));
  EXPECT_EQ(nr["ingressclasses"]["namespaced"], false);
  EXPECT_FALSE(nr["ingressclasses"].contains("shortNames"));

  json disc = get_json("/apis/discovery.k8s.io/v1");
  ASSERT_EQ(disc["resources"].size(), 1u);
  EXPECT_EQ(disc["resources"][0]["name"], "endpointslices");

  json version = get_json("/version");
  EXPECT_EQ(version["major"], "1");
  EXPECT_TRUE(version["gitVersion"].is_string());

  for (const char* missing : {"/apis/apps/v1", "/api/v2", "/apis/networking.k8s.io/v2"}) {
    json s = get_json(missing, 404);
    EXPECT_EQ(s["kind"], "Status") << missing;
  }
}

TEST_F(AdminTest, ListsAreShapedAsTheApiReturnsThem) {
  publish();
  json list = get_json("/api/v1/services");
  EXPECT_EQ(list["kind"], "ServiceList");
  EXPECT_EQ(list["apiVersion"], "v1");
  EXPECT_EQ(list["metadata"]["resourceVersion"], "5");
  ASSERT_EQ(list["items"].size(), 2u);
  std::set<std::string> names;
  for (const auto& item : list["items"]) {
    EXPECT_FALSE(item.contains("kind"));
    EXPECT_FALSE(item.contains("apiVersion"));
    EXPECT_TRUE(item["metadata"].contains("namespace"));
    names.insert(item["metadata"]["namespace"].get<std::string>() + "/" +
                 item["metadata"]["name"].get<std::string>());
  }
  EXPECT_EQ(names, (std::set<std::string>{"default/web", "shop/api"}));

  json shop = get_json("/api/v1/namespaces/shop/services");
  EXPECT_EQ(shop["kind"], "ServiceList");
  ASSERT_EQ(shop["items"].size(), 1u);
  EXPECT_EQ(shop["items"][0]["metadata"]["name"], "api");
  EXPECT_EQ(get_json("/api/v1/namespaces/empty/services")["items"].size(), 0u);

  json classes = get_json("/apis/networking.k8s.io/v1/ingressclasses");
  EXPECT_EQ(classes["kind"], "IngressClassList");
  EXPECT_EQ(classes["apiVersion"], "networking.k8s.io/v1");
  ASSERT_EQ(classes["items"].size(), 2u);
  EXPECT_FALSE(classes["items"][0]["metadata"].contains("namespace"));

  json slices = get_json("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices");
  EXPECT_EQ(slices["kind"], "EndpointSliceList");
  EXPECT_EQ(slices["items"].size(), 1u);
  EXPECT_EQ(get_json("/api/v1/endpoints")["kind"], "EndpointsList");

  EXPECT_EQ(get_json("/api/v1/secrets", 404)["kind"], "Status");
  EXPECT_EQ(get_json("/api/v1/namespaces/default/secrets/hidden", 404)["kind"], "Status");
}

TEST_F(AdminTest, GetOneObject) {
  publish();
  json svc = get_json("/api/v1/namespaces/default/services/web");
  EXPECT_EQ(svc["kind"], "Service");
  EXPECT_EQ(svc["apiVersion"], "v1");
  EXPECT_EQ(svc["metadata"]["name"], "web");
  EXPECT_EQ(svc["metadata"]["namespace"], "default");
  EXPECT_EQ(svc["metadata"]["labels"]["app"], "web");
  EXPECT_TRUE(svc["metadata"].contains("creationTimestamp"));
  EXPECT_EQ(svc["spec"]["ports"][0]["targetPort"], 8080);

  json ic = get_json("/apis/networking.k8s.io/v1/ingressclasses/kedge");
  EXPECT_EQ(ic["kind"], "IngressClass");
  EXPECT_EQ(ic["spec"]["controller"], "kedge.dev/ingress-controller");

  json missing = get_json("/api/v1/namespaces/default/services/nope", 404);
  EXPECT_EQ(missing["kind"], "Status");
  EXPECT_EQ(missing["apiVersion"], "v1");
  EXPECT_EQ(missing["status"], "Failure");
  EXPECT_EQ(missing["reason"], "NotFound");
  EXPECT_EQ(missing["code"], 404);
  EXPECT_EQ(missing["message"], "services \"nope\" not found");
  EXPECT_TRUE(missing["metadata"].is_object());
  // The right name in the wrong namespace is not found either.
  EXPECT_EQ(get_json("/api/v1/namespaces/shop/services/web", 404)["reason"], "NotFound");
  EXPECT_EQ(get_json("/api/v1/namespaces/default/services/web/extra", 404)["kind"], "Status");
}

TEST_F(AdminTest, ReadOnly) {
  publish();
  EXPECT_EQ(get("/api/v1/namespaces/default/services/web", "DELETE").status, 405);
  // HEAD is GET without a body (the server drops it), not a write.
  AdminResponse head = get("/api/v1/namespaces/default/services/web", "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, get("/api/v1/namespaces/default/services/web").body);
}

TEST_F(AdminTest, IngressStatusOnlyForServedIngresses) {
  publish();
  json ours = get_json("/apis/networking.k8s.io/v1/namespaces/default/ingresses/ours");
  EXPECT_EQ(ours["status"]["loadBalancer"]["ingress"], json::parse(R"([{"ip": "192.0.2.7"}])"));
  json theirs = get_json("/apis/networking.k8s.io/v1/namespaces/shop/ingresses/theirs");
  EXPECT_EQ(theirs["status"], json::parse(R"({"loadBalancer": {}})"));
  json list = get_json("/apis/networking.k8s.io/v1/ingresses");
  EXPECT_EQ(list["kind"], "IngressList");
  ASSERT_EQ(list["items"].size(), 2u);
  for (const auto& item : list["items"]) {
    bool served = item["metadata"]["name"] == "ours";
    EXPECT_EQ(item["status"]["loadBalancer"].contains("ingress"), served);
  }
}

TEST_F(AdminTest, DebugEndpoints) {
  EXPECT_EQ(get("/debug/snapshot").status, 503);
  publish();
  json snap = get_json("/debug/snapshot");
  EXPECT_EQ(snap["generation"], 3);
  EXPECT_EQ(snap["ingresses"], json::array({"default/ours"}));
  EXPECT_EQ(snap["hosts"]["web.example.com"][0]["cluster"], "default/web:80");
  EXPECT_EQ(snap["clusters"]["default/web:80"]["endpoints"][0]["address"], "10.0.0.1:8080");
  json errors = get_json("/debug/errors");
  ASSERT_EQ(errors["issues"].size(), 1u);
  EXPECT_EQ(errors["issues"][0]["text"], "objects.yaml:9: Service shop/api: spec: made up");
  EXPECT_EQ(errors["issues"][0]["line"], 9);
}

// ---------------------------------------------------------------------------------------------
// Metrics

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value;
};

/// Parses the Prometheus text format strictly enough to catch malformed output: every sample is
/// `name{labels} value`, and its family has a # TYPE line before it.
std::vector<Sample> parse_prometheus(const std::string& text,
                                     std::map<std::string, std::string>& types) {
  std::vector<Sample> out;
  static const std::regex kType(
      R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+)");
  static const std::regex kSample(R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+))");
  static const std::regex kLabel(R"(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)\"(,|$))");
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, kType)) {
      EXPECT_FALSE(types.contains(m[1])) << "second TYPE line for " << m[1];
      types[m[1]] = m[2];
      continue;
    }
    if (std::regex_match(line, kHelp)) continue;
    if (!std::regex_match(line, m, kSample)) {
      ADD_FAILURE() << "malformed line: " << line;
      continue;
    }
    Sample s;
    s.name = m[1];
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!types.contains(family) && family.ends_with(suffix))
        family.resize(family.size() - std::string_view(suffix).size());
    EXPECT_TRUE(types.contains(family)) << "no TYPE before " << line;
    std::string labels = m[3];
    for (auto it = std::sregex_iterator(labels.begin(), labels.end(), kLabel);
         it != std::sregex_iterator(); ++it)
      s.labels[(*it)[1]] = (*it)[2];
    s.value = std::stod(m[4]);
    out.push_back(std::move(s));
  }
  return out;
}

TEST_F(AdminTest, MetricsFormat) {
  stats_.requests["ingress=\"default/ours\",service=\"default/web:80\""].by_status[200] = 3;
  stats_.requests["ingress=\"default/ours\",service=\"default/web:80\""].by_status[503] = 1;
  stats_.unrouted[404] = 2;
  stats_.observe_latency(0.0005);
  stats_.observe_latency(0.02);
  stats_.observe_latency(0.02);
  stats_.observe_latency(10);
  stats_.active_connections = 4;
  stats_.accepted_connections = 40;
  stats_.upstream_connect_failures = 1;
  stats_.snapshot_generation = 3;
  publish();

  AdminResponse r = get("/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  ASSERT_TRUE(r.body.ends_with("\n"));
  std::map<std::string, std::string> types;
  std::vector<Sample> samples = parse_prometheus(r.body, types);
  EXPECT_EQ(types["kedge_requests_total"], "counter");
  EXPECT_EQ(types["kedge_upstream_latency_seconds"], "histogram");
  EXPECT_EQ(types["kedge_active_connections"], "gauge");
  EXPECT_EQ(types["kedge_config_errors"], "gauge");

  auto value = [&](const std::string& name, std::map<std::string, std::string> labels = {}) {
    for (const auto& s : samples)
      if (s.name == name && s.labels == labels) return s.value;
    ADD_FAILURE() << "no sample " << name;
    return -1.0;
  };
  EXPECT_EQ(value("kedge_requests_total",
                  {{"ingress", "default/ours"}, {"service", "default/web:80"}, {"status", "200"}}),
            3);
  EXPECT_EQ(value("kedge_requests_total",
                  {{"ingress", "default/ours"}, {"service", "default/web:80"}, {"status", "503"}}),
            1);
  EXPECT_EQ(value("kedge_requests_total", {{"ingress", ""}, {"service", ""}, {"status", "404"}}),
            2);
  // Histogram: cumulative buckets in order, +Inf equal to the count.
  std::vector<double> buckets;
  std::vector<std::string> bounds;
  for (const auto& s : samples)
    if (s.name == "kedge_upstream_latency_seconds_bucket") {
      buckets.push_back(s.value);
      bounds.push_back(s.labels.at("le"));
    }
  ASSERT_EQ(buckets.size(), proxy::Stats::kLatencyBounds.size() + 1);
  EXPECT_TRUE(std::is_sorted(buckets.begin(), buckets.end()));
  EXPECT_EQ(bounds.front(), "0.001");
  EXPECT_EQ(bounds.back(), "+Inf");
  EXPECT_EQ(value("kedge_upstream_latency_seconds_bucket", {{"le", "0.001"}}), 1);
  EXPECT_EQ(value("kedge_upstream_latency_seconds_bucket", {{"le", "0.025"}}), 3);
  EXPECT_EQ(value("kedge_upstream_latency_seconds_bucket", {{"le", "5"}}), 3);
  EXPECT_EQ(buckets.back(), 4);
  EXPECT_EQ(value("kedge_upstream_latency_seconds_count"), 4);
  EXPECT_NEAR(value("kedge_upstream_latency_seconds_sum"), 10.0405, 1e-9);
  EXPECT_EQ(value("kedge_active_connections"), 4);
  EXPECT_EQ(value("kedge_accepted_connections_total"), 40);
  EXPECT_EQ(value("kedge_upstream_connect_failures_total"), 1);
  EXPECT_EQ(value("kedge_config_reloads_total"), 5);
  EXPECT_EQ(value("kedge_config_errors"), 1);
  EXPECT_EQ(value("kedge_config_errors_total"), 12);
  EXPECT_EQ(value("kedge_snapshot_generation"), 3);
  EXPECT_EQ(value("kedge_worker_snapshot_generation"), 3);
}

TEST_F(AdminTest, MetricsBeforeAnyConfiguration) {
  std::map<std::string, std::string> types;
  std::vector<Sample> samples = parse_prometheus(render_metrics(stats_, nullptr), types);
  EXPECT_FALSE(samples.empty());
  for (const auto& s : samples) {
    if (s.name.starts_with("kedge_config") || s.name == "kedge_snapshot_generation") {
      EXPECT_EQ(s.value, 0) << s.name;
    }
  }
}

}  // namespace
}  // namespace kedge::admin
