// Plain YAML scalars are typed as Kubernetes' YAML 1.1 reader types them; quoted ones stay strings.
#include "k8s/manifest.h"

#include <gtest/gtest.h>

namespace kedge::k8s {
namespace {

ManifestFile slice_with_ready(const std::string& value) {
  return parse_manifest(R"(apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s, namespace: d, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
  - addresses: ["10.0.0.1"]
    conditions: {ready: )" + value +
                            "}\n",
                        "s.yaml");
}

TEST(YamlScalars, Yaml11BooleansAreBooleans) {
  for (const char* v : {"yes", "on", "True", "true"}) {
    auto f = slice_with_ready(v);
    ASSERT_EQ(f.objects.size(), 1u) << v;
    EXPECT_TRUE(std::get<EndpointSlice>(f.objects[0].object).endpoints[0].conditions.ready) << v;
  }
  for (const char* v : {"no", "off", "False", "false"}) {
    auto f = slice_with_ready(v);
    ASSERT_EQ(f.objects.size(), 1u) << v;
    EXPECT_FALSE(std::get<EndpointSlice>(f.objects[0].object).endpoints[0].conditions.ready) << v;
  }
}

TEST(YamlScalars, QuotedBooleanIsAStringAndRefused) {
  auto f = slice_with_ready("\"yes\"");
  EXPECT_TRUE(f.objects.empty());
  ASSERT_EQ(f.issues.size(), 1u);
  EXPECT_EQ(f.issues[0].field, "endpoints[0].conditions.ready");
  EXPECT_EQ(f.issues[0].message, "must be a boolean");
}

}  // namespace
}  // namespace kedge::k8s
