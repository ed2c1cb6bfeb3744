#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>

namespace kedge::proxy {

/// Counters of one worker. Only its worker writes them; the admin server gets a copy by posting
/// to the worker, so no counter is shared between threads.
struct Stats {
  static constexpr std::array<double, 12> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                            0.1,   0.25,   0.5,   1,    2.5,   5};
  struct RouteCounters {
    std::map<int, uint64_t> by_status;
  };
  std::unordered_map<std::string, RouteCounters> requests;  // by Route::stats_key
  std::map<int, uint64_t> unrouted;                         // local replies without a route
  std::array<uint64_t, kLatencyBounds.size() + 1> upstream_latency{};  // last bucket: +Inf
  double upstream_latency_sum = 0;
  uint64_t upstream_latency_count = 0;
  int64_t active_connections = 0;
  uint64_t accepted_connections = 0;
  uint64_t upstream_connect_failures = 0;
  uint64_t snapshot_generation = 0;

  void observe_latency(double seconds) {
    size_t i = 0;
    while (i < kLatencyBounds.size() && seconds > kLatencyBounds[i]) ++i;
    ++upstream_latency[i];
    upstream_latency_sum += seconds;
    ++upstream_latency_count;
  }
  void merge(const Stats& o);
};

}  // namespace kedge::proxy
