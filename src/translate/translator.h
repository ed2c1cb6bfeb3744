#pragma once

#include "k8s/issue.h"
#include "k8s/object_store.h"
#include "model/snapshot.h"

#include <string>

namespace kedge::translate {

inline constexpr std::string_view kControllerName = "kedge.dev/ingress-controller";

struct Options {
  std::string ingress_class = "kedge";    // --ingress-class
  bool watch_ingress_without_class = true;  // --watch-ingress-without-class
};

struct Translation {
  model::SnapshotConstPtr snapshot;
  k8s::Issues issues;  // objects or parts left out, with the reason
};

/// Turns the objects into a complete routing snapshot. Pure: no I/O, never fails as a whole;
/// whatever cannot be used is left out and reported.
/// Thread: any.
Translation translate(const k8s::ObjectStore& store, const Options& options, uint64_t generation);

/// Whether kedge serves this Ingress, by spec.ingressClassName, the legacy annotation, or the
/// default-class rules.
bool serves_ingress(const k8s::ObjectStore& store, const Options& options,
                    const k8s::Ingress& ingress);

}  // namespace kedge::translate
