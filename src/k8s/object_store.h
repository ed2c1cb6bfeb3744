#pragma once

#include "k8s/manifest.h"
#include "k8s/objects.h"

#include <map>
#include <vector>

namespace kedge::k8s {

/// The current set of typed objects, keyed by kind/namespace/name. A value type: copying it copies
/// shared pointers to immutable objects, so a copy can be handed to another thread as a view.
/// Thread: one owner at a time (the control thread); copies are independent.
class ObjectStore {
 public:
  using Map = std::map<ObjectKey, StoredObjectConstPtr>;

  void upsert(StoredObjectConstPtr object);
  bool erase(const ObjectKey& key);
  const StoredObject* find(const ObjectKey& key) const;
  size_t size() const { return objects_.size(); }

  /// Calls fn(const T&, const StoredObject&) for every object of kind T, in key order.
  template <class T, class Fn>
  void for_each(Fn&& fn) const {
    constexpr Kind kind = kind_for<T>();
    auto it = objects_.lower_bound(ObjectKey{kind, "", ""});
    for (; it != objects_.end() && it->first.kind == kind; ++it)
      fn(std::get<T>(it->second->object), *it->second);
  }

  template <class T>
  const T* get(const std::string& namespace_, const std::string& name) const {
    constexpr Kind kind = kind_for<T>();
    const StoredObject* s = find(ObjectKey{kind, namespace_, name});
    return s ? &std::get<T>(s->object) : nullptr;
  }

  const Map& objects() const { return objects_; }

 private:
  Map objects_;
};

}  // namespace kedge::k8s
