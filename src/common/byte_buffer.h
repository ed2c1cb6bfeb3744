#pragma once

#include <cstddef>
#include <cstring>
#include <memory>

namespace kedge {

/// A fixed-capacity read buffer: bytes are appended at the end and consumed from the front.
/// Views into it are valid until the next compact() or read. Thread: owning connection only.
class ByteBuffer {
 public:
  explicit ByteBuffer(size_t capacity) : data_(new char[capacity]), capacity_(capacity) {}

  const char* data() const { return data_.get() + start_; }
  size_t size() const { return end_ - start_; }
  bool empty() const { return start_ == end_; }
  void consume(size_t n) {
    start_ += n;
    if (start_ == end_) start_ = end_ = 0;
  }
  /// Room to read into, after moving pending bytes to the front when the tail is full.
  char* write_ptr() {
    if (end_ == capacity_ && start_ > 0) {
      std::memmove(data_.get(), data_.get() + start_, end_ - start_);
      end_ -= start_;
      start_ = 0;
    }
    return data_.get() + end_;
  }
  size_t writable() const { return capacity_ - end_; }
  void commit(size_t n) { end_ += n; }

 private:
  std::unique_ptr<char[]> data_;
  size_t capacity_;
  size_t start_ = 0;
  size_t end_ = 0;
};

}  // namespace kedge
