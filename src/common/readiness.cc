#include "common/readiness.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "common/send_now.h"

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

/// A recv of `size` bytes that returned `n` (or -errno), as asio reports a read; would_block
/// when there was nothing to read. Marks the socket drained after a short read or that.
IoResult take(WatchedInput& input, ssize_t n, size_t size) {
  if (n > 0) {
    // A short read emptied the socket: what arrives next is reported to the set. Not the end
    // of the stream, though: no report follows the one that announced it.
    if (static_cast<size_t>(n) < size && !input.ended) input.has_input = false;
    return IoResult{boost::system::error_code(), static_cast<size_t>(n)};
  }
  if (n == 0) return IoResult{asio::error::eof, 0};
  if (n == -EAGAIN) {
    input.has_input = false;
    return IoResult{asio::error::would_block, 0};
  }
  return IoResult{boost::system::error_code(static_cast<int>(-n), boost::system::system_category()),
                  0};
}

}  // namespace

asio::awaitable<IoResult> read_watched(asio::ip::tcp::socket& socket, WatchedInput& input,
                                       asio::mutable_buffer buffer) {
  constexpr auto t = asio::as_tuple(asio::use_awaitable);
  if (!input.readiness || buffer.size() == 0) co_return co_await socket.async_read_some(buffer, t);
  while (true) {
    if (input.has_input) {
      ssize_t n = ::recv(socket.native_handle(), buffer.data(), buffer.size(), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      IoResult r = take(input, n < 0 ? -errno : n, buffer.size());
      if (std::get<0>(r) != asio::error::would_block) co_return r;
    }
    input.readiness->park(input, asio::steady_timer::time_point::max(), buffer);
    co_await input.wait.async_wait(t);
    int got;
    if (boost::system::error_code ec = input.readiness->unpark(input, got))
      co_return IoResult{ec, 0};
    if (got == WatchedInput::kNothing) continue;
    IoResult r = take(input, got, buffer.size());
    if (std::get<0>(r) != asio::error::would_block) co_return r;
  }
}

asio::awaitable<bool> wait_watched(WatchedInput& input, std::chrono::milliseconds timeout) {
  if (input.has_input) co_return true;
  input.readiness->park(input, asio::steady_timer::clock_type::now() + timeout);
  co_await input.wait.async_wait(asio::as_tuple(asio::use_awaitable));
  int got;
  co_return !input.readiness->unpark(input, got);
}

asio::awaitable<IoResult> send_watched(asio::ip::tcp::socket& socket, WatchedInput& input,
                                       asio::const_buffer buffer) {
  constexpr auto t = asio::as_tuple(asio::use_awaitable);
  size_t done = 0;
  if (sends_batched(input) && buffer.size() > 0) {
    input.readiness->queue_send(input, buffer);
    co_await input.send_wait.async_wait(t);
    const int sent = std::exchange(input.sent, WatchedInput::kNothing);
    if (sent == WatchedInput::kNothing) {  // cancelled before the round's end: nothing went
      if (input.sending) input.readiness->unqueue_send(input);
      co_return IoResult{asio::error::operation_aborted, 0};
    }
    if (sent >= 0)
      done = static_cast<size_t>(sent);
    else if (sent != -EAGAIN)
      co_return IoResult{boost::system::error_code(-sent, boost::system::system_category()), 0};
  } else {
    auto [ec, n] = send_now(socket.native_handle(), buffer);
    if (ec) co_return IoResult{ec, n};
    done = n;
  }
  if (done == buffer.size()) co_return IoResult{boost::system::error_code(), done};
  auto [ec, n] = co_await asio::async_write(socket, buffer + done, t);
  co_return IoResult{ec, done + n};
}

void cancel_read(asio::ip::tcp::socket& socket, WatchedInput& input) {
  boost::system::error_code ignored;
  socket.cancel(ignored);
  cancel_watched(input);
}

void cancel_watched(WatchedInput& input) {
  input.wait.cancel();
  // A queued send leaves the batch now, before its socket can be closed and its number reused.
  if (input.sending) input.readiness->unqueue_send(input);
  input.send_wait.cancel();
}

Readiness::Readiness(asio::any_io_executor executor, bool batch)
    : set_(executor, make_set()), ring_(batch), alive_(std::make_shared<bool>(true)) {}

Readiness::~Readiness() { *alive_ = false; }

bool Readiness::watch(int fd, WatchedInput& input) {
  // Edge-triggered: one report per arrival. A socket leaves the set when it is closed.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = &input;
  if (::epoll_ctl(set_.native_handle(), EPOLL_CTL_ADD, fd, &ev) != 0) return false;
  input.readiness = this;
  input.fd = fd;
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

void Readiness::park(WatchedInput& input, asio::steady_timer::time_point until,
                     asio::mutable_buffer into) {
  input.awaiting = true;
  input.into = into;
  ++waiting_;
  arm();
  input.wait.expires_at(until);
}

boost::system::error_code Readiness::unpark(WatchedInput& input, int& got) {
  got = std::exchange(input.got, WatchedInput::kNothing);
  if (got != WatchedInput::kNothing) return boost::system::error_code();  // bytes are not lost
  if (input.awaiting) {  // not woken by collect(): cancelled
    input.awaiting = false;
    --waiting_;
  }
  if (input.has_input) return boost::system::error_code();
  return asio::error::operation_aborted;
}

void Readiness::queue_send(WatchedInput& input, asio::const_buffer out) {
  input.sending = true;
  input.out = out;
  input.send_wait.expires_at(asio::steady_timer::time_point::max());
  sending_.push_back(&input);
  if (sending_.size() > 1) return;
  // The end of the round: after the handlers queued now, among them the reads collect() woke.
  asio::post(set_.get_executor(), [this, alive = alive_] {
    if (*alive) flush();
  });
}

void Readiness::unqueue_send(WatchedInput& input) {
  input.sending = false;
  std::erase(sending_, &input);
}

void Readiness::flush() {
  auto done = [](void* tag, int result) {
    WatchedInput& input = *static_cast<WatchedInput*>(tag);
    input.sent = result;
    input.send_wait.cancel();
  };
  for (WatchedInput* input : sending_) {
    input->sending = false;
    if (!ring_.send(input->fd, input->out.data(), input->out.size(), input)) {
      ring_.submit(done);  // full: this batch goes now
      if (!ring_.send(input->fd, input->out.data(), input->out.size(), input)) {
        auto [ec, n] = send_now(input->fd, input->out);  // the ring was given up
        done(input, ec ? -ec.value() : static_cast<int>(n));
      }
    }
  }
  sending_.clear();
  ring_.submit(done);
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
  std::array<WatchedInput*, 64> woken;
  std::array<std::pair<void (*)(void*), void*>, 64> ends;
  size_t reads = 0;
  int n;
  do {
    n = ::epoll_wait(set_.native_handle(), events.data(), static_cast<int>(events.size()), 0);
    size_t awoken = 0, ended = 0;
    for (int i = 0; i < n; ++i) {
      // A closed socket has left the set, so every pointer here is to a live input.
      const epoll_event& e = events[static_cast<size_t>(i)];
      WatchedInput& input = *static_cast<WatchedInput*>(e.data.ptr);
      input.has_input = true;
      if (e.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) input.ended = true;
      if (input.awaiting) {
        input.awaiting = false;
        --waiting_;
        woken[awoken++] = &input;
      } else if (input.ended && input.on_end) {
        ends[ended++] = std::pair(input.on_end, input.on_end_arg);
        stop_end_report(input);  // once
      }
    }
    // Two reads or more: they get their bytes in one call below. One alone reads by itself
    // (a recv costs what the call would), and is spared the batch's steps.
    reads += awoken;
    for (size_t i = 0; i < awoken; ++i) {
      WatchedInput& input = *woken[i];
      if (awoken < 2 || input.into.size() == 0 ||
          !ring_.recv(input.fd, input.into.data(), input.into.size(), &input))
        input.wait.cancel();
    }
    ring_.submit([](void* tag, int result) {
      WatchedInput& input = *static_cast<WatchedInput*>(tag);
      input.got = result;
      input.wait.cancel();
    });
    // After the reads: a report may end what owns another input, which one of them filled.
    for (size_t i = 0; i < ended; ++i) ends[i].first(ends[i].second);
  } while (n == static_cast<int>(events.size()) || (n < 0 && errno == EINTR));
  // The sends of the round these reads start are worth a batch when there are several.
  batch_sends_ = ring_.ok() && reads >= 2;
}

}  // namespace kedge
