#include "proxy/deadline.h"

#include "upstream/upstreams.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace kedge::proxy {

namespace asio = boost::asio;

Deadline::Deadline(const asio::any_io_executor& executor, asio::ip::tcp::socket* downstream)
    : timer_(executor), downstream_(downstream) {}

void Deadline::arm(Phase phase, Millis timeout) {
  phase_ = phase;
  fired_ = false;
  deadline_ = Clock::now() + timeout;
  if (deadline_ < armed_) timer_.cancel();  // wake run() to wait for the earlier deadline
}

void Deadline::stop() {
  stopped_ = true;
  timer_.cancel();
}

asio::awaitable<void> Deadline::run() {
  constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
  while (!stopped_) {
    armed_ = deadline_;
    timer_.expires_at(armed_);
    co_await timer_.async_wait(kUseTuple);
    if (stopped_) break;
    if (Clock::now() < deadline_) continue;
    fired_ = true;
    fired_phase_ = phase_;
    boost::system::error_code ignored;
    if (downstream_) downstream_->cancel(ignored);
    if (upstream_) upstream_->socket.cancel(ignored);
    deadline_ = Clock::now() + std::chrono::hours(24);
  }
}

}  // namespace kedge::proxy
