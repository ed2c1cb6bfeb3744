#include "k8s/manifest_source.h"

#include <fmt/format.h>

#include <set>

namespace kedge::k8s {

ManifestSource::ManifestSource(std::vector<std::filesystem::path> roots)
    : roots_(std::move(roots)) {}

ManifestSource::Load ManifestSource::reload() {
  namespace fs = std::filesystem;
  std::map<fs::path, FileState> next;
  Load load;
  for (const fs::path& root : roots_) {
    std::error_code ec;
    if (!fs::exists(root, ec)) {
      load.issues.push_back({root.string(), 0, "", "", "", "", "manifest folder does not exist"});
      continue;
    }
    for (const fs::path& path : list_manifests(root)) {
      if (next.contains(path)) continue;
      auto mtime = fs::last_write_time(path, ec);
      auto size = fs::file_size(path, ec);
      auto old = files_.find(path);
      if (old != files_.end() && old->second.mtime == mtime && old->second.size == size) {
        next.emplace(path, std::move(old->second));
        continue;
      }
      FileState state{mtime, size, {}, {}};
      ManifestFile parsed = load_manifest(path);
      state.issues = std::move(parsed.issues);
      std::vector<StoredObjectConstPtr> previous;
      if (old != files_.end()) previous = std::move(old->second.good);
      if (parsed.unreadable) {
        state.good = std::move(previous);
      } else {
        for (StoredObject& o : parsed.objects)
          state.good.push_back(std::make_shared<const StoredObject>(std::move(o)));
        std::set<ObjectKey> rejected(parsed.rejected.begin(), parsed.rejected.end());
        for (auto& p : previous)
          if (rejected.contains(key_of(*p))) state.good.push_back(p);  // last good version stays
      }
      next.emplace(path, std::move(state));
    }
  }
  files_ = std::move(next);
  std::map<ObjectKey, std::string> seen;
  for (auto& [path, state] : files_) {
    load.issues.insert(load.issues.end(), state.issues.begin(), state.issues.end());
    for (auto& object : state.good) {
      ObjectKey key = key_of(*object);
      auto [it, fresh] = seen.emplace(key, path.string());
      if (!fresh) {
        load.issues.push_back({path.string(), object->origin.line, std::string(kind_name(key.kind)),
                               key.namespace_, key.name, "metadata.name",
                               fmt::format("Duplicate value: also defined in {}; the first one "
                                           "(in file name order) is used",
                                           it->second)});
        continue;
      }
      load.store.upsert(object);
    }
  }
  load.files = files_.size();
  return load;
}

}  // namespace kedge::k8s
