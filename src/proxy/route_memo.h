#pragma once

#include "model/snapshot.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace kedge::proxy {

/// The route of a connection's last request. It holds while the worker's snapshot is the one
/// of `epoch` (WorkerContext::snapshot_epoch) and the next request names the same authority and
/// target, byte for byte as sent: keep-alive and HTTP/2 clients mostly repeat them, and then the
/// normalised host and the route are what normalising and routing again would give.
/// Thread: owning connection only.
struct RouteMemo {
  bool valid = false;
  uint64_t epoch = 0;
  std::string authority, target;  // as the request sent them
  std::string host;               // the authority normalised
  const model::Route* route = nullptr;

  bool hit(uint64_t current_epoch, std::string_view a, std::string_view t) const {
    return valid && epoch == current_epoch && authority == a && target == t;
  }
  void store(uint64_t current_epoch, std::string_view a, std::string_view t,
             const model::Route* r) {
    valid = true;
    epoch = current_epoch;
    authority.assign(a);
    target.assign(t);
    route = r;
  }
};

}  // namespace kedge::proxy
