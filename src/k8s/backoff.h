#pragma once

#include <algorithm>
#include <chrono>
#include <random>

namespace kedge::k8s {

/// Jittered exponential back-off: each failure doubles the base delay up to `max`; the delay
/// returned is drawn uniformly from [base/2, base] so that replicas do not retry in lockstep.
/// reset() after a success. Thread: one owner.
class Backoff {
 public:
  using Millis = std::chrono::milliseconds;
  Backoff(Millis initial, Millis max) : initial_(initial), max_(max), base_(initial) {}

  Millis next() {
    std::uniform_int_distribution<int64_t> pick(base_.count() / 2, base_.count());
    Millis delay(pick(rng_));
    base_ = std::min(max_, base_ * 2);
    return delay;
  }
  void reset() { base_ = initial_; }
  Millis base() const { return base_; }

 private:
  Millis initial_, max_, base_;
  std::minstd_rand rng_{std::random_device{}()};
};

}  // namespace kedge::k8s
