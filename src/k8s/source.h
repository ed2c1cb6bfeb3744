#pragma once

#include "k8s/issue.h"
#include "k8s/object_store.h"

#include <cstddef>

namespace kedge::k8s {

/// What a source currently holds: the merged objects and the problems found reading them.
struct SourceLoad {
  ObjectStore store;
  Issues issues;
  size_t files = 0;  // manifest files read (0 for the API source)
};

/// A source of Kubernetes objects for the controller: manifest folders or the API server.
/// Thread: reload() on the control thread only.
class Source {
 public:
  virtual ~Source() = default;
  /// The complete current set of objects. Cheap when nothing changed.
  virtual SourceLoad reload() = 0;
};

}  // namespace kedge::k8s
