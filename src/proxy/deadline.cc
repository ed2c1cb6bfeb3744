#include "proxy/deadline.h"

#include "proxy/downstream_stream.h"
#include "upstream/upstreams.h"

#include <algorithm>

namespace kedge::proxy {

DeadlineQueue::~DeadlineQueue() {
  for (Deadline* d = head_; d; d = d->next_) {
    d->started_ = false;
    d->queue_ = nullptr;
  }
}

void DeadlineQueue::add(Deadline& d) {
  d.prev_ = nullptr;
  d.next_ = head_;
  if (head_) head_->prev_ = &d;
  head_ = &d;
  ++started_;
  wake_by(d.at_);
}

void DeadlineQueue::remove(Deadline& d) {
  (d.prev_ ? d.prev_->next_ : head_) = d.next_;
  if (d.next_) d.next_->prev_ = d.prev_;
  d.prev_ = d.next_ = nullptr;
  --started_;
}

void DeadlineQueue::reset(Clock::time_point t) {
  wake_ = t;
  timer_.expires_at(t);  // a wait pending ends as aborted, and does nothing
  timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) expire();  // aborted: reset again, or this queue is gone
  });
}

void DeadlineQueue::expire() {
  wake_ = Clock::time_point::max();
  const Clock::time_point now = Clock::now();
  Clock::time_point next = Clock::time_point::max();
  for (Deadline* d = head_; d; d = d->next_) {
    if (d->at_ <= now) d->fire(now);  // cancels: completions run later, not in this loop
    next = std::min(next, d->at_);
  }
  if (next != Clock::time_point::max()) reset(next);
}

void Deadline::start() {
  if (started_ || !queue_) return;
  started_ = true;
  queue_->add(*this);
}

void Deadline::stop() {
  if (!started_) return;
  started_ = false;
  queue_->remove(*this);
}

void Deadline::abandon() {
  abandoned_ = true;
  if (upstream_) upstream_->cancel();
}

void Deadline::fire(Clock::time_point now) {
  fired_ = true;
  fired_phase_ = phase_;
  if (downstream_) downstream_->cancel();
  if (upstream_) upstream_->cancel();
  at_ = now + std::chrono::hours(24);  // once; arm() sets the next
}

}  // namespace kedge::proxy
