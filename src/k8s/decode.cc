#include "k8s/decode.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <set>

namespace kedge::k8s {
namespace {

using nlohmann::json;

bool is_dns_label(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '-'))
      return false;
  }
  return s.front() != '-' && s.back() != '-';
}

bool is_dns_subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    if (!is_dns_label(s.substr(start, dot == std::string_view::npos ? dot : dot - start)))
      return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool is_ip_literal(std::string_view s) {
  std::string text(s);
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

std::optional<std::string> base64_decode(const std::string& in) {
  std::string compact;
  for (char c : in)
    if (!std::isspace(static_cast<unsigned char>(c))) compact += c;
  if (compact.size() % 4 != 0) return std::nullopt;
  std::string out(compact.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(compact.data()),
                          static_cast<int>(compact.size()));
  if (n < 0) return std::nullopt;
  size_t pad = 0;
  if (!compact.empty() && compact.back() == '=') ++pad;
  if (compact.size() > 1 && compact[compact.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

/// Walks one object's JSON, tracking the field path, and records typed problems.
class Reader {
 public:
  Reader(const Origin& origin, const LineMap* lines, Issues& issues, DecodeOutcome& id)
      : origin_(origin), lines_(lines), issues_(issues), id_(id) {}

  void error(const std::string& field, std::string message) {
    Issue issue;
    issue.file = origin_.file;
    issue.line = line_of(field);
    issue.kind = id_.kind;
    issue.namespace_ = id_.namespace_;
    issue.name = id_.name;
    issue.field = field;
    issue.message = std::move(message);
    issues_.push_back(std::move(issue));
    ++errors_;
  }
  int errors() const { return errors_; }

  static std::string join(const std::string& base, std::string_view key) {
    std::string out = base;
    if (!out.empty()) out += '.';
    out += key;
    return out;
  }
  static std::string index(const std::string& base, size_t i) {
    std::string out = base;
    out += '[';
    out += std::to_string(i);
    out += ']';
    return out;
  }

  const json* member(const json& obj, std::string_view key) {
    if (!obj.is_object()) return nullptr;
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::string string(const json& obj, const std::string& base, std::string_view key,
                     bool required = false) {
    const json* v = member(obj, key);
    if (!v) {
      if (required) error(join(base, key), "Required value");
      return {};
    }
    if (!v->is_string()) {
      error(join(base, key), "must be a string");
      return {};
    }
    return v->get<std::string>();
  }

  std::optional<int64_t> integer(const json& obj, const std::string& base, std::string_view key,
                                 bool required = false) {
    const json* v = member(obj, key);
    if (!v) {
      if (required) error(join(base, key), "Required value");
      return std::nullopt;
    }
    if (!v->is_number_integer()) {
      error(join(base, key), "must be an integer");
      return std::nullopt;
    }
    return v->get<int64_t>();
  }

  std::optional<bool> boolean(const json& obj, const std::string& base, std::string_view key) {
    const json* v = member(obj, key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) {
      error(join(base, key), "must be a boolean");
      return std::nullopt;
    }
    return v->get<bool>();
  }

  std::map<std::string, std::string> string_map(const json& obj, const std::string& base,
                                                std::string_view key) {
    std::map<std::string, std::string> out;
    const json* v = member(obj, key);
    if (!v) return out;
    if (!v->is_object()) {
      error(join(base, key), "must be a map of strings");
      return out;
    }
    for (auto& [k, val] : v->items()) {
      if (!val.is_string()) {
        error(join(join(base, key), k), "must be a string");
        continue;
      }
      out[k] = val.get<std::string>();
    }
    return out;
  }

  /// Calls fn(element, path) for each element of an array member.
  template <class Fn>
  void each(const json& obj, const std::string& base, std::string_view key, Fn&& fn) {
    const json* v = member(obj, key);
    if (!v) return;
    std::string path = join(base, key);
    if (!v->is_array()) {
      error(path, "must be a list");
      return;
    }
    for (size_t i = 0; i < v->size(); ++i) fn((*v)[i], index(path, i));
  }

  IntOrString int_or_string(const json& obj, const std::string& base, std::string_view key) {
    IntOrString out;
    const json* v = member(obj, key);
    if (!v) return out;
    if (v->is_number_integer()) {
      out.number = v->get<int32_t>();
    } else if (v->is_string()) {
      out.name = v->get<std::string>();
    } else {
      error(join(base, key), "must be an integer or a string");
    }
    return out;
  }

  void port_range(int64_t port, const std::string& field, bool allow_zero = false) {
    if (port < (allow_zero ? 0 : 1) || port > 65535)
      error(field, fmt::format("Invalid value: {}: must be between 1 and 65535, inclusive", port));
  }

 private:
  int line_of(std::string field) const {
    if (!lines_) return origin_.line;
    while (true) {
      auto it = lines_->find(field);
      if (it != lines_->end()) return it->second;
      auto cut = field.find_last_of(".[");
      if (cut == std::string::npos) break;
      field.resize(cut);
    }
    return origin_.line;
  }

  const Origin& origin_;
  const LineMap* lines_;
  Issues& issues_;
  DecodeOutcome& id_;
  int errors_ = 0;
};

ObjectMeta decode_meta(Reader& r, const json& doc, bool namespaced) {
  ObjectMeta m;
  const json* md = r.member(doc, "metadata");
  if (!md || !md->is_object()) {
    r.error("metadata", "Required value");
    return m;
  }
  m.name = r.string(*md, "metadata", "name", true);
  if (!m.name.empty() && !is_dns_subdomain(m.name))
    r.error("metadata.name", fmt::format("Invalid value: \"{}\": must be a DNS subdomain", m.name));
  if (namespaced) {
    m.namespace_ = r.string(*md, "metadata", "namespace");
    if (m.namespace_.empty()) m.namespace_ = "default";
    if (!is_dns_label(m.namespace_))
      r.error("metadata.namespace",
              fmt::format("Invalid value: \"{}\": must be a DNS label", m.namespace_));
  }
  m.uid = r.string(*md, "metadata", "uid");
  m.resource_version = r.string(*md, "metadata", "resourceVersion");
  m.creation_timestamp = r.string(*md, "metadata", "creationTimestamp");
  m.labels = r.string_map(*md, "metadata", "labels");
  m.annotations = r.string_map(*md, "metadata", "annotations");
  return m;
}

Service decode_service(Reader& r, const json& doc) {
  Service s;
  s.meta = decode_meta(r, doc, true);
  static const json kEmpty = json::object();
  const json* specp = r.member(doc, "spec");
  const json& spec = specp ? *specp : kEmpty;
  s.type = r.string(spec, "spec", "type");
  if (s.type.empty()) s.type = "ClusterIP";
  static const std::set<std::string> kTypes = {"ClusterIP", "NodePort", "LoadBalancer",
                                               "ExternalName"};
  if (!kTypes.contains(s.type))
    r.error("spec.type", fmt::format("Unsupported value: \"{}\"", s.type));
  s.selector = r.string_map(spec, "spec", "selector");
  s.cluster_ip = r.string(spec, "spec", "clusterIP");
  s.external_name = r.string(spec, "spec", "externalName");
  s.load_balancer_ip = r.string(spec, "spec", "loadBalancerIP");
  s.load_balancer_class = r.string(spec, "spec", "loadBalancerClass");
  if (auto v = r.string(spec, "spec", "sessionAffinity"); !v.empty()) s.session_affinity = v;
  if (s.session_affinity != "None" && s.session_affinity != "ClientIP")
    r.error("spec.sessionAffinity", fmt::format("Unsupported value: \"{}\"", s.session_affinity));
  if (const json* sac = r.member(spec, "sessionAffinityConfig")) {
    if (const json* cip = r.member(*sac, "clientIP")) {
      if (auto t = r.integer(*cip, "spec.sessionAffinityConfig.clientIP", "timeoutSeconds")) {
        if (*t < 1 || *t > 86400)
          r.error("spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                  fmt::format("Invalid value: {}: must be greater than 0 and less than 86400", *t));
        s.session_affinity_timeout_seconds = static_cast<int32_t>(*t);
      }
    }
  }
  if (auto v = r.integer(spec, "spec", "healthCheckNodePort"))
    s.health_check_node_port = static_cast<int32_t>(*v);
  if (auto v = r.boolean(spec, "spec", "allocateLoadBalancerNodePorts"))
    s.allocate_load_balancer_node_ports = *v;
  if (auto v = r.string(spec, "spec", "externalTrafficPolicy"); !v.empty())
    s.external_traffic_policy = v;
  if (auto v = r.string(spec, "spec", "internalTrafficPolicy"); !v.empty())
    s.internal_traffic_policy = v;
  std::set<std::string> names;
  r.each(spec, "spec", "ports", [&](const json& p, const std::string& path) {
    ServicePort sp;
    sp.name = r.string(p, path, "name");
    if (auto v = r.string(p, path, "protocol"); !v.empty()) sp.protocol = v;
    if (sp.protocol != "TCP" && sp.protocol != "UDP" && sp.protocol != "SCTP")
      r.error(path + ".protocol", fmt::format("Unsupported value: \"{}\"", sp.protocol));
    if (auto port = r.integer(p, path, "port", true)) {
      r.port_range(*port, path + ".port");
      sp.port = static_cast<int32_t>(*port);
    }
    sp.target_port = r.int_or_string(p, path, "targetPort");
    if (sp.target_port.number) r.port_range(*sp.target_port.number, path + ".targetPort");
    if (sp.target_port.empty()) sp.target_port.number = sp.port;
    if (auto np = r.integer(p, path, "nodePort")) sp.node_port = static_cast<int32_t>(*np);
    sp.app_protocol = r.string(p, path, "appProtocol");
    if (!sp.name.empty() && !names.insert(sp.name).second)
      r.error(path + ".name", fmt::format("Duplicate value: \"{}\"", sp.name));
    s.ports.push_back(std::move(sp));
  });
  if (s.ports.size() > 1) {
    for (size_t i = 0; i < s.ports.size(); ++i)
      if (s.ports[i].name.empty())
        r.error(fmt::format("spec.ports[{}].name", i),
                "Required value: when there is more than one port");
  }
  if (s.ports.empty() && s.type != "ExternalName") r.error("spec.ports", "Required value");
  return s;
}

Endpoint decode_endpoint(Reader& r, const json& e, const std::string& path) {
  Endpoint ep;
  r.each(e, path, "addresses", [&](const json& a, const std::string& apath) {
    if (!a.is_string())
      r.error(apath, "must be a string");
    else
      ep.addresses.push_back(a.get<std::string>());
  });
  if (ep.addresses.empty()) r.error(path + ".addresses", "Required value");
  if (const json* c = r.member(e, "conditions")) {
    std::string cpath = path + ".conditions";
    ep.conditions.ready = r.boolean(*c, cpath, "ready").value_or(true);
    ep.conditions.serving = r.boolean(*c, cpath, "serving").value_or(ep.conditions.ready);
    ep.conditions.terminating = r.boolean(*c, cpath, "terminating").value_or(false);
  }
  ep.node_name = r.string(e, path, "nodeName");
  if (const json* t = r.member(e, "targetRef")) ep.target_pod = r.string(*t, path, "name");
  return ep;
}

std::vector<EndpointPort> decode_endpoint_ports(Reader& r, const json& obj,
                                                const std::string& base) {
  std::vector<EndpointPort> ports;
  r.each(obj, base, "ports", [&](const json& p, const std::string& path) {
    EndpointPort ep;
    ep.name = r.string(p, path, "name");
    if (auto v = r.string(p, path, "protocol"); !v.empty()) ep.protocol = v;
    if (auto port = r.integer(p, path, "port")) {
      r.port_range(*port, path + ".port");
      ep.port = static_cast<int32_t>(*port);
    }
    ports.push_back(std::move(ep));
  });
  return ports;
}

EndpointSlice decode_endpoint_slice(Reader& r, const json& doc) {
  EndpointSlice s;
  s.meta = decode_meta(r, doc, true);
  s.address_type = r.string(doc, "", "addressType", true);
  if (!s.address_type.empty() && s.address_type != "IPv4" && s.address_type != "IPv6" &&
      s.address_type != "FQDN")
    r.error("addressType", fmt::format("Unsupported value: \"{}\"", s.address_type));
  r.each(doc, "", "endpoints", [&](const json& e, const std::string& path) {
    s.endpoints.push_back(decode_endpoint(r, e, path));
  });
  s.ports = decode_endpoint_ports(r, doc, "");
  return s;
}

Endpoints decode_endpoints(Reader& r, const json& doc) {
  Endpoints e;
  e.meta = decode_meta(r, doc, true);
  r.each(doc, "", "subsets", [&](const json& sub, const std::string& path) {
    EndpointSubset subset;
    auto read = [&](const char* key, bool ready) {
      r.each(sub, path, key, [&](const json& a, const std::string& apath) {
        Endpoint ep;
        std::string ip = r.string(a, apath, "ip", true);
        if (!ip.empty()) ep.addresses.push_back(ip);
        ep.conditions.ready = ready;
        ep.conditions.serving = ready;
        ep.node_name = r.string(a, apath, "nodeName");
        if (const json* t = r.member(a, "targetRef")) ep.target_pod = r.string(*t, apath, "name");
        subset.addresses.push_back(std::move(ep));
      });
    };
    read("addresses", true);
    read("notReadyAddresses", false);
    subset.ports = decode_endpoint_ports(r, sub, path);
    e.subsets.push_back(std::move(subset));
  });
  return e;
}

IngressBackend decode_backend(Reader& r, const json& b, const std::string& path) {
  IngressBackend backend;
  const json* svc = r.member(b, "service");
  backend.resource = r.member(b, "resource") != nullptr;
  if (svc && backend.resource) {
    r.error(path, "Invalid value: cannot set both service and resource backends");
  } else if (!svc && !backend.resource) {
    r.error(path, "Required value: one of service or resource must be specified");
  }
  if (svc) {
    std::string spath = path + ".service";
    IngressServiceBackend sb;
    sb.name = r.string(*svc, spath, "name", true);
    if (!sb.name.empty() && !is_dns_label(sb.name))
      r.error(spath + ".name", fmt::format("Invalid value: \"{}\": must be a DNS label", sb.name));
    const json* port = r.member(*svc, "port");
    if (!port) {
      r.error(spath + ".port", "Required value");
    } else {
      std::string ppath = spath + ".port";
      sb.port.name = r.string(*port, ppath, "name");
      if (auto n = r.integer(*port, ppath, "number")) {
        r.port_range(*n, ppath + ".number");
        sb.port.number = static_cast<int32_t>(*n);
      }
      if (sb.port.number && !sb.port.name.empty())
        r.error(ppath, "Invalid value: cannot set both port name & port number");
      else if (sb.port.empty())
        r.error(ppath, "Required value: port name or number is required");
    }
    backend.service = std::move(sb);
  }
  return backend;
}

Ingress decode_ingress(Reader& r, const json& doc) {
  Ingress ing;
  ing.meta = decode_meta(r, doc, true);
  static const json kEmpty = json::object();
  const json* specp = r.member(doc, "spec");
  const json& spec = specp ? *specp : kEmpty;
  if (const json* c = r.member(spec, "ingressClassName")) {
    if (c->is_string())
      ing.ingress_class_name = c->get<std::string>();
    else
      r.error("spec.ingressClassName", "must be a string");
  }
  if (const json* d = r.member(spec, "defaultBackend"))
    ing.default_backend = decode_backend(r, *d, "spec.defaultBackend");
  r.each(spec, "spec", "rules", [&](const json& rule, const std::string& path) {
    IngressRule ir;
    ir.host = r.string(rule, path, "host");
    if (!ir.host.empty()) {
      std::string h = ir.host;
      if (h.starts_with("*.")) h = h.substr(2);
      if (is_ip_literal(ir.host))
        r.error(path + ".host", fmt::format("Invalid value: \"{}\": must be a DNS name, not an IP "
                                            "address",
                                            ir.host));
      else if (!is_dns_subdomain(h) && ir.host.find('*') != std::string::npos)
        r.error(path + ".host",
                fmt::format("Invalid value: \"{}\": a wildcard DNS-1123 subdomain must start with "
                            "'*.', followed by a valid DNS subdomain",
                            ir.host));
      else if (!is_dns_subdomain(h))
        r.error(path + ".host",
                fmt::format("Invalid value: \"{}\": a lowercase RFC 1123 subdomain must consist "
                            "of lower case alphanumeric characters, '-' or '.'",
                            ir.host));
    }
    const json* http = r.member(rule, "http");
    if (!http) {  // a rule with a host and no paths is valid; it routes nothing by itself
      ing.rules.push_back(std::move(ir));
      return;
    }
    std::string hpath = path + ".http";
    if (!r.member(*http, "paths")) r.error(hpath + ".paths", "Required value");
    r.each(*http, hpath, "paths", [&](const json& p, const std::string& ppath) {
      HttpIngressPath hp;
      hp.path = r.string(p, ppath, "path");
      std::string type = r.string(p, ppath, "pathType", true);
      if (type == "Exact")
        hp.path_type = PathType::Exact;
      else if (type == "Prefix")
        hp.path_type = PathType::Prefix;
      else if (type == "ImplementationSpecific")
        hp.path_type = PathType::ImplementationSpecific;
      else if (!type.empty())
        r.error(ppath + ".pathType",
                fmt::format("Unsupported value: \"{}\": supported values: \"Exact\", "
                            "\"ImplementationSpecific\", \"Prefix\"",
                            type));
      if (hp.path_type != PathType::ImplementationSpecific || !hp.path.empty()) {
        if (hp.path.empty() && hp.path_type != PathType::ImplementationSpecific)
          r.error(ppath + ".path", "Required value: must be specified for Exact and Prefix");
        else if (!hp.path.starts_with('/'))
          r.error(ppath + ".path",
                  fmt::format("Invalid value: \"{}\": must be an absolute path", hp.path));
      }
      if (hp.path_type != PathType::ImplementationSpecific &&
          (hp.path.find("//") != std::string::npos || hp.path.find("/./") != std::string::npos ||
           hp.path.find("/../") != std::string::npos || hp.path.find("%2f") != std::string::npos ||
           hp.path.find("%2F") != std::string::npos || hp.path.ends_with("/..") ||
           hp.path.ends_with("/.")))
        r.error(ppath + ".path",
                fmt::format("Invalid value: \"{}\": must not contain '//', '/./', '/../' or "
                            "'%2F', nor end in '/.' or '/..'",
                            hp.path));
      const json* b = r.member(p, "backend");
      if (!b)
        r.error(ppath + ".backend", "Required value");
      else
        hp.backend = decode_backend(r, *b, ppath + ".backend");
      ir.paths.push_back(std::move(hp));
    });
    ing.rules.push_back(std::move(ir));
  });
  if (ing.rules.empty() && !ing.default_backend)
    r.error("spec", "Invalid value: either `defaultBackend` or `rules` must be specified");
  r.each(spec, "spec", "tls", [&](const json& t, const std::string& path) {
    IngressTls tls;
    r.each(t, path, "hosts", [&](const json& h, const std::string& hpath) {
      if (!h.is_string())
        r.error(hpath, "must be a string");
      else
        tls.hosts.push_back(h.get<std::string>());
    });
    tls.secret_name = r.string(t, path, "secretName");
    ing.tls.push_back(std::move(tls));
  });
  return ing;
}

IngressClass decode_ingress_class(Reader& r, const json& doc) {
  IngressClass c;
  c.meta = decode_meta(r, doc, false);
  static const json kEmpty = json::object();
  const json* spec = r.member(doc, "spec");
  c.controller = r.string(spec ? *spec : kEmpty, "spec", "controller", true);
  return c;
}

Secret decode_secret(Reader& r, const json& doc) {
  Secret s;
  s.meta = decode_meta(r, doc, true);
  s.type = r.string(doc, "", "type");
  if (s.type.empty()) s.type = "Opaque";
  for (auto& [key, value] : r.string_map(doc, "", "data")) {
    auto bytes = base64_decode(value);
    if (!bytes)
      r.error("data." + key, "illegal base64 data");
    else
      s.data[key] = std::move(*bytes);
  }
  for (auto& [key, value] : r.string_map(doc, "", "stringData")) s.data[key] = value;
  return s;
}

IPAddressPool decode_ip_address_pool(Reader& r, const json& doc) {
  IPAddressPool p;
  p.meta = decode_meta(r, doc, true);
  static const json kEmpty = json::object();
  const json* spec = r.member(doc, "spec");
  const json& sp = spec ? *spec : kEmpty;
  r.each(sp, "spec", "addresses", [&](const json& a, const std::string& path) {
    if (!a.is_string())
      r.error(path, "must be a string");
    else
      p.addresses.push_back(a.get<std::string>());
  });
  if (p.addresses.empty()) r.error("spec.addresses", "Required value");
  p.auto_assign = r.boolean(sp, "spec", "autoAssign").value_or(true);
  return p;
}

}  // namespace

namespace {

DecodeOutcome decode(const json& doc, const Origin& origin, const LineMap* lines, Issues& issues) {
  DecodeOutcome out;
  Reader r(origin, lines, issues, out);
  if (!doc.is_object()) {
    r.error("", "a Kubernetes object must be a map");
    return out;
  }
  out.api_version = r.string(doc, "", "apiVersion");
  out.kind = r.string(doc, "", "kind");
  if (const json* md = r.member(doc, "metadata"); md && md->is_object()) {
    if (auto it = md->find("name"); it != md->end() && it->is_string()) out.name = *it;
    if (auto it = md->find("namespace"); it != md->end() && it->is_string()) out.namespace_ = *it;
  }
  if (out.kind.empty() || out.api_version.empty()) {
    if (r.errors() == 0) r.error(out.kind.empty() ? "kind" : "apiVersion", "Required value");
    return out;
  }
  const std::string& av = out.api_version;
  const std::string& k = out.kind;
  if (k == "IngressClass")
    out.namespace_.clear();  // cluster-scoped: a metadata.namespace is ignored, as by the API
  else if (out.namespace_.empty())
    out.namespace_ = "default";
  std::optional<Object> object;
  if (av == "v1" && k == "Service") {
    object = decode_service(r, doc);
  } else if (av == "discovery.k8s.io/v1" && k == "EndpointSlice") {
    object = decode_endpoint_slice(r, doc);
  } else if (av == "v1" && k == "Endpoints") {
    object = decode_endpoints(r, doc);
  } else if (av == "networking.k8s.io/v1" && k == "Ingress") {
    object = decode_ingress(r, doc);
  } else if (av == "networking.k8s.io/v1" && k == "IngressClass") {
    object = decode_ingress_class(r, doc);
  } else if (av == "v1" && k == "Secret") {
    object = decode_secret(r, doc);
  } else if (av == "metallb.io/v1beta1" && k == "IPAddressPool") {
    object = decode_ip_address_pool(r, doc);
  } else {
    out.unknown_kind = true;
    return out;
  }
  if (r.errors() > 0) return out;
  nlohmann::json lb_status;
  if (auto st = doc.find("status"); st != doc.end() && st->is_object())
    if (auto lb = st->find("loadBalancer"); lb != st->end() && lb->is_object())
      if (auto in = lb->find("ingress"); in != lb->end()) lb_status = *in;
  out.stored = StoredObject{std::move(*object), RawJson(doc), std::move(lb_status), origin};
  return out;
}

}  // namespace

DecodeOutcome decode_object(const json& doc, const Origin& origin, const LineMap* lines,
                            Issues& issues) {
  return decode(doc, origin, lines, issues);
}

}  // namespace kedge::k8s
