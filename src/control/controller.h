#pragma once

#include "control/published_state.h"
#include "k8s/source.h"
#include "translate/translator.h"

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>

namespace kedge::control {

/// The control loop: source events → reload → translate → publish. Changes arriving close
/// together are coalesced (debounce) so a burst of writes costs one translation.
/// Thread: run() on the control thread; notify() and stop() from any thread.
/// Owner: server::Server.
class Controller {
 public:
  using Publish = std::function<void(model::SnapshotConstPtr)>;

  /// `state_dir`, when not empty, keeps the allocations across restarts
  /// (state_dir/allocations.json, replaced atomically).
  Controller(k8s::Source& source, translate::Options options, translate::AllocatorConfig allocator,
             std::string state_dir, StateSlot& slot, Publish publish);

  /// Loads and publishes once; returns the number of issues found.
  size_t load_now();
  /// Waits for changes and publishes each, until stop().
  void run();
  void notify();
  void stop();
  /// Called on the control thread after each publication, once the StateSlot holds it.
  void on_published(std::function<void()> fn) { on_published_ = std::move(fn); }

 private:
  k8s::Source& source_;
  std::function<void()> on_published_;
  /// Resolves the names of ExternalName Services, tracking which Services those are from the
  /// difference to `last` (the store of the last load; null: none yet).
  void resolve_external_names(const k8s::ObjectStore* last, const k8s::ObjectStore& store);
  void save_allocations();

  translate::Options options_;
  translate::CertificateCache certificates_;
  translate::Translator translator_;
  translate::AllocatorConfig allocator_;
  std::string state_dir_;
  std::shared_ptr<const translate::Allocations> allocations_ =
      std::make_shared<const translate::Allocations>();
  // The store allocations_ was computed for, when that allocation had no issue: the next one
  // then only allocates the Services added since (translate::allocate_after).
  std::optional<k8s::ObjectStore> allocated_from_;
  // ExternalName Services ("namespace/name" → external name) in the store of the last load.
  std::map<std::string, std::string> external_services_;
  StateSlot& slot_;
  Publish publish_;
  uint64_t generation_ = 0;
  model::SnapshotConstPtr retired_;  // the snapshot before the current one, freed by run()
  uint64_t issues_total_ = 0;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool dirty_ = false;
  bool stopping_ = false;
};

}  // namespace kedge::control
