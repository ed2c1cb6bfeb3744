#pragma once

#include "model/snapshot.h"
#include "proxy/limits.h"
#include "proxy/stats.h"
#include "upstream/upstreams.h"

#include <random>
#include <unordered_set>

namespace kedge::proxy {

class HttpSession;

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
  // Open client connections, for a drain to close the idle ones. Owned by the worker and
  // outliving the io_context, whose destruction may destroy sessions after this context.
  std::unordered_set<HttpSession*>* sessions = nullptr;
};

}  // namespace kedge::proxy
