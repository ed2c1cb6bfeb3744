#pragma once

#include "k8s/manifest.h"
#include "k8s/objects.h"

#include <map>
#include <memory>
#include <vector>

namespace kedge::k8s {

/// The current set of typed objects, keyed by kind/namespace/name, in key order. A value type with
/// cheap copies: the objects sit in sorted chunks of at most kMaxChunk, and copies share them; a
/// change copies the list of chunks and the one chunk it touches (copy on write), so that one
/// change to a store of 10,000s of objects costs a few hundred copies, not a copy of all.
/// The objects themselves are immutable and shared, so a copy can be handed to another thread.
/// Thread: one owner per copy; copies are independent.
class ObjectStore {
 public:
  using Chunk = std::map<ObjectKey, StoredObjectConstPtr>;
  using Entry = Chunk::value_type;
  static constexpr size_t kMaxChunk = 256;

  class const_iterator {
   public:
    using value_type = Entry;
    using reference = const Entry&;
    using pointer = const Entry*;
    using difference_type = std::ptrdiff_t;
    using iterator_category = std::forward_iterator_tag;

    const_iterator() = default;
    reference operator*() const { return *it_; }
    pointer operator->() const { return &*it_; }
    const_iterator& operator++();
    const_iterator operator++(int) {
      auto before = *this;
      ++*this;
      return before;
    }
    bool operator==(const const_iterator& o) const {
      return chunk_ == o.chunk_ && (chunk_ == end_chunk() || it_ == o.it_);
    }

   private:
    friend class ObjectStore;
    using Chunks = std::vector<std::shared_ptr<Chunk>>;
    const_iterator(const Chunks* chunks, size_t chunk, Chunk::const_iterator it)
        : chunks_(chunks), chunk_(chunk), it_(it) {}
    size_t end_chunk() const { return chunks_ ? chunks_->size() : 0; }
    bool at_chunk_start() const { return it_ == (*chunks_)[chunk_]->begin(); }
    const Chunk* chunk() const { return (*chunks_)[chunk_].get(); }
    void next_chunk();

    const Chunks* chunks_ = nullptr;
    size_t chunk_ = 0;
    Chunk::const_iterator it_;
  };

  void upsert(StoredObjectConstPtr object);
  bool erase(const ObjectKey& key);
  const StoredObject* find(const ObjectKey& key) const;
  size_t size() const { return root_ ? root_->size : 0; }

  const_iterator begin() const;
  const_iterator end() const;
  /// The first object whose key is not less than `key`.
  const_iterator lower_bound(const ObjectKey& key) const;

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
  bool shares_with(const ObjectStore& other) const { return root_ == other.root_; }

  /// Calls fn(before, after) for every key whose object differs between the two stores (added:
  /// before is null; removed: after is null; replaced: both set), in key order. Chunks that the
  /// two share are skipped whole: the cost follows the change, not the size.
  template <class Fn>
  static void diff(const ObjectStore& a, const ObjectStore& b, Fn&& fn);

 private:
  struct Root {
    std::vector<std::shared_ptr<Chunk>> chunks;  // non-empty, in key order
    size_t size = 0;
  };
  /// The index of the chunk that holds (or would hold) `key`; root_ must have a chunk.
  size_t chunk_for(const ObjectKey& key) const;
  Root& writable_root();
  Chunk& writable_chunk(size_t i);

  std::shared_ptr<Root> root_;  // null: empty
};

template <class Fn>
void ObjectStore::diff(const ObjectStore& a, const ObjectStore& b, Fn&& fn) {
  if (a.shares_with(b)) return;
  auto x = a.begin(), y = b.begin();
  const auto x_end = a.end(), y_end = b.end();
  while (x != x_end || y != y_end) {
    if (x != x_end && y != y_end && x.at_chunk_start() && y.at_chunk_start() &&
        x.chunk() == y.chunk()) {
      x.next_chunk();
      y.next_chunk();
    } else if (y == y_end || (x != x_end && x->first < y->first)) {
      fn(x->second.get(), nullptr);
      ++x;
    } else if (x == x_end || y->first < x->first) {
      fn(nullptr, y->second.get());
      ++y;
    } else {
      if (x->second != y->second) fn(x->second.get(), y->second.get());
      ++x;
      ++y;
    }
  }
}

}  // namespace kedge::k8s
