// A cluster-scoped kind asked for under a namespace is not found, as the API server answers.
#include "admin/admin_server.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace kedge::admin {
namespace {

TEST(K8sApiScope, ClusterScopedKindUnderNamespaceIs404) {
  control::StateSlot slot;
  auto state = std::make_shared<control::PublishedState>();
  state->snapshot = std::make_shared<model::Snapshot>();
  slot.set(state);
  AdminSources sources{slot, [] { return proxy::Stats{}; }, "127.0.0.1", "127.0.0.1:10254"};
  AdminRequest req{"GET", "/apis/networking.k8s.io/v1/namespaces/x/ingressclasses", "", ""};
  auto resp = handle_k8s_api(req, state.get(), sources);
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->status, 404);
  EXPECT_EQ(nlohmann::json::parse(resp->body)["kind"], "Status");
  req.path = "/apis/networking.k8s.io/v1/ingressclasses";
  resp = handle_k8s_api(req, state.get(), sources);
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->status, 200);
  EXPECT_EQ(nlohmann::json::parse(resp->body)["kind"], "IngressClassList");
}

}  // namespace
}  // namespace kedge::admin
