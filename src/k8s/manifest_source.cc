#include "k8s/manifest_source.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace kedge::k8s {

ManifestSource::ManifestSource(std::vector<std::filesystem::path> roots)
    : roots_(std::move(roots)) {}

void ManifestSource::apply(const std::filesystem::path& path,
                           const std::vector<StoredObjectConstPtr>& objects, bool add,
                           std::set<ObjectKey>& touched) {
  for (const StoredObjectConstPtr& object : objects) {
    ObjectKey key = key_of(*object);
    auto& defs = definitions_[key];
    if (add) {
      auto at = std::upper_bound(defs.begin(), defs.end(), path,
                                 [](const auto& p, const auto& d) { return p < d.first; });
      defs.emplace(at, path, object);
    } else {
      std::erase_if(defs, [&](const auto& d) { return d.second == object; });
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
  std::set<ObjectKey> touched;
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
        files_.erase(old);
        continue;
      }
      FileState state{mtime, size, {}, {}};
      ManifestFile parsed = load_manifest(path);
      state.issues = std::move(parsed.issues);
      std::vector<StoredObjectConstPtr> previous;
      if (old != files_.end()) {
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
      apply(path, previous, false, touched);
      apply(path, state.good, true, touched);
      next.emplace(path, std::move(state));
    }
  }
  for (auto& [path, state] : files_) apply(path, state.good, false, touched);  // files gone
  files_ = std::move(next);
  for (const ObjectKey& key : touched) {
    auto defs = definitions_.find(key);
    const StoredObject* stored = store_.find(key);
    if (defs == definitions_.end())
      store_.erase(key);
    else if (stored != defs->second.front().second.get())
      store_.upsert(defs->second.front().second);
  }
  for (auto& [path, state] : files_)
    load.issues.insert(load.issues.end(), state.issues.begin(), state.issues.end());
  for (const ObjectKey& key : duplicated_) {
    const auto& defs = definitions_.at(key);
    for (size_t i = 1; i < defs.size(); ++i)
      load.issues.push_back({defs[i].first.string(), defs[i].second->origin.line,
                             std::string(kind_name(key.kind)), key.namespace_, key.name,
                             "metadata.name",
                             fmt::format("Duplicate value: also defined in {}; the first one "
                                         "(in file name order) is used",
                                         defs.front().first.string())});
  }
  load.store = store_;
  load.files = files_.size();
  return load;
}

}  // namespace kedge::k8s
