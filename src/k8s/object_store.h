#pragma once

#include "common/chunked_map.h"
#include "k8s/manifest.h"
#include "k8s/objects.h"

#include <map>
#include <memory>
#include <vector>

namespace kedge::k8s {

/// The current set of typed objects, keyed by kind/namespace/name, in key order. A value type with
/// cheap copies (a ChunkedMap: one change to a store of 10,000s of objects copies a few hundred
/// entries, not all).
/// The objects themselves are immutable and shared, so a copy can be handed to another thread.
/// Thread: one owner per copy; copies are independent.
class ObjectStore {
 public:
  using Map = ChunkedMap<ObjectKey, StoredObjectConstPtr>;
  using Entry = Map::value_type;
  using const_iterator = Map::const_iterator;

  void upsert(StoredObjectConstPtr object) {
    ObjectKey key = key_of(*object);
    map_.insert_or_assign(key, std::move(object));
  }
  bool erase(const ObjectKey& key) { return map_.erase(key); }
  const StoredObject* find(const ObjectKey& key) const {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : it->second.get();
  }
  size_t size() const { return map_.size(); }

  const_iterator begin() const { return map_.begin(); }
  const_iterator end() const { return map_.end(); }
  /// The first object whose key is not less than `key`.
  const_iterator lower_bound(const ObjectKey& key) const { return map_.lower_bound(key); }

  /// Calls fn(const T&, const StoredObject&) for every object of kind T, in key order.
  template <class T, class Fn>
  void for_each(Fn&& fn) const {
    constexpr Kind kind = kind_for<T>();
    for (auto it = lower_bound(ObjectKey{kind, "", ""}); it != end() && it->first.kind == kind;
         ++it)
      fn(std::get<T>(it->second->object), *it->second);
  }

  template <class T>
  const T* get(const std::string& namespace_, const std::string& name) const {
    constexpr Kind kind = kind_for<T>();
    const StoredObject* s = find(ObjectKey{kind, namespace_, name});
    return s ? &std::get<T>(s->object) : nullptr;
  }

  /// Whether both are copies of one unchanged store (then they hold the same objects).
  bool shares_with(const ObjectStore& other) const { return map_.shares_with(other.map_); }

  /// Calls fn(before, after) for every key whose object differs between the two stores (added:
  /// before is null; removed: after is null; replaced: both set), in key order. Chunks that the
  /// two share are skipped whole: the cost follows the change, not the size.
  template <class Fn>
  static void diff(const ObjectStore& a, const ObjectStore& b, Fn&& fn) {
    Map::diff(a.map_, b.map_, [&](const Entry* x, const Entry* y) {
      fn(x ? x->second.get() : nullptr, y ? y->second.get() : nullptr);
    });
  }

 private:
  Map map_;
};

}  // namespace kedge::k8s
