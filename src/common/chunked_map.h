#pragma once

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <map>
#include <memory>
#include <stdexcept>
#include <vector>

namespace kedge {

/// An ordered map with cheap copies, for the control plane's large tables (the object store, the
/// allocations, the served Ingresses). Entries sit in sorted chunks of at most kMaxChunk that
/// copies share; a write copies the list of chunks and the one chunk it touches (copy on write),
/// so one change to a table of 10,000s of entries costs a few hundred copies, not a copy of all,
/// and diff() between two copies skips the chunks they share.
/// Thread: one owner per copy; copies are independent and may live on different threads.
template <class K, class V>
class ChunkedMap {
 public:
  using Chunk = std::map<K, V>;
  using value_type = typename Chunk::value_type;
  static constexpr size_t kMaxChunk = 256;

  class const_iterator {
   public:
    using value_type = ChunkedMap::value_type;
    using reference = const value_type&;
    using pointer = const value_type*;
    using difference_type = std::ptrdiff_t;
    using iterator_category = std::forward_iterator_tag;

    const_iterator() = default;
    reference operator*() const { return *it_; }
    pointer operator->() const { return &*it_; }
    const_iterator& operator++() {
      if (++it_ == (*chunks_)[chunk_]->cend()) next_chunk();
      return *this;
    }
    const_iterator operator++(int) {
      auto before = *this;
      ++*this;
      return before;
    }
    bool operator==(const const_iterator& o) const {
      return chunk_ == o.chunk_ && (chunk_ == end_chunk() || it_ == o.it_);
    }

   private:
    friend class ChunkedMap;
    using Chunks = std::vector<std::shared_ptr<Chunk>>;
    const_iterator(const Chunks* chunks, size_t chunk, typename Chunk::const_iterator it)
        : chunks_(chunks), chunk_(chunk), it_(it) {}
    size_t end_chunk() const { return chunks_ ? chunks_->size() : 0; }
    bool at_chunk_start() const { return it_ == (*chunks_)[chunk_]->cbegin(); }
    const Chunk* chunk() const { return (*chunks_)[chunk_].get(); }
    void next_chunk() {
      if (++chunk_ < chunks_->size())
        it_ = (*chunks_)[chunk_]->cbegin();
      else
        it_ = {};
    }

    const Chunks* chunks_ = nullptr;
    size_t chunk_ = 0;
    typename Chunk::const_iterator it_;
  };
  using iterator = const_iterator;  // entries change through operator[] or insert_or_assign

  size_t size() const { return root_ ? root_->size : 0; }
  bool empty() const { return size() == 0; }
  void clear() { root_.reset(); }

  const_iterator begin() const {
    if (!root_) return {};
    return {&root_->chunks, 0, root_->chunks.front()->cbegin()};
  }
  const_iterator end() const {
    if (!root_) return {};
    return {&root_->chunks, root_->chunks.size(), {}};
  }
  /// The first entry whose key is not less than `key`.
  const_iterator lower_bound(const K& key) const {
    if (!root_) return {};
    size_t i = chunk_for(key);
    const Chunk& chunk = *root_->chunks[i];
    const_iterator it{&root_->chunks, i, chunk.lower_bound(key)};
    if (it.it_ == chunk.cend()) it.next_chunk();
    return it;
  }
  const_iterator find(const K& key) const {
    if (!root_) return end();
    size_t i = chunk_for(key);
    const Chunk& chunk = *root_->chunks[i];
    auto it = chunk.find(key);
    return it == chunk.cend() ? end() : const_iterator{&root_->chunks, i, it};
  }
  bool contains(const K& key) const { return find(key) != end(); }
  const V& at(const K& key) const {
    auto it = find(key);
    if (it == end()) throw std::out_of_range("ChunkedMap::at");
    return it->second;
  }

  /// The value for `key`, inserted value-initialized when absent; the reference stays valid
  /// until the next write to this copy.
  V& operator[](const K& key) {
    auto [chunk, it, inserted] = emplace(key);
    if (inserted) split_if_full(chunk);
    return it->second;
  }
  void insert_or_assign(const K& key, V value) { (*this)[key] = std::move(value); }
  bool erase(const K& key) {
    if (!contains(key)) return false;
    Root& root = writable_root();
    size_t i = chunk_for(key);
    Chunk& chunk = writable_chunk(i);
    chunk.erase(key);
    --root.size;
    if (chunk.empty()) root.chunks.erase(root.chunks.begin() + static_cast<std::ptrdiff_t>(i));
    if (root.chunks.empty()) root_.reset();
    return true;
  }

  /// Whether both are copies of one unchanged map (then they hold the same entries).
  bool shares_with(const ChunkedMap& other) const { return root_ == other.root_; }

  /// Calls fn(before, after) with the entries (`const value_type*`) of every key whose value
  /// differs between the two maps (added: before is null; removed: after is null; changed: both
  /// set), in key order. Chunks the two share are skipped whole: the cost follows the change.
  template <class Fn>
  static void diff(const ChunkedMap& a, const ChunkedMap& b, Fn&& fn) {
    if (a.shares_with(b)) return;
    auto x = a.begin(), y = b.begin();
    const auto x_end = a.end(), y_end = b.end();
    while (x != x_end || y != y_end) {
      if (x != x_end && y != y_end && x.at_chunk_start() && y.at_chunk_start() &&
          x.chunk() == y.chunk()) {
        x.next_chunk();
        y.next_chunk();
      } else if (y == y_end || (x != x_end && x->first < y->first)) {
        fn(&*x, static_cast<const value_type*>(nullptr));
        ++x;
      } else if (x == x_end || y->first < x->first) {
        fn(static_cast<const value_type*>(nullptr), &*y);
        ++y;
      } else {
        if (!(x->second == y->second)) fn(&*x, &*y);
        ++x;
        ++y;
      }
    }
  }

  friend bool operator==(const ChunkedMap& a, const ChunkedMap& b) {
    if (a.size() != b.size()) return false;
    bool same = true;
    diff(a, b, [&](const value_type*, const value_type*) { same = false; });
    return same;
  }

 private:
  struct Root {
    std::vector<std::shared_ptr<Chunk>> chunks;  // non-empty, in key order
    size_t size = 0;
  };

  /// The index of the chunk that holds (or would hold) `key`; root_ must have a chunk.
  size_t chunk_for(const K& key) const {
    const auto& chunks = root_->chunks;
    // The last chunk whose first key is not greater than `key` (or the first chunk).
    auto it = std::upper_bound(
        chunks.begin() + 1, chunks.end(), key,
        [](const K& k, const std::shared_ptr<Chunk>& c) { return k < c->begin()->first; });
    return static_cast<size_t>(it - chunks.begin()) - 1;
  }
  Root& writable_root() {
    // Only this copy holds it when the count is 1: no other thread can be reading it.
    if (!root_)
      root_ = std::make_shared<Root>();
    else if (root_.use_count() > 1)
      root_ = std::make_shared<Root>(*root_);
    return *root_;
  }
  Chunk& writable_chunk(size_t i) {
    auto& chunk = root_->chunks[i];
    if (chunk.use_count() > 1) chunk = std::make_shared<Chunk>(*chunk);
    return *chunk;
  }

  struct Emplaced {
    size_t chunk;
    typename Chunk::iterator it;
    bool inserted;
  };
  Emplaced emplace(const K& key) {
    Root& root = writable_root();
    if (root.chunks.empty()) root.chunks.push_back(std::make_shared<Chunk>());
    size_t i = chunk_for(key);
    auto [it, inserted] = writable_chunk(i).try_emplace(key);
    if (inserted) ++root.size;
    return {i, it, inserted};
  }
  /// Splits chunk i in halves when it outgrew kMaxChunk. The nodes move (extract), so
  /// references to entries stay valid.
  void split_if_full(size_t i) {
    Chunk& chunk = *root_->chunks[i];
    if (chunk.size() <= kMaxChunk) return;
    auto upper = std::make_shared<Chunk>();
    auto middle = std::next(chunk.begin(), static_cast<std::ptrdiff_t>(chunk.size() / 2));
    while (middle != chunk.end()) upper->insert(upper->end(), chunk.extract(middle++));
    root_->chunks.insert(root_->chunks.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                         std::move(upper));
  }

  std::shared_ptr<Root> root_;  // null: empty
};

}  // namespace kedge
