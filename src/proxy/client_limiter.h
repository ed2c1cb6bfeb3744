#pragma once

#include "model/snapshot.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

namespace kedge::proxy {

/// Per-client-address limits with ingress-nginx's semantics: `limit-rps` (requests per second,
/// with a burst of rps × `limit-burst-multiplier` answered at once, as nginx's `limit_req
/// burst=… nodelay`) and `limit-connections` (requests in flight at once, as nginx's
/// `limit_conn`), both per client address and per Ingress.
///
/// Shared by every worker and lock-free: a fixed table of slots, each holding a key tag, the
/// GCRA "theoretical arrival time" of the rate limit and an in-flight count, all updated with
/// atomics, so the limits are exact across workers (not multiplied by their number). A key
/// probes a few slots; when they are all held by other recent keys (more distinct clients than
/// the table holds), the request is let through and counted as `overflow`: memory stays
/// bounded and an address flood cannot make kedge refuse legitimate clients.
/// Thread: any.
class ClientLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kProbes = 4;

  /// `slots`: rounded up to a power of two. Each takes 24 bytes.
  explicit ClientLimiter(size_t slots = 1 << 16);

  struct Key {
    std::array<uint8_t, 16> address{};  // IPv4 or IPv6 bytes
    uint64_t scope = 0;                 // the Ingress (any stable hash of its identity)
  };
  static uint64_t hash(const Key& key);

  /// One request arriving: true when within `rps` with a burst of `burst` (both > 0).
  bool allow_request(const Key& key, double rps, uint32_t burst, Clock::time_point now);

  /// Holds one of at most `max` requests in flight for a key; empty when over the limit.
  class Hold {
   public:
    Hold() = default;
    Hold(Hold&& o) noexcept : count_(o.count_) { o.count_ = nullptr; }
    Hold& operator=(Hold&& o) noexcept {
      release();
      count_ = o.count_;
      o.count_ = nullptr;
      return *this;
    }
    ~Hold() { release(); }
    explicit operator bool() const { return count_ != nullptr; }

   private:
    friend class ClientLimiter;
    explicit Hold(std::atomic<int32_t>* count) : count_(count) {}
    void release() {
      if (count_) count_->fetch_sub(1, std::memory_order_relaxed);
      count_ = nullptr;
    }
    std::atomic<int32_t>* count_ = nullptr;
  };
  /// `admitted` is false when the key already has `max` requests in flight.
  Hold acquire(const Key& key, int32_t max, bool& admitted, Clock::time_point now);

  uint64_t overflow() const { return overflow_.load(std::memory_order_relaxed); }
  size_t slots() const { return mask_ + 1; }

 private:
  struct Slot {
    std::atomic<uint64_t> tag{0};       // hash of the key; 0: free
    std::atomic<int64_t> tat{0};        // GCRA theoretical arrival time, ns since clock epoch
    std::atomic<int32_t> in_flight{0};  // requests of this key being served
    std::atomic<int32_t> pad{0};
  };
  /// The key's slot, claiming a free or stale one; nullptr when every probe is busy.
  Slot* find(uint64_t tag, int64_t now_ns);

  std::unique_ptr<Slot[]> table_;
  size_t mask_;
  std::atomic<uint64_t> overflow_{0};
};

/// Applies an Ingress's client limits to one request from `client`: 0 when admitted (`hold` then
/// counts the request in flight until it is released or destroyed), else the status to answer:
/// `rate_status` past a rate, `connection_status` past the requests in flight. Exempt ranges
/// pass untouched.
int admit(ClientLimiter& limiter, const model::ClientLimits& limits,
          const model::SocketAddress& client, int rate_status, int connection_status,
          ClientLimiter::Hold& hold);

}  // namespace kedge::proxy
