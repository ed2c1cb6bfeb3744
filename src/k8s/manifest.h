#pragma once

#include "k8s/decode.h"
#include "k8s/issue.h"
#include "k8s/objects.h"

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kedge::k8s {

/// Identity of an object: kind, namespace (empty for cluster-scoped kinds) and name.
struct ObjectKey {
  Kind kind;
  std::string namespace_;
  std::string name;
  auto operator<=>(const ObjectKey&) const = default;
  std::string to_string() const;
};

ObjectKey key_of(const StoredObject& stored);

/// What one manifest file yielded.
struct ManifestFile {
  std::vector<StoredObject> objects;  // valid objects of kinds kedge handles
  std::vector<ObjectKey> rejected;  // identities of invalid objects (their last good version stays)
  bool unreadable = false;          // the file as a whole failed (I/O or syntax): keep all it had
  Issues issues;
};

/// Parses a manifest: YAML (multi-document) or JSON, `kind: List` expanded, every object decoded
/// and validated. Never throws. Thread: any.
ManifestFile parse_manifest(const std::string& text, const std::string& file_name);

/// A YAML syntax error, or a construct kedge refuses (a collection as a map key, an unknown
/// alias, aliases expanding past a bound): 1-based line and message.
struct YamlError {
  int line = 0;
  std::string message;
};

/// Reads every document of YAML text as JSON, plain scalars typed as Kubernetes' YAML reader
/// types them, and calls on_document(document, line of its first node, line of each field).
/// Returns the first error; no document follows it.
std::optional<YamlError> read_yaml(
    std::string_view text,
    const std::function<void(const nlohmann::json&, int, const LineMap&)>& on_document);

/// Larger manifest files are refused whole (unreadable, with an issue), unparsed.
inline constexpr size_t kMaxManifestBytes = 16 * 1024 * 1024;

/// Reads and parses a file from disk; a file over kMaxManifestBytes is refused.
ManifestFile load_manifest(const std::filesystem::path& path);

/// Every .yaml, .yml and .json file below `dir`, sorted, hidden files and directories skipped.
std::vector<std::filesystem::path> list_manifests(const std::filesystem::path& dir);

}  // namespace kedge::k8s
