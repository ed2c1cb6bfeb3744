#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kedge::http1 {

/// ASCII case-insensitive equality (field names, tokens). Inline: it runs for every field.
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x == y) continue;
    if ((x | 0x20) != (y | 0x20) || (x | 0x20) < 'a' || (x | 0x20) > 'z') return false;
  }
  return true;
}

/// The start line and header fields of one HTTP/1 message, copied out of the read buffers into
/// one string so they outlive them. Field names keep their case; lookups ignore it.
/// Thread: owning connection only.
class MessageHead {
 public:
  void clear();

  std::string_view method() const { return view(method_); }
  std::string_view target() const { return view(target_); }
  std::string_view reason() const { return view(reason_); }
  int status = 0;
  uint8_t version_major = 1;
  uint8_t version_minor = 1;

  size_t size() const { return fields_.size(); }
  std::string_view name(size_t i) const { return view(fields_[i].name); }
  std::string_view value(size_t i) const { return view(fields_[i].value); }

  /// The first field with this name (case-insensitive), or an empty view with found = false.
  std::string_view get(std::string_view name, bool* found = nullptr) const;
  size_t count(std::string_view name) const;
  /// Whether a comma-separated field (Connection, Upgrade) lists `token`, ignoring case.
  bool has_token(std::string_view name, std::string_view token) const {
    return any_token(name, [&](std::string_view item) { return iequals(item, token); });
  }
  /// Calls `f` with each item of the comma-separated fields named `name`, trimmed of spaces and
  /// tabs, empty ones skipped, until it returns true; whether one did.
  template <class F>
  bool any_token(std::string_view name, F&& f) const;

  // Filled by the parser.
  void append_method(std::string_view s) { append(method_, s); }
  void append_target(std::string_view s) { append(target_, s); }
  void append_reason(std::string_view s) { append(reason_, s); }
  void append_name(std::string_view s);
  void append_value(std::string_view s);
  size_t bytes() const { return storage_.size(); }

 private:
  struct Span {
    uint32_t offset = 0;
    uint32_t length = 0;
  };
  struct Field {
    Span name, value;
  };
  std::string_view view(Span s) const { return {storage_.data() + s.offset, s.length}; }
  void append(Span& span, std::string_view s);

  friend class Parser;  // its fast path fills a head from one copy of the bytes
  static constexpr size_t kTypicalFields = 24;  // reserved at the first field

  std::string storage_;
  Span method_, target_, reason_;
  std::vector<Field> fields_;
  bool in_value_ = false;
};

template <class F>
bool MessageHead::any_token(std::string_view name, F&& f) const {
  for (const Field& field : fields_) {
    if (!iequals(view(field.name), name)) continue;
    std::string_view v = view(field.value);
    while (!v.empty()) {
      size_t comma = v.find(',');
      std::string_view item = v.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (!item.empty() && f(item)) return true;
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return false;
}

}  // namespace kedge::http1
