#include "server/worker.h"

#include "proxy/http_session.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace kedge::server {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
int make_eventfd() {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  return fd;
}
}  // namespace

Worker::Worker(int index, const proxy::Limits& limits, proxy::ClientLimiter& client_limiter)
    : index_(index),
      mail_fd_(make_eventfd()),
      mail_reader_(ioc_, mail_fd_),
      ctx_(limits, client_limiter, ioc_.get_executor()) {
  ctx_.sessions = &sessions_;
}

Worker::~Worker() {
  send([this] { ioc_.stop(); });  // a loop that already ended (drained) has nothing to stop
  join();
  // Sessions cut off at the end of a drain are destroyed here, while ctx_ still exists (the
  // io_context would only destroy them after ctx_, in its own destructor).
  ioc_.destroy_handlers();
}

uint16_t Worker::listen(const tcp::endpoint& endpoint, proxy::ListenerInfo info) {
  Listener& l = listeners_.emplace_back(ioc_);
  l.acceptor.open(endpoint.protocol());
  l.acceptor.set_option(tcp::acceptor::reuse_address(true));
  int one = 1;
  ::setsockopt(l.acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (endpoint.address().is_v6()) l.acceptor.set_option(asio::ip::v6_only(true));
  l.acceptor.bind(endpoint);
  l.acceptor.listen(4096);
  l.info = std::move(info);
  l.info.port = l.acceptor.local_endpoint().port();
  return l.info.port;
}

void Worker::send(std::function<void()> task) {
  {
    std::lock_guard lock(mail_mutex_);
    mail_.push_back(std::move(task));
  }
  uint64_t one = 1;
  // Only a counter at its limit refuses a write, and then the loop has a wake-up pending anyway.
  [[maybe_unused]] ssize_t n = ::write(mail_fd_, &one, sizeof one);
}

asio::awaitable<void> Worker::read_mail() {
  std::vector<std::function<void()>> tasks;
  while (true) {
    auto [ec] = co_await mail_reader_.async_wait(asio::posix::descriptor::wait_read,
                                                 asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    uint64_t count;
    [[maybe_unused]] ssize_t n = ::read(mail_fd_, &count, sizeof count);  // resets the counter
    {
      std::lock_guard lock(mail_mutex_);
      tasks.swap(mail_);
    }
    for (auto& task : tasks) task();
    tasks.clear();
  }
}

void Worker::start() {
  asio::co_spawn(ioc_, read_mail(), asio::detached);
  for (Listener& l : listeners_) {
    asio::co_spawn(
        ioc_,
        [this, &l]() -> asio::awaitable<void> {
          while (true) {
            tcp::endpoint peer;  // from accept(): no getpeername() per connection
            auto [ec, socket] =
                co_await l.acceptor.async_accept(peer, asio::as_tuple(asio::use_awaitable));
            if (ec == asio::error::operation_aborted || !l.acceptor.is_open()) co_return;
            if (ec) {
              // Out of descriptors or similar: back off briefly instead of spinning.
              spdlog::warn("worker {}: accept failed: {}", index_, ec.message());
              asio::steady_timer t(ioc_, std::chrono::milliseconds(50));
              co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
              continue;
            }
            if (ctx_.stats.active_connections >= ctx_.limits.max_connections) {
              boost::system::error_code ignored;
              socket.close(ignored);
              continue;
            }
            asio::co_spawn(ioc_,
                           l.info.scheme == "https"
                               ? proxy::serve_https(ctx_, std::move(socket), peer, l.info)
                               : proxy::serve_http(ctx_, std::move(socket), peer, l.info),
                           asio::detached);
          }
        },
        asio::detached);
  }
  thread_ = std::thread([this] {
    // "kedge-worker7" in top -H and /proc (15 characters at most).
    ::pthread_setname_np(::pthread_self(), fmt::format("kedge-worker{}", index_ % 1000).c_str());
    auto guard = asio::make_work_guard(ioc_);
    ioc_.run();
  });
}

void Worker::publish(model::SnapshotConstPtr snapshot) {
  send([this, snapshot = std::move(snapshot)]() mutable {
    ctx_.stats.snapshot_generation = snapshot->generation;
    ctx_.set_snapshot(std::move(snapshot));
  });
}

std::future<proxy::Stats> Worker::stats() {
  auto promise = std::make_shared<std::promise<proxy::Stats>>();
  auto future = promise->get_future();
  send([this, promise] { promise->set_value(ctx_.stats); });
  return future;
}

void Worker::drain(std::chrono::milliseconds grace) {
  send([this, grace] {
    ctx_.draining = true;
    for (Listener& l : listeners_) {
      boost::system::error_code ignored;
      l.acceptor.close(ignored);
    }
    // Connections between requests close now; those with a request in flight finish it.
    for (proxy::HttpSession* session : sessions_) session->close_if_idle();
    asio::co_spawn(
        ioc_,
        [this, grace]() -> asio::awaitable<void> {
          auto until = std::chrono::steady_clock::now() + grace;
          asio::steady_timer t(ioc_);
          while (ctx_.stats.active_connections > 0 && std::chrono::steady_clock::now() < until) {
            t.expires_after(std::chrono::milliseconds(50));
            co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
          }
          ioc_.stop();
        },
        asio::detached);
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace kedge::server
