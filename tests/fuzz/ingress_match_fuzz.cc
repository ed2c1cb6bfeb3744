// Ingress host/path matching. The input is lines: the request's Host value, its target, then
// rules "host<TAB>E|P|I<path>" (Exact, Prefix, ImplementationSpecific), each an Ingress of its own
// with a Service of its own. The rules go through decoding and translation; the request is
// normalised and routed as the proxy does. Checks: a normalised path is canonical and
// normalising is idempotent; the chosen route matches, no better route of its host does; and no
// encoded slash can turn into a dot segment behind the matcher's back.
#include "k8s/manifest.h"
#include "k8s/object_store.h"
#include "model/snapshot.h"
#include "translate/translator.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace {

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

using nlohmann::json;

json ingress(size_t i, const std::string& host, const std::string& type, const std::string& path) {
  json rule = {
      {"http",
       {{"paths",
         {{{"path", path},
           {"pathType", type},
           {"backend",
            {{"service", {{"name", "s" + std::to_string(i)}, {"port", {{"number", 80}}}}}}}}}}}}};
  if (!host.empty()) rule["host"] = host;
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "Ingress"},
          {"metadata", {{"name", "i" + std::to_string(i)}, {"namespace", "default"}}},
          {"spec", {{"rules", {rule}}}}};
}

json service(size_t i) {
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata", {{"name", "s" + std::to_string(i)}, {"namespace", "default"}}},
          {"spec", {{"ports", {{{"port", 80}}}}}}};
}

/// The path with encoded slashes decoded, as an upstream may read it.
std::string decode_slashes(const std::string& path) {
  std::string out;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 2 < path.size() && path[i + 1] == '2' &&
        (path[i + 2] == 'F' || path[i + 2] == 'f')) {
      out += '/';
      i += 2;
    } else {
      out += path[i];
    }
  }
  return out;
}

bool has_dot_segment(const std::string& path) {
  std::stringstream ss(path);
  std::string seg;
  while (std::getline(ss, seg, '/'))
    if (seg == "." || seg == "..") return true;
  return false;
}

/// Is `better` a strictly more specific match than `chosen` for the same path?
bool more_specific(const kedge::model::Route& better, const kedge::model::Route& chosen) {
  using kedge::model::MatchType;
  if (better.match == MatchType::Exact) return chosen.match != MatchType::Exact;
  return chosen.match != MatchType::Exact && better.path.size() > chosen.path.size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line) && lines.size() < 34;) lines.push_back(line);
  if (lines.size() < 2) return 0;

  json list = {{"apiVersion", "v1"}, {"kind", "List"}, {"items", json::array()}};
  for (size_t i = 2; i < lines.size(); ++i) {
    const std::string& l = lines[i];
    auto tab = l.find('\t');
    std::string host = tab == std::string::npos ? "" : l.substr(0, tab);
    std::string rest = tab == std::string::npos ? l : l.substr(tab + 1);
    if (rest.empty()) continue;
    const char* type = rest[0] == 'E'   ? "Exact"
                       : rest[0] == 'P' ? "Prefix"
                                        : "ImplementationSpecific";
    list["items"].push_back(ingress(i, host, type, rest.substr(1)));
    list["items"].push_back(service(i));
  }
  auto file = kedge::k8s::parse_manifest(list.dump(-1, ' ', false, json::error_handler_t::replace),
                                         "rules.json");
  kedge::k8s::ObjectStore store;
  for (auto& object : file.objects)
    store.upsert(std::make_shared<const kedge::k8s::StoredObject>(std::move(object)));
  auto translation = kedge::translate::translate(store, {}, 1);
  FUZZ_CHECK(translation.snapshot);
  const kedge::model::Snapshot& snap = *translation.snapshot;

  std::string host, path;
  if (!kedge::model::normalize_host(lines[0], host)) return 0;  // 400
  if (!kedge::model::normalize_path(lines[1], path)) return 0;  // 400
  FUZZ_CHECK(!path.empty() && path.front() == '/');
  FUZZ_CHECK(path.find("//") == std::string::npos);
  FUZZ_CHECK(!has_dot_segment(path));
  std::string again;
  FUZZ_CHECK(kedge::model::normalize_path(path, again) && again == path);
  FUZZ_CHECK(!has_dot_segment(decode_slashes(path)));

  const kedge::model::Route* route = snap.route(host, path);
  const kedge::model::VirtualHost* vh = snap.find_host(host);
  FUZZ_CHECK(vh);
  if (!route) return 0;
  if (snap.default_backend && route == &*snap.default_backend) {
    for (const auto& r : vh->routes) FUZZ_CHECK(!r.matches(path));
    return 0;
  }
  FUZZ_CHECK(route->matches(path));
  for (const auto& r : vh->routes)
    if (r.matches(path)) FUZZ_CHECK(!more_specific(r, *route));
  return 0;
}
