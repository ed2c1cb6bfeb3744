#include "proxy/deadline.h"

#include "upstream/upstreams.h"

namespace kedge::proxy {

namespace asio = boost::asio;

Deadline::Deadline(const asio::any_io_executor& executor, asio::ip::tcp::socket* downstream)
    : s_(std::make_shared<State>(executor)) {
  s_->downstream = downstream;
}

void Deadline::arm(Phase phase, Millis timeout) {
  State& s = *s_;
  s.phase = phase;
  s.fired = false;
  s.deadline = Clock::now() + timeout;
  if (s.deadline < s.armed) s.timer.cancel();  // the handler waits again, for the earlier time
}

void Deadline::start() {
  s_->stopped = false;
  wait(s_);
}

void Deadline::stop() {
  if (s_->stopped) return;
  s_->stopped = true;
  s_->timer.cancel();
}

void Deadline::wait(std::shared_ptr<State> sp) {
  State& s = *sp;
  s.armed = s.deadline;
  s.timer.expires_at(s.armed);
  s.timer.async_wait([sp = std::move(sp)](boost::system::error_code) mutable {
    State& t = *sp;
    if (t.stopped) return;  // the sockets may be gone: touch nothing
    if (Clock::now() >= t.deadline) {
      t.fired = true;
      t.fired_phase = t.phase;
      boost::system::error_code ignored;
      if (t.downstream) t.downstream->cancel(ignored);
      if (t.upstream) t.upstream->cancel();
      t.deadline = Clock::now() + std::chrono::hours(24);
    }
    wait(std::move(sp));  // re-armed later, or moved earlier (a cancel), or fired
  });
}

}  // namespace kedge::proxy
