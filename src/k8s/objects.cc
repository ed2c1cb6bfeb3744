#include "k8s/objects.h"

#include <charconv>

namespace kedge::k8s {
namespace {

using nlohmann::json;

/// True when `s` goes out between quotes as it is: no control character, quote, backslash or
/// byte of a multi-byte (possibly invalid) UTF-8 sequence.
bool plain(const std::string& s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x80 || c == '"' || c == '\\') return false;
  }
  return true;
}

void append_string(std::string& out, const std::string& s) {
  if (plain(s)) {
    out += '"';
    out += s;
    out += '"';
  } else {
    out += json(s).dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

void append_compact(std::string& out, const json& j) {
  switch (j.type()) {
    case json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, value] : j.get_ref<const json::object_t&>()) {
        if (!first) out += ',';
        first = false;
        append_string(out, key);
        out += ':';
        append_compact(out, value);
      }
      out += '}';
      return;
    }
    case json::value_t::array: {
      out += '[';
      bool first = true;
      for (const json& value : j) {
        if (!first) out += ',';
        first = false;
        append_compact(out, value);
      }
      out += ']';
      return;
    }
    case json::value_t::string:
      append_string(out, j.get_ref<const std::string&>());
      return;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: {
      char buf[24];
      auto [end, ec] = j.is_number_unsigned()
                           ? std::to_chars(buf, buf + sizeof buf, j.get<uint64_t>())
                           : std::to_chars(buf, buf + sizeof buf, j.get<int64_t>());
      out.append(buf, end);
      return;
    }
    default:  // null, boolean, float (its shortest round-trip form is the library's), binary
      out += j.dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

}  // namespace

RawJson::RawJson(const json& value) {
  if (!value.is_null()) append_compact(text_, value);
}

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
