#pragma once

#include "k8s/issue.h"
#include "k8s/object_store.h"
#include "model/snapshot.h"
#include "translate/allocator.h"

#include <chrono>
#include <memory>
#include <mutex>

namespace kedge::control {

/// What the control thread last published, for the admin server: the objects, the snapshot
/// built from them and the issues found. Immutable once published.
struct PublishedState {
  k8s::ObjectStore store;
  model::SnapshotConstPtr snapshot;
  k8s::Issues issues;
  /// Services' ClusterIPs, NodePorts, LoadBalancer IPs (shared while they do not change).
  std::shared_ptr<const translate::Allocations> allocations =
      std::make_shared<const translate::Allocations>();
  uint64_t reloads = 0;       // successful publications so far
  uint64_t issues_total = 0;  // issues reported over all loads
  std::chrono::system_clock::time_point published_at;
};
using PublishedStateConstPtr = std::shared_ptr<const PublishedState>;

/// A mutex-guarded slot holding the latest PublishedState. Off the request path: only the
/// control thread writes it and only the admin server reads it.
/// Thread: any.
class StateSlot {
 public:
  void set(PublishedStateConstPtr state) {
    std::lock_guard lock(mutex_);
    state_ = std::move(state);
  }
  PublishedStateConstPtr get() const {
    std::lock_guard lock(mutex_);
    return state_;
  }

 private:
  mutable std::mutex mutex_;
  PublishedStateConstPtr state_;
};

}  // namespace kedge::control
