#pragma once

#include "common/result.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace kedge::k8s {

/// Re-frames a watch response body into events. The API server writes one JSON object per
/// line, but chunks are not events: one chunk may hold several events and one event may span
/// chunks. Bytes go in as they arrive; each complete line comes out once.
/// Thread: one owner.
class LineFramer {
 public:
  explicit LineFramer(size_t max_line = size_t{64} << 20) : max_line_(max_line) {}

  /// Appends `bytes` and calls on_line(std::string_view) for every complete, non-empty line
  /// (without its "\n" or "\r\n"). Returns false when a line grows beyond the limit (the
  /// stream is then unusable and the caller should drop it).
  template <class OnLine>
  bool feed(std::string_view bytes, OnLine&& on_line) {
    buffer_.append(bytes);
    size_t start = 0;
    while (true) {
      size_t nl = buffer_.find('\n', scan_from_ > start ? scan_from_ : start);
      if (nl == std::string::npos) break;
      size_t end = nl;
      if (end > start && buffer_[end - 1] == '\r') --end;
      if (end > start) on_line(std::string_view(buffer_).substr(start, end - start));
      start = nl + 1;
    }
    buffer_.erase(0, start);
    scan_from_ = buffer_.size();
    return buffer_.size() <= max_line_;
  }

  /// Bytes of an incomplete line held back.
  size_t pending() const { return buffer_.size(); }

 private:
  size_t max_line_;
  std::string buffer_;
  size_t scan_from_ = 0;  // everything before this is known to hold no newline
};

enum class WatchEventType { Added, Modified, Deleted, Bookmark, Error };

struct WatchEvent {
  WatchEventType type = WatchEventType::Added;
  nlohmann::json object;  // the object; for Error a meta/v1 Status
};

/// Decodes one watch event line: {"type": "...", "object": {...}}.
Result<WatchEvent> parse_watch_event(std::string_view line);

/// The parts of a meta/v1 Status the client acts on.
struct ApiStatus {
  int code = 0;
  std::string reason;
  std::string message;
};

/// Reads a Status object (tolerates missing fields).
ApiStatus api_status_of(const nlohmann::json& status);

/// metadata.resourceVersion of an object, or "" when absent.
std::string resource_version_of(const nlohmann::json& object);

}  // namespace kedge::k8s
