#pragma once

#include "model/snapshot.h"
#include "proxy/limits.h"
#include "proxy/stats.h"
#include "upstream/upstreams.h"

#include <random>

namespace kedge::proxy {

/// What every connection of one worker shares: the current snapshot, the upstream state and
/// the counters. Thread: the worker's event loop only. Owner: server::Worker.
struct WorkerContext {
  explicit WorkerContext(const Limits& l) : limits(l), upstreams(l), rng(std::random_device{}()) {}

  const Limits& limits;
  model::SnapshotConstPtr snapshot;  // swapped by a task the control thread posts
  upstream::Upstreams upstreams;
  Stats stats;
  std::mt19937_64 rng;  // request ids
  bool draining = false;
};

}  // namespace kedge::proxy
