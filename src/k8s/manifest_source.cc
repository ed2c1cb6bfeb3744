#include "k8s/manifest_source.h"

#include <fmt/format.h>

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

namespace kedge::k8s {

namespace {

/// The CPUs this process may run on (its affinity mask, as taskset sets it).
unsigned usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
}

/// Reads every file, on up to `threads` threads.
std::vector<ManifestFile> load_all(const std::vector<std::filesystem::path>& paths,
                                   unsigned threads) {
  std::vector<ManifestFile> out(paths.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < paths.size();) out[i] = load_manifest(paths[i]);
  };
  {
    std::vector<std::jthread> helpers;  // joined at the end of this block
    for (size_t t = 1; t < std::min<size_t>(threads, paths.size()); ++t) helpers.emplace_back(work);
    work();
  }
  return out;
}

}  // namespace

ManifestSource::ManifestSource(std::vector<std::filesystem::path> roots, unsigned threads)
    : roots_(std::move(roots)), threads_(threads) {}

void ManifestSource::apply(const std::vector<StoredObjectConstPtr>& objects, bool add,
                           std::set<ObjectKey>& touched) {
  namespace fs = std::filesystem;
  for (const StoredObjectConstPtr& object : objects) {
    ObjectKey key = key_of(*object);
    auto& defs = definitions_[key];
    if (add) {
      // After the definitions from files that sort before or with this one (origin.file is the
      // file's path).
      fs::path path = defs.empty() ? fs::path() : fs::path(object->origin.file);
      auto at = std::upper_bound(defs.begin(), defs.end(), path, [](const auto& p, const auto& d) {
        return p < fs::path(d->origin.file);
      });
      defs.insert(at, object);
    } else {
      std::erase(defs, object);
    }
    if (defs.size() > 1)
      duplicated_.insert(key);
    else
      duplicated_.erase(key);
    if (defs.empty()) definitions_.erase(key);
    touched.insert(std::move(key));
  }
}

ManifestSource::Load ManifestSource::reload() {
  namespace fs = std::filesystem;
  std::map<fs::path, FileState> next;
  struct Changed {
    fs::path path;
    FileState state;
  };
  std::vector<Changed> changed;  // new or modified files
  std::set<fs::path> listed;
  std::set<ObjectKey> touched;
  Load load;
  for (const fs::path& root : roots_) {
    std::error_code ec;
    if (!fs::exists(root, ec)) {
      load.issues.push_back({root.string(), 0, "", "", "", "", "manifest folder does not exist"});
      continue;
    }
    for (const fs::path& path : list_manifests(root)) {
      if (!listed.insert(path).second) continue;  // under two roots
      auto mtime = fs::last_write_time(path, ec);
      auto size = fs::file_size(path, ec);
      auto old = files_.find(path);
      if (old != files_.end() && old->second.mtime == mtime && old->second.size == size) {
        next.emplace(path, std::move(old->second));
        files_.erase(old);
        continue;
      }
      changed.push_back({path, FileState{mtime, size, {}, {}}});
    }
  }
  std::vector<fs::path> paths;
  for (const Changed& c : changed) paths.push_back(c.path);
  std::vector<ManifestFile> files = load_all(paths, threads_ ? threads_ : usable_cpus());
  for (size_t f = 0; f < changed.size(); ++f) {
    Changed& c = changed[f];
    FileState& state = c.state;
    ManifestFile& parsed = files[f];
    state.issues = std::move(parsed.issues);
    std::vector<StoredObjectConstPtr> previous;
    if (auto old = files_.find(c.path); old != files_.end()) {
      previous = std::move(old->second.good);
      files_.erase(old);
    }
    if (parsed.unreadable) {
      state.good = previous;
    } else {
      std::map<ObjectKey, StoredObjectConstPtr> before;
      for (auto& p : previous) before.emplace(key_of(*p), p);
      for (StoredObject& o : parsed.objects) {
        // Unchanged (same JSON, same place): keep the object it was.
        auto same = before.find(key_of(o));
        if (same != before.end() && same->second->raw == o.raw &&
            same->second->origin.line == o.origin.line)
          state.good.push_back(same->second);
        else
          state.good.push_back(std::make_shared<const StoredObject>(std::move(o)));
      }
      for (const ObjectKey& key : parsed.rejected)
        if (auto p = before.find(key); p != before.end())
          state.good.push_back(p->second);  // the last good version stays
    }
    apply(previous, false, touched);
    apply(state.good, true, touched);
    next.emplace(std::move(c.path), std::move(state));
  }
  for (auto& [path, state] : files_) apply(state.good, false, touched);  // files gone
  files_ = std::move(next);
  for (const ObjectKey& key : touched) {
    auto defs = definitions_.find(key);
    const StoredObject* stored = store_.find(key);
    if (defs == definitions_.end())
      store_.erase(key);
    else if (stored != defs->second.front().get())
      store_.upsert(defs->second.front());
  }
  for (auto& [path, state] : files_)
    load.issues.insert(load.issues.end(), state.issues.begin(), state.issues.end());
  for (const ObjectKey& key : duplicated_) {
    const auto& defs = definitions_.at(key);
    for (size_t i = 1; i < defs.size(); ++i)
      load.issues.push_back({defs[i]->origin.file, defs[i]->origin.line,
                             std::string(kind_name(key.kind)), key.namespace_, key.name,
                             "metadata.name",
                             fmt::format("Duplicate value: also defined in {}; the first one "
                                         "(in file name order) is used",
                                         defs.front()->origin.file)});
  }
  load.store = store_;
  load.files = files_.size();
  return load;
}

}  // namespace kedge::k8s
