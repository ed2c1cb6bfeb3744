#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace kedge::k8s {

/// The kinds kedge understands, in the order the translator processes them.
enum class Kind { Service, EndpointSlice, Endpoints, Ingress, IngressClass, Secret, IPAddressPool };

std::string_view kind_name(Kind kind);

/// Where an object came from: a manifest file and line, or the Kubernetes API.
struct Origin {
  std::string file;  // manifest path, or "api"
  int line = 0;      // 1-based line of the document start; 0 when unknown
};

struct ObjectMeta {
  std::string name;
  std::string namespace_;
  std::string uid;
  std::string resource_version;
  std::string creation_timestamp;  // RFC 3339; orders Ingress conflicts
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;

  std::string annotation(const std::string& key) const {
    auto it = annotations.find(key);
    return it == annotations.end() ? std::string() : it->second;
  }
};

/// A Kubernetes IntOrString (targetPort, port.name or number).
struct IntOrString {
  std::optional<int32_t> number;
  std::string name;
  bool empty() const { return !number && name.empty(); }
};

struct ServicePort {
  std::string name;
  std::string protocol = "TCP";
  int32_t port = 0;
  IntOrString target_port;  // defaults to `port`
  int32_t node_port = 0;
  std::string app_protocol;
};

struct Service {
  ObjectMeta meta;
  std::string type = "ClusterIP";
  std::map<std::string, std::string> selector;
  std::string cluster_ip;
  std::vector<ServicePort> ports;
  std::string external_name;
  std::string session_affinity = "None";
  std::string external_traffic_policy = "Cluster";
  std::string internal_traffic_policy = "Cluster";
  std::string load_balancer_ip;
  std::string load_balancer_class;
  int32_t health_check_node_port = 0;
  bool allocate_load_balancer_node_ports = true;
  int32_t session_affinity_timeout_seconds = 10800;  // sessionAffinityConfig.clientIP
};

struct EndpointConditions {
  bool ready = true;  // a missing `ready` means ready (the API server does not default it)
  bool serving = true;
  bool terminating = false;
};

struct Endpoint {
  std::vector<std::string> addresses;
  EndpointConditions conditions;
  std::string node_name;
  std::string target_pod;
};

struct EndpointPort {
  std::string name;
  std::string protocol = "TCP";
  int32_t port = 0;
};

struct EndpointSlice {
  ObjectMeta meta;
  std::string address_type = "IPv4";
  std::vector<Endpoint> endpoints;
  std::vector<EndpointPort> ports;
  std::string service_name() const;  // label kubernetes.io/service-name
};

struct EndpointSubset {
  std::vector<Endpoint> addresses;  // ready ones; not-ready ones have conditions.ready = false
  std::vector<EndpointPort> ports;
};

/// Legacy v1 Endpoints; used for a Service only when no EndpointSlice names it.
struct Endpoints {
  ObjectMeta meta;
  std::vector<EndpointSubset> subsets;
};

struct IngressServiceBackend {
  std::string name;
  IntOrString port;  // number or name
};

struct IngressBackend {
  std::optional<IngressServiceBackend> service;
  bool resource = false;  // a `resource` backend: reported as unsupported
};

enum class PathType { Exact, Prefix, ImplementationSpecific };

struct HttpIngressPath {
  std::string path;
  PathType path_type = PathType::Prefix;
  IngressBackend backend;
};

struct IngressRule {
  std::string host;
  std::vector<HttpIngressPath> paths;
};

struct IngressTls {
  std::vector<std::string> hosts;
  std::string secret_name;
};

struct Ingress {
  ObjectMeta meta;
  std::optional<std::string> ingress_class_name;
  std::optional<IngressBackend> default_backend;
  std::vector<IngressRule> rules;
  std::vector<IngressTls> tls;
};

struct IngressClass {
  ObjectMeta meta;
  std::string controller;
  bool is_default() const;
};

struct Secret {
  ObjectMeta meta;
  std::string type;
  std::map<std::string, std::string> data;  // decoded bytes
};

/// MetalLB's `metallb.io/v1beta1 IPAddressPool`: addresses for LoadBalancer Services.
struct IPAddressPool {
  ObjectMeta meta;
  std::vector<std::string> addresses;  // CIDRs or "first-last" ranges
  bool auto_assign = true;
};

using Object =
    std::variant<Service, EndpointSlice, Endpoints, Ingress, IngressClass, Secret, IPAddressPool>;

Kind kind_of(const Object& object);

/// The Kind of a typed object, at compile time: its index in Object.
template <class T, size_t I = 0>
constexpr Kind kind_for() {
  if constexpr (std::is_same_v<T, std::variant_alternative_t<I, Object>>)
    return static_cast<Kind>(I);
  else
    return kind_for<T, I + 1>();
}
const ObjectMeta& meta_of(const Object& object);

/// An object's JSON as compact text. A parsed tree costs about ten times the text (a map node per
/// field), and only the read API and the writes back to the API server need it, rarely: they
/// parse it then. Text with invalid UTF-8 is kept with replacement characters.
class RawJson {
 public:
  RawJson() = default;
  /// The text is what `json.dump(-1, ' ', false, error_handler_t::replace)` gives, written
  /// without the library's per-character escaping loop for the plain strings that are nearly all
  /// of a manifest (a third of the time to load 10,000 Ingresses went into dump()).
  explicit RawJson(const nlohmann::json& json);
  nlohmann::json parse() const {
    return text_.empty() ? nlohmann::json::object() : nlohmann::json::parse(text_);
  }
  const std::string& text() const { return text_; }
  bool operator==(const RawJson&) const = default;

 private:
  std::string text_;
};

/// An object as the store keeps it: typed view, the original JSON (for the read API), its
/// status.loadBalancer.ingress (null when absent: what the status writer and the allocator
/// compare) and origin. Immutable once stored; shared between the store and published views.
struct StoredObject {
  Object object;
  RawJson raw;
  nlohmann::json lb_status;
  Origin origin;
};
using StoredObjectConstPtr = std::shared_ptr<const StoredObject>;

}  // namespace kedge::k8s
