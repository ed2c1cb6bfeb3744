#include "k8s/object_store.h"

namespace kedge::k8s {

void ObjectStore::upsert(StoredObjectConstPtr object) {
  ObjectKey key = key_of(*object);
  objects_[std::move(key)] = std::move(object);
}

bool ObjectStore::erase(const ObjectKey& key) { return objects_.erase(key) > 0; }

const StoredObject* ObjectStore::find(const ObjectKey& key) const {
  auto it = objects_.find(key);
  return it == objects_.end() ? nullptr : it->second.get();
}

}  // namespace kedge::k8s
