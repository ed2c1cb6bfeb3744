#include "k8s/manifest.h"

#include "k8s/json_text.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <yaml.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

namespace kedge::k8s {
namespace {

using nlohmann::json;

/// Plain YAML scalars without a tag get JSON types the way Kubernetes' YAML reader gives them;
/// quoted or explicitly tagged ones stay strings.
json scalar_to_json(bool plain, const std::string& s) {
  if (!plain) return s;
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

/// Thrown by JsonBuilder: what libyaml's parser accepts but kedge refuses.
struct Refused {
  size_t line;  // 0-based
  std::string message;
};

/// Builds JSON documents from libyaml's parser events, with the line of every field. Going
/// through events lets the reader bound what aliases expand to (a "billion laughs" document)
/// and keep the line of each field. Anchors and aliases are resolved here: libyaml's parser
/// only reports them.
class JsonBuilder {
 public:
  /// Most JSON values a file may expand to through aliases; a manifest has a few thousand.
  static constexpr size_t kMaxValues = 4'000'000;

  json document;
  LineMap lines;
  int line = 0;  // of the document's first node

  void document_start() {
    document = nullptr;
    lines.clear();
    line = 0;
    anchors_.clear();  // an anchor belongs to its document (the expansion bound is per file)
  }
  void alias(size_t at, const std::string& anchor) {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) throw Refused{at, "unknown alias"};
    const json& value = it->second.value;
    if (expecting_key()) {
      if (!value.is_primitive()) throw Refused{at, "a mapping key must be a string"};
      key(at, value.is_string() ? value.get<std::string>() : value.dump(), {});
      return;
    }
    add(at, value, {}, it->second.size);
  }
  /// `plain`: a plain scalar without a tag, whose type comes from its text.
  void scalar(size_t at, bool plain, std::string anchor, std::string value) {
    if (!key(at, value, anchor)) add(at, scalar_to_json(plain, value), anchor, 1);
  }
  void sequence_start(size_t at, std::string anchor) { open(at, json::array(), anchor); }
  void mapping_start(size_t at, std::string anchor) { open(at, json::object(), anchor); }
  void end() { close(); }

 private:
  struct Frame {
    json value;
    std::string path;
    std::string anchor;
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
  std::string child_path(size_t at) {
    if (stack_.empty()) {
      if (line == 0) line = static_cast<int>(at) + 1;
      return {};
    }
    Frame& top = stack_.back();
    std::string path;
    if (top.value.is_array()) {
      path = fmt::format("{}[{}]", top.path, top.value.size());
    } else if (!top.has_key) {
      throw Refused{at, "a mapping key must be a string"};
    } else {
      path = top.path.empty() ? top.key : top.path + "." + top.key;
    }
    lines.emplace(path, static_cast<int>(at) + 1);
    return path;
  }

  void count(size_t at, size_t n) {
    values_ += n;
    if (values_ > kMaxValues)
      throw Refused{at, fmt::format("the file expands to more than {} values", kMaxValues)};
  }

  bool expecting_key() const {
    return !stack_.empty() && stack_.back().value.is_object() && !stack_.back().has_key;
  }

  /// Takes a scalar as the next map key, as written (a plain `yes` or `80` key stays that text).
  bool key(size_t at, const std::string& text, const std::string& anchor) {
    if (!expecting_key()) return false;
    count(at, 1);
    if (!anchor.empty()) anchors_[anchor] = Anchored{text, 1};
    Frame& top = stack_.back();
    top.key = text;
    top.has_key = true;
    lines.emplace(top.path.empty() ? top.key : top.path + "." + top.key, static_cast<int>(at) + 1);
    return true;
  }

  void add(size_t at, json value, const std::string& anchor, size_t size) {
    count(at, size);
    if (!anchor.empty()) anchors_[anchor] = Anchored{value, size};
    child_path(at);
    place(std::move(value));
  }

  void open(size_t at, json value, std::string anchor) {
    count(at, 1);
    std::string path = child_path(at);
    stack_.push_back(Frame{std::move(value), std::move(path), std::move(anchor), values_});
  }

  void close() {
    Frame frame = std::move(stack_.back());
    stack_.pop_back();
    if (!frame.anchor.empty())
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
  std::map<std::string, Anchored> anchors_;
  size_t values_ = 0;
};

/// libyaml's parser, freed on every path out.
struct YamlParser {
  yaml_parser_t parser;
  YamlParser() { yaml_parser_initialize(&parser); }
  ~YamlParser() { yaml_parser_delete(&parser); }
  YamlParser(const YamlParser&) = delete;
  YamlParser& operator=(const YamlParser&) = delete;
};

struct YamlEvent {
  yaml_event_t event{};
  ~YamlEvent() { yaml_event_delete(&event); }
};

std::string text_of(const yaml_char_t* s) {
  return s ? std::string(reinterpret_cast<const char*>(s)) : std::string();
}

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

std::optional<YamlError> read_yaml(
    std::string_view text,
    const std::function<void(const nlohmann::json&, int, const LineMap&)>& on_document) {
  try {
    YamlParser p;
    yaml_parser_set_input_string(&p.parser, reinterpret_cast<const unsigned char*>(text.data()),
                                 text.size());
    JsonBuilder builder;
    for (bool done = false; !done;) {
      YamlEvent e;
      if (!yaml_parser_parse(&p.parser, &e.event)) {
        const yaml_mark_t& mark = p.parser.problem ? p.parser.problem_mark : p.parser.context_mark;
        std::string message = p.parser.problem ? p.parser.problem : "invalid YAML";
        if (p.parser.context) message = fmt::format("{} ({})", message, p.parser.context);
        return YamlError{static_cast<int>(mark.line) + 1, std::move(message)};
      }
      size_t at = e.event.start_mark.line;
      switch (e.event.type) {
        case YAML_DOCUMENT_START_EVENT:
          builder.document_start();
          break;
        case YAML_DOCUMENT_END_EVENT:
          on_document(builder.document, builder.line, builder.lines);
          break;
        case YAML_ALIAS_EVENT:
          builder.alias(at, text_of(e.event.data.alias.anchor));
          break;
        case YAML_SCALAR_EVENT: {
          const auto& sc = e.event.data.scalar;
          builder.scalar(at, !sc.tag && sc.style == YAML_PLAIN_SCALAR_STYLE, text_of(sc.anchor),
                         std::string(reinterpret_cast<const char*>(sc.value), sc.length));
          break;
        }
        case YAML_SEQUENCE_START_EVENT:
          builder.sequence_start(at, text_of(e.event.data.sequence_start.anchor));
          break;
        case YAML_MAPPING_START_EVENT:
          builder.mapping_start(at, text_of(e.event.data.mapping_start.anchor));
          break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
          builder.end();
          break;
        case YAML_STREAM_END_EVENT:
          done = true;
          break;
        default:
          break;
      }
    }
  } catch (const Refused& e) {
    return YamlError{static_cast<int>(e.line) + 1, e.message};
  }
  return std::nullopt;
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
  auto error = read_yaml(text, [&](const json& document, int line, const LineMap& lines) {
    add_document(document, Origin{file_name, line}, &lines, out);
  });
  if (error) {  // a file that does not parse yields nothing but its syntax error
    out = ManifestFile{};
    out.unreadable = true;
    out.issues.push_back({file_name, error->line, "", "", "", "",
                          fmt::format("YAML syntax error: {}", error->message)});
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
