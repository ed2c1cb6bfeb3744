#include "upstream/readiness.h"

#include "upstream/upstreams.h"

#include <sys/epoll.h>

#include <array>
#include <cerrno>
#include <system_error>

namespace kedge::upstream {

namespace asio = boost::asio;

namespace {

int make_set() {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  return fd;
}

}  // namespace

Readiness::Readiness(asio::any_io_executor executor) : set_(executor, make_set()) {}

bool Readiness::watch(Connection& c) {
  // Edge-triggered: one report per arrival. A socket leaves the set when it is closed.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = &c;
  if (::epoll_ctl(set_.native_handle(), EPOLL_CTL_ADD, c.socket.native_handle(), &ev) != 0)
    return false;
  c.readiness = this;
  return true;
}

void Readiness::park(Connection& c) {
  c.awaiting_input = true;
  ++waiting_;
  arm();
  c.input_wait.expires_at(asio::steady_timer::time_point::max());
}

boost::system::error_code Readiness::unpark(Connection& c) {
  if (c.awaiting_input) {  // not woken by collect(): cancelled
    c.awaiting_input = false;
    --waiting_;
  }
  if (c.has_input) return boost::system::error_code();
  return asio::error::operation_aborted;
}

void Readiness::arm() {
  if (armed_ || waiting_ == 0) return;
  armed_ = true;
  set_.async_wait(asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
    if (ec) return;  // the set is being destroyed: touch nothing
    armed_ = false;
    collect();
    arm();
  });
}

void Readiness::collect() {
  std::array<epoll_event, 64> events;
  int n;
  do {
    n = ::epoll_wait(set_.native_handle(), events.data(), static_cast<int>(events.size()), 0);
    for (int i = 0; i < n; ++i) {
      // A closed socket has left the set, so every pointer here is a live connection.
      const epoll_event& e = events[static_cast<size_t>(i)];
      Connection& c = *static_cast<Connection*>(e.data.ptr);
      c.has_input = true;
      if (e.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c.input_ended = true;
      if (c.awaiting_input) {
        c.awaiting_input = false;
        --waiting_;
        c.input_wait.cancel();
      }
    }
  } while (n == static_cast<int>(events.size()) || (n < 0 && errno == EINTR));
}

}  // namespace kedge::upstream
