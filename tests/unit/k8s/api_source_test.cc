#include "k8s/api_source.h"

#include <gtest/gtest.h>

using namespace kedge::k8s;
using nlohmann::json;

namespace {

// Index of a kind in watched_resources().
size_t index_of(Kind kind) {
  auto all = watched_resources();
  for (size_t i = 0; i < all.size(); ++i)
    if (all[i].kind == kind) return i;
  return all.size();
}

// A Service as a list item: no kind or apiVersion.
json service_item(const std::string& name, const std::string& rv, int port = 80) {
  return {{"metadata", {{"name", name}, {"namespace", "default"}, {"resourceVersion", rv}}},
          {"spec", {{"clusterIP", "10.96.0.10"}, {"ports", {{{"port", port}}}}}}};
}

WatchEvent event(WatchEventType type, json object) {
  object["kind"] = "Service";
  object["apiVersion"] = "v1";
  return {type, std::move(object)};
}

class ApiSourceTest : public testing::Test {
 protected:
  ApiSource source{nullptr, {}, nullptr};
  const size_t svc = index_of(Kind::Service);
};

}  // namespace

TEST(ApiResources, PathsAndSelectors) {
  const ApiResource* ing = api_resource(Kind::Ingress);
  ASSERT_TRUE(ing);
  EXPECT_EQ(collection_path(*ing, ""), "/apis/networking.k8s.io/v1/ingresses");
  EXPECT_EQ(collection_path(*ing, "team"), "/apis/networking.k8s.io/v1/namespaces/team/ingresses");
  EXPECT_EQ(object_path(*ing, "team", "web"),
            "/apis/networking.k8s.io/v1/namespaces/team/ingresses/web");
  const ApiResource* cls = api_resource(Kind::IngressClass);
  EXPECT_EQ(collection_path(*cls, "team"), "/apis/networking.k8s.io/v1/ingressclasses");
  EXPECT_EQ(api_resource(Kind::Secret)->field_selector, "type=kubernetes.io/tls");
  EXPECT_EQ(url_encode("type=kubernetes.io/tls"), "type%3Dkubernetes.io%2Ftls");
  EXPECT_EQ(api_resource(Kind::Endpoints), nullptr);  // EndpointSlices only
}

TEST_F(ApiSourceTest, PendingUntilEveryKindIsListed) {
  EXPECT_EQ(source.pending_kinds().size(), watched_resources().size());
  for (size_t i = 0; i < watched_resources().size(); ++i) source.apply_list(i, json::array());
  EXPECT_TRUE(source.pending_kinds().empty());
}

TEST_F(ApiSourceTest, ListItemsAreDecodedWithKindAndApiVersion) {
  EXPECT_TRUE(source.apply_list(svc, json::array({service_item("a", "5")})));
  auto load = source.reload();
  ASSERT_EQ(load.store.size(), 1u);
  const StoredObject* so = load.store.find({Kind::Service, "default", "a"});
  ASSERT_TRUE(so);
  EXPECT_EQ(so->raw.parse()["kind"], "Service");
  EXPECT_EQ(so->raw.parse()["apiVersion"], "v1");
  EXPECT_EQ(so->origin.file, "api");
  EXPECT_EQ(std::get<Service>(so->object).cluster_ip, "10.96.0.10");
}

TEST_F(ApiSourceTest, RelistWithUnchangedVersionsChangesNothing) {
  json items = json::array({service_item("a", "5"), service_item("b", "6")});
  EXPECT_TRUE(source.apply_list(svc, items));
  auto before = source.reload();
  EXPECT_FALSE(source.apply_list(svc, items));  // after an outage: same objects, no work
  auto after = source.reload();
  EXPECT_EQ(before.store.find({Kind::Service, "default", "a"}),
            after.store.find({Kind::Service, "default", "a"}));  // the same shared object
  EXPECT_EQ(source.counters().changes, 1u);
  // One object changed and one went away while the watch was down.
  EXPECT_TRUE(source.apply_list(svc, json::array({service_item("a", "9", 81)})));
  auto caught_up = source.reload();
  EXPECT_EQ(caught_up.store.size(), 1u);
  EXPECT_EQ(caught_up.store.get<Service>("default", "a")->ports[0].port, 81);
}

TEST_F(ApiSourceTest, WatchEventsAddModifyDelete) {
  source.apply_list(svc, json::array());
  EXPECT_TRUE(source.apply_event(svc, event(WatchEventType::Added, service_item("a", "10"))));
  EXPECT_FALSE(source.apply_event(svc, event(WatchEventType::Added, service_item("a", "10"))));
  EXPECT_TRUE(
      source.apply_event(svc, event(WatchEventType::Modified, service_item("a", "11", 90))));
  EXPECT_EQ(source.reload().store.get<Service>("default", "a")->ports[0].port, 90);
  EXPECT_TRUE(source.apply_event(svc, event(WatchEventType::Deleted, service_item("a", "12"))));
  EXPECT_EQ(source.reload().store.size(), 0u);
  EXPECT_FALSE(source.apply_event(svc, event(WatchEventType::Deleted, service_item("a", "12"))));
  EXPECT_FALSE(source.apply_event(svc, event(WatchEventType::Bookmark, service_item("", "13"))));
}

TEST_F(ApiSourceTest, InvalidVersionKeepsTheLastGoodOneAndIsReported) {
  source.apply_list(svc, json::array({service_item("a", "5")}));
  json bad = service_item("a", "6");
  bad["spec"]["ports"][0]["port"] = 70000;
  EXPECT_TRUE(source.apply_event(svc, event(WatchEventType::Modified, bad)));
  auto load = source.reload();
  ASSERT_TRUE(load.store.get<Service>("default", "a"));
  EXPECT_EQ(load.store.get<Service>("default", "a")->ports[0].port, 80);
  ASSERT_FALSE(load.issues.empty());
  EXPECT_EQ(load.issues[0].file, "api");
  EXPECT_EQ(load.issues[0].name, "a");
}

TEST_F(ApiSourceTest, AnIngressStatusWriteRefreshesTheStoreWithoutANewTranslation) {
  const size_t ing = index_of(Kind::Ingress);
  auto ingress = [](const std::string& rv, const std::string& host, const std::string& lb) {
    json object = {
        {"apiVersion", "networking.k8s.io/v1"},
        {"kind", "Ingress"},
        {"metadata", {{"name", "web"}, {"namespace", "default"}, {"resourceVersion", rv}}},
        {"spec", {{"rules", {{{"host", host}}}}}}};
    if (!lb.empty()) object["status"]["loadBalancer"]["ingress"] = {{{"ip", lb}}};
    return object;
  };
  source.apply_list(ing, json::array({ingress("1", "a.test", "")}));
  uint64_t changes = source.counters().changes;
  // kedge's own status write comes back: the store shows it, nothing is translated again.
  EXPECT_FALSE(
      source.apply_event(ing, {WatchEventType::Modified, ingress("2", "a.test", "10.0.0.1")}));
  EXPECT_EQ(source.counters().changes, changes);
  auto load = source.reload();
  const StoredObject* stored = nullptr;
  load.store.for_each<Ingress>([&](const Ingress&, const StoredObject& so) { stored = &so; });
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->lb_status[0]["ip"], "10.0.0.1");
  // A relist that brings only another status is no change either; a new host is.
  EXPECT_FALSE(source.apply_list(ing, json::array({ingress("3", "a.test", "10.0.0.2")})));
  EXPECT_TRUE(
      source.apply_event(ing, {WatchEventType::Modified, ingress("4", "b.test", "10.0.0.2")}));
  EXPECT_TRUE(source.apply_list(ing, json::array({ingress("5", "c.test", "10.0.0.2")})));
  EXPECT_EQ(source.counters().changes, changes + 2);
}
