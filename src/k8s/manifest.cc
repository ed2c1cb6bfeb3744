#include "k8s/manifest.h"

#include "k8s/json_text.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace kedge::k8s {
namespace {

using nlohmann::json;

/// Plain YAML scalars get JSON types the way Kubernetes' YAML reader gives them; quoted or
/// explicitly tagged ones (any tag but "?") stay strings.
json scalar_to_json(const std::string& tag, const std::string& s) {
  if (tag != "?") return s;
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

struct YamlError {
  YAML::Mark mark;
  std::string message;
};

/// Builds JSON documents straight from yaml-cpp's parser events, with the line of every field.
/// Going through events rather than YAML::LoadAll lets the reader see a parser that stops making
/// progress (yaml-cpp 0.7 returns the same empty document forever after a stray ',' at the top
/// level) and bound what aliases expand to (a "billion laughs" document).
class JsonBuilder final : public YAML::EventHandler {
 public:
  /// Most JSON values a file may expand to through aliases; a manifest has a few thousand.
  static constexpr size_t kMaxValues = 4'000'000;

  json document;
  LineMap lines;
  int line = 0;  // of the document's first node

  void OnDocumentStart(const YAML::Mark&) override {
    document = nullptr;
    lines.clear();
    line = 0;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (!key(mark, "", anchor)) add(mark, nullptr, anchor, 1);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) throw YamlError{mark, "unknown alias"};
    const json& value = it->second.value;
    if (expecting_key()) {
      if (!value.is_primitive()) throw YamlError{mark, "a mapping key must be a string"};
      key(mark, value.is_string() ? value.get<std::string>() : value.dump(), 0);
      return;
    }
    add(mark, value, 0, it->second.size);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    if (!key(mark, value, anchor)) add(mark, scalar_to_json(tag, value), anchor, 1);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(mark, json::array(), anchor);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(mark, json::object(), anchor);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    json value;
    std::string path;
    YAML::anchor_t anchor;
    size_t first_value;  // values_ when the collection opened
    bool has_key = false;
    std::string key;
  };
  struct Anchored {
    json value;
    size_t size;
  };

  /// The path of the next value (not a map key), its line recorded; a collection where a map key
  /// is expected is refused, as Kubernetes' YAML reader does.
  std::string child_path(const YAML::Mark& mark) {
    if (stack_.empty()) {
      if (line == 0) line = mark.line + 1;
      return {};
    }
    Frame& top = stack_.back();
    std::string path;
    if (top.value.is_array()) {
      path = fmt::format("{}[{}]", top.path, top.value.size());
    } else if (!top.has_key) {
      throw YamlError{mark, "a mapping key must be a string"};
    } else {
      path = top.path.empty() ? top.key : top.path + "." + top.key;
    }
    lines.emplace(path, mark.line + 1);
    return path;
  }

  void count(const YAML::Mark& mark, size_t n) {
    values_ += n;
    if (values_ > kMaxValues)
      throw YamlError{mark, fmt::format("the file expands to more than {} values", kMaxValues)};
  }

  bool expecting_key() const {
    return !stack_.empty() && stack_.back().value.is_object() && !stack_.back().has_key;
  }

  /// Takes a scalar as the next map key, as written (a plain `yes` or `80` key stays that text).
  bool key(const YAML::Mark& mark, const std::string& text, YAML::anchor_t anchor) {
    if (!expecting_key()) return false;
    count(mark, 1);
    if (anchor) anchors_[anchor] = Anchored{text, 1};
    Frame& top = stack_.back();
    top.key = text;
    top.has_key = true;
    lines.emplace(top.path.empty() ? top.key : top.path + "." + top.key, mark.line + 1);
    return true;
  }

  void add(const YAML::Mark& mark, json value, YAML::anchor_t anchor, size_t size) {
    count(mark, size);
    if (anchor) anchors_[anchor] = Anchored{value, size};
    child_path(mark);
    place(std::move(value));
  }

  void open(const YAML::Mark& mark, json value, YAML::anchor_t anchor) {
    count(mark, 1);
    std::string path = child_path(mark);
    stack_.push_back(Frame{std::move(value), std::move(path), anchor, values_});
  }

  void close() {
    Frame frame = std::move(stack_.back());
    stack_.pop_back();
    if (frame.anchor)
      anchors_[frame.anchor] = Anchored{frame.value, values_ - frame.first_value + 1};
    place(std::move(frame.value));
  }

  void place(json value) {
    if (stack_.empty()) {
      document = std::move(value);
      return;
    }
    Frame& top = stack_.back();
    if (top.value.is_array()) {
      top.value.push_back(std::move(value));
    } else {
      top.value[top.key] = std::move(value);
      top.has_key = false;
    }
  }

  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, Anchored> anchors_;
  size_t values_ = 0;
};

/// Decodes one top-level document, expanding `kind: List`.
void add_document(const json& doc, const Origin& origin, const LineMap* lines, ManifestFile& out) {
  if (doc.is_null()) return;  // empty document
  // `kind` may be anything here (decode_object reports a bad one); comparing never throws.
  if (doc.is_object() && doc.contains("items") && doc.contains("kind") &&
      doc.at("kind") == "List") {
    const json& items = doc.at("items");
    if (!items.is_array()) {
      out.issues.push_back({origin.file, origin.line, "List", "", "", "items", "must be a list"});
      return;
    }
    out.objects.reserve(out.objects.size() + items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      LineMap sub;
      std::string prefix = fmt::format("items[{}]", i);
      Origin item_origin = origin;
      if (lines) {
        // The item's own paths, "items[i]" and "items[i].…", are one run of the sorted map.
        if (auto it = lines->find(prefix); it != lines->end()) item_origin.line = it->second;
        prefix += '.';
        for (auto it = lines->lower_bound(prefix);
             it != lines->end() && it->first.starts_with(prefix); ++it)
          sub.emplace_hint(sub.end(), it->first.substr(prefix.size()), it->second);
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
    json doc = parse_json(text);
    if (doc.is_discarded()) {
      out.unreadable = true;
      out.issues.push_back({file_name, 0, "", "", "", "", "invalid JSON"});
      return out;
    }
    add_document(doc, Origin{file_name, 1}, nullptr, out);
    return out;
  }
  auto syntax_error = [&](int line, const std::string& message) {
    out.objects.clear();  // a file that does not parse yields nothing but its syntax error
    out.rejected.clear();
    out.issues.clear();
    out.unreadable = true;
    out.issues.push_back(
        {file_name, line, "", "", "", "", fmt::format("YAML syntax error: {}", message)});
  };
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    JsonBuilder builder;
    int last_line = -1;
    while (parser.HandleNextDocument(builder)) {
      // yaml-cpp 0.7 reports an empty document again and again without consuming a stray ','
      // (or other flow indicator) at the top level: an empty document on the line of the last
      // one is that loop, since a real empty document needs a line of its own ("---").
      if (builder.document.is_null() && builder.line == last_line) {
        syntax_error(builder.line, "unexpected character at the top level");
        break;
      }
      last_line = builder.line;
      add_document(builder.document, Origin{file_name, builder.line}, &builder.lines, out);
    }
  } catch (const YAML::Exception& e) {
    syntax_error(e.mark.is_null() ? 0 : e.mark.line + 1, e.msg);
  } catch (const YamlError& e) {
    syntax_error(e.mark.line + 1, e.message);
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
