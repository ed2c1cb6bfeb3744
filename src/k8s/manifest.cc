#include "k8s/manifest.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>

namespace kedge::k8s {
namespace {

using nlohmann::json;

/// Plain YAML scalars get JSON types the way Kubernetes' YAML reader gives them; quoted ones stay
/// strings.
json scalar_to_json(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  if (node.Tag() != "?") return s;  // quoted or explicitly tagged
  // YAML 1.1 booleans, as kubectl's YAML reader resolves them (but not the single letters y/n,
  // which would turn names like "y" into booleans).
  static const std::set<std::string> kTrue = {"true", "True", "TRUE", "yes", "Yes",
                                              "YES",  "on",   "On",   "ON"};
  static const std::set<std::string> kFalse = {"false", "False", "FALSE", "no", "No",
                                               "NO",    "off",   "Off",   "OFF"};
  if (kTrue.contains(s)) return true;
  if (kFalse.contains(s)) return false;
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (errno == 0 && end && *end == '\0' && !s.empty() && s != "+" && s != "-") return v;
  }
  {
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    bool numeric = std::all_of(s.begin(), s.end(), [](char c) {
      return std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == 'E' ||
             c == '-' || c == '+';
    });
    if (numeric && end && *end == '\0') return v;
  }
  return s;
}

json to_json(const YAML::Node& node, const std::string& path, LineMap& lines) {
  lines.emplace(path, node.Mark().line + 1);
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      json obj = json::object();
      for (const auto& kv : node) {
        std::string key = kv.first.Scalar();
        std::string child = path.empty() ? key : path + "." + key;
        lines.emplace(child, kv.first.Mark().line + 1);
        obj[key] = to_json(kv.second, child, lines);
      }
      return obj;
    }
    case YAML::NodeType::Sequence: {
      json arr = json::array();
      for (size_t i = 0; i < node.size(); ++i)
        arr.push_back(to_json(node[i], fmt::format("{}[{}]", path, i), lines));
      return arr;
    }
    case YAML::NodeType::Scalar:
      return scalar_to_json(node);
    default:
      return nullptr;
  }
}

/// Decodes one top-level document, expanding `kind: List`.
void add_document(const json& doc, const Origin& origin, const LineMap* lines, ManifestFile& out) {
  if (doc.is_null()) return;  // empty document
  // `kind` may be anything here (decode_object reports a bad one); comparing never throws.
  if (doc.is_object() && doc.contains("items") && doc.contains("kind") &&
      doc.at("kind") == "List") {
    const json& items = doc["items"];
    if (!items.is_array()) {
      out.issues.push_back({origin.file, origin.line, "List", "", "", "items", "must be a list"});
      return;
    }
    for (size_t i = 0; i < items.size(); ++i) {
      LineMap sub;
      std::string prefix = fmt::format("items[{}]", i);
      Origin item_origin = origin;
      if (lines) {
        for (auto& [path, line] : *lines) {
          if (path == prefix)
            item_origin.line = line;
          else if (path.starts_with(prefix + "."))
            sub.emplace(path.substr(prefix.size() + 1), line);
        }
      }
      add_document(items[i], item_origin, lines ? &sub : nullptr, out);
    }
    return;
  }
  DecodeOutcome d = decode_object(doc, origin, lines, out.issues);
  if (d.unknown_kind) {
    spdlog::debug("{}:{}: ignoring {} {} {}/{}", origin.file, origin.line, d.api_version, d.kind,
                  d.namespace_, d.name);
    return;
  }
  if (d.stored) {
    out.objects.push_back(std::move(*d.stored));
  } else if (!d.name.empty()) {
    static const std::pair<const char*, Kind> kKinds[] = {{"Service", Kind::Service},
                                                          {"EndpointSlice", Kind::EndpointSlice},
                                                          {"Endpoints", Kind::Endpoints},
                                                          {"Ingress", Kind::Ingress},
                                                          {"IngressClass", Kind::IngressClass},
                                                          {"Secret", Kind::Secret},
                                                          {"IPAddressPool", Kind::IPAddressPool}};
    for (auto& [name, kind] : kKinds)
      if (d.kind == name) out.rejected.push_back(ObjectKey{kind, d.namespace_, d.name});
  }
}

}  // namespace

std::string ObjectKey::to_string() const {
  if (namespace_.empty()) return fmt::format("{} {}", kind_name(kind), name);
  return fmt::format("{} {}/{}", kind_name(kind), namespace_, name);
}

ObjectKey key_of(const StoredObject& stored) {
  const ObjectMeta& m = meta_of(stored.object);
  return ObjectKey{kind_of(stored.object), m.namespace_, m.name};
}

ManifestFile parse_manifest(const std::string& text, const std::string& file_name) {
  ManifestFile out;
  bool is_json = file_name.ends_with(".json");
  if (is_json) {
    json doc = json::parse(text, nullptr, false);
    if (doc.is_discarded()) {
      out.unreadable = true;
      out.issues.push_back({file_name, 0, "", "", "", "", "invalid JSON"});
      return out;
    }
    add_document(doc, Origin{file_name, 1}, nullptr, out);
    return out;
  }
  try {
    std::vector<YAML::Node> docs = YAML::LoadAll(text);
    for (const YAML::Node& node : docs) {
      LineMap lines;
      json doc = to_json(node, "", lines);
      add_document(doc, Origin{file_name, node.Mark().line + 1}, &lines, out);
    }
  } catch (const YAML::Exception& e) {
    out.objects.clear();
    out.rejected.clear();
    out.unreadable = true;
    out.issues.push_back({file_name, e.mark.is_null() ? 0 : e.mark.line + 1, "", "", "", "",
                          fmt::format("YAML syntax error: {}", e.msg)});
  }
  return out;
}

ManifestFile load_manifest(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  auto unreadable = [&](std::string message) {
    ManifestFile out;
    out.unreadable = true;
    out.issues.push_back({path.string(), 0, "", "", "", "", std::move(message)});
    return out;
  };
  if (!in) return unreadable("cannot read file");
  // Read in blocks and stop past the limit: a huge file costs neither the memory nor the parse.
  std::string text;
  char block[64 * 1024];
  while (in.read(block, sizeof block) || in.gcount() > 0) {
    text.append(block, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxManifestBytes)
      return unreadable(
          fmt::format("file too large (more than {} bytes); ignored", kMaxManifestBytes));
  }
  return parse_manifest(text, path.string());
}

std::vector<std::filesystem::path> list_manifests(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  std::error_code ec;
  if (fs::is_regular_file(dir, ec)) return {dir};
  for (auto it =
           fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.filename().string().starts_with('.')) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;
    auto ext = p.extension().string();
    if (ext == ".yaml" || ext == ".yml" || ext == ".json") files.push_back(p);
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace kedge::k8s
