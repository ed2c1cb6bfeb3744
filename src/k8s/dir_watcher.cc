#include "k8s/dir_watcher.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

namespace kedge::k8s {

namespace {
constexpr uint32_t kMask = IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO |
                           IN_MOVED_FROM | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;
}

DirWatcher::DirWatcher(std::vector<std::filesystem::path> roots, std::function<void()> on_change)
    : roots_(std::move(roots)), on_change_(std::move(on_change)) {
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (inotify_fd_ < 0 || stop_fd_ < 0) {
    spdlog::error("inotify unavailable: manifest changes will not be seen");
    return;
  }
  for (auto& root : roots_) add_tree(root);
  thread_ = std::thread([this] { run(); });
}

DirWatcher::~DirWatcher() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] auto n = write(stop_fd_, &one, sizeof one);
    thread_.join();
  }
  if (inotify_fd_ >= 0) close(inotify_fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

void DirWatcher::add_tree(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // Watching a single file's parent folder also catches editors that replace the file.
  fs::path target = fs::is_directory(dir, ec) ? dir : dir.parent_path();
  int wd = inotify_add_watch(inotify_fd_, target.c_str(), kMask);
  if (wd >= 0) watches_.emplace_back(wd, target);
  if (!fs::is_directory(dir, ec)) return;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec)) {
      int sub = inotify_add_watch(inotify_fd_, it->path().c_str(), kMask);
      if (sub >= 0) watches_.emplace_back(sub, it->path());
    }
  }
}

void DirWatcher::run() {
  alignas(inotify_event) char buf[16 * 1024];
  pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
  while (true) {
    if (poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents) return;
    bool changed = false;
    while (true) {
      ssize_t n = read(inotify_fd_, buf, sizeof buf);
      if (n <= 0) break;
      for (char* p = buf; p < buf + n;) {
        auto* ev = reinterpret_cast<inotify_event*>(p);
        p += sizeof(inotify_event) + ev->len;
        changed = true;
        if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
          std::filesystem::path created;
          for (auto& [wd, path] : watches_)
            if (wd == ev->wd) created = path / ev->name;
          if (!created.empty()) add_tree(created);
        }
      }
    }
    if (changed) on_change_();
  }
}

}  // namespace kedge::k8s
