#pragma once

#include "k8s/manifest.h"
#include "k8s/objects.h"

#include <map>
#include <memory>
#include <vector>

namespace kedge::k8s {

/// The current set of typed objects, keyed by kind/namespace/name. A value type with cheap copies:
/// copies share one map until one of them is changed, which then takes its own (copy on write).
/// The objects themselves are immutable and shared, so a copy can be handed to another thread.
/// Thread: one owner per copy; copies are independent.
class ObjectStore {
 public:
  using Map = std::map<ObjectKey, StoredObjectConstPtr>;

  void upsert(StoredObjectConstPtr object);
  bool erase(const ObjectKey& key);
  const StoredObject* find(const ObjectKey& key) const;
  size_t size() const { return objects().size(); }

  /// Calls fn(const T&, const StoredObject&) for every object of kind T, in key order.
  template <class T, class Fn>
  void for_each(Fn&& fn) const {
    constexpr Kind kind = kind_for<T>();
    const Map& all = objects();
    auto it = all.lower_bound(ObjectKey{kind, "", ""});
    for (; it != all.end() && it->first.kind == kind; ++it)
      fn(std::get<T>(it->second->object), *it->second);
  }

  template <class T>
  const T* get(const std::string& namespace_, const std::string& name) const {
    constexpr Kind kind = kind_for<T>();
    const StoredObject* s = find(ObjectKey{kind, namespace_, name});
    return s ? &std::get<T>(s->object) : nullptr;
  }

  const Map& objects() const;
  /// Whether both are copies of one unchanged map (then they hold the same objects).
  bool shares_with(const ObjectStore& other) const { return objects_ == other.objects_; }

 private:
  Map& writable();
  std::shared_ptr<Map> objects_;  // null: empty
};

}  // namespace kedge::k8s
