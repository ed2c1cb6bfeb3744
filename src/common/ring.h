#pragma once

#include <liburing.h>

#include <cstddef>

namespace kedge {

/// System calls in batches: sends and receives that must not wait, queued during one round of
/// a worker's event loop and handed to the kernel together, in one io_uring_enter instead of a
/// system call each. Every operation carries MSG_DONTWAIT, so the kernel finishes each one
/// inside that call (done, partial, or -EAGAIN) and nothing stays in flight: a socket may be
/// closed, and a buffer freed, as soon as submit() returns.
///
/// Where the kernel refuses io_uring (a seccomp profile, `kernel.io_uring_disabled`, an old
/// kernel), ok() is false and callers make their system calls one by one.
/// Thread: owning worker only. Owner: the worker's Readiness set.
class Ring {
 public:
  static constexpr unsigned kEntries = 256;

  explicit Ring(bool enable = true);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  bool ok() const { return ok_; }
  /// Why the kernel refused the ring (an errno), 0 if it did not or none was asked for.
  int refused() const { return refused_; }
  bool empty() const { return queued_ == 0; }
  /// Queue a send (MSG_DONTWAIT | MSG_NOSIGNAL) or a receive (MSG_DONTWAIT) on socket `fd`;
  /// `tag` comes back with its result. False when the ring is full or not ok(): the caller then
  /// makes the call itself.
  bool send(int fd, const void* data, size_t size, void* tag);
  bool recv(int fd, void* data, size_t size, void* tag);
  /// Hands what is queued to the kernel in one call and calls done(tag, result) for each
  /// operation: bytes moved, 0 for a receive at the peer's end, or -errno.
  template <class Done>
  void submit(Done&& done) {
    const unsigned n = queued_;
    if (n == 0) return;
    queued_ = 0;
    if (int failed = submit_all(n)) {  // nothing ran: each operation gets the error
      for (unsigned i = 0; i < n; ++i) done(tags_[i], failed);
      return;
    }
    io_uring_cqe* cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      done(io_uring_cqe_get_data(cqe), cqe->res);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
  }

 private:
  io_uring_sqe* next();
  /// Submits the `n` queued operations: 0, or the -errno with which the kernel took none of
  /// them (the ring is then given up, and ok() false).
  int submit_all(unsigned n);

  io_uring ring_{};
  bool ok_ = false;
  int refused_ = 0;
  unsigned queued_ = 0;
  void* tags_[kEntries];  // of the queued operations, for a failure no call should meet
};

}  // namespace kedge
