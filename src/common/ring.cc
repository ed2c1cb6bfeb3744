#include "common/ring.h"

#include <spdlog/spdlog.h>

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace kedge {

Ring::Ring(bool enable) {
  if (!enable) return;
  // Every operation ends inside the call, so none needs task work later; an operation that
  // fails does not stop the ones queued behind it. (Not IORING_SETUP_SINGLE_ISSUER: a worker's
  // ring is made before its thread starts.)
  unsigned flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL;
  int rc = io_uring_queue_init(kEntries, &ring_, flags);
  ok_ = rc == 0;
  refused_ = -rc;
}

Ring::~Ring() {
  if (ok_) io_uring_queue_exit(&ring_);
}

io_uring_sqe* Ring::next() { return ok_ ? io_uring_get_sqe(&ring_) : nullptr; }

bool Ring::send(int fd, const void* data, size_t size, void* tag) {
  io_uring_sqe* sqe = next();
  if (!sqe) return false;
  io_uring_prep_send(sqe, fd, data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, tag);
  tags_[queued_++] = tag;
  return true;
}

bool Ring::recv(int fd, void* data, size_t size, void* tag) {
  io_uring_sqe* sqe = next();
  if (!sqe) return false;
  io_uring_prep_recv(sqe, fd, data, size, MSG_DONTWAIT);
  io_uring_sqe_set_data(sqe, tag);
  tags_[queued_++] = tag;
  return true;
}

int Ring::submit_all(unsigned n) {
  // Waiting for as many completions as there are operations returns at once: each one is
  // done when the kernel has taken it.
  int rc;
  do rc = io_uring_submit_and_wait(&ring_, n);
  while (rc == -EINTR);
  if (rc >= 0) return 0;
  spdlog::warn("io_uring_enter: {}; this worker makes its socket calls one by one from now on",
               std::strerror(-rc));
  io_uring_queue_exit(&ring_);
  ok_ = false;
  return rc;
}

}  // namespace kedge
