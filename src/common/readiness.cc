#include "common/readiness.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <cerrno>
#include <system_error>
#include <utility>

namespace kedge {

namespace asio = boost::asio;

namespace {

int make_set() {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  return fd;
}

}  // namespace

asio::awaitable<ReadResult> read_watched(asio::ip::tcp::socket& socket, WatchedInput& input,
                                         asio::mutable_buffer buffer) {
  constexpr auto t = asio::as_tuple(asio::use_awaitable);
  if (!input.readiness || buffer.size() == 0) co_return co_await socket.async_read_some(buffer, t);
  while (true) {
    if (input.has_input) {
      ssize_t n = ::recv(socket.native_handle(), buffer.data(), buffer.size(), MSG_DONTWAIT);
      if (n > 0) {
        // A short read emptied the socket: what arrives next is reported to the set. Not the
        // end of the stream, though: no report follows the one that announced it.
        if (static_cast<size_t>(n) < buffer.size() && !input.ended) input.has_input = false;
        co_return ReadResult{boost::system::error_code(), static_cast<size_t>(n)};
      }
      if (n == 0) co_return ReadResult{asio::error::eof, 0};
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        co_return ReadResult{boost::system::error_code(errno, boost::system::system_category()), 0};
      input.has_input = false;
    }
    input.readiness->park(input);
    co_await input.wait.async_wait(t);
    if (boost::system::error_code ec = input.readiness->unpark(input)) co_return ReadResult{ec, 0};
  }
}

asio::awaitable<bool> wait_watched(WatchedInput& input, std::chrono::milliseconds timeout) {
  if (input.has_input) co_return true;
  input.readiness->park(input, asio::steady_timer::clock_type::now() + timeout);
  co_await input.wait.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return !input.readiness->unpark(input);
}

void cancel_read(asio::ip::tcp::socket& socket, WatchedInput& input) {
  boost::system::error_code ignored;
  socket.cancel(ignored);
  input.wait.cancel();
}

Readiness::Readiness(asio::any_io_executor executor) : set_(executor, make_set()) {}

bool Readiness::watch(int fd, WatchedInput& input) {
  // Edge-triggered: one report per arrival. A socket leaves the set when it is closed.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = &input;
  if (::epoll_ctl(set_.native_handle(), EPOLL_CTL_ADD, fd, &ev) != 0) return false;
  input.readiness = this;
  return true;
}

void Readiness::report_end(WatchedInput& input, void (*fn)(void*), void* arg) {
  if (!input.on_end) ++reporting_;
  input.on_end = fn;
  input.on_end_arg = arg;
  arm();
}

void Readiness::stop_end_report(WatchedInput& input) {
  if (!input.on_end) return;
  input.on_end = nullptr;
  --reporting_;
}

void Readiness::park(WatchedInput& input, asio::steady_timer::time_point until) {
  input.awaiting = true;
  ++waiting_;
  arm();
  input.wait.expires_at(until);
}

boost::system::error_code Readiness::unpark(WatchedInput& input) {
  if (input.awaiting) {  // not woken by collect(): cancelled
    input.awaiting = false;
    --waiting_;
  }
  if (input.has_input) return boost::system::error_code();
  return asio::error::operation_aborted;
}

void Readiness::arm() {
  if (armed_ || waiting_ + reporting_ == 0) return;
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
      // A closed socket has left the set, so every pointer here is to a live input.
      const epoll_event& e = events[static_cast<size_t>(i)];
      WatchedInput& input = *static_cast<WatchedInput*>(e.data.ptr);
      input.has_input = true;
      if (e.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) input.ended = true;
      if (input.awaiting) {
        input.awaiting = false;
        --waiting_;
        input.wait.cancel();
      } else if (input.ended && input.on_end) {
        auto [fn, arg] = std::pair(input.on_end, input.on_end_arg);
        stop_end_report(input);  // once; and `input` may be gone after the call
        fn(arg);
      }
    }
  } while (n == static_cast<int>(events.size()) || (n < 0 && errno == EINTR));
}

}  // namespace kedge
