#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace kedge {

/// Large buffers lent for the length of one transfer and kept for the next. A body streamed
/// through one in 64 KiB reads and writes takes a quarter of the system calls and packets that
/// a connection's own 16 KiB buffer takes, and an idle connection holds none.
///
/// A lease may end after its pool (a coroutine frame destroyed after the worker's context):
/// its buffer is then freed instead of kept. Thread: owning worker only.
class BufferPool {
  struct Shelf;

 public:
  static constexpr size_t kBufferSize = 64 * 1024;

  /// Keeps up to `keep` returned buffers for reuse; frees those beyond.
  explicit BufferPool(size_t keep) : shelf_(std::make_shared<Shelf>(Shelf{keep, {}})) {}
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  class Lease {
   public:
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    ~Lease() {
      if (!buffer_) return;
      if (auto shelf = shelf_.lock(); shelf && shelf->spare.size() < shelf->keep)
        shelf->spare.push_back(std::move(buffer_));
    }
    char* data() { return buffer_.get(); }
    static constexpr size_t size() { return kBufferSize; }

   private:
    friend class BufferPool;
    Lease(std::unique_ptr<char[]> buffer, std::weak_ptr<Shelf> shelf)
        : buffer_(std::move(buffer)), shelf_(std::move(shelf)) {}
    std::unique_ptr<char[]> buffer_;
    std::weak_ptr<Shelf> shelf_;
  };

  /// The most recently returned buffer (its memory is the likeliest still in cache), or a new
  /// one.
  Lease take() {
    std::unique_ptr<char[]> buffer;
    if (shelf_->spare.empty()) {
      buffer.reset(new char[kBufferSize]);
    } else {
      buffer = std::move(shelf_->spare.back());
      shelf_->spare.pop_back();
    }
    return Lease(std::move(buffer), shelf_);
  }
  size_t spare() const { return shelf_->spare.size(); }

 private:
  struct Shelf {
    size_t keep;
    std::vector<std::unique_ptr<char[]>> spare;
  };
  std::shared_ptr<Shelf> shelf_;
};

}  // namespace kedge
