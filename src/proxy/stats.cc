#include "proxy/stats.h"

namespace kedge::proxy {

void Stats::merge(const Stats& o) {
  for (auto& [key, rc] : o.requests)
    for (auto& [status, n] : rc.by_status) requests[key].by_status[status] += n;
  for (auto& [status, n] : o.unrouted) unrouted[status] += n;
  for (size_t i = 0; i < upstream_latency.size(); ++i) upstream_latency[i] += o.upstream_latency[i];
  upstream_latency_sum += o.upstream_latency_sum;
  upstream_latency_count += o.upstream_latency_count;
  active_connections += o.active_connections;
  accepted_connections += o.accepted_connections;
  upstream_connect_failures += o.upstream_connect_failures;
  snapshot_generation = std::max(snapshot_generation, o.snapshot_generation);
}

}  // namespace kedge::proxy
