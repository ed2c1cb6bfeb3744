// Manifest text of any kind kedge reads (Ingress, IngressClass, Service, Endpoints,
// EndpointSlice, Secret, ConfigMap-like unknown kinds, `kind: List`), as YAML or JSON: parsed,
// decoded, validated, then allocated and translated into a snapshot as the control thread does.
// Nothing may throw or crash; every rejected object must come with an issue. JSON text also
// checks kedge's fast paths against the library's own: parse_json must give nlohmann's tree (or
// refuse what it refuses), and RawJson nlohmann's compact dump.
#include "k8s/json_text.h"
#include "k8s/manifest.h"
#include "k8s/object_store.h"
#include "translate/allocator.h"
#include "translate/translator.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const char* name = data[0] & 1 ? "fuzz.json" : "fuzz.yaml";
  std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    nlohmann::json fast = kedge::k8s::parse_json(text);
    nlohmann::json slow = nlohmann::json::parse(text, nullptr, false);
    if (fast.is_discarded() != slow.is_discarded() || (!slow.is_discarded() && fast != slow)) {
      std::fprintf(stderr, "parse_json differs from nlohmann::json::parse\n");
      std::abort();
    }
    if (!slow.is_discarded() &&
        kedge::k8s::RawJson(slow).text() !=
            (slow.is_null()
                 ? ""
                 : slow.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))) {
      std::fprintf(stderr, "RawJson differs from nlohmann::json::dump\n");
      std::abort();
    }
  }
  kedge::k8s::ManifestFile file = kedge::k8s::parse_manifest(text, name);
  if ((file.unreadable || !file.rejected.empty()) && file.issues.empty()) {
    std::fprintf(stderr, "rejected without an issue\n");
    std::abort();
  }
  kedge::k8s::ObjectStore store;
  for (auto& object : file.objects)
    store.upsert(std::make_shared<const kedge::k8s::StoredObject>(std::move(object)));
  kedge::translate::AllocatorConfig config;
  static const auto range = kedge::translate::Ipv4Range::parse("198.51.100.0/30", true);
  config.pools.push_back({"fuzz", {*range}});
  auto allocated = kedge::translate::allocate(store, {}, config);
  kedge::translate::Options options;
  options.node_name = "node-a";
  options.node_addresses = {"127.0.0.1"};
  auto translation = kedge::translate::translate(store, options, 1, &allocated.allocations);
  if (!translation.snapshot) std::abort();
  return 0;
}
