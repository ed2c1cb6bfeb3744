#include "k8s/objects.h"

namespace kedge::k8s {

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::Service:
      return "Service";
    case Kind::EndpointSlice:
      return "EndpointSlice";
    case Kind::Endpoints:
      return "Endpoints";
    case Kind::Ingress:
      return "Ingress";
    case Kind::IngressClass:
      return "IngressClass";
    case Kind::Secret:
      return "Secret";
    case Kind::IPAddressPool:
      return "IPAddressPool";
  }
  return "Unknown";
}

std::string EndpointSlice::service_name() const {
  auto it = meta.labels.find("kubernetes.io/service-name");
  return it == meta.labels.end() ? std::string() : it->second;
}

bool IngressClass::is_default() const {
  return meta.annotation("ingressclass.kubernetes.io/is-default-class") == "true";
}

Kind kind_of(const Object& object) { return static_cast<Kind>(object.index()); }

const ObjectMeta& meta_of(const Object& object) {
  return std::visit([](const auto& o) -> const ObjectMeta& { return o.meta; }, object);
}

}  // namespace kedge::k8s
