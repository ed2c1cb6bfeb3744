#include "proxy/client_limiter.h"

#include <algorithm>
#include <bit>

namespace kedge::proxy {

namespace {
int64_t ns(ClientLimiter::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

ClientLimiter::ClientLimiter(size_t slots)
    : table_(new Slot[std::bit_ceil(std::max<size_t>(slots, kProbes))]),
      mask_(std::bit_ceil(std::max<size_t>(slots, kProbes)) - 1) {}

uint64_t ClientLimiter::hash(const Key& key) {
  // FNV-1a over the address and the scope, then a final mix; never 0 (0 marks a free slot).
  uint64_t h = 1469598103934665603ull;
  for (uint8_t b : key.address) h = (h ^ b) * 1099511628211ull;
  for (int i = 0; i < 8; ++i) h = (h ^ ((key.scope >> (8 * i)) & 0xff)) * 1099511628211ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h ? h : 1;
}

ClientLimiter::Slot* ClientLimiter::find(uint64_t tag, int64_t now_ns) {
  for (size_t i = 0; i < kProbes; ++i) {
    Slot& s = table_[(tag + i) & mask_];
    uint64_t t = s.tag.load(std::memory_order_acquire);
    if (t == tag) return &s;
  }
  for (size_t i = 0; i < kProbes; ++i) {
    Slot& s = table_[(tag + i) & mask_];
    uint64_t t = s.tag.load(std::memory_order_acquire);
    // Free, or stale: no request in flight and its rate budget fully recovered. A racing
    // request of the evicted key may land in the new key's counters once; that is the whole
    // cost of not locking.
    bool stale = t != 0 && s.in_flight.load(std::memory_order_relaxed) == 0 &&
                 s.tat.load(std::memory_order_relaxed) <= now_ns;
    if (t != 0 && !stale) continue;
    if (s.tag.compare_exchange_strong(t, tag, std::memory_order_acq_rel)) {
      s.tat.store(0, std::memory_order_relaxed);
      return &s;
    }
    if (t == tag) return &s;  // another thread claimed it for the same key
  }
  return nullptr;
}

bool ClientLimiter::allow_request(const Key& key, double rps, uint32_t burst,
                                  Clock::time_point now) {
  int64_t now_ns = ns(now);
  Slot* s = find(hash(key), now_ns);
  if (!s) {
    overflow_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  // GCRA: each request moves the theoretical arrival time on by one interval; a request is
  // refused when that time runs ahead of now by more than the burst allows.
  const auto interval = static_cast<int64_t>(1e9 / std::max(rps, 1e-3));
  const int64_t tolerance = interval * static_cast<int64_t>(burst);
  int64_t tat = s->tat.load(std::memory_order_relaxed);
  for (int attempt = 0; attempt < 64; ++attempt) {
    int64_t base = std::max(tat, now_ns);
    if (base - now_ns > tolerance) return false;
    if (s->tat.compare_exchange_weak(tat, base + interval, std::memory_order_relaxed)) return true;
  }
  return true;  // heavy contention on one key: let it through rather than spin
}

ClientLimiter::Hold ClientLimiter::acquire(const Key& key, int32_t max, bool& admitted,
                                           Clock::time_point now) {
  admitted = true;
  Slot* s = find(hash(key), ns(now));
  if (!s) {
    overflow_.fetch_add(1, std::memory_order_relaxed);
    return Hold();
  }
  if (s->in_flight.fetch_add(1, std::memory_order_relaxed) >= max) {
    s->in_flight.fetch_sub(1, std::memory_order_relaxed);
    admitted = false;
    return Hold();
  }
  return Hold(&s->in_flight);
}

int admit(ClientLimiter& limiter, const model::ClientLimits& limits,
          const model::SocketAddress& client, int rate_status, int connection_status,
          ClientLimiter::Hold& hold) {
  for (const model::Cidr& range : limits.exempt)
    if (range.contains(client.v6, client.ip)) return 0;
  ClientLimiter::Key key;
  key.address = client.ip;
  if (!client.v6) {  // as ::ffff:a.b.c.d, so no IPv4 address shares a key with an IPv6 one
    std::copy_n(client.ip.begin(), 4, key.address.begin() + 12);
    std::fill_n(key.address.begin(), 10, uint8_t{0});
    key.address[10] = key.address[11] = 0xff;
  }
  const auto now = ClientLimiter::Clock::now();
  for (size_t i = 0; i < limits.rates.size(); ++i) {
    key.scope = limits.scope + i;  // each rate keeps its own budget
    if (!limiter.allow_request(key, limits.rates[i].per_second, limits.rates[i].burst, now))
      return rate_status;
  }
  if (limits.connections > 0) {
    key.scope = limits.scope ^ 0x8000'0000'0000'0000ull;
    bool admitted = true;
    hold = limiter.acquire(key, limits.connections, admitted, now);
    if (!admitted) return connection_status;
  }
  return 0;
}

}  // namespace kedge::proxy
