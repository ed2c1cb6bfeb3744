// A read-only Kubernetes-style API over the objects kedge holds, enough for kubectl get.
#include "admin/admin_server.h"

#include <nlohmann/json.hpp>

#include <set>

namespace kedge::admin {

using nlohmann::json;

namespace {

struct Resource {
  const char* group;  // "" for the core group
  const char* version;
  const char* plural;
  const char* singular;
  const char* kind;
  bool namespaced;
  k8s::Kind store_kind;
  const char* short_name;
};

constexpr Resource kResources[] = {
    {"", "v1", "services", "service", "Service", true, k8s::Kind::Service, "svc"},
    {"", "v1", "endpoints", "endpoints", "Endpoints", true, k8s::Kind::Endpoints, "ep"},
    {"networking.k8s.io", "v1", "ingresses", "ingress", "Ingress", true, k8s::Kind::Ingress, "ing"},
    {"networking.k8s.io", "v1", "ingressclasses", "ingressclass", "IngressClass", false,
     k8s::Kind::IngressClass, ""},
    {"discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", true,
     k8s::Kind::EndpointSlice, ""},
};

AdminResponse json_response(int status, const json& body) {
  // A name from the request path may be any bytes: invalid UTF-8 is replaced, not thrown.
  return {status, "application/json",
          body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"};
}

AdminResponse status_error(int code, const std::string& reason, const std::string& message) {
  return json_response(code, {{"kind", "Status"},
                              {"apiVersion", "v1"},
                              {"metadata", json::object()},
                              {"status", "Failure"},
                              {"message", message},
                              {"reason", reason},
                              {"code", code}});
}

json resource_list(const std::string& group_version) {
  json resources = json::array();
  for (const Resource& r : kResources) {
    std::string gv =
        std::string(r.group).empty() ? r.version : std::string(r.group) + "/" + r.version;
    if (gv != group_version) continue;
    json item = {{"name", r.plural},
                 {"singularName", r.singular},
                 {"namespaced", r.namespaced},
                 {"kind", r.kind},
                 {"verbs", {"get", "list"}}};
    if (*r.short_name) item["shortNames"] = {r.short_name};
    resources.push_back(item);
  }
  return {{"kind", "APIResourceList"},
          {"apiVersion", "v1"},
          {"groupVersion", group_version},
          {"resources", resources}};
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    if (slash > start) parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

/// The object as the API would return it: identity filled in, status for served Ingresses.
json render(const k8s::StoredObject& so, const Resource& r, const control::PublishedState& state,
            const AdminSources& sources) {
  json obj = so.raw.parse();
  obj["apiVersion"] =
      std::string(r.group).empty() ? r.version : std::string(r.group) + "/" + r.version;
  obj["kind"] = r.kind;
  const k8s::ObjectMeta& m = k8s::meta_of(so.object);
  if (r.namespaced) obj["metadata"]["namespace"] = m.namespace_;
  if (!obj["metadata"].contains("creationTimestamp"))
    obj["metadata"]["creationTimestamp"] = nullptr;
  if (r.store_kind == k8s::Kind::Service) {
    auto it = state.allocations->services.find(m.namespace_ + "/" + m.name);
    if (it != state.allocations->services.end()) {
      const translate::ServiceAllocation& a = it->second;
      json& spec = obj["spec"];
      if (!a.cluster_ip.empty()) {
        spec["clusterIP"] = a.cluster_ip;
        spec["clusterIPs"] = {a.cluster_ip};
      }
      const auto& svc = std::get<k8s::Service>(so.object);
      if (spec.contains("ports") && spec["ports"].is_array())
        for (size_t i = 0; i < svc.ports.size() && i < spec["ports"].size(); ++i) {
          auto np = a.node_ports.find(translate::port_key(svc.ports[i]));
          if (np != a.node_ports.end()) spec["ports"][i]["nodePort"] = np->second;
        }
      if (a.health_check_node_port) spec["healthCheckNodePort"] = a.health_check_node_port;
      obj["status"] = {{"loadBalancer", json::object()}};
      if (!a.load_balancer_ip.empty())
        obj["status"]["loadBalancer"]["ingress"] = {
            {{"ip", a.load_balancer_ip}, {"ipMode", "VIP"}}};
    }
  }
  if (r.store_kind == k8s::Kind::Ingress) {
    bool ours = state.snapshot->served_ingresses.contains(m.namespace_ + "/" + m.name);
    obj["status"] = {{"loadBalancer", json::object()}};
    if (ours && !sources.publish_address.empty())
      obj["status"]["loadBalancer"]["ingress"] = {{{"ip", sources.publish_address}}};
  }
  return obj;
}

}  // namespace

std::optional<AdminResponse> handle_k8s_api(const AdminRequest& req,
                                            const control::PublishedState* state,
                                            const AdminSources& sources) {
  const std::string& p = req.path;
  if (p == "/version") {
    return json_response(200, {{"major", "1"},
                               {"minor", "32"},
                               {"gitVersion", "v1.32.0+kedge"},
                               {"platform", "linux/amd64"}});
  }
  if (p == "/api") {
    return json_response(
        200, {{"kind", "APIVersions"},
              {"versions", {"v1"}},
              {"serverAddressByClientCIDRs",
               {{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", sources.server_address}}}}});
  }
  if (p == "/apis") {
    json groups = json::array();
    std::set<std::string> seen;
    for (const Resource& r : kResources) {
      if (!*r.group || !seen.insert(r.group).second) continue;
      std::string gv = std::string(r.group) + "/" + r.version;
      json v = {{"groupVersion", gv}, {"version", r.version}};
      groups.push_back({{"name", r.group}, {"versions", {v}}, {"preferredVersion", v}});
    }
    return json_response(200, {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}});
  }
  auto parts = split_path(p);
  if (parts.empty() || (parts[0] != "api" && parts[0] != "apis")) return std::nullopt;
  // /api/v1/... or /apis/GROUP/VERSION/...
  size_t at = parts[0] == "api" ? 2 : 3;
  if (parts.size() < at)
    return status_error(404, "NotFound",
                        "the server could not find the "
                        "requested resource");
  std::string group = parts[0] == "api" ? "" : parts[1];
  std::string version = parts[at - 1];
  std::string gv = group.empty() ? version : group + "/" + version;
  if (parts.size() == at) {
    json list = resource_list(gv);
    if (list["resources"].empty())
      return status_error(404, "NotFound", "the server could not find the requested resource");
    return json_response(200, list);
  }
  std::string ns;
  if (parts[at] == "namespaces" && parts.size() >= at + 3) {
    ns = parts[at + 1];
    at += 2;
  }
  const std::string& plural = parts[at];
  std::string name = parts.size() > at + 1 ? parts[at + 1] : "";
  if (parts.size() > at + 2)
    return status_error(404, "NotFound", "the server could not find the requested resource");
  const Resource* res = nullptr;
  for (const Resource& r : kResources)
    if (r.group == group && r.version == version && r.plural == plural) res = &r;
  if (!res || (!res->namespaced && !ns.empty()))  // cluster-scoped kinds have no namespace path
    return status_error(404, "NotFound", "the server could not find the requested resource");
  // HEAD is a GET whose body AdminServer drops, as for the other admin routes.
  if (req.method != "GET" && req.method != "HEAD")
    return status_error(405, "MethodNotAllowed", "this API is read-only");
  if (!state || !state->snapshot)
    return status_error(503, "ServiceUnavailable", "no configuration loaded yet");
  if (!name.empty()) {
    const k8s::StoredObject* so =
        state->store.find(k8s::ObjectKey{res->store_kind, res->namespaced ? ns : "", name});
    if (!so)
      return status_error(404, "NotFound",
                          std::string(res->plural) + " \"" + name + "\" not found");
    return json_response(200, render(*so, *res, *state, sources));
  }
  json items = json::array();
  for (const auto& [key, so] : state->store) {
    if (key.kind != res->store_kind) continue;
    if (!ns.empty() && key.namespace_ != ns) continue;
    json obj = render(*so, *res, *state, sources);
    obj.erase("kind");  // list items carry no kind/apiVersion
    obj.erase("apiVersion");
    items.push_back(std::move(obj));
  }
  return json_response(200, {{"kind", std::string(res->kind) + "List"},
                             {"apiVersion", res->group[0] ? gv : "v1"},
                             {"metadata", {{"resourceVersion", std::to_string(state->reloads)}}},
                             {"items", items}});
}

}  // namespace kedge::admin
