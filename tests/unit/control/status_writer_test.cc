#include "control/status_writer.h"

#include "k8s/decode.h"

#include <gtest/gtest.h>

using namespace kedge;
using namespace kedge::control;
using nlohmann::json;

namespace {

k8s::StoredObjectConstPtr decoded(json doc) {
  k8s::Issues issues;
  auto out = k8s::decode_object(doc, {"api", 0}, nullptr, issues);
  EXPECT_TRUE(out.stored) << (issues.empty() ? "" : issues[0].to_string());
  return std::make_shared<const k8s::StoredObject>(std::move(*out.stored));
}

json lb_service(json status) {
  json svc = {{"apiVersion", "v1"},
              {"kind", "Service"},
              {"metadata", {{"name", "kedge"}, {"namespace", "kedge"}}},
              {"spec",
               {{"type", "LoadBalancer"},
                {"clusterIP", "10.96.0.50"},
                {"ports", {{{"port", 80}, {"nodePort", 30080}}}}}}};
  if (!status.is_null()) svc["status"] = status;
  return svc;
}

}  // namespace

TEST(PublishEntries, FromThePublishServiceStatusThenItsAllocationThenClusterIp) {
  StatusWriterOptions o;
  o.publish_service = "kedge/kedge";
  PublishedState state;
  state.store.upsert(decoded(lb_service(
      {{"loadBalancer", {{"ingress", {{{"ip", "192.0.2.10"}}, {{"hostname", "lb.example"}}}}}}})));
  EXPECT_EQ(publish_entries(o, state),
            json::parse(R"([{"ip":"192.0.2.10"},{"hostname":"lb.example"}])"));
  state.store = {};
  state.store.upsert(decoded(lb_service(nullptr)));
  EXPECT_EQ(publish_entries(o, state), json::parse(R"([{"ip":"10.96.0.50"}])"));
  translate::Allocations allocations;
  allocations.services["kedge/kedge"].load_balancer_ip = "192.0.2.20";
  state.allocations = std::make_shared<const translate::Allocations>(std::move(allocations));
  EXPECT_EQ(publish_entries(o, state), json::parse(R"([{"ip":"192.0.2.20"}])"));
  o.publish_service = "kedge/missing";
  EXPECT_TRUE(publish_entries(o, state).empty());
}

TEST(PublishEntries, StatusAddressesAreIpsOrHostNames) {
  StatusWriterOptions o;
  o.publish_addresses = {"203.0.113.7", "ingress.example.test", "2001:db8::1"};
  EXPECT_EQ(
      publish_entries(o, PublishedState{}),
      json::parse(
          R"([{"ip":"203.0.113.7"},{"hostname":"ingress.example.test"},{"ip":"2001:db8::1"}])"));
}

TEST(DesiredIngressStatus, WrittenWhenServedRemovedWhenNoLongerServed) {
  json mine = json::parse(R"([{"ip":"192.0.2.10"}])");
  json bare;  // no status.loadBalancer.ingress
  EXPECT_EQ(desired_ingress_status(bare, true, mine), mine);
  json written = mine;
  EXPECT_EQ(desired_ingress_status(written, true, mine), std::nullopt);    // already right
  EXPECT_EQ(desired_ingress_status(written, false, mine), json::array());  // kedge stopped
  json others = json::parse(R"([{"ip":"198.51.100.1"}])");
  EXPECT_EQ(desired_ingress_status(others, false, mine), std::nullopt);  // not kedge's to touch
  EXPECT_EQ(desired_ingress_status(bare, true, json::array()), std::nullopt);  // no address yet
}
