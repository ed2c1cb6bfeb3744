#pragma once

#include "k8s/issue.h"
#include "k8s/object_store.h"
#include "k8s/source.h"

#include <filesystem>
#include <map>
#include <set>
#include <vector>

namespace kedge::k8s {

/// The manifest-file source: turns the files below some folders into an ObjectStore.
/// Only files whose size or modification time changed are parsed again, and only their objects
/// are replaced in the store; an object whose JSON and origin did not change keeps its identity
/// (so nothing downstream translates it again). An invalid object keeps its last good version; a
/// file that fails as a whole keeps everything it last yielded. An object defined in several
/// files comes from the first in path order; the others are reported.
/// Changed files are read and decoded on up to `threads` threads (0: one per CPU the process may
/// run on), then merged in path order, so the result does not depend on the thread count.
/// Thread: the control thread only. Owner: control::Controller.
class ManifestSource : public Source {
 public:
  explicit ManifestSource(std::vector<std::filesystem::path> roots, unsigned threads = 0);

  using Load = SourceLoad;

  /// Scans the folders again and returns the complete, merged result.
  Load reload() override;

  const std::vector<std::filesystem::path>& roots() const { return roots_; }

 private:
  struct FileState {
    std::filesystem::file_time_type mtime;
    uintmax_t size = 0;
    std::vector<StoredObjectConstPtr> good;  // what this file currently contributes
    Issues issues;
  };

  /// Moves the objects of one file out of (`add` false) or into the store.
  void apply(const std::vector<StoredObjectConstPtr>& objects, bool add,
             std::set<ObjectKey>& touched);

  std::vector<std::filesystem::path> roots_;
  unsigned threads_;
  std::map<std::filesystem::path, FileState> files_;
  /// Every definition of each key, in path order (then file order): the first one is stored.
  std::map<ObjectKey, std::vector<StoredObjectConstPtr>> definitions_;
  std::set<ObjectKey> duplicated_;  // keys with more than one definition
  ObjectStore store_;
};

}  // namespace kedge::k8s
