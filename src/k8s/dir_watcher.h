#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <thread>
#include <vector>

namespace kedge::k8s {

/// Watches folders (recursively, following new subfolders) with inotify and calls `on_change`
/// from its own thread whenever something below them changes. Coalescing is the caller's job.
/// Thread: constructed and destroyed by the owner; `on_change` runs on the watcher thread.
class DirWatcher {
 public:
  DirWatcher(std::vector<std::filesystem::path> roots, std::function<void()> on_change);
  ~DirWatcher();
  DirWatcher(const DirWatcher&) = delete;
  DirWatcher& operator=(const DirWatcher&) = delete;

 private:
  void add_tree(const std::filesystem::path& dir);
  void run();

  std::vector<std::filesystem::path> roots_;
  std::function<void()> on_change_;
  int inotify_fd_ = -1;
  int stop_fd_ = -1;
  std::vector<std::pair<int, std::filesystem::path>> watches_;
  std::thread thread_;
};

}  // namespace kedge::k8s
