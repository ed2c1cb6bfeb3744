#include "k8s/object_store.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

namespace kedge::k8s {
namespace {

StoredObjectConstPtr object(Kind kind, int n, int version = 0) {
  auto so = std::make_shared<StoredObject>();
  ObjectMeta meta;
  meta.namespace_ = "ns" + std::to_string(n % 7);
  meta.name = "o" + std::to_string(n);
  meta.resource_version = std::to_string(version);
  if (kind == Kind::Service) {
    Service s;
    s.meta = meta;
    so->object = s;
  } else {
    Ingress i;
    i.meta = meta;
    so->object = i;
  }
  return so;
}

using Reference = std::map<ObjectKey, StoredObjectConstPtr>;

void expect_same(const ObjectStore& store, const Reference& ref) {
  ASSERT_EQ(store.size(), ref.size());
  auto it = store.begin();
  for (const auto& [key, so] : ref) {
    ASSERT_NE(it, store.end());
    EXPECT_EQ(it->first, key);
    EXPECT_EQ(it->second, so);
    EXPECT_EQ(store.find(key), so.get());
    ++it;
  }
  EXPECT_EQ(it, store.end());
}

TEST(ObjectStore, EmptyStore) {
  ObjectStore store;
  EXPECT_EQ(store.begin(), store.end());
  EXPECT_EQ(store.lower_bound({Kind::Service, "", ""}), store.end());
  EXPECT_EQ(store.find({Kind::Service, "a", "b"}), nullptr);
  EXPECT_FALSE(store.erase({Kind::Service, "a", "b"}));
  EXPECT_EQ(store.size(), 0u);
}

// Random upserts and erases, many more than one chunk holds, against std::map.
TEST(ObjectStore, MatchesAnOrderedMapThroughSplitsAndErases) {
  std::mt19937 rng(7);
  ObjectStore store;
  Reference ref;
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 1500; ++i) {
      int n = static_cast<int>(rng() % 3000);
      Kind kind = rng() % 2 ? Kind::Service : Kind::Ingress;
      if (rng() % 4 == 0) {
        ObjectKey key = key_of(*object(kind, n));
        EXPECT_EQ(store.erase(key), ref.erase(key) == 1);
      } else {
        auto so = object(kind, n, round);
        ref[key_of(*so)] = so;
        store.upsert(so);
      }
    }
    expect_same(store, ref);
  }
  // lower_bound and for_each see the kinds apart.
  for (int n : {0, 5, 1234, 2999}) {
    ObjectKey key = key_of(*object(Kind::Ingress, n));
    auto it = store.lower_bound(key);
    auto want = ref.lower_bound(key);
    if (want == ref.end())
      EXPECT_EQ(it, store.end());
    else
      EXPECT_EQ(it->first, want->first);
  }
  size_t services = 0;
  store.for_each<Service>([&](const Service&, const StoredObject&) { ++services; });
  EXPECT_EQ(services, static_cast<size_t>(std::count_if(ref.begin(), ref.end(), [](auto& e) {
              return e.first.kind == Kind::Service;
            })));
  // Erasing everything leaves an empty store.
  for (const auto& [key, so] : ref) EXPECT_TRUE(store.erase(key));
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(store.begin(), store.end());
}

TEST(ObjectStore, CopiesAreIndependent) {
  ObjectStore a;
  Reference ref_a;
  for (int n = 0; n < 2000; ++n) {
    auto so = object(Kind::Service, n);
    a.upsert(so);
    ref_a[key_of(*so)] = so;
  }
  ObjectStore b = a;
  EXPECT_TRUE(b.shares_with(a));
  Reference ref_b = ref_a;
  auto changed = object(Kind::Service, 10, 1);
  b.upsert(changed);
  ref_b[key_of(*changed)] = changed;
  b.erase(key_of(*object(Kind::Service, 20)));
  ref_b.erase(key_of(*object(Kind::Service, 20)));
  EXPECT_FALSE(b.shares_with(a));
  expect_same(a, ref_a);
  expect_same(b, ref_b);
}

// diff() reports exactly what a walk over both maps finds, whatever the chunks share.
TEST(ObjectStore, DiffReportsExactlyTheChanges) {
  std::mt19937 rng(11);
  ObjectStore before;
  for (int n = 0; n < 5000; ++n) before.upsert(object(Kind::Ingress, n));
  for (int changes : {0, 1, 3, 40, 900}) {
    ObjectStore after = before;
    std::map<ObjectKey, std::pair<const StoredObject*, const StoredObject*>> want;
    for (int i = 0; i < changes; ++i) {
      int n = static_cast<int>(rng() % 6000);
      auto so = object(Kind::Ingress, n, i + 1);
      ObjectKey key = key_of(*so);
      const StoredObject* old = before.find(key);
      if (n < 5000 && rng() % 3 == 0) {
        after.erase(key);
        if (old)
          want[key] = {old, nullptr};
        else
          want.erase(key);
      } else {
        after.upsert(so);
        want[key] = {old, so.get()};
      }
    }
    std::map<ObjectKey, std::pair<const StoredObject*, const StoredObject*>> got;
    ObjectStore::diff(before, after, [&](const StoredObject* a, const StoredObject* b) {
      got[key_of(a ? *a : *b)] = {a, b};
    });
    EXPECT_EQ(got, want) << changes << " changes";
  }
}

}  // namespace
}  // namespace kedge::k8s
