#include "k8s/object_store.h"

#include <algorithm>

namespace kedge::k8s {

ObjectStore::const_iterator& ObjectStore::const_iterator::operator++() {
  if (++it_ == (*chunks_)[chunk_]->cend()) next_chunk();
  return *this;
}

void ObjectStore::const_iterator::next_chunk() {
  if (++chunk_ < chunks_->size())
    it_ = (*chunks_)[chunk_]->cbegin();
  else
    it_ = {};
}

ObjectStore::const_iterator ObjectStore::begin() const {
  if (!root_) return {};
  return {&root_->chunks, 0, root_->chunks.front()->cbegin()};
}

ObjectStore::const_iterator ObjectStore::end() const {
  if (!root_) return {};
  return {&root_->chunks, root_->chunks.size(), {}};
}

ObjectStore::const_iterator ObjectStore::lower_bound(const ObjectKey& key) const {
  if (!root_) return {};
  size_t i = chunk_for(key);
  const Chunk& chunk = *root_->chunks[i];
  const_iterator it{&root_->chunks, i, chunk.lower_bound(key)};
  if (it.it_ == chunk.cend()) it.next_chunk();
  return it;
}

size_t ObjectStore::chunk_for(const ObjectKey& key) const {
  const auto& chunks = root_->chunks;
  // The last chunk whose first key is not greater than `key` (or the first chunk).
  auto it = std::upper_bound(
      chunks.begin() + 1, chunks.end(), key,
      [](const ObjectKey& k, const std::shared_ptr<Chunk>& c) { return k < c->begin()->first; });
  return static_cast<size_t>(it - chunks.begin()) - 1;
}

ObjectStore::Root& ObjectStore::writable_root() {
  // Only this copy holds it when the count is 1: no other thread can be reading it.
  if (!root_)
    root_ = std::make_shared<Root>();
  else if (root_.use_count() > 1)
    root_ = std::make_shared<Root>(*root_);
  return *root_;
}

ObjectStore::Chunk& ObjectStore::writable_chunk(size_t i) {
  auto& chunk = root_->chunks[i];
  if (chunk.use_count() > 1) chunk = std::make_shared<Chunk>(*chunk);
  return *chunk;
}

void ObjectStore::upsert(StoredObjectConstPtr object) {
  ObjectKey key = key_of(*object);
  Root& root = writable_root();
  if (root.chunks.empty()) root.chunks.push_back(std::make_shared<Chunk>());
  size_t i = chunk_for(key);
  Chunk& chunk = writable_chunk(i);
  auto [it, inserted] = chunk.insert_or_assign(std::move(key), std::move(object));
  if (!inserted) return;
  ++root.size;
  if (chunk.size() <= kMaxChunk) return;
  // Split in halves: the upper half moves to a new chunk after this one.
  auto upper = std::make_shared<Chunk>();
  auto middle = std::next(chunk.begin(), static_cast<std::ptrdiff_t>(chunk.size() / 2));
  while (middle != chunk.end()) upper->insert(upper->end(), chunk.extract(middle++));
  root.chunks.insert(root.chunks.begin() + static_cast<std::ptrdiff_t>(i) + 1, std::move(upper));
}

bool ObjectStore::erase(const ObjectKey& key) {
  if (!find(key)) return false;
  Root& root = writable_root();
  size_t i = chunk_for(key);
  Chunk& chunk = writable_chunk(i);
  chunk.erase(key);
  --root.size;
  if (chunk.empty()) root.chunks.erase(root.chunks.begin() + static_cast<std::ptrdiff_t>(i));
  if (root.chunks.empty()) root_.reset();
  return true;
}

const StoredObject* ObjectStore::find(const ObjectKey& key) const {
  if (!root_) return nullptr;
  const Chunk& chunk = *root_->chunks[chunk_for(key)];
  auto it = chunk.find(key);
  return it == chunk.end() ? nullptr : it->second.get();
}

}  // namespace kedge::k8s
