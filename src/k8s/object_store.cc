#include "k8s/object_store.h"

namespace kedge::k8s {

const ObjectStore::Map& ObjectStore::objects() const {
  static const Map empty;
  return objects_ ? *objects_ : empty;
}

ObjectStore::Map& ObjectStore::writable() {
  // Only this copy holds the map when the count is 1: no other thread can be reading it.
  if (!objects_)
    objects_ = std::make_shared<Map>();
  else if (objects_.use_count() > 1)
    objects_ = std::make_shared<Map>(*objects_);
  return *objects_;
}

void ObjectStore::upsert(StoredObjectConstPtr object) {
  ObjectKey key = key_of(*object);
  writable()[std::move(key)] = std::move(object);
}

bool ObjectStore::erase(const ObjectKey& key) {
  if (!find(key)) return false;
  return writable().erase(key) > 0;
}

const StoredObject* ObjectStore::find(const ObjectKey& key) const {
  if (!objects_) return nullptr;
  auto it = objects_->find(key);
  return it == objects_->end() ? nullptr : it->second.get();
}

}  // namespace kedge::k8s
