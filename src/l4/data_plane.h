#pragma once

#include "model/snapshot.h"

#include <chrono>
#include <memory>

namespace kedge::l4 {

/// Forwards Service traffic (ClusterIP, NodePort, LoadBalancer listeners of the snapshot) to
/// endpoints. Implementations: the userspace proxy (no privileges) and, later, a kernel one.
/// Thread: apply() and stop() from the control/main thread. Owner: server::run_serve.
class DataPlane {
 public:
  virtual ~DataPlane() = default;
  /// Makes the listeners and endpoint sets of `snapshot` current. Connections to endpoints that
  /// remain are untouched; those to removed endpoints are closed.
  virtual void apply(model::SnapshotConstPtr snapshot) = 0;
  virtual void stop() = 0;
};

struct UserspaceOptions {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds udp_idle_timeout{30000};  // --udp-idle-timeout
};

std::unique_ptr<DataPlane> make_userspace_data_plane(const UserspaceOptions& options);

}  // namespace kedge::l4
