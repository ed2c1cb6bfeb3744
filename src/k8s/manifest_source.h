#pragma once

#include "k8s/issue.h"
#include "k8s/object_store.h"
#include "k8s/source.h"

#include <filesystem>
#include <map>
#include <vector>

namespace kedge::k8s {

/// The manifest-file source: turns the files below some folders into an ObjectStore.
/// Only files whose size or modification time changed are parsed again. An invalid object keeps
/// its last good version; a file that fails as a whole keeps everything it last yielded.
/// Thread: the control thread only. Owner: control::Controller.
class ManifestSource : public Source {
 public:
  explicit ManifestSource(std::vector<std::filesystem::path> roots);

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

  std::vector<std::filesystem::path> roots_;
  std::map<std::filesystem::path, FileState> files_;
};

}  // namespace kedge::k8s
